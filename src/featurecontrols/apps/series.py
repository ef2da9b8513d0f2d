"""``featurecontrols series TESTBED``: the battery over a testbed's training checkpoints.

Trains the testbed keeping its weights every ``--every`` steps, runs the battery on every checkpoint
(``pipeline/series.py``: one family of tests, Benjamini-Hochberg over the whole series by default),
prints per feature the verdict and the used effect step by step next to the training's own loss and
accuracy, and writes ``OUT/series.json`` and ``OUT/series.html`` (the curves) atomically. Testbeds
with a training history: sparse parity (Barak et al. 2022: its relevant bits, the parity, and two
irrelevant bits) and the toy causal LM (topic, negated, the filler).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from featurecontrols import atomic, report
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.series import SeriesResult, run_series
from featurecontrols.report.series_html import series_to_html
from featurecontrols.testbeds.base import Testbed
from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity
from featurecontrols.testbeds.toy_causal_lm import toy_causal_lm_testbed

PATCHING = "counterfactual patching vs equal-norm noise"
TESTBEDS = ("sparse_parity", "toy_causal_lm")


def build(testbed: str, every: int, seed: int) -> Testbed:
    """The testbed trained with its checkpoints."""
    if testbed not in TESTBEDS:
        raise FeatureControlsError(f"no training history for testbed {testbed!r}", f"use one of {TESTBEDS}")
    if every < 1:
        raise FeatureControlsError(f"--every must be at least 1, got {every}", "give a number of steps")
    if testbed == "toy_causal_lm":
        return toy_causal_lm_testbed(seed, checkpoint_every=every)
    return train_sparse_parity(SparseParityConfig(seed=seed), checkpoint_every=every)


def default_features(tb: Testbed) -> list[str]:
    """Every model feature and the first two dataset features."""
    model = [n for n, g in tb.ground_truth.items() if g == "model feature"]
    return [*model, *[n for n, g in tb.ground_truth.items() if g == "dataset feature"][:2]]


def table(series: SeriesResult, tb: Testbed, names: list[str]) -> list[str]:
    """Rows: the training's measures, then per feature its verdict and patching effect per step."""
    head = ["", *(str(s) for s in series.steps)]
    rows = [
        [m, *(f"{c.measures[m]:.3f}" for c in series.checkpoints)] for m in series.checkpoints[0].measures
    ]
    for name in names:
        effects = series.effect(name, "used", PATCHING)
        verdicts = [c.verdict for c in series.trajectory(name)]
        rows.append(
            [
                f"{name} ({tb.ground_truth[name]})",
                *(f"{v[:7]} {e:.2f}" for v, e in zip(verdicts, effects, strict=True)),
            ]
        )
    return report.fixed_width([head, *rows])


def main(args: argparse.Namespace) -> int:
    """Run the series; print the table; write OUT/series.json."""
    tb = build(args.testbed, args.every, args.seed)
    names = list(args.features) if args.features else default_features(tb)
    unknown = [n for n in names if n not in tb.features]
    if unknown:
        raise FeatureControlsError(f"unknown feature(s) {unknown}", f"use names of {sorted(tb.features)}")
    battery = Battery(
        weight_controls=[ReinitialisedWeights()], n_weight_seeds=1, used_examples=args.used_examples,
        correction=args.correction, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    candidates = [c for c in tb.candidates() if c.name in names]
    series = run_series(battery, tb.model, tb.checkpoints, tb.inputs, tb.site, candidates)
    print("\n".join(table(series, tb, names)))
    out = atomic.write_json(Path(args.out) / "series.json", {"testbed": tb.name, **series.to_dict()})
    page = atomic.write_text(Path(args.out) / "series.html", series_to_html(series, names, tb.name))
    print(f"\n{series.n_tests} tests corrected together ({args.correction}); wrote {out} and {page}")
    return 0
