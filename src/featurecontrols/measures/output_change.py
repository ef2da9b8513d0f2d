"""How much an intervention at a site moves a model's outputs, per example.

The clean outputs f(x_j) of the model (``adapter.outputs``) on fixed batches are recorded once; an
intervention at the site then gives outputs f'(x_i), and the change is measured relative to the
outputs' spread:

    change_i = ||f'(x_i) - f(x_i)||^2 / mean_j ||f(x_j) - mean f||^2.

Every causal control measures with it (ablations: one intervention for every batch; counterfactual
patching: each batch patched from its own counterfactual), and so do steering curves and erasure:
:func:`outputs_under` is the one loop that runs a model over batches under interventions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site, repeat_batch
from featurecontrols.errors import FeatureControlsError

Intervention = Callable[[Tensor], Tensor]


def outputs_under(
    adapter: ModelAdapter, batches: Sequence[Any], site: Site, interventions: Sequence[Intervention | None]
) -> list[Tensor]:
    """The outputs (rows, o) of every batch, batch b under ``interventions[b]`` at ``site`` (None: clean)."""
    out = []
    with torch.no_grad():
        for batch, intervention in zip(batches, interventions, strict=True):
            if intervention is None:
                out.append(adapter.outputs(batch))
            else:
                with adapter.intervening([(site, intervention)]):
                    out.append(adapter.outputs(batch))
    return out


class OutputChange:
    """The clean outputs of a model on ``batches`` and the relative change an intervention makes."""

    def __init__(self, adapter: ModelAdapter, batches: Sequence[Any], site: Site) -> None:
        self.adapter = adapter
        self.batches = batches
        self.site = site
        self.reference = [r.double() for r in outputs_under(adapter, batches, site, [None] * len(batches))]
        everything = torch.cat(self.reference)
        self.spread = float((everything - everything.mean(dim=0)).square().sum(dim=1).mean())
        if not self.spread > 0:
            raise FeatureControlsError(
                "the model's outputs are identical on every input, so no intervention can change them",
                "measure an output that varies across the dataset (give the adapter output=...)",
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
        changed = outputs_under(self.adapter, self.batches, self.site, interventions)
        pairs = zip(changed, self.reference, strict=True)
        return torch.cat([(a.double() - r).square().sum(dim=1) for a, r in pairs]) / self.spread

    def under_stacked(self, each: Sequence[Sequence[Intervention]], rows_per_pass: int = 1 << 15) -> Tensor:
        """Per-example relative changes (K, n) of K interventions, ``each[k][b]`` on batch b, run many
        at once: each batch is stacked along dim 0 and intervention k applied to the k-th copy (the
        model must treat the rows of a batch independently, as in eval mode), with at most about
        ``rows_per_pass`` rows per forward pass."""
        out = torch.empty(len(each), self.n, dtype=torch.float64)
        start = 0
        for b, (batch, ref) in enumerate(zip(self.batches, self.reference, strict=True)):
            rows = ref.shape[0]
            per = max(1, rows_per_pass // max(rows, 1))
            for first in range(0, len(each), per):
                chosen = range(first, min(len(each), first + per))
                stacked = _Stacked([each[k][b] for k in chosen])
                with torch.no_grad(), self.adapter.intervening([(self.site, stacked)]):
                    changed = self.adapter.outputs(repeat_batch(batch, len(chosen))).double()
                moved = changed.reshape(len(chosen), rows, -1) - ref
                out[first : first + len(chosen), start : start + rows] = (
                    moved.square().sum(dim=2) / self.spread
                )
            start += rows
        return out


class _Stacked:
    """Apply intervention k to the k-th of K equal chunks of the site's tensor along dim 0."""

    def __init__(self, interventions: Sequence[Intervention]) -> None:
        self.interventions = interventions

    def __call__(self, h: Tensor) -> Tensor:
        chunks = h.chunk(len(self.interventions), dim=0)
        if len(chunks) != len(self.interventions) or any(c.shape != chunks[0].shape for c in chunks):
            raise FeatureControlsError(
                f"the site's tensor of shape {tuple(h.shape)} does not split into {len(self.interventions)} "
                "stacked copies along dim 0",
                "run interventions one at a time at a site whose rows are not per batch example",
            )
        return torch.cat([fn(c) for fn, c in zip(self.interventions, chunks, strict=True)], dim=0)
