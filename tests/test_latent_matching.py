"""Matching latents by their codes: cross-product correlations against Pearson's, sparse and dense."""

import pytest
import torch

from featurecontrols.finders import SparseAutoencoder, sparse_codes
from featurecontrols.finders.sparse_codes import SparseCodes, code_chunks, encode_sparse
from featurecontrols.measures.latent_matching import SPARSE, Matches, best_matches, partner_correlation


def pearson(Z: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """corr(Z_:j, W_:k) (m, m') by the two-pass formula; a constant column correlates 0."""
    A, B = Z.double() - Z.double().mean(dim=0), W.double() - W.double().mean(dim=0)
    A = A / A.norm(dim=0).where(A.norm(dim=0) > 1e-9, torch.tensor(float("inf"), dtype=torch.float64))
    B = B / B.norm(dim=0).where(B.norm(dim=0) > 1e-9, torch.tensor(float("inf"), dtype=torch.float64))
    return A.T @ B


def codes(n: int, m: int, density: float, seed: int) -> torch.Tensor:
    """Non-negative codes with about ``density`` of them nonzero, one dead latent and one that is constant."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.rand(n, m, generator=g) * (torch.rand(n, m, generator=g) < density)
    Z[:, 1] = 0.0
    Z[:, 2] = 3.0
    return Z


@pytest.mark.parametrize("density", [0.03, 0.5])
def test_best_matches_are_the_largest_absolute_pearson_correlations(density: float) -> None:
    Z, W = codes(3000, 37, density, 0), codes(3000, 23, density, 1)
    W[:, 5] = 2.0 * Z[:, 4] + 0.1 * W[:, 5]  # a partner
    W[:, 6] = -Z[:, 7]  # a partner of negative sign
    assert (max(float((Z != 0).float().mean()), float((W != 0).float().mean())) <= SPARSE) == (density < 0.1)
    C = pearson(Z, W)
    expected, partner = C.abs().max(dim=1)
    got = best_matches(Z, W, chunk=10)  # chunks that do not divide m
    assert torch.allclose(got.value, expected, atol=1e-10)
    live = expected > 0
    assert torch.equal(got.partner[live], partner[live])
    assert torch.equal(got.sign[live], torch.sign(C.gather(1, partner[:, None])[:, 0])[live])
    assert float(got.value[1]) == 0.0 and float(got.value[2]) == 0.0  # dead and constant latents
    assert int(got.partner[4]) == 5 and int(got.partner[7]) == 6 and int(got.sign[7]) == -1


def test_the_sparse_and_dense_products_agree_when_one_side_is_dense() -> None:
    Z, W = codes(2000, 20, 0.02, 2), codes(2000, 15, 0.6, 3)  # mixed: the dense path
    assert torch.allclose(best_matches(Z, W).value, pearson(Z, W).abs().max(dim=1).values, atol=1e-10)


def test_partner_correlation_is_the_signed_correlation_of_the_two_partners() -> None:
    Z, W1, W2 = codes(2000, 12, 0.05, 4), codes(2000, 9, 0.05, 5), codes(2000, 11, 0.05, 6)
    m1 = Matches(torch.tensor([0, 3, 8, 1] * 3), torch.tensor([0, 3, 8, 1] * 3), torch.ones(12))
    m2 = Matches(torch.tensor([2, 10, 4, 5] * 3), torch.tensor([2, 10, 4, 5] * 3), -torch.ones(12))
    C = pearson(W1, W2)
    expected = -C[m1.partner, m2.partner]
    assert torch.allclose(partner_correlation(W1, m1, W2, m2, chunk=5), expected, atol=1e-10)
    del Z


def test_codes_encoded_in_chunks_equal_codes_encoded_at_once() -> None:
    X = torch.randn(1000, 8, generator=torch.Generator().manual_seed(7))
    sae = SparseAutoencoder(d_sae=16, activation="topk", k=3, n_epochs=1, seed=0).fit(X)
    codes = encode_sparse(sae, X, chunk=333)
    assert codes.values.numel() == 3000 and codes.density == 3 / 16
    assert torch.allclose(codes.columns(0, 16), sae.encode(X).detach(), atol=1e-6)


def test_a_wide_dictionary_is_encoded_in_fewer_rows_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks hold at most ELEMENTS codes (rows x latents), at most CHUNK rows, at least one row."""
    X = torch.randn(1000, 8, generator=torch.Generator().manual_seed(7))
    sae = SparseAutoencoder(d_sae=16, activation="topk", k=3, n_epochs=1, seed=0).fit(X)
    monkeypatch.setattr(sparse_codes, "ELEMENTS", 16 * 300)
    assert [start for start, _ in code_chunks(sae, X)] == [0, 300, 600, 900]
    assert torch.allclose(encode_sparse(sae, X).columns(0, 16), sae.encode(X).detach(), atol=1e-6)
    monkeypatch.setattr(sparse_codes, "CHUNK", 256)
    assert sparse_codes.chunk_rows(sae, X) == 256
    monkeypatch.setattr(sparse_codes, "ELEMENTS", 5)
    assert sparse_codes.chunk_rows(sae, X) == 1


def test_sparse_codes_columns_gather_and_permuted_rows() -> None:
    Z = codes(50, 9, 0.3, 8)
    sparse = SparseCodes.stacked([SparseCodes.of(Z[:20]), SparseCodes.of(Z[20:])])
    assert torch.equal(sparse.columns(0, 9), Z) and torch.equal(sparse.columns(3, 7), Z[:, 3:7])
    index = torch.tensor([4, 1, 4, 8, 0])  # repeats and a dead latent
    assert torch.equal(sparse.gather(index), Z[:, index])
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sparse.permuted(order).columns(0, 9), Z[order])
    assert torch.equal(sparse.firing_rate(), (Z != 0).float().mean(0))


def test_column_products_from_entries_equal_the_dense_dot_products() -> None:
    Z, W = codes(300, 9, 0.2, 12), codes(300, 7, 0.2, 13)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(1))  # rows unsorted per latent
    one, two = SparseCodes.of(Z).permuted(order), SparseCodes.of(W).permuted(order)
    mine, theirs = torch.tensor([4, 1, 4, 8, 0, 2]), torch.tensor([6, 3, 0, 6, 1, 5])  # repeats, dead
    expected = (Z[order][:, mine].double() * W[order][:, theirs].double()).sum(dim=0)
    assert torch.allclose(one.column_products(mine, two, theirs), expected, atol=1e-12)
    nothing = SparseCodes.of(torch.zeros(300, 7))
    assert torch.equal(one.column_products(mine, nothing, theirs), torch.zeros(6, dtype=torch.float64))
    assert torch.equal(nothing.column_products(theirs, one, mine), torch.zeros(6, dtype=torch.float64))


@pytest.mark.parametrize("density", [0.03, 0.5])
def test_matches_of_sparse_codes_equal_those_of_dense_ones(density: float) -> None:
    Z, W1, W2 = codes(800, 14, density, 9), codes(800, 11, density, 10), codes(800, 12, density, 11)
    dense, sparse = best_matches(Z, W1), best_matches(SparseCodes.of(Z), SparseCodes.of(W1))
    assert torch.equal(dense.partner, sparse.partner) and torch.allclose(dense.value, sparse.value)
    other = best_matches(Z, W2)
    expected = partner_correlation(W1, dense, W2, other)
    got = partner_correlation(SparseCodes.of(W1), dense, SparseCodes.of(W2), other, chunk=4)
    assert torch.allclose(expected, got, atol=1e-12)
