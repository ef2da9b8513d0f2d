"""Property-based tests (hypothesis): the statistics keep their guarantees on any input, and every
validator answers malformed input with the project's error, never a raw one."""

import contextlib
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurecontrols import Battery
from featurecontrols.apps.run_config import RunConfig, parse_config
from featurecontrols.errors import FeatureControlsError
from featurecontrols.stats import (
    adjust_p_values,
    auroc_delong,
    bootstrap_mean_ci,
    permutation_p_value,
    wilson_interval,
)
from featurecontrols.validation import check_activations, check_labels

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
)  # fmt: skip


@FAST
@given(st.lists(finite, min_size=1, max_size=6), st.integers(1, 50), st.integers(0, 2**31 - 1))
def test_permutation_p_values_lie_in_the_unit_interval_and_never_below_one_over_b_plus_one(
    real: list[float], b: int, seed: int
) -> None:
    null = torch.randn(len(real), b, generator=torch.Generator().manual_seed(seed)) * 3
    p = permutation_p_value(torch.tensor(real), null)
    assert bool(((p > 0) & (p <= 1)).all())
    assert bool((p >= 1 / (b + 1) - 1e-15).all())
    assert torch.equal(permutation_p_value(torch.tensor(real) + 1e7, null), torch.full_like(p, 1 / (b + 1)))


@FAST
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.sampled_from(["holm", "bh"]))
def test_corrections_are_monotone_never_below_the_raw_p_and_at_most_one(
    p_list: list[float], method: str
) -> None:
    p = torch.tensor(p_list, dtype=torch.float64)
    adjusted = adjust_p_values(p, method)  # type: ignore[arg-type]
    assert bool((adjusted >= p).all()) and bool((adjusted <= 1).all())
    order = torch.argsort(p)
    assert bool((adjusted[order].diff() >= 0).all())  # a smaller p never gets a larger adjusted p
    if method == "bh":
        assert bool((adjusted <= adjust_p_values(p, "holm") + 1e-12).all())  # BH is never stricter


@FAST
@given(
    st.lists(st.lists(finite, min_size=2, max_size=2), min_size=1, max_size=30),
    st.floats(0.5, 0.99),
    st.integers(0, 2**31 - 1),
)
def test_bootstrap_intervals_contain_the_estimate(rows: list[list[float]], level: float, seed: int) -> None:
    values = torch.tensor(rows, dtype=torch.float64)
    low, high = bootstrap_mean_ci(values, 400, level, torch.Generator().manual_seed(seed))
    mean = values.mean(dim=0)
    slack = 1e-9 * values.abs().max().clamp(min=1)
    assert bool((low <= mean + slack).all()) and bool((mean <= high + slack).all())


@FAST
@given(st.integers(0, 500), st.integers(1, 500), st.floats(0.01, 0.999))
def test_wilson_intervals_contain_the_proportion(k: int, n: int, level: float) -> None:
    k = min(k, n)
    low, high = wilson_interval(k, n, level)
    assert 0 <= low <= k / n <= high <= 1


@FAST
@given(st.lists(finite, min_size=1, max_size=12), st.lists(finite, min_size=1, max_size=12))
def test_auroc_lies_in_its_interval(pos: list[float], neg: list[float]) -> None:
    auc, low, high = auroc_delong(torch.tensor(pos), torch.tensor(neg), 0.95)
    assert 0 <= auc <= 1
    if len(pos) > 1 and len(neg) > 1:
        assert low <= auc <= high


def _raises_only_our_error(call: Any) -> None:
    with contextlib.suppress(FeatureControlsError):  # anything else propagates and fails the test
        call()


@FAST
@given(
    st.lists(st.integers(0, 4), min_size=0, max_size=3),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]),
    st.sampled_from([None, float("nan"), float("inf")]),
)
def test_activation_checks_raise_only_the_projects_error(
    shape: list[int], dtype: torch.dtype, bad: Any
) -> None:
    X = torch.zeros(shape, dtype=dtype)
    if bad is not None and X.numel() and X.is_floating_point():
        X.view(-1)[0] = bad
    _raises_only_our_error(lambda: check_activations(X))


@FAST
@given(
    st.lists(st.integers(0, 5), min_size=0, max_size=3),
    st.sampled_from([torch.float32, torch.int64, torch.bool]),
    st.integers(0, 6),
    st.booleans(),
)
def test_label_checks_raise_only_the_projects_error(
    shape: list[int], dtype: torch.dtype, n: int, nan: bool
) -> None:
    Y = torch.randint(0, 3, shape).to(dtype)
    if nan and Y.numel() and Y.is_floating_point():
        Y.view(-1)[0] = float("nan")
    _raises_only_our_error(lambda: check_labels(Y, n))


BATTERY_PARAMETERS = [
    "n_shuffles", "n_weight_seeds", "n_random_directions", "n_latent_null", "used_examples", "test_fraction",
    "alpha", "correction", "confidence", "n_bootstrap", "batch_size", "seed", "run_used", "progress",
]  # fmt: skip


@FAST
@given(st.sampled_from(BATTERY_PARAMETERS), anything)
def test_battery_parameters_raise_only_the_projects_error(name: str, value: Any) -> None:
    _raises_only_our_error(lambda: Battery(**{name: value}))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from([*RunConfig.__dataclass_fields__, "typo"]), anything, max_size=3))
def test_run_configs_raise_only_the_projects_error(table: dict[str, Any]) -> None:
    _raises_only_our_error(lambda: parse_config(table))
