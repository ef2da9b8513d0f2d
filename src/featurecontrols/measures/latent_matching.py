"""Matching dictionary latents by their codes on the same inputs, and the directions latents write.

Two dictionaries fitted on different activations (another seed, a randomised copy of the model,
structure-free inputs) live in different spaces, so their latents are matched by what they do on the
same held-out inputs: latent j of codes Z (n, m) is matched to the latent k of codes W (n, m') with
the largest absolute Pearson correlation,

    r_j = max_k |corr(Z_:j, W_:k)|,   partner_j = argmax_k,   sign_j = sign corr(Z_:j, W_:partner_j),

a constant column (a latent that never fires) correlating 0 with everything. Computed in chunks of
latents, so a 16k-latent dictionary never needs an m x m' matrix in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.finders.base import Dictionary


@dataclass(frozen=True)
class Matches:
    """Per latent of Z: the best |correlation| (m,), its partner's index (m,) and the sign (m,)."""

    value: Tensor
    partner: Tensor
    sign: Tensor


def standardised(Z: Tensor) -> Tensor:
    """Columns centred and scaled to unit norm (a constant column becomes 0), float64."""
    Zc = Z.double() - Z.double().mean(dim=0)
    norms = Zc.norm(dim=0)
    return Zc / torch.where(norms > 0, norms, torch.ones_like(norms))


def best_matches(Z: Tensor, W: Tensor, chunk: int = 1024) -> Matches:
    """For every column of Z (n, m), its best match among the columns of W (n, m') (module docstring)."""
    A, B = standardised(Z), standardised(W)
    values, partners, signs = [], [], []
    for start in range(0, A.shape[1], chunk):
        C = A[:, start : start + chunk].T @ B  # (chunk, m') correlations
        value, partner = C.abs().max(dim=1)
        values.append(value)
        partners.append(partner)
        signs.append(torch.sign(C.gather(1, partner[:, None])[:, 0]))
    return Matches(torch.cat(values), torch.cat(partners), torch.cat(signs))


def partner_correlation(W1: Tensor, m1: Matches, W2: Tensor, m2: Matches) -> Tensor:
    """Per latent j, corr(sign1_j W1_:partner1_j, sign2_j W2_:partner2_j): how alike the two partners are."""
    A = standardised(W1)[:, m1.partner] * m1.sign
    B = standardised(W2)[:, m2.partner] * m2.sign
    return (A * B).sum(dim=0)


def decoder_directions(dictionary: Dictionary, m: int, chunk: int = 256) -> Tensor:
    """The (m, d) float64 directions the latents write, decode(e_j) - decode(0), decoded in chunks."""
    zero = dictionary.decode(torch.zeros(1, m)).double().cpu()
    parts = []
    for start in range(0, m, chunk):
        rows = min(chunk, m - start)
        basis = torch.zeros(rows, m)
        basis[torch.arange(rows), torch.arange(start, start + rows)] = 1.0
        parts.append(dictionary.decode(basis).double().cpu() - zero)
    return torch.cat(parts)
