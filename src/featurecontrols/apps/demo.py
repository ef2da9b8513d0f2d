"""``featurecontrols demo``: the planted residual testbed under every control, verdicts next to the truth.

The testbed (``testbeds/planted_residual.py``) is trained in-process; the battery judges its labelled
features at ``resid_post`` (by default with directional ablation on the used axis, with
``--counterfactuals`` by counterfactual patching); every decodable feature is then steered along
each kind of steering vector, and the report shows the curves.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import torch

from featurecontrols import report
from featurecontrols.adapters import adapt
from featurecontrols.measures.causal_effects import SteeringEffects
from featurecontrols.measures.steering_vectors import SteeringVectors
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.executors import LocalExecutor, RayExecutor
from featurecontrols.pipeline.results import RunResult, TestbedInfo
from featurecontrols.testbeds.base import Testbed


def main(args: argparse.Namespace) -> int:
    """Train the testbed, run the battery, write report.json and report.html to ``args.out``."""
    from featurecontrols.testbeds.planted_residual import PlantedResidualConfig, train_planted_residual

    start = time.perf_counter()
    testbed = train_planted_residual(PlantedResidualConfig(seed=args.seed))
    trained = time.perf_counter() - start
    with RayExecutor() as ray:
        battery = Battery(
            n_shuffles=args.n_shuffles, n_weight_seeds=args.weight_seeds, seed=args.seed,
            progress=not args.quiet,
            executor=ray if args.executor == "ray" else LocalExecutor(),
            run_dir=args.out / "runs" if args.resume or args.executor == "ray" else None,
        )  # fmt: skip
        result = battery.run(
            testbed.model, testbed.inputs, testbed.site, testbed.features, ground_truth=testbed.ground_truth,
            counterfactuals=testbed.counterfactuals if args.counterfactuals else None,
        )  # fmt: skip
    result = replace(
        result,
        steering=tuple(steering_curves(testbed, result)),
        testbed=TestbedInfo(testbed.name, testbed.description, testbed.checks),
        timings={"train testbed": trained, **result.timings, "total": time.perf_counter() - start},
    )
    print(f"testbed: {testbed.description}\n")
    print(report.table(result))
    print(f"\nwrote {report.write_json(result, args.json or args.out / 'report.json')}")
    if not args.no_html:
        print(f"wrote {report.write_html(result, args.out / 'report.html')}")
    print(f"total {result.timings['total']:.1f} s")
    return 0


def steering_curves(testbed: Testbed, result: RunResult) -> list[dict[str, Any]]:
    """Steer every decodable feature along each kind of vector (they are steered as one set)."""
    names = [c.name for c in result.candidates if c.axes["decodable"].status == "yes"]
    if not names:
        return []
    batches = list(torch.split(testbed.inputs, 1024))
    adapter = adapt(testbed.model)
    X = adapter.activations(batches, [adapter.resolve(testbed.site)])[testbed.site]
    steering = SteeringVectors().fit(X, torch.stack([testbed.features[n] for n in names], dim=1))
    effects = SteeringEffects(alphas=(-2.0, -1.0, 0.0, 1.0, 2.0), log_probs=None, n_bootstrap=200)
    effects.fit(adapter, batches, testbed.site, steering, names)
    return [curve.to_dict() for curve in effects.curves_.values()]
