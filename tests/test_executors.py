"""Executors run the whole plan (weight-control copies included): in-process and on Ray with the same
numbers, and resumable job by job."""

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import records
import torch

from featurecontrols import Battery
from featurecontrols.pipeline import executors
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.executors import Executor, LocalExecutor, RayExecutor
from featurecontrols.pipeline.jobs import Job, Output
from featurecontrols.pipeline.results import RunResult
from featurecontrols.testbeds import Testbed, train_planted_residual


class StoppedError(Exception):
    pass


@pytest.fixture(scope="module")
def testbed() -> Testbed:
    return train_planted_residual()


def _battery(**kwargs: object) -> Battery:
    return Battery(n_weight_seeds=2, n_bootstrap=200, progress=False, **kwargs)  # type: ignore[arg-type]


def _run(testbed: Testbed, battery: Battery) -> RunResult:
    names = ["xor_0_1", "x_6", "xor_6_7"]
    features = {n: testbed.features[n] for n in names}
    return battery.run(testbed.model, testbed.inputs, testbed.site, features, cells=torch.arange(4000) % 64)


def _numbers(result: RunResult) -> list[object]:
    return [result.to_dict()["candidates"], result.spectra]


def _json_bytes(result: RunResult) -> bytes:
    """The run's JSON as written, less what differs by nature: wall times and the executor's name."""
    document = records.without_times(result.to_dict())
    assert isinstance(document, dict)
    document["settings"].pop("executor")
    return json.dumps(document, indent=2, allow_nan=False).encode()


class StopsAfter:
    """Runs like ``inner``, then raises after ``limit`` jobs came back (the driver killed halfway)."""

    def __init__(self, inner: Executor, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.ran: list[Job] = []

    def run(
        self, ctx: RunContext, jobs: Sequence[Job], inputs: Mapping[Job, Output]
    ) -> Iterator[tuple[Job, Output]]:
        for job, output in self.inner.run(ctx, jobs, inputs):
            self.ran.append(job)
            yield job, output
            if len(self.ran) == self.limit:
                raise StoppedError


def test_a_run_killed_on_ray_resumes_there_without_recomputing(testbed: Testbed, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    reference = _run(testbed, _battery())
    with RayExecutor(num_cpus=2) as ray, pytest.raises(StoppedError):
        _run(testbed, _battery(executor=StopsAfter(ray, limit=9), run_dir=tmp_path))
    with RayExecutor(num_cpus=2) as ray:
        resumed = _run(testbed, _battery(executor=ray, run_dir=tmp_path))
    assert _numbers(resumed) == _numbers(reference)
    jobs = list((tmp_path / "jobs").rglob("*.safetensors"))
    assert len(jobs) > 9  # the finished nine were kept and the rest added


def test_an_interrupted_run_resumes_without_recomputing_finished_jobs(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _run(testbed, _battery())
    crashing = StopsAfter(LocalExecutor(), limit=7)
    with pytest.raises(StoppedError):
        _run(testbed, _battery(executor=crashing, run_dir=tmp_path))
    finished = set(crashing.ran)
    counted: list[Job] = []
    real_run_job = executors.run_job

    def counting(ctx: RunContext, job: Job, inputs: Mapping[Job, Output], threads: int) -> Output:
        counted.append(job)
        return real_run_job(ctx, job, inputs, threads)

    monkeypatch.setattr(executors, "run_job", counting)
    resumed = _run(testbed, _battery(run_dir=tmp_path))
    assert counted and not finished & set(counted)  # nothing finished ran again
    assert _numbers(resumed) == _numbers(reference)
    again = len(counted)
    _run(testbed, _battery(run_dir=tmp_path))
    assert len(counted) == again  # a third run reads every job from the folder


def test_ray_runs_the_whole_plan_with_the_numbers_of_in_process(testbed: Testbed, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local = _run(testbed, _battery())
    with RayExecutor(num_cpus=2) as ray:
        on_ray = _run(testbed, _battery(executor=ray, run_dir=tmp_path))
    assert on_ray.settings.executor == "RayExecutor"
    assert _numbers(on_ray) == _numbers(local)
    assert _json_bytes(on_ray) == _json_bytes(local) == _json_bytes(_run(testbed, _battery()))


def test_a_damaged_finished_job_is_recomputed_not_read(testbed: Testbed, tmp_path: Path) -> None:
    reference = _run(testbed, _battery(run_dir=tmp_path))
    files = sorted((tmp_path / "jobs").rglob("*.safetensors"))
    truncated, flipped = files[0], files[-1]
    truncated.write_bytes(truncated.read_bytes()[:-7])
    data = flipped.read_bytes()
    flipped.write_bytes(data[:-5] + bytes([data[-5] ^ 0x10]) + data[-4:])
    with pytest.warns(UserWarning) as caught:
        resumed = _run(testbed, _battery(run_dir=tmp_path))
    messages = " ".join(str(w.message) for w in caught)
    assert "cannot be read" in messages and "fails its checksum" in messages
    assert _json_bytes(resumed) == _json_bytes(reference)


@pytest.mark.skipif(executors._malloc_trim() is None, reason="the C library has no malloc_trim")
def test_freed_heap_pages_go_back_to_the_system_after_a_job() -> None:
    def resident_mib() -> float:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    blocks = [bytearray(b"x" * 60_000) for _ in range(3_000)]  # 180 MB in heap-sized blocks
    del blocks[::2]  # every other one freed: holes the heap keeps without a trim
    before = resident_mib()
    executors.release_freed_memory()
    assert before - resident_mib() > 40
    del blocks
