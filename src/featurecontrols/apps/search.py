"""``featurecontrols search``: probe search by raw accuracy and by selectivity, side by side.

Hewitt & Liang's setting (``testbeds/token_embeddings.py``): the property is linear in the embedding
except for 10% irregular types, and every type's label can also be memorised. The battery (shuffled
labels; control task over token ids) and two searches, by raw accuracy and by selectivity, go into
one report with their Pareto fronts.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from featurecontrols import report
from featurecontrols.pipeline.battery import Battery


def main(args: argparse.Namespace) -> int:
    """Run the battery and both searches; write report.json and report.html to ``args.out``."""
    from featurecontrols.measures.probe_search import ProbeSearch, SearchSpace
    from featurecontrols.testbeds.token_embeddings import token_embedding_task

    start = time.perf_counter()
    data = token_embedding_task(n=6000, vocab=300, d=16, exceptions=0.1, seed=args.seed)
    features = {"linear_property": data.labels}
    battery = Battery(
        weight_controls=[], run_used=False, seed=args.seed, progress=not args.quiet,
        run_dir=args.out / "runs" if args.resume else None,
    )  # fmt: skip
    activations = torch.nn.Sequential(torch.nn.Identity())  # the site "0" reads the embeddings as given
    result = battery.run(activations, data.activations, "0", features, cells=data.tokens)
    space = SearchSpace(steps=(200, 800))
    searches = [
        ProbeSearch(objective, n_trials=args.trials, space=space, seed=args.seed)
        .fit(data.activations, data.labels, data.tokens)
        .result_
        for objective in ("accuracy", "selectivity")
    ]
    result = replace(
        result,
        search={"linear_property": [s.as_dict() for s in searches]},
        timings={**result.timings, "total": time.perf_counter() - start},
    )
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
