"""Dual interchange: the used test in the feature's own units, without counterfactual inputs.

Every labelled target j at the site gets its Fisher read-off vector r_j = Sigma^+ (mu1_j - mu0_j)
(rows of R; Sigma the covariance of the site's activations, mu the class means) and its surgical write
vector in the data's metric,

    W = Sigma R^T (R Sigma R^T)^+,     so that R W = I:

adding alpha w_j moves read-off j by alpha and leaves every other target's where it was, at the least
change of the activations in standard deviations of the data (the dual basis of
``measures/steering_vectors.py``, in the metric of the data; for one target, w is the class-mean
difference itself). Where no vector can move j alone (more targets than the data's span holds apart,
as in superposition: TMS's 20 targets in 5 dimensions), R W = I has no solution, and the
pseudo-inverse's w_j would move j's own read-off by less than one (0.44-0.55 for TMS's represented
features, 0.002 for its absent ones), so the interchange would not move the feature as far as the
data does. There w_j moves read-off j by exactly one and the others' as little as possible: in
whitened coordinates (a_i = Sigma^(1/2) r_i, G = sum_(i != j) a_i a_i^T),

    w_j = Sigma^(1/2) G^+ a_j / (a_j^T G^+ a_j),

the least sum of squared moves of the other read-offs, ties broken by the least change in the data's
metric; where j can move alone it is the surgical vector above. Feature j's coordinate is
c_j(h) = r_j . h, with class means m1 and m0. The interchange moves each example to the other
class's value of the feature:

    h'_i = h_i + (m_(1 - y_i) - m_(y_i)) w_j,

a move that stays in the span the data visits (Sigma w lies there: a direction the data never visits
carries no change of any input, Makelov et al. 2023), and the statistic is the mean relative output
change over examples. Targets whose labels correlate with j's at |r| >= SAME_VARIABLE are one
variable with it (the level at which the testbeds match a latent's codes to a variable) and are not
held fixed: no input moves one without the other, and a write vector that tries separates them along
the few rows where they differ (modular addition's sin(w_1 a) and a < p/2 differ at a = 0 alone,
r = 0.96; holding either fixed, the other's interchange moved the output by 0.07-0.12 against a
margin of 0.01, and by -0.002 without).

The null makes the same moves along B random directions of the data: each moves the data along a
direction uniform in its whitened coordinates (``measures/matched_shifts.MatchedShifts.one_std``:
the direction a decodable feature that carries nothing would take) by as many of the data's standard
deviations along it as the feature's coordinate moves in its own, and
p = (1 + #{b : null_b >= real}) / (1 + B): the unit of randomness is the direction, not the example.
"Equally large" is measured in the feature's own units, standard deviations of the data along each
direction, not in Euclidean norm (which lets covariance-shaped nulls pile onto the directions a model
reads most) nor in the size of the estimated write vector (whose estimation noise sits in directions
of little variance). A direction candidate v (or a latent's decoder direction) has the
coordinate v . h, moved along Sigma v / (v^T Sigma v) (the least change in the data's metric that
moves it by one; in the data's span): by the class difference of the coordinate when it has labels,
else by STEER of its standard deviations (steering). Then its null, STEER standard deviations along a
random whitened direction, is the same for every such target: they share one sequence of null draws.

A dictionary's latents lie where the data varies most (it is fitted to reconstruct the data), and a
random whitened direction mostly where it varies least, so a model that reads its high-variance
directions makes every latent beat that null (all 256 of MiniLM's, README). With
``steering_null="matched variance"`` a steered target's null is instead STEER standard deviations
along random unit directions u of the span along which the data varies as much as along v,
u^T Sigma u = v^T Sigma v / |v|^2 (``MatchedShifts.of_variance``): a latent that carries nothing but
sits where this one does. Targets share the null of their variance bin (ratio VARIANCE_BIN, the
bin's geometric centre), one sequence of draws per bin. It has no power where the model reads the
directions its site varies along most (the toy LM's latents, README): there the equal-variance
directions are read as much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalTarget, Requirement
from featurecontrols.controls.causal.moves import STACK, null_changes, patches
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.mass_mean_probe import class_mean_directions
from featurecontrols.measures.matched_shifts import MatchedShifts
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import generator

SAME_VARIABLE = 0.9  # |r| between two targets' labels at which they are one variable (module docstring)
ALONE = 1e-6  # a write vector whose own read-off moves by less than 1 - ALONE cannot move it alone
STEER = 2.0  # standard deviations of the data a target without labels is moved along its vector
VARIANCE_BIN = 1.25  # ratio of the variance bins whose steered targets share one matched null
SteeringNull = Literal["whitened", "matched variance"]
STEERING_NULLS: tuple[SteeringNull, ...] = ("whitened", "matched variance")


class DualInterchange(Params):
    """Causal control: move each target's coordinate to the other class's along its surgical write
    vector; the null makes the same moves along random directions of the data of the same size in its
    metric (module docstring).

    """

    requires: ClassVar[Requirement] = "labels"
    metric = "relative output change under dual interchange"
    unit: ClassVar[Unit] = "output change"
    null_uncorrelated: ClassVar[bool] = False  # the null's directions uncorrelated with the target's

    def __init__(self, steering_null: SteeringNull = "whitened") -> None:
        self.steering_null = steering_null

    @property
    def name(self) -> str:
        """The control's name in the evidence; the matched-variance steering null says so."""
        base = "dual interchange vs matched random directions"
        return base if self.steering_null == "whitened" else f"{base}, steered vs equal-variance ones"

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """Per target, the per-example output change (n,) against the null's mean changes (n_null,)."""
        if self.steering_null not in STEERING_NULLS:
            raise FeatureControlsError(
                f"unknown steering_null {self.steering_null!r}", f"use one of {STEERING_NULLS}"
            )
        outputs = OutputChange(at.adapter, at.batches, at.site)
        clean = [at.adapter.site_tensor(at.site, batch) for batch in at.batches]
        metric = MatchedShifts(at.X, "covariance", "mahalanobis")  # the data's span and deviations
        n = sum(c.reshape(-1, c.shape[-1]).shape[0] for c in clean)
        plans = _Interchanges(at, targets, metric, n, self.null_uncorrelated)
        out = {}
        with_labels = [t for t in targets if t.labels is not None]
        for target in track(with_labels, "dual interchange", len(with_labels), at.progress):
            real_move, real_write, null_moves, null_writes = plans.of(target)
            measure, patched = self._measure(outputs, target, n), patches(clean, real_move, real_write)
            real = measure.under_stacked([patched])[0]
            null = null_changes(measure, clean, null_moves, null_writes, [float(real.mean()) - at.margin])
            out[target.name] = NullScores(self.metric, self.unit, real, null[0], size=measure.size(patched))
        steered = [t for t in targets if t.labels is None]
        if steered:
            out |= self._steered(at, outputs, clean, plans, steered)
        return out

    def _measure(self, outputs: OutputChange, target: CausalTarget, n: int) -> OutputChange:
        """What a labelled target's interchange is measured by: the relative output change."""
        return outputs

    def _steered(
        self,
        at: AtSite,
        outputs: OutputChange,
        clean: list[Tensor],
        plans: _Interchanges,
        targets: Sequence[CausalTarget],
    ) -> dict[str, NullScores]:
        """Targets without labels (directions, latents), each steered STEER of the data's standard
        deviations along its own vector, STACK of them per forward pass. Their null does not depend on
        the target (a random whitened direction of the data moved STEER standard deviations), or only
        through its variance bin (``steering_null="matched variance"``), so the targets of a group share
        one sequence of null draws, each with its own sequential stop: their p-values are then
        conformal p-values with one calibration set, positively dependent (PRDS), under which
        Benjamini-Hochberg keeps its false-discovery rate (Bates et al. 2023, "Testing for outliers with
        conformal p-values"); Holm needs no condition."""
        starts = range(0, len(targets), STACK)  # each stack's shifts made when it runs: memory per stack
        reals = torch.cat(
            [
                outputs.under_stacked([patches(clean, *plans.steer(t)) for t in targets[i : i + STACK]])
                for i in track(starts, "dual interchange, steered", len(starts), at.progress)
            ]
        )
        moves = torch.ones(plans.n, dtype=torch.float64).expand(at.n_null, -1)
        out = {}
        for key, variance, members in self._null_groups(plans, targets):
            draw = generator(at.seed, "interchange null", key)
            writes = plans.steered_null(variance, at.n_null, draw)
            stops = (reals[members].mean(dim=1) - at.margin).tolist()
            for i, null in zip(members, null_changes(outputs, clean, moves, writes, stops), strict=True):
                out[targets[i].name] = NullScores(self.metric, self.unit, reals[i], null)
        return out

    def _null_groups(
        self, plans: _Interchanges, targets: Sequence[CausalTarget]
    ) -> list[tuple[str, float | None, list[int]]]:
        """The steered targets (indices) that share one null, with its seed key and its variance (None:
        the whitened null, one for all)."""
        if self.steering_null == "whitened":
            return [("steered", None, list(range(len(targets))))]
        bins: dict[int, list[int]] = {}
        for i, target in enumerate(targets):
            variance = plans.metric.variance_along(plans.own(target)[0])
            bins.setdefault(round(math.log(max(variance, 1e-300)) / math.log(VARIANCE_BIN)), []).append(i)
        return [(f"steered, variance bin {b}", VARIANCE_BIN**b, m) for b, m in sorted(bins.items())]


class _Interchanges:
    """The real and null shifts of every target (module docstring), for the first ``n`` rows."""

    def __init__(
        self,
        at: AtSite,
        targets: Sequence[CausalTarget],
        metric: MatchedShifts,
        n: int,
        uncorrelated: bool = False,
    ) -> None:
        self.at, self.metric, self.n, self.uncorrelated = at, metric, n, uncorrelated
        self.X = at.X.double()
        self.cov = metric.covariance  # the data's covariance, computed once with its metric
        self.root = metric.basis * metric.stds  # (d, r) Sigma^(1/2) on the data's span
        self.labelled = [t for t in targets if t.labels is not None and t.kind == "labelled feature"]
        if self.labelled:
            Y = torch.stack([t.labels for t in self.labelled if t.labels is not None], dim=1)
            M = class_mean_directions(self.X, Y).T  # (d, k) class-mean differences
            self.R = (torch.linalg.pinv(self.cov, hermitian=True) @ M).T  # (k, d) Fisher read-offs
            k = len(self.labelled)
            r = torch.corrcoef(Y.T.double()).reshape(k, k).nan_to_num(0.0)
            self.same = (r.abs() >= SAME_VARIABLE) & ~torch.eye(k, dtype=torch.bool)  # (k, k)
            self.A = self.R @ self.root  # (k, r) the read-offs in whitened coordinates
            self.writes = self.surgical(torch.arange(k))  # every target held: the usual case

    def surgical(self, held: Tensor) -> Tensor:
        """The write vectors (d, |held|) of the targets ``held``, each holding the others' read-offs
        fixed: R W = I at the least change in standard deviations of the data,
        W = Sigma R^T (R Sigma R^T)^+ = Sigma^(1/2) A^+; a target that cannot move alone (its own
        read-off moved by less than 1 - ALONE) moves the others least instead (module docstring)."""
        A = self.A[held]
        V = torch.linalg.pinv(A)  # (r, |held|)
        for i in torch.nonzero((A * V.T).sum(dim=1) < 1.0 - ALONE).flatten().tolist():
            others = torch.cat([A[:i], A[i + 1 :]])
            G = torch.linalg.pinv(others.T @ others, hermitian=True)
            V[:, i] = G @ A[i] / (A[i] @ G @ A[i]).clamp(min=1e-300)
        W: Tensor = self.root @ V
        return W

    def write_vector(self, j: int) -> Tensor:
        """Labelled target j's write vector, holding fixed every target but those one variable with it."""
        if not bool(self.same[j].any()):
            return self.writes[:, j]
        held = torch.nonzero(~self.same[j]).flatten()  # j itself among them
        return self.surgical(held)[:, int(torch.nonzero(held == j))]

    def of(self, target: CausalTarget) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The real interchange of a ``target`` with labels as per-row moves (n,) along a write vector
        (d,), and the B null ones (B, n) and (B, d): the same moves along random directions of the
        data, as many of its standard deviations along them as the feature's coordinate moves in its
        own."""
        assert target.labels is not None
        if target.kind == "labelled feature":
            j = next(i for i, t in enumerate(self.labelled) if t.name == target.name)
            read, write = self.R[j], self.write_vector(j)
        else:
            read, write = self.own(target)
        coords = self.X @ read
        ones = target.labels.bool()
        gap = coords[ones].mean() - coords[~ones].mean()
        moves = torch.where(ones[: self.n], -gap, gap)
        steps = float(gap.abs()) / max(self._std(read), 1e-300)  # its own standard deviations
        draw = generator(self.at.seed, "interchange null", target.name)
        uncorrelated = read if self.uncorrelated else None
        null = self.metric.one_std(self.at.n_null, draw, uncorrelated) * steps / gap.abs().clamp(min=1e-300)
        return moves, write, moves.expand(self.at.n_null, -1), null

    def steer(self, target: CausalTarget) -> tuple[Tensor, Tensor]:
        """A target without labels as per-row moves (n,) of STEER standard deviations of its
        coordinate, along its write vector (d,)."""
        read, write = self.own(target)
        return torch.full((self.n,), STEER * self._std(read), dtype=torch.float64), write

    def steered_null(self, variance: float | None, n_null: int, draw: torch.Generator) -> Tensor:
        """The null's shifts (n_null, d): STEER standard deviations along random whitened directions
        (``variance`` None), or along random unit directions u with u^T Sigma u = ``variance``,
        by STEER Sigma u / sqrt(u^T Sigma u)."""
        if variance is None:
            return self.metric.one_std(n_null, draw) * STEER
        u = self.metric.of_variance(variance, n_null, draw)
        writes = u @ self.cov
        shifts: Tensor = writes * STEER / (writes * u).sum(dim=1, keepdim=True).clamp(min=1e-300).sqrt()
        return shifts

    def _std(self, read: Tensor) -> float:
        """The standard deviation of the coordinate read . h over the data, sqrt(v^T Sigma v) (d^2
        operations, not a pass over the data)."""
        return float((read @ self.cov @ read).clamp(min=0.0).sqrt())

    def own(self, target: CausalTarget) -> tuple[Tensor, Tensor]:
        """A direction's (or latent's) read-off v and write vector Sigma v / (v^T Sigma v), in the data's
        span: adding it moves the coordinate v . h by 1."""
        if target.direction is None:
            raise FeatureControlsError(
                f"dual interchange needs the labels or the direction of {target.name!r}",
                "give the candidate labels or a direction",
            )
        read = target.direction.double()
        return read, self.cov @ read / (read @ self.cov @ read).clamp(min=1e-300)
