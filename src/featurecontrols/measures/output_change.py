"""How much an intervention at a site moves a model's outputs, per example.

The clean outputs f(x_j) of the model on fixed batches are recorded once; an intervention at the site
then gives outputs f'(x_i), and the change is measured relative to the outputs' spread:

    change_i = ||f'(x_i) - f(x_i)||^2 / mean_j ||f(x_j) - mean f||^2.

Both used-axis controls measure with it: directional ablation (one intervention for every batch) and
counterfactual patching (each batch patched from its own counterfactual).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.interventions import Intervention, applied
from featurecontrols.adapters.sites import Site
from featurecontrols.errors import FeatureControlsError

Forward = Callable[[nn.Module, Any], Any]


class OutputChange:
    """The clean outputs of ``model`` on ``batches`` and the relative change an intervention makes."""

    def __init__(self, model: nn.Module, batches: Sequence[Any], site: Site, forward: Forward) -> None:
        self.model = model
        self.batches = batches
        self.site = site
        self.forward = forward
        self.reference = [self._output(batch, None) for batch in batches]
        everything = torch.cat(self.reference)
        self.spread = float((everything - everything.mean(dim=0)).square().sum(dim=1).mean())
        if not self.spread > 0:
            raise FeatureControlsError(
                "the model's outputs are identical on every input, so no intervention can change them",
                "measure an output that varies across the dataset (pass forward=...)",
            )

    @property
    def n(self) -> int:
        """Number of examples measured."""
        return sum(r.shape[0] for r in self.reference)

    def under(self, intervention: Intervention) -> Tensor:
        """Per-example relative change (n,) with the same intervention on every batch."""
        return self.under_each([intervention] * len(self.batches))

    def under_each(self, interventions: Sequence[Intervention]) -> Tensor:
        """Per-example relative change (n,) with ``interventions[b]`` on batch b."""
        changed = [
            self._output(batch, intervention)
            for batch, intervention in zip(self.batches, interventions, strict=True)
        ]
        pairs = zip(changed, self.reference, strict=True)
        return torch.cat([(a - r).square().sum(dim=1) for a, r in pairs]) / self.spread

    def _output(self, batch: Any, intervention: Intervention | None) -> Tensor:
        with torch.no_grad():
            if intervention is None:
                return flat_output(self.forward(self.model, batch))
            with applied(self.model, [(self.site, intervention)]):
                return flat_output(self.forward(self.model, batch))


def flat_output(out: Any) -> Tensor:
    """The model's output as a float64 (batch, outputs) matrix (first item of a tuple; ``.logits``)."""
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
