"""Pearson correlations of one dictionary latent's codes with every latent's, from the nonzero entries.

For codes Z (n rows, m latents) the correlation of latents j and k over the rows is

    r_jk = (S_jk / n - mu_j mu_k) / (sigma_j sigma_k),   S_jk = sum_i Z_ij Z_ik,

with mu and sigma each latent's mean and (population) standard deviation over all n rows, zeros
included. S_j. needs only the rows where j fires: its entries there times every entry of those rows,
so one latent's row costs (rows j fires on) x (latents per row), never an (n, m) matrix, and a
16,384-latent SAE at L0 = 32 stays cheap. A latent that never varies (dead, or constant) correlates
0 with everything.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.finders.sparse_codes import SparseCodes, slices


class CodeCorrelation:
    """The codes' entries sorted by row (so a row's entries are one slice) and each latent's mean and
    standard deviation: what one latent's correlations with all others need."""

    def __init__(self, codes: SparseCodes) -> None:
        self.codes = codes
        order = codes.rows.argsort(stable=True)
        self.latents, self.values = codes.latents[order], codes.values[order].double()
        counts = torch.bincount(codes.rows, minlength=codes.n)
        self.starts = counts.cumsum(0) - counts  # (n,) where each row's entries begin
        self.counts = counts
        n = max(codes.n, 1)
        values = codes.values.double()
        self.mean = torch.zeros(codes.m, dtype=torch.float64).index_add_(0, codes.latents, values) / n
        square = torch.zeros(codes.m, dtype=torch.float64).index_add_(0, codes.latents, values**2) / n
        self.std = (square - self.mean**2).clamp(min=0).sqrt()

    def of(self, latent: int) -> Tensor:
        """(m,) float64: latent ``latent``'s correlation with every latent (itself 1 unless constant)."""
        _, rows, own = self.codes.entries(torch.tensor([latent]))
        counts = self.counts[rows]
        entry = slices(self.starts[rows], counts)
        weight = torch.repeat_interleave(own.double(), counts)
        products = torch.zeros(self.codes.m, dtype=torch.float64)
        products.index_add_(0, self.latents[entry], weight * self.values[entry])
        covariance = products / max(self.codes.n, 1) - self.mean[latent] * self.mean
        scale = self.std[latent] * self.std
        safe = scale.clamp(min=torch.finfo(torch.float64).tiny)
        out: Tensor = torch.where(scale > 0, covariance / safe, torch.zeros_like(covariance))
        return out
