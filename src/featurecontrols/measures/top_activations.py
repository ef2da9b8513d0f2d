"""The inputs on which each latent fires most: what a researcher reads to see what a latent is.

For codes Z = encode(X) of n rows and m latents, latent j's top rows are the k rows with the largest
codes, largest first,

    top_j = argsort_i(-Z_ij)[:k],

ties broken by the lower row. X is encoded in chunks of rows (``sparse_codes.code_chunks``) with a
running top-k, merged a block of latents at a time, so a 16k-latent dictionary never holds the (n, m)
codes at once: memory is O(chunk * m + k * m), and the merge's sorts O(chunk * block).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.finders.base import Dictionary
from featurecontrols.finders.sparse_codes import code_chunks


@dataclass(frozen=True)
class TopRows:
    """Per latent (m, k): the rows of X with the largest codes and those codes, largest first."""

    rows: Tensor
    codes: Tensor


def top_activations(
    dictionary: Dictionary, X: Tensor, k: int, chunk: int | None = None, block: int = 1024
) -> TopRows:
    """Each latent's ``k`` rows of X (n, d) with the largest codes (module docstring); k <= n. Each
    chunk of rows (by default ``sparse_codes.chunk_rows``) is merged into the running top-k ``block``
    latents at a time."""
    if not 1 <= k <= X.shape[0]:
        raise ValueError(f"k must be in [1, {X.shape[0]}], got {k}")
    best_codes, best_rows = torch.empty(0, 0), torch.empty(0, 0, dtype=torch.long)
    for start, encoded in code_chunks(dictionary, X, chunk):
        codes = encoded.float().cpu()  # (rows, m)
        m = codes.shape[1]
        if start == 0:
            best_codes, best_rows = torch.empty(m, 0), torch.empty(m, 0, dtype=torch.long)
        rows = torch.arange(start, start + codes.shape[0])
        merged = [
            _merge(
                best_codes[lo : lo + block], best_rows[lo : lo + block], codes[:, lo : lo + block].T, rows, k
            )
            for lo in range(0, m, block)
        ]
        best_codes, best_rows = torch.cat([c for c, _ in merged]), torch.cat([r for _, r in merged])
    return TopRows(best_rows, best_codes)


def _merge(
    best_codes: Tensor, best_rows: Tensor, codes: Tensor, rows: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The top ``k`` (codes, rows) per latent of a block (b, .) among its running best and a chunk's
    codes (b, rows)."""
    codes = torch.cat([best_codes, codes], 1)
    rows = torch.cat([best_rows, rows.expand(codes.shape[0], -1)], 1)
    order = _descending(codes, rows)[:, :k]
    return codes.gather(1, order), rows.gather(1, order)


def _descending(codes: Tensor, rows: Tensor) -> Tensor:
    """Per latent, the column order by code (largest first), ties by the lower row."""
    by_row = rows.argsort(dim=1, stable=True)
    by_code = codes.gather(1, by_row).argsort(dim=1, descending=True, stable=True)
    return by_row.gather(1, by_code)
