"""Executors: every job of a run's plan, in-process (the default) or on a Ray cluster, resumable.

:func:`execute` runs the jobs stage by stage (a stage's jobs need only earlier stages' outputs).
With a ``results_dir``, each finished job's output is written atomically to
``results_dir/<run key>/<job key>.safetensors`` (tensors, string metadata and their sha256; nothing
pickled), and a rerun of the same run skips every job whose file is there and sound: an interrupted
run resumes, a damaged file is recomputed. Every job is a
pure function of the run context and its inputs, seeded by names, so every executor gives the same
numbers: jobs run with the driver's number of torch threads wherever they run.

On Ray the run context (model, batches, controls) is put in the object store once; activations travel
through the shard store on disk (``RunContext.store_root``, a folder every worker can read), never
through the driver; job outputs (scores, a fitted dictionary's state) come back as tensors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save

from featurecontrols import atomic
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.jobs import Job, Output
from featurecontrols.pipeline.store import fingerprint
from featurecontrols.progress import track


class Executor(Protocol):
    """Runs jobs and yields each with its output as it finishes (in any order)."""

    def run(
        self, ctx: RunContext, jobs: Sequence[Job], inputs: Mapping[Job, Output]
    ) -> Iterator[tuple[Job, Output]]: ...


def run_job(ctx: RunContext, job: Job, inputs: Mapping[Job, Output], threads: int) -> Output:
    """One job with ``threads`` torch threads; its wall time goes into the output's metadata."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        output = job.run(ctx, inputs)
        return replace(output, meta={**output.meta, "seconds": f"{time.perf_counter() - start:.6f}"})
    finally:
        torch.set_num_threads(previous)


def release_freed_memory() -> None:
    """Give the C heap's freed pages back to the system (glibc's ``malloc_trim(0)``; nothing where the
    C library has no such call). A job's large temporaries are freed when it ends, but glibc keeps
    many of their pages, so without this each job starts from about the last one's high-water mark.
    At 4,096 latents (``benchmarks/latent_verdicts.py``) the run peaked 0.38 GB higher without it, and
    took about 10% less time (the pages given back are faulted in again by the next job)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    library = ctypes.util.find_library("c")
    return None if library is None else getattr(ctypes.CDLL(library), "malloc_trim", None)


def _inputs(ctx: RunContext, job: Job, done: Mapping[Job, Output]) -> dict[Job, Output]:
    return {need: done[need] for need in job.needs(ctx)}


class LocalExecutor:
    """In-process, one job after another (the default), the freed heap given back after each."""

    def run(
        self, ctx: RunContext, jobs: Sequence[Job], inputs: Mapping[Job, Output]
    ) -> Iterator[tuple[Job, Output]]:
        threads = torch.get_num_threads()
        for job in jobs:
            output = run_job(ctx, job, _inputs(ctx, job, inputs), threads)
            release_freed_memory()
            yield job, output


class RayExecutor:
    """Jobs as Ray tasks. Connects to ``address``, else to the cluster named by the ``RAY_ADDRESS``
    environment variable, else starts a local Ray with ``num_cpus`` CPUs (no dashboard). Use as a
    context manager (or call ``shutdown``) to stop a Ray that this executor started.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise FeatureControlsError(
                "the Ray executor needs ray", "pip install 'ray>=2.9', or use the local executor"
            ) from None
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
                self._started = True
        return ray

    def run(
        self, ctx: RunContext, jobs: Sequence[Job], inputs: Mapping[Job, Output]
    ) -> Iterator[tuple[Job, Output]]:
        if not jobs:
            return
        if ctx.store_root is None:
            raise FeatureControlsError(
                "the Ray executor needs a folder for activations that every worker can read",
                "give the battery run_dir=... (on a cluster: a shared file system)",
            )
        ray = self._ray()
        task = ray.remote(run_job)
        context = ray.put(ctx)
        threads = torch.get_num_threads()
        pending = {task.remote(context, job, _inputs(ctx, job, inputs), threads): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])

    def shutdown(self) -> None:
        """Stop Ray if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def execute(
    ctx: RunContext,
    jobs: Sequence[Job],
    executor: Executor | None = None,
    results_dir: Path | None = None,
    progress: bool = False,
    given: Mapping[Job, Output] | None = None,
) -> dict[Job, Output]:
    """Every job's output, stage by stage; with ``results_dir``, finished jobs are kept and reused;
    jobs in ``given`` (work carried from another run: ``carried.py``) are taken as done."""
    executor = executor if executor is not None else LocalExecutor()
    folder = None if results_dir is None else results_dir / ctx.run_key
    done: dict[Job, Output] = {}
    for stage in sorted({job.stage for job in jobs}):
        todo = []
        for job in (j for j in jobs if j.stage == stage):
            saved = given[job] if given is not None and job in given else _load(folder, job, ctx.run_key)
            if saved is None:
                todo.append(job)
            else:
                done[job] = saved
        finished = executor.run(ctx, todo, done)
        for job, output in track(finished, f"jobs of stage {stage}", len(todo), progress):
            _save(folder, job, ctx.run_key, output)
            done[job] = output
    return done


def _path(folder: Path, job: Job, run_key: str) -> Path:
    return folder / f"{job.key(run_key)}.safetensors"


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the tensors' names, then of their dtypes, shapes and bytes (``store.fingerprint``)."""
    names = sorted(tensors)
    content = fingerprint(*(tensors[name] for name in names))
    return hashlib.sha256("\0".join([*names, content]).encode()).hexdigest()


def _save(folder: Path | None, job: Job, run_key: str, output: Output) -> None:
    if folder is None:
        return
    tensors = {name: t.detach().cpu().clone() for name, t in output.tensors.items()}  # no shared storage
    meta = {**output.meta, "job": repr(job), "sha256": _digest(tensors)}
    atomic.write_bytes(_path(folder, job, run_key), save(tensors, metadata=meta))


def _load(folder: Path | None, job: Job, run_key: str) -> Output | None:
    """A finished job's output, or None to recompute it: absent, stale (another job under the key),
    or damaged (unreadable, or its tensors fail the checksum written with them)."""
    path = None if folder is None else _path(folder, job, run_key)
    if path is None or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own errors on a truncated or garbled file
        warnings.warn(f"finished job {path} cannot be read ({err}); recomputing it", stacklevel=2)
        return None
    if meta.pop("job", None) != repr(job):
        return None  # a key collision or a stale file: recompute
    if meta.pop("sha256", None) != _digest(tensors):
        warnings.warn(f"finished job {path} fails its checksum; recomputing it", stacklevel=2)
        return None
    return Output(tensors, meta)
