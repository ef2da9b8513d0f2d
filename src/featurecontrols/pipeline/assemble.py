"""From a plan to jobs, and from the jobs' outputs to verdicts.

:func:`plan_jobs` lists every job the plan's steps need (each once). :func:`step_scores` turns the
outputs that one step reads into raw scores per entry (``axes/scores.py``), :func:`judge` hands
them to the axes, corrects every p-value of the run as one family, and builds each entry's axes and
verdict. Nothing here computes a statistic: the jobs measure, the axes judge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from featurecontrols.axes import decodable, learned, used
from featurecontrols.axes.evidence import AXES, AxisName, Bootstrap, CandidateResult, Evidence
from featurecontrols.axes.scores import (
    CopyScores,
    MatchPairScores,
    MatchScores,
    NullScores,
    PairedScores,
    RawScores,
)
from featurecontrols.axes.verdict import corrected, decide, make_axis, reason
from featurecontrols.pipeline.causal_job import CausalRun
from featurecontrols.pipeline.context import RunContext
from featurecontrols.pipeline.jobs import (
    CodelengthFit,
    ControlTaskFit,
    Job,
    Output,
    ProbeFit,
    ReadActivations,
    ShuffledNull,
    group_columns,
    probe_group,
)
from featurecontrols.pipeline.latent_jobs import (
    DictionaryMetrics,
    LatentControl,
    LatentRecurrence,
    TopActivations,
)
from featurecontrols.pipeline.plan import TRAINED, Condition, Plan, Step

ASSESS = {"decodable": decodable.assess, "learned": learned.assess, "used": used.assess}


def copies_of(plan: Plan, control: str) -> list[Condition]:
    return [c for c in plan.conditions if c.kind == "weights" and c.control == control]


def step_jobs(plan: Plan, step: Step) -> list[Job]:
    """The jobs whose outputs ``step`` reads (their own inputs come with them: ``Job.needs``)."""
    entries = [plan.entry(e) for e in step.entries]
    if step.statistic == "label control":
        fits: list[Job] = [ProbeFit(TRAINED, step.site, probe_group(e, True)) for e in entries]
        return fits + [ShuffledNull(e.id) for e in entries]
    if step.statistic == "weight copies":
        groups = {probe_group(e, False) for e in entries}
        conditions = [TRAINED, *copies_of(plan, step.control)]
        return [ProbeFit(c, step.site, g) for g in sorted(groups) for c in conditions]
    if step.statistic == "control task":
        return [ControlTaskFit(e.id) for e in entries]
    if step.statistic == "codelength":
        return [CodelengthFit(e.id) for e in entries]
    if step.statistic == "latent recurrence":
        metrics = [DictionaryMetrics(step.site, step.latents, c) for c in plan.conditions]
        top = TopActivations(step.site, step.latents)
        return [LatentRecurrence(step.site, step.latents), top, *metrics]
    if step.statistic == "latent control":
        return [LatentControl(step.site, step.latents, step.control)]
    return [CausalRun(step.site, step.control, step.entries)]


def plan_jobs(ctx: RunContext) -> list[Job]:
    """Every job of the run, each once: activations of every condition, then what each step reads."""
    jobs: list[Job] = [ReadActivations(c) for c in ctx.plan.conditions if c.kind != "baseline"]
    for step in ctx.plan.steps:
        for job in step_jobs(ctx.plan, step):
            jobs += [*job.needs(ctx), job]
    return list(dict.fromkeys(jobs))


def step_scores(ctx: RunContext, step: Step, out: Mapping[Job, Output]) -> dict[str, RawScores]:
    """Raw scores per entry id of ``step``, from the outputs of its jobs."""
    plan, site = ctx.plan, step.site
    scores: dict[str, RawScores] = {}
    for entry_id in step.entries:
        entry = plan.entry(entry_id)
        if step.statistic in ("label control", "weight copies"):
            group = probe_group(entry, step.statistic == "label control")
            column = [e.id for e in group_columns(ctx, site, group)].index(entry_id)
            real = out[ProbeFit(TRAINED, site, group)].tensors["correct"][:, column]
            if step.statistic == "label control":
                scores[entry_id] = NullScores(
                    "held-out accuracy",
                    "accuracy",
                    real.double(),
                    out[ShuffledNull(entry_id)].tensors["null"],
                )
            else:
                copies = [
                    out[ProbeFit(c, site, group)].tensors["correct"][:, column]
                    for c in copies_of(plan, step.control)
                ]
                scores[entry_id] = CopyScores("held-out accuracy", real, torch.stack(copies))
        elif step.statistic in ("control task", "codelength"):
            scores[entry_id] = _label_control_scores(ctx, step, entry_id, out)
        elif step.statistic in ("latent recurrence", "latent control"):
            scores[entry_id] = _latent_scores(ctx, step, entry.latent or 0, out)
        else:
            scores[entry_id] = _causal_scores(ctx, step, entry.name, out)
    return scores


def _label_control_scores(
    ctx: RunContext, step: Step, entry_id: str, out: Mapping[Job, Output]
) -> NullScores:
    if step.statistic == "control task":
        t = out[ControlTaskFit(entry_id)].tensors
        assert ctx.cells is not None
        return NullScores(
            "held-out accuracy", "accuracy", t["real"], t["null"], t["control"], ctx.cells[ctx.split.test]
        )
    t = out[CodelengthFit(entry_id)].tensors
    return NullScores(
        "online codelength, bits per example", "bits", t["real"], t["null"], t["control"], t["clusters"], True
    )


def _latent_scores(ctx: RunContext, step: Step, j: int, out: Mapping[Job, Output]) -> RawScores:
    n = int(ctx.split.test.numel())
    if step.statistic == "latent recurrence":
        t = out[LatentRecurrence(step.site, step.latents)].tensors
        return MatchScores("best code correlation with a refit", t["real"][j], t["null"], n)
    t = out[LatentControl(step.site, step.latents, step.control)].tensors
    return MatchPairScores(
        "best code correlation: refit vs control", t["real"][j], t["control"][:, j], t["between"][:, j], n
    )


def _causal_scores(ctx: RunContext, step: Step, name: str, out: Mapping[Job, Output]) -> RawScores:
    t = out[CausalRun(step.site, step.control, step.entries)].tensors
    control = ctx.causal_controls[step.control]
    metric, unit = control.metric, control.unit
    if f"{name}/null" in t:
        real, null = t[f"{name}/real"], t[f"{name}/null"]
        return NullScores(metric, unit, real, null, size=t.get(f"{name}/size"), group=t.get(f"{name}/group"))
    return PairedScores(metric, unit, t[f"{name}/real"], t[f"{name}/control"])


def judge(
    ctx: RunContext, out: Mapping[Job, Output], bootstrap: Bootstrap, alpha: float, correction: str
) -> tuple[tuple[CandidateResult, ...], int]:
    """Every entry's result, with every p-value of the run corrected as one family; and their number."""
    keyed: list[tuple[str, Evidence]] = []
    for step in ctx.plan.steps:
        for entry_id, raw in step_scores(ctx, step, out).items():
            entry = ctx.plan.entry(entry_id)
            keyed.append(
                (entry_id, ASSESS[step.axis](step.control, raw, (entry.site, entry.name), bootstrap))
            )
    assert len(keyed) == ctx.plan.n_tests, "every test the plan counts is made, and no other"
    fixed = corrected([e for _, e in keyed], correction)  # type: ignore[arg-type]
    by_entry: dict[str, dict[AxisName, list[Evidence]]] = {
        e.id: {a: [] for a in AXES} for e in ctx.plan.entries
    }
    for (entry_id, _), evidence in zip(keyed, fixed, strict=True):
        by_entry[entry_id][evidence.axis].append(evidence)
    return tuple(_result(ctx, entry_id, axes, alpha) for entry_id, axes in by_entry.items()), len(keyed)


def _result(
    ctx: RunContext, entry_id: str, evidence: Mapping[AxisName, Sequence[Evidence]], alpha: float
) -> CandidateResult:
    entry = ctx.plan.entry(entry_id)
    axes = {a: make_axis(a, evidence[a], alpha) for a in AXES}
    c = entry.candidate
    truth = (
        c.ground_truth if not isinstance(c.ground_truth, Mapping) else c.ground_truth.get(entry.latent or 0)
    )
    return CandidateResult(
        site=entry.site,
        name=entry.name,
        kind=c.kind,
        verdict=decide(axes["decodable"].status, axes["learned"].status, axes["used"].status),
        axes=axes,
        ground_truth=truth,
        reason=reason(axes, alpha),
    )
