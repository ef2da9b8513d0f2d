"""PCA: the top principal directions of the activations, fitted from a stream of batches.

With the mean mu and covariance C = E[(x - mu)(x - mu)^T] = V diag(lambda) V^T (accumulated in
float64 over batches, so the data never has to fit in memory), the components are the top
``n_components`` eigenvectors v_1..v_k; ``encode(x) = (x - mu) V_k`` and ``decode(z) = z V_k^T + mu``.
PCA is the baseline unsupervised finder: its directions are the data's variance, learned or not.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Finder, batches_of, check_codes


class PCA(Finder):
    """Principal component analysis, streamed.

    Parameters
    ----------
    n_components : number of directions kept (at most the activation width).
    batch_size : rows per accumulation step.

    Attributes
    ----------
    components_ : (k, d) orthonormal rows, by decreasing variance.
    mean_ : (d,) activation mean.
    explained_variance_ : (k,) variance along each component.
    explained_variance_ratio_ : (k,) that variance over the total variance.
    """

    def __init__(self, n_components: int, batch_size: int = 65536) -> None:
        self.n_components = n_components
        self.batch_size = batch_size

    def fit(self, data: Tensor | Iterable[Tensor]) -> PCA:
        """Fit on a tensor (n, d) or an iterable of (rows, d) chunks."""
        n = 0
        total: Tensor | None = None
        outer: Tensor | None = None
        for batch in batches_of(data, self.batch_size):
            x = batch.double()
            total = x.sum(0) if total is None else total + x.sum(0)
            outer = x.T @ x if outer is None else outer + x.T @ x
            n += x.shape[0]
        if total is None or outer is None or n < 2:
            raise FeatureControlsError(f"PCA needs at least 2 rows, got {n}", "pass more activations")
        d = total.numel()
        if not 1 <= self.n_components <= d:
            raise FeatureControlsError(
                f"PCA n_components must be in [1, {d}] (the activation width), got {self.n_components}",
                f"choose n_components <= {d}",
            )
        self.n_features_in_ = d
        mean = total / n
        cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
        values, vectors = torch.linalg.eigh(cov)
        top = torch.argsort(values, descending=True)[: self.n_components]
        self.mean_ = mean.float()
        self.components_ = vectors[:, top].T.contiguous().float()
        self.explained_variance_ = values[top].clamp(min=0).float()
        self.explained_variance_ratio_ = (values[top].clamp(min=0) / values.clamp(min=0).sum()).float()
        return self

    @property
    def n_latents(self) -> int:
        """Number of latents (components), known before fitting."""
        return self.n_components

    def encode(self, X: Tensor) -> Tensor:
        """Coordinates along the components: (X - mean_) components_^T, shape (n, k)."""
        codes: Tensor = (self._input(X).float() - self.mean_) @ self.components_.T
        return codes

    def decode(self, Z: Tensor) -> Tensor:
        """Back to activation space: Z components_ + mean_, shape (n, d)."""
        back: Tensor = check_codes(self, Z, self.n_components).float() @ self.components_ + self.mean_
        return back
