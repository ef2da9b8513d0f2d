"""One pipeline for every candidate, every control and every finder: the contract matrix."""

from collections.abc import Sequence

import pytest
import torch
from sklearn.base import clone
from torch import nn

from featurecontrols import Battery, Direction, Labelled, Latents
from featurecontrols.adapters import TorchModel
from featurecontrols.axes.evidence import AXES
from featurecontrols.controls.base import LabelControl
from featurecontrols.controls.causal.resample_ablation import ResampleAblation
from featurecontrols.controls.label.control_task import ControlTask
from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.controls.registry import INPUT_CONTROLS, WEIGHT_CONTROLS
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import (
    PCA,
    LogisticProbe,
    MassMeanProbe,
    MLPProbe,
    MLPRegression,
    RidgeProbe,
    RidgeRegression,
    SparseAutoencoder,
)
from featurecontrols.finders.base import Probe
from featurecontrols.finders.projection_probe import ProjectionProbe
from featurecontrols.measures.steering_vectors import SteeringVectors
from featurecontrols.params import Params
from featurecontrols.pipeline.results import RunResult
from featurecontrols.testbeds import Testbed, train_planted_residual

N = 400


def _small() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random two-layer MLP on integer-valued inputs; the label (x_0 > 0) is in its hidden layer."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randint(-3, 4, (N, 6), generator=g).float()
    cells = ((x[:, :3] > 0).long() * torch.tensor([1, 2, 4])).sum(dim=1)
    return model, x, (x[:, 0] > 0).float(), cells


def _battery(**kwargs: object) -> Battery:
    settings: dict[str, object] = {
        "weight_controls": [control() for control in WEIGHT_CONTROLS.values()],
        "n_weight_seeds": 1, "run_used": False, "correction": "bh", "n_shuffles": 50, "n_latent_null": 50,
        "n_bootstrap": 20, "progress": False,
    }  # fmt: skip
    return Battery(**(settings | kwargs))  # type: ignore[arg-type]


PROBES: Sequence[Probe] = (RidgeProbe(), LogisticProbe(), MassMeanProbe(), MLPProbe(hidden=8, steps=40))


def _label_controls(cells: torch.Tensor) -> list[LabelControl]:
    return [ShuffledLabels(), ShuffledLabels(groups=torch.arange(N) % 4), ControlTask(cells)]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: type(p).__name__)
def test_every_probe_under_every_label_and_weight_control(probe: Probe) -> None:
    model, x, y, cells = _small()
    for label_control in _label_controls(cells):
        result = _battery(probe=probe, label_control=label_control).run(model, x, "1", {"x0": y}, cells=cells)
        (c,) = result.candidates
        assert [e.control for e in c.axes["decodable"].evidence] == [label_control.name]
        learned = [e.control for e in c.axes["learned"].evidence]
        assert learned == [*WEIGHT_CONTROLS, "control task"]
        _check_evidence(result)
        methods = {w.name: w.methods for w in result.settings.weight_controls}
        assert set(methods) == set(WEIGHT_CONTROLS) and all(sum(m.values()) == 4 for m in methods.values())


@pytest.mark.parametrize(
    "finder",
    [PCA(4), SparseAutoencoder(16, "topk", k=2, batch_size=64), SparseAutoencoder(16, "batchtopk", k=2),
     SparseAutoencoder(16, "relu", l1_coefficient=0.01, batch_size=64)],
    ids=lambda f: repr(f),
)  # fmt: skip
def test_every_unsupervised_finder_under_every_input_and_weight_control(
    finder: PCA | SparseAutoencoder,
) -> None:
    model, x, _, _ = _small()
    inputs = [
        RandomInputs_uniform(),
        INPUT_CONTROLS["random inputs"](),
        INPUT_CONTROLS["planted sparse features"](16, 2),
    ]
    result = _battery(input_controls=inputs).run(model, x, "1", [Latents("d", "1", finder)])
    assert len(result.candidates) == finder.n_latents
    for c in result.candidates:
        controls = [e.control for e in c.axes["learned"].evidence]
        assert controls == [*WEIGHT_CONTROLS, *(i.name for i in inputs)]
        assert c.axes["decodable"].evidence[0].control == "refit with another seed"
    assert set(result.dictionaries["1/d"]) == {
        "trained",
        *(f"{name} #0" for name in WEIGHT_CONTROLS),
        *(i.name for i in inputs),
    }
    _check_evidence(result)


def RandomInputs_uniform() -> Params:  # noqa: N802 (reads like the control it makes)
    return INPUT_CONTROLS["random inputs"]("uniform")


def _check_evidence(result: RunResult) -> None:
    """Every test made and corrected once: effects inside their intervals, p-values in (0, 1]."""
    every = [e for c in result.candidates for a in c.axes.values() for e in a.evidence]
    assert len(every) == result.settings.n_tests_corrected
    for e in every:
        assert 0 < e.p_value <= 1 and e.p_value <= e.p_adjusted <= 1, e
        if e.axis != "learned" or e.control not in WEIGHT_CONTROLS:
            continue
        assert e.ci_low - 1e-9 <= e.effect <= e.ci_high + 1e-9, e


@pytest.fixture(scope="module")
def planted() -> Testbed:
    return train_planted_residual()


def test_every_candidate_kind_gets_a_three_axis_verdict(planted: Testbed) -> None:
    """Labelled features, a probe's direction, a steering vector and the latents of a small SAE, through
    one battery run at the planted testbed's site."""
    adapter = TorchModel(planted.model)
    site = adapter.resolve(planted.site)
    X = adapter.activations(list(planted.inputs.split(1024)), [site])[planted.site]
    names = ["xor_0_1", "x_6"]
    Y = torch.stack([planted.features[n] for n in names], dim=1)
    probe, dual = RidgeProbe().fit(X, Y).directions_, SteeringVectors().fit(X, Y).vectors_["dual"]
    truth = planted.ground_truth
    candidates = [
        *(Labelled(n, planted.features[n], truth[n]) for n in ("xor_0_1", "x_6", "xor_6_7")),
        *(Direction(f"probe {n}", probe[i], planted.site, planted.features[n], ground_truth=truth[n])
          for i, n in enumerate(names)),
        *(Direction(f"steer {n}", dual[i], planted.site, planted.features[n], ground_truth=truth[n])
          for i, n in enumerate(names)),
        Direction("steer unlabelled", dual[0], planted.site),
        Latents("sae", planted.site, SparseAutoencoder(8, k=2, batch_size=256, n_epochs=2)),
    ]  # fmt: skip
    battery = Battery(n_weight_seeds=1, correction="bh", n_bootstrap=100, progress=False)
    result = battery.run(planted.model, planted.inputs, planted.site, candidates)
    kinds = {c.kind for c in result.candidates}
    assert kinds == {"labelled feature", "direction", "dictionary latent"}
    assert len(result.candidates) == 3 + 4 + 1 + 8
    for c in result.candidates:
        if c.name == "steer unlabelled":  # no labels: nothing to decode, so only the used axis runs
            assert [c.axes[a].status for a in AXES][:2] == [
                "not run",
                "not run",
            ] and c.verdict == "inconclusive"
            continue
        assert all(c.axes[a].evidence for a in AXES), c.name
        if c.ground_truth is not None:
            assert c.correct, (c.name, c.ground_truth, c.verdict)
    by_name = {c.name: c for c in result.candidates}
    assert by_name["steer unlabelled"].axes["used"].status == "yes"  # the dual vector of xor_0_1 is used
    _check_evidence(result)


def test_resample_ablation_on_the_used_axis(planted: Testbed) -> None:
    """The used axis with the coordinate resampled from other inputs: the trained XOR is used, the
    unused input variable (carried to the site by the residual stream) is not."""
    features = {n: planted.features[n] for n in ("xor_0_1", "x_6")}
    battery = Battery(
        used_controls=[ResampleAblation()], weight_controls=[], n_random_directions=200, progress=False
    )
    result = battery.run(planted.model, planted.inputs, planted.site, features)
    used = {c.name: c.axes["used"] for c in result.candidates}
    assert used["xor_0_1"].status == "yes" and used["x_6"].status == "no"
    assert used["xor_0_1"].evidence[0].control == ResampleAblation.name


def test_a_null_too_small_to_survive_the_correction_is_refused_with_the_smallest_that_can() -> None:
    model, x, _, _ = _small()
    features = {f"x{i}": (x[:, i] > 0).float() for i in range(6)}
    battery = Battery(weight_controls=[], run_used=False, n_shuffles=100, progress=False)
    with pytest.raises(
        FeatureControlsError, match=r"n_shuffles=100 is too small.*\n  fix: use n_shuffles >= 120"
    ):
        battery.run(model, x, "1", features)  # Holm over 6 tests needs B + 1 > 6 / 0.05
    assert battery.set_params(n_shuffles=120).run(model, x, "1", features).settings.n_shuffles == 120


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpha": 5}, "alpha must be in \\(0, 1\\)"),
        ({"confidence": 95}, "confidence must be in \\(0, 1\\)"),
        ({"correction": "bonferoni"}, "unknown correction 'bonferoni'"),
        ({"n_bootstrap": 0}, "n_bootstrap must be an integer >= 1"),
        ({"n_shuffles": 0}, "n_shuffles must be an integer >= 1"),
        ({"test_fraction": 1.5}, "test_fraction must be in"),
        ({"n_weight_seeds": 2.5}, "n_weight_seeds must be an integer"),
        ({"seed": "0"}, "seed must be an integer"),
    ],
)
def test_battery_parameters_are_checked_when_given(params: dict[str, object], message: str) -> None:
    with pytest.raises(FeatureControlsError, match=message) as info:
        Battery(**params)  # type: ignore[arg-type]
    assert "fix:" in str(info.value)
    with pytest.raises(FeatureControlsError, match=message):
        Battery().set_params(**params)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (torch.ones(N), r"bare labels \(Tensor\); each needs a name"),
        ([0, 1] * (N // 2), r"bare labels \(list\); each needs a name"),
        (torch.ones(N).numpy(), r"bare labels \(ndarray\)"),
        ([object()], "unknown candidate type"),
        ({"x0": [0, 1] * (N // 2)}, "the labels of 'x0' must be a torch.Tensor, got list"),
    ],
)
def test_labels_in_the_wrong_container_are_named(features: object, message: str) -> None:
    model, x, _, _ = _small()
    with pytest.raises(FeatureControlsError, match=message):
        _battery().run(model, x, "1", features)  # type: ignore[arg-type]


FINDERS: Sequence[Params] = (
    RidgeProbe(alpha=0.1), RidgeRegression(), LogisticProbe(C=2.0), MassMeanProbe(covariance=True),
    MLPProbe(hidden=4, steps=5), MLPRegression(hidden=4, steps=5), ProjectionProbe(torch.ones(6)), PCA(2),
    SparseAutoencoder(8, k=2, batch_size=32),
)  # fmt: skip


@pytest.mark.parametrize("finder", FINDERS, ids=lambda f: type(f).__name__)
def test_finders_follow_the_scikit_learn_contract(finder: Params) -> None:
    copy = clone(finder)
    assert type(copy) is type(finder) and repr(copy) == repr(finder)
    assert copy.get_params(deep=False).keys() == finder.get_params(deep=False).keys()
    X = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    y = (X[:, 0] > 0).float()
    predict = getattr(copy, "predict", None) or getattr(copy, "encode")  # noqa: B009
    with pytest.raises(FeatureControlsError, match="not fitted yet"):
        predict(X)
    fitted = copy.fit(X) if isinstance(copy, (PCA, SparseAutoencoder)) else copy.fit(X, y)  # type: ignore[attr-defined]
    assert fitted is copy and copy.n_features_in_ == 6  # type: ignore[attr-defined]
    assert not hasattr(clone(copy), "n_features_in_")  # a clone is unfitted
    with pytest.raises(FeatureControlsError, match="fitted on width 6"):
        predict(X[:, :5])
    first = next(iter(finder.get_params(deep=False)))
    assert clone(finder).set_params(**{first: finder.get_params()[first]}).get_params(deep=False).keys()
