"""What does Ray buy on a weight-control-heavy plan, and what travels through the driver?

One plan: an MLP 32 -> W -> W -> W -> 32 (``--width`` W, random weights) on 4,000 Gaussian inputs, 6
labelled features (thresholds of random projections of the input) at its last hidden layer, the
learned axis only (``run_used=False``) and ``--copies`` copies per weight control (re-initialised
and spectrum-matched: an SVD of every W x W matrix per copy), run in-process (the default
executor) and on a local Ray with 1 and with 2 worker CPUs; every run keeps activations in a fresh
``run_dir`` (Ray needs one). Ray starts before the timing; the wall time is ``Battery.run``'s. Per
run: the jobs, the bytes of the outputs that came back to the driver (the sum over jobs of their
tensors), and the size of the run context as Ray serialises it into the object store, once per stage
of the plan (``ray.cloudpickle``; nothing is read back from it here). The overhead per job is
(Ray with 1 CPU - in-process) / jobs. Torch threads: the driver's in-process and with 1 Ray CPU,
1 per worker with 2 (2 cores). Prints a table and, last, ``speedup=<in-process / Ray with 2 CPUs>``.

    python benchmarks/ray_speed.py [--copies 8] [--width 1024]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from featurecontrols import Battery
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.executors import Executor, LocalExecutor, RayExecutor
from featurecontrols.pipeline.jobs import Job, Output

INPUT, EXAMPLES, FEATURES = 32, 4000, 6


@dataclass(frozen=True)
class Plan:
    model: torch.nn.Module
    inputs: torch.Tensor
    features: dict[str, torch.Tensor]
    site: str = "5"


def plan(width: int) -> Plan:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    relu = torch.nn.ReLU
    model = torch.nn.Sequential(
        torch.nn.Linear(INPUT, width), relu(), torch.nn.Linear(width, width), relu(),
        torch.nn.Linear(width, width), relu(), torch.nn.Linear(width, INPUT),
    ).eval()  # fmt: skip
    x = torch.randn(EXAMPLES, INPUT, generator=g)
    labels = (x @ torch.randn(INPUT, FEATURES, generator=g) > 0).float()
    return Plan(model, x, {f"f{j}": labels[:, j] for j in range(FEATURES)})


@dataclass
class Counting:
    """Runs like ``inner`` and counts the jobs and the bytes of their outputs (what the driver got)."""

    inner: Executor
    jobs: int = 0
    output_bytes: int = 0
    context_bytes: list[int] = field(default_factory=list)

    def run(
        self, ctx: RunContext, jobs: Sequence[Job], inputs: Mapping[Job, Output]
    ) -> Iterator[tuple[Job, Output]]:
        if isinstance(self.inner, RayExecutor) and jobs:
            import ray.cloudpickle

            self.context_bytes.append(len(ray.cloudpickle.dumps(ctx)))
        for job, output in self.inner.run(ctx, jobs, inputs):
            self.jobs += 1
            self.output_bytes += sum(t.numel() * t.element_size() for t in output.tensors.values())
            yield job, output


def timed_run(p: Plan, executor: Executor, copies: int) -> tuple[float, Counting, dict[str, Any]]:
    counting = Counting(executor)
    with tempfile.TemporaryDirectory() as run_dir:
        battery = Battery(
            n_weight_seeds=copies, run_used=False, executor=counting, run_dir=Path(run_dir), progress=False
        )
        start = time.perf_counter()
        result = battery.run(p.model, p.inputs, p.site, p.features)
        seconds = time.perf_counter() - start
    return seconds, counting, result.to_dict()["candidates"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies per weight control")
    parser.add_argument("--width", type=int, default=1024, help="width W of the MLP's hidden layers")
    args = parser.parse_args()
    testbed = plan(args.width)
    threads = torch.get_num_threads()
    rows = []
    local_s, local, reference = timed_run(testbed, LocalExecutor(), args.copies)
    rows.append(("in-process", threads, local_s, local))
    results = {}
    for cpus in (1, 2):
        torch.set_num_threads(threads if cpus == 1 else 1)
        with RayExecutor(num_cpus=cpus) as ray:
            ray._ray()  # start Ray before the clock
            seconds, counting, results[cpus] = timed_run(testbed, ray, args.copies)
        rows.append((f"Ray, {cpus} CPU", torch.get_num_threads(), seconds, counting))
    torch.set_num_threads(threads)
    print(f"MLP of width {args.width}, {FEATURES} features, learned axis, {args.copies} copies per control")
    header = ("executor", "threads", "seconds", "jobs", "output MiB", "context MiB")
    print(f"{header[0]:<12} {header[1]:>7} {header[2]:>8} {header[3]:>5} {header[4]:>11} {header[5]:>12}")
    for name, t, seconds, c in rows:
        context = f"{sum(c.context_bytes) / 2**20:.2f}" if c.context_bytes else "-"
        print(f"{name:<12} {t:>7} {seconds:>8.2f} {c.jobs:>5} {c.output_bytes / 2**20:>11.2f} {context:>12}")
    ray1_s = rows[1][2]
    print(f"overhead per job on Ray: {(ray1_s - local_s) / local.jobs * 1000:.0f} ms")
    print(f"same numbers on Ray with 1 CPU as in-process: {results[1] == reference}")
    print(f"ray2_over_ray1={ray1_s / rows[2][2]:.2f}")
    print(f"speedup={local_s / rows[2][2]:.2f}")


if __name__ == "__main__":
    main()
