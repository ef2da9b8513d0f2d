"""Run records built by hand, for tests of what reads them (the bench summary, the report)."""

from featurecontrols.axes.evidence import Margins
from featurecontrols.pipeline.results import RunSettings

TIMES = {"seconds", "wall_time_s", "timings"}


def without_times(value: object) -> object:
    """A JSON document less its wall times (the keys in TIMES, at any depth): what differs by nature
    between two runs of the same seed."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def settings(n_examples: int = 1, n_test: int = 1, n_tests: int = 0) -> RunSettings:
    """Settings of a run that never ran: every size minimal, every control absent."""
    return RunSettings(
        seed=0, alpha=0.05, correction="holm", confidence=0.95, margins=Margins(), n_bootstrap=10,
        probe="RidgeProbe()",
        label_control="shuffled labels", weight_controls=(), input_controls=(), dictionary_baselines=(),
        causal_controls=(),
        n_shuffles=1, n_random_directions=1, n_latent_null=1, n_weight_seeds=1, control_task=None,
        codelength_probe=None, used_examples=1, n_examples=n_examples, n_test=n_test, widths={},
        n_tests_corrected=n_tests, executor="LocalExecutor",
    )  # fmt: skip
