"""Control tasks (Hewitt & Liang, EMNLP 2019, "Designing and interpreting probes with control tasks").

The examples are partitioned into *cells*: the token id by default, or any integer key per example
(a position, a bigram id, a hashed tuple of input variables). A control task gives every cell one
fixed random label, drawn from the empirical label distribution of the real task, so a probe can
solve it only by memorising cells: what it reaches there is what the probe can read off the input
partition alone, whatever the model computed. Each of the ``n_null`` control columns is an
independent draw (columns in which every cell drew the same label are drawn again: a constant column
cannot be probed). Selectivity, task accuracy minus control-task accuracy, is judged on the learned
axis (``axes/learned.py``); ``measures/selectivity.py`` computes it on its own.

The cells of the usual partitions are built here, once: :func:`input_type_cells` (each distinct
input vector), :func:`bit_cells` (a subset of binary input variables) and :func:`token_cells` (the
token id of every token-level row of a Hugging Face batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import Params


class ControlTask(Params):
    """Label control: a random label per cell, ``n_null`` independent draws.

    Parameters
    ----------
    cells : integer tensor (n,), the cell (token id, or any key) of every example.
    """

    name = "control task"

    def __init__(self, cells: Tensor) -> None:
        self.cells = cells

    def null_labels(self, y: Tensor, n_null: int, generator: torch.Generator) -> Tensor:
        """Map labels y (n,) to (n, n_null) control labels: one draw of a label per cell per column."""
        n = check_cells(self.cells).shape[0]
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


def input_type_cells(inputs: Tensor) -> Tensor:
    """Each example's index among the distinct input vectors (its input type), shape (n,)."""
    cells: Tensor = torch.unique(inputs.flatten(1), dim=0, return_inverse=True)[1]
    return cells


def bit_cells(x: Tensor, bits: Sequence[int]) -> Tensor:
    """Cells from binary inputs x (n, m) (0/1 or -1/+1): the integer sum_j 2^j [x_(bits_j) > 0].

    With the bits of a token's code this is the token id; with a subset, a coarser "type" whose random
    labels a probe can learn only by memorising every combination of those bits.
    """
    return ((x[:, list(bits)] > 0).long() << torch.arange(len(bits))).sum(dim=1)


def token_cells(batches: Sequence[Mapping[str, Any]], mask_key: str) -> Tensor:
    """The token id of every token-level row of Hugging Face ``batches`` (tokenizer output plus the
    readout mask under ``mask_key``, ``adapters.huggingface.READOUT_MASK`` for the batches that
    ``testbeds/text_tasks.encode`` makes), in row order."""
    return torch.cat([b["input_ids"][b[mask_key]] for b in batches])
