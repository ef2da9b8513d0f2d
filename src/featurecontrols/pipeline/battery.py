"""The battery: every control, on every candidate feature at one site, then verdicts.

Data flow (DESIGN.md), one way:

    model + inputs --site--> activations X --probe.fit--> real held-out accuracy
      labels   -> shuffled-label control -> same probe -> null accuracies      -> decodable
      weights  -> weight controls        -> same probe -> copies' accuracies   -> learned
      cells    -> control tasks          -> same probe -> control accuracies   -> learned
                  (+ online codelength, with a codelength probe: control codelengths)
      forward  -> directional ablation   -> output change vs random directions -> used
                  (or counterfactual patching, given counterfactual inputs: vs equal-norm noise)
    all p-values -> one correction -> axes -> verdict -> RunResult (report.py renders it)
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.sites import Site, call_model, read_activations
from featurecontrols.axes.decodable import assess_decodable, fit_and_check
from featurecontrols.axes.evidence import Axis, AxisName, Evidence, FeatureResult, RunResult
from featurecontrols.axes.learned import assess_learned
from featurecontrols.axes.used import assess_used, class_mean_directions
from featurecontrols.axes.verdict import correct_all, decide, make_axis
from featurecontrols.controls.base import LabelControl, WeightControl
from featurecontrols.controls.causal.counterfactual_patching import CounterfactualPatching, assess_patching
from featurecontrols.controls.causal.directional_ablation import (
    DirectionalAblation,
    shuffled_label_directions,
)
from featurecontrols.controls.label.control_task import ControlTask, check_cells, control_task_selectivity
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.finders.ridge_probe import RidgeProbe
from featurecontrols.measures.description_length import ProbabilisticProbe, codelength_selectivity
from featurecontrols.measures.spectra import activation_spectrum
from featurecontrols.pipeline.split import Split
from featurecontrols.progress import track
from featurecontrols.seeding import derive_seed, generator
from featurecontrols.stats import Correction
from featurecontrols.validation import check_activations, check_binary_labels

Forward = Callable[[nn.Module, Any], Any]


class Battery:
    """Run the controls of DESIGN.md on candidate features at one site and give verdicts.

    Parameters
    ----------
    probe : the supervised finder (default ``RidgeProbe()``); fitted afresh for every run of it.
    label_control : the decodable axis' null (default ``ShuffledLabels()``).
    weight_controls : the learned axis' controls (default re-initialised and spectrum-matched).
    n_shuffles : null size for the decodable axis; ``None`` picks max(1000, 4 m / alpha) for m
        tests, so that a p-value at the permutation floor can survive the correction.
    n_weight_seeds : randomised copies per weight control.
    n_random_directions : null size for the used axis; ``None`` as for ``n_shuffles``.
    codelength_probe : a probe with ``predict_proba`` (e.g. ``LogisticProbe()``); when given, and
        ``run`` gets ``cells``, the learned axis also compares the online codelength (Voita & Titov
        2020) of the real labels with that of ``n_shuffles`` control tasks, in one batched run.
    run_used : whether to run the used axis (needs the model's forward pass to produce outputs).
    used_examples : the used axis runs on the first batches that cover at least this many inputs
        (every direction, real or random, on the same inputs): each null draw is a forward pass.
    alpha, correction, confidence : significance level, multiple-comparison correction over the
        whole run ("holm" or "bh"), and the confidence level of the intervals.
    """

    def __init__(
        self,
        probe: Probe | None = None,
        label_control: LabelControl | None = None,
        weight_controls: Sequence[WeightControl] | None = None,
        n_shuffles: int | None = None,
        n_weight_seeds: int = 3,
        n_random_directions: int | None = None,
        codelength_probe: ProbabilisticProbe | None = None,
        run_used: bool = True,
        used_examples: int = 2048,
        test_fraction: float = 0.3,
        alpha: float = 0.05,
        correction: Correction = "holm",
        confidence: float = 0.95,
        n_bootstrap: int = 1000,
        batch_size: int = 1024,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.probe = probe
        self.label_control = label_control
        self.weight_controls = weight_controls
        self.n_shuffles = n_shuffles
        self.n_weight_seeds = n_weight_seeds
        self.n_random_directions = n_random_directions
        self.codelength_probe = codelength_probe
        self.run_used = run_used
        self.used_examples = used_examples
        self.test_fraction = test_fraction
        self.alpha = alpha
        self.correction = correction
        self.confidence = confidence
        self.n_bootstrap = n_bootstrap
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress

    def run(
        self,
        model: nn.Module,
        inputs: Tensor | Sequence[Any],
        site: str | Site,
        features: Mapping[str, Tensor],
        *,
        ground_truth: Mapping[str, str] | None = None,
        forward: Forward | None = None,
        cells: Tensor | None = None,
        counterfactuals: Mapping[str, Tensor | Sequence[Any]] | None = None,
    ) -> RunResult:
        """Judge every feature in ``features`` (name -> labels, one per activation row) at ``site``.

        ``cells`` (one integer key per activation row: the token id, or any input type) adds a
        control task (Hewitt & Liang 2019) to the learned axis: the probe's held-out accuracy on the
        real labels against random labels fixed per cell.

        ``counterfactuals`` (feature name -> inputs shaped like ``inputs``, each with that feature
        changed: a bit flipped, the minimal-pair sentence) gives those features' used axis by
        counterfactual patching (``controls/counterfactual_patching.py``) instead of ablating their
        class-mean direction: the test for features the model uses nonlinearly.
        """
        probe = self.probe if self.probe is not None else RidgeProbe()
        label_control = self.label_control if self.label_control is not None else ShuffledLabels()
        weight_controls: list[WeightControl] = (
            list(self.weight_controls)
            if self.weight_controls is not None
            else [ReinitialisedWeights(), SpectrumMatchedWeights()]
        )
        forward = forward if forward is not None else call_model
        site = Site.parse(site)
        names = list(features)
        if not names:
            raise FeatureControlsError("no candidate features were given", "pass features={name: labels}")
        batches = as_batches(inputs, self.batch_size)
        counterfactual_batches = _counterfactual_batches(counterfactuals, names, batches, self.batch_size)
        if counterfactual_batches and not self.run_used:
            raise FeatureControlsError(
                "counterfactuals were given but run_used=False, so they would be ignored",
                "set run_used=True (the used axis patches from them), or drop counterfactuals",
            )
        if self.codelength_probe is not None and not callable(
            getattr(self.codelength_probe, "predict_proba", None)
        ):
            raise FeatureControlsError(
                f"codelength_probe {type(self.codelength_probe).__name__} has no predict_proba, so it "
                "cannot code labels",
                "use a probabilistic probe, e.g. codelength_probe=LogisticProbe()",
            )
        timings: dict[str, float] = {}

        def activations(m: nn.Module, what: str) -> Tensor:
            acts = read_activations(m, batches, [site], forward=forward)[str(site)]
            return check_activations(acts, what)

        start = time.perf_counter()
        X = activations(model, f"activations at {site}")
        Y = _label_matrix(features, names, X.shape[0])
        split = Split.random(X.shape[0], self.test_fraction, generator(self.seed, "split"))
        split.check_both_classes(Y, names)
        n_tests = len(names) * count_tests_per_feature(
            len(weight_controls), self.run_used, cells is not None, self.codelength_probe is not None
        )
        n_null = null_size(self.n_shuffles, n_tests, self.alpha, "n_shuffles")
        n_random = null_size(self.n_random_directions, n_tests, self.alpha, "n_random_directions")
        timings["activations"] = time.perf_counter() - start

        start = time.perf_counter()
        decodable = assess_decodable(
            probe, X, Y, names, split, label_control, n_null,
            seed=self.seed, n_bootstrap=self.n_bootstrap, confidence=self.confidence,
        )  # fmt: skip
        timings["decodable"] = time.perf_counter() - start

        start = time.perf_counter()
        trained_correct = fit_and_check(probe, X, Y, split)
        spectra = {"trained": [activation_spectrum(X)]}
        copies_correct: dict[str, list[Tensor]] = {}
        randomisation: dict[str, dict[str, int]] = {}
        jobs = [(wc, s) for wc in weight_controls for s in range(self.n_weight_seeds)]
        for wc, s in track(jobs, "weight controls", len(jobs), self.progress):
            copy = wc.randomise(model, derive_seed(self.seed, wc.name, s))
            Xc = activations(copy.model, f"activations of the {wc.name} copy (seed {copy.seed})")
            copies_correct.setdefault(wc.name, []).append(fit_and_check(probe, Xc, Y, split))
            spectra.setdefault(wc.name, []).append(activation_spectrum(Xc))
            randomisation[wc.name] = dict(Counter(copy.methods.values()))
        learned = assess_learned(
            trained_correct, copies_correct, names,
            seed=self.seed, n_bootstrap=self.n_bootstrap, confidence=self.confidence,
        )  # fmt: skip
        if cells is not None:
            cells = check_cells(cells, X.shape[0])
            for j, name in enumerate(track(names, "control tasks", len(names), self.progress)):
                selectivity = control_task_selectivity(
                    probe, X, Y[:, j], cells, split, n_null,
                    seed=derive_seed(self.seed, ControlTask.name, name),
                    n_bootstrap=self.n_bootstrap, confidence=self.confidence,
                )  # fmt: skip
                learned[name].append(selectivity.as_evidence())
            if self.codelength_probe is not None:
                coder = self.codelength_probe
                order = torch.randperm(X.shape[0], generator=generator(self.seed, "codelength order"))
                tasks = ControlTask(cells[order])
                for j, name in enumerate(track(names, "online codelength", len(names), self.progress)):
                    mdl = codelength_selectivity(
                        lambda: coder, X[order], Y[order, j], tasks, n_null,
                        seed=derive_seed(self.seed, "codelength", name),
                        n_bootstrap=self.n_bootstrap, confidence=self.confidence,
                    )  # fmt: skip
                    learned[name].append(mdl.as_evidence())
        timings["learned"] = time.perf_counter() - start

        start = time.perf_counter()
        used: dict[str, Evidence] = {}
        if self.run_used:
            used = self._used(model, batches, site, X, Y, names, n_random, forward, counterfactual_batches)
        timings["used"] = time.perf_counter() - start

        every = [*decodable, *(e for n in names for e in learned[n]), *used.values()]
        correct_all(every, self.correction)
        results = []
        for j, name in enumerate(names):
            axes: dict[AxisName, Axis] = {
                "decodable": make_axis("decodable", [decodable[j]], self.alpha),
                "learned": make_axis("learned", learned[name], self.alpha),
                "used": make_axis("used", [used[name]] if name in used else [], self.alpha),
            }
            verdict = decide(axes["decodable"].status, axes["learned"].status, axes["used"].status)
            truth = ground_truth.get(name) if ground_truth is not None else None
            results.append(FeatureResult(name=name, verdict=verdict, axes=axes, ground_truth=truth))
        settings = {
            "seed": self.seed,
            "alpha": self.alpha,
            "correction": self.correction,
            "n_tests_corrected": len(every),
            "confidence": self.confidence,
            "probe": f"{type(probe).__name__}({vars(probe) if hasattr(probe, '__dict__') else ''})",
            "label_control": label_control.name,
            "control_task": f"{n_null} draws over {int(torch.unique(cells).numel())} cells"
            if cells is not None
            else None,
            "codelength_probe": type(self.codelength_probe).__name__
            if cells is not None and self.codelength_probe is not None
            else None,
            "n_shuffles": n_null,
            "weight_controls": randomisation,
            "n_weight_seeds": self.n_weight_seeds,
            "n_random_directions": n_random if self.run_used else 0,
            "used_examples": self.used_examples,
            "n_examples": int(X.shape[0]),
            "n_test": int(split.test.numel()),
            "width": int(X.shape[1]),
        }
        return RunResult(
            site=str(site), features=results, settings=settings, timings=timings, spectra=spectra
        )

    def _used(
        self,
        model: nn.Module,
        batches: Sequence[Any],
        site: Site,
        X: Tensor,
        Y: Tensor,
        names: list[str],
        n_random: int,
        forward: Forward,
        counterfactual_batches: Mapping[str, list[Any]],
    ) -> dict[str, Evidence]:
        covered, rows = [], 0
        for batch in batches:
            if rows >= self.used_examples:
                break
            covered.append(batch)
            rows += _batch_rows(batch)
        used: dict[str, Evidence] = {}
        if counterfactual_batches:
            patching = CounterfactualPatching(forward).fit(model, covered, site)
            for name in track(list(counterfactual_batches), "counterfactual patching", None, self.progress):
                seed = derive_seed(self.seed, "patching", name)
                real, noise = patching.change(counterfactual_batches[name][: len(covered)], seed)
                used[name] = assess_patching(
                    real,
                    noise,
                    name,
                    seed=self.seed,
                    n_bootstrap=self.n_bootstrap,
                    confidence=self.confidence,
                )
        ablated = [j for j, name in enumerate(names) if name not in counterfactual_batches]
        if not ablated:
            return used
        ablation = DirectionalAblation(forward).fit(model, covered, site, X.double().mean(dim=0))
        directions = class_mean_directions(X, Y[:, ablated])
        change = {names[j]: ablation.change(directions[i]) for i, j in enumerate(ablated)}
        nulls = shuffled_label_directions(X, n_random, generator(self.seed, "shuffled-label directions"))
        null = torch.tensor(
            [
                float(ablation.change(u).mean())
                for u in track(nulls, "shuffled-label-direction null", n_random, self.progress)
            ],
            dtype=torch.float64,
        )
        used |= assess_used(
            change,
            null,
            ablation.name,
            seed=self.seed,
            n_bootstrap=self.n_bootstrap,
            confidence=self.confidence,
        )
        return used


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


def _batch_rows(batch: Any) -> int:
    """Number of inputs in a batch: the first dimension of its first tensor."""
    values = (
        batch.values()
        if isinstance(batch, Mapping)
        else batch
        if isinstance(batch, (tuple, list))
        else [batch]
    )
    return next(int(v.shape[0]) for v in values if isinstance(v, Tensor))


def count_tests_per_feature(n_weight_controls: int, used: bool, control_task: bool, codelength: bool) -> int:
    """Tests a run makes per feature: shuffled labels, each weight control, the used axis, and with
    cells the control task (and the codelength against it)."""
    return 1 + n_weight_controls + int(used) + int(control_task) + int(control_task and codelength)


def null_size(requested: int | None, n_tests: int, alpha: float, what: str) -> int:
    """The requested null size, or max(1000, 4 m / alpha) so that p = 1/(B+1) survives Holm over m tests."""
    if requested is None:
        return max(1000, math.ceil(4 * n_tests / alpha))
    if requested < 1:
        raise FeatureControlsError(f"{what} must be at least 1, got {requested}", "use None for auto")
    return requested


def _label_matrix(features: Mapping[str, Tensor], names: list[str], n: int) -> Tensor:
    """Stack the label vectors into an (n, k) 0/1 matrix, checking lengths and classes."""
    columns = [torch.as_tensor(features[name]).reshape(-1) for name in names]
    sizes = {name: c.numel() for name, c in zip(names, columns, strict=True)}
    if len(set(sizes.values())) != 1:
        raise FeatureControlsError(
            f"label vectors have different lengths {sizes}; the activations have {n} rows",
            "give every feature one label per activation row",
        )
    return check_binary_labels(torch.stack(columns, dim=1), n, names)


def _counterfactual_batches(
    counterfactuals: Mapping[str, Tensor | Sequence[Any]] | None,
    names: list[str],
    batches: list[Any],
    batch_size: int,
) -> dict[str, list[Any]]:
    """Each feature's counterfactual inputs, batched like the inputs; unknown names and counts raise."""
    if not counterfactuals:
        return {}
    unknown = [name for name in counterfactuals if name not in names]
    if unknown:
        raise FeatureControlsError(
            f"counterfactuals for unknown feature(s) {unknown}; the features are {names}",
            "key counterfactuals by the names used in features",
        )
    out = {}
    for name, inputs in counterfactuals.items():
        cf = as_batches(inputs, batch_size)
        sizes, expected = [_batch_rows(b) for b in cf], [_batch_rows(b) for b in batches]
        if sizes != expected:
            raise FeatureControlsError(
                f"the counterfactuals of {name!r} come in batches of {sizes[:4]}... rows, the inputs in "
                f"{expected[:4]}... ({sum(sizes)} vs {sum(expected)} inputs)",
                "give exactly one counterfactual per input, in the same order and batching",
            )
        out[name] = cf
    return out
