"""What every job of a run reads: the model, the data, the plan, the controls, and the caches.

A :class:`RunContext` is built once per run by the battery and handed to every job (on Ray: put in
the object store once). It knows how to get any condition's activations at any site: from memory,
from the shard store on disk (``store_root``, shared with workers), or by computing them (reading
the trained model, randomising a copy with its derived seed, or running an input control), in that
order, so a job never depends on where an earlier one ran. Fitted dictionaries are kept the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.evidence import Margins
from featurecontrols.controls.base import (
    CausalControl,
    DictionaryBaseline,
    InputControl,
    LabelControl,
    RandomisedModel,
    WeightControl,
)
from featurecontrols.finders.base import Dictionary, Probe
from featurecontrols.finders.split import Split
from featurecontrols.measures.description_length import ProbabilisticProbe
from featurecontrols.params import params_key
from featurecontrols.pipeline.plan import TRAINED, Condition, Plan
from featurecontrols.pipeline.store import ShardedStore, ShardWriter
from featurecontrols.seeding import derive_seed
from featurecontrols.validation import check_activations


@dataclass
class RunContext:
    """The run's fixed inputs (see the module docstring); caches are not shipped to workers."""

    adapter: ModelAdapter
    batches: list[Any]
    used_batches: list[Any]
    sites: dict[str, Site]
    plan: Plan
    split: Split
    labels: dict[str, Tensor]
    cells: Tensor | None
    counterfactuals: dict[str, list[Any]]
    probes: dict[str, Probe]
    label_control: LabelControl
    weight_controls: dict[str, WeightControl]
    input_controls: dict[str, InputControl]
    dictionary_baselines: dict[str, DictionaryBaseline]
    causal_controls: dict[str, CausalControl]
    codelength_probe: ProbabilisticProbe | None
    dictionaries: dict[str, Dictionary]
    seed: int
    margins: Margins
    run_key: str
    data_key: str
    store_root: Path | None = None
    progress: bool = False
    _memory: dict[tuple[str, str], Tensor] = field(default_factory=dict, repr=False)
    _methods: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_memory"] = {}
        state["dictionaries"] = {
            k: v for k, v in self.dictionaries.items() if not k.startswith("dictionary ")
        }
        state["progress"] = False
        return state

    def randomised(self, condition: Condition) -> RandomisedModel:
        """A weight control's copy ``condition.index`` (made afresh: copies are not kept)."""
        copy = self.weight_controls[condition.control].randomise(self.adapter, self.copy_seed(condition))
        self._methods[condition.key] = copy.methods
        return copy

    def copy_methods(self, condition: Condition) -> dict[str, str]:
        """How each parameter of a weight control's copy was re-drawn."""
        if condition.key not in self._methods:
            self.randomised(condition)
        return self._methods[condition.key]

    def copy_seed(self, condition: Condition) -> int:
        """The seed of a weight control's copy (the same in every run with this run seed)."""
        return derive_seed(self.seed, condition.control, condition.index)

    def activations(self, condition: Condition, site: str) -> Tensor:
        """The (N, d) activations of ``condition`` at ``site`` (memory, store, or computed); a
        dictionary baseline's are the trained model's."""
        if condition.kind == "baseline":
            return self.activations(TRAINED, site)
        key = (condition.key, site)
        if key not in self._memory:
            self._memory |= {(condition.key, s): X for s, X in self._read(condition).items()}
        return self._memory[key]

    def preload(self, activations: Mapping[tuple[str, str], Tensor]) -> None:
        """Take activations computed elsewhere, keyed (condition key, site), for this run's inputs."""
        self._memory |= activations

    def held(self, keys: set[str]) -> dict[tuple[str, str], Tensor]:
        """The activations in memory of the conditions ``keys``, keyed (condition key, site)."""
        return {k: X for k, X in self._memory.items() if k[0] in keys}

    def _read(self, condition: Condition) -> dict[str, Tensor]:
        store = self._store(condition)
        if store is None:
            return self._compute(condition)

        def make(writer: ShardWriter) -> None:
            made = self._compute(condition)
            for name, site in self.sites.items():
                writer.append(str(site), made[name])

        store.fill(make)
        return {name: store.load(site) for name, site in self.sites.items()}

    def _compute(self, condition: Condition) -> dict[str, Tensor]:
        sites = list(self.sites.values())
        if condition.kind == "inputs":
            control = self.input_controls[condition.control]
            raw = control.control_activations(
                self.adapter, self.batches, sites, derive_seed(self.seed, control.name)
            )
        else:
            adapter = self.adapter if condition.kind == "trained" else self.randomised(condition).adapter
            raw = adapter.activations(self.batches, sites)
        what = f"activations of the {condition.key} model"
        return {
            name: check_activations(raw[str(site)], f"{what} at {name}") for name, site in self.sites.items()
        }

    def _store(self, condition: Condition) -> ShardedStore | None:
        """The store of a condition's activations, keyed by the model and data (``data_key``), the
        sites, and the condition: the control's parameters and the copy's seed."""
        if self.store_root is None:
            return None
        control: Any = None
        if condition.kind == "weights":
            control = self.weight_controls[condition.control]
        elif condition.kind == "inputs":
            control = self.input_controls[condition.control]
        parts = {
            "data": self.data_key,
            "condition": condition.key,
            "control": params_key(control),
            "seed": self.seed,
            "sites": sorted(map(str, self.sites.values())),
        }
        key = hashlib.sha256(str(list(parts.values())).encode()).hexdigest()[:32]
        return ShardedStore(self.store_root, key, params=parts)


def run_key(parts: Mapping[str, Any]) -> str:
    """sha256 of everything that changes a run's numbers (parameters by ``params_key``, tensors by
    content): the key under which its jobs' results are kept."""
    return hashlib.sha256(params_key(dict(parts)).encode()).hexdigest()[:32]
