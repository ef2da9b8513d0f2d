"""``featurecontrols series TESTBED``: the battery over a testbed's training checkpoints.

Trains the testbed keeping its weights every ``--every`` steps, runs the battery on every checkpoint
(``pipeline/series.py``: one family of tests, Benjamini-Hochberg over the whole series by default),
prints per feature the verdict and the learned and used effects step by step next to the training's
own measures, and writes ``OUT/series.json``, ``OUT/series.html`` (the curves) and ``OUT/series.svg``
(the measures above one verdict band per feature) atomically. Testbeds with a training history:
sparse parity (Barak et al. 2022: its relevant bits, the parity, and two irrelevant bits), the toy
causal LM (topic, negated, the filler) and modular addition (Nanda et al. 2023, retrained: cos/sin
(a + b) at the final model's key frequencies at the neurons, and cos(a) at a key and at a non-key
frequency, with the train, test, restricted and excluded losses).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from featurecontrols import atomic, report
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.series import SeriesResult, run_series
from featurecontrols.report.series_html import series_timeline, series_to_html
from featurecontrols.testbeds.base import Testbed
from featurecontrols.testbeds.modular_addition import (
    ModularAdditionConfig,
    modular_addition_testbed,
    train_modular_addition,
)
from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity
from featurecontrols.testbeds.toy_causal_lm import toy_causal_lm_testbed

TESTBEDS = ("sparse_parity", "toy_causal_lm", "modular_addition")


def build(testbed: str, every: int, seed: int, progress: bool = True) -> Testbed:
    """The testbed trained with its checkpoints."""
    if testbed not in TESTBEDS:
        raise FeatureControlsError(f"no training history for testbed {testbed!r}", f"use one of {TESTBEDS}")
    if every < 1:
        raise FeatureControlsError(f"--every must be at least 1, got {every}", "give a number of steps")
    if testbed == "toy_causal_lm":
        return toy_causal_lm_testbed(seed, checkpoint_every=every)
    if testbed == "modular_addition":
        config = ModularAdditionConfig(seed=seed)
        return modular_addition_testbed(
            train_modular_addition(config, progress=progress, checkpoint_every=every)
        )
    return train_sparse_parity(SparseParityConfig(seed=seed), checkpoint_every=every)


def default_features(tb: Testbed) -> list[str]:
    """Every model feature and two dataset features: the first two, or for modular addition cos(w a)
    at the first key and the first non-key frequency (the frequency is the name's last part)."""
    model = [n for n, g in tb.ground_truth.items() if g == "model feature"]
    dataset = [n for n, g in tb.ground_truth.items() if g == "dataset feature"]
    if tb.name != "modular_addition":
        return [*model, *dataset[:2]]
    keys = {n.rsplit("_", 1)[1] for n in model}
    inputs = [n for n in dataset if n.startswith("cos_a_")]
    return [
        *model,
        *(next(n for n in inputs if (n.rsplit("_", 1)[1] in keys) == key) for key in (True, False)),
    ]


def table(series: SeriesResult, tb: Testbed, names: list[str]) -> list[str]:
    """Rows: the training's measures, then per feature its verdict and its first learned and first used
    test's effects per step."""
    head = ["", *(str(s) for s in series.steps)]
    rows = [
        [m, *(f"{c.measures[m]:.3f}" for c in series.checkpoints)] for m in series.checkpoints[0].measures
    ]
    for name in names:
        last = series.trajectory(name)[-1]
        learned, used = (
            series.effect(name, a, last.axes[a].evidence[0].control) for a in ("learned", "used")
        )
        verdicts = [c.verdict for c in series.trajectory(name)]
        cells = (f"{v[:7]} {a:.2f}/{b:.2f}" for v, a, b in zip(verdicts, learned, used, strict=True))
        rows.append([f"{name} ({tb.ground_truth[name]})", *cells])
    return report.fixed_width([head, *rows])


def main(args: argparse.Namespace) -> int:
    """Run the series; print the table; write OUT/series.json."""
    tb = build(args.testbed, args.every, args.seed, progress=not args.quiet)
    names = list(args.features) if args.features else default_features(tb)
    unknown = [n for n in names if n not in tb.features]
    if unknown:
        raise FeatureControlsError(f"unknown feature(s) {unknown}", f"use names of {sorted(tb.features)}")
    # The battery's weight controls and copies: with one reinitialised copy, the learned test called
    # 12 of modular addition's 45 features learned at its random initialisation (README).
    battery = Battery(
        used_examples=args.used_examples, correction=args.correction, seed=args.seed, progress=not args.quiet
    )
    candidates = [c for c in tb.candidates() if c.name in names]
    start = time.perf_counter()
    series = run_series(
        battery, tb.model, tb.checkpoints, tb.inputs, tb.site, candidates, reuse=not args.no_reuse
    )
    seconds = time.perf_counter() - start
    print("\n".join(table(series, tb, names)))
    print("cells: verdict, then the effects of the first learned and the first used test")
    print(f"battery over {len(series.runs)} checkpoints: {seconds:.1f} s, {sum(series.reused)} jobs reused")
    out = atomic.write_json(Path(args.out) / "series.json", {"testbed": tb.name, **series.to_dict()})
    page = atomic.write_text(Path(args.out) / "series.html", series_to_html(series, tb.name))
    figure = atomic.write_text(Path(args.out) / "series.svg", series_timeline(series, tb.name))
    print(f"\n{series.n_tests} tests corrected together ({args.correction}); wrote {out}, {page}, {figure}")
    return 0
