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
codelength selectivity = L_online(control) - L_online(task), in bits. As evidence (on the *learned*
axis, against a control task) it is given per example, with a bootstrap interval of the mean of the
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

from featurecontrols.axes.evidence import Evidence
from featurecontrols.controls.base import LabelControl
from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe, check_binary_columns
from featurecontrols.seeding import generator
from featurecontrols.stats import (
    bootstrap_mean_ci,
    cluster_bootstrap_mean_ci,
    permutation_p_value,
    summarise_null,
)
from featurecontrols.validation import check_activations

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
    Y = check_binary_columns(Y, n).to(X.device)
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
    """The task's online codelength against the same for control labels (bits).

    ``per_example`` is the selectivity in bits per example, (mean control - task) / n, with its
    bootstrap interval (whole cells resampled for a control task) and the permutation p-value
    p = (1 + #{b : control_b <= task}) / (1 + B).
    """

    task: Codelength  # one column
    control: Codelength  # one column per control draw
    selectivity_bits: float  # mean control codelength - task codelength
    compression_gain: float  # task compression - mean control compression
    per_example: float
    ci_low: float
    ci_high: float
    p_value: float
    control_name: str

    def as_evidence(self) -> Evidence:
        """The same numbers as evidence on the *learned* axis, in bits per example (lower is better,
        so the effect is control minus task)."""
        n = self.task.uniform_bits
        return Evidence(
            axis="learned",
            control=f"{self.control_name} (codelength)",
            metric="online codelength, bits per example",
            score=float(self.task.online_bits[0]) / n,
            control_score=float(self.control.online_bits.mean()) / n,
            effect=self.per_example,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            p_value=self.p_value,
            detail={
                "compression": float(self.task.compression[0]),
                "control_compression": float(self.control.compression.mean()),
                "selectivity_bits": self.selectivity_bits,
            },
            null=summarise_null(self.control.online_bits / n),
        )


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
    """Online codelength of y (n,) and of ``n_controls`` control label columns (e.g. a
    ``ControlTask``), coded together in one batched run (see the module docstring)."""
    null = control.null_labels(y, n_controls, generator(seed, control.name, "codelength"))
    X, Y, ends = _checked(X, torch.cat([y[:, None].to(null.dtype), null], dim=1), fractions)
    block_bits = torch.zeros(len(ends), Y.shape[1], dtype=torch.float64)
    block_bits[0] = float(ends[0])
    difference = torch.zeros(ends[-1], 1, dtype=torch.float64)  # per example: mean control - task bits
    for i, bits in enumerate(_coded_blocks(probe_factory, X, Y, ends), start=1):
        block_bits[i] = bits.sum(dim=0)
        difference[ends[i - 1] : ends[i], 0] = bits[:, 1:].mean(dim=1) - bits[:, 0]
    task, controls = _codelength(block_bits[:, :1], ends), _codelength(block_bits[:, 1:], ends)
    draw = generator(seed, "bootstrap", control.name, "codelength")
    if isinstance(control, ControlTask):
        low, high = cluster_bootstrap_mean_ci(difference, control.cells, n_bootstrap, confidence, draw)
    else:
        low, high = bootstrap_mean_ci(difference, n_bootstrap, confidence, draw)
    p_value = permutation_p_value(-task.online_bits, -controls.online_bits[None])
    return CodelengthSelectivity(
        task=task,
        control=controls,
        selectivity_bits=float(controls.online_bits.mean() - task.online_bits[0]),
        compression_gain=float(task.compression[0] - controls.compression.mean()),
        per_example=float(difference.mean()),
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        p_value=float(p_value[0]),
        control_name=control.name,
    )
