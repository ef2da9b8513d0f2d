"""The plan: every (axis, control) step a run makes, built from the user's choices before any work.

A step applies one statistic to a set of entries (a candidate at a site) on one axis:

    decodable  label control        labelled candidates: the probe against its label control (shuffled labels)
               latent recurrence    latents: a refit with another seed against chance matches
               latent control       latents: a refit against each dictionary baseline (frozen parts)
    learned    weight copies        labelled candidates: the probe on each weight control's copies
               control task         labelled candidates, with cells: random labels per cell
               codelength           labelled features, with cells and a codelength probe
               latent control       latents: dictionaries fitted on the copies or the input controls
    used       causal               every candidate with what its causal control needs

The number of tests, the null sizes and the correction all come from the plan, so no count is kept
twice: ``Plan.n_tests`` is the number of pieces of evidence the run corrects together. Automatic
null sizes are max(1000, 4 m / alpha) for Holm over m tests (a p at the floor 1/(B+1) survives) and
max(1000, 4 / alpha) for Benjamini-Hochberg; a requested size too small for any p to survive the
correction is refused with the smallest that can.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from featurecontrols.axes.evidence import AxisName
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.candidates import Candidate, Direction, Labelled, Latents, refit_source
from featurecontrols.stats import Correction

Statistic = Literal[
    "label control",
    "latent recurrence",
    "weight copies",
    "control task",
    "codelength",
    "latent control",
    "causal",
]
RECURRENCE = "refit with another seed"


@dataclass(frozen=True)
class Entry:
    """One candidate at one site; ``latent`` is the index of a dictionary latent."""

    id: str
    site: str
    candidate: Candidate
    latent: int | None = None

    @property
    def name(self) -> str:
        return self.candidate.name if self.latent is None else f"{self.candidate.name}/{self.latent}"

    @property
    def labels_known(self) -> bool:
        """Whether the entry has labels (the probe-based steps apply to it)."""
        return isinstance(self.candidate, Labelled) or (
            isinstance(self.candidate, Direction) and self.candidate.labels is not None
        )


@dataclass(frozen=True)
class Condition:
    """Whose activations a step reads: the trained model, copy ``index`` of a weight control, or the
    data of an input control; or, for a dictionary baseline, which constrained finder fits the trained
    model's own activations."""

    kind: Literal["trained", "weights", "inputs", "baseline"]
    control: str = ""
    index: int = 0

    @property
    def key(self) -> str:
        return "trained" if self.kind == "trained" else f"{self.kind}/{self.control}/{self.index}"


TRAINED = Condition("trained")


@dataclass(frozen=True)
class Step:
    """One statistic on one axis for a set of entries at one site (``latents``: the dictionary's name)."""

    axis: AxisName
    statistic: Statistic
    control: str
    site: str
    entries: tuple[str, ...]
    latents: str = ""


@dataclass(frozen=True)
class NullSizes:
    """Draws of each permutation null: shuffled labels and control tasks, causal nulls, latent chance."""

    shuffles: int
    random: int
    latent: int


@dataclass(frozen=True)
class Choices:
    """What the user chose, as the plan needs it (names of controls, flags, requested null sizes);
    ``causal_nulls`` names the causal controls that draw a null (of ``n_random`` draws);
    ``used_controls`` judge labelled features and directions, ``latent_used_controls`` latents."""

    label_control: str
    weight_controls: tuple[str, ...]
    input_controls: tuple[str, ...]
    dictionary_baselines: tuple[str, ...]
    used_controls: tuple[str, ...]
    latent_used_controls: tuple[str, ...]
    counterfactual_control: str | None
    causal_nulls: frozenset[str]
    n_weight_seeds: int
    control_task: bool
    codelength: bool
    n_shuffles: int | None
    n_random: int | None
    n_latent_null: int | None
    alpha: float
    correction: Correction


@dataclass(frozen=True)
class Plan:
    """Every step of a run, the entries they judge, the conditions they read and the null sizes."""

    sites: tuple[str, ...]
    entries: tuple[Entry, ...]
    steps: tuple[Step, ...]
    conditions: tuple[Condition, ...]
    nulls: NullSizes

    @property
    def n_tests(self) -> int:
        """The number of pieces of evidence the run produces and corrects together."""
        return sum(len(step.entries) for step in self.steps)

    def entry(self, entry_id: str) -> Entry:
        return self._by_id[entry_id]

    @cached_property
    def _by_id(self) -> dict[str, Entry]:
        """Entries by id, built once (a run over 4,096 latents asks for every entry many times)."""
        return {e.id: e for e in self.entries}


def build_plan(choices: Choices, sites: Sequence[str], candidates: Sequence[Candidate]) -> Plan:
    """The plan of a run over ``sites`` (module docstring); raises before any work on a bad choice."""
    entries = [e for site in sites for e in _entries(site, candidates)]
    if not entries:
        raise FeatureControlsError(
            "no candidate is judged at any of the run's sites",
            f"give each Direction or Latents one of the sites {list(sites)}, or add labelled features",
        )
    steps = [
        step for site in sites for step in _site_steps(choices, site, [e for e in entries if e.site == site])
    ]
    m = sum(len(s.entries) for s in steps)
    drawn = {s.statistic for s in steps} | {"random" for s in steps if s.control in choices.causal_nulls}

    def size(requested: int | None, uses: set[str], what: str) -> int:
        used = bool(drawn & uses)
        return null_size(requested, m if used else 0, choices.alpha, choices.correction, what)

    nulls = NullSizes(
        shuffles=size(choices.n_shuffles, {"label control", "control task", "codelength"}, "n_shuffles"),
        random=size(choices.n_random, {"random"}, "n_random_directions"),
        latent=size(choices.n_latent_null, {"latent recurrence"}, "n_latent_null"),
    )
    needs_copies = any(s.statistic in ("weight copies", "latent control") for s in steps)
    copies = [
        Condition("weights", control, index)
        for control in choices.weight_controls
        for index in range(choices.n_weight_seeds)
        if needs_copies
    ]
    latents = _has_latents(entries)
    inputs = [Condition("inputs", control) for control in choices.input_controls if latents]
    baselines = [Condition("baseline", name) for name in choices.dictionary_baselines if latents]
    conditions = (TRAINED, *copies, *inputs, *baselines)
    return Plan(tuple(sites), tuple(entries), tuple(steps), conditions, nulls)


def _entries(site: str, candidates: Sequence[Candidate]) -> list[Entry]:
    out = []
    for c in candidates:
        if isinstance(c, Labelled) or (c.site == site and isinstance(c, Direction)):
            out.append(Entry(f"{site}/{c.name}", site, c))
        elif c.site == site and isinstance(c, Latents):
            refit_source(c)  # before any work: the controls refit every dictionary
            out += [Entry(f"{site}/{c.name}/{j}", site, c, j) for j in range(latent_count(c))]
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):
        raise FeatureControlsError(
            f"two candidates at site {site} share a name: {sorted({i for i in ids if ids.count(i) > 1})[:3]}",
            "give every candidate at a site its own name",
        )
    return out


def _site_steps(choices: Choices, site: str, entries: list[Entry]) -> list[Step]:
    probed = tuple(e.id for e in entries if e.labels_known)
    labelled = tuple(e.id for e in entries if isinstance(e.candidate, Labelled))
    steps: list[Step] = []
    if probed:
        steps.append(Step("decodable", "label control", choices.label_control, site, probed))
        steps += [Step("learned", "weight copies", w, site, probed) for w in choices.weight_controls]
        if choices.control_task:
            steps.append(Step("learned", "control task", "control task", site, probed))
        if choices.control_task and choices.codelength and labelled:
            steps.append(Step("learned", "codelength", "control task (codelength)", site, labelled))
    for name in dict.fromkeys(e.candidate.name for e in entries if isinstance(e.candidate, Latents)):
        ids = tuple(e.id for e in entries if isinstance(e.candidate, Latents) and e.candidate.name == name)
        steps.append(Step("decodable", "latent recurrence", RECURRENCE, site, ids, name))
        baselines = choices.dictionary_baselines
        steps += [Step("decodable", "latent control", control, site, ids, name) for control in baselines]
        controls = (*choices.weight_controls, *choices.input_controls)
        steps += [Step("learned", "latent control", control, site, ids, name) for control in controls]
    steps += _causal_steps(choices, site, entries)
    return steps


def _causal_steps(choices: Choices, site: str, entries: list[Entry]) -> list[Step]:
    """One used step per used control and site it intervenes at, over the entries it judges
    (``Choices``; a transcoder's latents are removed from the site it writes, so they get their own
    step); the counterfactual control's over the entries given counterfactuals."""
    steps = []
    for control in dict.fromkeys((*choices.used_controls, *choices.latent_used_controls)):
        judged = [
            e
            for e in entries
            if control
            in (choices.latent_used_controls if isinstance(e.candidate, Latents) else choices.used_controls)
        ]
        for at in dict.fromkeys(map(intervened_at, judged)):
            ids = tuple(e.id for e in judged if intervened_at(e) == at)
            steps.append(Step("used", "causal", control, site, ids))
    if choices.counterfactual_control is not None:
        ids = tuple(
            e.id
            for e in entries
            if isinstance(e.candidate, Labelled) and e.candidate.counterfactuals is not None
        )
        if ids:
            steps.append(Step("used", "causal", choices.counterfactual_control, site, ids))
    return steps


def intervened_at(entry: Entry) -> str:
    """The site the used axis intervenes at for ``entry``: a transcoder latent's written site, else
    the entry's own."""
    writes = getattr(entry.candidate, "writes", None)
    return writes if isinstance(writes, str) else entry.site


def _has_latents(entries: Sequence[Entry]) -> bool:
    return any(isinstance(e.candidate, Latents) for e in entries)


def latent_count(latents: Latents) -> int:
    """The number of latents of a Latents candidate, known before any fit."""
    for source in (
        latents.n_latents,
        getattr(latents.dictionary, "n_latents", None),
        getattr(latents.finder, "n_latents", None),
    ):
        if isinstance(source, int) and source > 0:
            return source
    cfg = getattr(latents.dictionary, "cfg", None)  # an SAELens SAE
    if isinstance(getattr(cfg, "d_sae", None), int):
        return int(cfg.d_sae)  # type: ignore[union-attr]
    raise FeatureControlsError(
        f"cannot tell how many latents {latents.name!r} has",
        "give a featurecontrols finder (PCA, SparseAutoencoder), or Latents(..., n_latents=m)",
    )


def null_size(requested: int | None, n_tests: int, alpha: float, correction: Correction, what: str) -> int:
    """The requested null size B, or the automatic one (module docstring).

    Refuses a B for which no p-value, at best 1/(B + 1), can survive the correction of ``n_tests``
    tests: Holm needs (B + 1) alpha > m, Benjamini-Hochberg (B + 1) alpha > 1. ``n_tests = 0`` (a
    null no step draws) checks only that B >= 1.
    """
    needed = n_tests if correction == "holm" else min(n_tests, 1)
    if requested is None:
        return max(1000, math.ceil(4 * needed / alpha))
    smallest = math.floor(needed / alpha)  # the smallest B with B + 1 > needed / alpha
    if requested < max(1, smallest):
        raise FeatureControlsError(
            f"{what}={requested} is too small: its smallest p-value, 1/{requested + 1}, cannot survive "
            f"the {correction} correction over {n_tests} tests at alpha {alpha}, so every test would fail",
            f"use {what} >= {max(1, smallest)} (or None for the automatic size)",
        )
    return requested
