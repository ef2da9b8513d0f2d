import pytest
import torch

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import RidgeProbe


def _data(n: int, d: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * 3.0 + 1.0
    W = torch.randn(d, k, generator=g)
    Y = ((X @ W + 0.5 * torch.randn(n, k, generator=g)) > X.mean(0) @ W).float()
    return X, Y


def test_matches_scikit_learn_ridge_classifier() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, Y = _data(400, 12, 1)
    probe = RidgeProbe(alpha=0.1).fit(X, Y)
    Xc = X.double() - X.double().mean(0)
    lam = 0.1 * float((Xc * Xc).sum()) / (400 * 12)
    ref = sklearn.RidgeClassifier(alpha=lam * 400).fit(X.numpy(), Y[:, 0].numpy())
    assert probe.coef_[0].double().numpy() == pytest.approx(ref.coef_.reshape(-1), rel=1e-4, abs=1e-6)
    assert torch.equal(probe.predict(X)[:, 0], torch.as_tensor(ref.predict(X.numpy())).float())


def test_batched_columns_equal_one_at_a_time_and_dual_equals_primal() -> None:
    X, Y = _data(300, 20, 5)
    together = RidgeProbe().fit(X, Y)
    for j in range(5):
        alone = RidgeProbe().fit(X, Y[:, j])
        assert torch.allclose(together.coef_[j], alone.coef_[0], atol=1e-5)
    Xw, Yw = _data(30, 80, 3)  # n < d: dual form
    dual = RidgeProbe().fit(Xw, Yw)
    Xc = Xw.double() - Xw.double().mean(0)
    lam = 1e-3 * float((Xc * Xc).sum()) / (30 * 80)
    T = 2 * Yw.double() - 1
    primal = torch.linalg.solve(
        Xc.T @ Xc / 30 + lam * torch.eye(80, dtype=torch.float64), Xc.T @ (T - T.mean(0)) / 30
    )
    assert torch.allclose(dual.coef_.double(), primal.T, atol=1e-4)


def test_learns_a_separable_label_and_not_a_random_one() -> None:
    X, Y = _data(2000, 10, 1, seed=3)
    train, test = slice(0, 1500), slice(1500, None)
    probe = RidgeProbe().fit(X[train], Y[train])
    assert float(probe.score(X[test], Y[test])[0]) > 0.9
    noise = (torch.rand(2000, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    assert abs(float(RidgeProbe().fit(X[train], noise[train]).score(X[test], noise[test])[0]) - 0.5) < 0.06


def test_bad_labels_and_activations_raise_clear_errors() -> None:
    X, Y = _data(50, 4, 1)
    with pytest.raises(FeatureControlsError, match="0/1"):
        RidgeProbe().fit(X, Y * 2)
    with pytest.raises(FeatureControlsError, match="labels have 10 rows"):
        RidgeProbe().fit(X, Y[:10])
    with pytest.raises(FeatureControlsError, match="NaN"):
        RidgeProbe().fit(X.clone().fill_(float("nan")), Y)
