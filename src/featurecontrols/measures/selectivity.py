"""Selectivity on its own: a probe's held-out accuracy on a task against control tasks over cells.

Hewitt & Liang (EMNLP 2019): selectivity = task accuracy - control-task accuracy. The probe is fitted
once on [real labels, ``n_controls`` control tasks] (one batched fit on the training rows) and the
learned axis' test judges it (``axes/from_scores.from_null``): the paired per-example difference
task_i - mean_b control_ib, with whole cells resampled for the interval (a probe that memorises a
cell is right or wrong on all its examples together), and
p = (1 + #{b : control_b >= task}) / (1 + B), exact when the real labels are exchangeable with a
control draw. The battery runs the same test on its learned axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.axes import learned
from featurecontrols.axes.evidence import Bootstrap, Evidence
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.label.control_task import ControlTask, check_cells
from featurecontrols.finders.base import Probe
from featurecontrols.finders.split import Split, held_out_correctness
from featurecontrols.seeding import generator


def control_task_scores(
    probe: Probe, X: Tensor, y: Tensor, cells: Tensor, split: Split, n_controls: int, seed: int
) -> NullScores:
    """Raw scores of the probe on the real labels y (n,) against ``n_controls`` control tasks."""
    control = ControlTask(check_cells(cells, X.shape[0]))
    null = control.null_labels(y, n_controls, generator(seed, ControlTask.name))
    correct = held_out_correctness(probe, X, torch.cat([y[:, None].to(null.dtype), null], dim=1), split)
    controls = correct[:, 1:].double()
    return NullScores(
        metric="held-out accuracy",
        unit="accuracy",
        real=correct[:, 0].double(),
        null=controls.mean(dim=0),
        control=controls.mean(dim=1),
        clusters=cells[split.test],
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
) -> Evidence:
    """The selectivity of ``probe`` as learned-axis evidence: ``effect`` is task minus control-task
    accuracy, ``score`` the task accuracy, ``control_score`` the control tasks' mean accuracy."""
    scores = control_task_scores(probe, X, y, cells, split, n_controls, seed)
    return learned.assess(
        ControlTask.name, scores, ("selectivity",), Bootstrap(seed, n_bootstrap, confidence)
    )
