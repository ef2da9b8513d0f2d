"""One call: fit the same unsupervised finder on the trained model and on each randomised copy.

For the trained model and for every weight control's copy, activations are read at the site on the
same inputs, a fresh finder is fitted on them and evaluated with :mod:`featurecontrols.measures.sae_metrics`.
A metric that scores the randomised copies as well as the trained model does not tell what the
model learned (Heap et al. 2025). ``beyond_control`` then asks, latent by latent, whether the
trained run's latents beat the control's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.sites import Site, read_activations
from featurecontrols.controls.base import WeightControl
from featurecontrols.finders.base import UnsupervisedFinder
from featurecontrols.measures.sae_metrics import (
    DictionaryMetrics,
    LossFn,
    beyond_control,
    evaluate_dictionary,
    loss_recovered,
)

TRAINED = "trained"


@dataclass
class FinderRun:
    """One finder fitted on one model (the trained one, or a randomised copy) and its metrics."""

    name: str
    finder: UnsupervisedFinder
    metrics: DictionaryMetrics
    methods: dict[str, str] = field(default_factory=dict)


def fit_under_controls(
    model: nn.Module,
    batches: Sequence[Any],
    site: str | Site,
    make_finder: Callable[[], UnsupervisedFinder],
    controls: Sequence[WeightControl],
    seed: int = 0,
    *,
    loss_fn: LossFn | None = None,
    tokens: Tensor | None = None,
    labels: Mapping[str, Tensor] | None = None,
    true_directions: Tensor | None = None,
) -> dict[str, FinderRun]:
    """Runs keyed "trained" and by each control's name: finder fitted and evaluated on each model.

    ``loss_fn(model, batch)`` adds the loss effect of splicing in the reconstruction; ``tokens``,
    ``labels`` and ``true_directions`` add the metrics of :func:`evaluate_dictionary`.
    """
    models: list[tuple[str, nn.Module, dict[str, str]]] = [(TRAINED, model, {})]
    for control in controls:
        copy = control.randomise(model, seed)
        models.append((control.name, copy.model, copy.methods))
    runs = {}
    for name, variant, methods in models:
        X = read_activations(variant, batches, site)[str(Site.parse(site))]
        finder = make_finder().fit(X)
        metrics = evaluate_dictionary(
            finder, X, tokens=tokens, labels=labels, true_directions=true_directions
        )
        if loss_fn is not None:
            metrics.summary |= loss_recovered(variant, batches, site, finder, loss_fn)
        runs[name] = FinderRun(name, finder, metrics, methods)
    return runs


def beyond_controls(runs: dict[str, FinderRun], score: str, q: float = 0.95) -> dict[str, float]:
    """Per control: the fraction of trained-run latents whose ``score`` beats the control's q-quantile."""
    real = runs[TRAINED].metrics.per_latent[score]
    return {
        name: float(beyond_control(real, run.metrics.per_latent[score], q).float().mean())
        for name, run in runs.items()
        if name != TRAINED
    }


def metrics_table(runs: dict[str, FinderRun], digits: int = 3) -> str:
    """A Markdown table: one row per metric, one column per run."""
    names = list(runs)
    metrics = list(dict.fromkeys(key for run in runs.values() for key in run.metrics.summary))
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in metrics:
        values = [runs[n].metrics.summary.get(metric, torch.nan) for n in names]
        lines.append(f"| {metric} | " + " | ".join(f"{v:.{digits}f}" for v in values) + " |")
    return "\n".join(lines)
