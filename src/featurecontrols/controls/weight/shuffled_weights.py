"""Shuffled weights: the entries of every parameter randomly permuted.

w' = P vec(w) for a uniformly random permutation P per tensor. The exact multiset of values (and
so every moment and the histogram) is kept; every learned direction and the structure of which
entry sits where is destroyed. Permutations come from per-parameter CPU generators.
"""

from __future__ import annotations

import torch
from torch import nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.controls.weight._copy import WeightControlBase
from featurecontrols.seeding import generator

SHUFFLED = "shuffled entries"


class ShuffledWeights(WeightControlBase):
    """Weight control: each parameter's entries are permuted at random.

    Options ``keep``, ``presets``, ``layers``: see ``controls/weight/_copy.WeightControlBase``.
    """

    name = "shuffled"

    def redraw(
        self, copy: nn.Module, targets: dict[str, nn.Parameter], seed: int, adapter: ModelAdapter
    ) -> dict[str, str]:
        for name, p in targets.items():
            order = torch.randperm(p.numel(), generator=generator(seed, name)).to(p.device)
            p.copy_(p.detach().flatten()[order].reshape(p.shape))
        return dict.fromkeys(targets, SHUFFLED)
