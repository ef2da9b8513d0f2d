"""SAELens (sae-lens 6.x): our SAEs exported so that SAELens loads them with the same codes, and
SAELens SAEs judged as dictionaries (refitted by a finder of their settings, checked before any work)."""

from pathlib import Path

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from featurecontrols import Battery  # noqa: E402
from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures  # noqa: E402
from featurecontrols.errors import FeatureControlsError  # noqa: E402
from featurecontrols.finders import SparseAutoencoder  # noqa: E402
from featurecontrols.finders.saelens_export import save_saelens  # noqa: E402
from featurecontrols.pipeline.candidates import Latents  # noqa: E402
from featurecontrols.testbeds import train_planted_residual  # noqa: E402


@pytest.mark.parametrize(("activation", "architecture"), [("topk", "TopKSAE"), ("relu", "StandardSAE")])
def test_an_exported_sae_loads_in_saelens_with_the_same_codes(
    tmp_path: Path, activation: str, architecture: str
) -> None:
    X = (
        3.0
        * PlantedSparseFeatures(48, 4.0).plant(torch.randn(4000, 16), seed=0, keep_codes=False).activations
    )
    ours = SparseAutoencoder(48, activation, k=4, batch_size=256, n_epochs=2).fit(X)  # type: ignore[arg-type]
    theirs = sae_lens.SAE.load_from_disk(str(save_saelens(ours, tmp_path / "sae")))
    assert type(theirs).__name__ == architecture
    with torch.no_grad():
        z = theirs.encode(X)
        torch.testing.assert_close(z, ours.encode(X), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs.decode(z), ours.decode(ours.encode(X)), rtol=1e-4, atol=1e-4)


def test_batchtopk_and_unfitted_saes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatureControlsError, match="not fitted"):
        save_saelens(SparseAutoencoder(8), tmp_path)
    fitted = SparseAutoencoder(8, "batchtopk", k=2, batch_size=64).fit(torch.randn(256, 4))
    with pytest.raises(FeatureControlsError, match="no exact SAELens counterpart"):
        save_saelens(fitted, tmp_path)


def test_a_saelens_sae_is_judged_with_a_finder_of_its_settings() -> None:
    testbed = train_planted_residual()
    sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=32, d_sae=16, k=4, device="cpu"))  # resid_post: 32
    battery = Battery(n_weight_seeds=1, n_bootstrap=50, run_used=False, progress=False)
    with pytest.raises(FeatureControlsError, match="no finder") as err:
        battery.run(
            testbed.model, testbed.inputs, testbed.site, [Latents("sl", testbed.site, dictionary=sae)]
        )
    assert "SparseAutoencoder(d_sae=16, activation='topk', k=4)" in err.value.fix
    finder = SparseAutoencoder(16, "topk", k=4, batch_size=512)
    result = battery.run(
        testbed.model,
        testbed.inputs,
        testbed.site,
        [Latents("sl", testbed.site, dictionary=sae, finder=finder)],
    )
    assert len(result.candidates) == 16
    assert {c.axes["decodable"].status for c in result.candidates} <= {"yes", "no"}
