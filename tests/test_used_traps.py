"""The used axis' trap testbeds and the dual-interchange test they were built to check."""

import math

import pytest
import torch

from featurecontrols import Battery
from featurecontrols.adapters import TorchModel
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.directional_ablation import DirectionalAblation
from featurecontrols.controls.causal.dual_interchange import DualInterchange
from featurecontrols.pipeline.results import RunResult
from featurecontrols.stats import permutation_p_value
from featurecontrols.testbeds import Testbed
from featurecontrols.testbeds.used_traps import dormant, overlapping, pass_through


@pytest.mark.parametrize("build", [pass_through, overlapping, dormant], ids=lambda b: b.__name__)
def test_ground_truth_holds_by_construction(build: object) -> None:
    bed: Testbed = build(0)  # type: ignore[operator]
    assert bed.checks["unread_output_change"] < 1e-5  # flipping an unread variable changes no output
    assert bed.checks["read_output_change_min"] > 1.0
    if bed.name == "pass_through":
        assert bed.checks["read_variance_share"] > 0.9  # the read variables dominate the variance
    if bed.name == "overlapping":
        assert bed.checks["cosine_a_b"] == pytest.approx(0.8, abs=1e-6)
    if bed.name == "dormant":
        assert bed.checks["dormant_variance"] < 1e-10 and [c.ground_truth for c in bed.extra] == [
            "dataset feature"
        ]


def _used(bed: Testbed, control: object) -> RunResult:
    battery = Battery(
        weight_controls=[], used_controls=[control], counterfactual_control=None,  # type: ignore[list-item]
        correction="bh", n_bootstrap=100, progress=False,
    )  # fmt: skip
    return battery.run(bed.model, bed.inputs, bed.site, bed.candidates())


@pytest.mark.parametrize("build", [pass_through, overlapping, dormant], ids=lambda b: b.__name__)
def test_dual_interchange_calls_read_variables_used_and_nothing_else(build: object) -> None:
    bed: Testbed = build(0)  # type: ignore[operator]
    result = _used(bed, DualInterchange())
    for c in result.candidates:
        expected = "yes" if c.ground_truth == "model feature" else "no"
        assert c.axes["used"].status == expected, (c.name, c.axes["used"].evidence[0])


def test_ablation_falls_for_the_dormant_direction() -> None:
    """The trap works: mean-ablating the illusory direction moves the activations along the dormant
    direction the output reads, so ablation calls it used."""
    result = _used(dormant(0), DirectionalAblation())
    illusion = next(c for c in result.candidates if c.name == "x_1 + dormant")
    assert illusion.axes["used"].status == "yes"


def test_dual_interchange_p_values_are_uniform_for_features_that_carry_nothing() -> None:
    """Calibration: decodable features that carry nothing, each a random linear function of the
    activations in their own metric (a threshold on u . Sigma^(-1/2) h, u uniform on the sphere: the
    directions the null draws), get uniform p-values: 200 features, 99 null draws each."""
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    batches = [bed.inputs[:256]]
    X = adapter.activations(list(bed.inputs.split(1024)), [site])["hidden"]
    centred = X.double() - X.double().mean(0)
    eigenvalues, V = torch.linalg.eigh(centred.T @ centred / X.shape[0])
    inverse_root = V / eigenvalues.clamp(min=1e-12).sqrt()  # whitening: h -> V^T h / sqrt(lambda)
    g = torch.Generator().manual_seed(0)
    p_values = []
    for i in range(200):
        a = inverse_root @ torch.randn(X.shape[1], generator=g, dtype=torch.float64)
        projection = X.double() @ a
        y = (projection > projection.median()).float()
        target = CausalTarget(f"random {i}", labels=y)
        raw = DualInterchange().scores(AtSite(adapter, batches, site, X, n_null=99, seed=i), [target])[
            target.name
        ]
        p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    for level in (0.05, 0.5):
        below = sum(p <= level for p in p_values)
        sd = math.sqrt(200 * level * (1 - level))
        assert abs(below - 200 * level) < 3 * sd, f"{below}/200 p-values at or below {level}"
