"""What a calibration test asserts of p-values drawn under the null: that they are uniform."""

import math


def assert_uniform(p_values: list[float]) -> None:
    """The shares of p-values at or below 0.05 and 0.5 within 3 binomial standard deviations."""
    n = len(p_values)
    for level in (0.05, 0.5):
        below = sum(p <= level for p in p_values)
        sd = math.sqrt(n * level * (1 - level))
        assert abs(below - n * level) < 3 * sd, f"{below}/{n} p-values at or below {level}"
