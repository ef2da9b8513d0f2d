"""What does reading one site's activations of all-MiniLM-L6-v2 cost, next to a plain forward pass?

One run, same batches (the built-in token dataset), same machine, methods interleaved over repeats:
- a plain forward pass of the transformers model (every layer, no hooks);
- transformers' own ``output_hidden_states=True``, keeping the site's non-pad tokens;
- featurecontrols ``read_activations`` through a token-level ``HuggingFaceEncoder``, in memory;
- the same, streamed to disk in shards with ``featurecontrols.pipeline.store``.
The site is the last layer's output, so the project cannot win by stopping the forward pass early.
Peak memory is the peak resident set size above the level before the method (sampled every 2 ms).
TransformerLens cannot load this model (it has no all-MiniLM-L6-v2 config), so it is not compared.
Prints a table and, last, ``overhead=<featurecontrols in memory / plain forward time>`` (median of
the per-repeat ratios, which a shared machine's changing load disturbs less than a ratio of medians).

    HF_HUB_OFFLINE=1 python benchmarks/activations_speed.py [--sentences 512] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurecontrols.adapters.huggingface import READOUT_MASK, HuggingFaceEncoder
from featurecontrols.apps.run_config import load_model
from featurecontrols.pipeline.store import ShardedStore
from featurecontrols.testbeds.text_tasks import encode, make_task

SITE = "blocks.5.hook_resid_post"
PLAIN = "plain forward (transformers, no hooks)"
IN_MEMORY = "featurecontrols read_activations, in memory"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measured(fn: Callable[[], Any]) -> tuple[float, int]:
    """Wall time of ``fn()`` and its peak RSS above the RSS before it (sampled by a thread)."""
    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    return elapsed, max(peak[0], rss()) - base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer, _ = load_model("all-minilm-l6-v2")
    batches, _ = encode(make_task("tokens", args.sentences, seed=0), tokenizer, args.batch)
    inputs = [{k: v for k, v in b.items() if k != READOUT_MASK} for b in batches]
    n_tokens = sum(int(b[READOUT_MASK].sum()) for b in batches)
    layer = int(SITE.split(".")[1]) + 1  # hidden_states[0] is the embeddings' output
    encoder = HuggingFaceEncoder(model, "token")
    tap = encoder.resolve(SITE)
    folder = Path(tempfile.mkdtemp(prefix="fc-bench-"))

    def plain() -> None:
        with torch.no_grad():
            for b in inputs:
                model(**b)

    def hidden_states() -> torch.Tensor:
        with torch.no_grad():
            rows = [
                model(**b, output_hidden_states=True).hidden_states[layer][m[READOUT_MASK]]
                for b, m in zip(inputs, batches, strict=True)
            ]
        return torch.cat(rows)

    def in_memory() -> torch.Tensor:
        return encoder.activations(batches, [tap])[str(tap)]

    runs = [0]

    def streamed() -> torch.Tensor:
        runs[0] += 1
        store = ShardedStore(folder, f"run{runs[0]}", shard_rows=4096)
        encoder.activations(batches, [tap], store=store)
        return next(iter(store.iter_shards(tap)))

    methods: dict[str, Callable[[], Any]] = {
        PLAIN: plain,
        "transformers output_hidden_states": hidden_states,
        IN_MEMORY: in_memory,
        "featurecontrols read_activations, streamed to disk": streamed,
    }
    torch.testing.assert_close(in_memory(), hidden_states())  # the same numbers, before timing
    plain()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks: dict[str, list[int]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t, peak = measured(fn)
            times[name].append(t)
            peaks[name].append(peak)

    print(
        f"all-MiniLM-L6-v2, site {SITE} per token: {args.sentences} sentences, {n_tokens} tokens, "
        f"batch {args.batch}, torch threads {torch.get_num_threads()}, medians of {args.repeats}"
    )
    print("TransformerLens: not compared (it cannot load all-MiniLM-L6-v2: no such model in its registry)")
    t_plain = float(np.median(times[PLAIN]))
    print(f"{'what':<52} {'seconds':>8} {'tokens/s':>9} {'x plain':>8} {'peak MiB':>9}")
    for name in methods:
        t = float(np.median(times[name]))
        mib = max(peaks[name]) / 2**20
        print(f"{name:<52} {t:>8.3f} {n_tokens / t:>9.0f} {t / t_plain:>8.3f} {mib:>9.1f}")
    print(f"activations kept: {n_tokens} x 384 float32 = {n_tokens * 384 * 4 / 2**20:.1f} MiB")
    ratios = [a / b for a, b in zip(times[IN_MEMORY], times[PLAIN], strict=True)]
    print(f"overhead={float(np.median(ratios)):.3f}")


if __name__ == "__main__":
    main()
