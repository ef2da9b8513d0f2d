"""Directional mean-ablation: the used axis' default test of a candidate's direction at a site.

At the site, the component of each activation h along a unit direction u is set to its mean:

    h' = h - ((h - mu) . u) u,      mu = mean activation over the dataset,

and the change in the model's outputs is measured per example, relative to the outputs' spread
(``measures/output_change.py``):

    change_i = ||f'(x_i) - f(x_i)||^2 / mean_j ||f(x_j) - mean f||^2.

A direction the model uses moves its outputs; a direction it ignores does not. The null is the
same ablation along the class-mean directions of shuffled labels (``shuffled_label_directions``),
which carry no feature but have the noise structure of an estimated direction. Uniform random
directions (``random_directions``) are a weaker null: the class-mean direction of an absent
feature is noise distributed like N(0, Cov), which leans into the high-variance directions that
the model reads, so it beats uniform directions without the feature being used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from featurecontrols.adapters.interventions import Intervention, ProjectOut
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalTarget, Requirement
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.mass_mean_probe import class_mean_directions
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import derive_seed, generator


class DirectionalAblation(Params):
    """Causal control: ablate each target's direction; the null ablates shuffled-label directions."""

    name = "ablation vs shuffled-label directions"
    requires: ClassVar[Requirement] = "direction"
    metric = "relative output change under mean-ablation"
    unit: ClassVar[Unit] = "output change"

    def intervention(self, direction: Tensor, mean: Tensor, seed: int) -> Intervention:
        """The intervention that removes ``direction`` (d,) at the site."""
        return ProjectOut(direction, mean=mean)

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """Per target, the per-example output change (n,) against the null's mean changes (n_null,)."""
        outputs = OutputChange(at.adapter, at.batches, at.site)
        X, seed = at.X, at.seed
        mean = X.double().mean(dim=0)

        def change(direction: Tensor, key: object) -> Tensor:
            if not bool(direction.any()):  # no direction (classes with the same mean) changes nothing
                return torch.zeros(outputs.n, dtype=torch.float64)
            return outputs.under(self.intervention(direction, mean, seed_for(seed, key)))

        real = {t.name: change(_direction(t, X.shape[1]), t.name) for t in targets}
        nulls = shuffled_label_directions(X, at.n_null, generator(seed, "shuffled-label directions"))
        parts = []
        for start in track(range(0, at.n_null, 64), f"{self.name} null", -(-at.n_null // 64), at.progress):
            fns = [
                self.intervention(u, mean, seed_for(seed, start + i))
                for i, u in enumerate(nulls[start : start + 64])
            ]
            parts.append(outputs.under_stacked([[fn] * len(at.batches) for fn in fns]).mean(dim=1))
        null = torch.cat(parts)
        return {name: NullScores(self.metric, self.unit, values, null) for name, values in real.items()}


def seed_for(seed: int, key: object) -> int:
    """The seed of one intervention's own draws (resample ablation), from the run seed and a key."""
    return derive_seed(seed, "intervention", key)


def _direction(target: CausalTarget, width: int) -> Tensor:
    if target.direction is None or target.direction.shape != (width,):
        got = None if target.direction is None else tuple(target.direction.shape)
        raise FeatureControlsError(
            f"candidate {target.name!r} has direction of shape {got} at a site of width {width}",
            "give each direction as a (d,) vector in the activation space of its site",
        )
    return target.direction


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
