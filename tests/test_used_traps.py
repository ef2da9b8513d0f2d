"""The used axis' trap testbeds and the dual-interchange test they were built to check."""

import math

import pytest
import torch
from p_values import assert_uniform

from featurecontrols import Battery
from featurecontrols.adapters import TorchModel
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.directional_ablation import DirectionalAblation
from featurecontrols.controls.causal.dual_interchange import VARIANCE_BIN, DualInterchange
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.matched_shifts import MatchedShifts
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


def used_only(bed: Testbed, control: object) -> RunResult:
    """A run of the used axis alone with ``control``, corrected by Benjamini-Hochberg."""
    battery = Battery(
        weight_controls=[], used_controls=[control], counterfactual_control=None,  # type: ignore[list-item]
        correction="bh", n_bootstrap=100, progress=False,
    )  # fmt: skip
    return battery.run(bed.model, bed.inputs, bed.site, bed.candidates())


@pytest.mark.parametrize("build", [pass_through, overlapping, dormant], ids=lambda b: b.__name__)
def test_dual_interchange_calls_read_variables_used_and_nothing_else(build: object) -> None:
    bed: Testbed = build(0)  # type: ignore[operator]
    result = used_only(bed, DualInterchange())
    for c in result.candidates:
        expected = "yes" if c.ground_truth == "model feature" else "no"
        assert c.axes["used"].status == expected, (c.name, c.axes["used"].evidence[0])


def test_ablation_falls_for_the_dormant_direction() -> None:
    """The trap works: mean-ablating the illusory direction moves the activations along the dormant
    direction the output reads, so ablation calls it used."""
    result = used_only(dormant(0), DirectionalAblation())
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
    p_values = []
    for i, a in enumerate(_whitened_directions(X, 200, torch.Generator().manual_seed(0))):
        projection = X.double() @ a
        y = (projection > projection.median()).float()
        target = CausalTarget(f"random {i}", labels=y)
        raw = DualInterchange().scores(AtSite(adapter, batches, site, X, n_null=99, seed=i), [target])[
            target.name
        ]
        p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    assert_uniform(p_values)


def test_labels_that_are_one_variable_move_together() -> None:
    """Modular addition's sin(w_1 a) and a < p/2 in miniature: an unread variable x_4 of the
    pass-through trap and a copy of it with 2% of its labels flipped (r ~ 0.96) are one variable, so
    neither's write vector holds the other's read-off fixed (which would separate them along the few
    rows where they differ, a change no input makes): both are shown unused, the read x_0 used; and
    each write vector is the surgical one of the targets it holds, R_S w = e_j, the twin left free."""
    from featurecontrols.controls.causal.dual_interchange import _Interchanges
    from featurecontrols.measures.matched_shifts import MatchedShifts
    from featurecontrols.pipeline.candidates import Labelled

    bed = pass_through(0)
    flip = torch.zeros(len(bed.inputs), dtype=torch.bool)
    flip[::50] = True
    twin = torch.where(flip, 1 - bed.features["x_4"], bed.features["x_4"])
    candidates = [*bed.candidates(), Labelled("x_4 twin", twin, "dataset feature")]
    battery = Battery(weight_controls=[], used_controls=[DualInterchange()], counterfactual_control=None,
                      correction="bh", n_bootstrap=100, progress=False)  # fmt: skip
    result = battery.run(bed.model, bed.inputs, bed.site, candidates)
    status = {c.name: c.axes["used"].status for c in result.candidates}
    assert status["x_4"] == status["x_4 twin"] == "no" and status["x_0"] == "yes", status
    adapter = TorchModel(bed.model)
    site = adapter.resolve(bed.site)
    X = adapter.activations(list(bed.inputs.split(1024)), [site])[str(site)]
    targets = [CausalTarget(c.name, labels=c.labels) for c in candidates if isinstance(c, Labelled)]
    plans = _Interchanges(AtSite(adapter, [bed.inputs], site, X, n_null=9, seed=0), targets,
                          MatchedShifts(X, "covariance", "mahalanobis"), len(bed.inputs))  # fmt: skip
    j, twin_j = 4, len(targets) - 1
    w = plans.write_vector(j)
    others = [i for i in range(len(targets)) if i not in (j, twin_j)]
    torch.testing.assert_close(plans.R[j] @ w, torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(plans.R[others] @ w, torch.zeros(len(others), dtype=torch.float64))
    assert abs(float(plans.R[twin_j] @ w)) > 0.5  # the twin moves with it
    torch.testing.assert_close(plans.write_vector(0), plans.writes[:, 0])  # no twin: every target held


def test_targets_that_cannot_move_alone_move_their_own_read_off_by_one() -> None:
    """More targets (8 variables and 12 thresholds on random directions) than the pass-through trap's
    16 dimensions: R W = I has no solution. Every write vector moves its own read-off by exactly one;
    one that cannot move alone moves the others least, G v parallel to a_j in whitened coordinates
    (the gradient of sum_(i != j) (a_i . v)^2 along a_j . v = 1 vanishes); the pseudo-inverse alone
    would have moved them by less than one."""
    from featurecontrols.controls.causal.dual_interchange import _Interchanges
    from featurecontrols.pipeline.candidates import Labelled

    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve(bed.site)
    X = adapter.activations(list(bed.inputs.split(1024)), [site])[str(site)]
    U = torch.randn(X.shape[1], 12, generator=torch.Generator().manual_seed(3))
    thresholds = {f"t_{i}": (X @ U[:, i] > 0).long() for i in range(12)}
    labelled = [c for c in bed.candidates() if isinstance(c, Labelled)]
    targets = [CausalTarget(c.name, labels=c.labels) for c in labelled]
    targets += [CausalTarget(name, labels=y) for name, y in thresholds.items()]
    plans = _Interchanges(AtSite(adapter, [bed.inputs], site, X, n_null=9, seed=0), targets,
                          MatchedShifts(X, "covariance", "mahalanobis"), len(bed.inputs))  # fmt: skip
    own = (plans.R * plans.writes.T).sum(dim=1)
    torch.testing.assert_close(own, torch.ones(len(targets), dtype=torch.float64))
    V = torch.linalg.lstsq(plans.root, plans.writes).solution  # whitened write vectors (r, k)
    pinv_own = (plans.A * torch.linalg.pinv(plans.A).T).sum(dim=1)
    alone = pinv_own > 1 - 1e-6
    assert int((~alone).sum()) > 0 and float(pinv_own.min()) < 0.99
    for j in torch.nonzero(~alone).flatten().tolist():
        others = torch.cat([plans.A[:j], plans.A[j + 1 :]])
        gradient = others.T @ (others @ V[:, j])
        a = plans.A[j]
        torch.testing.assert_close(
            gradient - (gradient @ a) / (a @ a) * a, torch.zeros_like(a), atol=1e-8, rtol=0
        )


def _whitened_directions(X: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k directions (k, d) v = Sigma^(-1/2) u, u uniform on the sphere: steered STEER standard
    deviations along Sigma v, each is a draw of the steered null itself."""
    centred = X.double() - X.double().mean(0)
    eigenvalues, V = torch.linalg.eigh(centred.T @ centred / (X.shape[0] - 1))
    inverse_root = V @ torch.diag(eigenvalues.clamp(min=1e-12).rsqrt()) @ V.T
    return torch.randn(k, X.shape[1], generator=g, dtype=torch.float64) @ inverse_root


def test_steered_directions_share_one_null_and_get_what_each_gets_alone() -> None:
    """Directions without labels (a latent's decoder direction) are steered two standard deviations
    along themselves against one shared sequence of null draws, each with its own stop: run together,
    each gets the real change and null draws it gets alone, its null a prefix of the longest; the read
    input's direction beats the null and an unread one's steering changes next to nothing."""
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    X = adapter.activations(list(bed.inputs.split(1024)), [site])["hidden"]
    directions = class_directions(bed, X) + list(_whitened_directions(X, 3, torch.Generator().manual_seed(1)))
    targets = [CausalTarget(f"d{i}", direction=v, kind="latent") for i, v in enumerate(directions)]
    at = AtSite(adapter, [bed.inputs[:256]], site, X, n_null=199, seed=0)
    together = DualInterchange().scores(at, targets)
    longest = max((s.null for s in together.values()), key=len)
    for target in targets:
        alone = DualInterchange().scores(at, [target])[target.name]
        torch.testing.assert_close(together[target.name].real, alone.real)
        torch.testing.assert_close(together[target.name].null, alone.null)
        torch.testing.assert_close(together[target.name].null, longest[: len(alone.null)])
    read, unread = together["d0"], together["d1"]
    assert float(permutation_p_value(read.real.mean().reshape(1), read.null[None])) <= 1 / 200
    assert float(unread.real.mean()) < 0.01  # sampling leakage of x_4's class means into the read inputs
    assert float(permutation_p_value(unread.real.mean().reshape(1), unread.null[None])) > 0.5


def class_directions(bed: Testbed, X: torch.Tensor) -> list[torch.Tensor]:
    """The Fisher read-offs Sigma^+ (mu_1 - mu_0) of the read input x_0 and the unread input x_4:
    steered along themselves, each moves along its class-mean difference."""
    centred = X.double() - X.double().mean(0)
    inverse = torch.linalg.pinv(centred.T @ centred / (X.shape[0] - 1), hermitian=True)
    ones = [bed.features[f].bool() for f in ("x_0", "x_4")]
    return [inverse @ (X[y].double().mean(0) - X[~y].double().mean(0)) for y in ones]


def test_steered_p_values_are_uniform_for_directions_that_carry_nothing() -> None:
    """Calibration of the shared steered null: directions distributed as its own draws get uniform
    p-values, 40 independent nulls (seeds) of 5 directions each, 99 draws per null."""
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    X = adapter.activations(list(bed.inputs.split(1024)), [site])["hidden"]
    g = torch.Generator().manual_seed(0)
    p_values = []
    for seed in range(40):
        targets = [
            CausalTarget(f"r{i}", direction=v, kind="latent")
            for i, v in enumerate(_whitened_directions(X, 5, g))
        ]
        at = AtSite(adapter, [bed.inputs[:256]], site, X, n_null=99, seed=seed)
        for raw in DualInterchange().scores(at, targets).values():
            p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    assert_uniform(p_values)


def test_directions_of_a_given_variance_have_it_and_lie_in_the_span() -> None:
    """MatchedShifts.of_variance: unit directions of the data's span with u^T Sigma u equal to the
    variance asked for, anywhere in the span's range, and clamped into it outside."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 6, generator=g, dtype=torch.float64) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.0])
    shifts = MatchedShifts(X, "covariance", "mahalanobis")
    eigenvalues = shifts.stds**2
    for variance in (float(eigenvalues.min()), 0.7, 3.0, 10.0, float(eigenvalues.max()), 1e3, 1e-9):
        u = shifts.of_variance(variance, 50, g)
        expected = min(max(variance, float(eigenvalues.min())), float(eigenvalues.max()))
        torch.testing.assert_close(u.norm(dim=1), torch.ones(50, dtype=torch.float64))
        variances = ((u @ shifts.covariance) * u).sum(dim=1)
        torch.testing.assert_close(variances, torch.full((50,), expected, dtype=torch.float64))
        assert float(u[:, 5].abs().max()) < 1e-12  # never along the direction the data does not visit
    v = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 7.0], dtype=torch.float64)  # out-of-span part ignored
    assert shifts.variance_along(v) == pytest.approx(float(shifts.covariance[1, 1]))


def test_matched_variance_steered_p_values_are_uniform_for_directions_that_carry_nothing() -> None:
    """Calibration of the matched-variance steered null: directions drawn as its own draws (unit
    directions along which the data varies by a bin's variance) get uniform p-values, 40 independent
    nulls of 5 directions, 99 draws each; one bin, so one null."""
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    X = adapter.activations(list(bed.inputs.split(1024)), [site])["hidden"]
    shifts = MatchedShifts(X, "covariance", "mahalanobis")
    variance = VARIANCE_BIN ** round(math.log(float((shifts.stds**2).mean())) / math.log(VARIANCE_BIN))
    g = torch.Generator().manual_seed(0)
    control = DualInterchange(steering_null="matched variance")
    p_values = []
    for seed in range(40):
        directions = shifts.of_variance(variance, 5, g)
        targets = [CausalTarget(f"r{i}", direction=v, kind="latent") for i, v in enumerate(directions)]
        at = AtSite(adapter, [bed.inputs[:256]], site, X, n_null=99, seed=seed)
        for raw in control.scores(at, targets).values():
            p_values.append(float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])))
    assert_uniform(p_values)


def test_an_unknown_steering_null_is_refused_before_any_forward_pass() -> None:
    bed = pass_through(0)
    adapter = TorchModel(bed.model)
    site = adapter.resolve("hidden")
    X = adapter.activations([bed.inputs[:64]], [site])["hidden"]
    at = AtSite(adapter, [bed.inputs[:64]], site, X, n_null=9, seed=0)
    target = CausalTarget("d", direction=torch.ones(X.shape[1]), kind="latent")
    with pytest.raises(FeatureControlsError, match="steering_null"):
        DualInterchange(steering_null="isotropic").scores(at, [target])  # type: ignore[arg-type]
