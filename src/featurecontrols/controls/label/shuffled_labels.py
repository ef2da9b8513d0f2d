"""Shuffled labels: the permutation null of a supervised finder.

Each control column is the real label vector under a uniformly random permutation, so it keeps
the marginals exactly (class balance; for a sparse feature, the same sparsity) while breaking
any relation to the activations. With ``groups``, labels are permuted only within each group
(a document, a stratum), which keeps whatever structure the groups carry. The finder then fits
every control column in one batched call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import Params


class ShuffledLabels(Params):
    """Label control: ``n_null`` random permutations of the labels, optionally within groups."""

    name = "shuffled labels"

    def __init__(self, groups: Tensor | None = None) -> None:
        self.groups = groups

    def null_labels(self, y: Tensor, n_null: int, generator: torch.Generator) -> Tensor:
        """Map y (n,) to (n, n_null) control labels, each column a permutation of y."""
        n = y.shape[0]
        if n == 0:
            raise FeatureControlsError("cannot shuffle an empty label vector", "pass at least one example")
        if self.groups is None:
            perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(n_null)])
            return y[perms.T]
        groups = self.groups
        if groups.shape != (n,):
            raise FeatureControlsError(
                f"groups have shape {tuple(groups.shape)} but the labels have {n} rows",
                "give one group id per example",
            )
        # Sorting random keys offset by the group id keeps every example inside its group.
        _, group_id = torch.unique(groups, return_inverse=True)
        keys = torch.rand(n_null, n, generator=generator, dtype=torch.float64) + group_id.double()
        within = torch.argsort(keys, dim=1)  # example positions in group-sorted order, shuffled per group
        slots = torch.argsort(group_id.double(), stable=True)  # where each group's examples sit
        out = torch.empty(n_null, n, dtype=y.dtype)
        out[:, slots] = y[within]
        return out.T.contiguous()
