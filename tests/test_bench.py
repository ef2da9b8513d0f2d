"""The benchmark of the controls: AUROC, intervals, confusion matrix and FPR, and a tiny --fast run."""

import json
import math
from pathlib import Path

import pytest
import records
import torch
from sklearn.metrics import roc_auc_score

from featurecontrols.apps.bench import (
    TestbedRuns,
    dictionary_metrics,
    neg_log10_p,
    summarise,
)
from featurecontrols.apps.cli import main
from featurecontrols.axes.evidence import (
    Axis,
    AxisName,
    AxisStatus,
    CandidateResult,
    Evidence,
    GroundTruth,
    Verdict,
)
from featurecontrols.pipeline.results import RunResult
from featurecontrols.stats import auroc_delong, wilson_interval


def test_auroc_matches_sklearn_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 5, (30,), generator=g).double() + 1.0
    neg = torch.randint(0, 5, (40,), generator=g).double()
    auc, low, high = auroc_delong(pos, neg, 0.95)
    labels = [1] * 30 + [0] * 40
    assert auc == pytest.approx(roc_auc_score(labels, torch.cat([pos, neg]).tolist()))
    assert low < auc < high


def test_auroc_delong_interval_by_hand() -> None:
    # psi = [[1, 1, .5], [1, 1, 1], [1, 1, 1]]: AUROC 8.5/9; V10 = V01 = (1, 1, 5/6) up to order,
    # each with sample variance 1/108, so Var = 2 * (1/108) / 3 and the half-width is 1.96 sqrt(Var).
    auc, low, high = auroc_delong(torch.tensor([3.0, 4.0, 5.0]), torch.tensor([1.0, 2.0, 3.0]), 0.95)
    half = 1.959964 * math.sqrt(2 / 108 / 3)
    assert auc == pytest.approx(8.5 / 9)
    assert low == pytest.approx(auc - half, abs=1e-6)
    assert high == pytest.approx(1.0)  # auc + half > 1 is clipped


def test_auroc_perfect_separation_and_too_few() -> None:
    assert auroc_delong(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0]), 0.95) == (1.0, 1.0, 1.0)
    assert auroc_delong(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0]), 0.95) == (0.0, 0.0, 0.0)
    auc, low, high = auroc_delong(torch.tensor([2.0]), torch.tensor([0.0, 1.0]), 0.95)
    assert auc == 1.0 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        auroc_delong(torch.tensor([]), torch.tensor([1.0]), 0.95)


def test_wilson_interval_known_values() -> None:
    z2 = 1.959964**2
    low, high = wilson_interval(0, 10, 0.95)
    assert (low, high) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-6)  # (0, 0.2775)
    low, high = wilson_interval(5, 10, 0.95)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 2, 0.95)


def test_neg_log10_p_stays_finite() -> None:
    assert neg_log10_p(1e-3) == pytest.approx(3.0)
    assert math.isfinite(neg_log10_p(0.0))


def _evidence(axis: AxisName, control: str, effect: float, p: float) -> Evidence:
    return Evidence(axis, control, "m", 0.0, 0.0, effect, effect, effect, p, p_adjusted=p)


def _feature(
    name: str, truth: GroundTruth | None, verdict: Verdict, learned_effect: float, learned_p: float
) -> CandidateResult:
    learned: AxisStatus = "yes" if learned_p < 0.05 and learned_effect > 0 else "no"
    axes: dict[AxisName, Axis] = {
        "decodable": Axis("decodable", "yes", (_evidence("decodable", "shuffled labels", 0.5, 0.001),)),
        "learned": Axis("learned", learned, (_evidence("learned", "reinit", learned_effect, learned_p),)),
        "used": Axis("used", "not run", ()),
    }
    return CandidateResult("s", name, "labelled feature", verdict, axes, ground_truth=truth)


def test_summary_counts_confusion_fpr_and_auroc() -> None:
    features = [
        _feature("m1", "model feature", "model feature", 0.3, 0.001),
        _feature("m2", "model feature", "dataset feature", 0.1, 0.2),
        _feature("d1", "dataset feature", "dataset feature", 0.0, 1.0),
        _feature("d2", "dataset feature", "model feature", 0.2, 0.01),
        _feature("d3", "dataset feature", "dataset feature", -0.1, 1.0),
        _feature("a1", "absent", "not found", -0.2, 1.0),
    ]
    result = RunResult(sites=("s",), candidates=tuple(features), settings=records.settings())
    s = summarise(TestbedRuns("toy", {0: result}, {0: {}}, 1.0), alpha=0.05, level=0.95)
    assert s.counts == {"model feature": 2, "dataset feature": 3, "absent": 1}
    assert s.confusion["model feature"] == {
        "model feature": 1, "dataset feature": 1, "not found": 0, "inconclusive": 0,
    }  # fmt: skip
    assert s.confusion["dataset feature"]["model feature"] == 1
    assert s.confusion["absent"]["not found"] == 1
    assert s.fpr is not None and (s.fpr.k, s.fpr.n) == (1, 3)
    assert (s.fpr.low, s.fpr.high) == pytest.approx(wilson_interval(1, 3, 0.95))
    assert s.fpr_above_alpha is True
    assert s.absent_called_model is not None and s.absent_called_model.k == 0
    by_control = {c.control: c for c in s.controls}
    # learned effects: model (0.3, 0.1) vs dataset (0.0, 0.2, -0.1): 5 of 6 pairs ordered right.
    assert by_control["reinit"].auroc_effect is not None
    assert by_control["reinit"].auroc_effect.value == pytest.approx(5 / 6)
    assert by_control["shuffled labels"].auroc_effect is not None
    assert by_control["shuffled labels"].auroc_effect.value == pytest.approx(0.5)  # all tied
    passes = by_control["reinit"].passes
    assert passes["model feature"] is not None and passes["model feature"].k == 1
    assert passes["dataset feature"] is not None and passes["dataset feature"].k == 1
    assert s.axes["decodable"]["absent"] is not None and s.axes["decodable"]["absent"].k == 1
    assert s.axes["used"]["model feature"] is not None and s.axes["used"]["model feature"].k == 0


def test_fast_bench_writes_valid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bench.json"
    code = main(["bench", "--fast", "--testbeds", "planted_residual", "--json", str(path), "--quiet"])
    assert code == 0
    out = json.loads(path.read_text())
    (testbed,) = out["testbeds"]
    assert testbed["name"] == "planted_residual"
    assert testbed["counts"] == {"model feature": 3, "dataset feature": 4, "absent": 2}
    assert sum(sum(row.values()) for row in testbed["confusion"].values()) == 9
    assert {c["control"] for c in testbed["controls"]} >= {"shuffled labels", "control task"}
    assert len(testbed["features"]) == 9
    printed = capsys.readouterr().out
    assert "== planted_residual" in printed and "FPR" in printed


def test_unknown_testbed_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--fast", "--testbeds", "nope", "--quiet"]) == 2
    assert "unknown testbed" in capsys.readouterr().err


def test_a_rerun_of_the_bench_resumes_from_its_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featurecontrols.pipeline import executors

    ran: list[object] = []
    real = executors.run_job
    monkeypatch.setattr(executors, "run_job", lambda *a: ran.append(a[1]) or real(*a))
    paths = [tmp_path / f"bench{i}.json" for i in range(2)]
    for path in paths:
        argv = ["bench", "--fast", "--testbeds", "pass_through", "--quiet", "--json", str(path)]
        assert main([*argv, "--run-dir", str(tmp_path / "runs")]) == 0
    first = len(ran)
    assert first > 0
    main(["bench", "--fast", "--testbeds", "pass_through", "--quiet", "--run-dir", str(tmp_path / "runs")])
    assert len(ran) == first  # the reruns read every job back
    documents = [records.without_times(json.loads(p.read_text())) for p in paths]
    assert documents[0] == documents[1]


def test_bench_sizes_are_checked_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--fast", "--seeds", "0", "--quiet"]) == 2
    assert "--seeds must be an integer >= 1" in capsys.readouterr().err


def test_summary_leaves_out_candidates_without_truth_and_scores_each_axis_on_its_own_truth() -> None:
    features = [
        _feature("sae/0", "model feature", "model feature", 0.6, 0.001),  # computed: learned
        _feature("sae/1", "model feature", "model feature", 0.01, 0.5),  # carried and read
        _feature("sae/2", "dataset feature", "dataset feature", 0.02, 0.6),
        _feature("sae/3", None, "inconclusive", 0.9, 0.001),  # matches no variable
    ]
    result = RunResult(sites=("s",), candidates=tuple(features), settings=records.settings())
    truth: dict[str, dict[AxisName, bool]] = {
        "sae/0": {"learned": True}, "sae/1": {"learned": False}, "sae/2": {"learned": False},
    }  # fmt: skip
    s = summarise(TestbedRuns("toy", {0: result}, {0: {}}, 1.0, {0: truth}), alpha=0.05, level=0.95)
    assert s.unmatched == 1
    assert s.counts == {"model feature": 2, "dataset feature": 1, "absent": 0}
    reinit = next(c for c in s.controls if c.control == "reinit")
    assert reinit.auroc_effect is not None and reinit.auroc_effect.value == pytest.approx(0.5)
    assert reinit.auroc_axis_truth is not None and reinit.auroc_axis_truth.value == pytest.approx(1.0)


def test_dictionary_metrics_are_averaged_per_fit_kind_over_seeds_and_copies() -> None:
    def run(trained: float, copies: tuple[float, float]) -> RunResult:
        fits = {"trained": {"l0": trained}} | {f"reinit #{i}": {"l0": v} for i, v in enumerate(copies)}
        settings = records.settings()
        return RunResult(sites=("s",), candidates=(), settings=settings, dictionaries={"s/sae": fits})

    runs = TestbedRuns("toy", {0: run(2.0, (3.0, 5.0)), 1: run(4.0, (1.0, 3.0))}, {}, 1.0)
    assert dictionary_metrics(runs) == {"trained": {"l0": 3.0}, "reinit": {"l0": 3.0}}


def test_the_bench_judges_latents_against_frozen_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--dictionary-baselines``: the frozen fits join the found axis and the aggregate metrics."""
    path = tmp_path / "bench.json"
    argv = ["bench", "--fast", "--testbeds", "sparse_latents", "--quiet", "--json", str(path)]
    assert main([*argv, "--dictionary-baselines", "frozen decoder"]) == 0
    (testbed,) = json.loads(path.read_text())["testbeds"]
    assert ("decodable", "frozen decoder") in {(c["axis"], c["control"]) for c in testbed["controls"]}
    assert set(testbed["dictionaries"]) == {"trained", "reinitialised", "spectrum-matched", "frozen decoder"}
    assert "aggregate dictionary metrics" in capsys.readouterr().out
    assert main([*argv, "--dictionary-baselines", "frozen bias"]) == 2
    assert "unknown dictionary baseline" in capsys.readouterr().err
