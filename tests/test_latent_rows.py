"""The used tests that move latents (controls/causal/latent_rows.py): latent insertion's, resample
ablation's and group ablation's arithmetic, code correlations against numpy's, and the calibration of
every test on latents that carry nothing."""

import numpy as np
import pytest
import torch
from p_values import assert_uniform
from torch import nn

from featurecontrols import Battery, Latents
from featurecontrols.adapters import TorchModel
from featurecontrols.controls.base import AtSite, CausalTarget, LatentSet
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.causal.latent_group_ablation import LatentGroupAblation
from featurecontrols.controls.causal.latent_insertion import LatentInsertion, absent
from featurecontrols.controls.causal.latent_resample_ablation import LatentResampleAblation
from featurecontrols.controls.causal.latent_rows import LatentNull, LatentTest
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.pca import PCA
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder
from featurecontrols.finders.sparse_codes import SparseCodes
from featurecontrols.measures.code_correlation import CodeCorrelation
from featurecontrols.measures.matched_shifts import MatchedShifts
from featurecontrols.stats import permutation_p_value


class _Linear(nn.Module):
    def __init__(self, R: torch.Tensor) -> None:
        super().__init__()
        self.site = nn.Identity()
        self.readout = nn.Linear(R.shape[1], R.shape[0], bias=False)
        self.readout.weight.data = R.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.readout(self.site(x))
        return out


def _at(X: torch.Tensor, R: torch.Tensor, n_null: int, seed: int = 0) -> AtSite:
    adapter = TorchModel(_Linear(R))
    return AtSite(adapter, [X[:100], X[100:]], adapter.resolve("site"), X, n_null=n_null, seed=seed)


def _spread(X: torch.Tensor, R: torch.Tensor) -> float:
    """The outputs' spread, mean ||R x - mean||^2, that every change is relative to."""
    out = X @ R.T
    return float((out - out.mean(0)).square().sum(1).mean())


def test_insertion_writes_the_mean_code_on_as_many_absent_examples() -> None:
    """On a linear readout R, writing c d changes every output by ||R d||^2 c^2 / spread, c the mean
    size of the nonzero codes; the test runs on as many examples as the latent fires on, none of them
    firing; a direction R ignores changes nothing."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 8, generator=g)
    R = torch.zeros(2, 8)
    R[0, 0], R[1, 1] = 1.0, 2.0
    code = torch.where(torch.rand(512, generator=g) < 0.2, torch.rand(512, generator=g) + 0.5, 0.0)
    read, ignored = torch.zeros(8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    read[1], ignored[5] = 0.5, 1.0
    targets = [
        CausalTarget("read", read, code=code, kind="dictionary latent"),
        CausalTarget("ignored", ignored, code=code, kind="dictionary latent"),
    ]
    scores = LatentInsertion().scores(_at(X, R, n_null=50), targets)
    spread = _spread(X, R)
    typical = float(code[code != 0].double().abs().mean())
    real = scores["read"].real
    assert real.shape == (int((code != 0).sum()),)
    assert torch.allclose(real, torch.full_like(real, typical**2 / spread), atol=1e-5)
    assert float(scores["ignored"].real.abs().max()) < 1e-10
    p_read = permutation_p_value(real.mean().reshape(1), scores["read"].null[None])
    assert float(p_read[0]) < 0.05


def test_absent_examples_are_drawn_from_those_where_it_does_not_fire() -> None:
    draw = torch.Generator().manual_seed(0)
    firing = torch.tensor([1, 4, 5])
    chosen = absent(10, firing, draw)
    assert chosen.numel() == 3 and not bool(torch.isin(chosen, firing).any())
    assert chosen.tolist() == sorted(set(chosen.tolist()))
    everywhere = absent(4, torch.arange(4), torch.Generator().manual_seed(0))
    assert sorted(everywhere.tolist()) == [0, 1, 2, 3]  # fires everywhere: drawn from all
    assert absent(4, torch.zeros(0, dtype=torch.long), draw).numel() == 0


def test_resample_ablation_replaces_each_firing_code_by_a_drawn_one() -> None:
    """On a linear readout R, resampling the code moves example i's output by ||R d||^2 (z_r - z_i)^2 /
    spread: z_r is one of the codes (0 about as often as the latent is silent), only the examples
    where it fires run, and a latent with one constant code everywhere changes nothing."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(600, 4, generator=g)
    R = torch.eye(4)[:2]
    code = torch.where(torch.rand(600, generator=g) < 0.4, torch.rand(600, generator=g) + 1.0, 0.0)
    direction = torch.tensor([0.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    constant = torch.full((600,), 0.7)
    targets = [
        CausalTarget("sparse", direction, code=code, kind="dictionary latent"),
        CausalTarget("constant", direction, code=constant, kind="dictionary latent"),
    ]
    scores = LatentResampleAblation().scores(_at(X, R, n_null=10), targets)
    spread = _spread(X, R)
    real = scores["sparse"].real
    fires = code != 0
    assert real.shape == (int(fires.sum()),)
    step = (real * spread / 4.0).sqrt()  # |z_r - z_i|, ||R d||^2 = 4
    own = code[fires].double()
    drawn = torch.stack([own - step, own + step])  # z_r is one of the two
    values = torch.cat([code.unique().double(), torch.zeros(1, dtype=torch.float64)])
    near = (drawn[..., None] - values).abs().amin(dim=2) < 1e-4
    assert bool(near.any(dim=0).all())
    silent = float((step - own).abs().lt(1e-4).double().mean())  # drawn a 0: the code's own size
    assert abs(silent - 0.6) < 0.1
    assert float(scores["constant"].real.abs().max()) < 1e-10


@pytest.mark.parametrize("control", [LatentAblation, LatentResampleAblation, LatentInsertion])
@pytest.mark.parametrize("null", ["span", "matched variance"])
def test_p_values_are_uniform_for_latents_that_carry_nothing(
    control: type[LatentTest], null: LatentNull
) -> None:
    """Calibration: latents whose directions are drawn as the null draws them and whose codes are
    random sparse values get uniform p-values: 200 latents, 99 null draws each. The data is 4x wider
    along two axes, which the outputs read most; the span's latents are uniform on the sphere, the
    matched-variance ones among the directions of a latent of those two axes' variance (the span's
    null would give all 200 of these p <= 0.05)."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 8, generator=g) * torch.tensor([4.0, 4.0, 1, 1, 1, 1, 1, 1])
    R = torch.randn(3, 8, generator=g) * torch.tensor(
        [4.0, 4.0, 1, 1, 1, 1, 1, 1]
    )  # reads the wide axes most
    shifts = MatchedShifts(X, "covariance", "mahalanobis")
    variance = shifts.variance_along(torch.tensor([1.0, 1.0, 0, 0, 0, 0, 0, 0]))
    p_values = []
    for i in range(200):
        direction = torch.nn.functional.normalize(torch.randn(8, generator=g, dtype=torch.float64), dim=0)
        if null == "matched variance":
            direction = shifts.of_variance(variance, 1, g)[0]
        code = torch.where(torch.rand(256, generator=g) < 0.3, torch.rand(256, generator=g), 0.0)
        target = CausalTarget(f"latent {i}", direction, code=code, kind="dictionary latent")
        raw = control(null).scores(_at(X, R, n_null=99, seed=i), [target])[target.name]
        p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    assert_uniform(p_values)


def test_a_latent_that_fires_everywhere_is_moved_by_its_typical_size() -> None:
    """A PCA component's codes are signed with mean about 0: the move is the mean of |z|, on every
    example (none is without it), not a step of about 0."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(300, 4, generator=g)
    R = torch.eye(4)[:2]
    code = torch.randn(300, generator=g)
    direction = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    target = CausalTarget("pc", direction, code=code, kind="dictionary latent")
    real = LatentInsertion().scores(_at(X, R, n_null=10), [target])["pc"].real
    spread = _spread(X, R)
    size = float(code.double().abs().mean())
    assert real.shape == (300,)
    assert torch.allclose(real, torch.full_like(real, size**2 / spread), atol=1e-5)


def _latents(codes: torch.Tensor, writes: torch.Tensor) -> list[CausalTarget]:
    """Every latent of a dictionary (codes (n, m), writes (m, d)) as a target that carries it."""
    every = LatentSet(SparseCodes.of(codes), writes)
    return [
        CausalTarget(f"latent {j}", writes[j], code=codes[:, j], kind="dictionary latent", latent=j,
                     dictionary=every)
        for j in range(codes.shape[1])
    ]  # fmt: skip


def test_code_correlations_match_numpy_from_the_entries_alone() -> None:
    """r_jk over all rows, zeros included, as np.corrcoef gives it; a dead latent correlates 0."""
    g = torch.Generator().manual_seed(4)
    Z = torch.where(torch.rand(300, 6, generator=g) < 0.3, torch.rand(300, 6, generator=g), 0.0)
    Z[:, 2] = Z[:, 1] * 2.0 + Z[:, 3] * (Z[:, 1] > 0)  # correlated with 1 (and 3)
    Z[:, 5] = 0.0  # dead
    correlation = CodeCorrelation(SparseCodes.of(Z))
    with np.errstate(invalid="ignore"):  # the dead latent's 0 / 0
        expected = np.nan_to_num(np.corrcoef(Z.double().numpy().T), nan=0.0)
    for j in range(6):
        assert np.allclose(correlation.of(j).numpy(), expected[j], atol=1e-6), j


class _Saturating(nn.Module):
    """y = min(x . r, 1): a variable written twice over is read only when both writes go."""

    def __init__(self, r: torch.Tensor) -> None:
        super().__init__()
        self.site = nn.Identity()
        self.r = nn.Parameter(r.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.site(x) @ self.r, max=1.0)[:, None]


def written_twice() -> tuple[AtSite, list[CausalTarget], torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = min(x . r, 1) at a site where latents 0 and 1 both write v (0/1) along r and latent 2
    another variable along e_7: the site, the three latents, the data X (400, 8), the codes (400, 3)
    and the writes (3, 8)."""
    g = torch.Generator().manual_seed(5)
    v = (torch.rand(400, generator=g) < 0.5).float()
    r = torch.nn.functional.normalize(torch.ones(8), dim=0)
    other = (torch.rand(400, generator=g) < 0.3).float()
    codes = torch.stack([v, v, other], dim=1)
    writes = torch.stack([r, r, torch.eye(8)[7]]).double()
    X = torch.randn(400, 8, generator=g) * 0.05 + codes @ writes.float()
    adapter = TorchModel(_Saturating(r))
    at = AtSite(adapter, [X[:200], X[200:]], adapter.resolve("site"), X, n_null=99)
    return at, _latents(codes, writes), X, codes, writes


def test_group_ablation_sees_a_variable_two_latents_carry() -> None:
    """Two latents write the same variable v along r (codes v, correlation 1) into y = min(x . r, 1):
    removing one leaves x . r >= 1 and changes nothing, removing both moves y by about 1. Group
    ablation removes both, s_i = z_0 d_0 + z_1 d_1, and changes example i by (y(h - s_i) - y)^2 /
    spread; latent ablation of latent 0 stays below the used axis' margin; an uncorrelated third latent
    is left out."""
    at, targets, X, codes, writes = written_twice()
    r, v = writes[0].float(), codes[:, 0]
    group = LatentGroupAblation().scores(at, targets[:1])["latent 0"]
    alone = LatentAblation().scores(at, targets[:1])["latent 0"]
    y = torch.clamp(X @ r, max=1.0).double()
    spread = float((y - y.mean()).square().mean())
    fires = v != 0
    expected = (torch.clamp((X - codes[:, :2] @ writes[:2].float()) @ r, max=1.0).double() - y)[
        fires
    ] ** 2 / spread
    assert torch.allclose(group.real, expected, atol=1e-5)
    assert group.group is not None and group.group.tolist() == [0, 1]  # latent 2 left out
    margin = 0.01  # the used axis' default margin of output change
    p_group = permutation_p_value(group.real.mean().reshape(1) - margin, group.null[None])
    p_alone = permutation_p_value(alone.real.mean().reshape(1) - margin, alone.null[None])
    assert float(p_group[0]) <= 0.01 and float(p_alone[0]) > 0.5
    assert float(alone.real.mean()) < margin < float(group.real.mean())


def test_group_ablation_p_values_are_uniform_for_groups_that_carry_nothing() -> None:
    """Calibration: dictionaries of three latents with random directions, latents 0 and 1 firing on
    the same rows (code correlation about 0.68, so grouped), latent 2 apart; latent 0's p-value over
    200 dictionaries, 99 null draws each, is uniform on the linear readout of the test above."""
    g = torch.Generator().manual_seed(6)
    X = torch.randn(256, 8, generator=g) * torch.tensor([4.0, 4.0, 1, 1, 1, 1, 1, 1])
    R = torch.randn(3, 8, generator=g)
    p_values = []
    for i in range(200):
        fires = torch.rand(256, 1, generator=g) < 0.3
        codes = torch.rand(256, 3, generator=g) * torch.cat(
            [fires, fires, torch.rand(256, 1, generator=g) < 0.3], 1
        )
        writes = torch.nn.functional.normalize(torch.randn(3, 8, generator=g, dtype=torch.float64), dim=1)
        raw = LatentGroupAblation().scores(_at(X, R, n_null=99, seed=i), _latents(codes, writes)[:1])[
            "latent 0"
        ]
        p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    assert_uniform(p_values)


def test_group_ablation_refuses_bad_parameters_and_lone_latents() -> None:
    X = torch.randn(200, 4)
    at = _at(X, torch.eye(4)[:2], n_null=5)
    codes = (torch.rand(200, 2) < 0.5).float()
    targets = _latents(codes, torch.eye(4)[:2].double())
    for bad in (0.0, 1.5):
        with pytest.raises(FeatureControlsError, match="min_correlation"):
            LatentGroupAblation(min_correlation=bad).scores(at, targets)
    with pytest.raises(FeatureControlsError, match="matched variance"):
        LatentGroupAblation(null="matched variance").scores(at, targets)
    lone = CausalTarget("lone", torch.eye(4)[0].double(), code=codes[:, 0], kind="dictionary latent")
    with pytest.raises(FeatureControlsError, match="dictionary"):
        LatentGroupAblation().scores(at, [lone])


def test_pca_components_are_each_their_own_group_through_the_battery() -> None:
    """PCA's codes are uncorrelated, so every component's group is itself: the battery hands each
    latent its dictionary, group ablation runs on every component, and its real changes are latent
    ablation's."""
    g = torch.Generator().manual_seed(7)
    X = torch.randn(600, 6, generator=g) * torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.3])
    R = torch.randn(2, 6, generator=g)
    pca = PCA(3).fit(X)
    codes = (X - pca.mean_) @ pca.components_.T
    targets = _latents(codes, pca.components_.double())
    at = _at(X, R, n_null=5)
    group, alone = LatentGroupAblation().scores(at, targets), LatentAblation().scores(at, targets)
    for t in targets:
        assert torch.allclose(group[t.name].real, alone[t.name].real, atol=1e-8), t.name
    battery = Battery(seed=0, n_weight_seeds=1, used_controls=[LatentGroupAblation()], progress=False)
    result = battery.run(_Linear(R), X, "site", [Latents("pca", "site", PCA(3))])
    assert len(result.candidates) == 3
    for c in result.candidates:
        assert [e.control for e in c.axes["used"].evidence] == [LatentGroupAblation().name]


def test_the_evidence_names_the_latents_removed_with_a_latent() -> None:
    """Latents 0 and 1 of an SAE read and write the same variable (codes equal, correlation 1), latent
    2 another: through the battery, latent 0's group ablation evidence names latent 1, latent 2's
    names none."""
    g = torch.Generator().manual_seed(8)
    s = (torch.rand(600, 2, generator=g) < 0.3) * (0.5 + torch.rand(600, 2, generator=g))
    X = torch.cat([s, 0.05 * torch.randn(600, 4, generator=g)], dim=1)
    sae = SparseAutoencoder(d_sae=3, activation="relu", n_epochs=1, seed=0).fit(X)
    rows = torch.eye(6)[[0, 0, 1]]
    sae.encoder_, sae.decoder_ = rows.clone(), rows.clone()
    sae.b_enc_, sae.b_dec_, sae.scale_ = torch.zeros(3), torch.zeros(6), 1.0
    battery = Battery(seed=0, n_weight_seeds=1, weight_controls=[], used_controls=[LatentGroupAblation()],
                      n_random_directions=20, progress=False)  # fmt: skip
    result = battery.run(_Linear(torch.eye(6)[:2]), X, "site", [Latents("sae", "site", dictionary=sae)])
    metrics = {c.name: c.axes["used"].evidence[0].metric for c in result.candidates}
    assert metrics["sae/0"].endswith("(with latents 1)") and metrics["sae/1"].endswith("(with latents 0)")
    assert "with latents" not in metrics["sae/2"]
