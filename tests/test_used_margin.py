"""The used axis tests against its margin (a minimum-effect test): p-values of H0 "effect <= margin",
and a change that beats its null but is too small to matter is shown unused, not called used."""

import pytest
import torch
from torch import nn

from featurecontrols.adapters import TorchModel
from featurecontrols.axes import used
from featurecontrols.axes.evidence import Axis, Bootstrap, Margins
from featurecontrols.axes.from_scores import from_null, from_pairs
from featurecontrols.axes.scores import NullScores, PairedScores
from featurecontrols.axes.verdict import corrected, make_axis, reason
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.seeding import generator
from featurecontrols.stats import binomial_upper_tail, bootstrap_means, percentile_interval

BOOT = Bootstrap(seed=0, n=200, confidence=0.95)


def test_null_p_value_is_that_of_the_real_change_less_the_margin() -> None:
    """p = (1 + #{b : null_b >= mean(real) - delta}) / (1 + B), counted by hand."""
    real = torch.tensor([0.30, 0.34, 0.32], dtype=torch.float64)  # mean 0.32
    null = torch.linspace(0.0, 0.4, 101, dtype=torch.float64)
    s = NullScores("m", "output change", real, null)
    for delta in (0.0, 0.05, 0.2):
        expected = (1 + int((null >= 0.32 - delta - 1e-12).sum())) / 102
        assert from_null("used", "c", s, ("k",), BOOT, delta).p_value == expected
    shifted, plain = from_null("used", "c", s, ("k",), BOOT, 0.05), from_null("used", "c", s, ("k",), BOOT)
    assert shifted.effect == plain.effect and shifted.ci_high == plain.ci_high


def test_paired_p_value_is_the_sign_test_of_differences_above_the_margin() -> None:
    d = torch.tensor([0.5, 0.02, 0.03, 0.04, 0.2, -0.1], dtype=torch.float64)
    s = PairedScores("m", "output change", d, torch.zeros(6, dtype=torch.float64))
    assert from_pairs("used", "c", s, ("k",), BOOT).p_value == binomial_upper_tail(5, 6)
    assert from_pairs("used", "c", s, ("k",), BOOT, 0.1).p_value == binomial_upper_tail(2, 6)


def test_the_used_interval_carries_the_nulls_spread_across_directions() -> None:
    """MiniLM's plural_subject in miniature: the real change (0.035 +- 0.002 over examples) is 0.022
    above the null's mean, but a fifth of the random directions move the outputs as much. Over examples
    alone the interval lies above the margin while p is 0.2; with each resample less a random null draw
    it reaches below the margin, and equals that computation done by hand."""
    g = torch.Generator().manual_seed(0)
    real = 0.035 + 0.002 * torch.randn(400, generator=g, dtype=torch.float64)
    null = torch.cat([torch.full((51,), 0.008), torch.full((13,), 0.04)]).double()
    s = NullScores("m", "output change", real, null)
    margin = BOOT.margins.of("output change")
    narrow = from_null("used", "c", s, ("k",), BOOT, margin)
    wide = used.assess("c", s, ("k",), BOOT)
    assert narrow.p_value == wide.p_value == pytest.approx(14 / 65)
    assert narrow.ci_low > margin and wide.ci_low < margin < wide.effect == narrow.effect
    draw = generator(BOOT.seed, "bootstrap", "used", "c", "k")
    means = bootstrap_means(torch.stack([real, real], dim=1), BOOT.n, draw)
    picked = null[torch.randint(0, 64, (BOOT.n,), generator=draw)]
    low, high = percentile_interval(means[:, :1] - picked[:, None], BOOT.confidence)
    assert (wide.ci_low, wide.ci_high) == pytest.approx((float(low[0]), float(high[0])))
    assert wide.score_high == narrow.score_high  # the change itself: over examples, as before


class _Reader(nn.Module):
    """The output reads the site (4 dims) only along e_2, weakly, a direction the data never visits
    there, plus an input the site does not carry, so the outputs vary across the data."""

    def __init__(self) -> None:
        super().__init__()
        self.site = nn.Identity()
        self.read = nn.Parameter(torch.tensor([0.0, 0.0, 0.02, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.site(x[:, :4])
        return torch.stack([h @ self.read + x[:, 4], x[:, 5]], dim=1)


def test_a_change_that_beats_its_null_but_not_the_margin_is_shown_unused() -> None:
    """The toy LM's filler latents in miniature: the site varies along e_0 only, which the output
    ignores; a latent writes along (e_0 + e_2) / sqrt 2, so removing it moves the output a little
    (about 1e-4 of its spread) and the null, random directions of the data's span (e_0), not at all.
    Against 0 every null draw falls below the real change (p = 1 / (B + 1)); against the margin
    (0.01) none reaches the real change less it, the interval lies below the margin: used = no."""
    g = torch.Generator().manual_seed(0)
    n = 400
    x = torch.zeros(n, 6)
    x[:, 0] = torch.randint(0, 2, (n,), generator=g).float()  # the site's one varying coordinate
    x[:, 4:] = torch.randn(n, 2, generator=g)
    adapter = TorchModel(_Reader())
    site = adapter.resolve("site")
    X = x[:, :4].double()
    direction = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64) / 2**0.5
    target = CausalTarget("latent", direction, code=x[:, 0] * 3.0, kind="dictionary latent")
    at = AtSite(adapter, [x], site, X, n_null=199, seed=0, margin=0.01)
    raw = LatentAblation().scores(at, [target])["latent"]
    assert raw.real.shape == (int(x[:, 0].sum()),)  # only the rows where it fires
    assert 0 < float(raw.real.mean()) < 1e-3 and float(raw.null.abs().max()) < 1e-12
    assert raw.null.numel() == 64  # every draw reaches the real change less the margin at once
    against_zero = from_null("used", "c", raw, ("latent",), BOOT)
    assert against_zero.p_value == 1 / 65  # the old test: "used" at any alpha a 64-draw null allows
    evidence = corrected([used.assess("c", raw, ("latent",), BOOT)], "holm")
    assert evidence[0].p_value == 1.0 and evidence[0].ci_high < Margins().output_change
    assert make_axis("used", evidence, 0.05).status == "no"


def test_a_large_change_is_used_against_the_margin() -> None:
    """The same model reading e_2 strongly: the removal moves the outputs far beyond the margin."""
    g = torch.Generator().manual_seed(1)
    n = 400
    x = torch.zeros(n, 6)
    x[:, 0] = torch.randint(0, 2, (n,), generator=g).float()
    x[:, 4:] = torch.randn(n, 2, generator=g)
    model = _Reader()
    with torch.no_grad():
        model.read[2] = 2.0
    adapter = TorchModel(model)
    site = adapter.resolve("site")
    direction = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64) / 2**0.5
    target = CausalTarget("latent", direction, code=x[:, 0] * 3.0, kind="dictionary latent")
    at = AtSite(adapter, [x], site, x[:, :4].double(), n_null=199, seed=0, margin=0.01)
    raw = LatentAblation().scores(at, [target])["latent"]
    evidence = corrected([used.assess("c", raw, ("k",), BOOT)], "holm")
    assert evidence[0].effect > 1.0 and evidence[0].p_value == 1 / 200
    assert make_axis("used", evidence, 0.05).status == "yes"


class _Isotropic(nn.Module):
    """The output is the site itself (2 dims): every direction of the site is read alike."""

    def __init__(self) -> None:
        super().__init__()
        self.site = nn.Identity()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.site(x) * self.scale


def test_a_change_no_larger_than_a_null_that_is_read_as_much_is_inconclusive_not_unused() -> None:
    """At a site whose every direction is read, removing a latent moves the outputs as far as its
    null does (effect 0, a point interval) while the change itself is far above the margin: that
    shows nothing about use, so the axis stays inconclusive (the old rule, the effect's interval
    below the margin, called it unused), and the reason says why."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 2, generator=g)
    adapter = TorchModel(_Isotropic())
    site = adapter.resolve("site")
    code = (torch.rand(300, generator=g) < 0.5).float()
    target = CausalTarget(
        "latent", torch.tensor([0.5, 0.0], dtype=torch.float64), code=code, kind="dictionary latent"
    )
    at = AtSite(adapter, [x], site, x.double(), n_null=99, seed=0, margin=0.01)
    raw = LatentAblation().scores(at, [target])["latent"]
    (e,) = corrected([used.assess("c", raw, ("latent",), BOOT)], "holm")
    assert abs(e.effect) < 1e-6 and e.ci_high < e.margin < e.score <= e.score_high
    axis = make_axis("used", [e], 0.05)
    assert axis.status == "inconclusive"
    axes = {"decodable": Axis("decodable", "yes", ()), "learned": Axis("learned", "no", ()), "used": axis}
    assert "the null moves the outputs as much" in reason(axes, 0.05)  # type: ignore[arg-type]


def test_the_real_statistic_interval_comes_from_the_same_resamples() -> None:
    """score_high is the bootstrap upper end of mean(real), from the resamples of the effect's own."""
    real = torch.tensor([0.1, 0.5, 0.2, 0.9, 0.4], dtype=torch.float64)
    null = torch.full((50,), 0.25, dtype=torch.float64)
    e = from_null("used", "c", NullScores("m", "output change", real, null), ("k",), BOOT)
    assert e.score_high == pytest.approx(e.ci_high + 0.25)
    d = PairedScores("m", "output change", real, torch.zeros(5, dtype=torch.float64))
    assert (
        from_pairs("used", "c", d, ("k",), BOOT).score_high
        == from_pairs("used", "c", d, ("k",), BOOT).ci_high
    )
