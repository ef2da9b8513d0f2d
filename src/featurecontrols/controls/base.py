"""The control contracts. A control transforms ONE input of the pipeline (DESIGN.md):

- a :class:`LabelControl` turns real labels into control labels (shuffles, control tasks);
- a :class:`WeightControl` turns the model into a randomised copy (the original is never touched);
- an intervention changes the forward pass at a site (see ``directional_ablation``).

The finder and the statistics run the same way whatever the control, so every control works with
every finder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class LabelControl(Protocol):
    """Makes ``n_null`` control label columns from one real label column."""

    name: str

    def null_labels(self, y: Tensor, n_null: int, generator: torch.Generator) -> Tensor:
        """Map labels y of shape (n,) to control labels of shape (n, n_null)."""
        ...


@dataclass
class RandomisedModel:
    """A randomised copy of a model and how each parameter was re-drawn.

    ``methods`` maps every parameter name (as in ``named_parameters()``) to the method that
    re-drew it, so a report can say exactly what was and was not randomised.
    """

    model: nn.Module
    control: str
    seed: int
    methods: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class WeightControl(Protocol):
    """Returns a randomised deep copy of a model; the model passed in is never modified."""

    name: str

    def randomise(self, model: nn.Module, seed: int) -> RandomisedModel: ...
