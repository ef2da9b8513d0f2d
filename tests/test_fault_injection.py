"""A run killed with SIGKILL at random points, and rerun after each kill, ends with the results of an
uninterrupted run; no file under its final name is ever partial, and no temporary outlives the run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import records
from safetensors import safe_open

from featurecontrols.pipeline.executors import _digest
from featurecontrols.pipeline.store import ShardedStore

DEMO = [
    sys.executable,
    "-m",
    "featurecontrols.apps.cli",
    "demo",
    "--quiet",
    "--no-html",
    "--weight-seeds",
    "1",
]


def _demo(out: Path, *extra: str, threads: int | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads is not None:  # two runs at once on 2 cores: one thread each, or they slow each other 10x
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [*DEMO, "--out", str(out), *extra]  # run from OUT's parent: a stray relative write shows
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env, cwd=out.parent)


def _without_timings(path: Path) -> str:
    return json.dumps(records.without_times(json.loads(path.read_text())), sort_keys=True)


def _temporary(path: Path) -> bool:
    return any(part.startswith(".") and ".tmp" in part for part in path.parts)


def _check_every_file_is_whole(out: Path) -> None:
    """Every file under a final name is complete; the rest are temporaries or (empty) locks."""
    for path in out.rglob("*"):
        if path.is_dir() or _temporary(path) or path.name.endswith(".lock"):
            continue
        if path.suffix == ".json" and path.name != "manifest.json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                assert meta["sha256"] == _digest({n: f.get_tensor(n) for n in f.keys()}), path  # noqa: SIM118
        elif path.name == "manifest.json":
            params = json.loads(path.read_text())["params"]
            assert ShardedStore(path.parent.parent, path.parent.name, params=params).problem() is None, path
        else:
            assert path.suffix == ".npy" and (path.parent / "manifest.json").is_file(), path


def test_a_run_killed_five_times_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    start = time.monotonic()
    assert _demo(tmp_path / "reference").wait() == 0
    duration = time.monotonic() - start
    out, rng, kills = tmp_path / "killed", random.Random(0), 0
    for _ in range(20):  # a rerun may finish before its kill point; it then counts for nothing
        process = _demo(out, "--resume")
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        else:  # resumed runs have less left to do: aim earlier (a full suite once got 1 kill in 20)
            duration /= 2
        process.wait()
        _check_every_file_is_whole(out)
        if kills == 5:
            break
    assert kills == 5
    assert _demo(out, "--resume").wait() == 0
    _check_every_file_is_whole(out)
    assert _without_timings(out / "report.json") == _without_timings(tmp_path / "reference" / "report.json")
    assert not [p for p in out.rglob("*") if _temporary(p)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "reference"]  # nothing outside OUT


def test_two_runs_at_once_on_one_folder_both_finish_with_the_uninterrupted_result(tmp_path: Path) -> None:
    assert _demo(tmp_path / "reference", threads=1).wait() == 0  # the same threads, the same sums
    out = tmp_path / "shared"
    both = [_demo(out, "--resume", "--json", str(tmp_path / f"run{i}.json"), threads=1) for i in range(2)]
    assert [p.wait() for p in both] == [0, 0]
    reference = _without_timings(tmp_path / "reference" / "report.json")
    assert _without_timings(tmp_path / "run0.json") == _without_timings(tmp_path / "run1.json") == reference
    _check_every_file_is_whole(out)
    assert not [p for p in out.rglob("*") if _temporary(p)]
