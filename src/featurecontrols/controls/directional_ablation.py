"""Directional mean-ablation: an intervention on the forward pass along one direction.

At the site, the component of each activation h along a unit direction u is set to its mean:

    h' = h - ((h - mu) . u) u,      mu = mean activation over the dataset,

and the change in the model's outputs is measured per example, relative to the outputs' spread:

    change_i = ||f'(x_i) - f(x_i)||^2 / mean_j ||f(x_j) - mean f||^2.

A direction the model uses moves its outputs; a direction it ignores does not. The null is the
same ablation along random directions (Haar-uniform on the sphere), which removes no particular
feature. This is the "used" axis of DESIGN.md in its simplest form (mean-ablation, as in
resampling/mean-ablation studies); steering vectors and erasure come with the causal controls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.errors import FeatureControlsError
from featurecontrols.sites import Site, intervene

Forward = Callable[[nn.Module, Any], Any]


class DirectionalAblation:
    """Measure how much mean-ablating directions at a site changes the model's outputs.

    ``fit`` records the clean run (outputs and their spread); ``change`` then ablates one direction.
    """

    name = "random-direction ablation"

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def fit(self, model: nn.Module, batches: Sequence[Any], site: Site, mean: Tensor) -> DirectionalAblation:
        """Record the clean outputs of ``model`` on ``batches`` and the site's mean activation (d,)."""
        self.model_ = model
        self.batches_ = batches
        self.site_ = site
        self.mean_ = mean
        self.reference_ = self._outputs()
        everything = torch.cat(self.reference_)
        self.spread_ = float((everything - everything.mean(dim=0)).square().sum(dim=1).mean())
        if not self.spread_ > 0:
            raise FeatureControlsError(
                "the model's outputs are identical on every input, so no intervention can change them",
                "measure an output that varies across the dataset (pass forward=...)",
            )
        return self

    def change(self, direction: Tensor) -> Tensor:
        """Per-example relative output change (n,) when ``direction`` is mean-ablated at the site."""
        mean, position = self.mean_, self.site_.position
        norm = float(direction.norm())
        if not norm > 0 or direction.shape != mean.shape:
            raise FeatureControlsError(
                f"ablation direction must be a non-zero vector of width {mean.shape[0]}, "
                f"got shape {tuple(direction.shape)} and norm {norm:.3g}",
                "pass one direction per feature in the site's activation space",
            )
        u = direction.to(mean.dtype) / norm

        def ablate(h: Tensor) -> Tensor:
            mu, v = mean.to(h), u.to(h)
            if position is None:
                return h - ((h - mu) @ v)[..., None] * v
            h = h.clone()
            part = h[:, position]
            h[:, position] = part - ((part - mu) @ v)[..., None] * v
            return h

        with intervene(self.model_, self.site_, ablate):
            ablated = self._outputs()
        pairs = zip(ablated, self.reference_, strict=True)
        return torch.cat([(a - r).square().sum(dim=1) for a, r in pairs]) / self.spread_

    def _outputs(self) -> list[Tensor]:
        with torch.no_grad():
            return [_flat_output(self.forward(self.model_, batch)) for batch in self.batches_]


def random_directions(n: int, d: int, generator: torch.Generator) -> Tensor:
    """n directions uniform on the unit sphere of R^d (normalised Gaussians), shape (n, d)."""
    g = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(g, dim=1)


def _flat_output(out: Any) -> Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    if not isinstance(out, Tensor):
        raise FeatureControlsError(
            f"the model's forward returned {type(out).__name__}, not a tensor",
            "pass forward=... returning the output tensor to measure (e.g. logits)",
        )
    return out.detach().double().reshape(out.shape[0], -1)
