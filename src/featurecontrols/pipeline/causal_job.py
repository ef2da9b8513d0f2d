"""The used axis' job: one causal control at one site, for every entry of its step.

Each entry becomes a :class:`~featurecontrols.controls.base.CausalTarget`: a labelled feature its
class-mean direction mean(x | y = 1) - mean(x | y = 0) on the site's activations (and its labels and
counterfactuals); a direction its vector; a dictionary latent the direction it writes,
decode(e_j) - decode(0), and, for a control of codes, its code z_j on every row of the batches the
control runs on (the dictionary encodes them once, in chunks), with every latent's codes and
directions (shared by the dictionary's targets: a group test reads the others). A transcoder's
latents are read at the step's site and intervened on at the site they write
(``plan.intervened_at``: the control sees that site's activations and tensors). The control returns
raw scores per entry, kept as tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from featurecontrols.controls.base import AtSite, CausalTarget, LatentSet
from featurecontrols.finders.base import Dictionary
from featurecontrols.finders.mass_mean_probe import class_mean_directions
from featurecontrols.finders.sparse_codes import SparseCodes, encode_sparse
from featurecontrols.measures.latent_matching import decoder_directions
from featurecontrols.pipeline.candidates import Direction, Labelled, Latents
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.jobs import Job, Output, label_column
from featurecontrols.pipeline.latent_jobs import FitDictionary, trained_dictionary
from featurecontrols.pipeline.plan import TRAINED, Entry, intervened_at, latent_count


@dataclass(frozen=True)
class CausalRun(Job):
    """Stage 2: one causal control at a site, for the entries of its step."""

    stage: ClassVar[int] = 2
    site: str
    control: str
    entries: tuple[str, ...]

    def needs(self, ctx: RunContext) -> tuple[Job, ...]:
        sets = {
            ctx.plan.entry(e).candidate.name for e in self.entries if ctx.plan.entry(e).latent is not None
        }
        return tuple(FitDictionary(TRAINED, self.site, name, refit=False) for name in sorted(sets))

    def run(self, ctx: RunContext, inputs: Mapping[Job, Output]) -> Output:
        at_site = intervened_at(ctx.plan.entry(self.entries[0]))  # one per step (the plan groups them)
        X = ctx.activations(TRAINED, at_site)
        control = ctx.causal_controls[self.control]
        writes: dict[str, Tensor] = {}
        codes: dict[str, LatentSet] | None = {} if control.requires == "codes" else None
        targets = [
            self._target(ctx, inputs, entry, X, writes, codes) for entry in map(ctx.plan.entry, self.entries)
        ]
        at = AtSite(
            ctx.adapter,
            ctx.used_batches,
            ctx.sites[at_site],
            X,
            ctx.plan.nulls.random,
            ctx.seed,
            ctx.progress,
            ctx.margins.of(control.unit),
        )
        raw = control.scores(at, targets)
        tensors = {}
        for name, scores in raw.items():
            for part in ("real", "null", "control", "size", "group"):
                value = getattr(scores, part, None)
                if isinstance(value, Tensor):
                    tensors[f"{name}/{part}"] = value
        return Output(tensors)

    def _target(
        self,
        ctx: RunContext,
        inputs: Mapping[Job, Output],
        entry: Entry,
        X: Tensor,
        writes: dict[str, Tensor],
        codes: dict[str, LatentSet] | None,
    ) -> CausalTarget:
        c = entry.candidate
        if isinstance(c, Labelled):
            y = label_column(ctx, entry)
            direction = class_mean_directions(X, y[:, None])[0]
            return CausalTarget(entry.name, direction, y, ctx.counterfactuals.get(c.name))
        if isinstance(c, Direction):
            vector = c.vector.detach().double().cpu().reshape(-1)
            return CausalTarget(entry.name, vector, ctx.labels.get(entry.id), kind=c.kind)
        assert isinstance(c, Latents) and entry.latent is not None
        dictionary = trained_dictionary(ctx, inputs, c, self.site)
        if c.name not in writes:  # every latent of a dictionary, decoded once
            writes[c.name] = decoder_directions(dictionary, latent_count(c))
        if codes is not None and c.name not in codes:  # and encoded once on the measured rows
            codes[c.name] = LatentSet(self._codes(ctx, dictionary), writes[c.name])
        if codes is None:
            return CausalTarget(entry.name, writes[c.name][entry.latent], kind=c.kind)
        every = codes[c.name]  # one per dictionary, shared by its latents' targets
        code = every.codes.gather(torch.tensor([entry.latent]))[:, 0]
        return CausalTarget(
            entry.name, writes[c.name][entry.latent], kind=c.kind, code=code, latent=entry.latent,
            dictionary=every,
        )  # fmt: skip

    def _codes(self, ctx: RunContext, dictionary: Dictionary) -> SparseCodes:
        """The dictionary's codes (n, m) of the site's rows over the batches the used axis runs on."""
        site = ctx.sites[self.site]
        with torch.no_grad():
            rows = [ctx.adapter.site_tensor(site, b) for b in ctx.used_batches]
        return encode_sparse(dictionary, torch.cat([r.reshape(-1, r.shape[-1]) for r in rows]))
