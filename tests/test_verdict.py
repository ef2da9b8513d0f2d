import math

import pytest

from featurecontrols.axes.evidence import Evidence
from featurecontrols.axes.verdict import corrected, decide, make_axis, reason


@pytest.mark.parametrize(
    ("decodable", "learned", "used", "verdict"),
    [
        ("no", "yes", "yes", "not found"),
        ("yes", "yes", "no", "model feature"),
        ("yes", "no", "yes", "model feature"),
        ("yes", "no", "no", "dataset feature"),
        ("yes", "no", "not run", "inconclusive"),
        ("yes", "no", "inconclusive", "inconclusive"),
        ("yes", "inconclusive", "no", "inconclusive"),
        ("yes", "not run", "not run", "inconclusive"),
        ("not run", "yes", "yes", "inconclusive"),
    ],
)
def test_decision_table(decodable: str, learned: str, used: str, verdict: str) -> None:
    assert decide(decodable, learned, used) == verdict  # type: ignore[arg-type]


def _ev(
    p: float, effect: float = 0.1, ci_high: float = 0.2, margin: float = 0.02, p_eq: float = 1.0
) -> Evidence:
    return Evidence(
        "learned", "c", "m", 1.0, 0.9, effect, effect - 0.1, ci_high, p, margin=margin, p_equivalent=p_eq
    )


def _as_corrected(*evidence: Evidence) -> None:
    """Each p-value taken as its own corrected one (a family of one)."""
    for e in evidence:
        object.__setattr__(e, "p_adjusted", e.p_value)
        object.__setattr__(e, "p_equivalent_adjusted", e.p_equivalent)


def test_axis_needs_every_piece_significant_after_correction() -> None:
    evidence = corrected([_ev(0.001), _ev(0.02)], "holm")
    assert [e.p_adjusted for e in evidence] == pytest.approx([0.002, 0.02])
    assert make_axis("learned", evidence, 0.05).status == "yes"
    assert make_axis("learned", evidence, 0.01).status == "inconclusive"  # neither shown
    assert make_axis("learned", [], 0.05).status == "not run"
    negative = corrected([_ev(0.0001, effect=-0.1, ci_high=-0.05, p_eq=1e-4)], "holm")
    assert make_axis("learned", negative, 0.05).status == "no"  # shown below the margin


def test_no_needs_equivalence_and_learned_needs_every_control() -> None:
    """learned = no when the trained model is equivalent to any one control; used = no only when every
    used test is; a test that neither rejects nor shows equivalence leaves the axis inconclusive."""
    beaten, level = _ev(1e-4, 0.3, 0.4), _ev(0.9, 0.0, 0.01, p_eq=1e-3)
    unclear = _ev(0.3, 0.01, 0.05, p_eq=0.3)
    _as_corrected(beaten, level, unclear)
    assert make_axis("learned", [beaten, level], 0.05).status == "no"
    assert make_axis("learned", [beaten, unclear], 0.05).status == "inconclusive"
    assert make_axis("used", [level, unclear], 0.05).status == "inconclusive"
    assert make_axis("used", [level], 0.05).status == "no"
    assert make_axis("decodable", [unclear], 0.05).status == "no"
    axes = {
        "decodable": make_axis("decodable", [beaten], 0.05),
        "learned": make_axis("learned", [level], 0.05),
        "used": make_axis("used", [unclear], 0.05),
    }
    assert decide(*(axes[a].status for a in ("decodable", "learned", "used"))) == "inconclusive"  # type: ignore[arg-type]
    text = reason(axes, 0.05)  # type: ignore[arg-type]
    assert text.startswith("used: c effect 0.01 [-0.09, 0.05]") and "lacks power" in text


def test_an_interval_above_the_margin_without_a_corrected_p_says_so() -> None:
    """MiniLM's plural_subject: the used interval (of this test alone) lies above the margin at p 0.013,
    but Holm over the run's 24 tests leaves p 0.2: the reason names both, not "neither above nor below"."""
    e = Evidence("used", "c", "m", 0.035, 0.013, 0.022, 0.0117, 0.0289, 0.013, margin=0.01)
    object.__setattr__(e, "p_adjusted", 0.2)
    beaten, level = _ev(1e-4, 0.3, 0.4), _ev(0.9, 0.0, 0.01, p_eq=1e-3)
    _as_corrected(beaten, level)
    axes = {
        "decodable": make_axis("decodable", [beaten], 0.05),
        "learned": make_axis("learned", [level], 0.05),
        "used": make_axis("used", [e], 0.05),
    }
    assert axes["used"].status == "inconclusive"
    text = reason(axes, 0.05)  # type: ignore[arg-type]
    assert "lies above the margin 0.01 for this test alone (p 0.013)" in text and "corrected p 0.2" in text


def test_equivalence_is_corrected_over_the_run_as_a_second_family() -> None:
    """The p-values of equivalence of the learned and used axes are adjusted together (Holm: 3 p, 2 p,
    p), apart from the p-values of the "yes" tests, which they leave as they were; the decodable axis
    has no test of equivalence in the family."""
    pieces = [_ev(0.01, p_eq=0.01), _ev(0.02, p_eq=0.04), _ev(0.5, p_eq=0.5)]
    decodable = Evidence("decodable", "c", "m", 1.0, 0.5, 0.5, 0.4, 0.6, 0.001, p_equivalent=0.001)
    fixed = corrected([*pieces, decodable], "holm")
    assert [e.p_equivalent_adjusted for e in fixed[:3]] == pytest.approx([0.03, 0.08, 0.5])
    assert math.isnan(fixed[3].p_equivalent_adjusted)
    assert [e.p_adjusted for e in fixed] == pytest.approx([0.03, 0.04, 0.5, 0.004])  # 4 tests, as before


def test_an_equivalence_shown_alone_is_not_a_no_among_many_tests() -> None:
    """A learned effect shown below the margin at p 0.03 is "no" in a run of one test, and inconclusive
    among 99 others under Holm, with the reason naming both p-values."""
    alone = corrected([_ev(0.9, effect=0.0, ci_high=0.015, p_eq=0.03)], "holm")
    assert make_axis("learned", alone, 0.05).status == "no"
    crowd = corrected([_ev(0.9, effect=0.0, ci_high=0.015, p_eq=0.03)] + [_ev(0.5, p_eq=0.5)] * 99, "holm")
    learned = make_axis("learned", crowd[:1], 0.05)
    assert learned.status == "inconclusive"
    beaten = _ev(1e-4, 0.3, 0.4)
    _as_corrected(beaten)
    axes = {
        "decodable": make_axis("decodable", [beaten], 0.05),
        "learned": learned,
        "used": make_axis("used", [], 0.05),
    }
    text = reason(axes, 0.05)  # type: ignore[arg-type]
    assert "for this test alone (p of equivalence 0.03)" in text and "(corrected 1)" in text
