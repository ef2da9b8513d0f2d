"""Projection probe: a fixed direction read as a classifier, for a direction handed in as a candidate.

For a given vector v (d,) and each label column j, only the threshold is fitted, on the projection
s = x . v: with the class means m1_j = mean(s | y_j = 1) and m0_j = mean(s | y_j = 0),

    decision_j(x) = sign(m1_j - m0_j) (x . v - (m1_j + m0_j) / 2),

so the class-1 side is positive whichever way v points. The direction itself is never refitted,
so held-out accuracy says how well *this* direction reads the labels (a probe direction, a steering
vector, a PCA component), and the same probe on shuffled labels is its null.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import BinaryClassifier
from featurecontrols.validation import check_labels


class ProjectionProbe(BinaryClassifier):
    """A classifier along the fixed direction ``vector`` (d,); only the midpoint threshold is fitted."""

    def __init__(self, vector: Tensor) -> None:
        self.vector = vector

    def fit(self, X: Tensor, Y: Tensor) -> ProjectionProbe:
        """Fit the thresholds of k label columns: X (n, d), Y (n, k) or (n,) in {0, 1}."""
        X = self._fit_input(X)
        Y = check_labels(Y, X.shape[0], recode=False).double()
        v = torch.as_tensor(self.vector).detach().double().reshape(-1).to(X.device)
        if v.shape[0] != X.shape[1] or not bool(torch.isfinite(v).all()) or not bool(v.any()):
            raise FeatureControlsError(
                f"the projection direction has shape {tuple(v.shape)} for activations of width {X.shape[1]}, "
                "or is zero or not finite",
                "give a finite, non-zero (d,) vector in the site's activation space",
            )
        self.vector_ = v
        s = X.double() @ v
        ones = (Y * s[:, None]).sum(dim=0) / Y.sum(dim=0)
        zeros = ((1.0 - Y) * s[:, None]).sum(dim=0) / (1.0 - Y).sum(dim=0)
        self.sign_ = torch.where(ones >= zeros, 1.0, -1.0).to(torch.float64)
        self.threshold_ = (ones + zeros) / 2.0
        self.directions_ = (self.sign_[:, None] * v[None]).to(X.dtype)
        return self

    def decision_function(self, X: Tensor) -> Tensor:
        """sign_j (x . v - threshold_j), shape (n, k); positive means class 1."""
        s = self._input(X).double() @ self.vector_
        return (self.sign_ * (s[:, None] - self.threshold_)).to(X.dtype)
