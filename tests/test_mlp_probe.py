import pytest
import torch

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import LogisticProbe, MLPProbe


def _xor(n: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).float()
    return X, y


def test_learns_a_nonlinear_label_that_a_linear_probe_cannot() -> None:
    X, y = _xor()
    train, test = slice(0, 700), slice(700, None)
    mlp = MLPProbe(hidden=32, steps=600, lr=1e-2, seed=0).fit(X[train], y[train])
    linear = LogisticProbe().fit(X[train], y[train])
    assert float(mlp.score(X[test], y[test])[0]) > 0.9
    assert float(linear.score(X[test], y[test])[0]) < 0.65


def test_same_seed_same_probe_and_shapes() -> None:
    X, y = _xor(300)
    Y = torch.stack([y, (X[:, 2] > 0).float()], dim=1)
    a = MLPProbe(hidden=8, depth=2, dropout=0.1, rank=2, steps=50, seed=3).fit(X, Y)
    b = MLPProbe(hidden=8, depth=2, dropout=0.1, rank=2, steps=50, seed=3).fit(X, Y)
    assert torch.equal(a.decision_function(X), b.decision_function(X))
    assert a.decision_function(X).shape == (300, 2)
    assert a.directions_.shape == (2, 4)
    probabilities = a.predict_proba(X)
    assert bool(((probabilities >= 0) & (probabilities <= 1)).all())
    c = MLPProbe(hidden=8, depth=2, dropout=0.1, rank=2, steps=50, seed=4).fit(X, Y)
    assert not torch.equal(a.decision_function(X), c.decision_function(X))


def test_directions_point_along_the_signal() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(800, 5, generator=g)
    y = (X[:, 3] > 0).float()
    probe = MLPProbe(hidden=16, steps=300, lr=1e-2).fit(X, y)
    direction = probe.directions_[0] / probe.directions_[0].norm()
    assert float(direction[3]) > 0.9


def test_bad_parameters_and_labels_raise_clear_errors() -> None:
    X, y = _xor(50)
    with pytest.raises(FeatureControlsError, match="dropout"):
        MLPProbe(dropout=1.0).fit(X, y)
    with pytest.raises(FeatureControlsError, match="rank"):
        MLPProbe(rank=0).fit(X, y)
    with pytest.raises(FeatureControlsError, match="single class"):
        MLPProbe().fit(X, torch.ones(50))
    with pytest.raises(FeatureControlsError, match="NaN"):
        MLPProbe().fit(torch.full((50, 4), float("nan")), y)
