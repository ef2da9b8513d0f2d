"""Singular value spectra of a site's activations, for the trained model against randomised copies.

For activations X (n, d) with column means mu, the spectrum is the singular values of
(X - 1 mu^T) / sqrt(n), largest first: the square roots of the eigenvalues of the covariance. A
randomised copy whose spectrum matches the trained model's keeps the scale and the spread of the
activations; learned structure shows as a difference in shape (a few large directions, a fast decay).
"""

from __future__ import annotations

import torch
from torch import Tensor


def activation_spectrum(X: Tensor, top: int = 64) -> list[float]:
    """The ``top`` largest singular values of the centred activations / sqrt(n) (module docstring)."""
    Xc = X.double() - X.double().mean(dim=0)
    eigenvalues = torch.linalg.eigvalsh(Xc.T @ Xc / X.shape[0]).flip(0)[:top]
    return [float(v) for v in eigenvalues.clamp(min=0.0).sqrt()]
