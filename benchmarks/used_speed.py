"""What does one null draw of the used axis cost on a causal LM with a 50,257-token vocabulary?

A null draw is one intervention (here a directional mean-ablation along a random direction at the
residual stream after block 0) run over every sequence, reduced to one output change per sequence.
One run, same toy causal LM (2 pre-LN transformer blocks, width 64, random weights, GPT-2's vocabulary
size), same random tokens, each method in its own process so that its peak memory (max RSS) is its own:

- v0.1's path, one forward per draw: clean logits kept as float64 (n x positions x vocab), each
  draw's logits turned to float64 and compared by squared distance. It needs n x 64 x 50,257 x 8
  bytes (53 GB at 2,048 sequences), so it runs on ``--v01-sequences`` and its time is scaled up;
- featurecontrols' ``OutputChange`` (KL of next-token distributions, float32, reduced per forward,
  clean log-probabilities recomputed per batch), one intervention per forward pass;
- the same with many interventions stacked along the batch (up to ``elements_per_pass`` outputs);
- the floor of any exact KL measure: one pass of the layers after the site, the unembedding and a
  log-softmax per draw, with nothing kept.
A batch of the LM already fills a forward pass, so stacking gains nothing there; where a model is
small (the testbeds' MLPs) it does, and a second table times ``--small-draws`` draws of a toy MLP
(4,000 examples, 32 -> 64 -> 64 -> 10, random weights) stacked against one forward per draw.
Prints the tables and, last, ``speedup=<v0.1 per draw / featurecontrols stacked per draw>`` on the LM.

    python benchmarks/used_speed.py [--sequences 2048] [--positions 64] [--draws 4] [--batch 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from featurecontrols.adapters import TorchModel
from featurecontrols.adapters.interventions import ProjectOut
from featurecontrols.adapters.sites import Site
from featurecontrols.measures.output_change import OutputChange

VOCAB, WIDTH, HEADS, LAYERS = 50_257, 64, 4, 2
SITE = Site("blocks.0")


class Block(nn.Module):
    """Pre-LN transformer block with causal self-attention."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_attn, self.ln_mlp = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x: Tensor) -> Tensor:
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
        h = self.ln_attn(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln_mlp(x))


class ToyCausalLM(nn.Module):
    """Tokens (rows, positions) -> next-token logits (rows, positions, VOCAB)."""

    def __init__(self, positions: int) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, WIDTH), nn.Embedding(positions, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_final, self.unembed = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))


def setup(args: argparse.Namespace, sequences: int) -> tuple[TorchModel, list[Tensor], list[ProjectOut]]:
    torch.manual_seed(0)
    model = ToyCausalLM(args.positions).eval()
    tokens = torch.randint(0, VOCAB, (sequences, args.positions), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    mean = torch.zeros(WIDTH)
    draws = [ProjectOut(torch.randn(WIDTH, generator=g), mean=mean) for _ in range(args.draws)]
    return TorchModel(model, output_kind="logits"), list(tokens.split(args.batch)), draws


def v01(args: argparse.Namespace) -> float:
    """Seconds per draw over --v01-sequences sequences, v0.1's way (full float64 logits)."""
    adapter, batches, draws = setup(args, args.v01_sequences)
    with torch.no_grad():
        reference = [adapter.module(b).double().flatten(1) for b in batches]
        start = time.perf_counter()
        for draw in draws:
            for b, ref in zip(batches, reference, strict=True):
                with adapter.intervening([(SITE, draw)]):
                    changed = adapter.module(b).double().flatten(1)
                (changed - ref).square().sum(dim=1)
    return (time.perf_counter() - start) / len(draws)


def featurecontrols(args: argparse.Namespace, elements_per_pass: int) -> float:
    """Seconds per draw of OutputChange.under_stacked over all --sequences sequences."""
    adapter, batches, draws = setup(args, args.sequences)
    outputs = OutputChange(adapter, batches, SITE, elements_per_pass=elements_per_pass)
    start = time.perf_counter()
    outputs.under_stacked([[d] * len(batches) for d in draws])
    return (time.perf_counter() - start) / len(draws)


def floor(args: argparse.Namespace) -> float:
    """Seconds per draw of the layers after the site, the unembedding and a log-softmax, nothing kept."""
    adapter, batches, draws = setup(args, args.sequences)
    model = adapter.module
    assert isinstance(model, ToyCausalLM)
    with torch.no_grad():
        at_site = [model.blocks[0](model.embed(b) + model.pos.weight[: b.shape[1]]) for b in batches]
        start = time.perf_counter()
        for _ in draws:
            for h in at_site:
                torch.log_softmax(model.unembed(model.ln_final(model.blocks[1](h))), dim=-1).sum(-1)
    return (time.perf_counter() - start) / len(draws)


def small_model(args: argparse.Namespace) -> tuple[float, float]:
    """Seconds per draw of --small-draws ablations of a toy MLP: one forward per draw, and stacked."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    batches = list(torch.randn(4000, 32).split(1000))
    g = torch.Generator().manual_seed(2)
    draws = [[ProjectOut(torch.randn(64, generator=g))] * len(batches) for _ in range(args.small_draws)]
    seconds = []
    for rows_per_pass in (1, 1 << 15):  # 1: every pass holds one copy of a batch
        outputs = OutputChange(TorchModel(mlp), batches, Site("2"), rows_per_pass=rows_per_pass)
        start = time.perf_counter()
        outputs.under_stacked(draws)
        seconds.append((time.perf_counter() - start) / args.small_draws)
    return seconds[0], seconds[1]


def _peak(job: Callable[[argparse.Namespace], float], args: argparse.Namespace) -> tuple[float, float]:
    return job(args), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measured(job: Callable[[argparse.Namespace], float], args: argparse.Namespace) -> tuple[float, float]:
    """(seconds per draw, peak RSS in GiB) of ``job`` run in a fresh process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_peak, (job, args))


def unstacked(args: argparse.Namespace) -> float:
    return featurecontrols(args, elements_per_pass=1)


def stacked(args: argparse.Namespace) -> float:
    return featurecontrols(args, elements_per_pass=1 << 25)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=2048)
    parser.add_argument("--positions", type=int, default=64)
    parser.add_argument("--draws", type=int, default=4, help="null draws timed per method")
    parser.add_argument("--small-draws", type=int, default=256, help="null draws of the toy MLP")
    parser.add_argument("--batch", type=int, default=16, help="sequences per batch")
    parser.add_argument("--v01-sequences", type=int, default=64, help="sequences v0.1's path runs on")
    args = parser.parse_args()
    scale = args.sequences / args.v01_sequences
    v01_seconds, v01_peak = measured(v01, args)
    needed = args.sequences * args.positions * VOCAB * 8 / 2**30
    rows = [
        (
            f"v0.1, one forward per draw (on {args.v01_sequences}, x{scale:g})",
            v01_seconds * scale,
            v01_peak,
            f"needs {needed:.0f} GiB of float64 logits at {args.sequences}",
        ),
        ("featurecontrols, one intervention per forward", *measured(unstacked, args), "KL, float32"),
        ("featurecontrols, stacked (elements_per_pass 2^25)", *measured(stacked, args), "KL, float32"),
        ("floor: layers after the site + unembed + log-softmax", *measured(floor, args), "nothing kept"),
    ]
    best = rows[2][1]
    print(
        f"toy causal LM: {LAYERS} blocks, width {WIDTH}, vocab {VOCAB:,}; {args.sequences} sequences x "
        f"{args.positions} tokens in batches of {args.batch}; {args.draws} draws; torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"{'what':<58} {'s/draw':>8} {'x stacked':>9} {'peak GiB':>9}  note")
    for name, seconds, peak, note in rows:
        print(f"{name:<58} {seconds:>8.2f} {seconds / best:>9.2f} {peak:>9.2f}  {note}")
    one, many = small_model(args)
    print(
        f"\ntoy MLP, 4,000 examples, {args.small_draws} draws: one forward per draw {1e3 * one:.2f} ms/draw, "
        f"stacked {1e3 * many:.2f} ms/draw"
    )
    print(f"small_model_speedup={one / many:.1f}")
    print(f"floor_speedup={rows[0][1] / rows[3][1]:.1f}  (the most any exact KL measure could gain here)")
    print(f"speedup={rows[0][1] / best:.1f}")


if __name__ == "__main__":
    main()
