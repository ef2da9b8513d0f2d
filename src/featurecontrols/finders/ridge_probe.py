"""Ridge probe: a linear classifier fitted in closed form, for many label columns at once.

Targets t = 2y - 1 in {-1, +1}. With centred activations Xc and centred targets Tc (n x k),

    W = (Xc^T Xc / n + lam I)^{-1} Xc^T Tc / n,    b = mean(t) - mean(x) W,
    lam = alpha tr(Xc^T Xc / n) / d,

so one Cholesky factorisation serves every column: a permutation null of 1,000 shuffles costs one
solve with 1,000 right-hand sides. When n < d the dual form Xc^T (Xc Xc^T / n + lam I)^{-1} Tc / n
is used (same solution). ``alpha`` is relative to the mean activation variance, so the penalty does
not depend on the activations' scale. This is scikit-learn's ``RidgeClassifier`` for binary labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import BinaryClassifier
from featurecontrols.validation import check_labels


class RidgeProbe(BinaryClassifier):
    """Batched binary ridge classifier (closed form).

    Parameters
    ----------
    alpha : ridge penalty relative to the mean activation variance (see module docstring).
    """

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def fit(self, X: Tensor, Y: Tensor) -> RidgeProbe:
        """Fit k probes: X (n, d) float, Y (n, k) or (n,) with values in {0, 1}."""
        X = self._fit_input(X)
        Y = check_labels(Y, X.shape[0], recode=False, both_classes=False)
        self.coef_, self.intercept_ = ridge_coefficients(X, 2.0 * Y - 1.0, self.alpha)
        self.directions_ = self.coef_
        return self

    def decision_function(self, X: Tensor) -> Tensor:
        """Signed scores (n, k); positive means class 1."""
        return self._input(X) @ self.coef_.T + self.intercept_


def ridge_coefficients(X: Tensor, T: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Coefficients (k, d) and intercepts (k,) of the ridge fit of targets T (n, k) on X (n, d)
    (:func:`ridge_solve`), in X's dtype."""
    W, b = ridge_solve(X, T, alpha)
    return W.T.to(X.dtype).contiguous(), b.to(X.dtype)


def ridge_solve(X: Tensor, T: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Weights W (d, k) and intercepts b (k,), float64, of the ridge fit of targets T (n, k) on X (n, d),
    with the penalty of the module docstring (one Cholesky factorisation for every column)."""
    if alpha <= 0:
        raise FeatureControlsError(
            f"ridge alpha must be > 0, got {alpha}", "use a small positive value such as 1e-3"
        )
    n, d = X.shape
    x_mean = X.double().mean(dim=0)
    Xc = X.double() - x_mean
    t_mean = T.mean(dim=0, dtype=torch.float64)
    scale = float((Xc * Xc).sum()) / (n * d)
    lam = alpha * max(scale, torch.finfo(torch.float64).tiny)
    # The (d x k) or (n x k) products with many target columns dominate the cost: float32 there
    # (Xc is centred, so Xc^T T = Xc^T (T - mean T)); the factorisation stays in float64.
    Xc32 = Xc.to(X.dtype)
    T = T.to(X.dtype)
    if n >= d:
        gram = Xc.T @ Xc / n
        gram.diagonal().add_(lam)
        W = torch.cholesky_solve((Xc32.T @ T).double() / n, torch.linalg.cholesky(gram))
    else:
        kernel = Xc @ Xc.T / n
        kernel.diagonal().add_(lam)
        Tc = (T - t_mean.to(T.dtype)).double()
        W = (Xc32.T @ torch.cholesky_solve(Tc / n, torch.linalg.cholesky(kernel)).to(X.dtype)).double()
    return W, t_mean - x_mean @ W
