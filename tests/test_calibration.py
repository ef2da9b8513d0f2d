"""Calibration: under the null (labels independent of the activations) p-values are uniform.

199 null draws per seed (p-values on a grid of 1/200) keep the suite fast; the default null is larger.
"""

import math

import torch

from featurecontrols.axes.decodable import assess_decodable
from featurecontrols.controls.label.control_task import control_task_selectivity
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.finders import RidgeProbe
from featurecontrols.pipeline.split import Split

SEEDS = 200
N_NULL = 199


def _binomial_interval(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """Central interval of Binomial(n, p) holding at least ``level`` of the mass."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, cumulative = 0, 0.0
    while cumulative + pmf[low] <= (1 - level) / 2:
        cumulative += pmf[low]
        low += 1
    high, cumulative = n, 0.0
    while cumulative + pmf[high] <= (1 - level) / 2:
        cumulative += pmf[high]
        high -= 1
    return low, high


def _count_below(p_values: list[float], level: float) -> tuple[int, int, int]:
    """How many p-values fall below ``level``, and the 99% binomial interval of that count."""
    low, high = _binomial_interval(SEEDS, level)
    return sum(p < level for p in p_values), low, high


def test_shuffled_label_p_values_are_uniform_under_the_null() -> None:
    p_values = []
    for seed in range(SEEDS):
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(200, 5, generator=g)
        y = (torch.rand(200, 1, generator=g) < 0.4).float()
        split = Split.random(200, 0.3, g)
        (evidence,) = assess_decodable(
            RidgeProbe(),
            X,
            y,
            ["y"],
            split,
            ShuffledLabels(),
            N_NULL,
            seed=seed,
            n_bootstrap=10,
            confidence=0.95,
        )
        p_values.append(evidence.p_value)
    assert min(p_values) >= 1 / (N_NULL + 1)
    for level in (0.05, 0.5):
        below, low, high = _count_below(p_values, level)
        assert low <= below <= high, f"{below}/{SEEDS} p-values below {level}; 99% interval [{low}, {high}]"


def test_control_task_p_values_are_valid_when_labels_are_a_random_function_of_the_cell() -> None:
    """Valid (never anti-conservative), but conservative: a control task draws each cell's label from
    the *empirical* label rate, which is more imbalanced than the real labels' own rate (0.5) about half
    the time, so control accuracies run high. Measured: 1 of 200 seeds below 0.05."""
    p_values = []
    for seed in range(SEEDS):
        g = torch.Generator().manual_seed(10_000 + seed)
        cells = torch.randint(0, 30, (300,), generator=g)
        X = torch.randn(30, 4, generator=g)[cells] + 0.5 * torch.randn(300, 4, generator=g)
        labels_of_cell = (torch.rand(30, generator=g) < 0.5).float()
        if labels_of_cell.min() == labels_of_cell.max():
            labels_of_cell[0] = 1 - labels_of_cell[0]
        split = Split.random(300, 0.3, g)
        result = control_task_selectivity(
            RidgeProbe(), X, labels_of_cell[cells], cells, split, N_NULL, seed=seed, n_bootstrap=10
        )
        p_values.append(result.p_value)
    for level in (0.05, 0.5):
        below, _, high = _count_below(p_values, level)
        assert below <= high, f"{below}/{SEEDS} p-values below {level}: above the 99% interval (<= {high})"
