"""Online (prequential) description length of labels given activations.

Voita & Titov, EMNLP 2020, "Information-theoretic probing with minimum description length". The
examples are sent in the given order (shuffle first if it is not random), in blocks ending at
t_1 < t_2 < ... < t_S = n, the fractions ``BLOCK_FRACTIONS`` of n (0.1, 0.2, 0.4, 0.8, 1.6, 3.2,
6.25, 12.5, 25, 50, 100 %). The first t_1 labels are sent with the uniform code (1 bit each: binary
labels); then a probe trained on examples [0, t_i) encodes the labels of [t_i, t_(i+1)):

    L_online = t_1 + sum_i sum_{t_i <= j < t_(i+1)} -log2 p_i(y_j | x_j),

L_uniform = n bits, compression = L_uniform / L_online. Every label column is coded separately but
fitted in the same batched call. While a column has a single class in the training prefix no probe
can be fitted: its next block is coded with the Laplace estimate p(y = 1) = (n_1 + 1) / (t_i + 2).
A control task or shuffled labels give the codelength the probe reaches without the real structure;
codelength selectivity = L_online(control) - L_online(task), in bits. The learned axis judges it
per example (``axes/from_scores.from_null``, lower is better): a bootstrap interval of the mean of the
per-example differences (whole cells resampled) and the permutation p-value of the task's codelength
among the B control codelengths, p = (1 + #{b : L_b <= L_task}) / (1 + B).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from featurecontrols.axes import learned
from featurecontrols.axes.evidence import Bootstrap, Evidence
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import LabelControl
from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.seeding import generator
from featurecontrols.validation import check_activations, check_labels

BLOCK_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


@runtime_checkable
class ProbabilisticProbe(Probe, Protocol):
    """A probe that also gives P(y = 1 | x), shape (n, k) (e.g. ``LogisticProbe``, ``MLPProbe``)."""

    def predict_proba(self, X: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Codelength:
    """Online codelength of k label columns; every number is in bits."""

    online_bits: Tensor  # (k,)
    uniform_bits: float
    compression: Tensor  # (k,) uniform / online
    block_ends: tuple[int, ...]  # t_1, ..., t_S
    block_bits: Tensor  # (S, k): the uniform first block, then each block coded by a probe


def online_codelength(
    probe_factory: Callable[[], ProbabilisticProbe],
    X: Tensor,
    Y: Tensor,
    fractions: Sequence[float] = BLOCK_FRACTIONS,
) -> Codelength:
    """Online codelength of labels Y (n,) or (n, k) given activations X (n, d), in the given order.

    ``probe_factory()`` must return a fresh, unfitted probe (e.g. ``LogisticProbe`` or
    ``lambda: MLPProbe(hidden=64, seed=0)``).
    """
    X, Y, ends = _checked(X, Y, fractions)
    block_bits = torch.zeros(len(ends), Y.shape[1], dtype=torch.float64)
    block_bits[0] = float(ends[0])  # the uniform code: 1 bit per binary label
    for i, bits in enumerate(_coded_blocks(probe_factory, X, Y, ends), start=1):
        block_bits[i] = bits.sum(dim=0)
    return _codelength(block_bits, ends)


def _checked(X: Tensor, Y: Tensor, fractions: Sequence[float]) -> tuple[Tensor, Tensor, list[int]]:
    """Checked activations, labels (n, k) and the block ends t_1 < ... < t_S = n."""
    X = check_activations(X)
    n = X.shape[0]
    Y = check_labels(Y, n, recode=False).to(X.device)
    ends = sorted({min(n, max(1, round(f * n))) for f in fractions} | {n})
    if len(ends) < 2 or any(not 0.0 < f <= 1.0 for f in fractions):
        raise FeatureControlsError(
            f"{n} examples with block fractions {list(fractions)} give fewer than two blocks",
            "use more examples (hundreds at least) and fractions in (0, 1], e.g. BLOCK_FRACTIONS",
        )
    return X, Y, ends


def _coded_blocks(
    probe_factory: Callable[[], ProbabilisticProbe], X: Tensor, Y: Tensor, ends: list[int]
) -> Iterator[Tensor]:
    """For each block [t_i, t_(i+1)), the bits -log2 p_i(y_j | x_j) of its examples, (t_(i+1) - t_i, k)."""
    k = Y.shape[1]
    for start, stop in itertools.pairwise(ends):
        positives = Y[:start].sum(dim=0)
        fittable = (positives > 0) & (positives < start)
        p_one = ((positives + 1.0) / (start + 2.0)).double().expand(stop - start, k).clone()  # Laplace
        if bool(fittable.any()):
            probe = probe_factory()
            probe.fit(X[:start], Y[:start, fittable])
            p_one[:, fittable] = probe.predict_proba(X[start:stop]).double()
        y = Y[start:stop].double()
        p_label = torch.where(y > 0.5, p_one, 1.0 - p_one).clamp(min=torch.finfo(torch.float32).tiny)
        yield -torch.log2(p_label).cpu()


def _codelength(block_bits: Tensor, ends: Sequence[int]) -> Codelength:
    online = block_bits.sum(dim=0)
    n = ends[-1]
    return Codelength(
        online_bits=online,
        uniform_bits=float(n),
        compression=n / online,
        block_ends=tuple(ends),
        block_bits=block_bits,
    )


@dataclass(frozen=True)
class CodelengthSelectivity:
    """The task's online codelength against the same for control labels (bits), with the learned
    axis' evidence: ``evidence.effect`` is the selectivity in bits per example, (mean control - task)
    / n, with its interval (whole cells resampled for a control task) and the permutation p-value
    p = (1 + #{b : control_b <= task}) / (1 + B)."""

    task: Codelength  # one column
    control: Codelength  # one column per control draw
    evidence: Evidence

    @property
    def selectivity_bits(self) -> float:
        """Mean control codelength minus the task's, in bits."""
        return float(self.control.online_bits.mean() - self.task.online_bits[0])

    @property
    def compression_gain(self) -> float:
        """Task compression minus the mean control compression."""
        return float(self.task.compression[0] - self.control.compression.mean())


def codelength_scores(
    probe_factory: Callable[[], ProbabilisticProbe],
    X: Tensor,
    y: Tensor,
    control: LabelControl,
    n_controls: int,
    seed: int,
    fractions: Sequence[float] = BLOCK_FRACTIONS,
) -> tuple[NullScores, Codelength, Codelength]:
    """Online codelength of y (n,) and of ``n_controls`` control label columns (e.g. a
    ``ControlTask``), coded together in one batched run: the raw scores (bits per example of the task
    and of the controls' mean; lower is better) and both codelengths."""
    null = control.null_labels(y, n_controls, generator(seed, control.name, "codelength"))
    X, Y, ends = _checked(X, torch.cat([y[:, None].to(null.dtype), null], dim=1), fractions)
    block_bits = torch.zeros(len(ends), Y.shape[1], dtype=torch.float64)
    block_bits[0] = float(ends[0])
    per_example = torch.ones(ends[-1], 2, dtype=torch.float64)  # the uniform first block: 1 bit each
    for i, bits in enumerate(_coded_blocks(probe_factory, X, Y, ends), start=1):
        block_bits[i] = bits.sum(dim=0)
        per_example[ends[i - 1] : ends[i], 0] = bits[:, 0]
        per_example[ends[i - 1] : ends[i], 1] = bits[:, 1:].mean(dim=1)
    task, controls = _codelength(block_bits[:, :1], ends), _codelength(block_bits[:, 1:], ends)
    scores = NullScores(
        metric="online codelength, bits per example",
        unit="bits",
        real=per_example[:, 0],
        null=controls.online_bits / ends[-1],
        control=per_example[:, 1],
        clusters=control.cells if isinstance(control, ControlTask) else None,
        lower_is_better=True,
    )
    return scores, task, controls


def codelength_selectivity(
    probe_factory: Callable[[], ProbabilisticProbe],
    X: Tensor,
    y: Tensor,
    control: LabelControl,
    n_controls: int = 99,
    *,
    seed: int = 0,
    fractions: Sequence[float] = BLOCK_FRACTIONS,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> CodelengthSelectivity:
    """:func:`codelength_scores` judged by the learned axis (see the module docstring)."""
    scores, task, controls = codelength_scores(probe_factory, X, y, control, n_controls, seed, fractions)
    bootstrap = Bootstrap(seed, n_bootstrap, confidence)
    evidence = learned.assess(f"{control.name} (codelength)", scores, ("codelength",), bootstrap)
    return CodelengthSelectivity(task=task, control=controls, evidence=evidence)
