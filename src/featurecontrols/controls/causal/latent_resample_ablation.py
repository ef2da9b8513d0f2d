"""Latent resample ablation: latent ablation with the code taken from another input, not set to 0.

Latent j writes z_j(h) d_j into the site. On every row i where it fires, the test replaces its code
by the code of a row r(i) drawn uniformly from all measured rows (seeded; the code's distribution
over the data, zeros included):

    h'_i = h_i + (z_j(h_r(i)) - z_j(h_i)) d_j,

and leaves the rows where it does not fire as they are. The statistic is the mean relative output
change over the examples where it fires, against the same moves along B random directions of the
data's span with d_j's Euclidean norm (``latent_ablation.py``; ``null="matched variance"``:
directions along which the data varies as much as along d_j, ``latent_rows.py``).

Why an option beside ablation: setting a code to 0 can take the site off the data's distribution
where the latent is rarely 0 (a PCA component's codes are signed and never exactly 0: ablation moves
every row to the component's mean); a resampled code is one the model has seen (Chan et al. 2022,
causal scrubbing). For a sparse latent that fires on a fraction f of the rows, a draw is 0 with
probability 1 - f, so the test is ablation on most rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.controls.causal.latent_rows import LatentTest


class LatentResampleAblation(LatentTest):
    """Causal control: resample each latent's code from other inputs where it fires; the null makes
    the same moves along random directions of the data of the same norm (module docstring). Runs on
    dictionary latents only."""

    title = "latent resample ablation vs random directions"
    stream = "latent resample ablation"
    metric = "relative output change when the latent's code is resampled from other inputs"

    def moves(self, code: Tensor, kept: Tensor, draw: torch.Generator) -> Tensor:
        """z_j(h_r) - z_j(h_i) on the kept rows where it fires (r uniform over all rows), 0 elsewhere."""
        own = code[kept].double()
        others = code[torch.randint(code.numel(), (own.numel(),), generator=draw)].double()
        return torch.where(own.ne(0), others - own, torch.zeros_like(own))
