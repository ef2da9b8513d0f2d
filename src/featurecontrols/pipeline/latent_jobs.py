"""The jobs of dictionary latents: fit a dictionary under a condition, then match latents across fits.

    FitDictionary     (stage 1) the Latents' finder fitted on a condition's training rows: the trained
                      model (and a refit with another seed), each weight control's copies, each input
                      control's data, "fitted the same way" (the same parameters); for a dictionary
                      baseline, the finder constrained by it on the trained model's rows
    LatentRecurrence  (stage 2) found: every latent's best code match in the refit on held-out rows
                      (``measures/latent_matching.py``), against the matches that chance gives: the
                      refit's rows permuted (``n_latent_null`` matches pooled over latents)
    LatentControl     (stage 2) learned: the same latent's best match in each control's dictionary,
                      with the codes compared on the same held-out inputs (the copy's activations of
                      the real inputs; for an input control, the trained model's); found: the same
                      against a dictionary baseline's fit
    DictionaryMetrics (stage 2) each fit's aggregate metrics on its own held-out activations
                      (``measures/sae_metrics.py``): the trained model against its controls, the table
                      of Heap et al. (2025), in which randomised models score about as well
    TopActivations    (stage 2) each latent's TOP_INPUTS held-out rows of the trained model with the
                      largest codes (``measures/top_activations.py``): what the report shows of a latent

A fitted dictionary travels as its learned state (``finders.base.fitted_state``), never pickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import Tensor

from featurecontrols.finders.base import Dictionary, fitted_state, restore_state
from featurecontrols.finders.sparse_codes import SparseCodes, encode_sparse
from featurecontrols.measures.latent_matching import best_matches, partner_correlation
from featurecontrols.measures.sae_metrics import evaluate_dictionary, loss_recovered
from featurecontrols.measures.top_activations import top_activations
from featurecontrols.params import clone
from featurecontrols.pipeline.candidates import Labelled, Latents, refit_source
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.jobs import Job, Output
from featurecontrols.pipeline.plan import TRAINED, Condition
from featurecontrols.seeding import derive_seed, generator

TOP_INPUTS = 5  # held-out rows kept per latent: its top-activating inputs


def latents_named(ctx: RunContext, site: str, name: str) -> Latents:
    """The Latents candidate ``name`` at ``site``."""
    for entry in ctx.plan.entries:
        if entry.site == site and isinstance(entry.candidate, Latents) and entry.candidate.name == name:
            return entry.candidate
    raise KeyError(f"{site}/{name}")


def template(latents: Latents) -> Any:
    """The unfitted finder that (re)fits a Latents' dictionary (``candidates.refit_source``)."""
    return clone(refit_source(latents))


@dataclass(frozen=True)
class FitDictionary(Job):
    """Stage 1: a Latents' finder fitted on one condition's training rows (``refit``: another seed)."""

    stage: ClassVar[int] = 1
    condition: Condition
    site: str
    latents: str
    refit: bool

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        train = ctx.split.train
        X = ctx.activations(self.condition, self.site)[train]
        writes = latents_named(ctx, self.site, self.latents).writes
        finder = self._finder(ctx)
        fitted = (
            finder.fit(X) if writes is None else finder.fit(X, ctx.activations(self.condition, writes)[train])
        )
        tensors, kinds = fitted_state(fitted)
        return Output(tensors, {"kinds": json.dumps(kinds)})

    def dictionary(self, ctx: RunContext, output: Output) -> Dictionary:
        """The fitted dictionary that ``output`` holds."""
        restored = restore_state(self._finder(ctx), output.tensors, json.loads(output.meta["kinds"]))
        return cast(Dictionary, restored)

    def _finder(self, ctx: RunContext) -> Any:
        """The unfitted finder, with another seed for a refit (where it has a seed)."""
        finder = template(latents_named(ctx, self.site, self.latents))
        if self.condition.kind == "baseline":
            finder = ctx.dictionary_baselines[self.condition.control].constrain(finder)
        params = finder.get_params(deep=False)
        if self.refit and "seed" in params:
            finder.set_params(seed=derive_seed(params["seed"], "refit") % 2**31)
        return finder


def fit_job(latents: Latents, condition: Condition, site: str, refit: bool = False) -> FitDictionary | None:
    """The job that fits ``latents`` under ``condition``; none for a dictionary given fitted."""
    if condition == TRAINED and not refit and latents.dictionary is not None:
        return None
    return FitDictionary(condition, site, latents.name, refit)


def trained_dictionary(
    ctx: RunContext, inputs: Mapping[Job, Output], latents: Latents, site: str
) -> Dictionary:
    """The dictionary whose latents are the candidates: the one given, or the trained fit."""
    if latents.dictionary is not None:
        return latents.dictionary
    return fitted(ctx, inputs, FitDictionary(TRAINED, site, latents.name, refit=False))


def fitted(ctx: RunContext, inputs: Mapping[Job, Output], job: FitDictionary) -> Dictionary:
    """The dictionary that ``job`` fitted, rebuilt once per context."""
    key = f"dictionary {job!r}"
    if key not in ctx.dictionaries:
        ctx.dictionaries[key] = job.dictionary(ctx, inputs[job])
    return ctx.dictionaries[key]


def _held_out_codes(
    ctx: RunContext, inputs: Mapping[Job, Output], site: str, name: str
) -> tuple[Tensor, SparseCodes, SparseCodes]:
    """The trained model's held-out activations, and their codes in the trained dictionary and its refit."""
    latents = latents_named(ctx, site, name)
    X = ctx.activations(TRAINED, site)[ctx.split.test]
    Z = encode_sparse(trained_dictionary(ctx, inputs, latents, site), X)
    return X, Z, encode_sparse(fitted(ctx, inputs, FitDictionary(TRAINED, site, name, True)), X)


@dataclass(frozen=True)
class LatentRecurrence(Job):
    """Stage 2: every latent's best match in the refit, and the pooled chance matches."""

    stage: ClassVar[int] = 2
    site: str
    latents: str

    def needs(self, ctx: RunContext) -> tuple[Job, ...]:
        latents = latents_named(ctx, self.site, self.latents)
        jobs = [fit_job(latents, TRAINED, self.site), fit_job(latents, TRAINED, self.site, refit=True)]
        return tuple(j for j in jobs if j is not None)

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        X, Z, refit = _held_out_codes(ctx, inputs, self.site, self.latents)
        n_null = ctx.plan.nulls.latent
        chance = []
        for r in range(math.ceil(n_null / Z.m)):
            rows = torch.randperm(X.shape[0], generator=generator(ctx.seed, "latent chance", self.latents, r))
            chance.append(best_matches(Z, refit.permuted(rows)).value)
        return Output({"real": best_matches(Z, refit).value, "null": torch.cat(chance)[:n_null]})


@dataclass(frozen=True)
class LatentControl(Job):
    """Stage 2: every latent's best match in the refit and in each control dictionary (same rows)."""

    stage: ClassVar[int] = 2
    site: str
    latents: str
    control: str

    def conditions(self, ctx: RunContext) -> list[Condition]:
        return [c for c in ctx.plan.conditions if c.control == self.control and c.kind != "trained"]

    def needs(self, ctx: RunContext) -> tuple[Job, ...]:
        latents = latents_named(ctx, self.site, self.latents)
        jobs = [fit_job(latents, c, self.site) for c in (TRAINED, *self.conditions(ctx))]
        jobs.append(fit_job(latents, TRAINED, self.site, refit=True))
        return tuple(j for j in jobs if j is not None)

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        X, Z, refit = _held_out_codes(ctx, inputs, self.site, self.latents)
        own = best_matches(Z, refit)
        controls, between = [], []
        for condition in self.conditions(ctx):
            rows = X if condition.kind == "inputs" else ctx.activations(condition, self.site)[ctx.split.test]
            control = fitted(ctx, inputs, FitDictionary(condition, self.site, self.latents, False))
            W = encode_sparse(control, rows)
            theirs = best_matches(Z, W)
            controls.append(theirs.value)
            between.append(partner_correlation(refit, own, W, theirs))
        return Output({"real": own.value, "control": torch.stack(controls), "between": torch.stack(between)})


@dataclass(frozen=True)
class DictionaryMetrics(Job):
    """Stage 2: a fit's metrics (explained variance, L0, dead and dense fractions; sparse probing of the
    run's labelled features, token concentration over its cells, loss recovered with ``Latents.loss``)."""

    stage: ClassVar[int] = 2
    site: str
    latents: str
    condition: Condition

    def needs(self, ctx: RunContext) -> tuple[Job, ...]:
        job = fit_job(latents_named(ctx, self.site, self.latents), self.condition, self.site)
        return () if job is None else (job,)

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        latents = latents_named(ctx, self.site, self.latents)
        job = fit_job(latents, self.condition, self.site)
        dictionary = (
            trained_dictionary(ctx, inputs, latents, self.site) if job is None else fitted(ctx, inputs, job)
        )
        test = ctx.split.test
        labels = {
            e.name: ctx.labels[e.id][test]
            for e in ctx.plan.entries
            if e.site == self.site and isinstance(e.candidate, Labelled) and self.condition.kind != "inputs"
        }
        X = ctx.activations(self.condition, self.site)[test]
        target = None if latents.writes is None else ctx.activations(self.condition, latents.writes)[test]
        tokens = None if ctx.cells is None or self.condition.kind == "inputs" else ctx.cells[test]
        summary = evaluate_dictionary(
            dictionary, X, tokens=tokens, labels=labels or None, target=target
        ).summary
        if latents.loss is not None and self.condition.kind != "inputs":
            adapter = (
                ctx.randomised(self.condition).adapter if self.condition.kind == "weights" else ctx.adapter
            )
            writes = None if latents.writes is None else ctx.sites[latents.writes]
            summary |= loss_recovered(
                adapter.module, ctx.batches, ctx.sites[self.site], dictionary, latents.loss, writes
            )
        return Output({}, {"metrics": json.dumps(summary)})


@dataclass(frozen=True)
class TopActivations(Job):
    """Stage 2: each latent's TOP_INPUTS held-out rows (indices into the run's rows) by code."""

    stage: ClassVar[int] = 2
    site: str
    latents: str

    def needs(self, ctx: RunContext) -> tuple[Job, ...]:
        job = fit_job(latents_named(ctx, self.site, self.latents), TRAINED, self.site)
        return () if job is None else (job,)

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        dictionary = trained_dictionary(ctx, inputs, latents_named(ctx, self.site, self.latents), self.site)
        test = ctx.split.test
        top = top_activations(
            dictionary, ctx.activations(TRAINED, self.site)[test], min(TOP_INPUTS, len(test))
        )
        return Output({"rows": test[top.rows], "codes": top.codes})
