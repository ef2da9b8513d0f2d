"""The typed result of a run: every candidate's verdict at every site, and the settings that made it.

Frozen dataclasses: ``report/`` reads them by attribute, apps add sections with
``dataclasses.replace`` (a new result), and nothing rewrites a run after it ran. ``to_dict`` gives
JSON (NaN and infinities become null).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from featurecontrols.axes.evidence import CandidateResult, Margins


@dataclass(frozen=True)
class WeightControlRecord:
    """A weight control as run: its parameters, its copies, and how many parameters each method re-drew."""

    name: str
    params: str
    copies: int
    methods: dict[str, int]


@dataclass(frozen=True)
class RunSettings:
    """Everything that reproduces a run's numbers, and the sizes its tests had."""

    seed: int
    alpha: float
    correction: str
    confidence: float
    margins: Margins
    n_bootstrap: int
    probe: str
    label_control: str
    weight_controls: tuple[WeightControlRecord, ...]
    input_controls: tuple[str, ...]
    dictionary_baselines: tuple[str, ...]
    causal_controls: tuple[str, ...]
    n_shuffles: int
    n_random_directions: int
    n_latent_null: int
    n_weight_seeds: int
    control_task: str | None
    codelength_probe: str | None
    used_examples: int
    n_examples: int
    n_test: int
    widths: dict[str, int]
    n_tests_corrected: int
    executor: str


@dataclass(frozen=True)
class TestbedInfo:
    """The ground-truth testbed a run was made on, and the figures that check its ground truth."""

    __test__ = False  # not a pytest test class, despite its name

    name: str
    description: str
    checks: dict[str, float]


@dataclass(frozen=True)
class TopInput:
    """A held-out input on which a latent fires: its row among the run's activation rows, its code
    and, where the run was given contexts, what the row is (a token in its sentence, say)."""

    row: int
    code: float
    context: str | None


@dataclass(frozen=True)
class RunResult:
    """A run: candidates (site by site, in plan order), settings, timings and what the report plots.

    ``spectra[site][model]`` holds the activation spectra (``measures/spectra.py``) of the trained
    model and of each weight control's copies; ``dictionaries[site/name][fit]`` each Latents
    dictionary's aggregate metrics under every condition (``measures/sae_metrics.py``); ``steering``
    the steering curves and ``search`` the probe searches per feature, when an app measured them;
    ``top_inputs[site/name][j]`` latent j's top-activating held-out inputs, largest code first (rows
    where it does not fire left out).
    """

    sites: tuple[str, ...]
    candidates: tuple[CandidateResult, ...]
    settings: RunSettings
    timings: dict[str, float] = field(default_factory=dict)
    spectra: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    dictionaries: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    steering: tuple[dict[str, Any], ...] = ()
    search: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    top_inputs: dict[str, tuple[tuple[TopInput, ...], ...]] = field(default_factory=dict)
    testbed: TestbedInfo | None = None

    def at(self, site: str) -> list[CandidateResult]:
        """The candidates judged at ``site``."""
        return [c for c in self.candidates if c.site == site]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, each candidate with its ``correct`` flag and axis p-values."""
        out = asdict(self)
        for entry, c in zip(out["candidates"], self.candidates, strict=True):
            entry["correct"] = c.correct
            for name, axis in c.axes.items():
                entry["axes"][name]["p_adjusted"] = axis.p_adjusted
        finite: dict[str, Any] = finite_or_none(out)
        return finite


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON has neither), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
