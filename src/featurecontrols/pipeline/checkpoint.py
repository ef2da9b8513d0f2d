"""A model's weights at one training step, with the training's own progress measures there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass(frozen=True)
class Checkpoint:
    """``state``: a state dict of the model at ``step``; ``measures``: e.g. its loss and accuracy."""

    step: int
    state: Mapping[str, Tensor]
    measures: Mapping[str, float] = field(default_factory=dict)


def state_copy(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of ``model``'s state dict, as a checkpoint keeps it while training goes on."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
