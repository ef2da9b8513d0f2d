"""The records the axes produce, from one statistical test up to one candidate's verdict.

    Evidence         one control against the real result: effect, interval, p-value (raw and corrected)
    Axis             one of DESIGN.md's three questions (decodable, learned, used), from its tests
    CandidateResult  a candidate at a site: its three axes and its verdict

All are frozen dataclasses: a run builds them once and nothing rewrites them afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from featurecontrols.stats import NullSummary

AxisName = Literal["decodable", "learned", "used"]
AxisStatus = Literal["yes", "no", "not run"]
Verdict = Literal["model feature", "dataset feature", "not found", "inconclusive"]
GroundTruth = Literal["model feature", "dataset feature", "absent"]
"""What a testbed's candidate is, by construction: the verdict it should get (absent: not found)."""
AXES: tuple[AxisName, ...] = ("decodable", "learned", "used")


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: the run seed, the number of resamples and the confidence level."""

    seed: int
    n: int
    confidence: float


@dataclass(frozen=True)
class Detail:
    """What a plot of one test needs beyond its numbers: the score of each control copy (trained model
    against its copies), or the per-example values of the real and the control condition."""

    copies: tuple[float, ...] = ()
    real: tuple[float, ...] = ()
    control: tuple[float, ...] = ()

    @property
    def above_control(self) -> int:
        """Examples whose real value exceeds the control's."""
        return sum(r > c for r, c in zip(self.real, self.control, strict=True))


@dataclass(frozen=True)
class Evidence:
    """One control against the real result.

    ``score`` is the real statistic (e.g. held-out probe accuracy), ``control_score`` the same
    statistic under the control (the null's mean, or the copy the test is against), ``effect`` the
    difference that the test is about, ``ci_low``/``ci_high`` its confidence interval, ``p_value``
    the one-sided p-value that the real result does NOT beat the control, and ``p_adjusted`` the
    same after the run's correction across every test. ``null`` summarises the null distribution
    when there is one (``stats.summarise_null``), ``detail`` holds what a plot needs.
    """

    axis: AxisName
    control: str
    metric: str
    score: float
    control_score: float
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float = float("nan")
    detail: Detail = field(default_factory=Detail)
    null: NullSummary | None = None


@dataclass(frozen=True)
class Axis:
    """One axis of the verdict: ``yes`` when each piece of its evidence is significant after correction."""

    name: AxisName
    status: AxisStatus
    evidence: tuple[Evidence, ...]

    @property
    def p_adjusted(self) -> float:
        """The axis' p-value: the largest corrected p of its evidence (intersection-union test)."""
        return max((t.p_adjusted for t in self.evidence), default=float("nan"))


@dataclass(frozen=True)
class CandidateResult:
    """One candidate at one site: how it was defined (``kind``), its axes and its verdict."""

    site: str
    name: str
    kind: str
    verdict: Verdict
    axes: dict[AxisName, Axis]
    ground_truth: GroundTruth | None = None

    @property
    def correct(self) -> bool | None:
        """Whether the verdict matches the ground truth (``absent`` matches ``not found``)."""
        if self.ground_truth is None:
            return None
        expected = "not found" if self.ground_truth == "absent" else self.ground_truth
        return self.verdict == expected
