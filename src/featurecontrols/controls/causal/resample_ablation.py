"""Resample ablation: the directional test with the coordinate taken from another input, not its mean.

At the site, each example's coordinate along the unit direction u is replaced by that of another
example of the same batch (a random permutation pi of the batch, drawn afresh for every batch):

    h'_i = h_i + ((h_pi(i) - h_i) . u) u.

Unlike mean-ablation, the result stays on the data's distribution along u (the ablated coordinate
is one the model has seen), which guards against reading off-distribution effects as use (Chan et
al. 2022, causal scrubbing). The measurement and the null (shuffled-label directions, resampled
the same way) are those of ``directional_ablation.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.adapters.interventions import Intervention, as_directions
from featurecontrols.controls.causal.directional_ablation import DirectionalAblation
from featurecontrols.seeding import generator


class ResampleAblation(DirectionalAblation):
    """Causal control: resample each target's coordinate from other inputs (module docstring)."""

    name = "resample ablation vs shuffled-label directions"
    metric = "relative output change under resample-ablation"

    def intervention(self, direction: Tensor, mean: Tensor, seed: int) -> Intervention:
        return ResampleOut(direction, seed)


class ResampleOut(Intervention):
    """h'_i = h_i + ((h_pi(i) - h_i) . u) u, with a new permutation pi of dim 0 at every call."""

    def __init__(self, direction: Tensor, seed: int) -> None:
        d = as_directions(direction, "resampled direction")[0]
        self.unit = d / d.norm()
        self.seed = seed
        self.calls = 0

    def __call__(self, h: Tensor) -> Tensor:
        pi = torch.randperm(h.shape[0], generator=generator(self.seed, self.calls)).to(h.device)
        self.calls += 1
        u = self.unit.to(h)
        coordinate = h @ u
        out: Tensor = h + (coordinate[pi] - coordinate)[..., None] * u
        return out
