"""Spectrum-matched weights: keep every weight matrix's singular values, destroy its directions.

A parameter with ndim >= 2 is read as the matrices the model adapter says it factors into (plain
torch: one (shape[0], everything else) matrix; per-head attention weights: one matrix per head).
Each matrix W, with SVD W = U S V^T, is replaced by W' = U' S V'^T, where U' (m x k) and V' (n x k),
k = min(m, n), are independent and
Haar-distributed with orthonormal columns. W' has the same law as O_1 W O_2 for independent Haar
orthogonal O_1, O_2, so it depends on W only through S, and only S is computed. Haar columns come
from the QR decomposition Z = QR of a Gaussian matrix Z with each column of Q multiplied by the
sign of the matching diagonal entry of R (Mezzadri, Notices of the AMS 54, 2007); without the
sign correction Q is not Haar. For tall matrices (a token embedding) Cholesky QR gives the same
Q with matrix products only. The Frobenius and spectral norms, hence the activation scale, are
kept; the learned directions are gone. This is the random-matrix control of learned weights: what
a layer's spectrum alone explains (Martin & Mahoney, JMLR 22, 2021, compare learned weight matrices
with randomised ones).

A 1-D parameter (bias, norm gain), or one the adapter reads as no matrix (TransformerLens's b_Q
of shape (heads, d_head)), is randomly permuted, which keeps its norm (the spectrum of a vector)
and its distribution of values (LayerNorm gains stay positive). A 0-d parameter is kept.
All draws are on CPU from per-parameter generators (Gaussians drawn in float32, 2.5x faster than
float64; the arithmetic in float64), so the copy is the same on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.controls.weight._copy import WeightControlBase
from featurecontrols.seeding import generator

SPECTRUM_MATCHED = "spectrum-matched"
PERMUTED = "permuted"


class SpectrumMatchedWeights(WeightControlBase):
    """Weight control: W = U S V^T becomes U' S V'^T with Haar-random U', V'; vectors are permuted.

    Options ``keep``, ``presets``, ``layers``: see ``controls._weights.WeightControlBase``.
    """

    name = "spectrum-matched"

    def redraw(
        self, copy: nn.Module, targets: dict[str, nn.Parameter], seed: int, adapter: ModelAdapter
    ) -> dict[str, str]:
        methods = {}
        for name, p in targets.items():
            rng = generator(seed, name)
            view = adapter.matrix_view(name, p)
            if view is None:
                flat = p.reshape(-1)  # a vector, or a tensor the adapter reads as no matrix (b_Q of heads)
                p.copy_(flat[torch.randperm(p.numel(), generator=rng).to(p.device)].reshape(p.shape))
                methods[name] = PERMUTED
            else:
                matrices = view.matrices(p.detach().to("cpu", torch.float64))
                p.copy_(torch.stack([spectrum_matched(w, rng) for w in matrices]).reshape(p.shape))
                methods[name] = (
                    SPECTRUM_MATCHED if view.batch == 1 else f"{SPECTRUM_MATCHED} ({view.batch} matrices)"
                )
        return methods


def haar_times(m: int, right: Tensor, generator: torch.Generator) -> Tensor:
    """Q @ right for an m x k float64 Haar-distributed Q with orthonormal columns (right: k x n, k <= m).

    Q is the factor of a Gaussian Z = QR with a positive diagonal in R. For a tall Z (m >= 4k),
    Cholesky QR gives R = chol(Z^T Z) and Q @ right = Z (R^-1 right): two matrix products and no
    m x k triangular solve; Z's condition number is below 3 there, so this is accurate to rounding.
    Otherwise Householder QR, with the sign correction.
    """
    k = right.shape[0]
    z = torch.randn(m, k, generator=generator).double()
    if m >= 4 * k:
        r = torch.linalg.cholesky(z.T @ z, upper=True)
        product: Tensor = z @ torch.linalg.solve_triangular(r, right, upper=True)
        return product
    q, r = torch.linalg.qr(z)
    return torch.mul(q, torch.diagonal(r).sign()) @ right  # a zero diagonal entry has probability zero


def haar_columns(m: int, k: int, generator: torch.Generator) -> Tensor:
    """An m x k float64 matrix with orthonormal columns, Haar-distributed (k <= m)."""
    return haar_times(m, torch.eye(k, dtype=torch.float64), generator)


def spectrum_matched(matrix: Tensor, generator: torch.Generator) -> Tensor:
    """U' S V'^T for the singular values S of a float64 (m, n) matrix; float64 on CPU, same shape.

    Computed for the tall orientation (W or W^T, m >= k) as U' (S V'^T): one m x k x k product.
    """
    wide = matrix.shape[1] > matrix.shape[0]
    tall = matrix.T if wide else matrix
    s = torch.linalg.svdvals(tall)
    v = haar_columns(s.numel(), s.numel(), generator)
    out = haar_times(tall.shape[0], s[:, None] * v.T, generator)
    return out.T if wide else out
