import pytest
import torch

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Dictionary, UnsupervisedFinder, check_dictionary
from featurecontrols.finders.pca import PCA


def low_rank(n: int = 2000, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Data with variances 9, 4, 1 along three orthonormal directions, plus small noise and an offset."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, 3, generator=g)).Q.T  # (3, d)
    z = torch.randn(n, 3, generator=g) * torch.tensor([3.0, 2.0, 1.0])
    return z @ basis + 0.01 * torch.randn(n, d, generator=g) + 5.0, basis


def test_pca_recovers_principal_directions_and_matches_sklearn() -> None:
    from sklearn import decomposition

    X, basis = low_rank()
    pca = PCA(3).fit(X)
    assert isinstance(pca, UnsupervisedFinder)
    cosines = (pca.components_ @ basis.T).abs()
    assert torch.allclose(cosines, torch.eye(3), atol=0.06)
    sk = decomposition.PCA(3).fit(X.double().numpy())
    assert torch.allclose(
        pca.explained_variance_.double(), torch.from_numpy(sk.explained_variance_), rtol=1e-4
    )
    ratio = torch.from_numpy(sk.explained_variance_ratio_)
    assert torch.allclose(pca.explained_variance_ratio_.double(), ratio, rtol=1e-4)
    assert torch.allclose(pca.decode(pca.encode(X)), X, atol=0.1)


def test_pca_streams_chunks_like_a_whole_tensor() -> None:
    X, _ = low_rank()
    whole = PCA(3).fit(X)
    streamed = PCA(3, batch_size=128).fit(iter(X.split(300)))
    assert torch.allclose(whole.explained_variance_, streamed.explained_variance_, rtol=1e-5)
    assert torch.allclose((whole.components_ * streamed.components_).sum(1).abs(), torch.ones(3), atol=1e-5)


def test_pca_bad_input() -> None:
    X, _ = low_rank(d=6)
    with pytest.raises(FeatureControlsError, match="n_components"):
        PCA(7).fit(X)
    with pytest.raises(FeatureControlsError, match="at least 2 rows"):
        PCA(1).fit(X[:1])
    pca = PCA(2).fit(X)
    assert isinstance(pca, Dictionary)
    assert check_dictionary(pca, X) == 2
    with pytest.raises(FeatureControlsError, match="width 8"):
        check_dictionary(pca, torch.randn(4, 8))
