"""Moment-matched weights: every parameter re-drawn as a Gaussian with its own mean and std.

w' ~ N(mean(w), std(w)^2) entrywise, one mean and std per tensor: the randomisation of Heap et al.
(2025, "Automated interpretability metrics do not distinguish trained and random transformers").
It keeps each tensor's scale (and a norm gain's offset) but destroys every learned direction and the
shape of the value distribution. Draws are float64 on CPU from per-parameter generators.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.controls.weight._copy import WeightControlBase
from featurecontrols.seeding import generator

MOMENT_MATCHED = "moment-matched Gaussian"


class MomentMatchedWeights(WeightControlBase):
    """Weight control: each parameter becomes N(mean, std^2) with the tensor's own moments.

    Options ``keep``, ``presets``, ``layers``: see ``controls/weight/_copy.WeightControlBase``.
    """

    name = "moment-matched"

    def redraw(
        self, copy: nn.Module, targets: dict[str, nn.Parameter], seed: int, adapter: ModelAdapter
    ) -> dict[str, str]:
        for name, p in targets.items():
            p.copy_(moment_matched_draw(p.shape, moments(p), seed, name))
        return dict.fromkeys(targets, MOMENT_MATCHED)


def moments(p: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and (population) standard deviation of a tensor's entries, float64 on CPU."""
    w = p.detach().to("cpu", torch.float64)
    return w.mean(), w.std(correction=0)


def moment_matched_draw(shape: torch.Size, mean_std: tuple[Tensor, Tensor], seed: int, name: str) -> Tensor:
    """N(mean, std^2) entries of ``shape`` (float64, CPU), drawn from the generator of (seed, name)."""
    draw = torch.randn(shape, generator=generator(seed, name), dtype=torch.float64)
    return draw * mean_std[1] + mean_std[0]
