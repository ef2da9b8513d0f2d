"""The used tests that move latents (controls/causal/latent_rows.py): latent insertion's and resample
ablation's arithmetic, and the calibration of all three tests on latents that carry nothing."""

import math

import pytest
import torch
from torch import nn

from featurecontrols.adapters import TorchModel
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.causal.latent_insertion import LatentInsertion, absent
from featurecontrols.controls.causal.latent_resample_ablation import LatentResampleAblation
from featurecontrols.controls.causal.latent_rows import LatentNull, LatentTest
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
    for level in (0.05, 0.5):
        below = sum(p <= level for p in p_values)
        sd = math.sqrt(200 * level * (1 - level))
        assert abs(below - 200 * level) < 3 * sd, f"{below}/200 p-values at or below {level}"


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
