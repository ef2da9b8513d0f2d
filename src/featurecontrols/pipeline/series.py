"""Controls across training: the battery over a model's checkpoints, judged as one family.

A researcher asks not only "is this a model feature?" but "from which step on?". :func:`run_series`
runs one battery on every checkpoint of a model with the same inputs, sites, candidates and controls,
then corrects every p-value of the whole series together (Holm or Benjamini-Hochberg over the
T x m tests of T checkpoints with m tests each) and re-derives each axis and verdict from the
corrected evidence (``axes/verdict.py``). The automatic null sizes are those the whole family needs
(``plan.null_size`` over T x m tests), so a p-value at the permutation floor can survive it.

A checkpoint is a state dict for the model (``load_state_dict(strict=True)``, checked for every
checkpoint before any run), with the testbed's own progress measures at that step (loss, accuracy,
...), shown on the same time axis as the effects.

The runs share the work that does not depend on the checkpoint (``carried.py``): the activations,
probe fits and dictionaries of weight-control copies that come out bit-identical at every checkpoint
(re-initialised ones), checked by hash, so reuse changes no number. Inputs, split and labels are the
same by construction; everything read from the trained weights is redone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from featurecontrols.adapters import adapt
from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.axes.evidence import AXES, AxisName, CandidateResult
from featurecontrols.axes.verdict import corrected, decide, make_axis, reason
from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import clone
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.candidates import Candidate, Latents, from_features
from featurecontrols.pipeline.carried import CarriedWork
from featurecontrols.pipeline.checkpoint import Checkpoint
from featurecontrols.pipeline.plan import null_size
from featurecontrols.pipeline.results import RunResult
from featurecontrols.progress import track
from featurecontrols.stats import Correction


@dataclass(frozen=True)
class SeriesResult:
    """One run per checkpoint, every verdict from the series-wide correction of ``n_tests`` tests;
    ``reused`` counts each run's jobs taken from the run before (``carried.py``)."""

    checkpoints: tuple[Checkpoint, ...]
    runs: tuple[RunResult, ...]
    n_tests: int
    reused: tuple[int, ...] = ()

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    def trajectory(self, name: str, site: str | None = None) -> list[CandidateResult]:
        """The candidate ``name`` (at ``site``, or the first site holding it) at every checkpoint."""
        out = []
        for run in self.runs:
            found = [c for c in run.candidates if c.name == name and (site is None or c.site == site)]
            if not found:
                raise FeatureControlsError(
                    f"no candidate {name!r} in the series", "name one of its candidates"
                )
            out.append(found[0])
        return out

    def followed(self) -> list[tuple[str, str]]:
        """(site, name) of every candidate followed step by step: all but dictionary latents, whose
        refit at each checkpoint numbers them afresh (:meth:`latent_counts` counts them instead)."""
        return [(c.site, c.name) for c in self.runs[0].candidates if c.kind != Latents.kind]

    def latent_counts(self) -> dict[str, list[dict[str, int]]]:
        """Per dictionary (``site/name``, as in ``RunResult.dictionaries``), its latents per verdict at
        each step."""
        counts: dict[str, list[dict[str, int]]] = {}
        for i, run in enumerate(self.runs):
            for c in run.candidates:
                if c.kind == Latents.kind:
                    steps = counts.setdefault(f"{c.site}/{c.name.rsplit('/', 1)[0]}", [{} for _ in self.runs])
                    steps[i][c.verdict] = steps[i].get(c.verdict, 0) + 1
        return counts

    def first_step(self, name: str, verdict: str = "model feature", site: str | None = None) -> int | None:
        """The first step from which on ``name``'s verdict is ``verdict`` at every later checkpoint."""
        verdicts = [c.verdict for c in self.trajectory(name, site)]
        for i in range(len(verdicts)):
            if all(v == verdict for v in verdicts[i:]):
                return self.steps[i]
        return None

    def effect(self, name: str, axis: AxisName, control: str, site: str | None = None) -> list[float]:
        """The effect of ``control``'s test on ``axis`` for ``name``, step by step."""
        return [
            next(e.effect for e in c.axes[axis].evidence if e.control == control)
            for c in self.trajectory(name, site)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "measures": [dict(c.measures) for c in self.checkpoints],
            "n_tests_corrected": self.n_tests,
            "reused_jobs": list(self.reused),
            "runs": [run.to_dict() for run in self.runs],
        }


def run_series(
    battery: Battery,
    model: nn.Module | ModelAdapter,
    checkpoints: Sequence[Checkpoint],
    inputs: Tensor | Sequence[Any],
    sites: str | Sequence[str],
    features: Mapping[str, Tensor] | Sequence[Candidate],
    reuse: bool = True,
    **run_kwargs: Any,
) -> SeriesResult:
    """Run ``battery`` on ``model`` loaded with each checkpoint (module docstring); ``run_kwargs``
    (``cells``, ``counterfactuals``, ``ground_truth``) go to every :meth:`Battery.run`; ``reuse``
    carries the checkpoint-independent work from run to run."""
    adapter = adapt(model)
    _check(checkpoints, adapter.weights)
    family = battery.count_tests(sites, features, **_counted(run_kwargs)) * len(checkpoints)
    counted = _counted(run_kwargs)
    candidates = from_features(features, counted.get("ground_truth"), counted.get("counterfactuals"))
    correction = battery.correction_for(candidates)
    sized = clone(battery).set_params(**_family_nulls(battery, family, correction))
    runs, carried = [], CarriedWork() if reuse else None
    for checkpoint in track(checkpoints, "series: checkpoints", len(checkpoints), battery.progress):
        weights = copy.deepcopy(adapter.weights)
        weights.load_state_dict(dict(checkpoint.state), strict=True)
        model_at = adapter.rewrap(weights)
        runs.append(sized.run(model_at, inputs, sites, features, carried=carried, **run_kwargs))
    judged = rejudge(runs, battery.alpha, correction)
    reused = () if carried is None else tuple(carried.reused)
    return SeriesResult(tuple(checkpoints), tuple(judged), family, reused)


def _check(checkpoints: Sequence[Checkpoint], weights: nn.Module) -> None:
    """Steps strictly increasing, and every state dict loadable into the model (before any run)."""
    if not checkpoints:
        raise FeatureControlsError(
            "no checkpoints were given", "pass at least one Checkpoint(step, state_dict)"
        )
    steps = [c.step for c in checkpoints]
    if any(b <= a for a, b in pairwise(steps)):
        raise FeatureControlsError(
            f"checkpoint steps must increase strictly, got {steps}", "sort them by step"
        )
    expected = {k: tuple(v.shape) for k, v in weights.state_dict().items()}
    for c in checkpoints:
        got = {k: tuple(v.shape) for k, v in c.state.items()}
        if got != expected:
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
            raise FeatureControlsError(
                f"checkpoint of step {c.step} does not fit the model: missing {missing[:3]}, "
                f"unexpected {extra[:3]}, other shapes {shapes[:3]}",
                "give state dicts of this model (model.state_dict() during its training)",
            )


def _counted(run_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of :meth:`Battery.run` that change how many tests it makes."""
    return {k: run_kwargs[k] for k in ("ground_truth", "cells", "counterfactuals") if k in run_kwargs}


def _family_nulls(battery: Battery, family: int, correction: Correction) -> dict[str, int]:
    """Null sizes for a family of ``family`` tests: the battery's own if given (checked), else automatic."""
    sizes = {}
    for name in ("n_shuffles", "n_random_directions", "n_latent_null"):
        sizes[name] = null_size(getattr(battery, name), family, battery.alpha, correction, name)
    return sizes


def rejudge(runs: Sequence[RunResult], alpha: float, correction: str) -> list[RunResult]:
    """The runs with every p-value of all of them corrected as one family, axes and verdicts redone."""
    pieces = [e for run in runs for c in run.candidates for a in AXES for e in c.axes[a].evidence]
    fixed = iter(corrected(pieces, correction))  # type: ignore[arg-type]
    out = []
    for run in runs:
        candidates = []
        for c in run.candidates:
            axes = {a: make_axis(a, [next(fixed) for _ in c.axes[a].evidence], alpha) for a in AXES}
            verdict = decide(axes["decodable"].status, axes["learned"].status, axes["used"].status)
            candidates.append(replace(c, axes=axes, verdict=verdict, reason=reason(axes, alpha)))
        settings = replace(run.settings, n_tests_corrected=len(pieces))
        out.append(replace(run, candidates=tuple(candidates), settings=settings))
    return out
