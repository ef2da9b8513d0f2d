"""Control tasks (Hewitt & Liang, EMNLP 2019, "Designing and interpreting probes with control tasks").

The examples are partitioned into *cells*: the token id by default, or any integer key per example
(a position, a bigram id, a hashed tuple of input variables). A control task gives every cell one
fixed random label, drawn from the empirical label distribution of the real task, so a probe can
solve it only by memorising cells: what it reaches there is what the probe can read off the input
partition alone, whatever the model computed. Each of the ``n_null`` control columns is an
independent draw (columns in which every cell drew the same label are drawn again: a constant column
cannot be probed).

Selectivity = task accuracy - control-task accuracy (held out), with

- an interval from the paired bootstrap of the per-example difference task_i - mean_b control_ib;
  given the test examples' cells, whole cells are resampled (a cluster bootstrap), since a probe
  that memorises a cell is right or wrong on all of its examples together;
- the one-sided p-value of the task accuracy among the B control-task accuracies,
  p = (1 + #{b : control_b >= task}) / (1 + B), exact when the real labels are exchangeable with a
  control draw (H0: the probe finds the task no easier than a random function of the cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.axes.decodable import fit_and_check
from featurecontrols.axes.evidence import Evidence
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.pipeline.split import Split
from featurecontrols.seeding import generator
from featurecontrols.stats import (
    bootstrap_mean_ci,
    cluster_bootstrap_mean_ci,
    permutation_p_value,
    summarise_null,
)


class ControlTask:
    """Label control: a random label per cell, ``n_null`` independent draws.

    Parameters
    ----------
    cells : integer tensor (n,), the cell (token id, or any key) of every example.
    """

    name = "control task"

    def __init__(self, cells: Tensor) -> None:
        self.cells = check_cells(cells)

    def null_labels(self, y: Tensor, n_null: int, generator: torch.Generator) -> Tensor:
        """Map labels y (n,) to (n, n_null) control labels: one draw of a label per cell per column."""
        n = self.cells.shape[0]
        values, probabilities = _label_distribution(y, n)
        _, cell_of = torch.unique(self.cells.cpu(), return_inverse=True)
        n_cells = int(cell_of.max()) + 1
        if n_cells < 2:
            raise FeatureControlsError(
                "the control task's partition has a single cell, so every control label would be the same",
                "partition by a key that varies across examples (token id, position, ...)",
            )
        thresholds = torch.cumsum(probabilities, dim=0)[:-1]
        draws = torch.empty(n_cells, n_null, dtype=torch.long)
        redraw = torch.ones(n_null, dtype=torch.bool)
        while bool(redraw.any()):
            u = torch.rand(n_cells, int(redraw.sum()), generator=generator, dtype=torch.float64)
            draws[:, redraw] = torch.searchsorted(thresholds, u.contiguous(), right=True)
            redraw = (draws == draws[:1]).all(dim=0)
        return values[draws[cell_of].to(y.device)]


def check_cells(cells: Tensor, n: int | None = None) -> Tensor:
    """Check that ``cells`` is a 1-D integer tensor (of length ``n`` when given) and return it."""
    if not isinstance(cells, Tensor) or cells.ndim != 1 or cells.is_floating_point() or cells.is_complex():
        raise FeatureControlsError(
            f"cells must be a 1-D integer tensor (one key per example), got "
            f"{type(cells).__name__} {tuple(getattr(cells, 'shape', ()))} "
            f"{getattr(cells, 'dtype', '')}",
            "pass token ids (or any integer key per example) as torch.as_tensor(keys, dtype=torch.long)",
        )
    if n is not None and cells.shape[0] != n:
        raise FeatureControlsError(
            f"there are {cells.shape[0]} cells but {n} activation rows",
            "give one cell (token id, or any integer key) per activation row",
        )
    return cells


def _label_distribution(y: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The distinct values of y and their frequencies; checks shape, NaN and constancy."""
    if y.ndim != 1 or y.shape[0] != n:
        raise FeatureControlsError(
            f"the control task has {n} cells but the labels have shape {tuple(y.shape)}",
            "give one cell per example and one label column (n,) per call, for the same examples",
        )
    if y.is_floating_point() and bool(torch.isnan(y).any()):
        raise FeatureControlsError(
            f"labels contain {int(torch.isnan(y).sum())} NaN values",
            "drop the unlabelled examples from the labels, the cells and the activations alike",
        )
    values, counts = torch.unique(y, return_counts=True)
    if values.numel() < 2:
        raise FeatureControlsError(
            f"the label column is constant ({values.tolist()}): there is no label distribution to draw from",
            "drop this feature, or add examples of the other class",
        )
    return values, counts.double().cpu() / n


@dataclass(frozen=True)
class Selectivity:
    """Task accuracy minus control-task accuracy (held out), with its interval and p-value."""

    task_accuracy: float
    control_accuracy: float
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    control_accuracies: tuple[float, ...]

    def as_evidence(self) -> Evidence:
        """The same numbers as evidence on the *learned* axis (see ``featurecontrols.axes.evidence``)."""
        return Evidence(
            axis="learned",
            control=ControlTask.name,
            metric="held-out accuracy",
            score=self.task_accuracy,
            control_score=self.control_accuracy,
            effect=self.estimate,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            p_value=self.p_value,
            null=summarise_null(torch.tensor(self.control_accuracies)),
        )


def selectivity(
    task_correct: Tensor,
    control_correct: Tensor,
    *,
    cells: Tensor | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Selectivity:
    """Selectivity from held-out correctness (see the module docstring).

    ``task_correct`` (n,) and ``control_correct`` (n,) or (n, B) are 0/1 or boolean correctness on the
    same n test examples, one column per control draw; ``cells`` (n,), if given, makes the interval
    resample whole cells.
    """
    task = task_correct.double().flatten()
    control = control_correct.double()
    control = control[:, None] if control.ndim == 1 else control
    if control.ndim != 2 or control.shape[0] != task.shape[0] or control.numel() == 0:
        raise FeatureControlsError(
            f"task correctness has shape {tuple(task_correct.shape)} and control correctness "
            f"{tuple(control_correct.shape)}; they must cover the same non-empty test examples",
            "pass (n,) task correctness and (n, B) control correctness from the same test split",
        )
    difference = (task - control.mean(dim=1))[:, None]
    draw = generator(seed, "bootstrap", ControlTask.name)
    if cells is None:
        low, high = bootstrap_mean_ci(difference, n_bootstrap, confidence, draw)
    else:
        if cells.shape != task.shape:
            raise FeatureControlsError(
                f"cells have shape {tuple(cells.shape)} but there are {task.shape[0]} test examples",
                "pass the cells of the test examples only (cells[split.test])",
            )
        low, high = cluster_bootstrap_mean_ci(difference, cells, n_bootstrap, confidence, draw)
    task_accuracy = task.mean()
    control_accuracies = control.mean(dim=0)
    return Selectivity(
        task_accuracy=float(task_accuracy),
        control_accuracy=float(control_accuracies.mean()),
        estimate=float(difference.mean()),
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        p_value=float(permutation_p_value(task_accuracy[None], control_accuracies[None])[0]),
        control_accuracies=tuple(control_accuracies.tolist()),
    )


def control_task_selectivity(
    probe: Probe,
    X: Tensor,
    y: Tensor,
    cells: Tensor,
    split: Split,
    n_controls: int = 99,
    *,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> Selectivity:
    """Fit ``probe`` on the real labels y (n,) and ``n_controls`` control tasks over ``cells`` in one
    batched fit on ``split.train``, and return the selectivity on ``split.test``."""
    control = ControlTask(cells)
    null = control.null_labels(y, n_controls, generator(seed, ControlTask.name))
    correct = fit_and_check(probe, X, torch.cat([y[:, None].to(null.dtype), null], dim=1), split)
    return selectivity(
        correct[:, 0],
        correct[:, 1:],
        cells=cells[split.test],
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )
