"""Per-latent verdicts at scale: a dictionary of 1,024 / 2,048 / 4,096 latents at width 384.

The model is a residual MLP built in-process (random weights: the cost, not the verdicts, is measured
here), width 384, MLP 1,536, read at its residual stream after the block; its inputs are sparse
combinations of 4,096 random unit directions (L0 about 32), ``--rows`` of them (default 100,000).
Each run is ``Battery.run`` with one TopK SAE (k 32, one epoch, batches of 4,096) whose every latent
is a candidate: 2 weight controls (re-initialised, spectrum-matched; one copy each), 1 input control
(planted sparse features of matched sparsity), latent recurrence, latent ablation on 2,048 examples
with 100 null draws per latent (``NULL``; the default, 1,000, costs 10x more on a model that reads
every direction, as this random one does), Benjamini-Hochberg over every test. What a user does
today instead is fit the SAE once and look at it: the table puts one fit of the same SAE on the same
activations next to the battery, as a ratio.
Every run in its own process so that its peak resident memory is its own. Prints the table, where the
time goes, where the memory goes (each job's peak resident memory, the kernel's high-water mark reset
before it, ``/proc/self/clear_refs``: the jobs that set the run's peak, and each kind's largest), the
log-log slope of time against latents, and last ``seconds=<wall time at 4,096>``.

    python benchmarks/latent_verdicts.py [--rows N] [--latents 1024 2048 4096]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import TYPE_CHECKING

from peak_memory import in_fresh_process, rss_mib

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from featurecontrols.pipeline.context import RunContext
    from featurecontrols.pipeline.jobs import Job, Output

WIDTH, HIDDEN, FEATURES, L0, OUTPUTS = 384, 1536, 4096, 32, 64
NULL = 100  # latent ablation's draws per latent (p >= 1/101; BH rejects when >= 20% of latents are used)


def _model_and_inputs(rows: int) -> tuple[object, object]:
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(WIDTH, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, WIDTH))
            self.resid = nn.Identity()
            self.readout = nn.Linear(WIDTH, OUTPUTS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.readout(self.resid(x + self.mlp(x)))
            return out

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(FEATURES, WIDTH, generator=g), dim=1)
    x = torch.empty(rows, WIDTH)
    for start in range(0, rows, 8192):  # sparse codes drawn in chunks: never an (n, 4096) matrix
        n = min(8192, rows - start)
        codes = (torch.rand(n, FEATURES, generator=g) < L0 / FEATURES) * torch.rand(n, FEATURES, generator=g)
        x[start : start + n] = codes @ directions
    return Residual().eval(), x


class _PeakPerJob:
    """The in-process executor one job at a time, recording for each job, in order, its kind, the
    resident memory when it starts and its peak (MiB; the kernel's high-water mark reset before the
    job), and the run's peak."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, float, float]] = []
        self.high = 0.0  # the high-water mark before each reset, kept

    def run(
        self, ctx: RunContext, jobs: Sequence[Job], inputs: Mapping[Job, Output]
    ) -> Iterator[tuple[Job, Output]]:
        from featurecontrols.pipeline.executors import LocalExecutor

        for job in jobs:
            self.high = max(self.high, rss_mib("VmHWM"))
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # resets VmHWM to the current resident memory
            start = rss_mib("VmRSS")
            ((_, output),) = LocalExecutor().run(ctx, [job], inputs)
            condition = getattr(job, "condition", None)
            kind = type(job).__name__ + (f" ({condition.kind})" if condition is not None else "")
            self.jobs.append((kind, start, rss_mib("VmHWM")))
            yield job, output

    def peak(self) -> float:
        """The run's peak resident memory so far (MiB)."""
        return max(self.high, rss_mib("VmHWM"))


def _run(rows: int, latents: int) -> dict[str, object]:
    """One battery run and one bare SAE fit, in this (fresh) process."""
    import torch

    from featurecontrols import Battery
    from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures
    from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
    from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
    from featurecontrols.finders import SparseAutoencoder
    from featurecontrols.pipeline.candidates import Latents

    torch.set_num_threads(2)
    model, x = _model_and_inputs(rows)
    sae = SparseAutoencoder(d_sae=latents, k=L0, batch_size=4096, n_epochs=1, seed=0)
    executor = _PeakPerJob()
    battery = Battery(
        executor=executor,
        weight_controls=[ReinitialisedWeights(), SpectrumMatchedWeights()],
        input_controls=[PlantedSparseFeatures(n_features=latents, l0=L0)],
        n_weight_seeds=1,
        n_random_directions=NULL,
        batch_size=2048,  # the used axis runs on the first batch that covers used_examples (2,048)
        seed=0,
        progress=False,
    )
    before = rss_mib("VmRSS")
    start = time.perf_counter()
    result = battery.run(model, x, "resid", [Latents("sae", "resid", finder=sae)])
    seconds = time.perf_counter() - start
    peak = executor.peak() - before
    with torch.no_grad():
        acts: list[torch.Tensor] = []
        hook = model.resid.register_forward_hook(lambda m, i, o: acts.append(o))  # type: ignore[attr-defined]
        for chunk in x.split(8192):
            model(chunk)  # type: ignore[operator]
        hook.remove()
    fit_start = time.perf_counter()
    SparseAutoencoder(d_sae=latents, k=L0, batch_size=4096, n_epochs=1, seed=0).fit(torch.cat(acts))
    fit = time.perf_counter() - fit_start
    verdicts: dict[str, int] = {}
    for c in result.candidates:
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
    return {
        "seconds": seconds,
        "peak": peak,
        "fit": fit,
        "timings": dict(result.timings),
        "verdicts": verdicts,
        "jobs": [(kind, start - before, high - before) for kind, start, high in executor.jobs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--latents", type=int, nargs="+", default=[1024, 2048, 4096])
    args = parser.parse_args()
    runs = {m: in_fresh_process(_run, args.rows, m) for m in args.latents}
    print(f"{args.rows} activations at width {WIDTH}; 2 weight controls, 1 input control; 2 cores")
    print(f"{'latents':>7} {'battery s':>10} {'peak MiB':>9} {'one SAE fit s':>14} {'ratio':>6}  verdicts")
    for m, r in runs.items():
        ratio = float(r["seconds"]) / float(r["fit"])  # type: ignore[arg-type]
        print(
            f"{m:>7} {r['seconds']:>10.1f} {r['peak']:>9.0f} {r['fit']:>14.1f} {ratio:>6.1f}  {r['verdicts']}"
        )
    for m, r in runs.items():
        timings: dict[str, float] = r["timings"]  # type: ignore[assignment]
        steps = sorted(((k, v) for k, v in timings.items() if k != "total"), key=lambda kv: -kv[1])
        print(f"{m} latents, where the time goes (s): " + ", ".join(f"{k} {v:.1f}" for k, v in steps))
    for m, r in runs.items():
        jobs: list[tuple[str, float, float]] = r["jobs"]  # type: ignore[assignment]
        largest: dict[str, tuple[float, float]] = {}
        for kind, start, high in jobs:
            if kind not in largest or high - start > largest[kind][1]:
                largest[kind] = (start, high - start)
        ranked = sorted(largest.items(), key=lambda kv: -sum(kv[1]))
        print(
            f"{m} latents, where the memory goes (MiB above the run's start: resident when the job starts "
            "+ its own peak above that, the largest job of each kind): "
            + ", ".join(f"{k} {s:.0f} + {d:.0f}" for k, (s, d) in ranked)
        )
    ms = list(runs)
    if len(ms) > 1:
        lx = [math.log(m) for m in ms]
        ly = [math.log(float(runs[m]["seconds"])) for m in ms]  # type: ignore[arg-type]
        mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
        slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)
        print(f"time slope against latents (log-log): {slope:.2f}")
    print(f"seconds={float(runs[ms[-1]]['seconds']):.1f}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
