import warnings

import pytest
import torch

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import LogisticProbe


def _data(
    n: int, d: int, k: int, *, condition: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 activations with singular values spread over ``condition`` and an offset; k labels
    from noisy linear rules that use every direction (also the weak ones)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), d, dtype=torch.float64)
    X = (torch.randn(n, d, generator=g, dtype=torch.float64) * s) @ Q.T * 5.0 + 3.0
    W = Q @ (torch.randn(d, k, generator=g, dtype=torch.float64) / s[:, None]) * 0.05
    Y = ((X - 3.0) @ W + torch.randn(n, k, generator=g, dtype=torch.float64) > 0).double()
    return X, Y


@pytest.mark.parametrize("condition", [1.0, 1e4])
@pytest.mark.parametrize("C", [0.1, 10.0])
def test_matches_scikit_learn_logistic_regression(condition: float, C: float) -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, Y = _data(1000, 12, 1, condition=condition)
    train, test = slice(0, 700), slice(700, None)
    ref = linear_model.LogisticRegression(C=C, solver="newton-cholesky", tol=1e-10, max_iter=1000)
    ref.fit(X[train].numpy(), Y[train, 0].numpy())
    ref_coef = torch.as_tensor(ref.coef_[0])
    # float64: the same optimum to many digits.
    exact = LogisticProbe(C=C, tol=1e-9).fit(X[train], Y[train])
    assert bool(exact.converged_.all())
    assert float((exact.coef_[0] - ref_coef).norm() / ref_coef.norm()) < 1e-6
    assert float(exact.intercept_[0]) == pytest.approx(float(ref.intercept_[0]), rel=1e-6, abs=1e-8)
    # float32 (the default use): close coefficients, the same held-out accuracy within a point.
    fast = LogisticProbe(C=C).fit(X[train].float(), Y[train])
    assert bool(fast.converged_.all())
    assert float((fast.coef_[0].double() - ref_coef).norm() / ref_coef.norm()) < 2e-3
    ref_accuracy = ref.score(X[test].numpy(), Y[test, 0].numpy())
    assert abs(float(fast.score(X[test].float(), Y[test])[0]) - ref_accuracy) <= 0.01


def test_batched_columns_equal_one_at_a_time_fits() -> None:
    X, Y = _data(500, 8, 6, condition=100.0, seed=1)
    together = LogisticProbe(tol=1e-8).fit(X, Y)
    for j in range(Y.shape[1]):
        alone = LogisticProbe(tol=1e-8).fit(X, Y[:, j])
        assert torch.allclose(together.coef_[j], alone.coef_[0], rtol=1e-7, atol=1e-9)
        assert float(together.intercept_[j]) == pytest.approx(float(alone.intercept_[0]), rel=1e-7, abs=1e-9)
        assert int(together.n_iter_[j]) == int(alone.n_iter_[0])


def test_converges_in_float32_on_ill_conditioned_wide_batches() -> None:
    X, Y = _data(3000, 64, 3, condition=1e4, seed=2)
    null = Y[torch.randperm(3000, generator=torch.Generator().manual_seed(3))]  # shuffled labels
    probe = LogisticProbe().fit(X.float(), torch.cat([Y, null], dim=1))
    assert bool(probe.converged_.all())
    assert int(probe.n_iter_.max()) < 50
    accuracy = probe.score(X.float(), torch.cat([Y, null], dim=1))
    assert bool((accuracy[:3] > 0.6).all())


def test_probabilities_margins_and_predictions_agree() -> None:
    X, Y = _data(400, 5, 2, seed=4)
    probe = LogisticProbe().fit(X.float(), Y)
    margins = probe.decision_function(X.float())
    assert torch.allclose(probe.predict_proba(X.float()), torch.sigmoid(margins))
    assert torch.equal(probe.predict(X.float()), (margins > 0).float())
    assert torch.equal(probe.directions_, probe.coef_)
    assert probe.coef_.shape == (2, 5) and probe.intercept_.shape == (2,)


def test_warns_when_a_column_does_not_converge() -> None:
    X, Y = _data(400, 6, 1, condition=1e3, seed=5)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        probe = LogisticProbe(C=1e4, max_iter=1).fit(X, Y)
    assert not bool(probe.converged_.all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogisticProbe().fit(X, Y)


def test_bad_inputs_raise_clear_errors() -> None:
    X, Y = _data(50, 3, 2)
    with pytest.raises(FeatureControlsError, match="single class"):
        LogisticProbe().fit(X, torch.cat([Y, torch.ones(50, 1, dtype=torch.float64)], dim=1))
    with pytest.raises(FeatureControlsError, match="0 < C"):
        LogisticProbe(C=0.0).fit(X, Y)
    with pytest.raises(FeatureControlsError, match="0/1"):
        LogisticProbe().fit(X, Y * 3)
    with pytest.raises(FeatureControlsError, match="NaN"):
        LogisticProbe().fit(X.clone().fill_(float("nan")), Y)
