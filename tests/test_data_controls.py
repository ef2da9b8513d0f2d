import pytest
import torch

from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures
from featurecontrols.controls.input.random_inputs import RandomInputs
from featurecontrols.errors import FeatureControlsError


def real_tokens() -> torch.Tensor:
    """(200, 16) token ids: token 0 half the time, the rest spread over 1..9, in a fixed order."""
    g = torch.Generator().manual_seed(0)
    common = torch.rand(200, 16, generator=g) < 0.5
    return torch.where(common, 0, torch.randint(1, 10, (200, 16), generator=g))


def test_unigram_inputs_keep_token_frequencies_not_order() -> None:
    real = real_tokens()
    random = RandomInputs("unigram").inputs(real, seed=1)
    assert random.shape == real.shape and random.dtype == real.dtype
    assert set(random.unique().tolist()) <= set(real.unique().tolist())
    assert abs(float((random == 0).float().mean()) - float((real == 0).float().mean())) < 0.03
    assert not torch.equal(random, real)
    assert torch.equal(random, RandomInputs("unigram").inputs(real, seed=1))
    assert not torch.equal(random, RandomInputs("unigram").inputs(real, seed=2))


def test_uniform_inputs_cover_the_vocabulary_evenly() -> None:
    random = RandomInputs("uniform", vocab_size=50).inputs(real_tokens(), seed=0)
    counts = torch.bincount(random.flatten(), minlength=50)
    assert counts.numel() == 50 and int(counts.min()) > 30  # 3200 draws, 64 expected per token
    observed = RandomInputs("uniform").inputs(real_tokens(), seed=0)
    assert abs(float((observed == 0).float().mean()) - 0.1) < 0.03  # 10 observed values, uniform
    plus_minus = RandomInputs("uniform").inputs(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), seed=0)
    assert set(plus_minus.unique().tolist()) <= {-1.0, 1.0}


def test_random_inputs_bad_input() -> None:
    with pytest.raises(FeatureControlsError, match="unknown distribution"):
        RandomInputs("zipf").inputs(real_tokens(), 0)  # type: ignore[arg-type]
    with pytest.raises(FeatureControlsError, match="integer token ids"):
        RandomInputs("uniform", vocab_size=5).inputs(torch.rand(3, 2), 0)
    with pytest.raises(FeatureControlsError, match="empty"):
        RandomInputs().inputs(torch.zeros(0, 3, dtype=torch.long), 0)


def test_planted_features_match_mean_variance_and_sparsity() -> None:
    g = torch.Generator().manual_seed(0)
    X = 3.0 * torch.randn(5000, 20, generator=g) + torch.arange(20.0)
    planted = PlantedSparseFeatures(n_features=40, l0=2.0).plant(X, seed=0)
    A = planted.activations
    assert A.shape == X.shape and planted.directions.shape == (40, 20) and planted.codes.shape == (5000, 40)
    assert torch.allclose(A.mean(0), X.mean(0), atol=1e-3)
    total = (X.double() - X.double().mean(0)).pow(2).sum(1).mean()
    assert abs(float((A.double() - A.double().mean(0)).pow(2).sum(1).mean() / total) - 1.0) < 1e-5
    assert abs(float((planted.codes > 0).sum(1).float().mean()) - 2.0) < 0.1
    assert torch.allclose(planted.directions.norm(dim=1), torch.ones(40), atol=1e-5)
    offset = A - planted.codes @ planted.directions
    assert torch.allclose(offset, offset[:1].expand_as(offset), atol=1e-3)


def test_planted_features_bad_input() -> None:
    with pytest.raises(FeatureControlsError, match="l0"):
        PlantedSparseFeatures(10, 11.0).plant(torch.randn(5, 3), 0)
    with pytest.raises(FeatureControlsError, match="2-D"):
        PlantedSparseFeatures(10, 1.0).plant(torch.randn(5), 0)


def test_planted_codes_drawn_in_chunks_match_and_need_not_be_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurecontrols.controls.input import planted_structure

    X = torch.randn(3000, 8, generator=torch.Generator().manual_seed(1))
    whole = PlantedSparseFeatures(n_features=16, l0=2.0).plant(X, seed=3)
    monkeypatch.setattr(planted_structure, "CHUNK", 16 * 7)  # 7 rows per chunk: 429 chunks
    chunked = PlantedSparseFeatures(n_features=16, l0=2.0).plant(X, seed=3)
    lean = PlantedSparseFeatures(n_features=16, l0=2.0).plant(X, seed=3, keep_codes=False)
    assert lean.codes is None and torch.equal(lean.activations, chunked.activations)
    assert chunked.codes is not None and whole.codes is not None
    assert torch.equal(chunked.directions, whole.directions)  # drawn first, the same
    assert abs(float((chunked.codes > 0).sum(1).float().mean()) - 2.0) < 0.1
    assert torch.allclose(chunked.activations.mean(0), X.mean(0), atol=1e-5)
    total = (X.double() - X.double().mean(0)).pow(2).sum(1).mean()
    spread = (chunked.activations.double() - chunked.activations.double().mean(0)).pow(2).sum(1).mean()
    assert abs(float(spread / total) - 1.0) < 1e-5
    offset = chunked.activations - chunked.codes @ chunked.directions
    assert torch.allclose(offset, offset[:1].expand_as(offset), atol=1e-3)
