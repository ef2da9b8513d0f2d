"""Ridge regression probe: real-valued targets (a count, a position, a coordinate), many columns at once.

The same closed form as ``RidgeProbe`` (``ridge_solve``: one factorisation serves every column), on the
raw targets T (n, k) instead of +-1 labels; the score is the held-out coefficient of determination

    R^2_j = 1 - sum_i (t_ij - t_hat_ij)^2 / sum_i (t_ij - mean_i t_ij)^2.

A shuffled-target null works as for labels: permuted target columns are extra columns of the same solve.
"""

from __future__ import annotations

from torch import Tensor

from featurecontrols.finders.base import Finder, r_squared
from featurecontrols.finders.ridge_probe import ridge_coefficients
from featurecontrols.validation import check_targets


class RidgeRegression(Finder):
    """Batched ridge regression (closed form), scored by R^2.

    Parameters
    ----------
    alpha : ridge penalty relative to the mean activation variance (as in ``RidgeProbe``).
    """

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def fit(self, X: Tensor, T: Tensor) -> RidgeRegression:
        """Fit k regressions: X (n, d) float, T (n, k) or (n,) finite real targets."""
        X = self._fit_input(X)
        self.coef_, self.intercept_ = ridge_coefficients(X, check_targets(T, X.shape[0]), self.alpha)
        self.directions_ = self.coef_
        return self

    def predict(self, X: Tensor) -> Tensor:
        """Predicted targets (n, k)."""
        return self._input(X) @ self.coef_.T + self.intercept_

    def score(self, X: Tensor, T: Tensor) -> Tensor:
        """Per-column R^2 (k,) on (X, T)."""
        T = check_targets(T, X.shape[0]).to(self.coef_.dtype)
        return r_squared(T, self.predict(X))
