"""Command line: ``featurecontrols demo`` runs the battery on a ground-truth testbed; ``run CONFIG`` a model;
``toy-lm FOLDER`` trains the toy causal LM that ``examples/toy_lm/config.toml`` runs; ``series TESTBED``
runs it over a testbed's training checkpoints; ``search`` searches
probes by selectivity; ``bench`` benchmarks the controls themselves on every ground-truth testbed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featurecontrols.errors import FeatureControlsError


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the command; a bad input prints its problem and fix, exit code 2."""
    parser = argparse.ArgumentParser(prog="featurecontrols", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_arguments(sub)
    _other_arguments(sub)
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except FeatureControlsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _demo_arguments(sub: Any) -> None:
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
        help="run every job of the plan on this executor (ray joins RAY_ADDRESS, else starts locally; "
        "activations and finished jobs in OUT/runs)",
    )
    demo.add_argument(
        "--resume", action="store_true", help="keep finished jobs in OUT/runs and reuse them on a rerun"
    )


def _other_arguments(sub: Any) -> None:
    run = sub.add_parser("run", help="run the battery at the sites a TOML config describes (see run_config)")
    run.add_argument("config", type=Path, help="path of the TOML config")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    toy = sub.add_parser(
        "toy-lm",
        help="train the toy causal LM (GPT-2-style, 8,295 words) and save it as a transformers folder",
    )
    toy.add_argument("folder", type=Path, help="folder to create (kept if it holds this recipe's model)")
    toy.add_argument("--steps", type=int, default=300, help="training steps of 128 sequences (default 300)")
    toy.add_argument("--seed", type=int, default=0, help="seed of the weights and the data (default 0)")
    toy.add_argument("--quiet", action="store_true", help="no progress bar")
    series = sub.add_parser(
        "series", help="the battery over a testbed's training checkpoints: verdicts and used effects per step"
    )
    series.add_argument(
        "testbed", help="a testbed with a training history: sparse_parity, toy_causal_lm, modular_addition"
    )
    series.add_argument("--every", type=int, default=250, help="keep the weights every N steps (default 250)")
    series.add_argument(
        "--features", nargs="+", default=None, help="features to follow (default: see series.py)"
    )
    series.add_argument("--used-examples", type=int, default=2048, help="examples on the used axis")
    series.add_argument("--correction", choices=("bh", "holm"), default="bh", help="over the whole series")
    series.add_argument("--seed", type=int, default=0, help="seed of the testbed and of every control")
    series.add_argument("--out", type=Path, default=Path("runs/series"), help="folder for series.json")
    series.add_argument(
        "--no-reuse",
        action="store_true",
        help="redo the checkpoint-independent work (re-initialised copies) at every checkpoint",
    )
    series.add_argument("--quiet", action="store_true", help="no progress bars")
    bench = sub.add_parser(
        "bench", help="benchmark the controls on every ground-truth testbed: AUROC, confusion matrix, FPR"
    )
    bench.add_argument("--fast", action="store_true", help="one seed, one copy per control: a smoke test")
    bench.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: 3, or 1 with --fast)")
    bench.add_argument("--testbeds", nargs="+", default=None, help="testbeds to run (default: all)")
    bench.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    bench.add_argument(
        "--n-null",
        type=int,
        default=None,
        help="shuffled-label and ablation null sizes (default: the mode's)",
    )
    bench.add_argument(
        "--used-controls",
        nargs="+",
        default=None,
        help="used tests run side by side (default: the battery's, dual interchange, and latent ablation "
        "for dictionary latents)",
    )
    bench.add_argument(
        "--dictionary-baselines",
        nargs="+",
        default=(),
        help="frozen baselines on the found axis of dictionary latents (Korznikov et al. 2026): "
        "'frozen decoder', 'frozen encoder' (default: none)",
    )
    bench.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="keep activations and finished jobs here; a rerun of an interrupted bench resumes",
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    search = sub.add_parser(
        "search",
        help="probe search by accuracy and by selectivity on token embeddings, side by side in the report",
    )
    search.add_argument("--out", type=Path, default=Path("runs/search"), help="folder for the reports")
    search.add_argument("--trials", type=int, default=16, help="probes tried per search (default 16)")
    search.add_argument("--seed", type=int, default=0, help="seed of the data, searches and controls")
    search.add_argument(
        "--resume", action="store_true", help="keep the battery's finished jobs in OUT/runs and reuse them"
    )
    search.add_argument("--quiet", action="store_true", help="no progress bars")


def _dispatch(args: argparse.Namespace) -> int:
    """Each command imports only what it needs."""
    if args.command == "search":
        from featurecontrols.apps.search import main as search_main

        return search_main(args)
    if args.command == "bench":
        from featurecontrols.apps.bench import main as bench_main

        return bench_main(
            args.fast, args.seeds, args.testbeds, args.json, n_null=args.n_null,
            used_controls=args.used_controls, dictionary_baselines=args.dictionary_baselines,
            progress=not args.quiet, run_dir=args.run_dir,
        )  # fmt: skip
    if args.command == "series":
        from featurecontrols.apps.series import main as series_main

        return series_main(args)
    if args.command == "toy-lm":
        from featurecontrols.testbeds.toy_causal_lm import main as toy_main

        return toy_main(args.folder, args.steps, args.seed, progress=not args.quiet)
    if args.command == "run":
        from featurecontrols.apps.run_config import main as run_main

        return run_main(args.config, progress=not args.quiet)
    from featurecontrols.apps.demo import main as demo_main

    return demo_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
