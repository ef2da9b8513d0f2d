"""Amnesic probing with its control: erase a concept (LEACE) and measure what the model loses.

LEACE (Belrose et al. 2023, "LEACE: Perfect linear concept erasure in closed form") is the
least-squares affine map x' = x - W^+ P W (x - mu) (W the whitening, P the projector onto the
whitened cross-covariance with the concept) after which no linear classifier beats a constant at
predicting the concept, moving x as little as possible. Amnesic probing (Elazar et al. 2021, TACL)
erases a concept at a site and measures the drop in task performance; its control erases a random
subspace of the same rank (mean-ablation, h' = h - (h - mu) P_random), which any removal of that
many dimensions costs. A used concept drops performance more than its random controls:

    drop_i = sum over task columns of (task score clean - task score erased) of example i
    p      = (1 + #{random mean drops >= mean drop}) / (1 + n_null)

LEACE comes from the optional ``concept-erasure`` package (``pip install featurecontrols[erasure]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from featurecontrols.adapters.interventions import ProjectOut
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalTarget, Requirement
from featurecontrols.controls.causal.directional_ablation import random_directions
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import outputs_under
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import generator
from featurecontrols.validation import check_labels

TaskScore = Callable[[Tensor], Tensor]
"""outputs (N, o) of every batch, concatenated -> per-example task scores (N, t), e.g. correctness."""


def _leace(X: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    try:
        from concept_erasure import LeaceEraser  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise FeatureControlsError(
            "LEACE erasure needs the optional package concept-erasure, which is not installed",
            "pip install 'featurecontrols[erasure]' (or: pip install concept-erasure)",
        ) from None
    eraser = LeaceEraser.fit(X.double(), y.double()[:, None])

    def erase(h: Tensor) -> Tensor:
        out: Tensor = eraser(h.double()).to(h.dtype)
        return out

    return erase


class Erasure(Params):
    """Causal control: erase each target's concept with LEACE; the null erases random subspaces of
    the same rank (rank 1: one binary concept at a time).

    Parameters
    ----------
    task : outputs -> per-example task scores (N, t) (see ``TaskScore``).
    """

    name = "LEACE erasure vs random-subspace erasure"
    requires: ClassVar[Requirement] = "labels"
    metric = "task score lost under erasure"
    unit: ClassVar[Unit] = "task score"

    def __init__(self, task: TaskScore) -> None:
        self.task = task

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """Per target, each example's task score lost (n,) against random erasures' mean losses (n_null,)."""
        X = at.X
        mean = X.double().mean(dim=0)

        def task_scores(intervention: Callable[[Tensor], Tensor] | None) -> Tensor:
            outputs = torch.cat(
                outputs_under(at.adapter, at.batches, at.site, [intervention] * len(at.batches))
            )
            return self.task(outputs).double().reshape(outputs.shape[0], -1).sum(dim=1)

        clean = task_scores(None)
        rng = generator(at.seed, "erasure", "random subspaces")
        null = torch.tensor(
            [
                float((clean - task_scores(ProjectOut(random_directions(1, X.shape[1], rng), mean))).mean())
                for _ in track(range(at.n_null), "erasure null", at.n_null, at.progress)
            ],
            dtype=torch.float64,
        )
        out = {}
        for target in targets:
            if target.labels is None:
                raise FeatureControlsError(
                    f"erasure needs the labels of {target.name!r}", "give the candidate its labels"
                )
            y = check_labels(target.labels, X.shape[0], [target.name])[:, 0]
            out[target.name] = NullScores(self.metric, self.unit, clean - task_scores(_leace(X, y)), null)
        return out
