"""Scale-out: the job grid of a run (site x feature x control x seed), in-process or on Ray.

A job is a pure function of the grid and its coordinates: it loads the site's activations from the
shard store (``featurecontrols.pipeline.store``) by reference, draws ``n_null`` control label columns with
the seed ``derive_seed(grid.seed, site, feature, control, seed)``, fits the probe once on
[real labels, control labels] on the grid's split, and returns the held-out accuracy, the control
accuracies and the permutation p-value p = (1 + #{b : control_b >= real}) / (1 + B). So every
executor gives the same numbers, and only paths (never activations) leave the driver.

``run_grid`` writes each finished job's result atomically to ``run_dir/<grid key>/<job key>.json``;
a rerun of the same grid skips the jobs whose file is there, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from featurecontrols import atomic
from featurecontrols.axes.decodable import fit_and_check
from featurecontrols.controls.base import LabelControl
from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.finders.ridge_probe import RidgeProbe
from featurecontrols.pipeline.split import Split
from featurecontrols.pipeline.store import ShardedStore, fingerprint
from featurecontrols.seeding import generator
from featurecontrols.stats import permutation_p_value

ControlName = Literal["shuffled labels", "control task"]


@dataclass(frozen=True)
class Job:
    """One cell of the grid; ``key`` is a sha256 of its coordinates (the same on every machine)."""

    site: str
    feature: str
    control: ControlName
    seed: int

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class JobResult:
    """Held-out accuracy on the real labels, on each control draw, and the permutation p-value."""

    job: Job
    accuracy: float
    control_accuracies: tuple[float, ...]
    p_value: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.job.key, "control_accuracies": list(self.control_accuracies)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobResult:
        return cls(Job(**d["job"]), d["accuracy"], tuple(d["control_accuracies"]), d["p_value"])


@dataclass(frozen=True, eq=False)
class RunGrid:
    """The grid of a run over activations already in a shard store (``ShardedStore(store_root, store_key)``).

    ``labels`` maps each feature to its 0/1 labels (one per activation row); ``cells`` (n,) are the
    control task's cells (needed only for the "control task" control). Every job shares one split,
    drawn from ``seed``. ``store_root`` must be a path that every worker can read.
    """

    store_root: str
    store_key: str
    sites: tuple[str, ...]
    labels: Mapping[str, Tensor]
    controls: tuple[ControlName, ...] = ("shuffled labels",)
    seeds: tuple[int, ...] = (0,)
    cells: Tensor | None = None
    n_null: int = 100
    probe: Probe = field(default_factory=RidgeProbe)
    test_fraction: float = 0.3
    seed: int = 0

    def jobs(self) -> list[Job]:
        """Every job, in site, feature, control, seed order."""
        if "control task" in self.controls and self.cells is None:
            raise FeatureControlsError(
                "the grid has the control task among its controls but no cells",
                "pass cells=(token id, or any integer key, per activation row)",
            )
        return [
            Job(site, feature, control, seed)
            for site in self.sites
            for feature in self.labels
            for control in self.controls
            for seed in self.seeds
        ]

    @property
    def key(self) -> str:
        """sha256 of everything that changes a job's numbers (the activations enter by their store key)."""
        settings = [self.store_key, self.sites, sorted(self.labels), self.n_null, self.test_fraction]
        h = hashlib.sha256(json.dumps([*settings, self.seed]).encode())
        h.update(f"{type(self.probe).__qualname__} {sorted(vars(self.probe).items())}".encode())
        tensors = [self.labels[name] for name in sorted(self.labels)]
        h.update(fingerprint(*tensors, *([] if self.cells is None else [self.cells])).encode())
        return h.hexdigest()[:32]


def run_job(grid: RunGrid, job: Job) -> JobResult:
    """The job's numbers (module docstring): a pure function of ``grid`` and ``job``."""
    X = ShardedStore(grid.store_root, grid.store_key).load(job.site)
    y = torch.as_tensor(grid.labels[job.feature]).reshape(-1)
    split = Split.random(X.shape[0], grid.test_fraction, generator(grid.seed, "split"))
    control: LabelControl = (
        ShuffledLabels() if job.control == "shuffled labels" else ControlTask(_cells(grid))
    )
    draw = generator(grid.seed, job.site, job.feature, job.control, job.seed)
    null = control.null_labels(y, grid.n_null, draw)
    Y = torch.cat([y[:, None].to(null.dtype), null], dim=1)
    accuracy = fit_and_check(grid.probe, X, Y, split).double().mean(dim=0)
    p = permutation_p_value(accuracy[:1], accuracy[None, 1:])
    return JobResult(job, float(accuracy[0]), tuple(accuracy[1:].tolist()), float(p[0]))


def _cells(grid: RunGrid) -> Tensor:
    assert grid.cells is not None  # checked by RunGrid.jobs
    return grid.cells


class Executor(Protocol):
    """Runs jobs and yields their results as they finish (in any order)."""

    def run(self, grid: RunGrid, jobs: Sequence[Job]) -> Iterator[JobResult]: ...


class LocalExecutor:
    """In-process, one job after another (the default)."""

    def run(self, grid: RunGrid, jobs: Sequence[Job]) -> Iterator[JobResult]:
        for job in jobs:
            yield run_job(grid, job)


class RayExecutor:
    """Jobs as Ray tasks. Connects to ``address``, else to the cluster named by the ``RAY_ADDRESS``
    environment variable, else starts a local Ray with ``num_cpus`` CPUs (no dashboard). The grid is
    put in the object store once; each task reads its activations from the shard store's path.
    Use as a context manager (or call ``shutdown``) to stop a Ray that this executor started.
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

    def run(self, grid: RunGrid, jobs: Sequence[Job]) -> Iterator[JobResult]:
        if not jobs:
            return
        ray = self._ray()
        task = ray.remote(run_job)
        grid_ref = ray.put(grid)
        pending = [task.remote(grid_ref, job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def shutdown(self) -> None:
        """Stop Ray if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


@dataclass(frozen=True)
class GridRun:
    """Every job's result in grid order, and how many were computed now or read from an earlier run."""

    folder: Path
    results: tuple[JobResult, ...]
    computed: int
    reused: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "computed": self.computed,
            "reused": self.reused,
            "results": [r.as_dict() for r in self.results],
        }


def run_grid(
    grid: RunGrid, run_dir: str | os.PathLike[str], executor: Executor | None = None, *, resume: bool = True
) -> GridRun:
    """Run every job of ``grid`` not already finished under ``run_dir/<grid.key>`` (all of them when
    ``resume`` is false), writing each result atomically as it arrives."""
    executor = executor if executor is not None else LocalExecutor()
    folder = Path(run_dir) / grid.key
    jobs = grid.jobs()
    finished: dict[str, JobResult] = {}
    if resume:
        for job in jobs:
            path = folder / f"{job.key}.json"
            if path.is_file():
                finished[job.key] = JobResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    reused = len(finished)
    pending = [job for job in jobs if job.key not in finished]
    for result in executor.run(grid, pending):
        atomic.write_json(folder / f"{result.job.key}.json", result.as_dict())
        finished[result.job.key] = result
    return GridRun(folder, tuple(finished[job.key] for job in jobs), len(pending), reused)
