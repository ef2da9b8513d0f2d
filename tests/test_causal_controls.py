"""Causal controls: interventions, steering vectors (dual basis), erasure, on TMS and the planted model."""

import pytest
import torch
from torch import Tensor, nn

from featurecontrols.adapters import TorchModel
from featurecontrols.adapters.interventions import (
    AddVector,
    Patch,
    ProjectOut,
    SetProjection,
    applied,
    site_tensor,
)
from featurecontrols.adapters.sites import read_activations
from featurecontrols.axes import used
from featurecontrols.axes.evidence import Bootstrap
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.erasure import Erasure
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.mass_mean_probe import class_mean_directions
from featurecontrols.measures.causal_effects import SteeringEffects, bernoulli_log_probs
from featurecontrols.measures.steering_vectors import SteeringVectors, dual_basis
from featurecontrols.testbeds import Testbed, train_planted_residual
from featurecontrols.testbeds.toy_superposition import ToySuperpositionConfig, train_toy_superposition


@pytest.fixture(scope="module")
def planted() -> Testbed:
    return train_planted_residual()


def _tms(p: float) -> Testbed:
    return train_toy_superposition(ToySuperpositionConfig(feature_probabilities=(p,), instance=0, steps=1500))


def test_tms_geometry_antipodal_pairs_and_fewer_dimensions_than_features() -> None:
    moderate, sparse = _tms(0.3), _tms(0.03)
    assert moderate.checks["n_antipodal_pairs"] >= 2
    assert moderate.checks["mean_dimensionality_represented"] == pytest.approx(0.5, abs=0.05)
    assert sparse.checks["n_represented"] > 5  # more features than the 5 dimensions
    assert sparse.checks["dims_per_feature"] < 1.0


def test_dual_vectors_steer_one_probe_with_10x_less_off_target_than_probe_vectors() -> None:
    tms = _tms(0.03)
    names = [n for n, truth in tms.ground_truth.items() if truth == "model feature"][:5]
    batches = list(torch.split(tms.inputs, 1000))
    X = read_activations(tms.model, batches, ["hidden"])["hidden"]
    steering = SteeringVectors().fit(X, torch.stack([tms.features[n] for n in names], dim=1))
    unit = nn.functional.normalize(steering.read_off_, dim=1)
    off_diagonal = (unit @ unit.T - torch.eye(len(names), dtype=torch.float64)).abs()
    assert float(off_diagonal.max()) > 0.2  # the probe directions are far from orthogonal
    effects = SteeringEffects(alphas=(1.0,), log_probs=None, n_bootstrap=100).fit(
        tms.model, batches, "hidden", steering, names
    )
    for name in names:
        dual, probe = effects.curves_["dual", name], effects.curves_["probe", name]
        assert float(dual.readout.mean[0]) == pytest.approx(1.0, abs=1e-4)  # equal target movement
        assert float(probe.readout.mean[0]) == pytest.approx(1.0, abs=1e-4)
        assert 10 * float(dual.off_target.mean[0]) < float(probe.off_target.mean[0])


def _output_accuracy(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    with torch.no_grad():
        return ((model(inputs) > 0).float() == targets).float().mean(dim=0)


def test_ablating_a_model_feature_breaks_its_output_and_a_dataset_feature_does_not(planted: Testbed) -> None:
    X = read_activations(planted.model, [planted.inputs], ["resid_post"])["resid_post"]
    targets = torch.stack([planted.features[f"xor_{a}_{b}"] for a, b in ((0, 1), (2, 3), (4, 5))], 1).float()
    clean = _output_accuracy(planted.model, planted.inputs, targets)
    assert bool((clean > 0.99).all())
    for name, output in (("xor_0_1", 0), ("x_6", None)):
        direction = class_mean_directions(X, planted.features[name].float()[:, None])[0]
        with applied(planted.model, [("resid_post", ProjectOut(direction, mean=X.double().mean(0)))]):
            ablated = _output_accuracy(planted.model, planted.inputs, targets)
        if output is None:
            assert bool((ablated > 0.99).all())  # a dataset feature: nothing reads it
        else:
            assert float(ablated[output]) < 0.7  # the model feature's own output breaks
            assert bool((ablated[[1, 2]] > 0.99).all())  # and only that one


def test_erasing_a_model_feature_costs_more_than_random_subspaces_and_a_dataset_feature_does_not(
    planted: Testbed,
) -> None:
    pytest.importorskip("concept_erasure")
    pairs = ((0, 1), (2, 3), (4, 5))
    targets = torch.stack([planted.features[f"xor_{a}_{b}"] for a, b in pairs], 1).float()
    X = read_activations(planted.model, [planted.inputs], ["resid_post"])["resid_post"]
    adapter = TorchModel(planted.model)
    site = adapter.resolve("resid_post")
    erasure = Erasure(task=lambda out: ((out > 0).float() == targets).float())
    cases = [CausalTarget(n, labels=planted.features[n]) for n in ("xor_0_1", "x_6")]
    raw = erasure.scores(AtSite(adapter, [planted.inputs], site, X, n_null=19), cases)
    bootstrap = Bootstrap(0, 100, 0.95)
    model_feature, dataset_feature = (
        used.assess(erasure.name, raw[n], (n,), bootstrap) for n in ("xor_0_1", "x_6")
    )
    assert model_feature.score > 0.1 and model_feature.p_value == pytest.approx(1 / 20)  # measured 0.25
    assert abs(dataset_feature.score) < 0.01 and dataset_feature.p_value > 0.5


def test_interventions_compose_patch_and_set_projections() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Identity(), nn.Linear(4, 2))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    h = site_tensor(model, "1", x)
    v = torch.tensor([1.0, 0.0, 0.0, 0.0])
    with applied(model, [("1", AddVector(v, 2.0)), ("1", SetProjection(v, 0.5))]):
        moved = site_tensor(model, "1", x)
    assert torch.allclose(moved[:, 0], torch.full((5,), 0.5))
    assert torch.allclose(moved[:, 1:], h[:, 1:])
    source = site_tensor(model, "1", x.flip(0))
    with applied(model, [("1", Patch(source, directions=v))]):
        patched = site_tensor(model, "1", x)
    assert torch.allclose(patched[:, 0], source[:, 0]) and torch.allclose(patched[:, 1:], h[:, 1:])
    assert torch.allclose(site_tensor(model, "1", x), h)  # every hook removed


def test_bad_interventions_raise_clear_errors() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Identity(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with (
        pytest.raises(FeatureControlsError, match="width 3 but the site's activations have width 4"),
        applied(model, [("1", AddVector(torch.ones(3)))]),
    ):
        model(x)
    with pytest.raises(FeatureControlsError, match="zero vector"):
        AddVector(torch.zeros(4))
    with (
        pytest.raises(FeatureControlsError, match="never reached"),
        applied(model, [("1", AddVector(torch.ones(4)))]),
    ):
        pass  # no forward pass
    with pytest.raises(FeatureControlsError, match="span only 1 dimension"):
        dual_basis(torch.tensor([[1.0, 0.0], [2.0, 0.0]]))


def test_target_and_kl_curves_separate_a_model_feature_from_a_dataset_feature(planted: Testbed) -> None:
    """Steering the model feature xor_0_1 moves the output it drives and the output distribution; steering
    the dataset feature x_6 by the same read-out movement does about what a random vector does."""
    names = ["xor_0_1", "xor_2_3", "xor_4_5", "x_6"]
    inputs = planted.inputs[:1024]
    X = read_activations(planted.model, [inputs], ["resid_post"])["resid_post"]
    steering = SteeringVectors().fit(X, torch.stack([planted.features[n][:1024] for n in names], dim=1))

    def driven_logit(outputs: Tensor, i: int) -> Tensor:
        """The logit feature i drives (x_6 drives none: the sum of all logits)."""
        return outputs[:, i] if i < 3 else outputs.sum(dim=1)

    effects = SteeringEffects(
        alphas=(-2.0, 0.0, 2.0), target=driven_logit, log_probs=bernoulli_log_probs, n_bootstrap=100
    ).fit(planted.model, [inputs], "resid_post", steering, names)
    model_dual, data_dual = effects.curves_["dual", "xor_0_1"], effects.curves_["dual", "x_6"]
    assert model_dual.kl is not None and data_dual.kl is not None and model_dual.target is not None
    assert float(model_dual.kl.mean[1]) == pytest.approx(0.0, abs=1e-9)  # alpha = 0 changes nothing
    assert float(model_dual.kl.mean[2]) > 10 * float(data_dual.kl.mean[2])
    random_kl = effects.curves_["random", "xor_0_1"].kl
    assert random_kl is not None and float(model_dual.kl.mean[2]) > float(random_kl.high[2])
    # Steering along the class direction (alpha = +-2) moves the driven logit one way or the other.
    assert float(model_dual.target.high[0]) < float(model_dual.target.low[2]) or float(
        model_dual.target.high[2]
    ) < float(model_dual.target.low[0])
