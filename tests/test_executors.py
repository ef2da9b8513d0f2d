import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from featurecontrols.pipeline import executors
from featurecontrols.pipeline.executors import Job, JobResult, LocalExecutor, RunGrid, run_grid
from featurecontrols.pipeline.store import ShardedStore


class StoppedError(Exception):
    pass


def _grid(root: Path) -> RunGrid:
    """Two sites of random activations in a shard store, two features, both label controls, two seeds."""
    rng = torch.Generator().manual_seed(0)
    n = 200
    x = torch.randint(0, 2, (n, 4), generator=rng)
    store = ShardedStore(root, "acts", shard_rows=64)
    with store.writing() as writer:
        for site in ("a", "b"):
            writer.append(site, torch.randn(n, 8, generator=rng) + 2.0 * x[:, :2].float().repeat(1, 4))
    labels = {"x0": x[:, 0], "x3": x[:, 3]}
    cells = x[:, 0] * 2 + x[:, 1]
    return RunGrid(
        str(root), "acts", ("a", "b"), labels, ("shuffled labels", "control task"), (0, 1), cells, n_null=20
    )


def test_jobs_and_keys_are_deterministic(tmp_path: Path) -> None:
    grid = _grid(tmp_path)
    jobs = grid.jobs()
    assert len(jobs) == 2 * 2 * 2 * 2 and len({j.key for j in jobs}) == len(jobs)
    assert Job("a", "x0", "control task", 1).key == jobs[3].key
    assert grid.key == _grid(tmp_path / "elsewhere").key  # where the store lies is not in the key
    result = run_grid(grid, tmp_path / "runs").results
    assert result[0].accuracy > 0.9 and result[0].p_value < 0.1  # x0 is written into the activations
    assert JobResult.from_dict(result[0].as_dict()) == result[0]


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = _grid(tmp_path)
    calls: list[str] = []
    real_run_job = executors.run_job

    def counted(g: RunGrid, job: Job) -> JobResult:
        calls.append(job.key)
        return real_run_job(g, job)

    class StopsAfter(LocalExecutor):
        def run(self, grid: RunGrid, jobs: Sequence[Job]) -> Iterator[JobResult]:
            for i, result in enumerate(super().run(grid, jobs)):
                yield result
                if i == 4:
                    raise StoppedError

    monkeypatch.setattr(executors, "run_job", counted)
    with pytest.raises(StoppedError):
        run_grid(grid, tmp_path / "runs", StopsAfter())
    assert len(calls) == 5
    resumed = run_grid(grid, tmp_path / "runs")
    assert (resumed.computed, resumed.reused) == (11, 5)
    assert len(calls) == 16 and len(set(calls)) == 16  # no job ran twice
    fresh = run_grid(grid, tmp_path / "again", resume=False)
    assert fresh.results == resumed.results


def test_ray_gives_the_same_numbers_as_in_process(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    grid = _grid(tmp_path)
    start = time.perf_counter()
    local = run_grid(grid, tmp_path / "local")
    local_s = time.perf_counter() - start
    with executors.RayExecutor(num_cpus=2) as ray_executor:
        start = time.perf_counter()
        on_ray = run_grid(grid, tmp_path / "ray", ray_executor)
        ray_s = time.perf_counter() - start
    print(f"local {local_s:.2f} s, ray (including start-up) {ray_s:.2f} s")
    assert on_ray.results == local.results
    assert on_ray.computed == len(grid.jobs())
