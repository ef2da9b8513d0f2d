import math

import pytest
import torch

from featurecontrols.stats import (
    adjust_p_values,
    binomial_upper_tail,
    bootstrap_mean_ci,
    paired_sign_test,
    permutation_p_value,
)


def test_permutation_p_value_counts_ties_and_never_returns_zero() -> None:
    null = torch.tensor([[0.1, 0.5, 0.5, 0.9], [0.1, 0.2, 0.3, 0.4]])
    p = permutation_p_value(torch.tensor([0.5, 0.99]), null)
    assert p.tolist() == pytest.approx([(1 + 3) / 5, 1 / 5])


@pytest.mark.parametrize("n", [1, 5, 17, 40])
def test_binomial_upper_tail_matches_direct_sum(n: int) -> None:
    for k in range(n + 2):
        direct = sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n
        assert binomial_upper_tail(k, n) == pytest.approx(direct, rel=1e-9, abs=1e-300)


def test_paired_sign_test_uses_only_discordant_pairs() -> None:
    a = torch.tensor([True] * 10 + [True] * 50)
    b = torch.tensor([False] * 10 + [True] * 50)
    assert paired_sign_test(a, b) == pytest.approx(2**-10)
    assert paired_sign_test(b, a) == 1.0
    assert paired_sign_test(a, a) == 1.0


def test_holm_and_bh_match_hand_computed_values() -> None:
    p = torch.tensor([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.03, 0.06, 0.06 (cummax).
    assert adjust_p_values(p, "holm").tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted m p / rank = 0.02, 0.02, 0.04, 0.04 -> cummin from the top.
    assert adjust_p_values(p, "bh").tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p_values(torch.tensor([0.9, 0.8]), "holm").max() <= 1.0


def test_bootstrap_interval_covers_the_mean_and_is_reproducible() -> None:
    values = torch.rand(500, 3, generator=torch.Generator().manual_seed(1))
    low, high = bootstrap_mean_ci(values, 500, 0.95, torch.Generator().manual_seed(2))
    mean = values.double().mean(dim=0)
    assert bool((low < mean).all() and (mean < high).all())
    assert bool(((high - low) < 0.1).all())
    low2, high2 = bootstrap_mean_ci(values, 500, 0.95, torch.Generator().manual_seed(2))
    assert torch.equal(low, low2) and torch.equal(high, high2)
