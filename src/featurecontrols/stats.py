"""Statistics for verdicts: permutation p-values, exact paired tests, bootstrap intervals, and
corrections for multiple comparisons. Everything is vectorised over features (columns).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Correction = Literal["holm", "bh"]


def permutation_p_value(real: Tensor, null: Tensor) -> Tensor:
    """One-sided permutation p-value per column, never zero (Phipson & Smyth 2010).

    p = (1 + #{b : null_b >= real}) / (1 + B), with ``real`` of shape (k,) and ``null`` (k, B).
    """
    exceed = (null >= real[:, None]).sum(dim=1).double()
    return (1.0 + exceed) / (1.0 + null.shape[1])


def binomial_upper_tail(successes: int, trials: int) -> float:
    """P(X >= successes) for X ~ Binomial(trials, 1/2), exact (log-space sum)."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    log_terms = [
        math.lgamma(trials + 1) - math.lgamma(j + 1) - math.lgamma(trials - j + 1) - trials * math.log(2.0)
        for j in range(successes, trials + 1)
    ]
    top = max(log_terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def paired_sign_test(better: Tensor, worse: Tensor) -> float:
    """Exact one-sided McNemar test that condition A is right more often than condition B.

    ``better`` and ``worse`` are boolean (n,) correctness of A and B on the same examples.
    With b = #(A right, B wrong) and c = #(A wrong, B right), under H0 the b discordant wins
    among b + c are Binomial(b + c, 1/2); p = P(X >= b).
    """
    b = int((better & ~worse).sum())
    c = int((~better & worse).sum())
    return binomial_upper_tail(b, b + c)


def bootstrap_mean_ci(
    values: Tensor, n_boot: int, level: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Percentile bootstrap interval of the column means of ``values`` (n, k).

    Resamples the n rows with replacement ``n_boot`` times; returns (low, high), each (k,).
    """
    n = values.shape[0]
    idx = torch.randint(0, n, (n_boot, n), generator=generator)
    counts = torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(n_boot, n, dtype=torch.float64)
    )
    means = counts @ values.double() / n  # (n_boot, k): memory O(n_boot * n), not O(n_boot * n * k)
    tail = (1.0 - level) / 2.0
    q = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)
    low, high = torch.quantile(means, q, dim=0)
    return low, high


def adjust_p_values(p: Tensor, method: Correction) -> Tensor:
    """Adjust a family of p-values for multiple comparisons.

    - ``holm``: Holm (1979) step-down, controls the family-wise error rate:
      p_(i)^adj = max_{j <= i} min(1, (m - j + 1) p_(j)).
    - ``bh``: Benjamini & Hochberg (1995), controls the false discovery rate:
      p_(i)^adj = min_{j >= i} min(1, m p_(j) / j).
    """
    m = p.numel()
    if m == 0:
        return p.clone()
    order = torch.argsort(p)
    ranked = p[order].double()
    ranks = torch.arange(1, m + 1, dtype=torch.float64)
    if method == "holm":
        adjusted = torch.cummax((m - ranks + 1) * ranked, dim=0).values
    elif method == "bh":
        adjusted = torch.flip(torch.cummin(torch.flip(m * ranked / ranks, [0]), dim=0).values, [0])
    else:
        raise ValueError(f"unknown correction {method!r}; use 'holm' or 'bh'")
    out = torch.empty_like(adjusted)
    out[order] = adjusted.clamp(max=1.0)
    return out


def summarise_null(null: Tensor, bins: int = 40) -> dict[str, object]:
    """A null distribution in a few numbers: mean, sd, quantiles and a histogram (for reports)."""
    values = null.double().flatten()
    q = torch.quantile(values, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
    lo, hi = float(values.min()), float(values.max())
    counts = torch.histc(values, bins=bins, min=lo, max=hi if hi > lo else lo + 1.0)
    return {
        "n": values.numel(),
        "mean": float(values.mean()),
        "sd": float(values.std()) if values.numel() > 1 else 0.0,
        "q05": q[0],
        "median": q[1],
        "q95": q[2],
        "histogram": {"low": lo, "high": hi, "counts": [int(c) for c in counts]},
    }
