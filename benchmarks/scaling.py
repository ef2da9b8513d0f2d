"""How does a battery run's cost grow with examples, candidates, sites, weight-control copies and latents?

Each run is the battery with its defaults (shuffled labels; re-initialised and spectrum-matched
copies; the used axis by dual interchange; Holm over the whole run, so the automatic null sizes grow
with the number of tests) on a toy residual MLP (random weights, width 64, one block per site) and
Gaussian inputs; the labelled candidates are thresholds of random projections of the input, and the
dictionary is one TopK SAE (k = 8, batches of 256, 2 epochs) at the first site. One factor at a time
is varied 4x or more around the default (500 examples, 2 labelled candidates, 1 site, 1 copy per
weight control, 16 latents: small, because at 2,000 examples, 4 candidates, 2 sites, 2 copies and 64
latents one run took 286 s on 2 cores, 277 s of it on the used axis), every run in its own process
so that its peak memory is its own: wall time of ``Battery.run`` and the peak resident memory above
the process's memory before the run. The fitted slope of log(time) and log(memory) against
log(factor) says how cost grows (1.0: linearly); where the time goes is the battery's own
``timings``. Prints the tables and, last, ``max_slope=<the largest time slope>``.

A used test stops drawing its null once STOP draws reach the real change less the margin
(``controls/causal/moves.py``), so on this random model, where most candidates are not used, most
nulls stop early. ``--full-nulls`` draws every null in full: the cost when every candidate is used.

    python benchmarks/scaling.py [--quick] [--full-nulls]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from peak_memory import in_fresh_process, rss_mib

DEFAULT = {"examples": 500, "candidates": 2, "sites": 1, "copies": 1, "latents": 16}
FACTORS = {
    "examples": (250, 500, 1000, 2000),
    "candidates": (1, 2, 4, 8),
    "sites": (1, 2, 4),
    "copies": (1, 2, 4),
    "latents": (8, 16, 32, 64),
}
WIDTH, INPUT = 64, 16


@dataclass(frozen=True)
class Point:
    examples: int
    candidates: int
    sites: int
    copies: int
    latents: int


def _run(point: Point, full_nulls: bool) -> tuple[float, float, dict[str, float]]:
    """(seconds of Battery.run, peak MiB above the start, the battery's timings), in a fresh process;
    ``full_nulls``: no null stops early."""
    import torch
    from torch import nn

    from featurecontrols import Battery
    from featurecontrols.controls.causal import moves
    from featurecontrols.finders import SparseAutoencoder
    from featurecontrols.pipeline.candidates import Labelled, Latents

    if full_nulls:
        moves.STOP = sys.maxsize  # never stop a null early: the cost when every candidate is used
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(INPUT, WIDTH)]
    for _ in range(point.sites):
        layers += [nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU())]
    model = nn.Sequential(*layers, nn.Linear(WIDTH, 4)).eval()
    x = torch.randn(point.examples, INPUT, generator=g)
    projections = torch.randn(INPUT, point.candidates, generator=g)
    labels = (x @ projections > 0).float()
    sites = [str(i + 1) for i in range(point.sites)]
    candidates: list[Any] = [Labelled(f"f{j}", labels[:, j]) for j in range(point.candidates)]
    sae = SparseAutoencoder(d_sae=point.latents, k=8, batch_size=256, n_epochs=2, seed=0)
    candidates.append(Latents("sae", sites[0], finder=sae))
    battery = Battery(n_weight_seeds=point.copies, seed=0, progress=False)
    before = rss_mib("VmRSS")
    start = time.perf_counter()
    result = battery.run(model, x, sites, candidates)
    seconds = time.perf_counter() - start
    return seconds, rss_mib("VmHWM") - before, dict(result.timings)


def measured(point: Point, full_nulls: bool) -> tuple[float, float, dict[str, float]]:
    return in_fresh_process(_run, point, full_nulls)


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = [math.log(v) for v in xs], [math.log(max(v, 1e-9)) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smallest and largest value of each factor")
    parser.add_argument("--full-nulls", action="store_true", help="draw every null in full (no early stop)")
    args = parser.parse_args()
    base = Point(**DEFAULT)
    cache: dict[Point, tuple[float, float, dict[str, float]]] = {}
    rows, slopes = [], {}
    for factor, values in FACTORS.items():
        chosen = (values[0], values[-1]) if args.quick else values
        times, peaks = [], []
        for value in chosen:
            point = replace(base, **{factor: value})
            if point not in cache:
                cache[point] = measured(point, args.full_nulls)
            seconds, peak, timings = cache[point]
            times.append(seconds)
            peaks.append(peak)
            steps = sorted(((k, v) for k, v in timings.items() if k != "total"), key=lambda kv: -kv[1])
            where = ", ".join(f"{k} {v:.1f}" for k, v in steps)
            rows.append((factor, value, seconds, peak, where))
        slopes[factor] = (slope(list(chosen), times), slope(list(chosen), [max(p, 1.0) for p in peaks]))
    print(f"{'factor':<11} {'value':>6} {'seconds':>8} {'peak MiB':>9}  where the time goes (s)")
    for factor, value, seconds, peak, where in rows:
        print(f"{factor:<11} {value:>6} {seconds:>8.2f} {peak:>9.0f}  {where}")
    print(f"\n{'factor':<11} {'time slope':>10} {'memory slope':>13}")
    for factor, (t, m) in slopes.items():
        print(f"{factor:<11} {t:>10.2f} {m:>13.2f}")
    print(f"max_slope={max(t for t, _ in slopes.values()):.2f}")


if __name__ == "__main__":
    main()
