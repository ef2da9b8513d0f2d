"""Progress measures for grokking modular addition (Nanda, Chan, Lieberum, Smith, Steinhardt 2023,
"Progress measures for grokking via mechanistic interpretability", ICLR 2023).

Everything here is a function of tensors laid out over all p^2 inputs (a, b), a-major: row a p + b.
With w_k = 2 pi k / p, the model computes a + b mod p through cos(w_k (a + b)) and sin(w_k (a + b)) at a
few *key frequencies* k, read off with cos(w_k (a + b - c)) for each output c (Section 4 of the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def fourier_basis(p: int) -> Tensor:
    """The orthonormal Fourier basis of functions on Z_p, rows (p, p) in float64.

    Row 0 is the constant 1/sqrt(p); rows 2k-1 and 2k are cos(w_k x) and sin(w_k x) for
    k = 1..(p-1)/2, each scaled to unit norm (by sqrt(2/p)). p must be odd.
    """
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows)
    normalised: Tensor = basis / basis.norm(dim=1, keepdim=True)
    return normalised


def neuron_frequencies(activations: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """Each neuron's dominant frequency and the fraction of its variance that frequency explains.

    ``activations`` (p^2, n) over all inputs (a, b) are reshaped to (p, p, n) and transformed along both
    input axes, A_hat = F A F^T. The 2-D block of frequency k holds the components whose a- and b-
    indices are in {0, 2k-1, 2k}, less (0, 0): cos/sin(w_k a), cos/sin(w_k b) and their products, i.e.
    also cos/sin(w_k (a +- b)). Returns (frequency (n,), fraction (n,)); the fraction is
    ||block_k||^2 / ||A_hat without (0, 0)||^2, and 0 for a dead (constant) neuron.
    """
    basis = fourier_basis(p)
    acts = activations.detach().double().reshape(p, p, -1)
    coeffs = torch.einsum("ia,abn,jb->ijn", basis, acts, basis)
    coeffs[0, 0] = 0.0
    power = coeffs.square()
    total = power.sum(dim=(0, 1))
    in_block = []
    for k in range(1, (p - 1) // 2 + 1):
        idx = [0, 2 * k - 1, 2 * k]
        in_block.append(power[idx][:, idx].sum(dim=(0, 1)))
    explained = torch.stack(in_block) / total.clamp_min(torch.finfo(torch.float64).tiny)
    fraction, index = explained.max(dim=0)
    return index + 1, torch.where(total > 0, fraction, torch.zeros_like(fraction))


def key_frequencies(activations: Tensor, p: int, min_fraction: float = 0.5) -> list[int]:
    """The key frequencies: the dominant frequencies of the MLP neurons (post-ReLU, at '=').

    ``activations`` (p^2, d_mlp). A neuron votes for its dominant frequency when that frequency
    explains at least ``min_fraction`` of its variance (dead and unspecialised neurons do not vote);
    the key set is the sorted set of frequencies with a vote.
    """
    frequency, fraction = neuron_frequencies(activations, p)
    return sorted({int(k) for k in frequency[fraction >= min_fraction]})


def sum_directions(p: int, frequencies: Sequence[int]) -> Tensor:
    """Unit vectors cos(w_k (a + b)), sin(w_k (a + b)) over the p^2 inputs, rows (2 |K|, p^2), float64.

    They are orthonormal for distinct k in 1..(p-1)/2; no frequencies give a (0, p^2) matrix.
    """
    grid = torch.arange(p, dtype=torch.float64)
    total = (grid[:, None] + grid[None, :]).reshape(-1)
    w = torch.tensor([2 * math.pi * k / p for k in frequencies], dtype=torch.float64)[:, None]
    directions = torch.stack([torch.cos(w * total), torch.sin(w * total)], dim=1).reshape(-1, p * p)
    unit: Tensor = directions / directions.norm(dim=1, keepdim=True)
    return unit


def _split_logits(logits: Tensor, p: int, frequencies: Sequence[int]) -> tuple[Tensor, Tensor]:
    """(kept, removed): the logits' components along ``sum_directions`` over the input axis, and the rest.

    For logits L (p^2, p) and the directions U (2 |K|, p^2): kept = U^T U L, removed = L - kept.
    """
    U = sum_directions(p, frequencies)
    L = logits.detach().double()
    kept = U.T @ (U @ L)
    return kept, L - kept


def restricted_loss(logits: Tensor, labels: Tensor, p: int, frequencies: Sequence[int]) -> float:
    """Cross-entropy on all p^2 inputs of the logits restricted to the key frequencies.

    L_restricted = U^T U L + 1 m^T: only the components along cos/sin(w_k (a + b)), k in K, plus m,
    the mean over inputs of what was removed, one value per output (the paper's bias term). Low when
    the model's performance comes from the key frequencies alone (paper, Section 5.1).
    """
    kept, removed = _split_logits(logits, p, frequencies)
    return float(F.cross_entropy(kept + removed.mean(dim=0), labels))


def excluded_loss(logits: Tensor, labels: Tensor, p: int, frequencies: Sequence[int], train: Tensor) -> float:
    """Cross-entropy on the training inputs ``train`` (indices) of the logits without the key frequencies.

    L_excluded = L - U^T U L. High when the model no longer memorises the training set with other
    components: it rises as the Fourier circuit replaces memorisation (paper, Section 5.1).
    """
    _, removed = _split_logits(logits, p, frequencies)
    return float(F.cross_entropy(removed[train], labels[train]))


def gini(values: Tensor) -> float:
    """Gini coefficient of non-negative values x_1 <= ... <= x_n: sum_i (2 i - n - 1) x_i / (n sum_i x_i).

    0 when all are equal, (n - 1) / n when one holds everything.
    """
    x = values.detach().double().flatten().sort().values
    n = x.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def embedding_fourier_norms(W_E: Tensor, p: int) -> Tensor:
    """||(F W_E)_j|| for each Fourier basis vector j (p,): W_E (p, d_model) restricted to the p numbers."""
    norms: Tensor = (fourier_basis(p) @ W_E.detach().double()).norm(dim=1)
    return norms


def neuron_logit_fourier_norms(W_L: Tensor, p: int) -> Tensor:
    """||(W_L F^T)_{:,j}|| per Fourier basis vector j (p,); W_L = W_out W_U (d_mlp, p), neurons to logits."""
    norms: Tensor = (W_L.detach().double() @ fourier_basis(p).T).norm(dim=0)
    return norms


def sum_of_squared_weights(parameters: Sequence[Tensor]) -> float:
    """sum over all parameters of ||theta||^2: what weight decay shrinks."""
    return float(sum(t.detach().double().square().sum() for t in parameters))
