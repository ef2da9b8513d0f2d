"""Statistics for verdicts: permutation p-values, exact paired tests, bootstrap intervals, and
corrections for multiple comparisons. Everything is vectorised over features (columns).
For benchmarking the controls themselves: AUROC with DeLong's interval, Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.validation import check_at_least, check_in_open_unit

Correction = Literal["holm", "bh"]


def permutation_p_value(real: Tensor, null: Tensor) -> Tensor:
    """One-sided permutation p-value per column, never zero (Phipson & Smyth 2010).

    p = (1 + #{b : null_b >= real}) / (1 + B), with ``real`` of shape (k,) and ``null`` (k, B). A null
    value within a relative 1e-12 of the real one counts as a tie: the same count over the same n can
    come out of two floating-point sums one ulp apart.
    """
    if real.ndim != 1 or null.ndim != 2 or null.shape[0] != real.shape[0] or null.shape[1] == 0:
        raise FeatureControlsError(
            f"a permutation p-value takes real (k,) and null (k, B >= 1), got {tuple(real.shape)} "
            f"and {tuple(null.shape)}",
            "give one row of null draws per real value",
        )
    real = real.double()
    tolerance = 1e-12 * real.abs().clamp(min=1.0)
    exceed = (null.double() >= (real - tolerance)[:, None]).sum(dim=1).double()
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


def below_margin_p(estimate: float, se: float, margin: float) -> float:
    """One-sided p of H0: theta >= margin, from an estimate of theta with standard error ``se`` by the
    normal approximation, p = Phi((estimate - margin) / se): one side of a test of equivalence
    (Schuirmann 1987), small when theta is shown below the margin. With se = 0 it is 0 when the
    estimate lies below the margin, else 1; without a finite se (one example) it is 1."""
    if not math.isfinite(se):
        return 1.0
    if se <= 0.0:
        return 0.0 if estimate < margin else 1.0
    return NormalDist().cdf((estimate - margin) / se)


def bootstrap_mean_ci(
    values: Tensor, n_boot: int, level: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Percentile bootstrap interval of the column means of ``values`` (n, k).

    Resamples the n rows with replacement ``n_boot`` times; returns (low, high), each (k,).
    """
    return percentile_interval(bootstrap_means(values, n_boot, generator), level)


def bootstrap_means(values: Tensor, n_boot: int, generator: torch.Generator) -> Tensor:
    """The column means of ``n_boot`` resamples of the n rows of ``values`` (n, k), shape (n_boot, k)."""
    _check_bootstrap(values, n_boot)
    n = values.shape[0]
    idx = torch.randint(0, n, (n_boot, n), generator=generator)
    counts = torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(n_boot, n, dtype=torch.float64)
    )
    return counts @ values.double() / n  # memory O(n_boot * n), not O(n_boot * n * k)


def percentile_interval(means: Tensor, level: float) -> tuple[Tensor, Tensor]:
    """The central ``level`` interval of the resampled ``means`` (n_boot, k): (low, high), each (k,)."""
    check_in_open_unit("level", level, "0.95")
    tail = (1.0 - level) / 2.0
    low, high = torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=torch.float64), dim=0)
    return low, high


def _check_bootstrap(values: Tensor, n_boot: int) -> None:
    check_at_least("n_boot", n_boot, 1)
    if values.ndim != 2 or values.shape[0] == 0:
        raise FeatureControlsError(
            f"a bootstrap takes values (n >= 1, k), got shape {tuple(values.shape)}",
            "give at least one row, one column per quantity",
        )


def adjust_p_values(p: Tensor, method: Correction) -> Tensor:
    """Adjust a family of p-values for multiple comparisons.

    - ``holm``: Holm (1979) step-down, controls the family-wise error rate:
      p_(i)^adj = max_{j <= i} min(1, (m - j + 1) p_(j)).
    - ``bh``: Benjamini & Hochberg (1995), controls the false discovery rate:
      p_(i)^adj = min_{j >= i} min(1, m p_(j) / j).
    """
    if method not in ("holm", "bh"):
        raise FeatureControlsError(f"unknown correction {method!r}", "use 'holm' or 'bh'")
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        raise FeatureControlsError(
            "p-values to correct must lie in [0, 1] (NaN is not a p-value)", "correct only computed p-values"
        )
    m = p.numel()
    if m == 0:
        return p.clone()
    order = torch.argsort(p)
    ranked = p[order].double()
    ranks = torch.arange(1, m + 1, dtype=torch.float64)
    if method == "holm":
        adjusted = torch.cummax((m - ranks + 1) * ranked, dim=0).values
    else:
        adjusted = torch.flip(torch.cummin(torch.flip(m * ranked / ranks, [0]), dim=0).values, [0])
    out = torch.empty_like(adjusted)
    out[order] = torch.maximum(adjusted, ranked).clamp(max=1.0)  # never below the raw p (rounding)
    return out


@dataclass(frozen=True)
class NullSummary:
    """A null distribution in a few numbers: its size, mean, sd, quantiles, and a histogram of
    ``counts`` in equal bins from ``low`` to ``high`` (for reports)."""

    n: int
    mean: float
    sd: float
    q05: float
    median: float
    q95: float
    low: float
    high: float
    counts: tuple[int, ...]


def summarise_null(null: Tensor, bins: int = 40) -> NullSummary:
    """The :class:`NullSummary` of the values in ``null``."""
    values = null.double().flatten()
    q = torch.quantile(values, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
    lo, hi = float(values.min()), float(values.max())
    counts = torch.histc(values, bins=bins, min=lo, max=hi if hi > lo else lo + 1.0)
    sd = float(values.std()) if values.numel() > 1 else 0.0
    return NullSummary(
        values.numel(), float(values.mean()), sd, q[0], q[1], q[2], lo, hi, tuple(int(c) for c in counts)
    )


def cluster_bootstrap_means(
    values: Tensor, clusters: Tensor, n_boot: int, generator: torch.Generator
) -> Tensor:
    """The column means of ``n_boot`` cluster resamples of ``values`` (n, k), shape (n_boot, k).

    Rows in the same cluster (``clusters`` (n,), any integer keys) are resampled together: each
    resample draws C of the C clusters with replacement, and its mean is the sum of their rows over
    their number of rows. Use it when rows within a cluster are dependent (the examples of one token
    type, one document); take the interval with :func:`percentile_interval`.
    """
    _check_bootstrap(values, n_boot)
    if clusters.shape != (values.shape[0],):
        raise FeatureControlsError(
            f"clusters of shape {tuple(clusters.shape)} do not match {values.shape[0]} rows",
            "give one cluster key per row",
        )
    _, cluster_of = torch.unique(clusters.cpu(), return_inverse=True)
    n_clusters = int(cluster_of.max()) + 1
    sums = torch.zeros(n_clusters, values.shape[1], dtype=torch.float64).index_add_(
        0, cluster_of, values.double().cpu()
    )
    sizes = torch.bincount(cluster_of, minlength=n_clusters).double()
    draws = torch.randint(0, n_clusters, (n_boot, n_clusters), generator=generator)
    counts = torch.zeros(n_boot, n_clusters, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(n_boot, n_clusters, dtype=torch.float64)
    )
    return (counts @ sums) / (counts @ sizes)[:, None]


def auroc_delong(positive: Tensor, negative: Tensor, level: float) -> tuple[float, float, float]:
    """AUROC of scores separating ``positive`` (m,) from ``negative`` (n,), with DeLong's interval.

    AUROC = mean_ij psi(x_i, y_j), psi = 1 if x > y, 1/2 if x = y, else 0 (the Mann-Whitney U / mn).
    DeLong et al. (1988): with V10_i = mean_j psi(x_i, y_j) and V01_j = mean_i psi(x_i, y_j),
    Var(AUROC) = s^2(V10) / m + s^2(V01) / n, and the interval is AUROC -/+ z Var^(1/2), clipped to
    [0, 1]. Returns (auroc, low, high); the interval is NaN when m or n is below 2, and a point when
    the classes are perfectly separated (both variances are zero: no discordant pair was seen).
    """
    x, y = positive.double().flatten(), negative.double().flatten()
    m, n = x.numel(), y.numel()
    if m == 0 or n == 0:
        raise FeatureControlsError(
            f"AUROC needs both classes, got {m} positive and {n} negative scores",
            "score at least one feature of each class",
        )
    check_in_open_unit("level", level, "0.95")
    psi = (x[:, None] > y[None, :]).double() + 0.5 * (x[:, None] == y[None, :]).double()
    auc = float(psi.mean())
    if m < 2 or n < 2:
        return auc, float("nan"), float("nan")
    se = math.sqrt(float(psi.mean(dim=1).var()) / m + float(psi.mean(dim=0).var()) / n)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)


def wilson_interval(successes: int, trials: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (Wilson 1927).

    centre = (k + z^2/2) / (n + z^2),  half-width = z / (n + z^2) * (k (n - k) / n + z^2 / 4)^(1/2).
    Unlike the normal interval it stays inside [0, 1] and is not a point at k = 0 or k = n.
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise FeatureControlsError(
            f"a Wilson interval needs 0 <= successes <= trials and trials >= 1, got {successes} of {trials}",
            "count successes among at least one trial",
        )
    check_in_open_unit("level", level, "0.95")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    z2 = z * z
    centre = (successes + z2 / 2.0) / (trials + z2)
    half = z / (trials + z2) * math.sqrt(successes * (trials - successes) / trials + z2 / 4.0)
    p = successes / trials  # inside the interval in exact arithmetic; kept there against rounding
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))
