"""Noised weights: the trained weights plus Gaussian noise of a chosen size, a graded weight control.

Each parameter w becomes w' = w + s std(w) eps, eps ~ N(0, I) entrywise, one std per tensor: at
``scale`` s = 0 the trained model, as s grows the learned directions drown (at s = 1 the noise is as
large as the weights' own spread). Run at several scales, it shows how much of a finding survives a
partial destruction of what the model learned: a dose-response curve between the trained model and
a moment-matched one. Draws are float64 on CPU from per-parameter generators.
"""

from __future__ import annotations

import torch
from torch import nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.controls.weight._copy import WeightControlBase
from featurecontrols.controls.weight.moment_matched_weights import moments
from featurecontrols.errors import FeatureControlsError
from featurecontrols.seeding import generator


class NoisedWeights(WeightControlBase):
    """Weight control: w + scale * std(w) * N(0, 1) per parameter (module docstring).

    Options ``keep``, ``presets``, ``layers``: see ``controls/weight/_copy.WeightControlBase``.
    """

    name = "noised"

    def __init__(
        self,
        scale: float = 1.0,
        keep: tuple[str, ...] = (),
        presets: tuple[str, ...] = (),
        layers: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(keep, presets, layers)
        self.scale = scale

    def redraw(
        self, copy: nn.Module, targets: dict[str, nn.Parameter], seed: int, adapter: ModelAdapter
    ) -> dict[str, str]:
        if not 0.0 <= self.scale < float("inf"):
            raise FeatureControlsError(
                f"NoisedWeights needs scale >= 0, got {self.scale}", "use e.g. scale=1.0"
            )
        for name, p in targets.items():
            eps = torch.randn(p.shape, generator=generator(seed, name), dtype=torch.float64)
            p.add_((self.scale * moments(p)[1] * eps).to(p))
        return dict.fromkeys(targets, f"noised (scale {self.scale:g})")
