"""Latent insertion: the used test of a dictionary latent, writing it where it is absent.

Latent j writes z_j(h) d_j into the site. Where it never fires, the test writes its typical code,
c_j = mean of |z_j| over the rows where it fires (an SAE's codes are non-negative: their mean), at
every row of the example:

    h'_i = h_i + c_j d_j,

on as many examples as the latent fires on, drawn (seeded) from those where it does not (from all
examples for a latent that fires on every one, as PCA's do: there the move is a step of the
component's typical size, its codes' mean being about 0). The statistic is the mean relative
output change over them (``measures/output_change.py``), and the null makes the same move along B
random directions of the data's span with d_j's Euclidean norm (``latent_ablation.py``): a latent
that carries nothing, written as strongly on the same examples (``null="matched variance"``:
directions along which the data varies as much as along d_j, ``latent_rows.py``).

Why a second test of latents: ablation asks what the outputs lose when the latent goes, which is
little when other latents carry the same variable (a topic spread over several latents: removing one
leaves the rest). Insertion asks what the model does with the latent's write where its variable is
absent, the steering along the decoder direction of Templeton et al. (2024), in the latent's own
units rather than in standard deviations of the data (which on a real model made every latent
"used": README, "Dictionary latents").
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.controls.causal.latent_rows import LatentRows, LatentTest


class LatentInsertion(LatentTest):
    """Causal control: write each latent's typical code c_j d_j on examples where it is absent; the
    null writes the same along random directions of the data of the same norm (module docstring).
    Runs on dictionary latents only."""

    title = "latent insertion vs random directions"
    stream = "latent insertion"
    metric = "relative output change when the latent is written where it is absent"

    def examples(self, rows: LatentRows, code: Tensor, draw: torch.Generator) -> Tensor:
        """As many examples as the latent fires on, drawn from those where it does not."""
        return absent(rows.n_examples, rows.firing(code), draw)

    def moves(self, code: Tensor, kept: Tensor, draw: torch.Generator) -> Tensor:
        """c_j, the mean |z_j| over the rows where it fires, on every kept row."""
        fired = code[code.ne(0)].double()
        typical = fired.abs().mean() if fired.numel() else torch.zeros((), dtype=torch.float64)
        return typical.expand(int(kept.sum())).clone()


def absent(n_examples: int, firing: Tensor, draw: torch.Generator) -> Tensor:
    """As many examples as ``firing`` holds, drawn from the other examples (from all of them when it
    fires on every one), sorted."""
    every = torch.arange(n_examples)
    others = every[~torch.isin(every, firing)]
    pool = others if others.numel() else every
    chosen = pool[torch.randperm(pool.numel(), generator=draw)[: firing.numel()]]
    return chosen.sort().values
