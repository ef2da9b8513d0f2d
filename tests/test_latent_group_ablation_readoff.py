"""Latent group ablation measured along the latent's own direction at the outputs: its null's
directions carry nothing of any code of the group, it sees a variable that two latents carry, and its
p-values are valid where the outputs read nothing of the group."""

from __future__ import annotations

import math

import pytest
import torch
from test_latent_ablation_readoff import MARGIN, _p, _planted
from test_latent_rows import _at, _latents, written_twice

from featurecontrols.controls.causal.latent_ablation_readoff import LatentAblationReadoff
from featurecontrols.controls.causal.latent_group_ablation_readoff import LatentGroupAblationReadoff
from featurecontrols.controls.causal.latent_rows import LatentRows
from featurecontrols.errors import FeatureControlsError


def test_the_null_is_uncorrelated_with_every_code_of_the_group() -> None:
    """For a group's codes (n_rows, 3) each direction's coordinate u . h has covariance 0 with each
    code, and the direction lies in the data's span."""
    X, s, W = _planted(5, seed=10)
    R = torch.randn(3, 8, generator=torch.Generator().manual_seed(11))
    rows = LatentRows(_at(X, R, n_null=9), "uncorrelated")
    codes = s[:, :3]
    directions = rows.directions(codes, W[:, :3].T.double(), 300, torch.Generator().manual_seed(12))
    torch.testing.assert_close(directions.norm(dim=1), torch.ones(300, dtype=torch.float64))
    coordinate = X.double() @ directions.T
    centred = codes.double() - codes.double().mean(0)
    covariance = centred.T @ (coordinate - coordinate.mean(0)) / codes.shape[0]  # (3, 300)
    assert float(covariance.abs().max()) < 1e-9
    outside = torch.linalg.svd(W.double(), full_matrices=True)[0][:, 5:]
    assert float((directions @ outside).abs().max()) < 1e-6


def test_the_group_read_off_sees_a_variable_two_latents_carry() -> None:
    """y = min(x . r, 1) with v written twice along r: removing latent 0 alone moves y by nothing, so
    its read-off stays below the margin; removing the group {0, 1} moves y along its covariance with
    the code by about one of its standard deviations, at the floor of p, 1/100."""
    at, targets, *_ = written_twice()
    group = LatentGroupAblationReadoff().scores(at, targets[:1])["latent 0"]
    alone = LatentAblationReadoff().scores(at, targets[:1])["latent 0"]
    assert group.group is not None and group.group.tolist() == [0, 1]
    assert float(group.real.mean()) > 5 * MARGIN > float(alone.real.abs().max())
    assert _p(group.real, group.null) == pytest.approx(0.01)
    assert _p(alone.real, alone.null) > 0.5


def test_group_read_off_p_values_are_valid_where_the_outputs_read_nothing_of_the_group() -> None:
    """Validity under H0: 200 groups of two latents present in the data (codes relu(h . d) and a
    copy of it times 1.5 along another direction, both among three variables the outputs never read,
    beside three they read), 99 null draws each: at most alpha at p <= alpha (against 0), within 3
    binomial standard deviations, at alpha 0.05 and 0.5."""
    X, _, W = _planted(6, seed=13)
    R = W[:, :3].T.contiguous()
    g = torch.Generator().manual_seed(14)
    p_values = []
    for i in range(200):
        d = torch.nn.functional.normalize(W[:, 3:] @ torch.randn(3, 2, generator=g), dim=0)
        code = torch.relu(X @ d[:, 0])
        codes = torch.stack([code, 1.5 * code], dim=1)
        at = _at(X, R, n_null=99, seed=i)
        raw = LatentGroupAblationReadoff().scores(at, _latents(codes, d.T.double())[:1])["latent 0"]
        p_values.append(_p(raw.real, raw.null, margin=0.0))
    for alpha in (0.05, 0.5):
        share = sum(p <= alpha for p in p_values) / len(p_values)
        assert share <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / len(p_values)), (alpha, share)


def test_the_group_read_off_has_no_matched_variance_null() -> None:
    X, s, W = _planted(3, seed=15)
    at, targets = _at(X, W.T.contiguous(), n_null=5), _latents(s, W.T.double())
    with pytest.raises(FeatureControlsError, match="matched variance"):
        LatentGroupAblationReadoff(null="matched variance").scores(at, targets)
