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


def check_labels(
    Y: Tensor, n: int, names: list[str] | None = None, *, recode: bool = True, both_classes: bool = True
) -> Tensor:
    """Require binary labels of shape (n,) or (n, k); return a float (n, k) matrix of 0/1.

    ``recode``: any two distinct values per column become 0/1 (the larger is 1); otherwise the values
    must already be 0/1. ``both_classes``: every column must hold both classes (a probe cannot be
    fitted on one); a scored test split may not, so scoring passes False.
    """
    if not isinstance(Y, Tensor):
        raise FeatureControlsError(
            f"labels must be a torch.Tensor, got {type(Y).__name__}", "convert with torch.as_tensor(labels)"
        )
    Y = Y[:, None] if Y.ndim == 1 else Y
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
    if Y.numel() == 0:
        raise FeatureControlsError(
            f"labels are empty (shape {tuple(Y.shape)})",
            "give at least one example and one label column",
        )
    if Y.is_floating_point() and not bool(torch.isfinite(Y).all()):
        raise FeatureControlsError(
            "labels contain NaN or inf", "drop the unlabelled examples from both labels and inputs"
        )
    if not recode:
        if not bool(((Y == 0) | (Y == 1)).all()):
            raise FeatureControlsError(
                "probe labels must be 0/1", "encode the two classes as 0 and 1 (validation.check_labels)"
            )
        out = Y.float()
    else:
        out = torch.empty(Y.shape, dtype=torch.float32, device=Y.device)
        for j in range(Y.shape[1]):
            values = torch.unique(Y[:, j])
            if values.numel() > 2:
                raise FeatureControlsError(
                    f"label {_column(names, j)!r} has {values.numel()} distinct values "
                    f"{values.tolist()[:5]}; a binary probe needs exactly two classes",
                    "binarise the label (e.g. labels == value) or give one column per class",
                )
            out[:, j] = (Y[:, j] == values[-1]).float()
    if both_classes:
        positives = out.sum(dim=0)
        single = torch.nonzero((positives == 0) | (positives == n)).flatten().tolist()
        if single:
            raise FeatureControlsError(
                f"label {_column(names, single[0])!r} has 1 distinct value: a single class "
                f"({len(single)} column(s) like it)",
                "a single-class label cannot be decoded: drop the feature or add examples of the other class",
            )
    return out


def _column(names: list[str] | None, j: int) -> str:
    return names[j] if names is not None else f"column {j}"


def check_targets(T: Tensor, n: int) -> Tensor:
    """Real-valued targets (n,) or (n, k) as a finite, non-constant float (n, k) matrix."""
    if not isinstance(T, Tensor):
        raise FeatureControlsError(
            f"targets must be a torch.Tensor, got {type(T).__name__}", "convert with torch.as_tensor(targets)"
        )
    T = T[:, None] if T.ndim == 1 else T
    if T.ndim != 2 or T.shape[0] != n:
        raise FeatureControlsError(
            f"targets of shape {tuple(T.shape)} do not match {n} activation rows",
            "give targets of shape (n,) or (n, k) for the same n examples as the activations",
        )
    T = T.to(torch.float64) if T.dtype == torch.float64 else T.float()
    if not bool(torch.isfinite(T).all()):
        raise FeatureControlsError(
            f"targets contain {int((~torch.isfinite(T)).sum())} NaN or infinite values",
            "drop the examples without a target from the targets and the activations alike",
        )
    constant = torch.nonzero((T[:1] == T).all(dim=0)).flatten().tolist()
    if constant:
        raise FeatureControlsError(
            f"target column(s) {constant[:5]} are constant: R^2 is undefined",
            "drop those columns; a constant target carries nothing to decode",
        )
    return T


def check_in_open_unit(name: str, value: float, example: str) -> float:
    """Require 0 < value < 1 (a level, a rate, a fraction)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise FeatureControlsError(f"{name} must be in (0, 1), got {value!r}", f"use e.g. {name}={example}")
    return float(value)


def check_at_least(name: str, value: int | None, low: int, *, optional: bool = False) -> int | None:
    """Require an integer >= low (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        hint = " (or None for the automatic size)" if optional else ""
        raise FeatureControlsError(
            f"{name} must be an integer >= {low}, got {value!r}", f"pass {name}={max(low, 1)} or more{hint}"
        )
    return value


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """Require one of ``choices``."""
    if value not in choices:
        raise FeatureControlsError(f"unknown {name} {value!r}", f"use one of {list(choices)}")
