"""SAELens (sae-lens 6.x): our SAEs exported so that SAELens loads them with the same codes, folders
SAELens saved read back without it (same codes), and SAELens SAEs judged as dictionaries (refitted
by a finder of their settings, checked before any work)."""

import json
from pathlib import Path

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from featurecontrols import Battery  # noqa: E402
from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures  # noqa: E402
from featurecontrols.errors import FeatureControlsError  # noqa: E402
from featurecontrols.finders import SparseAutoencoder, Transcoder  # noqa: E402
from featurecontrols.finders.saelens_format import load_saelens, save_saelens  # noqa: E402
from featurecontrols.pipeline.candidates import Latents  # noqa: E402
from featurecontrols.testbeds import train_planted_residual  # noqa: E402


@pytest.mark.parametrize(
    ("activation", "architecture"),
    [("topk", "TopKSAE"), ("relu", "StandardSAE"), ("jumprelu", "JumpReLUSAE")],
)
def test_an_exported_sae_loads_in_saelens_with_the_same_codes(
    tmp_path: Path, activation: str, architecture: str
) -> None:
    X = (
        3.0
        * PlantedSparseFeatures(48, 4.0).plant(torch.randn(4000, 16), seed=0, keep_codes=False).activations
    )
    ours = SparseAutoencoder(48, activation, k=4, batch_size=256, n_epochs=2).fit(X)  # type: ignore[arg-type]
    if activation == "jumprelu":  # thresholds one per latent
        assert float(ours.threshold_.std()) > 0
    theirs = sae_lens.SAE.load_from_disk(str(save_saelens(ours, tmp_path / "sae")))
    assert type(theirs).__name__ == architecture
    with torch.no_grad():
        z = theirs.encode(X)
        torch.testing.assert_close(z, ours.encode(X), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs.decode(z), ours.decode(ours.encode(X)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("activation", "architecture"), [("relu", "Transcoder"), ("jumprelu", "JumpReLUTranscoder")]
)
def test_an_exported_transcoder_loads_in_saelens_with_the_same_codes_and_outputs(
    tmp_path: Path, activation: str, architecture: str
) -> None:
    """Input scale, output scale and input mean folded into SAELens's raw-unit weights (its
    transcoders apply no b_dec to the input); a TopK transcoder has no SAELens counterpart."""
    g = torch.Generator().manual_seed(0)
    X = 3.0 * PlantedSparseFeatures(48, 4.0).plant(torch.randn(4000, 16, generator=g), seed=0,
                                                   keep_codes=False).activations  # fmt: skip
    Y = torch.relu(X @ torch.randn(16, 24, generator=g)) + 1.0
    ours = Transcoder(32, activation, batch_size=256, n_epochs=2).fit(X, Y)  # type: ignore[arg-type]
    theirs = sae_lens.SAE.load_from_disk(str(save_saelens(ours, tmp_path / "tc")))
    assert type(theirs).__name__ == architecture and theirs.cfg.d_out == 24
    with torch.no_grad():
        z = theirs.encode(X)
        assert float((z != 0).float().mean()) > 0.01
        torch.testing.assert_close(z, ours.encode(X), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs.decode(z), ours.decode(ours.encode(X)), rtol=1e-4, atol=1e-4)
    with pytest.raises(FeatureControlsError, match="no SAELens counterpart"):
        save_saelens(Transcoder(8, "topk", k=2, n_epochs=1).fit(X, Y), tmp_path / "topk")


def test_an_unfitted_sae_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatureControlsError, match="not fitted"):
        save_saelens(SparseAutoencoder(8), tmp_path)


@pytest.mark.parametrize("activation", ["topk", "relu", "batchtopk", "jumprelu"])
def test_our_saes_round_trip_through_the_folder(tmp_path: Path, activation: str) -> None:
    X = (
        3.0
        * PlantedSparseFeatures(32, 4.0).plant(torch.randn(3000, 12), seed=1, keep_codes=False).activations
    )
    ours = SparseAutoencoder(32, activation, k=4, batch_size=256, n_epochs=2).fit(X)  # type: ignore[arg-type]
    folder = save_saelens(ours, tmp_path / "sae")
    back = load_saelens(folder)
    assert (back.d_sae, back.activation, back.scale_) == (32, activation, 1.0)
    assert activation not in ("topk", "batchtopk") or back.k == 4  # the recipe a control refits
    torch.testing.assert_close(back.encode(X), ours.encode(X), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(back.decode(back.encode(X)), ours.decode(ours.encode(X)), rtol=1e-4, atol=1e-4)
    theirs = sae_lens.SAE.load_from_disk(str(folder))  # and SAELens reads the same codes
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(X), ours.encode(X), rtol=1e-4, atol=1e-4)


def _saelens_sae(architecture: str, **cfg: object) -> torch.nn.Module:
    configs = {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE"}
    name = configs[architecture]
    torch.manual_seed(0)
    sae = getattr(sae_lens, name)(getattr(sae_lens, f"{name}Config")(d_in=12, d_sae=24, device="cpu", **cfg))
    with torch.no_grad():  # biases away from their zero init, so that folding them is tested
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
    return sae


@pytest.mark.parametrize(
    ("architecture", "cfg"),
    [("standard", {}), ("standard", {"apply_b_dec_to_input": False}), ("topk", {"k": 3}), ("jumprelu", {})],
)
def test_a_folder_saelens_saved_loads_with_saelens_codes(
    tmp_path: Path, architecture: str, cfg: dict[str, object]
) -> None:
    sae = _saelens_sae(architecture, **cfg)
    if architecture == "jumprelu":
        with torch.no_grad():  # one threshold per latent (Gemma Scope's kind), some below 0
            sae.threshold.uniform_(-0.2, 0.5)
    sae.save_model(tmp_path)
    ours = load_saelens(tmp_path)
    if architecture == "jumprelu":
        assert ours.activation == "jumprelu"
    X = 2.0 * torch.randn(500, 12)
    with torch.no_grad():
        z = sae.encode(X)
        torch.testing.assert_close(ours.encode(X), z, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.decode(z), sae.decode(z), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", ["Transcoder", "JumpReLUTranscoder"])
def test_a_transcoder_folder_saelens_saved_loads_as_a_transcoder_with_its_codes_and_outputs(
    tmp_path: Path, architecture: str
) -> None:
    """SAELens's transcoders (pre = x W_enc + b_enc, output z W_dec + b_dec in another width) read back
    as our Transcoder on raw units; a skip transcoder (W_skip) is refused with the fix."""
    torch.manual_seed(0)
    config = getattr(sae_lens, f"{architecture}Config")(
        d_in=12, d_sae=24, d_out=20, device="cpu", apply_b_dec_to_input=False
    )
    sae = getattr(sae_lens, architecture)(config)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
        if architecture == "JumpReLUTranscoder":
            sae.threshold.uniform_(-0.2, 0.5)
    sae.save_model(tmp_path / "tc")
    ours = load_saelens(tmp_path / "tc")
    assert isinstance(ours, Transcoder) and ours.n_features_out_ == 20
    assert ours.activation == ("jumprelu" if architecture == "JumpReLUTranscoder" else "relu")
    X = 2.0 * torch.randn(500, 12)
    with torch.no_grad():
        z = sae.encode(X)
        assert float((z != 0).float().mean()) > 0.05
        torch.testing.assert_close(ours.encode(X), z, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.decode(z), sae.decode(z), rtol=1e-4, atol=1e-4)
    skip = sae_lens.SkipTranscoder(
        sae_lens.SkipTranscoderConfig(d_in=12, d_sae=24, d_out=20, device="cpu", apply_b_dec_to_input=False)
    )
    skip.save_model(tmp_path / "skip")
    with pytest.raises(FeatureControlsError, match="skip_transcoder"):
        load_saelens(tmp_path / "skip")


def test_our_transcoders_round_trip_through_the_folder(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    X = 3.0 * torch.randn(3000, 12, generator=g)
    Y = torch.relu(X @ torch.randn(12, 16, generator=g)) + 1.0
    ours = Transcoder(24, "jumprelu", batch_size=256, n_epochs=2).fit(X, Y)
    back = load_saelens(save_saelens(ours, tmp_path / "tc"))
    assert isinstance(back, Transcoder) and (back.d_sae, back.activation) == (24, "jumprelu")
    torch.testing.assert_close(back.encode(X), ours.encode(X), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(back.decode(back.encode(X)), ours.decode(ours.encode(X)), rtol=1e-4, atol=1e-4)


def test_folders_this_loader_cannot_read_exactly_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatureControlsError, match=r"no cfg\.json"):
        load_saelens(tmp_path)
    _saelens_sae("jumprelu").save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    for change, message in [
        ({"architecture": "gated"}, "architecture 'gated'"),
        ({"architecture": "standard", "d_sae": 25}, "W_enc has shape"),
        ({"architecture": "standard", "d_in": 0}, "d_in must be a positive integer"),
        ({"architecture": "standard", "normalize_activations": "expected_average_only_in"}, "normalize"),
    ]:
        (tmp_path / "cfg.json").write_text(json.dumps(cfg | change))
        with pytest.raises(FeatureControlsError, match=message):
            load_saelens(tmp_path)


def test_a_saelens_sae_is_judged_with_a_finder_of_its_settings() -> None:
    testbed = train_planted_residual()
    sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=32, d_sae=16, k=4, device="cpu"))  # resid_post: 32
    battery = Battery(n_weight_seeds=1, n_bootstrap=50, run_used=False, progress=False)
    with pytest.raises(FeatureControlsError, match="no finder") as err:
        battery.run(
            testbed.model, testbed.inputs, testbed.site, [Latents("sl", testbed.site, dictionary=sae)]
        )
    assert "SparseAutoencoder(d_sae=16, activation='topk', k=4)" in err.value.fix
    jumprelu = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=32, d_sae=16, device="cpu"))
    with pytest.raises(FeatureControlsError, match="no finder") as err:
        battery.run(
            testbed.model, testbed.inputs, testbed.site, [Latents("j", testbed.site, dictionary=jumprelu)]
        )
    assert "SparseAutoencoder(d_sae=16, activation='jumprelu')" in err.value.fix
    finder = SparseAutoencoder(16, "topk", k=4, batch_size=512)
    result = battery.run(
        testbed.model,
        testbed.inputs,
        testbed.site,
        [Latents("sl", testbed.site, dictionary=sae, finder=finder)],
    )
    assert len(result.candidates) == 16
    assert {c.axes["decodable"].status for c in result.candidates} <= {"yes", "no"}
