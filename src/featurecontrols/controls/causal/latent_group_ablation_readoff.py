"""Latent group ablation measured along the latent's own direction at the outputs.

The removal is latent group ablation's (``latent_group_ablation.py``): where latent j fires, the
contribution of its group G_j (j and the latents whose codes correlate with it at
``min_correlation`` or more) leaves the site, h'_i = h_i - s_i, s_i = sum_{k in G_j} z_k d_k. The
measure and the null are the latent read-off's (``latent_ablation_readoff.py``):

- measure: t_i = sign(m_i) (f'(x_i) - f(x_i)) . u / sqrt(mean_k ||f(x_k) - mean f||^2), u the unit
  covariance of the clean outputs with latent j's code summed over the example's rows, m_i = -z_j
  its move (``OutputChange.read_off``; next-token logits are read off in sqrt(p));
- null: each row moved as far, |s_i|, along B random directions of the data's span orthogonal to
  the rows' covariance with every code of the group (``latent_rows.py``, ``null="uncorrelated"``):
  their coordinate is uncorrelated with each of the group's codes, so they carry nothing of what
  the group carries, linearly;
- margin and "not used": the read-off's (0.1 output standard deviations; the outputs' whole move
  bounded below it).

Why both: group ablation answers redundancy (a variable several latents carry leaves the outputs
when one latent goes, through the others), and the read-off answers a site the outputs read in
every direction, where a random direction moved as far moves the outputs as much as the group. The
span's null of plain group ablation is the one that called every MiniLM latent used under steering
(README): a latent's direction lies where the data varies and a uniform direction mostly does not.
Along the latent's own output direction, against moves uncorrelated with the group, the question is
whether the outputs follow what the group carries.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from featurecontrols.axes.evidence import Unit
from featurecontrols.controls.causal.latent_ablation_readoff import latent_read_off
from featurecontrols.controls.causal.latent_group_ablation import LatentGroupAblation
from featurecontrols.controls.causal.latent_rows import LatentNull, LatentRows
from featurecontrols.measures.output_change import OutputChange


class LatentGroupAblationReadoff(LatentGroupAblation):
    """Causal control: remove each latent with its group and measure the outputs along their
    covariance with the latent, against moves uncorrelated with the group's codes (module
    docstring). Runs on dictionary latents only."""

    title = "latent group ablation in the output read-off vs random directions"
    stream = "latent group ablation read-off"
    metric = (
        "output move along the latent's output direction when the latent and those correlated with "
        "it are removed"
    )
    unit: ClassVar[Unit] = "output read-off"

    def __init__(self, null: LatentNull = "uncorrelated", min_correlation: float = 0.5) -> None:
        super().__init__(null, min_correlation)

    def measure(self, rows: LatentRows, code: Tensor, kept: Tensor, moves: Tensor) -> OutputChange:
        """The outputs' move along their covariance with latent j's code (the group's first column)
        per example, signed by that code's move there."""
        return latent_read_off(rows, code, kept, moves)
