"""Moment-matched weights: every parameter re-drawn as a Gaussian with its own mean and std.

w' ~ N(mean(w), std(w)^2) entrywise, one mean and std per tensor: the randomisation of Heap et al.
(2025, "Automated interpretability metrics do not distinguish trained and random transformers").
It keeps each tensor's scale (and a norm gain's offset) but destroys every learned direction and the
shape of the value distribution. Draws are float64 on CPU from per-parameter generators.
"""

from __future__ import annotations

import torch
from torch import nn

from featurecontrols.controls.weight._copy import WeightControlBase
from featurecontrols.seeding import generator

MOMENT_MATCHED = "moment-matched Gaussian"


class MomentMatchedWeights(WeightControlBase):
    """Weight control: each parameter becomes N(mean, std^2) with the tensor's own moments.

    Options ``keep``, ``presets``, ``layers``: see ``controls._weights.WeightControlBase``.
    """

    name = "moment-matched"

    def redraw(self, model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        return _moment_match(model, targets, seed)


def _moment_match(model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
    for name, p in targets.items():
        w = p.detach().to("cpu", torch.float64)
        draw = torch.randn(p.shape, generator=generator(seed, name), dtype=torch.float64)
        p.copy_(draw * w.std(correction=0) + w.mean())
    return dict.fromkeys(targets, MOMENT_MATCHED)
