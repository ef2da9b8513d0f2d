"""Peak memory of the used axis on a causal LM with GPT-2's 50,257-token vocabulary.

A GPT-2-style model built from a config (2 layers, width 64, 4 heads, vocabulary 50,257; random
weights: memory does not depend on training), 2,048 sequences of 64 random token ids in batches of 16,
next-token logits at every one of the 64 positions (the used axis' largest output). The used axis'
measure, ``measures/output_change.OutputChange``, runs the clean pass (spread of the distributions),
then ``--interventions`` random-direction ablations at ``blocks.1.hook_resid_post``, each over every
sequence, as the battery stacks them. Its memory is bounded by one batch, whatever the number of
sequences and interventions.

Against it, what a notebook does: keep the clean logits of every sequence (float32), then for each
intervention compute log-softmax of both and the KL. Run on ``--naive-sequences`` (128) sequences
only: its peak grows with the number of sequences (the clean logits alone are
2,048 x 64 x 50,257 x 4 bytes = 26.3 GB at 2,048 sequences, more than this machine has).

Each measurement runs in its own process; the peak is VmHWM above the process's resident memory
after the model is built. Prints the table and, last, ``peak_gb=<ours at 2,048 sequences, GB>``.

    python benchmarks/causal_lm_memory.py [--sequences 2048] [--interventions 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from peak_memory import in_fresh_process, rss_mib

VOCAB, POSITIONS, WIDTH, BATCH = 50_257, 64, 64, 16
SITE = "blocks.1.hook_resid_post"


def _setup(sequences: int, interventions: int) -> tuple[Any, list[dict[str, Any]], list[Any]]:
    """(adapter, batches, one ablation per intervention: a random unit direction projected out), seeded."""
    import torch
    import transformers
    from torch.nn import functional

    from featurecontrols.adapters.huggingface import HuggingFaceCausalLM

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=WIDTH, n_layer=2, n_head=4, n_positions=POSITIONS, vocab_size=VOCAB,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    adapter = HuggingFaceCausalLM(transformers.GPT2LMHeadModel(config).eval())
    g = torch.Generator().manual_seed(1)
    batches = [
        {"input_ids": torch.randint(0, VOCAB, (min(BATCH, sequences - s), POSITIONS), generator=g)}
        for s in range(0, sequences, BATCH)
    ]
    units = functional.normalize(torch.randn(interventions, WIDTH, generator=g), dim=1)
    return adapter, batches, [lambda h, u=u: h - (h @ u)[..., None] * u for u in units]


def ours(sequences: int, interventions: int) -> tuple[float, float, float]:
    """(peak MiB above the start, seconds, mean KL) of OutputChange."""
    from featurecontrols.measures.output_change import OutputChange

    adapter, batches, ablations = _setup(sequences, interventions)
    before = rss_mib("VmRSS")
    start = time.perf_counter()
    change = OutputChange(adapter, batches, adapter.resolve(SITE))
    out = change.under_stacked([[ablation] * len(batches) for ablation in ablations])
    return rss_mib("VmHWM") - before, time.perf_counter() - start, float(out.mean()) * change.spread


def naive(sequences: int, interventions: int) -> tuple[float, float, float]:
    """(peak MiB above the start, seconds, mean KL) of the notebook way: every clean logit kept."""
    import torch
    from torch.nn import functional

    adapter, batches, ablations = _setup(sequences, interventions)
    site = adapter.resolve(SITE)
    before = rss_mib("VmRSS")
    start = time.perf_counter()
    with torch.no_grad():
        clean = torch.cat([adapter.outputs(b) for b in batches])
        kls = []
        for ablation in ablations:
            with adapter.intervening([(site, ablation)]):
                changed = torch.cat([adapter.outputs(b) for b in batches])
            p, q = functional.log_softmax(clean, -1), functional.log_softmax(changed, -1)
            kls.append(float((p.exp() * (p - q)).sum(-1).mean()))
    return rss_mib("VmHWM") - before, time.perf_counter() - start, sum(kls) / len(kls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=2048)
    parser.add_argument("--naive-sequences", type=int, default=128)
    parser.add_argument("--interventions", type=int, default=2)
    args = parser.parse_args()
    rows = [
        (
            "featurecontrols",
            args.naive_sequences,
            *in_fresh_process(ours, args.naive_sequences, args.interventions),
        ),
        (
            "all logits kept",
            args.naive_sequences,
            *in_fresh_process(naive, args.naive_sequences, args.interventions),
        ),
        ("featurecontrols", args.sequences, *in_fresh_process(ours, args.sequences, args.interventions)),
    ]
    print(
        f"vocabulary {VOCAB:,}, {POSITIONS} positions, batches of {BATCH}, {args.interventions} interventions"
    )
    print(f"{'method':<16} {'sequences':>9} {'peak GB':>8} {'seconds':>8} {'mean KL':>10}")
    for method, n, peak, seconds, kl in rows:
        print(f"{method:<16} {n:>9} {peak * 2**20 / 1e9:>8.2f} {seconds:>8.1f} {kl:>10.3g}")
    kept = args.sequences * POSITIONS * VOCAB * 4 / 1e9
    print(
        f"all logits kept at {args.sequences} sequences: {kept:.1f} GB for the clean logits alone (not run)"
    )
    print(
        f"peak_ratio={rows[1][2] / rows[0][2]:.1f} "
        f"(all logits kept / featurecontrols, {args.naive_sequences} sequences)"
    )
    print(f"peak_gb={rows[2][2] * 2**20 / 1e9:.2f}")


if __name__ == "__main__":
    main()
