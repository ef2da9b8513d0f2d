"""Shuffled weights: the entries of every parameter randomly permuted.

w' = P vec(w) for a uniformly random permutation P per tensor. The exact multiset of values (and
so every moment and the histogram) is kept; every learned direction and the structure of which
entry sits where is destroyed. Permutations come from per-parameter CPU generators.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from featurecontrols.controls._weights import keep_patterns, randomised_copy
from featurecontrols.controls.base import RandomisedModel
from featurecontrols.seeding import generator

SHUFFLED = "shuffled entries"


class ShuffledWeights:
    """Weight control: each parameter's entries are permuted at random.

    ``keep``: fnmatch patterns of parameters left as they are; ``presets``: "embeddings",
    "unembeddings", "norms" (see ``_weights.KEEP_PRESETS``); ``layers``: patterns of the only
    parameters to randomise (``None``: all).
    """

    name = "shuffled"

    def __init__(
        self, keep: Sequence[str] = (), presets: Sequence[str] = (), layers: Sequence[str] | None = None
    ) -> None:
        self.keep = keep
        self.presets = presets
        self.layers = layers

    def randomise(self, model: nn.Module, seed: int) -> RandomisedModel:
        """Return a deep copy of ``model`` with shuffled entries; ``model`` itself is not modified."""
        keep = keep_patterns(model, self.presets, self.layers, self.keep)
        return randomised_copy(model, seed, self.name, keep, _shuffle)


def _shuffle(model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
    for name, p in targets.items():
        order = torch.randperm(p.numel(), generator=generator(seed, name)).to(p.device)
        p.copy_(p.detach().flatten()[order].reshape(p.shape))
    return dict.fromkeys(targets, SHUFFLED)
