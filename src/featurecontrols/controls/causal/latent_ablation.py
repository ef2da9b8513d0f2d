"""Latent ablation: the used test of a dictionary latent, in the latent's own units.

Latent j of a dictionary writes z_j(h) d_j into the site (its code times the direction it writes,
d_j = decode(e_j) - decode(0)). Ablating it removes exactly that from each example,

    h'_i = h_i - z_j(h_i) d_j,

so rows where the latent does not fire are untouched, and the statistic is the mean relative output
change (``measures/output_change.py``) over the examples where it fires (only those run a forward
pass): how much the model's outputs rest on the latent when it is there, whatever its frequency
(a mean over every example would put a latent that fires on 0.1% of them below any margin however
much the outputs rest on it there). The null removes the same codes along B random directions of the
data's span with d_j's Euclidean norm, h'_i = h_i - z_j(h_i) ||d_j|| u_b, u_b uniform on the unit
sphere of the span the data visits (a direction outside it carries no input, Makelov et al. 2023): a
latent that carries nothing, firing on the same examples just as strongly (``null="matched
variance"``: directions along which the data varies as much as along d_j, ``latent_rows.py``). The
used axis tests
against its margin, p = (1 + #{b : null_b >= real - margin}) / (1 + B), the null drawn until STOP
draws reach the real change less the margin.

The size is matched in the site's Euclidean norm, the units the latent itself writes in: matching
it in standard deviations of the data along d_j (as dual interchange does for labelled features)
would make a sparse latent's removal many standard deviations (its spread is small because it
rarely fires), and its null moves that large along random directions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.controls.causal.latent_rows import LatentTest


class LatentAblation(LatentTest):
    """Causal control: remove each latent's contribution z_j d_j; the null removes the same codes along
    random directions of the data of the same norm (module docstring). Runs on dictionary latents only."""

    title = "latent ablation vs random directions"
    stream = "latent ablation"
    metric = "relative output change when the latent is removed"

    def moves(self, code: Tensor, kept: Tensor, draw: torch.Generator) -> Tensor:
        """-z_j on the rows of the examples where it fires."""
        return -code[kept].double()
