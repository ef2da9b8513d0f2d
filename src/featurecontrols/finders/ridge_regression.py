"""Ridge regression probe: real-valued targets (a count, a position, a coordinate), many columns at once.

The same closed form as ``RidgeProbe`` (``ridge_solve``: one factorisation serves every column), on the
raw targets T (n, k) instead of +-1 labels; the score is the held-out coefficient of determination

    R^2_j = 1 - sum_i (t_ij - t_hat_ij)^2 / sum_i (t_ij - mean_i t_ij)^2.

A shuffled-target null works as for labels: permuted target columns are extra columns of the same solve.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.ridge_probe import ridge_solve
from featurecontrols.validation import check_activations


class RidgeRegression:
    """Batched ridge regression (closed form), scored by R^2.

    Parameters
    ----------
    alpha : ridge penalty relative to the mean activation variance (as in ``RidgeProbe``).
    """

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def fit(self, X: Tensor, T: Tensor) -> RidgeRegression:
        """Fit k regressions: X (n, d) float, T (n, k) or (n,) finite real targets."""
        X = check_activations(X)
        T = _as_target_matrix(T, X.shape[0])
        W, b = ridge_solve(X, T, self.alpha)
        self.coef_ = W.T.to(X.dtype).contiguous()  # (k, d)
        self.intercept_ = b.to(X.dtype)  # (k,)
        self.directions_ = self.coef_
        return self

    def predict(self, X: Tensor) -> Tensor:
        """Predicted targets (n, k)."""
        return check_activations(X) @ self.coef_.T + self.intercept_

    def score(self, X: Tensor, T: Tensor) -> Tensor:
        """Per-column R^2 (k,) on (X, T)."""
        T = _as_target_matrix(T, X.shape[0]).to(self.coef_.dtype)
        residual = ((T - self.predict(X)) ** 2).sum(dim=0)
        total = ((T - T.mean(dim=0)) ** 2).sum(dim=0)
        return 1.0 - residual / total.clamp(min=torch.finfo(T.dtype).tiny)


def _as_target_matrix(T: Tensor, n: int) -> Tensor:
    """Targets (n,) or (n, k) as a finite, non-constant float (n, k) matrix."""
    T = T[:, None] if T.ndim == 1 else T
    if T.ndim != 2 or T.shape[0] != n:
        raise FeatureControlsError(
            f"targets of shape {tuple(T.shape)} do not match {n} activation rows",
            "give targets of shape (n,) or (n, k) for the same n examples as the activations",
        )
    T = T.to(torch.float64) if T.dtype == torch.float64 else T.float()
    if not bool(torch.isfinite(T).all()):
        raise FeatureControlsError(
            f"targets contain {int((~torch.isfinite(T)).sum())} NaN or infinite values",
            "drop the examples without a target from the targets and the activations alike",
        )
    constant = torch.nonzero((T[:1] == T).all(dim=0)).flatten().tolist()
    if constant:
        raise FeatureControlsError(
            f"target column(s) {constant[:5]} are constant: R^2 is undefined",
            "drop those columns; a constant target carries nothing to decode",
        )
    return T
