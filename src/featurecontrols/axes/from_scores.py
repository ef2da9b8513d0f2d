"""One test per kind of raw score: each turns a record of ``axes/scores.py`` into Evidence.

    NullScores       p = (1 + #{b : null_b >= real - delta}) / (1 + B)   (Phipson & Smyth 2010; <= for
                     a cost); effect = mean(real) - mean(null), or mean(real - control) when paired
                     interval: percentile bootstrap of mean(real) over examples (clusters resampled
                     whole) minus mean(null); the same resamples give the interval of mean(real)
                     itself. On the used axis each resample subtracts a null draw picked at random
                     instead (``spread``): there each draw is another direction or latent, whose
                     changes differ by what the model reads, not by sampling alone, and the
                     p-value ranks the real change among them, so the interval carries their
                     spread too (one that lies above the margin then agrees with a small p,
                     before the correction over the run)
    CopyScores       p = max_s McNemar(trained, copy_s)   (exact, one-sided; intersection-union over S)
                     effect = accuracy(trained) - max_s accuracy(copy_s), bootstrap of the paired
                     difference against the strongest copy
    PairedScores     p = sign test of d_i = real_i - control_i > delta (exact, one-sided)
                     effect = mean(d), bootstrap interval (and of mean(real) itself)
    MatchScores      p = (1 + #{null >= r}) / (1 + N);  effect = r - mean(null);  interval from
                     Fisher's z, tanh(atanh(r) -/+ z_a / sqrt(n - 3)), minus mean(null)
    MatchPairScores  H0: rho_real - rho_s <= delta (the margin) against every control dictionary s
                     (the largest p): the copy holds the same latent unless the refit matches it
                     better by more than the margin. p inverts Zou's (2007) interval for two dependent
                     correlations sharing a variable, p = 1 - Phi(z*) with the interval's lower end
                     at level z* equal to delta; effect = r_real - max_s r_s, Zou's interval at the
                     strongest control

delta is the effect the test is against: 0 (H0: the real result is no better than its control), or
the margin for a minimum-effect test (H0: it beats the control by at most the margin, Lakens 2018):
the used axis tests against its margin, so a change too small to matter is never called "used".

Each also tests equivalence, H0: effect >= margin (``p_equivalent``, one side of Schuirmann's 1987
two one-sided tests, the only side a "no" needs), by the normal approximation
p = Phi((effect - margin) / se): se the bootstrap's standard deviation (NullScores), sd(d) / sqrt(n)
of the paired differences (CopyScores per copy, PairedScores); on the used axis the change itself
is tested the same way and the larger p kept (the change's alone where the null's changes are
non-negative: there it implies the effect's, ``_used_equivalence``). Against several controls in one
test (copies, control dictionaries) equivalence to any one of them is the claim, so the smallest p is
multiplied by their number (Bonferroni). MatchPairScores inverts Zou's interval at the margin from
above.
The axis modules (decodable, learned, used) say which of these each of their controls uses.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import Tensor

from featurecontrols.axes.evidence import AxisName, Bootstrap, Detail, Evidence
from featurecontrols.axes.scores import CopyScores, MatchPairScores, MatchScores, NullScores, PairedScores
from featurecontrols.seeding import generator
from featurecontrols.stats import (
    below_margin_p,
    bootstrap_mean_ci,
    bootstrap_means,
    cluster_bootstrap_means,
    paired_sign_test,
    percentile_interval,
    permutation_p_value,
    summarise_null,
)


def from_null(
    axis: AxisName,
    control: str,
    s: NullScores,
    key: tuple[str, ...],
    b: Bootstrap,
    delta: float = 0.0,
    spread: bool = False,
) -> Evidence:
    """Evidence from a statistic against its permutation null, tested against ``delta`` (module
    docstring). With ``spread`` (and no paired control), each resample's effect subtracts one null draw
    picked at random instead of the null's mean, so the interval carries the null's spread too."""
    sign = -1.0 if s.lower_is_better else 1.0
    real = s.real.double()
    score = float(real.mean())
    null = s.null.double()
    if s.control is None:
        values, offset = sign * real, sign * float(null.mean())
    else:
        values, offset = sign * (real - s.control.double()), 0.0
    draw = generator(b.seed, "bootstrap", axis, control, *key)
    changed = real if s.size is None else s.size.double()  # what "not used" bounds
    columns = torch.stack([values, changed], dim=1)  # the effect's interval and the change's
    if s.clusters is None:
        means = bootstrap_means(columns, b.n, draw)
    else:
        means = cluster_bootstrap_means(columns, s.clusters, b.n, draw)
    if spread and s.control is None:
        picked = null[torch.randint(0, null.numel(), (b.n,), generator=draw)]
        means = torch.stack([means[:, 0] - sign * picked + offset, means[:, 1]], dim=1)
    low, high = percentile_interval(means, b.confidence)
    p = permutation_p_value(torch.tensor([sign * score - delta], dtype=torch.float64), sign * null[None])
    effect, margin = float(values.mean()) - offset, b.margins.of(s.unit)
    p_equivalent = below_margin_p(effect, float(means[:, 0].std()), margin)
    if axis == "used":
        p_change = below_margin_p(float(changed.mean()), float(means[:, 1].std()), margin)
        p_equivalent = _used_equivalence(p_equivalent, p_change, null, s.size is not None)
    return Evidence(
        axis=axis,
        control=control,
        metric=_with_group(s),
        score=score,
        control_score=float(null.mean()),
        effect=effect,
        ci_low=float(low[0]) - offset,
        ci_high=float(high[0]) - offset,
        p_value=float(p[0]),
        margin=margin,
        score_high=float(high[1]),
        p_equivalent=p_equivalent,
        null=summarise_null(s.null),
    )


def from_copies(axis: AxisName, control: str, s: CopyScores, key: tuple[str, ...], b: Bootstrap) -> Evidence:
    """Evidence that the trained model beats every randomised copy (module docstring)."""
    copies = s.copies.bool()
    real = s.real.bool()
    accuracy = float(real.double().mean())
    copy_accuracy = copies.double().mean(dim=1)
    strongest = int(torch.argmax(copy_accuracy))
    diff = real.double() - copies[strongest].double()
    draw = generator(b.seed, "bootstrap", axis, control, *key)
    low, high = bootstrap_mean_ci(diff[:, None], b.n, b.confidence, draw)
    each = real.double()[None] - copies.double()  # (S, n): the paired differences against each copy
    p_each = [below_margin_p(float(d.mean()), _standard_error(d), b.margins.accuracy) for d in each]
    return Evidence(
        axis=axis,
        control=control,
        metric=s.metric,
        score=accuracy,
        control_score=float(copy_accuracy[strongest]),
        effect=accuracy - float(copy_accuracy[strongest]),
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        p_value=max(paired_sign_test(real, copy) for copy in copies),
        margin=b.margins.accuracy,
        p_equivalent=_equivalent_to_any(p_each),
        detail=Detail(copies=tuple(round(float(a), 5) for a in copy_accuracy)),
    )


def from_pairs(
    axis: AxisName, control: str, s: PairedScores, key: tuple[str, ...], b: Bootstrap, delta: float = 0.0
) -> Evidence:
    """Evidence that the real values exceed the control's by more than ``delta`` on more examples than
    not (module docstring)."""
    d = (s.real - s.control).double()
    draw = generator(b.seed, "bootstrap", axis, control, *key)
    low, high = bootstrap_mean_ci(torch.stack([d, s.real.double()], dim=1), b.n, b.confidence, draw)
    margin = b.margins.of(s.unit)
    p_equivalent = below_margin_p(float(d.mean()), _standard_error(d), margin)
    if axis == "used":
        real = s.real.double()
        p_change = below_margin_p(float(real.mean()), _standard_error(real), margin)
        p_equivalent = _used_equivalence(p_equivalent, p_change, s.control)
    return Evidence(
        axis=axis,
        control=control,
        metric=s.metric,
        score=float(s.real.double().mean()),
        control_score=float(s.control.double().mean()),
        effect=float(d.mean()),
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        p_value=paired_sign_test(d > delta, d < delta),
        margin=margin,
        score_high=float(high[1]),
        p_equivalent=p_equivalent,
        detail=Detail(
            real=tuple(round(float(v), 6) for v in s.real),
            control=tuple(round(float(v), 6) for v in s.control),
        ),
    )


def from_match(axis: AxisName, control: str, s: MatchScores, b: Bootstrap) -> Evidence:
    """Evidence that a latent's match beats the matches chance gives (module docstring)."""
    r = float(s.real)
    null_mean = float(s.null.double().mean())
    low, high = fisher_interval(r, s.n_rows, b.confidence)
    p = permutation_p_value(s.real.double().reshape(1), s.null.double()[None])
    return Evidence(
        axis=axis,
        control=control,
        metric=s.metric,
        score=r,
        control_score=null_mean,
        effect=r - null_mean,
        ci_low=low - null_mean,
        ci_high=high - null_mean,
        p_value=float(p[0]),
        margin=b.margins.correlation,
        null=summarise_null(s.null),
    )


def from_match_pair(axis: AxisName, control: str, s: MatchPairScores, b: Bootstrap) -> Evidence:
    """Evidence that a latent recurs in a refit of the trained dictionary more than in every control's."""
    r1 = float(s.real)
    controls, between = s.control.double().reshape(-1), s.between.double().reshape(-1)
    strongest = int(torch.argmax(controls))
    r2, r12 = float(controls[strongest]), float(between[strongest])
    low, high = zou_interval(r1, r2, r12, s.n_rows, b.confidence)
    return Evidence(
        axis=axis,
        control=control,
        metric=s.metric,
        score=r1,
        control_score=r2,
        effect=r1 - r2,
        ci_low=low,
        ci_high=high,
        p_value=max(
            margin_p(r1, float(c), float(r), s.n_rows, b.margins.correlation)
            for c, r in zip(controls, between, strict=True)
        ),
        margin=b.margins.correlation,
        p_equivalent=_equivalent_to_any(
            [
                equivalence_p(r1, float(c), float(r), s.n_rows, b.margins.correlation)
                for c, r in zip(controls, between, strict=True)
            ]
        ),
        detail=Detail(copies=tuple(round(float(c), 5) for c in controls)),
    )


def _with_group(s: NullScores) -> str:
    """The metric, naming the other latents a test moved with the latent (``NullScores.group``)."""
    if s.group is None or s.group.numel() < 2:
        return s.metric
    return f"{s.metric} (with latents {', '.join(str(int(k)) for k in s.group[1:])})"


def _equivalent_to_any(p_each: list[float]) -> float:
    """Equivalence to any one of several controls, from each one's p: the smallest times their number
    (Bonferroni)."""
    return min(1.0, len(p_each) * min(p_each))


def _used_equivalence(p_effect: float, p_change: float, null: Tensor, sized: bool = False) -> float:
    """The used axis' "no" needs its effect and the change itself shown below the margin. Where the
    null's changes are never negative (an output change), E[real] - E[null] >= margin implies
    E[real] >= margin, so the change's test rejects both hypotheses and is the p (the effect's normal
    approximation adds nothing, and errs where its bootstrap carries a skewed null's draws). Where a
    signed statistic comes with the size of each example's change (``sized``: ``NullScores.size``,
    e.g. a read-off at the outputs), the change tested is that size, and its bound is itself the
    claim, "the outputs barely move", whatever the null's signed moves: the change's test is the p.
    A feature the outputs use without following it on average (read through an XOR) moves them, so
    it is never called unused for moving them along no class difference. Else the larger p."""
    if sized or bool((null >= 0).all()):
        return p_change
    return max(p_effect, p_change)


def _standard_error(values: Tensor) -> float:
    """sd(values) / sqrt(n) of a sample (n,): NaN for one value."""
    return float(values.double().std()) / math.sqrt(values.numel())


def _clip(r: float) -> float:
    return max(-0.999999, min(0.999999, r))


def fisher_interval(r: float, n: int, confidence: float) -> tuple[float, float]:
    """tanh(atanh(r) -/+ z / sqrt(n - 3)): the interval of a correlation from n pairs (Fisher 1921)."""
    return _fisher_at(r, n, NormalDist().inv_cdf(0.5 + confidence / 2.0))


def _fisher_at(r: float, n: int, z: float) -> tuple[float, float]:
    half = z / math.sqrt(max(n - 3, 1))
    centre = math.atanh(_clip(r))
    return math.tanh(centre - half), math.tanh(centre + half)


def margin_p(r1: float, r2: float, r12: float, n: int, margin: float) -> float:
    """One-sided p of H0: rho1 - rho2 <= margin for correlations sharing a variable (corr(a, b) = r12),
    by inverting Zou's interval (``_zou_tail``)."""
    above, tail = _zou_tail(r1, r2, r12, n, margin)
    return tail if above else 1.0 - tail


def equivalence_p(r1: float, r2: float, r12: float, n: int, margin: float) -> float:
    """One-sided p of H0: rho1 - rho2 >= margin (the other side of ``margin_p``)."""
    above, tail = _zou_tail(r1, r2, r12, n, margin)
    return 1.0 - tail if above else tail


def _zou_tail(r1: float, r2: float, r12: float, n: int, margin: float) -> tuple[bool, float]:
    """Whether r1 - r2 lies above the margin, and 1 - Phi(z*) for the z* at which Zou's interval
    reaches the margin: its low end when above (low(z*) = margin), else its high end; bisection on
    z, each end monotone in it."""
    above = r1 - r2 > margin
    lo, hi = 0.0, 40.0
    for _ in range(60):
        z = (lo + hi) / 2
        low, high = _zou_at(r1, r2, r12, n, z)
        if (low > margin) if above else (high < margin):
            lo = z
        else:
            hi = z
    return above, max(0.5 * math.erfc(lo / math.sqrt(2.0)), math.ulp(0.0))


def zou_interval(r1: float, r2: float, r12: float, n: int, confidence: float) -> tuple[float, float]:
    """Zou's (2007) interval of r1 - r2 for correlations sharing a variable, from their Fisher intervals
    (l_i, u_i) and c = corr(r1, r2) = ((r12 - r1 r2 / 2)(1 - r1^2 - r2^2 - r12^2) + r12^3)
    / ((1 - r1^2)(1 - r2^2)):  [r1 - r2 - sqrt((r1 - l1)^2 + (u2 - r2)^2 - 2c (r1 - l1)(u2 - r2)),
    r1 - r2 + sqrt((u1 - r1)^2 + (r2 - l2)^2 - 2c (u1 - r1)(r2 - l2))]."""
    return _zou_at(r1, r2, r12, n, NormalDist().inv_cdf(0.5 + confidence / 2.0))


def _zou_at(r1: float, r2: float, r12: float, n: int, z: float) -> tuple[float, float]:
    """Zou's interval with the normal quantile ``z`` (``zou_interval``)."""
    l1, u1 = _fisher_at(r1, n, z)
    l2, u2 = _fisher_at(r2, n, z)
    a, b = _clip(r1), _clip(r2)
    c = ((r12 - a * b / 2) * (1 - a**2 - b**2 - r12**2) + r12**3) / ((1 - a**2) * (1 - b**2))
    low = r1 - r2 - math.sqrt(max((r1 - l1) ** 2 + (u2 - r2) ** 2 - 2 * c * (r1 - l1) * (u2 - r2), 0.0))
    high = r1 - r2 + math.sqrt(max((u1 - r1) ** 2 + (r2 - l2) ** 2 - 2 * c * (u1 - r1) * (r2 - l2), 0.0))
    return low, high
