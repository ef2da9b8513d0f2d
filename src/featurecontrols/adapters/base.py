"""The ModelAdapter contract: the only code that knows a model library.

Everything else in featurecontrols sees a model through these few methods:

    module            the torch module: forward hooks at sites
    weights           the module whose parameters the weight controls randomise (``module`` itself,
                      unless the adapter wraps the model), named as the user knows them
    run(batch)        one forward pass on a batch (tensors moved to the model's device)
    outputs(batch)    what the used axis measures: (rows, o) values, or (rows, positions, vocab)
                      next-token logits when ``output_kind`` is "logits"
    resolve(site)     a site name (a module path, or the library's own names) -> a Site of ``module``
    reinitialise(...) the library's own initialiser, for the re-initialised weight control
    matrix_view(...)  how a parameter factors into the matrices whose spectra are kept
    rewrap(weights)   the same adapter around a randomised copy of ``weights``

The plain-torch adapter (``adapters/torch_model.py``) implements each with torch's conventions;
library adapters (Hugging Face, TransformerLens) override what their library does differently.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from featurecontrols.adapters.interventions import applied, site_tensor
from featurecontrols.adapters.sites import (
    Site,
    batch_rows,
    read_activations,
    resolve_module,
    site_names,
)
from featurecontrols.errors import FeatureControlsError

if TYPE_CHECKING:
    from featurecontrols.pipeline.store import ShardedStore

OutputKind = Literal["values", "logits"]


@dataclass(frozen=True)
class MatrixView:
    """A parameter read as ``batch`` matrices of shape (rows, cols): ``w.reshape(batch, rows, cols)``.

    A linear layer's weight is one matrix; per-head attention weights (heads, d_model, d_head) are
    ``heads`` matrices, whose spectra a spectrum-matched control keeps one by one.
    """

    batch: int
    rows: int
    cols: int

    def matrices(self, w: Tensor) -> Tensor:
        """The (batch, rows, cols) matrices of ``w``."""
        if w.numel() != self.batch * self.rows * self.cols:
            raise FeatureControlsError(
                f"a matrix view of {self.batch} x {self.rows} x {self.cols} does not fit a tensor of "
                f"shape {tuple(w.shape)}",
                "give a view whose batch * rows * cols equals the parameter's number of entries",
            )
        return w.reshape(self.batch, self.rows, self.cols)


def leading_matrix(shape: Sequence[int]) -> MatrixView:
    """The usual view of a weight of ``shape``: one (shape[0], everything else) matrix."""
    return MatrixView(1, int(shape[0]), math.prod(int(s) for s in shape[1:]))


class ModelAdapter(ABC):
    """A model as featurecontrols sees it (module docstring). Subclasses set ``module``."""

    module: nn.Module
    output_kind: OutputKind = "values"
    """How the used axis compares outputs (``measures/output_change.py``): "values" by squared
    distance, "logits" (next-token logits of a language model) by the KL of the next-token
    distributions, reduced per example as each forward pass ends."""

    @abstractmethod
    def run(self, batch: Any) -> Any:
        """One forward pass of ``module`` on ``batch``; returns what the model returns."""

    @abstractmethod
    def outputs(self, batch: Any) -> Tensor:
        """The outputs the used axis measures for ``batch``, one row per input: (rows, o), or
        (rows, positions, vocab) logits when ``output_kind`` is "logits"."""

    @property
    def weights(self) -> nn.Module:
        """The module whose parameters the weight controls randomise (by default ``module``)."""
        return self.module

    @abstractmethod
    def rewrap(self, weights: nn.Module) -> ModelAdapter:
        """This adapter around ``weights``, a randomised deep copy of ``self.weights``."""

    def resolve(self, site: str | Site) -> Site:
        """The site of ``module`` that ``site`` names; an unknown name raises with the nearest ones."""
        parsed = Site.parse(site)
        resolve_module(self.module, parsed.module)
        return parsed

    def site_names(self) -> list[str]:
        """Every name :meth:`resolve` accepts."""
        return site_names(self.module)

    def reinitialise(self, module: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        """Re-draw, in place, the ``targets`` of ``module`` (a copy) that the library's initialiser
        covers; return how each was drawn. Parameters it does not cover are left to the caller."""
        return {}

    def matrix_view(self, name: str, parameter: Tensor) -> MatrixView | None:
        """How parameter ``name`` factors into matrices; ``None`` for a vector (no matrix)."""
        return leading_matrix(parameter.shape) if parameter.ndim >= 2 else None

    def describe(self) -> list[str]:
        """What the adapter's numbers depend on besides the weights (part of a run's resume key)."""
        return [type(self).__name__, self.output_kind]

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (CPU for a model without any)."""
        param = next(self.module.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def activations(
        self,
        batches: Iterable[Any],
        sites: Sequence[Site],
        *,
        store: ShardedStore | None = None,
        progress: int | None = None,
    ) -> dict[str, Tensor]:
        """Each site's (N, d) activations over ``batches`` (``sites.read_activations``)."""
        return read_activations(
            self.module, batches, sites, forward=self._forward, store=store, progress=progress
        )

    @contextmanager
    def intervening(self, interventions: Sequence[tuple[Site, Callable[[Tensor], Tensor]]]) -> Iterator[None]:
        """While active, every (site, intervention) changes the forward pass (``interventions.applied``)."""
        with applied(self.module, interventions):
            yield

    def site_tensor(self, site: Site, batch: Any) -> Tensor:
        """The site's tensor on one batch, at its positions, unflattened (a patch source)."""
        return site_tensor(self.module, site, batch, self._forward)

    def row_examples(self, batch: Any, tensor: Tensor) -> Tensor:
        """The example (index along the batch) of every row of a site tensor of ``batch``, flattened
        to (rows, d): a tensor (examples, ..., d) has the same number of rows per example."""
        n = batch_rows(batch)
        rows = tensor.reshape(-1, tensor.shape[-1]).shape[0]
        if tensor.shape[0] != n or rows % n:
            raise FeatureControlsError(
                f"a site tensor of shape {tuple(tensor.shape)} does not have the batch's {n} examples first",
                "give the adapter a row_examples that maps its site rows to examples",
            )
        return torch.arange(n).repeat_interleave(rows // n)

    def _forward(self, module: nn.Module, batch: Any) -> Any:
        return self.run(batch)
