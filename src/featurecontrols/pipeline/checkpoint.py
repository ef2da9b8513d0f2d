"""A model's weights at one training step, with the training's own progress measures there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class Checkpoint:
    """``state``: a state dict of the model at ``step``; ``measures``: e.g. its loss and accuracy."""

    step: int
    state: Mapping[str, Tensor]
    measures: Mapping[str, float] = field(default_factory=dict)
