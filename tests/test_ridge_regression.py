import pytest
import torch

from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.ridge_regression import RidgeRegression
from featurecontrols.stats import permutation_p_value


def _data(n: int = 1000, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    T = torch.stack([X[:, 0] * 2 + 1, X[:, 1] - X[:, 2] + 0.5 * torch.randn(n, generator=g)], dim=1)
    return X, T


def test_matches_scikit_learn_ridge() -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, T = _data()
    ours = RidgeRegression(alpha=1e-2).fit(X, T)
    penalty = 1e-2 * float(((X - X.mean(0)) ** 2).sum() / X.numel()) * X.shape[0]
    ref = linear_model.Ridge(alpha=penalty).fit(X.numpy(), T.numpy())
    assert torch.allclose(ours.coef_, torch.as_tensor(ref.coef_), atol=1e-8)
    assert torch.allclose(ours.intercept_, torch.as_tensor(ref.intercept_), atol=1e-8)
    assert float(ours.score(X, T)[0]) > 0.999


def test_shuffled_target_null_in_one_solve() -> None:
    X, T = _data(seed=1)
    train, test = slice(0, 700), slice(700, None)
    null = ShuffledLabels().null_labels(T[:, 1], 999, torch.Generator().manual_seed(0))
    scores = (
        RidgeRegression()
        .fit(X[train], torch.cat([T[train, 1:], null[train]], 1))
        .score(X[test], torch.cat([T[test, 1:], null[test]], 1))
    )
    assert float(scores[0]) > 0.7
    assert float(scores[1:].mean()) < 0.0  # held-out R^2 of noise is below zero
    assert float(permutation_p_value(scores[:1], scores[None, 1:])[0]) == pytest.approx(1 / 1000)


def test_bad_targets_raise_clear_errors() -> None:
    X, T = _data(20)
    with pytest.raises(FeatureControlsError, match="NaN"):
        RidgeRegression().fit(X, torch.full((20,), float("nan")))
    with pytest.raises(FeatureControlsError, match="constant"):
        RidgeRegression().fit(X, torch.ones(20))
    with pytest.raises(FeatureControlsError, match="do not match"):
        RidgeRegression().fit(X, T[:5])
    with pytest.raises(FeatureControlsError, match="alpha"):
        RidgeRegression(alpha=0).fit(X, T)
