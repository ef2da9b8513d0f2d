import pytest
import torch
from torch import Tensor, nn

from featurecontrols.errors import FeatureControlsError
from featurecontrols.testbeds import (
    PlantedResidualConfig,
    PlantedResidualMLP,
    Testbed,
    train_planted_residual,
)
from featurecontrols.testbeds.planted_residual import (
    MAX_LEAK,
    MAX_OTHER_FLIP,
    MIN_ACCURACY,
    MIN_OWN_FLIP,
    failed_checks,
)


@pytest.fixture(scope="module")
def testbed() -> Testbed:
    return train_planted_residual()


def resid_post(testbed: Testbed) -> Tensor:
    """The activations at the testbed's site, read with a forward hook."""
    model = testbed.model
    assert isinstance(model, PlantedResidualMLP)
    captured: list[Tensor] = []
    handle = model.resid_post.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            model(testbed.inputs)
    finally:
        handle.remove()
    return captured[0]


def test_ground_truth_checks_pass(testbed: Testbed) -> None:
    checks = testbed.checks
    assert failed_checks(checks) == []
    for pair in ("0_1", "2_3", "4_5"):
        assert checks[f"accuracy/xor_{pair}"] >= MIN_ACCURACY
    assert checks["output_leak"] <= MAX_LEAK
    assert checks["mlp_leak"] <= MAX_LEAK
    assert checks["own_flip_rate"] >= MIN_OWN_FLIP
    assert checks["other_flip_rate"] <= MAX_OTHER_FLIP
    assert checks["swap_own_flip_rate"] >= MIN_OWN_FLIP
    assert checks["swap_other_flip_rate"] <= MAX_OTHER_FLIP
    assert checks["swap_dataset_flip_rate"] <= MAX_OTHER_FLIP


def test_features_per_category(testbed: Testbed) -> None:
    by_kind: dict[str, list[str]] = {}
    for name, kind in testbed.ground_truth.items():
        by_kind.setdefault(kind, []).append(name)
    assert by_kind == {
        "model feature": ["xor_0_1", "xor_2_3", "xor_4_5"],
        "dataset feature": ["x_6", "x_7", "x_8", "x_9"],
        "absent": ["xor_6_7", "xor_8_9"],
    }
    assert testbed.site == "resid_post"
    assert testbed.site in dict(testbed.model.named_modules())


def test_inputs_labels_and_outputs(testbed: Testbed) -> None:
    x = testbed.inputs
    assert x.shape == (4000, 10)
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}
    assert testbed.model(x).shape == (4000, 3)
    assert torch.equal(testbed.features["x_7"], (x[:, 7] > 0).long())
    assert torch.equal(testbed.features["xor_8_9"], (x[:, 8] != x[:, 9]).long())
    for name, labels in testbed.features.items():
        assert labels.shape == (4000,)
        assert set(torch.unique(labels).tolist()) == {0, 1}, name
        assert 0.45 < labels.float().mean() < 0.55, name


def test_embedding_is_frozen_orthonormal_parameter(testbed: Testbed) -> None:
    model = testbed.model
    assert isinstance(model, PlantedResidualMLP)
    weight = model.embed.weight
    assert isinstance(weight, nn.Parameter)
    assert not weight.requires_grad
    assert "embed.weight" in dict(model.named_parameters())
    torch.testing.assert_close(weight.T @ weight, torch.eye(10), atol=1e-5, rtol=0)


def test_same_seed_same_testbed_other_seed_differs(testbed: Testbed) -> None:
    again = train_planted_residual(PlantedResidualConfig(seed=0))
    assert torch.equal(again.inputs, testbed.inputs)
    for (name, p), (_, q) in zip(
        testbed.model.named_parameters(), again.model.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    other = train_planted_residual(PlantedResidualConfig(seed=1))
    assert not torch.equal(other.inputs, testbed.inputs)
    for (name, p), (_, q) in zip(
        testbed.model.named_parameters(), other.model.named_parameters(), strict=True
    ):
        assert not torch.equal(p, q), name


def test_linear_probes_read_model_and_dataset_features_not_absent_ones(testbed: Testbed) -> None:
    from sklearn.linear_model import LogisticRegression

    X = resid_post(testbed).numpy()
    train, test = slice(0, 3000), slice(3000, None)
    for name, labels in testbed.features.items():
        y = labels.numpy()
        probe = LogisticRegression(max_iter=1000).fit(X[train], y[train])
        accuracy = probe.score(X[test], y[test])
        if testbed.ground_truth[name] == "absent":
            assert accuracy < 0.6, (name, accuracy)
        else:
            assert accuracy > 0.95, (name, accuracy)


def test_failed_training_raises() -> None:
    with pytest.raises(RuntimeError, match="accuracy/xor_0_1"):
        train_planted_residual(PlantedResidualConfig(steps=1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trained_pairs": ((0, 1), (1, 2))},
        {"trained_pairs": ((0, 10),)},
        {"trained_pairs": ()},
        {"n_vars": 4, "trained_pairs": ((0, 1), (2, 3))},
        {"d_model": 8},
        {"n_vars": 30},
    ],
)
def test_config_rejects_bad_recipes(kwargs: dict[str, object]) -> None:
    with pytest.raises(FeatureControlsError):
        PlantedResidualConfig(**kwargs)  # type: ignore[arg-type]


def test_absent_pairs_are_disjoint_consecutive_unused_variables() -> None:
    config = PlantedResidualConfig(n_vars=9, trained_pairs=((0, 1), (2, 3)))
    assert config.unused_vars == (4, 5, 6, 7, 8)
    assert config.absent_pairs == ((4, 5), (6, 7))


def test_testbed_rejects_mismatched_labels() -> None:
    with pytest.raises(FeatureControlsError):
        Testbed(
            name="t",
            model=nn.Identity(),
            inputs=torch.zeros(4, 2),
            site="",
            features={"a": torch.zeros(3)},
            ground_truth={"a": "absent"},
            description="",
            checks={},
        )
    with pytest.raises(FeatureControlsError):
        Testbed(
            name="t",
            model=nn.Identity(),
            inputs=torch.zeros(4, 2),
            site="",
            features={"a": torch.zeros(4)},
            ground_truth={"b": "absent"},
            description="",
            checks={},
        )
