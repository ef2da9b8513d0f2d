"""Tests of equivalence behind every "no" on the learned and used axes (``axes/from_scores.py``):
p = Phi((effect - margin) / se) against H0 "effect >= margin", the change itself too on the used
axis, Bonferroni over the controls a test is against, and uniform p where the effect sits at the margin.
"""

import math
from statistics import NormalDist

import pytest
import torch

from featurecontrols.axes.evidence import Bootstrap
from featurecontrols.axes.from_scores import from_copies, from_null, from_pairs
from featurecontrols.axes.scores import CopyScores, NullScores, PairedScores
from featurecontrols.seeding import generator
from featurecontrols.stats import below_margin_p, bootstrap_means

BOOT = Bootstrap(seed=0, n=400, confidence=0.95)
PHI = NormalDist().cdf


def test_below_margin_p_is_the_normal_tail_and_decides_without_spread() -> None:
    assert below_margin_p(0.0, 0.01, 0.02) == pytest.approx(PHI(-2.0))
    assert below_margin_p(0.02, 0.01, 0.02) == pytest.approx(0.5)
    assert below_margin_p(0.01, 0.0, 0.02) == 0.0 and below_margin_p(0.03, 0.0, 0.02) == 1.0
    assert below_margin_p(0.0, math.nan, 0.02) == 1.0  # one example shows nothing


def test_null_scores_equivalence_uses_the_bootstrap_spread_of_the_effect() -> None:
    """Against a null's mean (learned axis: no check of the change itself), se is the standard
    deviation of the same bootstrap means that give the interval."""
    real = 0.5 + 0.01 * torch.randn(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    null = torch.full((20,), 0.495, dtype=torch.float64)
    e = from_null("learned", "c", NullScores("m", "task score", real, null), ("k",), BOOT)
    draw = generator(BOOT.seed, "bootstrap", "learned", "c", "k")
    means = bootstrap_means(torch.stack([real, real], dim=1), BOOT.n, draw)
    se = float(means[:, 0].std())
    assert e.p_equivalent == pytest.approx(PHI((e.effect - e.margin) / se))
    assert 0.0 < e.p_equivalent < 0.5  # the effect, about 0.006, lies near the margin 0.01


def test_the_used_axis_needs_the_change_itself_below_the_margin() -> None:
    """A change of 0.3 matched by its null has effect 0 but is not a change too small to matter."""
    real = torch.full((40,), 0.3, dtype=torch.float64) + torch.linspace(-0.01, 0.01, 40, dtype=torch.float64)
    null = torch.full((30,), 0.3, dtype=torch.float64)
    e = from_null("used", "c", NullScores("m", "output change", real, null), ("k",), BOOT, 0.01, True)
    assert abs(e.effect) < 1e-9 and e.p_equivalent == 1.0
    small = from_null("used", "c", NullScores("m", "output change", real / 100, null / 100), ("k",), BOOT)
    assert small.p_equivalent < 1e-6


def test_copies_take_the_smallest_p_times_their_number() -> None:
    """Equivalent to any one copy is the claim: Bonferroni over the copies."""
    g = torch.Generator().manual_seed(0)
    real = torch.rand(400, generator=g) < 0.8
    copies = torch.stack([torch.rand(400, generator=g) < 0.79, torch.rand(400, generator=g) < 0.6])
    e = from_copies("learned", "c", CopyScores("m", real, copies), ("k",), BOOT)
    each = []
    for copy in copies:
        d = real.double() - copy.double()
        each.append(PHI((float(d.mean()) - 0.02) / (float(d.std()) / math.sqrt(400))))
    assert e.p_equivalent == pytest.approx(min(1.0, 2 * min(each)))


def test_equivalence_p_is_uniform_at_the_margin_and_powerful_below_it() -> None:
    """Paired differences drawn with mean exactly at the margin: p <= 0.05 in 5% of 1,000 runs (within
    3 binomial standard deviations); a mean half a standard deviation below it: nearly always."""
    g = torch.Generator().manual_seed(0)
    margin = 0.01  # the output change margin
    p_at, p_below = [], []
    for _ in range(1000):
        d = torch.randn(100, generator=g, dtype=torch.float64)
        zero = torch.zeros(100, dtype=torch.float64)
        for shift, out in ((margin, p_at), (margin - 0.5, p_below)):
            s = PairedScores("m", "output change", zero + 5.0 + d + shift, zero + 5.0)
            out.append(from_pairs("learned", "c", s, ("k",), Bootstrap(0, 1, 0.95)).p_equivalent)
    share = sum(p <= 0.05 for p in p_at) / 1000
    assert abs(share - 0.05) <= 3 * math.sqrt(0.05 * 0.95 / 1000)
    assert sum(p <= 0.05 for p in p_below) / 1000 > 0.99


def test_a_change_below_the_margin_covers_the_effect_when_the_null_is_non_negative() -> None:
    """An unread latent: its removal changes the outputs by about 0.001, a skewed null of random
    directions by 0.1-3. E[real] - E[null] >= margin would need E[real] >= margin, so the change's own
    test is the p. With a null that can be negative (an erasure that helps the task) both are needed:
    a change of 0.009 against a null of -0.05 is an effect of 0.059, not shown below 0.01."""
    g = torch.Generator().manual_seed(2)
    real = 0.001 + 0.0002 * torch.rand(60, generator=g, dtype=torch.float64)
    null = 0.1 + torch.distributions.Exponential(1.0).sample((64,)).double()
    e = from_null("used", "c", NullScores("m", "output change", real, null), ("k",), BOOT, 0.01, True)
    draw = generator(BOOT.seed, "bootstrap", "used", "c", "k")
    means = bootstrap_means(torch.stack([real, real], dim=1), BOOT.n, draw)
    assert e.p_equivalent == pytest.approx(PHI((e.score - 0.01) / float(means[:, 1].std())))
    near = torch.full((30,), -0.05, dtype=torch.float64)
    helped = from_null("used", "c", NullScores("m", "task score", real + 0.008, near), ("k",), BOOT, 0.01)
    assert helped.effect > 0.05 and helped.p_equivalent > 0.99
