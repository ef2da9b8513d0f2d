"""Mass-mean probe: the difference of class means as the read-off direction, for many columns at once.

Per label column j (Marks & Tegmark 2023, "The geometry of truth"):

    delta_j = mean(x | y_j = 1) - mean(x | y_j = 0),      w_j = delta_j            (covariance=False)
                                                           w_j = S^-1 delta_j       (covariance=True)

with S = (1 - shrinkage) Sigma + shrinkage (tr Sigma / d) I the shrunk covariance of the training
activations (one factorisation for every column). Without shrinkage, Sigma^-1 delta_j is parallel to
the LDA direction (the pooled within-class covariance is Sigma - c delta_j delta_j^T, and
Sherman-Morrison keeps the direction). The decision is w_j . x + b_j > 0 with the threshold either at
the midpoint of the two projected class means (``threshold="midpoint"``) or at the cut of the 1-D
projection with the best training accuracy (``threshold="fitted"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import BinaryClassifier
from featurecontrols.validation import check_labels

Threshold = Literal["midpoint", "fitted"]


class MassMeanProbe(BinaryClassifier):
    """Batched difference-of-means classifier, optionally covariance-corrected.

    Parameters
    ----------
    covariance : use S^-1 delta instead of delta (see module docstring).
    shrinkage : weight of the scaled identity in S, in [0, 1]; only with ``covariance=True``.
    threshold : ``"midpoint"`` or ``"fitted"`` (best training accuracy along w).
    """

    def __init__(
        self, covariance: bool = False, shrinkage: float = 0.1, threshold: Threshold = "midpoint"
    ) -> None:
        self.covariance = covariance
        self.shrinkage = shrinkage
        self.threshold = threshold

    def fit(self, X: Tensor, Y: Tensor) -> MassMeanProbe:
        """Fit k probes: X (n, d) float, Y (n, k) or (n,) with values in {0, 1}."""
        X = self._fit_input(X)
        Y = check_labels(Y, X.shape[0], recode=False)
        if not 0.0 <= self.shrinkage <= 1.0 or self.threshold not in ("midpoint", "fitted"):
            raise FeatureControlsError(
                f"MassMeanProbe needs 0 <= shrinkage <= 1 and threshold 'midpoint' or 'fitted'; got "
                f"shrinkage={self.shrinkage}, threshold={self.threshold!r}",
                "use e.g. MassMeanProbe(covariance=True, shrinkage=0.1, threshold='midpoint')",
            )
        n, d = X.shape
        Xd = X.double()
        mean = Xd.mean(dim=0)
        delta = class_mean_directions(X, Y)  # (k, d)
        if self.covariance:
            Xc = Xd - mean
            cov = Xc.T @ Xc / n
            shrunk = (1.0 - self.shrinkage) * cov
            shrunk.diagonal().add_(self.shrinkage * float(torch.trace(cov)) / d)
            W = _solve_psd(shrunk, delta.T).T
        else:
            W = delta
        if self.threshold == "midpoint":
            # mean(x | y=1) = mean + (n0/n) delta and mean(x | y=0) = mean - (n1/n) delta.
            frac1 = Y.double().mean(dim=0)
            midpoint = mean + (0.5 - frac1)[:, None] * delta  # (k, d)
            intercept = -(W * midpoint).sum(dim=1)
        else:
            intercept = -_best_cut(Xd @ W.T, Y.double())
        self.coef_ = W.to(X.dtype).contiguous()
        self.intercept_ = intercept.to(X.dtype)
        self.directions_ = self.coef_
        return self

    def decision_function(self, X: Tensor) -> Tensor:
        """Scores w . x + b, shape (n, k); positive means class 1."""
        X = self._input(X)
        return torch.addmm(self.intercept_, X.to(self.coef_.dtype), self.coef_.T)


def _solve_psd(A: Tensor, B: Tensor) -> Tensor:
    """A^-1 B for a symmetric positive semi-definite A, through its eigendecomposition (pseudo-inverse
    on the null space, so a rank-deficient covariance without shrinkage still works)."""
    eigenvalues, V = torch.linalg.eigh(A)
    floor = float(eigenvalues.max()) * A.shape[0] * torch.finfo(A.dtype).eps
    inverse = torch.where(eigenvalues > floor, 1.0 / eigenvalues, torch.zeros_like(eigenvalues))
    solution: Tensor = V @ (inverse[:, None] * (V.T @ B))
    return solution


def _best_cut(scores: Tensor, Y: Tensor) -> Tensor:
    """Per column, the threshold c maximising the training accuracy of ``score > c`` (midway between
    neighbouring sorted scores); scores and Y are (n, k)."""
    order = torch.argsort(scores, dim=0)
    sorted_scores = torch.gather(scores, 0, order)
    sorted_y = torch.gather(Y, 0, order)
    # Cut after position i (i = 0..n): correct = #zeros in [0, i) + #ones in [i, n).
    zeros_below = torch.cat([torch.zeros_like(Y[:1]), torch.cumsum(1.0 - sorted_y, dim=0)])
    ones_below = torch.cat([torch.zeros_like(Y[:1]), torch.cumsum(sorted_y, dim=0)])
    correct = zeros_below + (Y.sum(dim=0) - ones_below)
    best = torch.argmax(correct, dim=0)  # (k,), in 0..n
    padded = torch.cat([sorted_scores[:1] - 1.0, sorted_scores, sorted_scores[-1:] + 1.0])
    below = torch.gather(padded, 0, best[None])[0]  # score just below the cut (or a sentinel)
    above = torch.gather(padded, 0, (best + 1)[None])[0]
    return (below + above) / 2.0


def class_mean_directions(X: Tensor, Y: Tensor) -> Tensor:
    """(k, d) directions mean(X | y_j = 1) - mean(X | y_j = 0), in float64."""
    Xd = X.double()
    Yd = Y.double()
    ones = (Yd.T @ Xd) / Yd.sum(dim=0)[:, None]
    zeros = ((1.0 - Yd).T @ Xd) / (1.0 - Yd).sum(dim=0)[:, None]
    return ones - zeros
