"""Decodable: does the probe beat its shuffled-label null at this site?

The probe is fitted on the training split and scored on the test split, for the real labels and
for ``n_null`` control label columns (all fitted in one batched call per feature). The p-value is
the permutation p-value of the real held-out accuracy among the null accuracies; the effect is
accuracy minus the null's mean accuracy, with a bootstrap interval over test examples.
"""

from __future__ import annotations

import copy

from torch import Tensor

from featurecontrols.axes.evidence import Evidence
from featurecontrols.controls.base import LabelControl
from featurecontrols.finders.base import Probe
from featurecontrols.pipeline.split import Split
from featurecontrols.seeding import generator
from featurecontrols.stats import bootstrap_mean_ci, permutation_p_value, summarise_null


def fit_and_check(probe: Probe, X: Tensor, Y: Tensor, split: Split) -> Tensor:
    """Fit a fresh copy of ``probe`` on the training rows; return test correctness (n_test, k)."""
    fitted = copy.deepcopy(probe).fit(X[split.train], Y[split.train])
    return fitted.predict(X[split.test]) == Y[split.test]


def assess_decodable(
    probe: Probe,
    X: Tensor,
    Y: Tensor,
    names: list[str],
    split: Split,
    control: LabelControl,
    n_null: int,
    *,
    seed: int,
    n_bootstrap: int,
    confidence: float,
) -> list[Evidence]:
    """One ``Evidence`` per feature (column of Y)."""
    correct = fit_and_check(probe, X, Y, split).double()
    accuracy = correct.mean(dim=0)
    low, high = bootstrap_mean_ci(correct, n_bootstrap, confidence, generator(seed, "bootstrap", "decodable"))
    tests = []
    for j, name in enumerate(names):
        null_labels = control.null_labels(Y[:, j], n_null, generator(seed, control.name, name))
        null_accuracy = fit_and_check(probe, X, null_labels, split).double().mean(dim=0)
        null_mean = float(null_accuracy.mean())
        tests.append(
            Evidence(
                axis="decodable",
                control=control.name,
                metric="held-out accuracy",
                score=float(accuracy[j]),
                control_score=null_mean,
                effect=float(accuracy[j]) - null_mean,
                ci_low=float(low[j]) - null_mean,
                ci_high=float(high[j]) - null_mean,
                p_value=float(permutation_p_value(accuracy[j : j + 1], null_accuracy[None])[0]),
                null=summarise_null(null_accuracy),
            )
        )
    return tests
