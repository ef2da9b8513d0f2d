"""Transcoders: a sparse code that reads one site and writes another, and its latents judged one by one."""

import pytest
import torch

from featurecontrols import Battery, Latents
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.dictionary.frozen_baselines import FrozenDecoder
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders import SparseAutoencoder, Transcoder
from featurecontrols.measures.latent_matching import best_matches, decoder_directions
from featurecontrols.measures.sae_metrics import evaluate_dictionary, loss_recovered
from featurecontrols.testbeds import Testbed
from featurecontrols.testbeds.sparse_latents import TRANSCODER, sparse_latents


def component(
    rows: int = 20000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ReLU layer of 6 neurons on sparse inputs: x (rows, 16) in, y = ReLU(x E - 0.5) U (rows, 24) out;
    returns x, y, the neurons' values, E (what each neuron reads) and U's unit rows (what it writes)."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(rows, 6, generator=g) < 0.1).float() * (1 + torch.rand(rows, 6, generator=g))
    E = torch.linalg.qr(torch.randn(16, 6, generator=g))[0]  # (16, 6) orthonormal input directions
    U = torch.linalg.qr(torch.randn(24, 6, generator=g))[0].T  # (6, 24) orthonormal written directions
    x = s @ E.T + 0.01 * torch.randn(rows, 16, generator=g)
    neurons = torch.relu(x @ E - 0.5)
    return x, neurons @ U, neurons, E, U


def test_a_transcoder_recovers_the_neurons_of_a_relu_layer_and_what_they_write() -> None:
    x, y, neurons, _, U = component()
    tc = Transcoder(d_sae=12, activation="topk", k=2, n_epochs=10, batch_size=256,
                    normalise_input=False, aux_k=0).fit(x[:15000], y[:15000])  # fmt: skip
    codes = tc.encode(x[15000:])
    assert codes.shape == (5000, 12) and tc.n_features_out_ == 24
    assert float(best_matches(neurons[15000:], codes).value.min()) > 0.95  # measured 0.98
    written = torch.nn.functional.normalize(decoder_directions(tc, 12).float(), dim=1)
    assert float((U @ written.T).abs().max(dim=1).values.min()) > 0.95  # measured 0.97
    metrics = evaluate_dictionary(tc, x[15000:], target=y[15000:]).summary
    assert metrics["explained_variance"] > 0.95


def test_encode_and_decode_are_the_formulas() -> None:
    """pre = (s_x x - mu) W_enc^T + b_enc, z = ReLU(pre); y_hat = (z W_dec + b_dec) / s_y."""
    x, y, *_ = component(4000)
    tc = Transcoder(d_sae=8, activation="relu", n_epochs=1, batch_size=512).fit(x, y)
    pre = (tc.scale_ * x - tc.b_in_) @ tc.encoder_.T + tc.b_enc_
    torch.testing.assert_close(tc.encode(x), torch.relu(pre))
    Z = torch.rand(5, 8)
    torch.testing.assert_close(tc.decode(Z), (Z @ tc.decoder_ + tc.b_dec_) / tc.target_scale_)
    assert tc.scale_ != tc.target_scale_ and tc.encoder_.shape == (8, 16) and tc.decoder_.shape == (8, 24)
    frozen = Transcoder(d_sae=8, activation="relu", n_epochs=1, batch_size=512, frozen="decoder")
    untrained = torch.nn.functional.normalize(torch.randn(8, 24, generator=_init_rng()), dim=1)
    torch.testing.assert_close(frozen.fit(x, y).decoder_, untrained)


class ReluLayer(torch.nn.Module):
    """The layer of :func:`component` as a module: y = write(ReLU(pre(x)))."""

    def __init__(self, E: torch.Tensor, U: torch.Tensor) -> None:
        super().__init__()
        self.pre, self.write = torch.nn.Linear(16, 6), torch.nn.Linear(6, 24, bias=False)
        with torch.no_grad():
            self.pre.weight.copy_(E.T)
            self.pre.bias.fill_(-0.5)
            self.write.weight.copy_(U.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.write(torch.relu(self.pre(x)))


def test_loss_recovered_splices_the_transcoder_in_where_it_writes() -> None:
    """With the loss ||f(x) - y||^2 against the clean output y, L_clean = 0 and L_ablated is y's spread
    around its mean, so the fraction recovered is the transcoder's explained variance of y."""
    x, y, _, E, U = component()
    model = ReluLayer(E, U)
    torch.testing.assert_close(model(x), y)
    tc = Transcoder(d_sae=12, activation="topk", k=2, n_epochs=10, batch_size=256,
                    normalise_input=False, aux_k=0).fit(x[:15000], y[:15000])  # fmt: skip
    held, target = x[15000:], y[15000:]

    def loss(m: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return (m(batch) - target).pow(2).sum(1).mean()

    out = loss_recovered(model, [held], "pre:input", tc, loss, writes="write")
    explained = evaluate_dictionary(tc, held, target=target).summary["explained_variance"]
    assert out["loss_clean"] == pytest.approx(0.0, abs=1e-10)
    assert out["loss_recovered"] == pytest.approx(explained, abs=1e-5)
    assert 0.9 < out["loss_recovered"] < 1.0
    with pytest.raises(FeatureControlsError, match="before the read site"):
        loss_recovered(model, [held], "write", tc, loss, writes="pre:input")


def _init_rng() -> torch.Generator:
    from featurecontrols.seeding import generator

    return generator(0, "sparse_autoencoder", "init")


def test_bad_transcoder_input_is_refused() -> None:
    x, y, *_ = component(500)
    with pytest.raises(FeatureControlsError, match="500 input rows and 499 target rows"):
        Transcoder(d_sae=4).fit(x, y[:-1])
    bad = y.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(FeatureControlsError, match="targets"):
        Transcoder(d_sae=4).fit(x, bad)
    tc = Transcoder(d_sae=4, activation="relu", n_epochs=1, batch_size=100).fit(x, y)
    with pytest.raises(FeatureControlsError, match="width 16"):
        tc.encode(y)


@pytest.fixture(scope="module")
def bed() -> Testbed:
    return sparse_latents(0, TRANSCODER)


def test_the_transcoder_testbed_matches_each_and_once(bed: Testbed) -> None:
    """Checked without any control: the transcoder of the AND neurons matches each AND (r >= 0.9)."""
    assert bed.name == "sparse_latents_transcoder" and bed.site == "neurons:input"
    assert bed.checks["variable_match_min"] >= 0.9 and bed.checks["matched_latents"] == 3
    (latents,) = bed.extra
    assert isinstance(latents, Latents) and latents.writes == "write"


def test_transcoder_latents_are_fitted_on_both_sites_and_removed_where_they_write(bed: Testbed) -> None:
    """Seed 0 end to end: the ANDs' latents are model features (learned: no random copy's neurons
    compute an AND), the copies' transcoders are fitted on the copies' own input and output rows,
    and the used axis removes z_j d_j from the written site: its score is that removal's mean output
    change over the measured examples where the latent fires, computed here by hand."""
    result = Battery(seed=0, n_weight_seeds=1, progress=False).run(
        bed.model, bed.inputs, bed.site, bed.candidates()
    )
    judged = [c for c in result.candidates if c.ground_truth is not None]
    assert len(judged) == 3 and all(c.verdict == "model feature" for c in judged)
    assert all(c.axes["learned"].status == "yes" for c in judged)
    fits = result.dictionaries["neurons:input/sae"]
    assert fits["trained"]["explained_variance"] > 0.9 > fits["reinitialised #0"]["explained_variance"]
    assert "write" in result.spectra and result.sites == ("neurons:input",)
    (latents,) = bed.extra
    assert latents.dictionary is not None
    c = judged[0]
    (used,) = c.axes["used"].evidence
    assert used.control == LatentAblation().name
    j = int(c.name.split("/")[1])
    assert used.score == pytest.approx(_removal_change(bed, latents.dictionary, j, 2048), rel=1e-4)


def _removal_change(bed: Testbed, tc: object, j: int, n: int) -> float:
    """Mean over the first n inputs where latent j fires of ||f' - f||^2 / mean ||f - mean f||^2 (the
    spread over all n), f' with z_j d_j removed from the output of ``write``."""
    model, inputs = bed.model, bed.inputs[:n]
    with torch.no_grad():
        clean = model(inputs)
        h = model.inside(inputs)[0]
        code = tc.encode(h)[:, j]  # type: ignore[attr-defined]
        d = decoder_directions(tc, 8)[j].float()  # type: ignore[arg-type]
        handle = model.write.register_forward_hook(lambda m, a, out: out - code[:, None] * d)
        changed = model(inputs)
        handle.remove()
    spread = (clean - clean.mean(0)).pow(2).sum(1).mean()
    return float(((changed - clean).pow(2).sum(1) / spread)[code != 0].mean())


def test_a_transcoder_needs_its_written_site_and_only_a_transcoder_has_one(bed: Testbed) -> None:
    battery = Battery(seed=0, n_weight_seeds=1, run_used=False, progress=False)
    with pytest.raises(FeatureControlsError, match="name the site it writes"):
        battery.run(bed.model, bed.inputs, "neurons:input", [Latents("tc", "neurons:input", TRANSCODER)])
    with pytest.raises(FeatureControlsError, match="writes back the site it reads"):
        sae = SparseAutoencoder(d_sae=4)
        battery.run(
            bed.model, bed.inputs, "neurons:input", [Latents("s", "neurons:input", sae, writes="write")]
        )
    with pytest.raises(FeatureControlsError, match="wirte"):
        battery.run(
            bed.model,
            bed.inputs,
            "neurons:input",
            [Latents("tc", "neurons:input", TRANSCODER, writes="wirte")],
        )


def test_frozen_baselines_constrain_a_transcoder() -> None:
    frozen = FrozenDecoder().constrain(TRANSCODER)
    assert isinstance(frozen, Transcoder) and frozen.frozen == "decoder"
