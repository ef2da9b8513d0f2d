"""Probe search ranked by selectivity (DESIGN.md, control 5), with its Pareto fronts.

An Optuna study (in memory unless ``storage`` is given; TPE seeded, so the same seed gives the same
search) proposes probes: linear (``LogisticProbe`` with its C) or MLP (``MLPProbe`` width, depth,
first-layer rank, weight decay, dropout, steps). Every trial fits the probe once on the real labels
and ``n_controls`` control tasks over ``cells`` (one batched fit, ``control_task_selectivity``) and
records, on the held-out split,

    accuracy a,   control accuracy c (mean over the control tasks),   selectivity s = a - c,
    complexity k = parameters per label column (linear: d + 1; MLP: d h + h (or d r + r h + h at rank r)
                   + (depth - 1)(h^2 + h) + h + 1).

The study maximises s (``objective="selectivity"``) or a (``objective="accuracy"``, the plain search
that drifts to the most expressive probe). Whatever the objective, the result also holds two Pareto
fronts over all trials, with their hypervolumes (both in [0, 1]):

- accuracy against control accuracy: maximise a, minimise c; reference point (a, c) = (0, 1);
- accuracy against complexity: maximise a, minimise log(k) / log(k_max), k_max the most complex probe
  of the search space; reference point (0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.finders.logistic_probe import LogisticProbe
from featurecontrols.finders.mlp_probe import MLPProbe
from featurecontrols.finders.split import Split
from featurecontrols.measures.selectivity import control_task_selectivity
from featurecontrols.seeding import derive_seed, generator

if TYPE_CHECKING:
    import optuna

Objective = Literal["selectivity", "accuracy"]
ProbeKind = Literal["linear", "mlp"]


@dataclass(frozen=True)
class ProbeSpec:
    """One probe architecture. ``rank=0`` means a full-rank first layer; MLP fields are unused for linear."""

    kind: ProbeKind
    C: float = 1.0
    hidden: int = 0
    depth: int = 0
    rank: int = 0
    weight_decay: float = 0.0
    dropout: float = 0.0
    steps: int = 0

    def build(self, seed: int) -> Probe:
        """A fresh, unfitted probe."""
        if self.kind == "linear":
            return LogisticProbe(C=self.C)
        return MLPProbe(
            hidden=self.hidden,
            depth=self.depth,
            rank=self.rank or None,
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            steps=self.steps,
            seed=seed,
        )

    def complexity(self, d: int) -> int:
        """Parameters per label column for inputs of width d (see the module docstring)."""
        if self.kind == "linear":
            return d + 1
        h = self.hidden
        first = d * h + h if self.rank == 0 else d * self.rank + self.rank * h + h
        return first + (self.depth - 1) * (h * h + h) + h + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchSpace:
    """Ranges of the search: (low, high) are sampled log-uniformly except depth and dropout; ``ranks``
    lists the first-layer ranks to try (0 = full rank)."""

    kinds: tuple[ProbeKind, ...] = ("linear", "mlp")
    C: tuple[float, float] = (1e-3, 1e2)
    hidden: tuple[int, int] = (4, 256)
    depth: tuple[int, int] = (1, 2)
    ranks: tuple[int, ...] = (0, 1, 2, 4, 8)
    weight_decay: tuple[float, float] = (1e-4, 1.0)
    dropout: tuple[float, float] = (0.0, 0.5)
    steps: tuple[int, int] = (100, 1000)

    def suggest(self, trial: optuna.Trial) -> ProbeSpec:
        """The probe that ``trial`` proposes."""
        kind = trial.suggest_categorical("kind", self.kinds)
        if kind == "linear":
            return ProbeSpec("linear", C=trial.suggest_float("C", *self.C, log=True))
        return ProbeSpec(
            "mlp",
            hidden=trial.suggest_int("hidden", *self.hidden, log=True),
            depth=trial.suggest_int("depth", *self.depth),
            rank=trial.suggest_categorical("rank", self.ranks),
            weight_decay=trial.suggest_float("weight_decay", *self.weight_decay, log=True),
            dropout=trial.suggest_float("dropout", *self.dropout),
            steps=trial.suggest_int("steps", *self.steps, log=True),
        )

    def max_complexity(self, d: int) -> int:
        """The complexity of the most expressive probe in the space (at least a linear probe's)."""
        widest = ProbeSpec("mlp", hidden=self.hidden[1], depth=self.depth[1], rank=0)
        return max(d + 1, widest.complexity(d) if "mlp" in self.kinds else 0)


@dataclass(frozen=True)
class SearchTrial:
    """One evaluated probe: held-out accuracy, control-task accuracy, selectivity, complexity."""

    number: int
    spec: ProbeSpec
    accuracy: float
    control_accuracy: float
    selectivity: float
    complexity: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.as_dict()}


@dataclass(frozen=True)
class SearchResult:
    """A finished search: the chosen trial (best by ``objective``), every trial, both Pareto fronts
    (trial numbers, by increasing accuracy) and their hypervolumes."""

    objective: Objective
    chosen: SearchTrial
    trials: tuple[SearchTrial, ...]
    front_control: tuple[int, ...]
    front_complexity: tuple[int, ...]
    hypervolume_control: float
    hypervolume_complexity: float
    max_complexity: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("chosen", "trials")},
            "chosen": self.chosen.as_dict(),
            "trials": [t.as_dict() for t in self.trials],
            "front_control": list(self.front_control),
            "front_complexity": list(self.front_complexity),
        }


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, both coordinates minimised, sorted by the first coordinate.

    p dominates q when p <= q in both coordinates and p != q; of equal points only the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front: list[int] = []
    best_second = math.inf
    for i in order:
        if points[i][1] < best_second:
            front.append(i)
            best_second = points[i][1]
    return front


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates minimised) and bounded by ``reference``:
    the union over points p <= reference of the boxes [p_1, r_1] x [p_2, r_2]."""
    inside = [p for p in points if p[0] <= reference[0] and p[1] <= reference[1]]
    front = [inside[i] for i in pareto_front(inside)]  # first coordinate up, second down
    area = 0.0
    for i, (x, y) in enumerate(front):
        right = front[i + 1][0] if i + 1 < len(front) else reference[0]
        area += (right - x) * (reference[1] - y)
    return area


class ProbeSearch:
    """Search probe architectures by selectivity (or by raw accuracy, for comparison).

    Parameters
    ----------
    objective : "selectivity" (held-out accuracy minus control-task accuracy) or "accuracy".
    n_trials : probes evaluated.
    n_controls : control tasks per trial (fitted in the same batched call as the real labels).
    space : the search space.
    test_fraction : held-out share of the examples (one split for every trial).
    seed : seeds the split, the control tasks, the sampler and every MLP's initialisation.
    storage : an Optuna storage (e.g. "sqlite:///search.db"); ``None`` keeps the study in memory.
    """

    def __init__(
        self,
        objective: Objective = "selectivity",
        n_trials: int = 30,
        n_controls: int = 4,
        space: SearchSpace | None = None,
        test_fraction: float = 0.3,
        seed: int = 0,
        storage: str | None = None,
    ) -> None:
        self.objective = objective
        self.n_trials = n_trials
        self.n_controls = n_controls
        self.space = space
        self.test_fraction = test_fraction
        self.seed = seed
        self.storage = storage

    def fit(self, X: Tensor, y: Tensor, cells: Tensor) -> ProbeSearch:
        """Search on activations X (n, d), labels y (n,) in {0, 1} and the control task's cells (n,).

        Sets ``result_`` (a ``SearchResult``) and ``study_`` (the Optuna study). Optuna's own logging is
        set to warnings only.
        """
        if self.objective not in ("selectivity", "accuracy") or self.n_trials < 1 or self.n_controls < 1:
            raise FeatureControlsError(
                "ProbeSearch needs objective 'selectivity' or 'accuracy', n_trials >= 1 and n_controls >= 1;"
                f" got {self.objective!r}, {self.n_trials}, {self.n_controls}",
                "use e.g. ProbeSearch(objective='selectivity', n_trials=30, n_controls=4)",
            )
        space = self.space if self.space is not None else SearchSpace()
        split = Split.random(X.shape[0], self.test_fraction, generator(self.seed, "split"))
        split.check_both_classes(y[:, None], ["y"])
        d = X.shape[1]
        trials: list[SearchTrial] = []
        seen: dict[ProbeSpec, SearchTrial] = {}

        def evaluate(trial: optuna.Trial) -> float:
            spec = space.suggest(trial)
            if spec not in seen:  # the sampler may propose a probe twice; it is fitted once
                s = control_task_selectivity(
                    spec.build(derive_seed(self.seed, "probe")), X, y, cells, split, self.n_controls,
                    seed=self.seed, n_bootstrap=100,
                )  # fmt: skip
                seen[spec] = SearchTrial(
                    trial.number, spec, s.score, s.control_score, s.effect, spec.complexity(d)
                )
            done = seen[spec]
            trials.append(replace(done, number=trial.number))
            return done.selectivity if self.objective == "selectivity" else done.accuracy

        try:
            import optuna
        except ImportError:
            raise FeatureControlsError(
                "the probe search needs optuna", "pip install 'featurecontrols[search]'"
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            storage=self.storage,
            sampler=optuna.samplers.TPESampler(seed=derive_seed(self.seed, "sampler") % 2**32),
            direction="maximize",
        )
        study.optimize(evaluate, n_trials=self.n_trials)
        self.study_ = study
        chosen = next(t for t in trials if t.number == study.best_trial.number)
        k_max = space.max_complexity(d)
        control = [(-t.accuracy, t.control_accuracy) for t in trials]
        complexity = [(-t.accuracy, math.log(t.complexity) / math.log(k_max)) for t in trials]
        self.result_ = SearchResult(
            objective=self.objective,
            chosen=chosen,
            trials=tuple(trials),
            front_control=tuple(trials[i].number for i in reversed(pareto_front(control))),
            front_complexity=tuple(trials[i].number for i in reversed(pareto_front(complexity))),
            hypervolume_control=hypervolume_2d(control, (0.0, 1.0)),
            hypervolume_complexity=hypervolume_2d(complexity, (0.0, 1.0)),
            max_complexity=k_max,
        )
        return self
