"""The four control contracts (DESIGN.md). A control transforms ONE input of the pipeline, or
intervenes on the forward pass; it never builds Evidence and never knows which finder runs under it.

    LabelControl   real labels -> control labels                (shuffled labels, control task)
    InputControl   real inputs -> the control's activations      (random inputs, planted structure)
    WeightControl  model -> a randomised copy                     (re-initialised, spectrum-matched, ...)
    CausalControl  an intervention at a site -> raw scores, real against control, per candidate
                   (directional and resample ablation, counterfactual patching, erasure)
    DictionaryBaseline  a dictionary's finder -> the same finder with part of it held random
                   (frozen decoder, frozen encoder: Korznikov et al. 2026), fitted on the trained
                   model's own activations; judges latents on the found axis

The pipeline runs the same finder under every label, input and weight control and hands the raw
scores to the axes (``axes/``), so every control works with every finder. One file per control,
in the folder of its kind; ``controls/registry.py`` names them for configs and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import RawScores
from featurecontrols.finders.sparse_codes import SparseCodes
from featurecontrols.measures.code_correlation import CodeCorrelation


@runtime_checkable
class LabelControl(Protocol):
    """Makes ``n_null`` control label columns from one real label column."""

    name: str

    def null_labels(self, y: Tensor, n_null: int, generator: torch.Generator) -> Tensor:
        """Map labels y of shape (n,) to control labels of shape (n, n_null)."""
        ...


@runtime_checkable
class InputControl(Protocol):
    """Makes the activations of a structure-free version of the data, row for row like the real ones."""

    name: str

    def control_activations(
        self, adapter: ModelAdapter, batches: Sequence[Any], sites: Sequence[Site], seed: int
    ) -> dict[str, Tensor]:
        """Per site (keyed by ``str(site)``) the (N, d) activations of the control's data."""
        ...


@dataclass(frozen=True)
class RandomisedModel:
    """A randomised copy of a model (as an adapter) and how each parameter was re-drawn.

    ``methods`` maps every parameter name (as in ``named_parameters()``) to the method that re-drew
    it, so a report can say exactly what was and was not randomised.
    """

    adapter: ModelAdapter
    control: str
    seed: int
    methods: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        """The randomised torch module."""
        return self.adapter.module


@runtime_checkable
class WeightControl(Protocol):
    """Returns a randomised deep copy of a model; the model passed in is never modified."""

    name: str

    def randomise(self, model: ModelAdapter | nn.Module, seed: int) -> RandomisedModel: ...


Requirement = Literal["direction", "labels", "counterfactuals", "codes"]


@dataclass(frozen=True)
class CausalTarget:
    """What a causal control changes for one candidate: its direction at the site (d,), its labels
    (one per activation row), or its counterfactual batches (inputs with the candidate changed, batched
    like the inputs), or a latent's code z_j on every row of the batches the control runs on (with
    its index ``latent`` in the ``dictionary`` it belongs to), whichever the control requires;
    ``kind`` is the candidate's kind (a labelled feature's direction is its class-mean difference, a
    direction's its own, a latent's the one it writes).
    """

    name: str
    direction: Tensor | None = None
    labels: Tensor | None = None
    counterfactuals: Sequence[Any] | None = None
    kind: str = "labelled feature"
    code: Tensor | None = None
    latent: int | None = None
    dictionary: LatentSet | None = None


@dataclass(frozen=True)
class LatentSet:
    """Every latent of the dictionary a latent target belongs to, shared by its targets: their codes
    on the rows the control runs on (n, m) and the directions they write (m, d)."""

    codes: SparseCodes
    writes: Tensor

    @cached_property
    def correlation(self) -> CodeCorrelation:
        """The codes' correlations over those rows (made once, on first use)."""
        return CodeCorrelation(self.codes)


@dataclass(frozen=True)
class AtSite:
    """Where a causal control intervenes: the model, the ``batches`` it runs on, the ``site``, the
    site's activations ``X`` on the whole dataset (for means, covariances and null directions), the
    null's size ``n_null`` where the control draws one, the run seed, whether to show progress, and
    the ``margin`` the used axis tests the control's effect against (in its unit: a null drawn in
    order may stop once enough draws reach the real change less the margin)."""

    adapter: ModelAdapter
    batches: Sequence[Any]
    site: Site
    X: Tensor
    n_null: int = 0
    seed: int = 0
    progress: bool = False
    margin: float = 0.0


@runtime_checkable
class DictionaryBaseline(Protocol):
    """Makes the baseline of a dictionary's finder: the same finder, part of its fit held random."""

    name: str

    def constrain(self, finder: Any) -> Any:
        """An unfitted copy of ``finder`` constrained to the baseline (raises if it cannot be)."""
        ...


@runtime_checkable
class CausalControl(Protocol):
    """Intervenes at a site and returns raw scores per target name."""

    @property
    def name(self) -> str: ...

    requires: ClassVar[Requirement]
    metric: str
    unit: ClassVar[Unit]

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> Mapping[str, RawScores]: ...
