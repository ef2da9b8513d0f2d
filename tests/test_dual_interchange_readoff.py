"""The dual interchange measured along the feature's own output difference, against moves that carry
nothing of the feature: its null directions, its validity where the outputs read nothing of the
feature, and the testbeds it was built for (the traps and toy models of superposition)."""

from __future__ import annotations

import math

import pytest
import torch
from test_used_traps import used_only

from featurecontrols.adapters import TorchModel
from featurecontrols.axes.evidence import GroundTruth
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.dual_interchange_readoff import DualInterchangeReadoff
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.matched_shifts import MatchedShifts
from featurecontrols.stats import permutation_p_value
from featurecontrols.testbeds import Testbed
from featurecontrols.testbeds.toy_superposition import ToySuperpositionConfig, train_toy_superposition
from featurecontrols.testbeds.used_traps import dormant, overlapping, pass_through


def test_uncorrelated_shifts_leave_the_read_off_where_it_is() -> None:
    """one_std(uncorrelated=r): every shift moves r . h by 0 and the data by one standard deviation
    in its whitened coordinates; without r the draws are the plain ones."""
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(5, 5, generator=g, dtype=torch.float64)
    X = torch.randn(3000, 5, generator=g, dtype=torch.float64) @ mix
    shifts = MatchedShifts(X, "covariance", "mahalanobis")
    r = torch.randn(5, generator=g, dtype=torch.float64)
    moved = shifts.one_std(400, torch.Generator().manual_seed(1), uncorrelated=r)
    torch.testing.assert_close(moved @ r, torch.zeros(400, dtype=torch.float64), atol=1e-9, rtol=0)
    whitened = (moved @ shifts.basis) / shifts.stds
    torch.testing.assert_close(whitened.norm(dim=1), torch.ones(400, dtype=torch.float64))
    plain = shifts.one_std(400, torch.Generator().manual_seed(1))
    assert float((plain @ r).abs().min()) > 0  # the plain draws do move it
    torch.testing.assert_close(((plain @ shifts.basis) / shifts.stds).norm(dim=1), whitened.norm(dim=1))


@pytest.mark.parametrize("build", [pass_through, overlapping, dormant], ids=lambda b: b.__name__)
def test_read_off_calls_read_variables_used_and_nothing_else(build: object) -> None:
    bed: Testbed = build(0)  # type: ignore[operator]
    for c in used_only(bed, DualInterchangeReadoff()).candidates:
        expected = "yes" if c.ground_truth == "model feature" else "no"
        assert c.axes["used"].status == expected, (c.name, c.axes["used"].evidence[0])


def test_read_off_calls_the_represented_features_of_superposition_used() -> None:
    """TMS (20 features in 5 dimensions, seed 0): the plain dual interchange passes none of its
    represented features (README); along their own output difference all are used, and no absent one
    is."""
    bed = train_toy_superposition(ToySuperpositionConfig(seed=0))
    result = used_only(bed, DualInterchangeReadoff())
    for c in result.candidates:
        expected = "yes" if c.ground_truth == "model feature" else "no"
        assert c.axes["used"].status == expected, (c.name, c.axes["used"].evidence[0])


class ProductOfTwo(torch.nn.Module):
    """h = A x at ``hidden`` (two +-1 variables along orthonormal directions a, b, and noise), output
    (a . h)(b . h): each variable is used, through an XOR, and moves no class mean of the output."""

    def __init__(self, directions: torch.Tensor) -> None:
        super().__init__()
        self.directions = directions  # (d, 2)
        self.hidden = torch.nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.hidden(inputs[:, :2] @ self.directions.T + 0.1 * inputs[:, 2:])
        coordinates = h @ self.directions
        return (coordinates[:, 0] * coordinates[:, 1])[:, None]


def test_a_feature_used_through_an_xor_is_never_called_unused() -> None:
    """Flipping x_a flips every output, yet the outputs' class means do not differ by x_a, so the
    outputs move along no class difference (read-off ~0): "not used" must bound the whole move."""
    g = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(6, 2, generator=g))[0]
    x = torch.randint(0, 2, (2048, 2), generator=g).float() * 2 - 1
    inputs = torch.cat([x, torch.randn(2048, 6, generator=g)], dim=1)
    features = {"x_a": (x[:, 0] > 0).long()}
    truth: dict[str, GroundTruth] = {"x_a": "model feature"}
    bed = Testbed("xor", ProductOfTwo(directions), inputs, "hidden", features, truth, "", {})
    result = used_only(bed, DualInterchangeReadoff())
    (candidate,) = result.candidates
    evidence = candidate.axes["used"].evidence[0]
    assert abs(evidence.score) < 0.1 and evidence.score_high > 0.5  # no read-off, a large move
    assert candidate.axes["used"].status != "no", evidence


def test_read_off_p_values_are_valid_where_the_outputs_read_nothing_of_the_feature() -> None:
    """Validity under H0: 200 decodable features that the outputs do not follow (thresholds on random
    directions orthogonal to the read variables of the pass-through trap, whose outputs read those
    alone), 99 null draws each: at most alpha of them at p <= alpha, within 3 binomial standard
    deviations, at alpha 0.05 and 0.5 (conservative, not uniform: the interchange moves the outputs
    by 0)."""
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    X = adapter.activations(list(bed.inputs.split(1024)), [site])["hidden"].double()
    read = bed.model.readout.weight.detach().double().T  # (d, 4) the directions the outputs read
    complement = torch.linalg.svd(read, full_matrices=True)[0][:, read.shape[1] :]  # (d, d - 4)
    g = torch.Generator().manual_seed(0)
    p_values = []
    for i in range(200):
        projection = X @ (complement @ torch.randn(complement.shape[1], generator=g, dtype=torch.float64))
        target = CausalTarget(f"unread {i}", labels=(projection > projection.median()).float())
        at = AtSite(adapter, [bed.inputs[:256]], site, X, n_null=99, seed=i, margin=0.0)
        raw = DualInterchangeReadoff().scores(at, [target])[target.name]
        p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    for alpha in (0.05, 0.5):
        share = sum(p <= alpha for p in p_values) / len(p_values)
        assert share <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / len(p_values)), (alpha, share)


def test_read_off_refuses_targets_without_labels() -> None:
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    X = adapter.activations([bed.inputs[:64]], [site])["hidden"]
    at = AtSite(adapter, [bed.inputs[:64]], site, X, n_null=9, seed=0)
    with pytest.raises(FeatureControlsError, match="needs labels"):
        DualInterchangeReadoff().scores(at, [CausalTarget("d", direction=torch.ones(16), kind="latent")])
