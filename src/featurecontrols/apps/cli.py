"""Command line: ``featurecontrols demo`` runs the battery on a ground-truth testbed; ``run CONFIG`` a model;
``search`` searches probes by selectivity; ``bench`` benchmarks the controls themselves on every
ground-truth testbed."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from featurecontrols import report
from featurecontrols.adapters.sites import read_activations
from featurecontrols.axes.evidence import RunResult
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.causal_effects import SteeringEffects
from featurecontrols.measures.steering_vectors import SteeringVectors
from featurecontrols.pipeline.battery import Battery
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
    demo.add_argument(
        "--counterfactuals",
        action="store_true",
        help="used axis by counterfactual patching (each feature's inputs with one variable flipped) "
        "instead of directional ablation",
    )
    demo.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=None,
        help="also run the label-control job grid (site x feature x control x seed) on this executor, "
        "results in OUT/runs; ray joins RAY_ADDRESS, else starts locally",
    )
    demo.add_argument("--resume", action="store_true", help="skip grid jobs already finished in OUT/runs")
    run = sub.add_parser("run", help="run the battery per site as a TOML config describes (see run_config)")
    run.add_argument("config", type=Path, help="path of the TOML config")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    bench = sub.add_parser(
        "bench", help="benchmark the controls on every ground-truth testbed: AUROC, confusion matrix, FPR"
    )
    bench.add_argument("--fast", action="store_true", help="one seed, small nulls: a smoke test for CI")
    bench.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: 3, or 1 with --fast)")
    bench.add_argument("--testbeds", nargs="+", default=None, help="testbeds to run (default: all)")
    bench.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    bench.add_argument(
        "--n-null",
        type=int,
        default=None,
        help="shuffled-label and ablation null sizes (default: the mode's)",
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    search = sub.add_parser(
        "search",
        help="probe search by accuracy and by selectivity on token embeddings, side by side in the report",
    )
    search.add_argument("--out", type=Path, default=Path("runs/search"), help="folder for the reports")
    search.add_argument("--trials", type=int, default=16, help="probes tried per search (default 16)")
    search.add_argument("--seed", type=int, default=0, help="seed of the data, searches and controls")
    search.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        if args.command == "search":
            return _search(args)
        if args.command == "bench":
            from featurecontrols.apps.bench import main as bench_main

            return bench_main(
                args.fast, args.seeds, args.testbeds, args.json, n_null=args.n_null, progress=not args.quiet
            )
        if args.command == "run":
            from featurecontrols.apps.run_config import main as run_main

            return run_main(args.config, progress=not args.quiet)
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
        testbed.model, testbed.inputs, testbed.site, testbed.features, ground_truth=testbed.ground_truth,
        counterfactuals=testbed.counterfactuals if args.counterfactuals else None,
    )  # fmt: skip
    result.steering = _steering_curves(testbed, result)
    result.timings = {"train testbed": trained, **result.timings, "total": time.perf_counter() - start}
    result.settings["testbed"] = {"name": testbed.name, "checks": testbed.checks}
    if args.executor is not None:
        result.settings["grid"] = _grid(testbed, args)
    print(f"testbed: {testbed.description}\n")
    print(report.table(result))
    json_path = report.write_json(result, args.json or args.out / "report.json")
    print(f"\nwrote {json_path}")
    if not args.no_html:
        print(f"wrote {report.write_html(result, args.out / 'report.html')}")
    print(f"total {result.timings['total']:.1f} s")
    return 0


def _search(args: argparse.Namespace) -> int:
    """Hewitt & Liang's setting (``testbeds.token_embeddings``): the property is linear in the embedding
    except for 10% irregular types, and every type's label can also be memorised. The battery
    (shuffled labels; control task over token ids) and two searches, by raw accuracy and by
    selectivity, go into one report."""
    from featurecontrols.measures.probe_search import ProbeSearch, SearchSpace
    from featurecontrols.testbeds.token_embeddings import token_embedding_task

    start = time.perf_counter()
    data = token_embedding_task(n=6000, vocab=300, d=16, exceptions=0.1, seed=args.seed)
    features = {"linear_property": data.labels}
    battery = Battery(weight_controls=[], run_used=False, seed=args.seed, progress=not args.quiet)
    activations = torch.nn.Sequential(torch.nn.Identity())  # the site "0" reads the embeddings as given
    result = battery.run(activations, data.activations, "0", features, cells=data.tokens)
    space = SearchSpace(steps=(200, 800))
    searches = [
        ProbeSearch(objective, n_trials=args.trials, space=space, seed=args.seed)
        .fit(data.activations, data.labels, data.tokens)
        .result_
        for objective in ("accuracy", "selectivity")
    ]
    result.search["linear_property"] = [s.as_dict() for s in searches]
    result.timings["total"] = time.perf_counter() - start
    print(report.table(result))
    print(f"\n{'search by':<12} {'chosen probe':<44} {'acc':>6} {'control':>8} {'select.':>8} {'params':>7}")
    for s in searches:
        shown = (
            ("C",)
            if s.chosen.spec.kind == "linear"
            else ("hidden", "depth", "rank", "weight_decay", "dropout")
        )
        spec = s.chosen.spec.kind + " " + " ".join(f"{k}={getattr(s.chosen.spec, k):.3g}" for k in shown)
        c = s.chosen
        print(
            f"{s.objective:<12} {spec:<44} {c.accuracy:>6.3f} {c.control_accuracy:>8.3f} "
            f"{c.selectivity:>8.3f} {c.complexity:>7}"
        )
    print(f"\nwrote {report.write_json(result, args.out / 'report.json')}")
    print(f"wrote {report.write_html(result, args.out / 'report.html')}")
    print(f"total {result.timings['total']:.1f} s")
    return 0


def _grid(testbed: Testbed, args: argparse.Namespace) -> dict[str, Any]:
    """Both label controls as a job grid: activations in shards under OUT/activations, one result file per
    job under OUT/runs; control-task cells are the input's code (the token id)."""
    from featurecontrols.measures.probe_search import bit_cells
    from featurecontrols.pipeline.executors import LocalExecutor, RayExecutor, RunGrid, run_grid
    from featurecontrols.pipeline.store import ShardedStore, cache_key, fingerprint

    store = ShardedStore(
        args.out / "activations", cache_key(testbed.model, [testbed.site], fingerprint(testbed.inputs))
    )
    read_activations(testbed.model, list(torch.split(testbed.inputs, 1024)), [testbed.site], store=store)
    cells = bit_cells(testbed.inputs, range(testbed.inputs.shape[1]))
    grid = RunGrid(
        str(store.root), store.key, (testbed.site,), testbed.features, ("shuffled labels", "control task"),
        seeds=(0, 1, 2), cells=cells, seed=args.seed,
    )  # fmt: skip
    with RayExecutor() as ray_executor:
        executor = ray_executor if args.executor == "ray" else LocalExecutor()
        run = run_grid(grid, args.out / "runs", executor, resume=args.resume)
    print(f"grid: {len(run.results)} jobs ({run.computed} run, {run.reused} resumed) in {run.folder}")
    return {
        "folder": str(run.folder),
        "jobs": len(run.results),
        "computed": run.computed,
        "reused": run.reused,
    }


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
