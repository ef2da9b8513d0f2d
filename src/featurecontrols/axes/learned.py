"""Learned: does the probe on the trained model beat the same probe on randomised copies?

A weight control keeps what the data and the method can do (the inputs, the architecture, the
scale of every weight) and removes what training put into the weights. For each control, the
probe is fitted on the activations of ``S`` randomised copies (different seeds) with the same
split. The trained model must beat *every* copy (an intersection-union test):

    p = max_s McNemar(trained correct, copy_s correct),    effect = acc_trained - max_s acc_s,

with a paired bootstrap interval of the effect over test examples against the strongest copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from featurecontrols.axes.evidence import Evidence
from featurecontrols.seeding import generator
from featurecontrols.stats import bootstrap_mean_ci, paired_sign_test


def assess_learned(
    trained_correct: Tensor,
    copies_correct: Mapping[str, Sequence[Tensor]],
    names: list[str],
    *,
    seed: int,
    n_bootstrap: int,
    confidence: float,
) -> dict[str, list[Evidence]]:
    """Evidence per feature name, one entry per weight control.

    ``trained_correct`` is the (n_test, k) boolean correctness of the probe on the trained model;
    ``copies_correct[control]`` holds one such matrix per randomised copy of that control.
    """
    out: dict[str, list[Evidence]] = {name: [] for name in names}
    accuracy = trained_correct.double().mean(dim=0)
    for control, per_seed in copies_correct.items():
        stacked = torch.stack(list(per_seed))  # (S, n_test, k)
        seed_accuracy = stacked.double().mean(dim=1)  # (S, k)
        for j, name in enumerate(names):
            strongest = int(torch.argmax(seed_accuracy[:, j]))
            diff = trained_correct[:, j].double() - stacked[strongest, :, j].double()
            low, high = bootstrap_mean_ci(
                diff[:, None], n_bootstrap, confidence, generator(seed, "bootstrap", "learned", control, name)
            )
            p = max(paired_sign_test(trained_correct[:, j], copy[:, j]) for copy in stacked)
            out[name].append(
                Evidence(
                    axis="learned",
                    control=control,
                    metric="held-out accuracy",
                    score=float(accuracy[j]),
                    control_score=float(seed_accuracy[:, j].mean()),
                    effect=float(accuracy[j] - seed_accuracy[strongest, j]),
                    ci_low=float(low[0]),
                    ci_high=float(high[0]),
                    p_value=p,
                    detail={"copy_accuracies": [round(float(a), 5) for a in seed_accuracy[:, j]]},
                )
            )
    return out
