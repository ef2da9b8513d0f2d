"""Moment-matched weights: every parameter re-drawn as a Gaussian with its own mean and std.

w' ~ N(mean(w), std(w)^2) entrywise, one mean and std per tensor: the randomisation of Heap et al.
(2025, "Automated interpretability metrics do not distinguish trained and random transformers").
It keeps each tensor's scale (and a norm gain's offset) but destroys every learned direction and the
shape of the value distribution. Draws are float64 on CPU from per-parameter generators.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from featurecontrols.controls._weights import keep_patterns, randomised_copy
from featurecontrols.controls.base import RandomisedModel
from featurecontrols.seeding import generator

MOMENT_MATCHED = "moment-matched Gaussian"


class MomentMatchedWeights:
    """Weight control: each parameter becomes N(mean, std^2) with the tensor's own moments.

    ``keep``: fnmatch patterns of parameters left as they are; ``presets``: "embeddings",
    "unembeddings", "norms" (see ``_weights.KEEP_PRESETS``); ``layers``: patterns of the only
    parameters to randomise (``None``: all).
    """

    name = "moment-matched"

    def __init__(
        self, keep: Sequence[str] = (), presets: Sequence[str] = (), layers: Sequence[str] | None = None
    ) -> None:
        self.keep = keep
        self.presets = presets
        self.layers = layers

    def randomise(self, model: nn.Module, seed: int) -> RandomisedModel:
        """Return a moment-matched deep copy of ``model``; ``model`` itself is not modified."""
        keep = keep_patterns(model, self.presets, self.layers, self.keep)
        return randomised_copy(model, seed, self.name, keep, _moment_match)


def _moment_match(model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
    for name, p in targets.items():
        w = p.detach().to("cpu", torch.float64)
        draw = torch.randn(p.shape, generator=generator(seed, name), dtype=torch.float64)
        p.copy_(draw * w.std(correction=0) + w.mean())
    return dict.fromkeys(targets, MOMENT_MATCHED)
