import pytest
import torch

from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import MLPRegression, RidgeRegression
from featurecontrols.stats import permutation_p_value


def _targets(n: int = 1500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A nonlinear target (no linear read-off at all) and a linear one, in units far from 1."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    nonlinear = 50.0 * (X[:, 0] ** 2 - 1.0) + 3.0 * torch.randn(n, generator=g)
    linear = 1000.0 + 20.0 * X[:, 1] + 2.0 * torch.randn(n, generator=g)
    return X, torch.stack([nonlinear, linear], dim=1)


def test_fits_a_target_no_linear_regression_can_read() -> None:
    X, T = _targets()
    train, test = slice(0, 1000), slice(1000, None)
    mlp = MLPRegression(hidden=32, steps=800, lr=1e-2, seed=0).fit(X[train], T[train])
    ridge = RidgeRegression().fit(X[train], T[train])
    mlp_r2, ridge_r2 = mlp.score(X[test], T[test]), ridge.score(X[test], T[test])
    assert float(mlp_r2[0]) > 0.9 and float(ridge_r2[0]) < 0.05
    assert float(mlp_r2[1]) > 0.95  # the linear column, in its own units (mean 1000, sd 20)
    assert mlp.predict(X[test]).shape == (500, 2)
    # the read-off of the linear column is d t / d x = 20 along x_1, in t's units
    assert mlp.directions_[1, 1] == pytest.approx(20.0, rel=0.15)
    assert float(mlp.directions_[1, [0, 2, 3]].abs().max()) < 3.0


def test_shuffled_target_null_in_one_batched_fit() -> None:
    X, T = _targets(seed=1)
    train, test = slice(0, 1000), slice(1000, None)
    null = ShuffledLabels().null_labels(T[:, 0], 49, torch.Generator().manual_seed(0))
    columns = torch.cat([T[:, :1], null], dim=1)
    scores = (
        MLPRegression(hidden=16, steps=300, lr=1e-2)
        .fit(X[train], columns[train])
        .score(X[test], columns[test])
    )
    assert float(scores[0]) > 0.8
    assert float(scores[1:].max()) < 0.1  # held-out R^2 of a shuffled target is about 0 or below
    assert float(permutation_p_value(scores[:1], scores[None, 1:])[0]) == pytest.approx(1 / 50)


def test_same_seed_same_regression() -> None:
    X, T = _targets(200)
    a = MLPRegression(hidden=8, depth=2, dropout=0.1, rank=2, steps=30, seed=5).fit(X, T)
    b = MLPRegression(hidden=8, depth=2, dropout=0.1, rank=2, steps=30, seed=5).fit(X, T)
    assert torch.equal(a.predict(X), b.predict(X))


def test_bad_targets_and_parameters_raise_clear_errors() -> None:
    X, T = _targets(50)
    with pytest.raises(FeatureControlsError, match="NaN or infinite"):
        MLPRegression(steps=1).fit(X, torch.where(torch.arange(50) == 3, float("nan"), T[:, 0]))
    with pytest.raises(FeatureControlsError, match="constant"):
        MLPRegression(steps=1).fit(X, torch.ones(50))
    with pytest.raises(FeatureControlsError, match="do not match 50 activation rows"):
        MLPRegression(steps=1).fit(X, T[:40])
    with pytest.raises(FeatureControlsError, match="invalid MLPRegression parameters"):
        MLPRegression(hidden=0).fit(X, T)
