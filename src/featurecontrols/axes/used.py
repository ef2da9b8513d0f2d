"""Used: does ablating the feature's direction change the outputs more than a random direction?

The feature's direction is its class-mean difference at the site (the direction along which the
model represents it, not the probe's read-off direction). The statistic is the mean relative
output change (see ``controls/directional_ablation.py``); the null is the same statistic for
random directions. p = (1 + #{null >= real}) / (1 + m); the effect is real minus the null mean,
with a bootstrap interval over examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.axes.evidence import Evidence
from featurecontrols.seeding import generator
from featurecontrols.stats import bootstrap_mean_ci, permutation_p_value, summarise_null


def class_mean_directions(X: Tensor, Y: Tensor) -> Tensor:
    """(k, d) directions mean(X | y_j = 1) - mean(X | y_j = 0)."""
    Xd = X.double()
    Yd = Y.double()
    ones = (Yd.T @ Xd) / Yd.sum(dim=0)[:, None]
    zeros = ((1.0 - Yd).T @ Xd) / (1.0 - Yd).sum(dim=0)[:, None]
    return ones - zeros


def assess_used(
    feature_change: dict[str, Tensor],
    null_change: Tensor,
    control: str,
    *,
    seed: int,
    n_bootstrap: int,
    confidence: float,
) -> dict[str, Evidence]:
    """Evidence per feature from per-example changes (n,) and the null's mean changes (m,)."""
    null_mean = float(null_change.mean())
    out = {}
    for name, change in feature_change.items():
        score = float(change.mean())
        low, high = bootstrap_mean_ci(
            change[:, None], n_bootstrap, confidence, generator(seed, "bootstrap", "used", name)
        )
        out[name] = Evidence(
            axis="used",
            control=control,
            metric="relative output change under mean-ablation",
            score=score,
            control_score=null_mean,
            effect=score - null_mean,
            ci_low=float(low[0]) - null_mean,
            ci_high=float(high[0]) - null_mean,
            p_value=float(permutation_p_value(torch.tensor([score]), null_change[None].double())[0]),
            null=summarise_null(null_change),
        )
    return out
