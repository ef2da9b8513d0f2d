"""The battery: one pipeline for every candidate, every control and every executor (DESIGN.md).

    ModelAdapter(model) --sites--> activations --finder.fit--> candidates
          |                                                       |
          |    Plan: (axis, control) steps; a control transforms ONE of
          |    labels | inputs | weights, or intervenes on the forward pass
          v                                                       v
    executor (in-process or Ray) runs the plan's jobs -> raw scores (real vs control)
                                                                  |
              axes/ turn raw scores into Evidence -> one correction -> verdict -> RunResult

:meth:`Battery.run` checks every choice and input before any work, builds the plan
(``pipeline/plan.py``), runs its jobs (``pipeline/jobs.py``, ``latent_jobs.py``, ``causal_job.py``)
on the executor, and judges the outputs (``pipeline/assemble.py``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from featurecontrols.adapters import adapt
from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site, batch_rows
from featurecontrols.axes.evidence import Bootstrap, Margins
from featurecontrols.controls.base import (
    CausalControl,
    DictionaryBaseline,
    InputControl,
    LabelControl,
    WeightControl,
)
from featurecontrols.controls.causal.counterfactual_patching import CounterfactualPatching
from featurecontrols.controls.causal.dual_interchange import DualInterchange
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.label.control_task import check_cells
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.finders.ridge_probe import RidgeProbe
from featurecontrols.finders.split import Split
from featurecontrols.measures.description_length import ProbabilisticProbe
from featurecontrols.params import Params, params_key, tensor_digest
from featurecontrols.pipeline.assemble import judge, plan_jobs
from featurecontrols.pipeline.candidates import (
    Candidate,
    Direction,
    Labelled,
    Latents,
    check_given_dictionary,
    from_features,
    has_latents,
    refit_source,
)
from featurecontrols.pipeline.carried import CarriedWork
from featurecontrols.pipeline.causal_job import CausalRun
from featurecontrols.pipeline.context import RunContext, run_key
from featurecontrols.pipeline.executors import Executor, LocalExecutor, execute
from featurecontrols.pipeline.jobs import Job, Output, ReadActivations, ShuffledNull, probes_of
from featurecontrols.pipeline.latent_jobs import DictionaryMetrics, LatentRecurrence, TopActivations
from featurecontrols.pipeline.plan import TRAINED, Choices, Plan, build_plan, latent_count
from featurecontrols.pipeline.results import RunResult, RunSettings, TopInput, WeightControlRecord
from featurecontrols.seeding import generator
from featurecontrols.stats import Correction
from featurecontrols.validation import check_at_least, check_choice, check_in_open_unit, check_labels


@dataclass(frozen=True)
class _Controls:
    """A run's finders and controls, defaults filled in."""

    probe: Probe
    label: LabelControl
    weights: list[WeightControl]
    inputs: list[InputControl]
    baselines: list[DictionaryBaseline]
    used: list[CausalControl]
    latent_used: list[CausalControl]
    counterfactual: CausalControl | None


class Battery(Params):
    """Run the controls of DESIGN.md on candidates at one or more sites and give verdicts.

    Parameters
    ----------
    probe : the supervised finder of labelled candidates (default ``RidgeProbe()``); refitted for
        every fit.
    label_control : the decodable axis' null (default ``ShuffledLabels()``).
    weight_controls : the learned axis' weight controls (default re-initialised and spectrum-matched).
    input_controls : the learned axis' input controls for dictionary latents (random inputs,
        planted structure); none by default.
    dictionary_baselines : the found axis' baselines for dictionary latents (``FrozenDecoder()``,
        ``FrozenEncoder()``: Korznikov et al. 2026): a latent is found only if a refit with another
        seed reproduces its codes better than each baseline's fit does; none by default.
    used_controls : the used axis' causal controls (default ``[DualInterchange()]``, and for
        dictionary latents ``[LatentAblation()]``, which the bench chose: README, "Dictionary
        latents"; a control of codes given here judges latents only), each one
        test of every candidate; the axis is yes when any of them shows use after the run's correction,
        no when every one shows the change within its margin. The dual interchange's null is drawn per
        candidate (up to B forward passes for a used one); for thousands of latents
        ``[DirectionalAblation()]`` shares one null across them (README, "The used axis").
    counterfactual_control : the used axis' control for candidates given counterfactuals (default
        ``CounterfactualPatching()``).
    n_shuffles, n_random_directions, n_latent_null : null sizes of the shuffled labels and control
        tasks, of the causal nulls, and of the latents' chance matches; ``None`` picks them from the
        plan (``pipeline/plan.py``), and a size too small to survive the correction is refused.
    n_weight_seeds : randomised copies per weight control.
    codelength_probe : a probe with ``predict_proba`` (e.g. ``LogisticProbe()``); with ``cells`` the
        learned axis also compares the online codelength of the labels with that of control tasks.
    run_used : whether to run the used axis (the forward pass must produce outputs).
    used_examples : the used axis runs on the first batches that cover this many inputs.
    test_fraction, alpha, correction, confidence, n_bootstrap : held-out share; level; "holm" or
        "bh" over the whole run ("auto", the default: Benjamini-Hochberg's false-discovery rate when
        the run judges dictionary latents, thousands of candidates of which many are expected to be
        real, else Holm's family-wise error rate); interval level; bootstrap resamples.
    margins : effects too small to matter, per unit (default ``Margins()``): "dataset feature" needs
        the learned and used effects shown below them (tests of equivalence, corrected over the run).
    batch_size : rows per batch when ``inputs`` is one tensor.
    seed : every random draw of the run derives from it and a name.
    executor : ``LocalExecutor()`` (default) or ``RayExecutor()``.
    run_dir : a folder for activations and finished jobs; a rerun resumes from it.
    progress : progress bars in a terminal, periodic lines in a log.
    """

    def __init__(
        self,
        probe: Probe | None = None,
        label_control: LabelControl | None = None,
        weight_controls: Sequence[WeightControl] | None = None,
        input_controls: Sequence[InputControl] = (),
        dictionary_baselines: Sequence[DictionaryBaseline] = (),
        used_controls: Sequence[CausalControl] | None = None,
        counterfactual_control: CausalControl | None = None,
        n_shuffles: int | None = None,
        n_weight_seeds: int = 3,
        n_random_directions: int | None = None,
        n_latent_null: int | None = None,
        codelength_probe: ProbabilisticProbe | None = None,
        run_used: bool = True,
        used_examples: int = 2048,
        test_fraction: float = 0.3,
        alpha: float = 0.05,
        correction: Correction | Literal["auto"] = "auto",
        confidence: float = 0.95,
        margins: Margins | None = None,
        n_bootstrap: int = 1000,
        batch_size: int = 1024,
        seed: int = 0,
        executor: Executor | None = None,
        run_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        self.probe = probe
        self.label_control = label_control
        self.weight_controls = weight_controls
        self.input_controls = input_controls
        self.dictionary_baselines = dictionary_baselines
        self.used_controls = used_controls
        self.counterfactual_control = counterfactual_control
        self.n_shuffles = n_shuffles
        self.n_weight_seeds = n_weight_seeds
        self.n_random_directions = n_random_directions
        self.n_latent_null = n_latent_null
        self.codelength_probe = codelength_probe
        self.run_used = run_used
        self.used_examples = used_examples
        self.test_fraction = test_fraction
        self.alpha = alpha
        self.correction = correction
        self.confidence = confidence
        self.margins = margins
        self.n_bootstrap = n_bootstrap
        self.batch_size = batch_size
        self.seed = seed
        self.executor = executor
        self.run_dir = run_dir
        self.progress = progress
        self.validate()

    def set_params(self, **params: Any) -> Battery:
        super().set_params(**params)
        self.validate()
        return self

    def validate(self) -> None:
        """Check every parameter (called when they are given); raises with the problem and the fix."""
        check_in_open_unit("alpha", self.alpha, "0.05")
        check_in_open_unit("confidence", self.confidence, "0.95")
        check_in_open_unit("test_fraction", self.test_fraction, "0.3")
        check_choice("correction", self.correction, ("auto", "holm", "bh"))
        for name in ("n_bootstrap", "n_weight_seeds", "used_examples", "batch_size"):
            check_at_least(name, getattr(self, name), 1)
        for name in ("n_shuffles", "n_random_directions", "n_latent_null"):
            check_at_least(name, getattr(self, name), 1, optional=True)
        margins = self._margins()
        if not isinstance(margins, Margins) or any(not 0 <= v < float("inf") for v in astuple(margins)):
            raise FeatureControlsError(
                f"margins must be a Margins of finite values >= 0, got {self.margins!r}",
                "pass e.g. margins=Margins(accuracy=0.02, output_change=0.01)",
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FeatureControlsError(f"seed must be an integer, got {self.seed!r}", "pass e.g. seed=0")
        if self.codelength_probe is not None and not callable(
            getattr(self.codelength_probe, "predict_proba", None)
        ):
            raise FeatureControlsError(
                f"codelength_probe {type(self.codelength_probe).__name__} has no predict_proba, so it "
                "cannot code labels",
                "use a probabilistic probe, e.g. codelength_probe=LogisticProbe()",
            )
        self._controls()

    def _margins(self) -> Margins:
        """The margins of equivalence: the given ones, else the defaults."""
        return self.margins if self.margins is not None else Margins()

    def correction_for(self, candidates: Sequence[Candidate]) -> Correction:
        """The correction a run over ``candidates`` makes: ``correction``, "auto" resolved."""
        if self.correction != "auto":
            return self.correction
        return "bh" if has_latents(candidates) else "holm"

    def _controls(self, latents: bool = False) -> _Controls:
        """The run's controls with their defaults (``latents``: the run judges dictionary latents);
        names must be unique (a report keys them by name)."""
        weights = self.weight_controls
        controls = _Controls(
            probe=self.probe if self.probe is not None else RidgeProbe(),
            label=self.label_control if self.label_control is not None else ShuffledLabels(),
            weights=list(weights)
            if weights is not None
            else [ReinitialisedWeights(), SpectrumMatchedWeights()],
            inputs=list(self.input_controls),
            baselines=list(self.dictionary_baselines),
            used=self._used(latents, of_latents=False) if self.run_used else [],
            latent_used=self._used(latents, of_latents=True) if self.run_used else [],
            counterfactual=(self.counterfactual_control or CounterfactualPatching())
            if self.run_used
            else None,
        )
        names = [c.name for c in controls.weights] + [c.name for c in controls.inputs]
        names += [c.name for c in controls.baselines]
        names += [c.name for c in controls.used]
        names += [c.name for c in controls.latent_used if c not in controls.used]
        if len(set(names)) != len(names):
            raise FeatureControlsError(
                f"two controls of the run share a name: {names}",
                "give each weight and input control and each dictionary baseline once",
            )
        return controls

    def _used(self, latents: bool, of_latents: bool) -> list[CausalControl]:
        """The used controls of labelled features and directions, or of dictionary latents: the given
        ones (a control of codes judges latents only), else dual interchange and latent ablation."""
        if self.used_controls is not None:
            return [c for c in self.used_controls if of_latents or c.requires != "codes"]
        if of_latents:
            return [LatentAblation()] if latents else []
        return [DualInterchange()]

    def run(
        self,
        model: ModelAdapter | nn.Module,
        inputs: Tensor | Sequence[Any],
        sites: str | Site | Sequence[str | Site],
        features: Mapping[str, Tensor] | Sequence[Candidate],
        *,
        ground_truth: Mapping[str, str] | None = None,
        cells: Tensor | None = None,
        counterfactuals: Mapping[str, Tensor | Sequence[Any]] | None = None,
        contexts: Sequence[str] | None = None,
        carried: CarriedWork | None = None,
    ) -> RunResult:
        """Judge every candidate at every site (see the class docstring for the choices).

        ``features`` is a mapping name -> labels (one per activation row; ``ground_truth`` and
        ``counterfactuals`` keyed the same way) or a list of :class:`Labelled`, :class:`Direction`
        and :class:`Latents` candidates. ``cells`` (one integer key per activation row: the token id,
        or any input type) adds a control task (Hewitt & Liang 2019) to the learned axis.
        ``contexts`` (one short text per activation row: the token in its sentence, the input it
        came from) are shown beside each latent's top-activating held-out inputs in the report.
        ``carried`` takes and keeps the work of weight-control copies that do not depend on the
        trained weights, across runs on checkpoints of one model (``run_series``; ``carried.py``).
        """
        start = time.perf_counter()
        adapter = adapt(model)
        batches = as_batches(inputs, self.batch_size)
        names = _site_names(sites)
        if not names:
            raise FeatureControlsError("no sites were given", "pass at least one site, e.g. 'blocks.0.mlp'")
        resolved = {name: adapter.resolve(name) for name in names}  # every site checked before any work
        candidates = from_features(features, ground_truth, counterfactuals)
        for c in candidates:  # the sites transcoders write are read, not judged
            if isinstance(c, Latents) and c.writes is not None and c.writes not in resolved:
                resolved[c.writes] = adapter.resolve(c.writes)
        if not self.run_used and any(
            isinstance(c, Labelled) and c.counterfactuals is not None for c in candidates
        ):
            raise FeatureControlsError(
                "counterfactuals were given but run_used=False, so they would be ignored",
                "set run_used=True (the used axis patches from them), or drop counterfactuals",
            )
        controls = self._controls(has_latents(candidates))
        choices = self._choices(controls, cells is not None, candidates)
        plan = build_plan(choices, names, candidates)
        for latents in (c for c in candidates if isinstance(c, Latents)):  # before any work
            for baseline in controls.baselines:
                baseline.constrain(refit_source(latents))
        _check_contexts(contexts, None)
        ctx = self._context(adapter, batches, resolved, plan, candidates, controls, cells)
        _check_contexts(contexts, int(ctx.split.train.numel() + ctx.split.test.numel()))
        for c in (c for c in candidates if isinstance(c, Latents) and c.site in plan.sites):
            written = None if c.writes is None else ctx.activations(TRAINED, c.writes)
            check_given_dictionary(c, latent_count(c), ctx.activations(TRAINED, c.site), written)
        jobs = plan_jobs(ctx)
        executor = self.executor if self.executor is not None else LocalExecutor()
        results_dir = None if self.run_dir is None else Path(self.run_dir) / "jobs"
        given = None if carried is None else carried.take(ctx)
        outputs = execute(ctx, jobs, executor, results_dir, self.progress, given)
        if carried is not None:
            carried.keep(ctx, outputs)
        bootstrap = Bootstrap(self.seed, self.n_bootstrap, self.confidence, self._margins())
        judged, n_tests = judge(ctx, outputs, bootstrap, self.alpha, choices.correction)
        settings = self._settings(ctx, choices, controls, outputs, n_tests, type(executor).__name__)
        timings = {**_timings(outputs), "total": time.perf_counter() - start}
        spectra, dictionaries = _spectra(ctx, outputs), _dictionary_metrics(outputs)
        top = _top_inputs(outputs, contexts)
        return RunResult(tuple(names), judged, settings, timings, spectra, dictionaries, top_inputs=top)

    def count_tests(
        self,
        sites: str | Site | Sequence[str | Site],
        features: Mapping[str, Tensor] | Sequence[Candidate],
        *,
        ground_truth: Mapping[str, str] | None = None,
        cells: Tensor | None = None,
        counterfactuals: Mapping[str, Tensor | Sequence[Any]] | None = None,
    ) -> int:
        """How many tests a :meth:`run` with these arguments corrects together (its plan's count)."""
        names = _site_names(sites)
        candidates = from_features(features, ground_truth, counterfactuals)
        controls = self._controls(has_latents(candidates))
        return build_plan(self._choices(controls, cells is not None, candidates), names, candidates).n_tests

    def _choices(self, controls: _Controls, has_cells: bool, candidates: Sequence[Candidate]) -> Choices:
        causal = [
            *_unique(controls),
            *([controls.counterfactual] if controls.counterfactual is not None else []),
        ]
        return Choices(
            label_control=controls.label.name,
            weight_controls=tuple(c.name for c in controls.weights),
            input_controls=tuple(c.name for c in controls.inputs),
            dictionary_baselines=tuple(c.name for c in controls.baselines),
            used_controls=tuple(c.name for c in controls.used),
            latent_used_controls=tuple(c.name for c in controls.latent_used),
            counterfactual_control=None if controls.counterfactual is None else controls.counterfactual.name,
            causal_nulls=frozenset(c.name for c in causal if c.requires != "counterfactuals"),
            n_weight_seeds=self.n_weight_seeds,
            control_task=has_cells,
            codelength=self.codelength_probe is not None,
            n_shuffles=self.n_shuffles,
            n_random=self.n_random_directions,
            n_latent_null=self.n_latent_null,
            alpha=self.alpha,
            correction=self.correction_for(candidates),
        )

    def _context(
        self,
        adapter: ModelAdapter,
        batches: list[Any],
        sites: dict[str, Site],
        plan: Plan,
        candidates: Sequence[Candidate],
        controls: _Controls,
        cells: Tensor | None,
    ) -> RunContext:
        """The run context, with every input checked (the trained activations are read for that)."""
        causal = {c.name: c for c in _unique(controls)} | (
            {} if controls.counterfactual is None else {controls.counterfactual.name: controls.counterfactual}
        )
        counterfactuals = _counterfactual_batches(candidates, batches, self.batch_size)
        used = _covering(batches, self.used_examples)
        store_root = None if self.run_dir is None else Path(self.run_dir) / "activations"
        parts = self._key_parts(adapter, batches, sites, candidates, cells)
        ctx = RunContext(
            adapter=adapter, batches=batches, used_batches=used, sites=sites, plan=plan,
            split=Split(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)), labels={},
            cells=None, counterfactuals={k: v[: len(used)] for k, v in counterfactuals.items()},
            probes=probes_of(controls.probe, list(plan.entries)), label_control=controls.label,
            weight_controls={c.name: c for c in controls.weights},
            input_controls={c.name: c for c in controls.inputs},
            dictionary_baselines={c.name: c for c in controls.baselines}, causal_controls=causal,
            codelength_probe=self.codelength_probe, dictionaries={}, seed=self.seed,
            margins=self._margins(),
            run_key=run_key(parts), data_key=run_key({k: parts[k] for k in ("model", "data")}),
            store_root=store_root, progress=self.progress,
        )  # fmt: skip
        n = ctx.activations(TRAINED, next(iter(sites))).shape[0]
        ctx.split = Split.random(n, self.test_fraction, generator(self.seed, "split"))
        ctx.labels = _entry_labels(plan, n, ctx.split)
        ctx.cells = None if cells is None else check_cells(cells, n)
        for site in sites:
            if ctx.activations(TRAINED, site).shape[0] != n:
                raise FeatureControlsError(
                    f"site {site} gives {ctx.activations(TRAINED, site).shape[0]} activation rows, "
                    f"site {next(iter(sites))} gives {n}",
                    "run sites together only when they give one row per example each (same positions)",
                )
        return ctx

    def _key_parts(
        self,
        adapter: ModelAdapter,
        batches: list[Any],
        sites: dict[str, Site],
        candidates: Sequence[Candidate],
        cells: Tensor | None,
    ) -> dict[str, Any]:
        """What the run's numbers depend on: the model, the data, the candidates and every parameter."""
        described = [
            [
                c.kind,
                c.name,
                getattr(c, "site", None),
                _digest(getattr(c, "labels", None)),
                _digest(getattr(c, "vector", None)),
            ]
            for c in candidates
        ]
        params = {
            k: v
            for k, v in self.get_params(deep=False).items()
            if k not in ("executor", "progress", "run_dir")
        }
        return {
            "model": [adapter.describe(), [tensor_digest(t) for t in adapter.weights.state_dict().values()]],
            "data": [_batch_digest(b) for b in batches],
            "sites": sorted(map(str, sites.values())),
            "candidates": described,
            "cells": _digest(cells),
            "params": params_key(params),
        }

    def _settings(
        self,
        ctx: RunContext,
        choices: Choices,
        controls: _Controls,
        out: Mapping[Job, Output],
        n_tests: int,
        executor: str,
    ) -> RunSettings:
        weights = []
        for control in controls.weights:
            methods: Counter[str] = Counter()
            for condition in (
                c for c in ctx.plan.conditions if c.control == control.name and c.kind == "weights"
            ):
                methods.update(_methods(out[ReadActivations(condition)]))
            copies = sum(1 for c in ctx.plan.conditions if c.control == control.name)
            weights.append(WeightControlRecord(control.name, repr(control), copies, dict(methods)))
        n_cells = None if ctx.cells is None else int(torch.unique(ctx.cells).numel())
        return RunSettings(
            seed=self.seed, alpha=self.alpha, correction=choices.correction, confidence=self.confidence,
            margins=self._margins(),
            n_bootstrap=self.n_bootstrap, probe=repr(controls.probe), label_control=controls.label.name,
            weight_controls=tuple(weights), input_controls=tuple(c.name for c in controls.inputs),
            dictionary_baselines=tuple(c.name for c in controls.baselines),
            causal_controls=tuple(ctx.causal_controls), n_shuffles=ctx.plan.nulls.shuffles,
            n_random_directions=ctx.plan.nulls.random, n_latent_null=ctx.plan.nulls.latent,
            n_weight_seeds=self.n_weight_seeds,
            control_task=None if n_cells is None else f"{ctx.plan.nulls.shuffles} draws over {n_cells} cells",
            codelength_probe=None if self.codelength_probe is None or n_cells is None
            else repr(self.codelength_probe),
            used_examples=self.used_examples,
            n_examples=int(ctx.split.train.numel() + ctx.split.test.numel()),
            n_test=int(ctx.split.test.numel()),
            widths={site: int(ctx.activations(TRAINED, site).shape[1]) for site in ctx.sites},
            n_tests_corrected=n_tests, executor=executor,
        )  # fmt: skip


def as_batches(inputs: Tensor | Sequence[Any], batch_size: int) -> list[Any]:
    """A tensor is cut into ``batch_size`` rows; a sequence is taken as a list of ready batches."""
    if isinstance(inputs, Tensor):
        if inputs.shape[0] == 0:
            raise FeatureControlsError("the dataset is empty (0 inputs)", "pass at least one input")
        return list(torch.split(inputs, batch_size))
    batches = list(inputs)
    if not batches:
        raise FeatureControlsError("the dataset is empty (no batches)", "pass at least one batch")
    return batches


def _site_names(sites: str | Site | Sequence[str | Site]) -> list[str]:
    """One site or many, as canonical site strings."""
    return [str(Site.parse(s)) for s in ([sites] if isinstance(sites, (str, Site)) else list(sites))]


def _covering(batches: list[Any], examples: int) -> list[Any]:
    """The first batches that cover at least ``examples`` inputs."""
    covered, rows = [], 0
    for batch in batches:
        if rows >= examples:
            break
        covered.append(batch)
        rows += batch_rows(batch)
    return covered


def _entry_labels(plan: Plan, n: int, split: Split) -> dict[str, Tensor]:
    """Every entry's labels as a checked 0/1 column, both classes in both parts of the split."""
    out = {}
    for entry in plan.entries:
        labels = getattr(entry.candidate, "labels", None)
        if labels is None:
            continue
        y = check_labels(labels, n, [entry.name])
        split.check_both_classes(y, [entry.name])
        out[entry.id] = y[:, 0]
    return out


def _counterfactual_batches(
    candidates: Sequence[Candidate], batches: list[Any], batch_size: int
) -> dict[str, list[Any]]:
    """Each Labelled candidate's counterfactual inputs, batched like the inputs; counts are checked."""
    out = {}
    expected = [batch_rows(b) for b in batches]
    for c in candidates:
        if not isinstance(c, Labelled) or c.counterfactuals is None:
            continue
        cf = as_batches(c.counterfactuals, batch_size)
        sizes = [batch_rows(b) for b in cf]
        if sizes != expected:
            raise FeatureControlsError(
                f"the counterfactuals of {c.name!r} come in batches of {sizes[:4]}... rows, the inputs in "
                f"{expected[:4]}... ({sum(sizes)} vs {sum(expected)} inputs)",
                "give exactly one counterfactual per input, in the same order and batching",
            )
        out[c.name] = cf
    return out


def _digest(t: Tensor | None) -> str | None:
    return None if t is None else tensor_digest(t)


def _batch_digest(batch: Any) -> Any:
    if isinstance(batch, Tensor):
        return tensor_digest(batch)
    if isinstance(batch, Mapping):
        return {str(k): _batch_digest(v) for k, v in sorted(batch.items())}
    if isinstance(batch, (tuple, list)):
        return [_batch_digest(v) for v in batch]
    return repr(batch)


def _methods(output: Output) -> Counter[str]:
    return Counter(json.loads(output.meta.get("methods", "{}")))


def _timings(out: Mapping[Job, Output]) -> dict[str, float]:
    """Seconds per part of the run, summed over its jobs."""
    parts: dict[str, float] = {}
    for job, output in out.items():
        part = (
            "activations"
            if isinstance(job, ReadActivations)
            else "decodable"
            if isinstance(job, (ShuffledNull, LatentRecurrence, DictionaryMetrics, TopActivations))
            else "used"
            if isinstance(job, CausalRun)
            else "learned"
        )
        parts[part] = parts.get(part, 0.0) + float(output.meta.get("seconds", 0.0))
    return parts


def _dictionary_metrics(out: Mapping[Job, Output]) -> dict[str, dict[str, dict[str, float]]]:
    """Per Latents dictionary (``site/name``), its metrics under every condition of the run."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for job, output in out.items():
        if isinstance(job, DictionaryMetrics):
            c = job.condition
            fit = (
                "trained"
                if c.kind == "trained"
                else c.control
                if c.kind == "inputs"
                else f"{c.control} #{c.index}"
            )
            tables.setdefault(f"{job.site}/{job.latents}", {})[fit] = json.loads(output.meta["metrics"])
    return tables


def _top_inputs(
    out: Mapping[Job, Output], contexts: Sequence[str] | None
) -> dict[str, tuple[tuple[TopInput, ...], ...]]:
    """Per Latents dictionary (``site/name``), each latent's top-activating held-out inputs where it fires."""
    tables = {}
    for job, output in out.items():
        if isinstance(job, TopActivations):
            rows, codes = output.tensors["rows"].tolist(), output.tensors["codes"].tolist()
            tables[f"{job.site}/{job.latents}"] = tuple(
                tuple(
                    TopInput(r, z, None if contexts is None else contexts[r])
                    for r, z in zip(row, code, strict=True)
                    if z > 0
                )
                for row, code in zip(rows, codes, strict=True)
            )
    return tables


def _check_contexts(contexts: Sequence[str] | None, n: int | None) -> None:
    """Contexts are texts, one per activation row (``n``: the number of rows, once known)."""
    if contexts is None:
        return
    if isinstance(contexts, str) or not all(isinstance(c, str) for c in contexts):
        raise FeatureControlsError(
            "contexts must be a sequence of strings, one per activation row",
            "pass contexts=[text of row 0, text of row 1, ...] (e.g. each token in its sentence)",
        )
    if n is not None and len(contexts) != n:
        raise FeatureControlsError(
            f"{len(contexts)} contexts were given for {n} activation rows",
            "give one context per activation row, in row order (token level: one per read token)",
        )


def _spectra(ctx: RunContext, out: Mapping[Job, Output]) -> dict[str, dict[str, list[list[float]]]]:
    """Per site, the activation spectrum of the trained model and of each weight control's copies."""
    spectra: dict[str, dict[str, list[list[float]]]] = {site: {} for site in ctx.sites}
    for condition in ctx.plan.conditions:
        if condition.kind not in ("trained", "weights"):
            continue
        name = "trained" if condition.kind == "trained" else condition.control
        for site in ctx.sites:
            spectrum = out[ReadActivations(condition)].tensors[f"spectrum/{site}"]
            spectra[site].setdefault(name, []).append(spectrum.tolist())
    return spectra


__all__ = ["Battery", "Direction", "Labelled", "Latents", "as_batches"]


def _unique(controls: _Controls) -> list[CausalControl]:
    """Every used control of the run once: those of labelled features and directions, then of latents."""
    return [*controls.used, *(c for c in controls.latent_used if c not in controls.used)]
