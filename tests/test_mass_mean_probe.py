import pytest
import torch

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import MassMeanProbe


def _two_gaussians(n: int = 2000, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes with a shared, strongly anisotropic covariance: the class-mean difference and the
    LDA direction differ."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.3).double()
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) @ A + 2.0 * y[:, None] * torch.ones(d)
    return X, y


def test_direction_is_the_difference_of_class_means() -> None:
    X, y = _two_gaussians()
    probe = MassMeanProbe().fit(X, y)
    expected = X[y == 1].mean(0) - X[y == 0].mean(0)
    assert torch.allclose(probe.directions_[0], expected, atol=1e-10)
    # The midpoint threshold puts the two projected class means at equal and opposite scores.
    scores = probe.decision_function(X)[:, 0]
    assert float(scores[y == 1].mean()) == pytest.approx(-float(scores[y == 0].mean()), rel=1e-9)


def test_covariance_corrected_direction_is_parallel_to_lda() -> None:
    discriminant = pytest.importorskip("sklearn.discriminant_analysis")
    X, y = _two_gaussians()
    probe = MassMeanProbe(covariance=True, shrinkage=0.0).fit(X, y)
    lda = discriminant.LinearDiscriminantAnalysis(solver="lsqr").fit(X.numpy(), y.numpy())
    reference = torch.as_tensor(lda.coef_[0])
    cosine = torch.nn.functional.cosine_similarity(probe.directions_[0], reference, dim=0)
    assert float(cosine) > 1 - 1e-8
    # Correcting for the covariance beats the raw difference of means on these data.
    raw = MassMeanProbe().fit(X, y).score(X, y)
    assert float(probe.score(X, y)[0]) > float(raw[0]) + 0.02


def test_fitted_threshold_is_at_least_as_accurate_as_the_midpoint_on_training_data() -> None:
    X, y = _two_gaussians(seed=1)
    Y = torch.stack([y, 1 - y, (X[:, 0] > 0.5).double()], dim=1)
    midpoint = MassMeanProbe(threshold="midpoint").fit(X, Y).score(X, Y)
    fitted = MassMeanProbe(threshold="fitted").fit(X, Y).score(X, Y)
    assert bool((fitted >= midpoint - 1e-12).all())


def test_batched_columns_equal_one_at_a_time_fits() -> None:
    X, y = _two_gaussians(seed=2)
    Y = torch.stack([y, (X[:, 1] > 0).double(), (X[:, 2] < -1).double()], dim=1)
    together = MassMeanProbe(covariance=True, threshold="fitted").fit(X, Y)
    for j in range(Y.shape[1]):
        alone = MassMeanProbe(covariance=True, threshold="fitted").fit(X, Y[:, j])
        assert torch.allclose(together.coef_[j], alone.coef_[0], atol=1e-10)
        assert torch.allclose(together.intercept_[j], alone.intercept_[0], atol=1e-10)


def test_bad_inputs_raise_clear_errors() -> None:
    X, y = _two_gaussians(n=50)
    with pytest.raises(FeatureControlsError, match="single class"):
        MassMeanProbe().fit(X, torch.zeros(50))
    with pytest.raises(FeatureControlsError, match="shrinkage"):
        MassMeanProbe(covariance=True, shrinkage=2.0).fit(X, y)
    with pytest.raises(FeatureControlsError, match="labels have 10 rows"):
        MassMeanProbe().fit(X, y[:10])
