import pytest

from featurecontrols.axes.evidence import Evidence
from featurecontrols.axes.verdict import corrected, decide, make_axis


@pytest.mark.parametrize(
    ("decodable", "learned", "used", "verdict"),
    [
        ("no", "yes", "yes", "not found"),
        ("yes", "yes", "no", "model feature"),
        ("yes", "no", "yes", "model feature"),
        ("yes", "no", "no", "dataset feature"),
        ("yes", "no", "not run", "inconclusive"),
        ("yes", "not run", "not run", "inconclusive"),
        ("not run", "yes", "yes", "inconclusive"),
    ],
)
def test_decision_table(decodable: str, learned: str, used: str, verdict: str) -> None:
    assert decide(decodable, learned, used) == verdict  # type: ignore[arg-type]


def _ev(p: float, effect: float = 0.1) -> Evidence:
    return Evidence("learned", "c", "m", 1.0, 0.9, effect, 0.0, 0.2, p)


def test_axis_needs_every_piece_significant_after_correction() -> None:
    evidence = corrected([_ev(0.001), _ev(0.02)], "holm")
    assert [e.p_adjusted for e in evidence] == pytest.approx([0.002, 0.02])
    assert make_axis("learned", evidence, 0.05).status == "yes"
    assert make_axis("learned", evidence, 0.01).status == "no"
    assert make_axis("learned", [], 0.05).status == "not run"
    negative = corrected([_ev(0.0001, effect=-0.1)], "holm")
    assert make_axis("learned", negative, 0.05).status == "no"
