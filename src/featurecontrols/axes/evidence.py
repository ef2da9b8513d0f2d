"""The records the axes produce, from one statistical test up to one candidate's verdict.

    Evidence         one control against the real result: effect, interval, p-value (raw and corrected)
    Axis             one of DESIGN.md's three questions (decodable, learned, used), from its tests
    CandidateResult  a candidate at a site: its three axes and its verdict

All are frozen dataclasses: a run builds them once and nothing rewrites them afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from featurecontrols.stats import NullSummary

AxisName = Literal["decodable", "learned", "used"]
AxisStatus = Literal["yes", "no", "inconclusive", "not run"]
Unit = Literal["accuracy", "bits", "correlation", "output change", "output read-off", "task score"]
Verdict = Literal["model feature", "dataset feature", "not found", "inconclusive"]
GroundTruth = Literal["model feature", "dataset feature", "absent"]
"""What a testbed's candidate is, by construction: the verdict it should get (absent: not found)."""
AXES: tuple[AxisName, ...] = ("decodable", "learned", "used")
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


@dataclass(frozen=True)
class Margins:
    """Effects too small to matter, per unit: a result within its margin of the control shows the
    trained model equivalent to it (the README argues the defaults).

    accuracy : held-out accuracy (and selectivity) of a probe, trained minus control: 2 points.
    bits : online codelength per example: 0.02 bits.
    correlation : a latent's best code correlation, refit minus control: 0.05.
    output_change : the used axis' relative output change (a fraction of the outputs' variance) above
        its null: 0.01.
    output_read_off : how far moving a feature at the site moves the outputs along its own class
        difference there, in standard deviations of the outputs (``OutputChange.read_off``), above
        its null: 0.1, the square root of ``output_change`` for a move along that difference.
    task_score : the task score an erasure costs above its null: 0.01.
    """

    accuracy: float = 0.02
    bits: float = 0.02
    correlation: float = 0.05
    output_change: float = 0.01
    output_read_off: float = 0.1
    task_score: float = 0.01

    def of(self, unit: Unit) -> float:
        """The margin of a statistic in ``unit``."""
        value: float = getattr(self, unit.replace(" ", "_").replace("-", "_"))
        return value


@dataclass(frozen=True)
class Bootstrap:
    """How the axes judge: the run seed and number of resamples of the intervals, their confidence
    level, and the margins of equivalence."""

    seed: int
    n: int
    confidence: float
    margins: Margins = field(default_factory=Margins)


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
    same after the run's correction across every test. ``margin`` is the effect too small to matter
    (``Margins``): an interval wholly below it shows the result equivalent to its control.
    ``score_high`` is the upper end of the real statistic's own interval (the used axis: "not used"
    needs the intervention's change itself below the margin, not only its excess over the null).
    ``p_equivalent`` is the one-sided p of H0: the effect is at least the margin (on the used axis,
    the effect or the change itself: the larger p), small when the result is shown within the margin
    of its control; ``p_equivalent_adjusted`` the same after the run's correction across every test
    of equivalence (learned and used axes; NaN where no test of equivalence applies).
    ``null`` summarises the null distribution when there is one (``stats.summarise_null``),
    ``detail`` holds what a plot needs.
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
    margin: float = float("nan")
    score_high: float = float("nan")
    p_equivalent: float = float("nan")
    p_equivalent_adjusted: float = float("nan")
    detail: Detail = field(default_factory=Detail)
    null: NullSummary | None = None


@dataclass(frozen=True)
class Axis:
    """One axis of the verdict (``axes/verdict.make_axis``): ``yes`` when the real result beats every
    control significantly, ``no`` when it is shown equivalent to a control, ``inconclusive`` when
    neither was shown, ``not run`` without evidence."""

    name: AxisName
    status: AxisStatus
    evidence: tuple[Evidence, ...]

    @property
    def p_adjusted(self) -> float:
        """The axis' p-value: the largest corrected p of its evidence (intersection-union test)."""
        return max((t.p_adjusted for t in self.evidence), default=float("nan"))


@dataclass(frozen=True)
class CandidateResult:
    """One candidate at one site: how it was defined (``kind``), its axes and its verdict; ``reason``
    says why an inconclusive verdict is one (which axis could not decide, and why)."""

    site: str
    name: str
    kind: str
    verdict: Verdict
    axes: dict[AxisName, Axis]
    ground_truth: GroundTruth | None = None
    reason: str = ""

    @property
    def correct(self) -> bool | None:
        """Whether the verdict matches the ground truth (``absent`` matches ``not found``)."""
        if self.ground_truth is None:
            return None
        expected = "not found" if self.ground_truth == "absent" else self.ground_truth
        return self.verdict == expected
