"""Checks on activations and labels, shared by every finder and control.

Each check raises :class:`FeatureControlsError` naming the problem and the fix, before any work
(or any file) is started.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError


def check_activations(X: Tensor, what: str = "activations") -> Tensor:
    """Require a non-empty, finite, floating (n, d) matrix; return it unchanged."""
    if not isinstance(X, Tensor):
        raise FeatureControlsError(
            f"{what} must be a torch.Tensor, got {type(X).__name__}",
            "convert with torch.as_tensor(x, dtype=torch.float32)",
        )
    if X.ndim != 2:
        raise FeatureControlsError(
            f"{what} must be 2-D (n_examples, d), got shape {tuple(X.shape)}",
            "flatten the leading dimensions: X.reshape(-1, X.shape[-1]), or pick a position in the site",
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise FeatureControlsError(
            f"{what} are empty (shape {tuple(X.shape)})",
            "pass a dataset with at least one example and a site with at least one unit",
        )
    if not X.is_floating_point():
        raise FeatureControlsError(f"{what} must be floating point, got {X.dtype}", "cast with X.float()")
    bad = ~torch.isfinite(X)
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).flatten()
        kind = "NaN" if bool(torch.isnan(X).any()) else "inf"
        raise FeatureControlsError(
            f"{what} contain {kind} values in {rows.numel()} of {X.shape[0]} rows "
            f"(first bad row: {int(rows[0])})",
            "check the model for overflow (run in float32, lower the input scale) or drop those examples",
        )
    return X


def check_binary_labels(Y: Tensor, n: int, names: list[str] | None = None) -> Tensor:
    """Require labels of shape (n,) or (n, k) with exactly two classes per column.

    Returns a float (n, k) tensor of 0/1 values (the larger class value becomes 1).
    """
    if not isinstance(Y, Tensor):
        raise FeatureControlsError(
            f"labels must be a torch.Tensor, got {type(Y).__name__}", "convert with torch.as_tensor(labels)"
        )
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise FeatureControlsError(
            f"labels must be (n,) or (n, k), got shape {tuple(Y.shape)}",
            "stack one label column per feature: torch.stack(columns, dim=1)",
        )
    if Y.shape[0] != n:
        raise FeatureControlsError(
            f"labels have {Y.shape[0]} rows but the activations have {n}",
            "give exactly one label per activation row (same examples, same order, same position selector)",
        )
    if Y.is_floating_point() and not bool(torch.isfinite(Y).all()):
        raise FeatureControlsError(
            "labels contain NaN or inf", "drop the unlabelled examples from both labels and inputs"
        )
    out = torch.empty(Y.shape, dtype=torch.float32)
    for j in range(Y.shape[1]):
        values = torch.unique(Y[:, j])
        name = names[j] if names is not None else f"column {j}"
        if values.numel() != 2:
            raise FeatureControlsError(
                f"label {name!r} has {values.numel()} distinct value(s) {values.tolist()[:5]}; "
                "a binary probe needs exactly two classes",
                "a single-class label cannot be decoded: drop the feature or add examples of the other class",
            )
        out[:, j] = (Y[:, j] == values[1]).float()
    return out
