import pytest
import torch

from featurecontrols.adapters import TorchModel
from featurecontrols.axes import used
from featurecontrols.axes.evidence import Bootstrap
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.counterfactual_patching import CounterfactualPatching
from featurecontrols.controls.causal.dual_interchange import DualInterchange
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import RidgeProbe
from featurecontrols.measures.matched_shifts import Match, MatchedShifts, Noise
from featurecontrols.pipeline.battery import Battery
from featurecontrols.report import to_html
from featurecontrols.testbeds.base import Testbed
from featurecontrols.testbeds.sparse_parity import SparseParityConfig, train_sparse_parity
from featurecontrols.testbeds.toy_superposition import ToySuperpositionConfig, train_toy_superposition


@pytest.fixture(scope="module")
def parity() -> Testbed:
    return train_sparse_parity(SparseParityConfig(seed=0))


def _support(testbed: Testbed) -> list[str]:
    return [n for n, t in testbed.ground_truth.items() if t == "model feature" and n != "parity"]


def test_patching_finds_the_relevant_bits_used_and_the_others_ignored(parity: Testbed) -> None:
    """At the hidden layer the output reads the relevant bits only through their product, so no single
    direction carries them; patching the layer from inputs with one bit flipped does."""
    batches = list(torch.split(parity.inputs[:1024], 256))
    adapter = TorchModel(parity.model)
    site = adapter.resolve(parity.site)
    X = adapter.activations(batches, [site])[parity.site]
    others = [n for n, t in parity.ground_truth.items() if t == "dataset feature"][:4]
    names = _support(parity) + others
    targets = [
        CausalTarget(n, counterfactuals=list(torch.split(parity.counterfactuals[n][:1024], 256)))
        for n in names
    ]
    raw = CounterfactualPatching().scores(AtSite(adapter, batches, site, X), targets)
    for name in names:
        evidence = used.assess(CounterfactualPatching.name, raw[name], (name,), Bootstrap(0, 200, 0.95))
        if name in others:  # the trained output is less sensitive to these flips than to noise of their size
            assert evidence.effect < 0 and evidence.p_value > 0.5, name
        else:
            assert evidence.effect > 1.0 and evidence.ci_low > 0 and evidence.p_value < 1e-100, name
            assert evidence.detail.above_control == 1024


def test_the_battery_judges_use_by_patching_where_counterfactuals_are_given(parity: Testbed) -> None:
    bit = _support(parity)[0]
    other = next(n for n, t in parity.ground_truth.items() if t == "dataset feature")
    names = [bit, other, "parity"]
    battery = Battery(
        weight_controls=[ReinitialisedWeights()], n_weight_seeds=1, n_shuffles=400, used_examples=512,
        n_bootstrap=100, progress=False,
    )  # fmt: skip
    result = battery.run(
        parity.model, parity.inputs, parity.site, {n: parity.features[n] for n in names},
        counterfactuals={n: parity.counterfactuals[n] for n in names},
    )  # fmt: skip
    by_name = {f.name: f for f in result.candidates}
    for name in names:
        assert CounterfactualPatching.name in [e.control for e in by_name[name].axes["used"].evidence]
    assert by_name[bit].axes["used"].status == "yes" and by_name[bit].verdict == "model feature"
    assert by_name["parity"].verdict == "model feature"
    assert by_name[other].axes["used"].status == "no"


def test_only_the_features_with_counterfactuals_are_patched(parity: Testbed) -> None:
    bit = _support(parity)[0]
    battery = Battery(
        weight_controls=[], n_shuffles=100, n_random_directions=100, used_examples=256, progress=False
    )
    result = battery.run(
        parity.model, parity.inputs[:1000], parity.site,
        {bit: parity.features[bit][:1000], "x_parity": parity.features["parity"][:1000]},
        counterfactuals={bit: parity.counterfactuals[bit][:1000]},
    )  # fmt: skip
    controls = {f.name: [e.control for e in f.axes["used"].evidence] for f in result.candidates}
    dual = DualInterchange().name  # the default used test
    assert controls == {bit: [dual, CounterfactualPatching.name], "x_parity": [dual]}


def test_bad_counterfactuals_raise_clear_errors(parity: Testbed) -> None:
    battery = Battery(weight_controls=[], n_shuffles=100, progress=False)
    features = {"parity": parity.features["parity"]}
    with pytest.raises(FeatureControlsError, match="unknown feature"):
        battery.run(
            parity.model, parity.inputs, parity.site, features, counterfactuals={"x_99": parity.inputs}
        )
    with pytest.raises(FeatureControlsError, match="run_used=False"):
        Battery(weight_controls=[], run_used=False, progress=False).run(
            parity.model, parity.inputs, parity.site, features, counterfactuals={"parity": parity.inputs}
        )
    with pytest.raises(FeatureControlsError, match="no predict_proba"):
        Battery(codelength_probe=RidgeProbe(), progress=False).run(  # type: ignore[arg-type]
            parity.model, parity.inputs, parity.site, features
        )
    broken = parity.inputs.clone()
    broken[7, 0] = float("nan")
    with pytest.raises(FeatureControlsError, match="NaN or inf activations"):
        battery.run(parity.model, parity.inputs, parity.site, features, counterfactuals={"parity": broken})
    with pytest.raises(FeatureControlsError, match="one counterfactual per input"):
        battery.run(
            parity.model, parity.inputs, parity.site, features, counterfactuals={"parity": parity.inputs[:-1]}
        )


@pytest.mark.parametrize("noise", ["covariance", "isotropic"])
@pytest.mark.parametrize("match", ["euclidean", "mahalanobis"])
def test_matched_shifts_have_the_size_of_the_real_one(parity: Testbed, noise: Noise, match: Match) -> None:
    adapter = TorchModel(parity.model)
    site = adapter.resolve(parity.site)
    shifts = MatchedShifts(adapter.site_tensor(site, parity.inputs[:300]), noise, match)
    difference = shifts.inside(torch.randn(3, 5, 1000, dtype=torch.float64))
    r = shifts.like(difference, torch.Generator().manual_seed(0))
    assert torch.allclose(shifts.size(r), shifts.size(difference), rtol=1e-6)
    assert torch.allclose(shifts.inside(r), r, atol=1e-9) and not torch.allclose(r, difference)
    with pytest.raises(FeatureControlsError, match="noise in"):
        X = adapter.activations([parity.inputs[:10]], [site])[parity.site]
        target = CausalTarget("x", counterfactuals=[parity.inputs[:10]])
        at = AtSite(adapter, [parity.inputs[:10]], site, X)
        CounterfactualPatching(noise="gaussian").scores(at, [target])  # type: ignore[arg-type]


def test_tms_counterfactuals_toggle_exactly_one_feature() -> None:
    config = ToySuperpositionConfig(feature_probabilities=(0.1,), instance=0, steps=100)
    tms = train_toy_superposition(config)
    for name, cf in tms.counterfactuals.items():
        i = int(name[2:])
        changed = (cf != tms.inputs)[:, 0]  # (n, features)
        assert bool(changed[:, i].all()) and int(changed.sum()) == changed.shape[0]
        assert bool(((cf[:, 0, i] > 0).long() != tms.features[name]).all())  # the label flips everywhere


def test_the_report_plots_patched_against_noise_per_example(parity: Testbed) -> None:
    bit = _support(parity)[0]
    battery = Battery(weight_controls=[], n_shuffles=100, used_examples=128, n_bootstrap=50, progress=False)
    result = battery.run(
        parity.model, parity.inputs[:512], parity.site, {bit: parity.features[bit][:512]},
        counterfactuals={bit: parity.counterfactuals[bit][:512]},
    )  # fmt: skip
    evidence = next(
        e for e in result.candidates[0].axes["used"].evidence if e.control == CounterfactualPatching.name
    )
    assert len(evidence.detail.real) == len(evidence.detail.control) == 512  # one whole batch
    page = to_html(result)
    assert "one dot per example" in page and page.count("<circle") >= 512
