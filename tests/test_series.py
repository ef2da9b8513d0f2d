"""Controls across training (pipeline/series.py): one family of tests over every checkpoint, its
correction equal to the correction of all the runs' raw p-values together, checked inputs, and on
sparse parity the relevant bits becoming model features as the model learns them."""

import json
import math
from pathlib import Path

import pytest
import records
import torch

from featurecontrols import Battery
from featurecontrols.apps.cli import main
from featurecontrols.apps.series import default_features
from featurecontrols.axes.evidence import AXES
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.checkpoint import Checkpoint
from featurecontrols.pipeline.series import run_series
from featurecontrols.report.series_html import series_timeline
from featurecontrols.stats import adjust_p_values
from featurecontrols.testbeds.base import Testbed
from featurecontrols.testbeds.modular_addition import (
    ModularAdditionConfig,
    modular_addition_testbed,
    progress_measures,
    train_modular_addition,
)
from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity

PATCHING = "counterfactual patching vs equal-norm noise"


@pytest.fixture(scope="module")
def parity() -> Testbed:
    return train_sparse_parity(SparseParityConfig(seed=0), checkpoint_every=1000)


def _battery() -> Battery:
    return Battery(
        weight_controls=[ReinitialisedWeights()], n_weight_seeds=1, correction="bh", n_bootstrap=200,
        used_examples=512, seed=0, progress=False,
    )  # fmt: skip


def test_checkpoints_are_checked_before_any_run(parity: Testbed) -> None:
    tb = parity
    good = tb.checkpoints[0]
    bad = [
        ([], "no checkpoints"),
        ([tb.checkpoints[1], good], "increase strictly"),
        ([Checkpoint(0, {"fc.weight": good.state["fc.weight"]})], "missing"),
    ]
    for checkpoints, message in bad:
        with pytest.raises(FeatureControlsError, match=message):
            run_series(_battery(), tb.model, checkpoints, tb.inputs, tb.site, {"x_0": tb.features["x_0"]})


def test_the_series_is_judged_by_the_training_and_corrected_as_one_family(parity: Testbed) -> None:
    tb = parity
    support = [n for n, g in tb.ground_truth.items() if g == "model feature" and n != "parity"][:1]
    unused = [n for n, g in tb.ground_truth.items() if g == "dataset feature"][:1]
    candidates = [c for c in tb.candidates() if c.name in {*support, *unused}]
    series = run_series(_battery(), tb.model, tb.checkpoints, tb.inputs, tb.site, candidates)
    assert series.steps == [0, 1000, 2000, 3000]
    pieces = [e for run in series.runs for c in run.candidates for a in AXES for e in c.axes[a].evidence]
    assert series.n_tests == len(pieces) == series.runs[0].settings.n_tests_corrected
    raw = torch.tensor([e.p_value for e in pieces], dtype=torch.float64)
    expected = adjust_p_values(raw, "bh")  # the whole series is one family
    assert torch.allclose(torch.tensor([e.p_adjusted for e in pieces], dtype=torch.float64), expected)
    accuracy = [c.measures["accuracy"] for c in series.checkpoints]
    assert accuracy[0] < 0.6 and accuracy[-1] > 0.95  # the model learns parity over the series
    for name in support:  # patching: no more than noise at initialisation, far more once learned
        effects = series.effect(name, "used", PATCHING)
        assert effects[0] < 0.3 and effects[-1] > 3.0
        assert series.trajectory(name)[-1].verdict == "model feature"
        assert series.first_step(name) is not None
    for name in unused:  # once parity is learned, an irrelevant bit is a dataset feature
        assert series.trajectory(name)[-1].verdict == "dataset feature"
        assert series.effect(name, "used", PATCHING)[-1] < 0


def test_a_series_reuses_only_the_copies_that_do_not_depend_on_the_checkpoint(parity: Testbed) -> None:
    """Re-initialised copies come out bit-identical at every checkpoint, so their activations and
    probe fits (2 jobs) are carried from run to run; spectrum-matched copies read the trained weights
    and are redone; every number is the same as without reuse."""
    tb = parity
    battery = Battery(
        weight_controls=[ReinitialisedWeights(), SpectrumMatchedWeights()], n_weight_seeds=1,
        run_used=False, correction="bh", n_bootstrap=100, seed=0, progress=False,
    )  # fmt: skip
    candidates = {name: tb.features[name] for name in ("x_0", "parity")}
    series = [
        run_series(battery, tb.model, tb.checkpoints, tb.inputs, tb.site, candidates, reuse=reuse)
        for reuse in (True, False)
    ]
    assert series[0].reused == (0, 2, 2, 2) and series[1].reused == ()
    documents = [records.without_times(s.to_dict()) for s in series]
    assert isinstance(documents[0], dict) and isinstance(documents[1], dict)
    assert documents[0].pop("reused_jobs") == [0, 2, 2, 2]
    assert documents[1].pop("reused_jobs") == []
    assert documents[0] == documents[1]


def test_the_cli_follows_features_over_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["series", "sparse_parity", "--every", "1500", "--features", "parity", "x_0"]
    assert main([*argv, "--used-examples", "256", "--out", str(tmp_path), "--quiet"]) == 0
    document = json.loads((tmp_path / "series.json").read_text(encoding="utf-8"))
    assert document["steps"] == [0, 1500, 3000] and len(document["runs"]) == 3
    assert document["measures"][-1]["accuracy"] > 0.95
    printed = capsys.readouterr().out
    assert "parity (model feature)" in printed and "tests corrected together (bh)" in printed
    page = (tmp_path / "series.html").read_text(encoding="utf-8")
    # timeline; loss, accuracy; per feature 5 tests (decodable, 2 weight controls, 2 used)
    assert page.count("<svg") == 1 + 2 + 2 * 5
    assert (tmp_path / "series.svg").read_text(encoding="utf-8").startswith("<svg xmlns=")
    assert main(["series", "tms", "--quiet"]) == 2


def test_modular_addition_keeps_checkpoints_with_the_final_models_progress_measures() -> None:
    """A short run (p = 13, 60 steps): weights every 20 steps and at the end, each with log10 losses
    whose restricted and excluded losses use the final model's key frequencies; the testbed carries
    them, and the series runs on it."""
    config = ModularAdditionConfig(p=13, d_model=32, d_mlp=64, n_heads=2, d_head=16, steps=60)
    run = train_modular_addition(config, progress=False, checkpoint_every=20)
    assert [c.step for c in run.checkpoints] == [0, 20, 40, 60]
    keys = run.key_frequencies
    final = progress_measures(run.model, keys=keys)
    last = run.checkpoints[-1].measures
    assert set(last) == {
        "log10 train loss",
        "log10 test loss",
        "log10 restricted loss",
        "log10 excluded loss",
        "test accuracy",
    }
    assert last["log10 restricted loss"] == pytest.approx(math.log10(final.restricted_loss))
    assert last["log10 test loss"] == pytest.approx(math.log10(final.test_loss))
    testbed = modular_addition_testbed(run)
    assert testbed.checkpoints == run.checkpoints
    names = default_features(testbed)
    model = [n for n in names if testbed.ground_truth[n] == "model feature"]
    assert len(model) == 2 * len(keys) and names[-2:] == [f"cos_a_{keys[0]}", names[-1]]
    assert int(names[-1].rsplit("_", 1)[1]) not in keys  # the input at a non-key frequency
    with pytest.raises(FeatureControlsError, match="checkpoint_every"):
        train_modular_addition(config, progress=False, checkpoint_every=-1)


def test_the_series_figure_bands_every_verdict(parity: Testbed) -> None:
    series = run_series(
        _battery(),
        parity.model,
        parity.checkpoints[:2],
        parity.inputs,
        parity.site,
        {"x_0": parity.features["x_0"]},
    )
    svg = series_timeline(series, "parity")
    assert svg.startswith("<svg xmlns=") and svg.count("<rect") == 1 + 2  # background, one cell per step
    assert svg.count("<polyline") == len(parity.checkpoints[0].measures)
    assert all(
        f"x_0 at step {s}: {c.verdict}" in svg
        for s, c in zip(series.steps, series.trajectory("x_0"), strict=True)
    )
