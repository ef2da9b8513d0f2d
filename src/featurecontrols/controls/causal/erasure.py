"""Amnesic probing with its control: erase a concept (LEACE) and measure what the model loses.

LEACE (Belrose et al. 2023, "LEACE: Perfect linear concept erasure in closed form") is the
least-squares affine map x' = x - W^+ P W (x - mu) (W the whitening, P the projector onto the
whitened cross-covariance with the concept) after which no linear classifier beats a constant at
predicting the concept, moving x as little as possible. Amnesic probing (Elazar et al. 2021, TACL)
erases a concept at a site and measures the drop in task performance; its control erases a random
subspace of the same rank (mean-ablation, h' = h - (h - mu) P_random), which any removal of that
many dimensions costs. A used concept drops performance more than its random controls:

    drop = mean task score clean - mean task score erased          (summed over task columns)
    p    = (1 + #{random drops >= drop}) / (1 + n_random)

LEACE comes from the optional ``concept-erasure`` package (``pip install featurecontrols[erasure]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.interventions import ProjectOut, applied
from featurecontrols.adapters.sites import Site, call_model
from featurecontrols.controls.causal.directional_ablation import random_directions
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import flat_output
from featurecontrols.seeding import generator
from featurecontrols.stats import permutation_p_value
from featurecontrols.validation import check_activations, check_binary_labels

Forward = Callable[[nn.Module, Any], Any]
TaskScore = Callable[[Tensor], Tensor]
"""outputs (N, o) of every batch, concatenated -> per-example task scores (N, t), e.g. correctness."""


@dataclass
class ErasureResult:
    """One concept erased: task scores (t,) clean and erased, the drops of the random controls."""

    feature: str
    rank: int
    task_clean: Tensor
    task_erased: Tensor
    drop: float
    null_drops: Tensor
    p_value: float


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


class Erasure:
    """Erase each concept at a site with LEACE; compare the task drop with random same-rank erasures.

    Parameters
    ----------
    task : outputs -> per-example task scores (N, t) (see ``TaskScore``).
    n_random : random subspaces in the control.
    forward : ``forward(model, batch)``; defaults to ``sites.call_model``.
    seed : seed of the random subspaces.

    Attributes
    ----------
    results_ : feature name -> :class:`ErasureResult`.
    """

    name = "LEACE erasure vs random-subspace erasure"

    def __init__(
        self, task: TaskScore, n_random: int = 20, forward: Forward | None = None, seed: int = 0
    ) -> None:
        self.task = task
        self.n_random = n_random
        self.forward = forward
        self.seed = seed

    def fit(
        self,
        model: nn.Module,
        batches: Sequence[Any],
        site: str | Site,
        X: Tensor,
        Y: Tensor,
        names: Sequence[str],
    ) -> Erasure:
        """Erase each column of Y (n, k) from the site's activations X (n, d), named ``names``."""
        if self.n_random < 1:
            raise FeatureControlsError(f"n_random must be at least 1, got {self.n_random}", "use e.g. 20")
        X = check_activations(X)
        Y = check_binary_labels(Y, X.shape[0], list(names))
        parsed = Site.parse(site)
        run = self.forward if self.forward is not None else call_model
        mean = X.double().mean(dim=0)

        def task_scores(intervention: Callable[[Tensor], Tensor] | None) -> Tensor:
            with torch.no_grad(), applied(model, [] if intervention is None else [(parsed, intervention)]):
                outputs = torch.cat([flat_output(run(model, b)) for b in batches])
            return self.task(outputs).double().mean(dim=0).reshape(-1)

        clean = task_scores(None)
        rank = 1  # one binary concept at a time: LEACE removes a rank-1 subspace
        rng = generator(self.seed, "erasure", "random subspaces")
        null = torch.tensor(
            [
                float((clean - task_scores(ProjectOut(random_directions(rank, X.shape[1], rng), mean))).sum())
                for _ in range(self.n_random)
            ],
            dtype=torch.float64,
        )
        self.results_: dict[str, ErasureResult] = {}
        for j, name in enumerate(names):
            erased = task_scores(_leace(X, Y[:, j]))
            drop = float((clean - erased).sum())
            self.results_[name] = ErasureResult(
                feature=name,
                rank=rank,
                task_clean=clean,
                task_erased=erased,
                drop=drop,
                null_drops=null,
                p_value=float(permutation_p_value(torch.tensor([drop]), null[None])[0]),
            )
        return self
