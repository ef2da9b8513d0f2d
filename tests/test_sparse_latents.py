"""Dictionary latents judged one by one: the sparse-latents testbed, latent ablation, the margin test."""

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from featurecontrols import Battery, Latents
from featurecontrols.adapters import TorchModel
from featurecontrols.adapters.interventions import AddVector
from featurecontrols.adapters.sites import take_rows
from featurecontrols.axes.from_scores import equivalence_p, margin_p, zou_interval
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.dictionary.frozen_baselines import FrozenDecoder, FrozenEncoder
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.pca import PCA
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.measures.top_activations import top_activations
from featurecontrols.pipeline.plan import RECURRENCE
from featurecontrols.stats import permutation_p_value
from featurecontrols.testbeds import Testbed
from featurecontrols.testbeds.sparse_latents import JUMPRELU, sparse_latents, variables


@pytest.fixture(scope="module")
def bed() -> Testbed:
    return sparse_latents(0)


def test_ground_truth_holds_by_construction(bed: Testbed) -> None:
    """Checked without any control: the neurons compute the ANDs, the readout ignores every unread
    variable, and the SAE recovers every planted variable."""
    assert bed.checks["and_neuron_r_min"] > 0.95
    assert bed.checks["unread_readout_max"] < 1e-6
    assert bed.checks["variable_match_min"] >= 0.9
    (latents,) = bed.extra
    assert isinstance(latents, Latents) and latents.ground_truth is not None
    assert len(latents.ground_truth) == bed.checks["matched_latents"] >= 14
    learned = [n for n, t in bed.axis_truth.items() if t["learned"]]
    assert len(learned) >= 3  # a latent per AND at least (one AND is split over two on seed 0)
    assert all(bed.axis_truth[n]["used"] for n in learned)


def test_a_jumprelu_sae_recovers_every_planted_variable() -> None:
    """The testbed's second dictionary (bench: ``sparse_latents_jumprelu``): its learned thresholds
    reach the planted variables (r >= 0.996 measured on seed 0), and the testbed is named for it."""
    bed = sparse_latents(0, JUMPRELU)
    assert bed.name == "sparse_latents_jumprelu"
    assert bed.checks["variable_match_min"] >= 0.9
    assert bed.checks["matched_latents"] == 15


def test_battery_judges_every_latent_as_its_variable(bed: Testbed) -> None:
    """Seed 0 end to end: every latent's verdict is its variable's truth, the ANDs' latents are learned,
    latents of carried variables are not, and the run corrects by false-discovery rate. Each matched
    latent's top-activating held-out inputs (given as the names of their active variables) share an
    active variable (5 random rows would share one with probability about 1e-3)."""
    planted = variables(bed.inputs)
    contexts = [" ".join(n for n, v in zip(planted, row, strict=True) if v) for row in
                torch.stack(list(planted.values()), 1).tolist()]  # fmt: skip
    result = Battery(seed=0, n_weight_seeds=2, progress=False).run(
        bed.model, bed.inputs, bed.site, bed.candidates(), contexts=contexts
    )
    top = result.top_inputs["resid/sae"]
    assert len(top) == 16
    for c in (c for c in result.candidates if c.ground_truth is not None):
        inputs = top[int(c.name.split("/")[1])]
        assert len(inputs) == 5 and [t.code for t in inputs] == sorted((t.code for t in inputs), reverse=True)
        assert all(t.context == contexts[t.row] for t in inputs)
        shared = set.intersection(*(set((t.context or "").split()) for t in inputs))
        assert shared, (c.name, [t.context for t in inputs])
    assert result.settings.correction == "bh"
    judged = [c for c in result.candidates if c.ground_truth is not None]
    assert len(judged) >= 14
    assert all(c.verdict == c.ground_truth for c in judged), [(c.name, c.verdict) for c in judged]
    for c in judged:
        assert (c.axes["learned"].status == "yes") == bed.axis_truth[c.name]["learned"], c.name
        assert {e.control for e in c.axes["used"].evidence} == {LatentAblation().name}


def test_frozen_baselines_judge_finding_latent_by_latent(bed: Testbed) -> None:
    """Korznikov et al.'s frozen decoder and encoder on the found axis: each latent's refit match is
    tested against each baseline's best match on the same held-out rows; a latent a refit reproduces
    (r > 0.8) beats both and keeps its truth, one that a baseline matches better is not found; the
    baselines' fits join the aggregate metrics (on seed 0 they explain less variance). PCA has no
    training to freeze, which is refused before any work."""
    baselines = [FrozenDecoder(), FrozenEncoder()]
    result = Battery(seed=0, n_weight_seeds=1, dictionary_baselines=baselines, progress=False).run(
        bed.model, bed.inputs, bed.site, bed.candidates()
    )
    assert result.settings.dictionary_baselines == ("frozen decoder", "frozen encoder")
    for c in result.candidates:
        found = {e.control: e for e in c.axes["decodable"].evidence}
        assert set(found) == {RECURRENCE, "frozen decoder", "frozen encoder"}
        refit = found[RECURRENCE].score
        if c.ground_truth is not None and refit > 0.8:
            assert c.verdict == c.ground_truth, c.name
        if c.verdict == "not found":
            assert max(found[b].control_score for b in ("frozen decoder", "frozen encoder")) > refit - 0.05
    (metrics,) = result.dictionaries.values()
    for fit in ("frozen decoder #0", "frozen encoder #0"):
        assert metrics[fit]["explained_variance"] < metrics["trained"]["explained_variance"]
    pca = Latents("pca", bed.site, finder=PCA(n_components=4))
    with pytest.raises(FeatureControlsError, match="frozen"):
        Battery(dictionary_baselines=baselines, progress=False).run(bed.model, bed.inputs, bed.site, [pca])


class _Linear(nn.Module):
    def __init__(self, readout: torch.Tensor) -> None:
        super().__init__()
        self.site = nn.Identity()
        self.readout = nn.Linear(readout.shape[1], readout.shape[0], bias=False)
        with torch.no_grad():
            self.readout.weight.copy_(readout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.readout(self.site(x))
        return out


def test_latent_ablation_removes_the_code_times_its_direction() -> None:
    """On a linear readout R, removing z_i d changes output i by ||R d||^2 z_i^2 (relative to the
    outputs' spread); only the rows where it fires (z_i != 0) are scored; a direction R ignores
    changes nothing."""
    g = torch.Generator().manual_seed(0)
    d = 8
    X = torch.randn(512, d, generator=g)
    R = torch.zeros(2, d)
    R[0, 0], R[1, 1] = 1.0, 2.0
    adapter = TorchModel(_Linear(R))
    site = adapter.resolve("site")
    code = torch.where(torch.rand(512, generator=g) < 0.2, torch.rand(512, generator=g) + 0.5, 0.0)
    read, ignored = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    read[1], ignored[5] = 0.5, 1.0
    targets = [
        CausalTarget("read", read, code=code, kind="dictionary latent"),
        CausalTarget("ignored", ignored, code=code, kind="dictionary latent"),
    ]
    at = AtSite(adapter, [X], site, X, n_null=50, seed=0)
    scores = LatentAblation().scores(at, targets)
    out = X @ R.T
    spread = float((out - out.mean(0)).square().sum(1).mean())
    expected = (code[code != 0].double() * 1.0).square() / spread  # ||R (0.5 e_1)||^2 = 1
    assert torch.allclose(scores["read"].real, expected, atol=1e-5)
    assert float(scores["ignored"].real.abs().max()) < 1e-10
    p_read = permutation_p_value(scores["read"].real.mean().reshape(1), scores["read"].null[None])
    assert float(p_read[0]) < 0.05
    with pytest.raises(FeatureControlsError, match="this test moves dictionary latents"):
        LatentAblation().scores(at, [CausalTarget("labelled", read)])


def test_margin_p_inverts_zou_interval() -> None:
    """p of H0: rho1 - rho2 <= delta is the one-sided level at which Zou's interval touches delta;
    1/2 when r1 - r2 = delta; a difference below the margin is never significant however large n."""
    r1, r2, r12, n, delta = 0.8, 0.7, 0.6, 400, 0.05
    p = margin_p(r1, r2, r12, n, delta)
    low, _ = zou_interval(r1, r2, r12, n, 1 - 2 * p)
    assert low == pytest.approx(delta, abs=1e-6)
    assert margin_p(0.75, 0.7, r12, n, delta) == pytest.approx(0.5, abs=1e-6)
    assert margin_p(0.97, 0.965, 0.95, 100_000, delta) > 0.99  # significant, but inside the margin
    assert margin_p(0.95, 0.5, 0.5, 100_000, delta) < 1e-12
    assert margin_p(0.9, 0.8, r12, 1_000, delta) < margin_p(0.9, 0.8, r12, 100, delta)


def test_equivalence_p_inverts_the_high_end_of_zou_interval() -> None:
    """p of H0: rho1 - rho2 >= delta is the one-sided level at which Zou's interval's high end touches
    delta (below it), 1/2 at r1 - r2 = delta, the complement of ``margin_p``; a refit that matches a
    latent as well as a copy's dictionary does shows it equivalent at large n."""
    r1, r2, r12, n, delta = 0.8, 0.79, 0.6, 400, 0.05
    p = equivalence_p(r1, r2, r12, n, delta)
    _, high = zou_interval(r1, r2, r12, n, 1 - 2 * p)
    assert high == pytest.approx(delta, abs=1e-6)
    assert equivalence_p(0.75, 0.7, r12, n, delta) == pytest.approx(0.5, abs=1e-6)
    assert equivalence_p(r1, r2, r12, n, delta) + margin_p(r1, r2, r12, n, delta) == pytest.approx(1.0)
    assert equivalence_p(0.97, 0.965, 0.95, 100_000, delta) < 1e-12
    assert equivalence_p(0.9, 0.6, r12, 100_000, delta) > 0.99


def test_a_run_without_latents_keeps_holm_and_a_code_control_skips_labelled_features() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 6, generator=g)
    model = _Linear(torch.randn(2, 6, generator=g))
    y = (X[:, 0] > 0).long()
    battery = Battery(seed=0, n_weight_seeds=1, used_controls=[LatentAblation()], progress=False)
    result = battery.run(model, X, "site", {"x0": y})
    assert result.settings.correction == "holm"
    assert result.candidates[0].axes["used"].status == "not run"
    with_latents = battery.run(model, X, "site", [Latents("pca", "site", PCA(3))])
    assert with_latents.settings.correction == "bh"
    assert all(c.axes["used"].evidence for c in with_latents.candidates)


def test_restricted_output_change_equals_the_full_one_on_its_examples() -> None:
    """Measuring only some examples (those where a latent fires) gives their changes exactly."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 6, generator=g)
    adapter = TorchModel(_Linear(torch.randn(3, 6, generator=g)))
    site = adapter.resolve("site")
    full = OutputChange(adapter, [X[:128], X[128:256], X[256:]], site)
    examples = torch.tensor([3, 130, 131, 299])
    sub = full.restricted(examples)
    shift = AddVector(torch.randn(6, generator=g))
    assert sub.spread == full.spread and sub.n == 4
    assert torch.allclose(sub.under(shift), full.under(shift)[examples])
    batch = {
        "input_ids": torch.arange(12).reshape(4, 3),
        "attention_mask": torch.ones(4, 3),
        "n": torch.tensor(4),
    }
    taken = take_rows(batch, torch.tensor([2, 0]))
    assert taken["input_ids"].tolist() == [[6, 7, 8], [0, 1, 2]] and int(taken["n"]) == 4
    assert take_rows((X[:4], X[4:8]), torch.tensor([1]))[1].shape == (1, 6)


def test_a_latent_that_never_fires_changes_nothing() -> None:
    X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    adapter = TorchModel(_Linear(torch.eye(4)))
    site = adapter.resolve("site")
    target = CausalTarget(
        "dead", torch.ones(4, dtype=torch.float64), code=torch.zeros(64), kind="dictionary latent"
    )
    raw = LatentAblation().scores(AtSite(adapter, [X], site, X, n_null=20, seed=0), [target])["dead"]
    assert float(raw.real.abs().max()) == 0.0 and float(raw.null.abs().max()) == 0.0
    assert float(permutation_p_value(raw.real.mean().reshape(1), raw.null[None])[0]) == 1.0


def test_top_activations_equal_a_dense_sort_across_chunks() -> None:
    """Encoded in chunks of 7 rows and merged 3 latents at a time, each latent's top rows are those of
    sorting all codes at once, ties broken by the lower row (codes rounded to force ties)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=g)
    pca = PCA(n_components=4).fit(X)
    top = top_activations(pca, X, k=9, chunk=7, block=3)
    codes = (pca.encode(X) * 2).round() / 2  # ties within a latent
    rounded = top_activations(_Rounded(pca), X, k=9, chunk=7, block=3)
    for j in range(4):
        order = sorted(range(50), key=lambda i: (-float(codes[i, j]), i))[:9]
        assert rounded.rows[j].tolist() == order
        assert top.rows[j].tolist() == pca.encode(X)[:, j].argsort(descending=True)[:9].tolist()
    with pytest.raises(ValueError, match="k must be"):
        top_activations(pca, X, k=51)


class _Rounded:
    """PCA codes rounded to halves: a dictionary with ties."""

    def __init__(self, pca: PCA) -> None:
        self.pca = pca

    def encode(self, X: torch.Tensor) -> torch.Tensor:
        return (self.pca.encode(X) * 2).round() / 2

    def decode(self, Z: torch.Tensor) -> torch.Tensor:
        return self.pca.decode(Z)


def test_contexts_must_be_texts_one_per_row(bed: Testbed) -> None:
    battery = Battery(seed=0, n_weight_seeds=1, run_used=False, progress=False)
    with pytest.raises(FeatureControlsError, match="sequence of strings"):
        battery.run(bed.model, bed.inputs, bed.site, bed.candidates(), contexts="s_0")
    with pytest.raises(FeatureControlsError, match="3 contexts were given for 16384 activation rows"):
        battery.run(bed.model, bed.inputs, bed.site, bed.candidates(), contexts=["a", "b", "c"])


def test_a_given_dictionary_that_cannot_judge_the_site_is_refused_before_any_fit(bed: Testbed) -> None:
    """Wrong width, NaN codes, every latent dead, a latent count that is not the dictionary's: each
    names the problem once the trained activations are read, before any dictionary is fitted."""
    (latents,) = bed.extra
    assert isinstance(latents, Latents) and latents.dictionary is not None
    battery = Battery(seed=0, n_weight_seeds=1, run_used=False, progress=False)
    narrow = PCA(n_components=4).fit(torch.randn(100, 16))
    nan, dead = copy.deepcopy(latents.dictionary), copy.deepcopy(latents.dictionary)
    nan.encoder_[0, 0] = float("nan")  # type: ignore[attr-defined]
    dead.b_enc_ -= 1e6  # type: ignore[attr-defined]
    for dictionary, n, message in (
        (narrow, None, "width 16"),
        (nan, None, "NaN or infinite codes"),
        (dead, None, "every latent of .* is dead"),
        (latents.dictionary, 5, "gives 16 codes per row, but the run counts 5 latents"),
    ):
        given = replace(latents, dictionary=dictionary, n_latents=n)
        with pytest.raises(FeatureControlsError, match=message):
            battery.run(bed.model, bed.inputs, bed.site, [given])
