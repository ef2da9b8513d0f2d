"""A dictionary's codes kept as their nonzero entries: what the latent axes and metrics read.

An SAE's codes are sparse: a TopK SAE of 16,384 latents at k = 32 has 0.2% of them nonzero, so
30,000 held-out rows take 12 MB as entries (row, latent, value) against 2 GB as a dense float32
matrix. ``encode_sparse`` encodes a chunk of rows at a time (``chunk_rows``: CHUNK rows, fewer for a
dictionary so wide that their codes would pass ELEMENTS) and keeps only the entries, sorted by latent,
so a latent's column (or a block of latents) is one contiguous slice. Dense codes (PCA) work too, at
about five times their dense size, which at PCA's widths is small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.finders.base import Dictionary

CHUNK = 4096  # rows encoded at a time, at most
ELEMENTS = 1 << 24  # codes (rows x latents) encoded at a time, at most: 64 MB of float32


@dataclass(frozen=True)
class SparseCodes:
    """Codes of n rows and m latents as their nonzero entries, sorted by latent (then row)."""

    n: int
    m: int
    rows: Tensor  # (nnz,) int64
    latents: Tensor  # (nnz,) int64, sorted
    values: Tensor  # (nnz,) float32

    @classmethod
    def of(cls, Z: Tensor) -> SparseCodes:
        """The nonzero entries of a dense (n, m) code matrix (on any device; kept on the CPU)."""
        i, j = Z.nonzero(as_tuple=True)
        order = j.argsort(stable=True)
        i, j = i[order], j[order]
        return cls(Z.shape[0], Z.shape[1], i.cpu(), j.cpu(), Z[i, j].float().cpu())

    @classmethod
    def stacked(cls, parts: Sequence[SparseCodes]) -> SparseCodes:
        """The codes of parts' rows one after the other (every part has the same latents)."""
        offsets = torch.tensor([0, *(p.n for p in parts)]).cumsum(0)
        rows = torch.cat([p.rows + offset for p, offset in zip(parts, offsets, strict=False)])
        latents = torch.cat([p.latents for p in parts])
        order = latents.argsort(stable=True)
        values = torch.cat([p.values for p in parts])[order]
        return cls(int(offsets[-1]), parts[0].m, rows[order], latents[order], values)

    @property
    def density(self) -> float:
        """The fraction of entries that are nonzero."""
        return self.values.numel() / max(self.n * self.m, 1)

    def columns(self, start: int, stop: int) -> Tensor:
        """Latents start..stop-1 as a dense (n, stop - start) float32 matrix."""
        return self.gather(torch.arange(start, stop))

    def gather(self, latents: Tensor) -> Tensor:
        """The given latents' columns (repeats allowed) as a dense (n, k) float32 matrix."""
        column, rows, values = self.entries(latents)
        out = torch.zeros(self.n, latents.numel())
        out[rows, column] = values
        return out

    def entries(self, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The given latents' columns (repeats allowed) as entries: (column, row, value), column the
        position in ``latents``; what ``gather`` would make dense."""
        lo = torch.searchsorted(self.latents, latents)
        counts = torch.searchsorted(self.latents, latents, right=True) - lo
        column = torch.repeat_interleave(torch.arange(latents.numel()), counts)
        entry = slices(lo, counts)
        return column, self.rows[entry], self.values[entry]

    def column_products(self, latents: Tensor, other: SparseCodes, partners: Tensor) -> Tensor:
        """(k,) float64 sum_i Z_i,latents[j] W_i,partners[j] for the codes Z of self and W of ``other``
        (same rows), from the entries alone: the rows where both columns are nonzero, found by sorted
        keys (column * n + row), so the cost is in the entries, never an (n, k) matrix."""
        a_col, a_row, a_val = self.entries(latents)
        b_col, b_row, b_val = other.entries(partners)
        a_key, order = (a_col * self.n + a_row).sort()
        b_key = b_col * self.n + b_row
        at = torch.searchsorted(a_key, b_key).clamp(max=max(a_key.numel() - 1, 0))
        both = a_key[at] == b_key if a_key.numel() else torch.zeros_like(b_key, dtype=torch.bool)
        product = a_val[order[at[both]]].double() * b_val[both].double()
        return torch.zeros(latents.numel(), dtype=torch.float64).index_add_(0, b_col[both], product)

    def permuted(self, order: Tensor) -> SparseCodes:
        """The codes of rows ``order`` (a permutation of 0..n-1): row i of the result is row order[i]."""
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel())
        return SparseCodes(self.n, self.m, position[self.rows], self.latents, self.values)

    def firing_rate(self) -> Tensor:
        """(m,) the fraction of rows where each latent is nonzero."""
        return torch.bincount(self.latents, minlength=self.m).float() / self.n


def slices(starts: Tensor, counts: Tensor) -> Tensor:
    """The indices of the slices starts[i] .. starts[i] + counts[i] - 1, one after the other."""
    within = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    out: Tensor = torch.repeat_interleave(starts, counts) + within
    return out


def chunk_rows(dictionary: Dictionary, X: Tensor) -> int:
    """Rows of X to encode at a time: CHUNK, or ELEMENTS // m for a dictionary of m latents when that is
    fewer (a 16,384-latent SAE: 1,024 rows), m read from one row's codes. A chunk's pre-activations,
    codes and the encoder's temporaries are each (rows, m): this bounds the encode's memory by ELEMENTS,
    not by the dictionary's width."""
    with torch.no_grad():
        m = dictionary.encode(X[:1]).shape[1]
    return max(1, min(CHUNK, ELEMENTS // max(m, 1)))


def code_chunks(dictionary: Dictionary, X: Tensor, chunk: int | None = None) -> Iterator[tuple[int, Tensor]]:
    """(start, codes of X[start : start + chunk]) in order, without gradients, ``chunk`` rows at a time
    (by default ``chunk_rows``): no (n, m) pre-activation exists at once."""
    chunk = chunk_rows(dictionary, X) if chunk is None else chunk
    for start in range(0, X.shape[0], chunk):
        with torch.no_grad():  # a SAELens SAE's parameters require grad (not held across the yield)
            codes = dictionary.encode(X[start : start + chunk])
        yield start, codes


def encode_sparse(dictionary: Dictionary, X: Tensor, chunk: int | None = None) -> SparseCodes:
    """X's codes under ``dictionary`` as their nonzero entries, encoded ``chunk`` rows at a time (by
    default ``chunk_rows``)."""
    return SparseCodes.stacked([SparseCodes.of(Z) for _, Z in code_chunks(dictionary, X, chunk)])
