"""``featurecontrols bench``: how well do the controls themselves tell model features from dataset features?

Every testbed labels its candidate features by construction (``model feature``, ``dataset feature``,
``absent``; ``testbeds/base.py``), never by running a control. For each testbed and seed the
battery runs every control on every candidate; the features of all seeds are then pooled:

- per control (one piece of evidence per feature: shuffled labels on the decodable axis, each weight
  control and, where input types repeat, the control task on the learned axis, each used test
  (the battery's defaults, dual interchange and, for dictionary latents, latent ablation, or those
  of ``--used-controls``, side by side; the used axis is yes when any one is) and counterfactual
  patching where the testbed gives counterfactuals):
  - AUROC of its score at separating model features (positives) from dataset features (negatives),
    for two scores, the effect (real minus control) and -log10 p (raw one-sided p), with DeLong's
    interval (``stats.auroc_delong``). Shuffled labels should sit near 1/2: both kinds are decodable.
  - its pass rate (corrected p < alpha and effect > 0, on the used axis a p against the margin and
    an effect above it: the rule of ``verdict.make_axis``) for each ground truth, with Wilson intervals.
- per axis, the rate of ``yes`` for each ground truth (decodable should be yes for model and dataset
  features and no for absent ones; learned and used yes for model features only);
- the verdict: the confusion matrix (ground truth x verdict) and the false-positive rate

      FPR = #(dataset features called "model feature") / #(dataset features),

  with a Wilson interval, against alpha (DESIGN.md: it must stay at or below alpha).

Features of one seed share a model and a run, so they are not independent samples: the DeLong and
Wilson intervals treat them as independent and are too narrow to the extent that they correlate.
DeLong's interval is a point at perfect separation (no discordant pair was observed) and when
every score is tied (e.g. every p-value at the permutation floor).

Modes: ``--fast`` (one seed, one copy per weight control, 100 bootstrap resamples) is a smoke test
for CI. The full mode (seeds 0-2) uses the battery's own defaults (null sizes max(1000, 4 m / alpha)
for m tests), i.e. the verdicts a user gets. ``--n-null B`` overrides both null sizes; the battery
refuses a B too small for a p-value at the permutation floor 1 / (B + 1) to survive Holm's
correction (B + 1 > m / alpha).

Run time on 2 CPU cores shared with other jobs (OMP_NUM_THREADS=1; under contention two threads
made training 6x slower): ``featurecontrols bench --n-null 6000`` (every testbed, 3 seeds, nulls of
6,000 > m / alpha for every testbed) took 596 s at load average 1-2. At the defaults, sparse parity
(41 features: nulls of 13,120) and modular addition (45 features: 20,800) cost 2-3.5x more each.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import torch
from torch import Tensor

from featurecontrols import atomic
from featurecontrols.axes.evidence import AXES, VERDICTS, AxisName, CandidateResult, Evidence, Verdict
from featurecontrols.axes.verdict import make_axis
from featurecontrols.controls.label.control_task import input_type_cells
from featurecontrols.controls.registry import CAUSAL_CONTROLS, DICTIONARY_BASELINES
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.results import RunResult, finite_or_none
from featurecontrols.progress import track
from featurecontrols.report import fixed_width
from featurecontrols.stats import auroc_delong, wilson_interval
from featurecontrols.testbeds.base import GroundTruth, Testbed
from featurecontrols.validation import check_at_least

TRUTHS: tuple[GroundTruth, ...] = get_args(GroundTruth)
POSITIVE: GroundTruth = "model feature"
NEGATIVE: GroundTruth = "dataset feature"
CALLED_MODEL: Verdict = "model feature"

# ----------------------------------------------------------------------------------------------
# Settings and testbeds


@dataclass(frozen=True)
class BenchSettings:
    """How the battery is run on every testbed; ``None`` null sizes take the battery's default."""

    seeds: tuple[int, ...]
    n_shuffles: int | None
    n_random_directions: int | None
    n_weight_seeds: int
    n_bootstrap: int
    used_controls: tuple[str, ...] | None = None  # None: the battery's defaults
    dictionary_baselines: tuple[str, ...] = ()  # the found axis' frozen baselines for latents
    alpha: float = 0.05
    confidence: float = 0.95


FULL = BenchSettings(
    seeds=(0, 1, 2), n_shuffles=None, n_random_directions=None, n_weight_seeds=3, n_bootstrap=1000
)
FAST = BenchSettings(seeds=(0,), n_shuffles=None, n_random_directions=None, n_weight_seeds=1, n_bootstrap=100)


@dataclass(frozen=True)
class BenchTestbed:
    """How to build a testbed from a seed, and (where its inputs repeat) the cells of its control task.

    ``seeds`` overrides the run's seeds: a testbed loaded from one shipped checkpoint is one model.
    """

    build: Callable[[int], Testbed]
    cells: Callable[[Testbed], Tensor] | None = None
    seeds: tuple[int, ...] | None = None


def _planted_residual(seed: int) -> Testbed:
    from featurecontrols.testbeds.planted_residual import PlantedResidualConfig, train_planted_residual

    return train_planted_residual(PlantedResidualConfig(seed=seed))


def _sparse_parity(seed: int) -> Testbed:
    from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity

    return train_sparse_parity(SparseParityConfig(seed=seed))


def _toy_superposition(seed: int) -> Testbed:
    from featurecontrols.testbeds.toy_superposition import ToySuperpositionConfig, train_toy_superposition

    return train_toy_superposition(ToySuperpositionConfig(seed=seed))


def _modular_addition(seed: int) -> Testbed:
    """The shipped p = 53 checkpoint (one model, so ``seed`` is unused: see ``testbeds``)."""
    from featurecontrols.testbeds.modular_addition import modular_addition_testbed

    return modular_addition_testbed()


def _toy_causal_lm(seed: int) -> Testbed:
    from featurecontrols.testbeds.toy_causal_lm import toy_causal_lm_testbed

    return toy_causal_lm_testbed(seed)


def _sparse_latents(seed: int) -> Testbed:
    from featurecontrols.testbeds.sparse_latents import sparse_latents

    return sparse_latents(seed)


def _sparse_latents_jumprelu(seed: int) -> Testbed:
    from featurecontrols.testbeds.sparse_latents import JUMPRELU, sparse_latents

    return sparse_latents(seed, JUMPRELU)


def _sparse_latents_transcoder(seed: int) -> Testbed:
    from featurecontrols.testbeds.sparse_latents import TRANSCODER, sparse_latents

    return sparse_latents(seed, TRANSCODER)


def _toy_lm_latents(seed: int) -> Testbed:
    from featurecontrols.testbeds.toy_lm_latents import toy_lm_latents

    return toy_lm_latents(seed)


def _used_trap(name: str) -> Callable[[int], Testbed]:
    def build(seed: int) -> Testbed:
        from featurecontrols.testbeds import used_traps

        trap: Callable[[int], Testbed] = getattr(used_traps, name)
        return trap(seed)

    return build


def testbeds() -> dict[str, BenchTestbed]:
    """The testbeds with labelled candidate features, by name.

    The control task runs where input types repeat: planted residual (2^10 inputs among 4,000
    examples). Sparse parity's 2^40 inputs do not repeat (every cell would hold one example, a
    shuffled-label null again), modular addition's p^2 pairs appear once each, and toy superposition's
    inputs are continuous. Toy superposition has model features and absent ones but no dataset
    features, so its AUROC and FPR are undefined. Modular addition is its shipped checkpoint: one
    model, run with battery seed 0 only. The used-axis traps (``testbeds/used_traps.py``) are built by
    hand, each to break one way of testing use.
    """
    return {
        "planted_residual": BenchTestbed(
            _planted_residual, cells=lambda testbed: input_type_cells(testbed.inputs)
        ),
        "sparse_parity": BenchTestbed(_sparse_parity),
        "toy_superposition": BenchTestbed(_toy_superposition),
        "modular_addition": BenchTestbed(_modular_addition, seeds=(0,)),
        "toy_causal_lm": BenchTestbed(_toy_causal_lm),
        "sparse_latents": BenchTestbed(_sparse_latents),
        "sparse_latents_jumprelu": BenchTestbed(_sparse_latents_jumprelu),
        "sparse_latents_transcoder": BenchTestbed(_sparse_latents_transcoder),
        "toy_lm_latents": BenchTestbed(_toy_lm_latents),
        **{trap: BenchTestbed(_used_trap(trap)) for trap in ("pass_through", "overlapping", "dormant")},
    }


# ----------------------------------------------------------------------------------------------
# Running the battery


@dataclass
class TestbedRuns:
    """The battery's results on one testbed, one per seed, with the testbed's own checks."""

    __test__ = False  # not a pytest test class, despite its name

    name: str
    runs: dict[int, RunResult]
    checks: dict[int, dict[str, float]]
    seconds: float
    axis_truth: dict[int, dict[str, dict[AxisName, bool]]] = field(default_factory=dict)


def run_testbeds(
    chosen: dict[str, BenchTestbed],
    settings: BenchSettings,
    *,
    progress: bool = True,
    run_dir: Path | None = None,
) -> list[TestbedRuns]:
    """Build every testbed for every seed and run the battery on its candidate features.

    With ``run_dir`` every battery keeps its activations and finished jobs there, so a rerun of an
    interrupted bench rebuilds the testbeds (seeded, deterministic) and recomputes only unfinished jobs.
    """
    out = []
    for name, spec in chosen.items():
        start = time.perf_counter()
        runs, checks, axis_truth = {}, {}, {}
        seeds = spec.seeds if spec.seeds is not None else settings.seeds
        for seed in track(seeds, f"bench: {name}", len(seeds), progress):
            testbed = spec.build(seed)
            battery = Battery(
                n_shuffles=settings.n_shuffles,
                n_weight_seeds=settings.n_weight_seeds,
                n_random_directions=settings.n_random_directions,
                used_controls=None
                if settings.used_controls is None
                else [CAUSAL_CONTROLS[name]() for name in settings.used_controls],
                dictionary_baselines=[DICTIONARY_BASELINES[name]() for name in settings.dictionary_baselines],
                alpha=settings.alpha,
                confidence=settings.confidence,
                n_bootstrap=settings.n_bootstrap,
                seed=seed,
                progress=progress,
                run_dir=run_dir,
            )
            cells = None if spec.cells is None else spec.cells(testbed)
            runs[seed] = battery.run(
                testbed.model,
                testbed.inputs,
                testbed.sites(),
                testbed.candidates(),
                cells=cells,
                contexts=testbed.contexts or None,
            )
            checks[seed] = testbed.checks
            axis_truth[seed] = testbed.axis_truth
        out.append(TestbedRuns(name, runs, checks, time.perf_counter() - start, axis_truth))
    return out


# ----------------------------------------------------------------------------------------------
# Summaries: AUROC, pass rates, confusion matrix, FPR


@dataclass(frozen=True)
class Rate:
    """k of n, with a Wilson interval."""

    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n


def rate(k: int, n: int, level: float) -> Rate | None:
    """``Rate`` of k in n, or ``None`` when there is nothing to count (n = 0)."""
    return Rate(k, n, *wilson_interval(k, n, level)) if n else None


@dataclass(frozen=True)
class Auroc:
    """AUROC with its interval (``None`` where DeLong's is undefined: fewer than 2 of a class)."""

    value: float
    low: float | None
    high: float | None


def auroc(scores: Sequence[tuple[GroundTruth | bool, float]], level: float) -> Auroc | None:
    """AUROC of model features (positive) against dataset features (negative), or of True against
    False (an axis' own truth); ``None`` if one class is missing."""
    pos = [s for truth, s in scores if truth in (POSITIVE, True)]
    neg = [s for truth, s in scores if truth in (NEGATIVE, False)]
    if not pos or not neg:
        return None
    value, low, high = auroc_delong(torch.tensor(pos), torch.tensor(neg), level)
    return Auroc(value, None if math.isnan(low) else low, None if math.isnan(high) else high)


def neg_log10_p(p: float) -> float:
    """-log10 p, with p floored at the smallest positive float so that it stays finite."""
    return -math.log10(max(p, math.ulp(0.0)))


@dataclass(frozen=True)
class ControlSummary:
    """One control on one testbed: AUROC of its two scores and its pass rate per ground truth."""

    axis: AxisName
    control: str
    auroc_effect: Auroc | None
    auroc_neg_log10_p: Auroc | None
    passes: dict[GroundTruth, Rate | None]
    auroc_axis_truth: Auroc | None = None
    """AUROC of the effect on the candidates the axis is meant to decide (``Testbed.axis_truth``)."""


@dataclass(frozen=True)
class TestbedSummary:
    __test__ = False  # not a pytest test class, despite its name

    name: str
    seeds: list[int]
    seconds: float
    counts: dict[GroundTruth, int]
    controls: list[ControlSummary]
    axes: dict[AxisName, dict[GroundTruth, Rate | None]]
    confusion: dict[GroundTruth, dict[Verdict, int]]
    fpr: Rate | None
    """Dataset features called model features, of all dataset features."""
    absent_called_model: Rate | None
    fpr_above_alpha: bool | None
    checks: dict[int, dict[str, float]] = field(default_factory=dict)
    unmatched: int = 0
    """Candidates without a ground truth (latents that match no planted variable), left out above."""


def _truth(f: CandidateResult) -> GroundTruth:
    if f.ground_truth not in TRUTHS:
        raise ValueError(f"feature {f.name!r} has no known ground truth ({f.ground_truth!r})")
    return f.ground_truth


def passes(e: Evidence, alpha: float) -> bool:
    """Whether one piece of evidence alone would make its axis ``yes`` (``verdict.make_axis``)."""
    return make_axis(e.axis, [e], alpha).status == "yes"


def summarise(runs: TestbedRuns, alpha: float, level: float) -> TestbedSummary:
    """Pool the features of every seed of one testbed into its control, axis and verdict summaries
    (candidates without a ground truth are counted as unmatched and left out)."""
    every = [(seed, f) for seed, result in runs.runs.items() for f in result.candidates]
    features = [f for _, f in every if f.ground_truth is not None]
    counts = {t: sum(_truth(f) == t for f in features) for t in TRUTHS}

    evidence: dict[tuple[AxisName, str], list[tuple[GroundTruth, Evidence]]] = {}
    own: dict[tuple[AxisName, str], list[tuple[bool, float]]] = {}
    for seed, f in every:
        truth = runs.axis_truth.get(seed, {}).get(f.name, {})
        for axis in f.axes.values():
            for e in axis.evidence:
                if f.ground_truth is not None:
                    evidence.setdefault((e.axis, e.control), []).append((_truth(f), e))
                if e.axis in truth:
                    own.setdefault((e.axis, e.control), []).append((truth[e.axis], e.effect))
    controls = [
        ControlSummary(
            axis=axis,
            control=control,
            auroc_effect=auroc([(t, e.effect) for t, e in pairs], level),
            auroc_neg_log10_p=auroc([(t, neg_log10_p(e.p_value)) for t, e in pairs], level),
            passes={
                t: rate(sum(passes(e, alpha) for u, e in pairs if u == t), counts[t], level) for t in TRUTHS
            },
            auroc_axis_truth=auroc(own.get((axis, control), []), level),
        )
        for (axis, control), pairs in evidence.items()
    ]
    axes = {
        a: {
            t: rate(sum(f.axes[a].status == "yes" for f in features if _truth(f) == t), counts[t], level)
            for t in TRUTHS
        }
        for a in AXES
    }
    confusion = {
        t: {v: sum(_truth(f) == t and f.verdict == v for f in features) for v in VERDICTS} for t in TRUTHS
    }
    fpr = rate(confusion[NEGATIVE][CALLED_MODEL], counts[NEGATIVE], level)
    return TestbedSummary(
        name=runs.name,
        seeds=sorted(runs.runs),
        seconds=runs.seconds,
        counts=counts,
        controls=controls,
        axes=axes,
        confusion=confusion,
        fpr=fpr,
        absent_called_model=rate(confusion["absent"][CALLED_MODEL], counts["absent"], level),
        fpr_above_alpha=None if fpr is None else fpr.value > alpha,
        checks=runs.checks,
        unmatched=len(every) - len(features),
    )


# ----------------------------------------------------------------------------------------------
# Output: a terminal table and JSON


def _auroc_cell(a: Auroc | None) -> str:
    if a is None:
        return "n/a"
    return f"{a.value:.2f}" + ("" if a.low is None or a.high is None else f" [{a.low:.2f}, {a.high:.2f}]")


def _rate_cell(r: Rate | None) -> str:
    return "-" if r is None else f"{r.k}/{r.n} [{r.low:.2f}, {r.high:.2f}]"


def table(summaries: Sequence[TestbedSummary], settings: BenchSettings) -> str:
    """Per testbed: the controls, the axes, the verdict's confusion matrix and FPR against alpha."""
    pct = round(100 * settings.confidence)
    lines = []
    for s in summaries:
        seeds = ",".join(map(str, s.seeds))
        lines.append(
            f"== {s.name}: seeds {seeds}; "
            + ", ".join(f"{n} {t}" for t, n in s.counts.items())
            + (f", {s.unmatched} without ground truth (left out)" if s.unmatched else "")
            + f" (pooled over seeds); {s.seconds:.0f} s"
        )
        lines.extend(
            fixed_width(
                [
                    ["axis", "control", f"AUROC effect [{pct}% CI]", f"AUROC -log10 p [{pct}% CI]"]
                    + [f"passes: {t}" for t in TRUTHS],
                    *(
                        [c.axis, c.control, _auroc_cell(c.auroc_effect), _auroc_cell(c.auroc_neg_log10_p)]
                        + [_rate_cell(c.passes[t]) for t in TRUTHS]
                        for c in s.controls
                    ),
                    *([a, "(axis: yes)", "", ""] + [_rate_cell(s.axes[a][t]) for t in TRUTHS] for a in AXES),
                ]
            )
        )
        lines.append("")
        lines.extend(
            fixed_width(
                [
                    ["ground truth \\ verdict", *VERDICTS],
                    *([t, *(str(s.confusion[t][v]) for v in VERDICTS)] for t in TRUTHS if s.counts[t]),
                ]
            )
        )
        status = (
            "n/a"
            if s.fpr_above_alpha is None
            else f"ABOVE alpha {settings.alpha}"
            if s.fpr_above_alpha
            else f"at or below alpha {settings.alpha}"
        )
        lines.append(
            f"FPR (dataset feature called model feature): {_rate_cell(s.fpr)} "
            f"= {'n/a' if s.fpr is None else f'{s.fpr.value:.3f}'}: {status}"
        )
        lines.append(f"absent feature called model feature: {_rate_cell(s.absent_called_model)}")
        lines.extend(
            f"AUROC of the effect on the candidates the {c.axis} axis decides ({c.control}): "
            f"{_auroc_cell(c.auroc_axis_truth)}"
            for c in s.controls
            if c.auroc_axis_truth is not None
        )
        lines.append("")
    lines.append(
        f"AUROC: model features (positive) vs dataset features, DeLong {pct}% interval; passes: corrected "
        f"p < {settings.alpha} and effect > 0 (used: p against the margin, effect above it), Wilson {pct}% "
        "interval; a seed's features are not independent."
    )
    return "\n".join(lines)


METRICS = ("explained_variance", "l0", "dead_fraction", "dense_fraction")


def dictionary_metrics(runs: TestbedRuns) -> dict[str, dict[str, float]]:
    """Per fit kind (trained, a control's copies, a baseline) each aggregate metric's mean over seeds
    and copies: the side of Heap et al. (2025) that per-latent verdicts are set against."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for result in runs.runs.values():
        for fits in result.dictionaries.values():
            for fit, metrics in fits.items():
                kind = fit.split(" #")[0]
                for m in METRICS:
                    if m in metrics:
                        pooled.setdefault(kind, {}).setdefault(m, []).append(metrics[m])
    return {kind: {m: sum(v) / len(v) for m, v in ms.items()} for kind, ms in pooled.items()}


def dictionary_table(runs: TestbedRuns) -> list[str]:
    """The aggregate metrics of every fit kind (``dictionary_metrics``) as text; none without latents."""
    metrics = dictionary_metrics(runs)
    if not metrics:
        return []
    rows = [["fit", *METRICS]]
    rows += [[kind, *(f"{ms.get(m, math.nan):.3f}" for m in METRICS)] for kind, ms in metrics.items()]
    head = f"{runs.name}: aggregate dictionary metrics, mean over seeds and copies (Heap et al. 2025)"
    return ["", head, *fixed_width(rows)]


def to_dict(
    summaries: Sequence[TestbedSummary], runs: Sequence[TestbedRuns], settings: BenchSettings, seconds: float
) -> dict[str, Any]:
    """Everything the table shows, plus every feature's verdict, axes and control scores per seed."""
    features = {
        r.name: [
            {
                "seed": seed,
                "name": f.name,
                "ground_truth": f.ground_truth,
                "verdict": f.verdict,
                "axes": {a: f.axes[a].status for a in AXES},
                "controls": [
                    {k: getattr(e, k) for k in ("axis", "control", "effect", "p_value", "p_adjusted")}
                    for axis in f.axes.values()
                    for e in axis.evidence
                ],
            }
            for seed, result in r.runs.items()
            for f in result.candidates
        ]
        for r in runs
    }
    out: dict[str, Any] = finite_or_none(
        {
            "settings": asdict(settings),
            "wall_time_s": seconds,
            "testbeds": [
                {**asdict(s), "features": features[s.name], "dictionaries": dictionary_metrics(r)}
                for s, r in zip(summaries, runs, strict=True)
            ],
        }
    )
    return out


def main(
    fast: bool,
    n_seeds: int | None,
    names: Sequence[str] | None,
    json_path: str | os.PathLike[str] | None,
    *,
    n_null: int | None = None,
    used_controls: Sequence[str] | None = None,
    dictionary_baselines: Sequence[str] = (),
    progress: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
) -> int:
    """``featurecontrols bench``: run, print the table, optionally write JSON (atomically)."""
    available = testbeds()
    unknown = sorted(set(names or ()) - set(available))
    if unknown:
        raise FeatureControlsError(f"unknown testbed(s) {unknown}", f"choose from {sorted(available)}")
    labelled = sorted(set(CAUSAL_CONTROLS) - {"counterfactual patching", "erasure"})
    wrong = sorted(set(used_controls or ()) - set(labelled))
    if wrong:
        raise FeatureControlsError(
            f"unknown used control(s) {wrong} (counterfactual patching runs wherever a testbed has "
            "counterfactuals)",
            f"choose from {labelled}",
        )
    strange = sorted(set(dictionary_baselines) - set(DICTIONARY_BASELINES))
    if strange:
        raise FeatureControlsError(
            f"unknown dictionary baseline(s) {strange}", f"choose from {sorted(DICTIONARY_BASELINES)}"
        )
    check_at_least("--seeds", n_seeds, 1, optional=True)
    check_at_least("--n-null", n_null, 1, optional=True)
    settings = FAST if fast else FULL
    if n_seeds is not None:
        settings = replace(settings, seeds=tuple(range(n_seeds)))
    if n_null is not None:
        settings = replace(settings, n_shuffles=n_null, n_random_directions=n_null)
    if used_controls:
        settings = replace(settings, used_controls=tuple(dict.fromkeys(used_controls)))
    settings = replace(settings, dictionary_baselines=tuple(dict.fromkeys(dictionary_baselines)))
    chosen = {n: available[n] for n in (names or available)}
    start = time.perf_counter()
    runs = run_testbeds(
        chosen, settings, progress=progress, run_dir=None if run_dir is None else Path(run_dir)
    )
    seconds = time.perf_counter() - start
    summaries = [summarise(r, settings.alpha, settings.confidence) for r in runs]
    print(table(summaries, settings))
    metrics = [line for r in runs for line in dictionary_table(r)]
    if metrics:
        print("\n".join(metrics))
    print(f"wall time {seconds:.0f} s")
    if json_path is not None:
        print(f"wrote {atomic.write_json(json_path, to_dict(summaries, runs, settings, seconds))}")
    return 0
