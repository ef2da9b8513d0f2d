"""The jobs of a run: each a pure function of the run context and the outputs of the jobs it needs.

    stage 0  ReadActivations   a condition's activations at every site (and their spectra)
    stage 1  ProbeFit          a probe's held-out correctness under one condition (trained or a copy)
             ShuffledNull      the probe on shuffled labels (the decodable null)
             ControlTaskFit    the probe on real labels and control tasks
             CodelengthFit     online codelength of real labels and control tasks
             FitDictionary     a dictionary fitted under one condition (``latent_jobs.py``)
    stage 2  LatentRecurrence, LatentControl   latents matched across fits (``latent_jobs.py``)
             CausalRun         a causal control at a site, for every entry of its step (``causal_job.py``)

A job's output is tensors plus string metadata (what a safetensors file holds), so it can be kept on
disk, resumed, or come back from a Ray worker. Every random draw is seeded from the run seed and
names, never from the order in which jobs run, so every executor gives the same numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.finders.base import Probe
from featurecontrols.finders.projection_probe import ProjectionProbe
from featurecontrols.finders.split import held_out_correctness
from featurecontrols.measures.description_length import codelength_scores
from featurecontrols.measures.selectivity import control_task_scores
from featurecontrols.measures.spectra import activation_spectrum
from featurecontrols.pipeline.candidates import Direction
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.plan import TRAINED, Condition, Entry
from featurecontrols.seeding import derive_seed, generator


@dataclass(frozen=True)
class Output:
    """What a job returns: named tensors and string metadata."""

    tensors: dict[str, Tensor]
    meta: dict[str, str] = field(default_factory=dict)


class Job:
    """A unit of work; subclasses are frozen dataclasses whose fields say what it computes."""

    stage: ClassVar[int]

    def needs(self, ctx: RunContext) -> tuple[Job, ...]:
        """The jobs whose outputs this one reads (all of an earlier stage)."""
        return ()

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        raise NotImplementedError

    def key(self, run_key: str) -> str:
        """sha256 of the run's key and the job's fields: its name in a results folder."""
        return hashlib.sha256(f"{run_key} {self!r}".encode()).hexdigest()[:32]


PROBE = "probe"


def probe_group(entry: Entry, trained_reader: bool) -> str:
    """The probe an entry's labels are fitted with: the battery's probe (shared by every labelled
    entry), a direction's own finder, or, to read a direction as it is, its projection probe."""
    c = entry.candidate
    if isinstance(c, Direction):
        if trained_reader:
            return f"reader:{entry.id}"
        if c.finder is not None:
            return f"finder:{entry.id}"
    return PROBE


def group_columns(ctx: RunContext, site: str, group: str) -> list[Entry]:
    """The entries at ``site`` whose labels a probe group fits together, in plan order."""
    if group != PROBE:
        return [ctx.plan.entry(group.split(":", 1)[1])]
    return [
        e for e in ctx.plan.entries if e.site == site and e.labels_known and probe_group(e, False) == PROBE
    ]


def label_column(ctx: RunContext, entry: Entry) -> Tensor:
    """The entry's 0/1 labels, one per activation row."""
    return ctx.labels[entry.id]


@dataclass(frozen=True)
class ReadActivations(Job):
    """Stage 0: a condition's activations at every site; outputs their spectra."""

    stage: ClassVar[int] = 0
    condition: Condition

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        spectra = {
            f"spectrum/{site}": torch.tensor(activation_spectrum(ctx.activations(self.condition, site)))
            for site in ctx.sites
        }
        if self.condition.kind != "weights":
            return Output(spectra)
        methods = Counter(ctx.copy_methods(self.condition).values())
        return Output(spectra, {"methods": json.dumps(dict(sorted(methods.items())))})


@dataclass(frozen=True)
class ProbeFit(Job):
    """Stage 1: held-out correctness (n_test, k) of a probe group's columns under one condition."""

    stage: ClassVar[int] = 1
    condition: Condition
    site: str
    group: str

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        entries = group_columns(ctx, self.site, self.group)
        Y = torch.stack([label_column(ctx, e) for e in entries], dim=1)
        X = ctx.activations(self.condition, self.site)
        return Output({"correct": held_out_correctness(ctx.probes[self.group], X, Y, ctx.split)})


@dataclass(frozen=True)
class ShuffledNull(Job):
    """Stage 1: held-out accuracy of the entry's reader on ``n_shuffles`` label-control columns."""

    stage: ClassVar[int] = 1
    entry: str

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        entry = ctx.plan.entry(self.entry)
        y = label_column(ctx, entry)
        control = ctx.label_control
        null = control.null_labels(y, ctx.plan.nulls.shuffles, generator(ctx.seed, control.name, entry.name))
        probe = ctx.probes[probe_group(entry, trained_reader=True)]
        X = ctx.activations(TRAINED, entry.site)
        return Output({"null": held_out_correctness(probe, X, null, ctx.split).double().mean(dim=0)})


@dataclass(frozen=True)
class ControlTaskFit(Job):
    """Stage 1: the entry's finder on its real labels and ``n_shuffles`` control tasks over the cells."""

    stage: ClassVar[int] = 1
    entry: str

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        entry = ctx.plan.entry(self.entry)
        assert ctx.cells is not None  # the plan has a control task only with cells
        X = ctx.activations(TRAINED, entry.site)
        probe = ctx.probes[probe_group(entry, trained_reader=False)]
        seed = derive_seed(ctx.seed, ControlTask.name, entry.name)
        s = control_task_scores(
            probe, X, label_column(ctx, entry), ctx.cells, ctx.split, ctx.plan.nulls.shuffles, seed
        )
        assert s.control is not None
        return Output({"real": s.real, "null": s.null, "control": s.control})


@dataclass(frozen=True)
class CodelengthFit(Job):
    """Stage 1: online codelength of the entry's labels against control tasks (examples in a seeded
    random order, the same for every entry)."""

    stage: ClassVar[int] = 1
    entry: str

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        entry = ctx.plan.entry(self.entry)
        assert ctx.cells is not None and ctx.codelength_probe is not None
        X = ctx.activations(TRAINED, entry.site)
        order = torch.randperm(X.shape[0], generator=generator(ctx.seed, "codelength order"))
        coder = copy.deepcopy(ctx.codelength_probe)
        scores, _, _ = codelength_scores(
            lambda: coder, X[order], label_column(ctx, entry)[order], ControlTask(ctx.cells[order]),
            ctx.plan.nulls.shuffles, derive_seed(ctx.seed, "codelength", entry.name),
        )  # fmt: skip
        assert scores.control is not None and scores.clusters is not None
        return Output(
            {"real": scores.real, "null": scores.null, "control": scores.control, "clusters": scores.clusters}
        )


def probes_of(ctx_probe: Probe, entries: list[Entry]) -> dict[str, Probe]:
    """Every probe group of the run: the battery's probe, each direction's finder and reader."""
    probes: dict[str, Probe] = {PROBE: ctx_probe}
    for entry in entries:
        c = entry.candidate
        if isinstance(c, Direction) and c.labels is not None:
            probes[f"reader:{entry.id}"] = ProjectionProbe(c.vector)
            if c.finder is not None:
                probes[f"finder:{entry.id}"] = c.finder
    return probes
