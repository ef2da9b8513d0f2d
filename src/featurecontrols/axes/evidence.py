"""The records a run produces, from one statistical test up to the whole run.

    Evidence    one control against the real result: effect, interval, p-value (raw and corrected)
    Axis        one of DESIGN.md's three questions (decodable, learned, used), from its tests
    FeatureResult   a candidate feature: its three axes and its verdict
    RunResult   every feature of a run, with the settings that reproduce it

All are plain dataclasses that serialise to JSON with ``to_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AxisName = Literal["decodable", "learned", "used"]
AxisStatus = Literal["yes", "no", "not run"]
Verdict = Literal["model feature", "dataset feature", "not found", "inconclusive"]


@dataclass
class Evidence:
    """One control against the real result.

    ``score`` is the real statistic (e.g. held-out probe accuracy), ``control_score`` the same
    statistic under the control (mean of the null, or of the randomised copies), ``effect`` the
    difference that the test is about, ``ci_low``/``ci_high`` its confidence interval,
    ``p_value`` the one-sided p-value that the real result does NOT beat the control, and
    ``p_adjusted`` the same after correction across every test of the run.
    ``null`` summarises the null distribution when there is one (``stats.summarise_null``: mean,
    sd, quantiles, histogram), for reports and plots.
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
    detail: dict[str, Any] = field(default_factory=dict)
    null: dict[str, Any] = field(default_factory=dict)


@dataclass
class Axis:
    """One axis of the verdict: ``yes`` when each piece of its evidence is significant after correction."""

    name: AxisName
    status: AxisStatus
    evidence: list[Evidence]

    @property
    def p_adjusted(self) -> float:
        """The axis' p-value: the largest corrected p of its evidence (intersection-union test)."""
        return max((t.p_adjusted for t in self.evidence), default=float("nan"))


@dataclass
class FeatureResult:
    name: str
    verdict: Verdict
    axes: dict[AxisName, Axis]
    ground_truth: str | None = None
    direction_norm: float = float("nan")

    @property
    def correct(self) -> bool | None:
        """Whether the verdict matches the ground truth (``absent`` matches ``not found``)."""
        if self.ground_truth is None:
            return None
        expected = "not found" if self.ground_truth == "absent" else self.ground_truth
        return self.verdict == expected


@dataclass
class RunResult:
    site: str
    features: list[FeatureResult]
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    steering: list[dict[str, Any]] = field(default_factory=list)
    """Steering curves (``causal_effects.EffectCurve.to_dict``), when steering was measured."""
    spectra: dict[str, list[list[float]]] = field(default_factory=dict)
    """Activation spectra at the site (``spectra.activation_spectrum``): "trained" and each weight control's
    copies, one list of singular values per model."""
    search: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Probe searches per feature (``probe_search.SearchResult.as_dict``, e.g. one by accuracy and one
    by selectivity, shown side by side), when a search was run."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; every feature entry has ``name``, ``ground_truth``, ``verdict``."""
        out: dict[str, Any] = {
            "site": self.site,
            "settings": self.settings,
            "timings_s": self.timings,
            "features": [],
            "steering": self.steering,
            "spectra": self.spectra,
            "search": self.search,
        }
        for f in self.features:
            out["features"].append(
                {
                    "name": f.name,
                    "ground_truth": f.ground_truth,
                    "verdict": f.verdict,
                    "correct": f.correct,
                    "axes": {
                        name: {
                            "status": axis.status,
                            "p_adjusted": _finite_or_none(axis.p_adjusted),
                            "evidence": [_evidence_dict(e) for e in axis.evidence],
                        }
                        for name, axis in f.axes.items()
                    },
                }
            )
        return out


def _finite_or_none(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else x


def _evidence_dict(t: Evidence) -> dict[str, Any]:
    d = asdict(t)
    return {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in d.items()}
