"""Directional mean-ablation: an intervention on the forward pass along one direction.

At the site, the component of each activation h along a unit direction u is set to its mean:

    h' = h - ((h - mu) . u) u,      mu = mean activation over the dataset,

and the change in the model's outputs is measured per example, relative to the outputs' spread
(``controls/output_change.py``):

    change_i = ||f'(x_i) - f(x_i)||^2 / mean_j ||f(x_j) - mean f||^2.

A direction the model uses moves its outputs; a direction it ignores does not. The null is the
same ablation along the class-mean directions of shuffled labels (``shuffled_label_directions``),
which carry no feature but have the noise structure of an estimated direction. Uniform random
directions (``random_directions``) are a weaker null: the class-mean direction of an absent
feature is noise distributed like N(0, Cov), which leans into the high-variance directions that
the model reads, so it beats uniform directions without the feature being used. This is the
"used" axis of DESIGN.md in its simplest form (mean-ablation); steering vectors
(``causal_effects``) and erasure (``controls/erasure``) are the other causal controls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.interventions import Intervention, ProjectOut
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.used import class_mean_directions
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.measures.output_change import OutputChange

Forward = Callable[[nn.Module, Any], Any]


class DirectionalAblation:
    """Measure how much mean-ablating directions at a site changes the model's outputs.

    ``fit`` records the clean run (outputs and their spread); ``change`` then ablates one direction.
    """

    name = "ablation vs shuffled-label directions"

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def fit(self, model: nn.Module, batches: Sequence[Any], site: Site, mean: Tensor) -> DirectionalAblation:
        """Record the clean outputs of ``model`` on ``batches`` and the site's mean activation (d,)."""
        self.outputs_ = OutputChange(model, batches, site, self.forward)
        self.mean_ = mean
        return self

    def change(self, direction: Tensor) -> Tensor:
        """Per-example relative output change (n,) when ``direction`` is mean-ablated at the site.

        A zero direction (a feature whose classes have the same mean activation) changes nothing."""
        if not bool(direction.any()):
            return torch.zeros(self.outputs_.n, dtype=torch.float64)
        return self.change_under(ProjectOut(direction, mean=self.mean_))

    def change_under(self, intervention: Intervention) -> Tensor:
        """Per-example relative output change (n,) under any intervention at the site."""
        return self.outputs_.under(intervention)


def shuffled_label_directions(X: Tensor, n: int, generator: torch.Generator, chunk: int = 256) -> Tensor:
    """n unit class-mean directions of balanced labels shuffled at random, shape (n, d).

    The class-mean difference of a label that the activations X (N, d) do not carry is sampling
    noise, sum_i (s_i - mean s) x_i / ..., whose direction is N(0, Cov(X))-distributed for large N
    whatever the class balance: the null of the used axis has the same noise structure as the
    estimated direction of an absent feature, so noise that happens to point into used (high
    variance) directions is not mistaken for use. Chunks of ``chunk`` shuffles bound the memory.
    """
    N = X.shape[0]
    balanced = (torch.arange(N) < N // 2).float()
    labels = ShuffledLabels()
    parts = [
        class_mean_directions(X, labels.null_labels(balanced, min(chunk, n - start), generator))
        for start in range(0, n, chunk)
    ]
    return torch.nn.functional.normalize(torch.cat(parts), dim=1)


def random_directions(n: int, d: int, generator: torch.Generator) -> Tensor:
    """n directions uniform on the unit sphere of R^d (normalised Gaussians), shape (n, d)."""
    g = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(g, dim=1)
