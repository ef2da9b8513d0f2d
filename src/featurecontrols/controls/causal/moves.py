"""Shifts of a site's activations along one vector, h'_i = h_i + move_i w, as patches, and their null.

A causal control that moves every example along one vector by its own amount (a coordinate moved to
the other class, a latent's contribution removed) measures the real shift once and the null's B
shifts STACK per forward pass (``measures/output_change.OutputChange.under_stacked``), drawn in order
until STOP of them reach the real change.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.adapters.interventions import Patch
from featurecontrols.measures.output_change import OutputChange

STACK = 64  # null shifts per stacked forward pass
STOP = 10  # null draws at or above the real change after which drawing stops


def null_changes(
    outputs: OutputChange, clean: list[Tensor], moves: Tensor, writes: Tensor, real: float
) -> Tensor:
    """The mean output change of each null shift, STACK of them per forward pass, drawn in order
    until STOP of them reach ``real`` (Besag & Clifford 1991: the p-value is then large, and
    (1 + #{null >= real}) / (1 + drawn) stays valid, and conservative, when drawing stops there).
    ``real`` is the real change less the margin the used axis tests against (``axes/used.py``)."""
    means: list[Tensor] = []
    for i in range(0, moves.shape[0], STACK):
        chunk = [patches(clean, moves[b], writes[b]) for b in range(i, min(i + STACK, moves.shape[0]))]
        means.append(outputs.under_stacked(chunk).mean(dim=1))
        if int(sum(int((m >= real).sum()) for m in means)) >= STOP:
            break
    return torch.cat(means)


def patches(clean: list[Tensor], move: Tensor, write: Tensor) -> list[Patch]:
    """One patch per batch: the clean site tensor plus move_i * write on its rows (move (n,), write (d,))."""
    out, start = [], 0
    for c in clean:
        rows = c.reshape(-1, c.shape[-1]).shape[0]
        shift = move[start : start + rows, None] * write
        out.append(Patch(c + shift.reshape(c.shape).to(c)))
        start += rows
    return out
