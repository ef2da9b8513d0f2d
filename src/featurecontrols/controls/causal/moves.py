"""Shifts of a site's activations along one vector, h'_i = h_i + move_i w, as patches, and their null.

A causal control that moves every example along one vector by its own amount (a coordinate moved to
the other class, a latent's contribution removed) measures the real shift once and the null's B
shifts STACK per forward pass (``measures/output_change.OutputChange.under_stacked``), drawn in order
until STOP of them reach the real change; tests whose nulls are the same shifts share one sequence
of draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from featurecontrols.adapters.interventions import Patch
from featurecontrols.measures.output_change import OutputChange

STACK = 64  # null shifts per stacked forward pass
STOP = 10  # null draws at or above the real change after which drawing stops


def null_changes(
    outputs: OutputChange, clean: list[Tensor], moves: Tensor, writes: Tensor, reals: Sequence[float]
) -> list[Tensor]:
    """The mean output change of each null shift, STACK of them per forward pass, drawn in order
    until, for every value in ``reals``, STOP of them reach it; per value, the draws up to the pass at
    which STOP reached it (all of them if never). Each value gets its own sequential stop on the one
    sequence of draws (Besag & Clifford 1991: the p-value is then large, and
    (1 + #{null >= real}) / (1 + drawn) stays valid, and conservative, when drawing stops there), so
    several tests with the same null share its forward passes. ``reals`` are real changes less the
    margin the used axis tests against (``axes/used.py``)."""
    means: list[Tensor] = []
    thresholds = torch.tensor(list(reals), dtype=torch.float64)
    hits = torch.zeros(len(thresholds), dtype=torch.long)
    stops = torch.full((len(thresholds),), moves.shape[0], dtype=torch.long)
    for i in range(0, moves.shape[0], STACK):
        chunk = [patches(clean, moves[b], writes[b]) for b in range(i, min(i + STACK, moves.shape[0]))]
        means.append(outputs.under_stacked(chunk).mean(dim=1))
        hits += (means[-1][None, :] >= thresholds[:, None]).sum(dim=1)
        stopping = (hits >= STOP) & (stops == moves.shape[0])
        stops[stopping] = i + len(chunk)
        if bool((hits >= STOP).all()):
            break
    null = torch.cat(means)
    return [null[: int(stop)] for stop in stops]


def patches(clean: list[Tensor], move: Tensor, write: Tensor) -> list[Patch]:
    """One patch per batch: the clean site tensor plus move_i * write on its rows (move (n,), write
    (d,)), or sum_l move_il write_l for several vectors (move (n, g), write (g, d))."""
    out, start = [], 0
    for c in clean:
        rows = c.reshape(-1, c.shape[-1]).shape[0]
        part = move[start : start + rows]
        shift = part[:, None] * write if move.ndim == 1 else part @ write
        out.append(Patch(c + shift.reshape(c.shape).to(c)))
        start += rows
    return out
