"""Command line: ``featurecontrols demo`` runs the battery on a ground-truth testbed."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from featurecontrols import report
from featurecontrols.battery import Battery
from featurecontrols.causal_effects import SteeringEffects
from featurecontrols.errors import FeatureControlsError
from featurecontrols.evidence import RunResult
from featurecontrols.sites import read_activations
from featurecontrols.steering_vectors import SteeringVectors
from featurecontrols.testbeds.base import Testbed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="featurecontrols", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train the planted residual testbed, run every control, print verdicts next to the ground truth",
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the testbed and of every control (default 0)"
    )
    demo.add_argument("--out", type=Path, default=Path("."), help="folder for report.json and report.html")
    demo.add_argument(
        "--json", type=Path, default=None, help="path of the JSON result (default OUT/report.json)"
    )
    demo.add_argument("--no-html", action="store_true", help="do not write OUT/report.html")
    demo.add_argument("--n-shuffles", type=int, default=None, help="shuffled-label null size (default: auto)")
    demo.add_argument("--weight-seeds", type=int, default=3, help="randomised copies per weight control")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        return _demo(args)
    except FeatureControlsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from featurecontrols.testbeds.planted_residual import PlantedResidualConfig, train_planted_residual

    start = time.perf_counter()
    testbed = train_planted_residual(PlantedResidualConfig(seed=args.seed))
    trained = time.perf_counter() - start
    battery = Battery(
        n_shuffles=args.n_shuffles, n_weight_seeds=args.weight_seeds, seed=args.seed, progress=not args.quiet
    )
    result = battery.run(
        testbed.model, testbed.inputs, testbed.site, testbed.features, ground_truth=testbed.ground_truth
    )
    result.steering = _steering_curves(testbed, result)
    result.timings = {"train testbed": trained, **result.timings, "total": time.perf_counter() - start}
    result.settings["testbed"] = {"name": testbed.name, "checks": testbed.checks}
    print(f"testbed: {testbed.description}\n")
    print(report.table(result))
    json_path = report.write_json(result, args.json or args.out / "report.json")
    print(f"\nwrote {json_path}")
    if not args.no_html:
        print(f"wrote {report.write_html(result, args.out / 'report.html')}")
    print(f"total {result.timings['total']:.1f} s")
    return 0


def _steering_curves(testbed: Testbed, result: RunResult) -> list[dict[str, Any]]:
    """Steer every decodable feature along each kind of vector (they are steered as one set)."""
    names = [f.name for f in result.features if f.axes["decodable"].status == "yes"]
    if not names:
        return []
    batches = list(torch.split(testbed.inputs, 1024))
    X = read_activations(testbed.model, batches, [testbed.site])[testbed.site]
    steering = SteeringVectors().fit(X, torch.stack([testbed.features[n] for n in names], dim=1))
    effects = SteeringEffects(alphas=(-2.0, -1.0, 0.0, 1.0, 2.0), log_probs=None, n_bootstrap=200)
    effects.fit(testbed.model, batches, testbed.site, steering, names)
    return [curve.to_dict() for curve in effects.curves_.values()]


if __name__ == "__main__":
    raise SystemExit(main())
