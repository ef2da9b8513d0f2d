"""Latent ablation measured along the latent's own direction at the outputs: its null directions,
its arithmetic, a site the outputs read in every direction (where plain ablation has no answer), its
validity where the outputs read nothing of the latent, and next-token logits."""

from __future__ import annotations

import math

import pytest
import torch
from test_latent_rows import _at, _Linear

from featurecontrols import Battery, Latents
from featurecontrols.adapters import TorchModel
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.causal.latent_ablation_readoff import LatentAblationReadoff
from featurecontrols.controls.causal.latent_rows import LatentRows
from featurecontrols.finders.pca import PCA
from featurecontrols.stats import permutation_p_value

MARGIN = 0.1  # Margins.output_read_off, the read-off's default margin


def _planted(n_vars: int, seed: int, n: int = 400) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse variables s (n, n_vars), each on with probability 0.3 at a size in [0.5, 1.5], written
    along orthonormal directions W (8, n_vars): the data X = s W^T (n, 8), a span of n_vars."""
    g = torch.Generator().manual_seed(seed)
    W = torch.linalg.qr(torch.randn(8, n_vars, generator=g))[0]
    s = (torch.rand(n, n_vars, generator=g) < 0.3) * (0.5 + torch.rand(n, n_vars, generator=g))
    return s @ W.T, s, W


def _latent(s: torch.Tensor, W: torch.Tensor, j: int) -> CausalTarget:
    return CausalTarget(f"latent {j}", W[:, j].double(), code=s[:, j], kind="dictionary latent")


def _p(raw_real: torch.Tensor, raw_null: torch.Tensor, margin: float = MARGIN) -> float:
    return float(permutation_p_value(raw_real.mean().reshape(1) - margin, raw_null[None])[0])


def test_the_uncorrelated_null_moves_nothing_of_the_latent_and_stays_in_the_span() -> None:
    """Each direction is a unit vector of the data's span whose coordinate u . h has covariance 0 with
    the latent's code over the measured rows."""
    X, s, W = _planted(5, seed=0)
    at = _at(X, torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), n_null=9)
    rows = LatentRows(at, "uncorrelated")
    code = s[:, 2]
    directions = rows.directions(code, W[:, 2].double(), 300, torch.Generator().manual_seed(2))
    torch.testing.assert_close(directions.norm(dim=1), torch.ones(300, dtype=torch.float64))
    coordinate = X.double() @ directions.T
    covariance = (code.double() - code.double().mean()) @ (coordinate - coordinate.mean(0)) / code.numel()
    assert float(covariance.abs().max()) < 1e-9
    outside = torch.linalg.svd(W.double(), full_matrices=True)[0][:, 5:]  # the span's complement
    assert float((directions @ outside).abs().max()) < 1e-6  # float32 data


def test_the_read_off_of_a_removal_is_its_move_along_the_outputs_covariance_with_the_code() -> None:
    """On a linear readout f = R h, removing z_i d on the rows where the latent fires gives
    t_i = (z_i R d) . u / sqrt(spread), u the unit covariance of the outputs with the code, and the
    size |z_i| ||R d|| / sqrt(spread)."""
    X, s, W = _planted(5, seed=3)
    R = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    target = _latent(s, W, 1)
    raw = LatentAblationReadoff().scores(_at(X, R, n_null=20), [target])[target.name]
    f, z, d = (X @ R.T).double(), s[:, 1].double(), W[:, 1].double()
    centred = f - f.mean(0)
    spread = float(centred.square().sum(1).mean())
    u = torch.nn.functional.normalize((z - z.mean()) @ centred, dim=0)
    fires = z != 0
    expected = z[fires] * float((R.double() @ d) @ u) / math.sqrt(spread)
    torch.testing.assert_close(raw.real, expected)
    assert raw.size is not None
    torch.testing.assert_close(raw.size, z[fires] * float((R.double() @ d).norm()) / math.sqrt(spread))


def test_where_the_outputs_read_every_direction_only_the_read_off_sees_the_latents() -> None:
    """The outputs read the whole span (R = W^T), so a random direction of the span removed as far
    moves them exactly as much as a latent: plain ablation's p is large for every latent. Along the
    latent's own output direction the removal moves them by its code, directions uncorrelated with it
    by 0 there: the read-off's p is at its floor, 1/100."""
    X, s, W = _planted(4, seed=5)
    at = _at(X, W.T.contiguous(), n_null=99)
    for j in range(4):
        target = _latent(s, W, j)
        read_off = LatentAblationReadoff().scores(at, [target])[target.name]
        plain = LatentAblation().scores(at, [target])[target.name]
        assert float(read_off.real.mean()) > 5 * MARGIN, j
        assert _p(read_off.real, read_off.null) == pytest.approx(0.01), j
        assert _p(plain.real, plain.null, margin=0.01) > 0.5, j


def test_read_off_p_values_are_valid_where_the_outputs_read_nothing_of_the_latent() -> None:
    """Validity under H0: 200 latents present in the data (codes relu(h . d), d a random direction of
    three variables the outputs never read, beside three they read), 99 null draws each: at most
    alpha of them at p <= alpha (against 0, not the margin), within 3 binomial standard deviations,
    at alpha 0.05 and 0.5 (conservative, not uniform: the removal moves the outputs by 0)."""
    X, _, W = _planted(6, seed=6)
    R = W[:, :3].T.contiguous()  # reads variables 0-2
    g = torch.Generator().manual_seed(7)
    p_values = []
    for i in range(200):
        d = torch.nn.functional.normalize(W[:, 3:] @ torch.randn(3, generator=g), dim=0)
        code = torch.relu(X @ d)
        target = CausalTarget(f"unread {i}", d.double(), code=code, kind="dictionary latent")
        raw = LatentAblationReadoff().scores(_at(X, R, n_null=99, seed=i), [target])[target.name]
        p_values.append(_p(raw.real, raw.null, margin=0.0))
    for alpha in (0.05, 0.5):
        share = sum(p <= alpha for p in p_values) / len(p_values)
        assert share <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / len(p_values)), (alpha, share)


def test_on_next_token_logits_the_read_off_sees_the_latents_the_logits_read() -> None:
    """Logits (one position, 6 tokens) read variables 0 and 1 of the site and never 2 or 3: the
    read-off, taken in sqrt(p), finds the read latents at its floor, 1/100, and removing an unread
    latent moves the distributions by nothing (size 0), through the battery's entry too."""
    X, s, W = _planted(4, seed=8)
    R = 3.0 * torch.randn(6, 2, generator=torch.Generator().manual_seed(9)) @ W[:, :2].T
    adapter = TorchModel(_Linear(R), output_kind="logits")
    at = AtSite(adapter, [X[:100], X[100:]], adapter.resolve("site"), X, n_null=99, seed=0)
    for j in range(4):
        target = _latent(s, W, j)
        raw = LatentAblationReadoff().scores(at, [target])[target.name]
        assert raw.size is not None
        if j < 2:
            assert float(raw.real.mean()) > MARGIN, j
            assert _p(raw.real, raw.null) == pytest.approx(0.01), j
        else:
            assert float(raw.size.abs().max()) < 1e-3, j
    battery = Battery(weight_controls=[], used_controls=[LatentAblationReadoff()], progress=False)
    result = battery.run(adapter, X, "site", [Latents("pca", "site", PCA(3))])
    assert len(result.candidates) == 3
