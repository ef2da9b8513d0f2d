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


def _ev(p: float, effect: float = 0.1, ci_high: float = 0.2, margin: float = 0.02) -> Evidence:
    return Evidence("learned", "c", "m", 1.0, 0.9, effect, effect - 0.1, ci_high, p, margin=margin)


def test_axis_needs_every_piece_significant_after_correction() -> None:
    evidence = corrected([_ev(0.001), _ev(0.02)], "holm")
    assert [e.p_adjusted for e in evidence] == pytest.approx([0.002, 0.02])
    assert make_axis("learned", evidence, 0.05).status == "yes"
    assert make_axis("learned", evidence, 0.01).status == "inconclusive"  # neither shown
    assert make_axis("learned", [], 0.05).status == "not run"
    negative = corrected([_ev(0.0001, effect=-0.1, ci_high=-0.05)], "holm")
    assert make_axis("learned", negative, 0.05).status == "no"  # the interval lies below the margin


def test_no_needs_equivalence_and_learned_needs_every_control() -> None:
    """learned = no when the trained model is equivalent to any one control; used = no only when every
    used test is; a test that neither rejects nor shows equivalence leaves the axis inconclusive."""
    beaten, level, unclear = _ev(1e-4, 0.3, 0.4), _ev(0.9, 0.0, 0.01), _ev(0.3, 0.01, 0.05)
    for e in (beaten, level, unclear):
        object.__setattr__(e, "p_adjusted", e.p_value)
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
    beaten = _ev(1e-4, 0.3, 0.4)
    object.__setattr__(beaten, "p_adjusted", 1e-4)
    axes = {
        "decodable": make_axis("decodable", [beaten], 0.05),
        "learned": make_axis("learned", [_ev(0.9, 0.0, 0.01)], 0.05),
        "used": make_axis("used", [e], 0.05),
    }
    assert axes["used"].status == "inconclusive"
    text = reason(axes, 0.05)  # type: ignore[arg-type]
    assert "lies above the margin 0.01 for this test alone (p 0.013)" in text and "corrected p 0.2" in text
