"""The inputs on which each latent fires most: what a researcher reads to see what a latent is.

For codes Z = encode(X) of n rows and m latents, latent j's top rows are the k rows with the largest
codes, largest first,

    top_j = argsort_i(-Z_ij)[:k],

ties broken by the lower row. X is encoded in chunks of rows with a running top-k, so a 16k-latent
dictionary never holds the (n, m) codes at once: memory is O(chunk * m + k * m).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.finders.base import Dictionary


@dataclass(frozen=True)
class TopRows:
    """Per latent (m, k): the rows of X with the largest codes and those codes, largest first."""

    rows: Tensor
    codes: Tensor


def top_activations(dictionary: Dictionary, X: Tensor, k: int, chunk: int = 4096) -> TopRows:
    """Each latent's ``k`` rows of X (n, d) with the largest codes (module docstring); k <= n."""
    if not 1 <= k <= X.shape[0]:
        raise ValueError(f"k must be in [1, {X.shape[0]}], got {k}")
    best_codes: Tensor | None = None
    best_rows: Tensor | None = None
    for start in range(0, X.shape[0], chunk):
        codes = dictionary.encode(X[start : start + chunk]).detach().float().cpu().T  # (m, rows)
        rows = torch.arange(start, start + codes.shape[1]).expand_as(codes)
        if best_codes is not None and best_rows is not None:
            codes, rows = torch.cat([best_codes, codes], 1), torch.cat([best_rows, rows], 1)
        order = _descending(codes, rows)[:, :k]
        best_codes, best_rows = codes.gather(1, order), rows.gather(1, order)
    assert best_codes is not None and best_rows is not None
    return TopRows(best_rows, best_codes)


def _descending(codes: Tensor, rows: Tensor) -> Tensor:
    """Per latent, the column order by code (largest first), ties by the lower row."""
    by_row = rows.argsort(dim=1, stable=True)
    by_code = codes.gather(1, by_row).argsort(dim=1, descending=True, stable=True)
    return by_row.gather(1, by_code)
