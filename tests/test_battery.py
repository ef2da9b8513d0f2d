"""The battery end to end on the planted residual testbed, and its handling of bad input."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from featurecontrols import report
from featurecontrols.apps.cli import main
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.battery import Battery
from featurecontrols.pipeline.results import RunResult
from featurecontrols.testbeds import Testbed, train_planted_residual


@pytest.fixture(scope="module")
def testbed() -> Testbed:
    return train_planted_residual()


@pytest.fixture(scope="module")
def full_run(testbed: Testbed) -> RunResult:
    return Battery(seed=0, progress=False).run(
        testbed.model, testbed.inputs, testbed.site, testbed.features, ground_truth=testbed.ground_truth
    )


def test_every_verdict_matches_the_ground_truth(full_run: RunResult) -> None:
    by_truth: dict[str, list[bool]] = {}
    for f in full_run.candidates:
        assert f.ground_truth is not None
        by_truth.setdefault(f.ground_truth, []).append(bool(f.correct))
    assert {truth: len(v) for truth, v in by_truth.items()} == {
        "model feature": 3,
        "dataset feature": 4,
        "absent": 2,
    }
    wrong = [(f.name, f.ground_truth, f.verdict) for f in full_run.candidates if not f.correct]
    assert wrong == []


def test_used_axis_alone_separates_model_features_from_the_rest(full_run: RunResult) -> None:
    # absent features: not decodable, their class gap is noise, so the interchange moves (and changes)
    # nothing and the change is bounded below the margin
    expected = {"model feature": "yes", "dataset feature": "no", "absent": "no"}
    for f in full_run.candidates:
        assert f.ground_truth is not None
        assert f.axes["used"].status == expected[f.ground_truth], f.name


def test_axes_carry_effects_intervals_and_corrected_p_values(full_run: RunResult) -> None:
    every = [e for f in full_run.candidates for axis in f.axes.values() for e in axis.evidence]
    assert len(every) == full_run.settings.n_tests_corrected == 9 * 4
    for e in every:
        assert e.ci_low <= e.effect + 1e-9 or e.axis == "learned"  # learned: CI of the strongest copy
        assert e.ci_low <= e.ci_high
        assert 0 < e.p_value <= e.p_adjusted <= 1
    # the shuffled-label null sits at chance for balanced labels
    for f in full_run.candidates:
        assert abs(f.axes["decodable"].evidence[0].control_score - 0.5) < 0.02


def test_same_seed_same_numbers_and_another_seed_differs(testbed: Testbed) -> None:
    names = ["xor_0_1", "x_6", "xor_6_7"]
    features = {n: testbed.features[n] for n in names}

    def run(seed: int) -> dict[str, object]:
        battery = Battery(n_weight_seeds=1, seed=seed, progress=False)
        d = battery.run(testbed.model, testbed.inputs, testbed.site, features).to_dict()
        d.pop("timings")
        return d

    first = run(3)
    assert run(3) == first
    assert run(4) != first


def test_demo_cli_writes_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--quiet", "--weight-seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "model feature: 3/3 verdicts match" in out
    data = json.loads((tmp_path / "report.json").read_text())
    assert {f["ground_truth"] for f in data["candidates"]} == {"model feature", "dataset feature", "absent"}
    dual = [c for c in data["steering"] if c["kind"] == "dual"]
    assert len(dual) == 7  # every decodable feature, steered as one set
    assert max(abs(v) for c in dual for v in c["off_target"]["mean"]) < 1e-4
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") > 9 and "steering along each kind of vector" in page


def test_demo_cli_with_counterfactuals_patches_on_the_used_axis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "demo",
        "--out",
        str(tmp_path),
        "--quiet",
        "--weight-seeds",
        "1",
        "--no-html",
        "--counterfactuals",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert all(f"{kind}: " in out and "verdicts match" in out for kind in ("model feature", "absent"))
    assert "model feature: 3/3" in out and "dataset feature: 4/4" in out and "absent: 2/2" in out
    data = json.loads((tmp_path / "report.json").read_text())
    used = {f["name"]: {e["control"] for e in f["axes"]["used"]["evidence"]} for f in data["candidates"]}
    assert all("counterfactual patching vs equal-norm noise" in controls for controls in used.values())


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def _tiny_data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return x, (x[:, 0] > 0).float()


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("length mismatch", "labels have 150 rows but the activations have 200"),
        ("single class", "has 1 distinct value"),
        ("nan activations", "NaN"),
        ("inf activations", "inf"),
        ("empty dataset", "empty"),
        ("unknown site", "no module named 'hiden'; nearest: hidden"),
        ("no features", "no candidate features"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(case: str, match: str, tmp_path: Path) -> None:
    model, (x, y) = _Tiny(), _tiny_data()
    site, features = "hidden", {"f": y}
    if case == "length mismatch":
        features = {"f": y[:150]}
    elif case == "single class":
        features = {"f": torch.ones_like(y)}
    elif case in ("nan activations", "inf activations"):
        x = x.clone()
        x[5, 0] = float("nan") if case == "nan activations" else float("inf")
    elif case == "empty dataset":
        x = x[:0]
    elif case == "unknown site":
        site = "hiden"
    elif case == "no features":
        features = {}
    path = tmp_path / "report.json"
    with pytest.raises(FeatureControlsError, match=match) as info:
        result = Battery(weight_controls=[], run_used=False, progress=False).run(model, x, site, features)
        report.write_json(result, path)
    assert "fix:" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_parameters_is_refused_by_the_weight_controls() -> None:
    model = nn.Sequential(nn.Identity(), nn.ReLU())
    x, y = _tiny_data()
    with pytest.raises(FeatureControlsError, match="no parameters to randomise"):
        Battery(run_used=False, progress=False).run(model, x, "0", {"f": y})
