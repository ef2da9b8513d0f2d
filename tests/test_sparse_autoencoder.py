import math

import pytest
import torch
import torch.nn.functional as F

from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Dictionary, UnsupervisedFinder
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder, jump_relu, step
from featurecontrols.measures.sae_metrics import evaluate_dictionary
from featurecontrols.pipeline.store import ShardedStore


def tms_data(
    n: int = 32, d: int = 16, p: float = 0.05, rows: int = 30000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Toy Models of Superposition data: x_i ~ U[0, 1] w.p. p, h = W x; returns h (rows, d) and W^T (n, d)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(d, n, generator=g)
    W /= W.norm(dim=0)
    x = torch.rand(rows, n, generator=g) * (torch.rand(rows, n, generator=g) < p)
    return x @ W.T, W.T


def tms_sae(seed: int = 0, **kwargs: object) -> SparseAutoencoder:
    params: dict[str, object] = {"d_sae": 64, "activation": "topk", "k": 2, "batch_size": 256, "n_epochs": 5}
    return SparseAutoencoder(seed=seed, **(params | {"lr": 3e-3, "dead_after": 5000} | kwargs))  # type: ignore[arg-type]


def test_topk_sae_recovers_tms_features_and_the_planted_control_alike() -> None:
    H, truth = tms_data()
    sae = tms_sae().fit(H)
    assert isinstance(sae, UnsupervisedFinder)
    real = evaluate_dictionary(sae, H, true_directions=truth).summary
    assert real["mmcs"] > 0.95
    assert real["l0"] == pytest.approx(2.0, abs=0.05)
    planted = PlantedSparseFeatures(n_features=32, l0=32 * 0.05).plant(H, seed=0)
    control = tms_sae().fit(planted.activations)
    recovered = evaluate_dictionary(control, planted.activations, true_directions=planted.directions)
    assert recovered.summary["mmcs"] > 0.95
    assert abs(recovered.summary["mmcs"] - real["mmcs"]) < 0.03


def reference_loss(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """The TopK loss with dense autograd: the sparse backward pass must give the same gradients."""
    pre = (x - sae.b_dec_) @ sae.encoder_.T + sae.b_enc_
    if sae.activation == "topk":
        values, idx = pre.topk(sae.k, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, F.relu(values))
    else:
        values, flat = F.relu(pre).flatten().topk(x.shape[0] * sae.k)
        z = torch.zeros_like(pre).flatten().scatter(0, flat, values).reshape(pre.shape)
    x_hat = z @ sae.decoder_ + sae.b_dec_
    return (x - x_hat).pow(2).sum(1).mean() / x.shape[1]


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_sparse_backward_matches_dense_autograd(activation: str) -> None:
    H, _ = tms_data(rows=512)
    sae = tms_sae(activation=activation, k=3, aux_k=0).fit(H[:256])
    params = [sae.encoder_, sae.decoder_, sae.b_enc_, sae.b_dec_]
    for p in params:
        p.requires_grad_(True)
    x = H[256:] * sae.scale_
    sparse = torch.autograd.grad(sae._loss(x, x, torch.zeros(64, dtype=torch.bool))[0], params)
    dense = torch.autograd.grad(reference_loss(sae, x), params)
    for a, b in zip(sparse, dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_training_normalises_inputs_and_keeps_unit_decoder_rows() -> None:
    H, _ = tms_data(rows=4000)
    small = tms_sae().fit(H)
    big = tms_sae().fit(1000.0 * H)
    assert big.scale_ == pytest.approx(small.scale_ / 1000.0, rel=1e-5)
    torch.testing.assert_close(big.decoder_, small.decoder_, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(small.decoder_.norm(dim=1), torch.ones(64))
    torch.testing.assert_close(
        big.decode(big.encode(1000.0 * H[:5])) / 1000.0, small.decode(small.encode(H[:5]))
    )


def test_aux_k_loss_revives_dead_latents() -> None:
    H, truth = tms_data(n=64, d=16, p=0.03, rows=20000)
    fits = [tms_sae(aux_k=aux, lr=3e-2, dead_after=2000, n_epochs=3).fit(H) for aux in (0, 8)]
    without, with_aux = fits
    assert without.dead_fraction_ > 0.15 and with_aux.dead_fraction_ < 0.1  # high lr kills latents
    mmcs = [evaluate_dictionary(sae, H, true_directions=truth).summary["mmcs"] for sae in fits]
    assert mmcs[1] > mmcs[0]


def test_batchtopk_and_relu_sparsity() -> None:
    H, _ = tms_data(rows=20000)
    batch = tms_sae(activation="batchtopk").fit(H)
    assert evaluate_dictionary(batch, H).summary["l0"] == pytest.approx(2.0, abs=0.5)
    l0 = [
        evaluate_dictionary(tms_sae(activation="relu", l1_coefficient=c).fit(H), H).summary["l0"]
        for c in (0.1, 1.0)
    ]
    assert l0[1] < l0[0]


def test_jumprelu_straight_through_gradients_are_the_papers() -> None:
    """Rajamanoharan et al. 2024, eqs. 11-12, with eps = 0.1 and the kernel 1[|u| < 1/2]."""
    pre = torch.tensor([[0.52, 0.30], [0.47, 0.90], [0.20, 0.33]], requires_grad=True)
    theta = torch.tensor([0.50, 0.31], requires_grad=True)
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    z = jump_relu(pre, theta, 0.1)
    torch.testing.assert_close(z.detach(), torch.tensor([[0.52, 0.0], [0.0, 0.90], [0.0, 0.33]]))
    grad_pre, grad_theta = torch.autograd.grad((g * z).sum(), [pre, theta])
    torch.testing.assert_close(grad_pre, g * torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    # within eps / 2 of theta: rows 0, 1 of latent 0 (0.52, 0.47) and rows 0, 2 of latent 1 (0.30, 0.33)
    torch.testing.assert_close(grad_theta, torch.tensor([-(0.5 / 0.1) * (1 + 3), -(0.31 / 0.1) * (2 + 6)]))
    grad_pre, grad_theta = torch.autograd.grad(
        (g * step(pre, theta, 0.1)).sum(), [pre, theta], allow_unused=True
    )
    assert grad_pre is None  # the step passes no gradient to the pre-activations
    torch.testing.assert_close(grad_theta, torch.tensor([-(1 + 3) / 0.1, -(2 + 6) / 0.1]))


def test_jumprelu_recovers_tms_features_with_learned_thresholds_and_its_l0_follows_the_penalty() -> None:
    H, truth = tms_data(rows=20000)
    fits = [tms_sae(activation="jumprelu", l0_coefficient=c, n_epochs=20).fit(H) for c in (0.3, 3.0)]
    summaries = [evaluate_dictionary(sae, H, true_directions=truth).summary for sae in fits]
    assert summaries[0]["mmcs"] > 0.9
    assert summaries[1]["l0"] < summaries[0]["l0"]
    theta = fits[0].threshold_
    assert theta.shape == (64,) and bool((theta > 0).all()) and float(theta.std()) > 0
    z = fits[0].encode(H[:500])  # the code is the pre-activation where it clears its own threshold
    assert bool(((z == 0) | (z > theta)).all())
    with pytest.raises(FeatureControlsError, match="bandwidth > 0"):
        tms_sae(activation="jumprelu", bandwidth=0.0).fit(H)


def test_fits_from_any_stream_of_batches(tmp_path: object) -> None:
    H, _ = tms_data(rows=3000)
    store = ShardedStore(str(tmp_path), "key", shard_rows=700)
    with store.writing() as writer:
        for chunk in H.split(500):
            writer.append("acts", chunk)
    from_store = tms_sae(n_epochs=1).fit(store.iter_shards("acts"))
    from_list = tms_sae(n_epochs=1).fit(list(H.split(700)))
    assert from_store.n_tokens_ == from_list.n_tokens_ == 3000
    torch.testing.assert_close(from_store.decoder_, from_list.decoder_)
    with pytest.raises(FeatureControlsError, match="one-shot iterator"):
        tms_sae(n_epochs=2).fit(iter(H.split(700)))


class ExternalSAE:
    """Stands in for an SAE trained elsewhere (SAELens, say): only encode and decode."""

    def __init__(self, W: torch.Tensor) -> None:
        self.W = W

    def encode(self, X: torch.Tensor) -> torch.Tensor:
        return F.relu(X @ self.W.T)

    def decode(self, Z: torch.Tensor) -> torch.Tensor:
        return Z @ self.W


def test_any_encode_decode_object_is_evaluated_and_a_width_mismatch_is_refused() -> None:
    H, truth = tms_data(rows=2000)
    external = ExternalSAE(torch.cat([truth, -truth]))
    assert isinstance(external, Dictionary)
    assert evaluate_dictionary(external, H, true_directions=truth).summary["mmcs"] == pytest.approx(1.0)
    sae = tms_sae(n_epochs=1).fit(H)
    for dictionary in (external, sae):
        with pytest.raises(FeatureControlsError, match="width 8"):
            evaluate_dictionary(dictionary, torch.randn(10, 8))


def test_bad_parameters_and_data() -> None:
    H, _ = tms_data(rows=100)
    with pytest.raises(FeatureControlsError, match="unknown SAE activation"):
        SparseAutoencoder(8, "gelu").fit(H)  # type: ignore[arg-type]
    with pytest.raises(FeatureControlsError, match="k must be"):
        SparseAutoencoder(8, k=9).fit(H)
    with pytest.raises(FeatureControlsError, match="no activations"):
        SparseAutoencoder(8, k=2).fit([])
    with pytest.raises(FeatureControlsError, match="NaN"):
        SparseAutoencoder(8, k=2).fit(torch.full((4, 3), math.nan))


@pytest.mark.slow
def test_topk_sae_on_the_trained_toy_superposition_testbed() -> None:
    """TMS testbed (trained, n 20 in m 5, p 0.03): the SAE finds the represented feature directions."""
    tms = pytest.importorskip("featurecontrols.testbeds.toy_superposition")
    from featurecontrols.adapters.sites import read_activations

    config = tms.ToySuperpositionConfig(instance=3, n_examples=30000)
    testbed = tms.train_toy_superposition(config)
    W = testbed.model.W[0].detach()
    norms = W.norm(dim=0)
    represented = norms >= config.represented_norm
    truth = (W[:, represented] / norms[represented]).T
    H = read_activations(testbed.model, [testbed.inputs], testbed.site)[testbed.site]
    real = evaluate_dictionary(tms_sae(k=1, d_sae=40).fit(H), H, true_directions=truth).summary
    assert real["mmcs"] > 0.95
    l0 = config.feature_probabilities[config.instance] * int(represented.sum())
    planted = PlantedSparseFeatures(int(represented.sum()), l0).plant(H, seed=0)
    control = tms_sae(k=1, d_sae=40).fit(planted.activations)
    recovered = evaluate_dictionary(control, planted.activations, true_directions=planted.directions).summary
    assert recovered["mmcs"] > 0.95 and abs(recovered["mmcs"] - real["mmcs"]) < 0.03


@pytest.mark.parametrize("activation", ["topk", "relu"])
def test_a_frozen_part_stays_at_its_random_initialisation(activation: str) -> None:
    """Korznikov et al.'s baselines: the frozen matrix is the initialisation (W_enc = W_dec at init, so
    the frozen decoder of one fit equals the frozen encoder of the other), the other one trains, and
    random directions reconstruct TMS data worse than trained ones."""
    H, truth = tms_data()
    fits = {
        part: tms_sae(activation=activation, frozen=part).fit(H) for part in ("none", "decoder", "encoder")
    }
    assert torch.equal(fits["decoder"].decoder_, fits["encoder"].encoder_)
    assert not torch.equal(fits["decoder"].encoder_, fits["decoder"].decoder_)
    assert not torch.equal(fits["encoder"].decoder_, fits["encoder"].encoder_)
    scores = {p: evaluate_dictionary(sae, H, true_directions=truth).summary for p, sae in fits.items()}
    for part in ("decoder", "encoder"):
        assert 0 < scores[part]["explained_variance"] < scores["none"]["explained_variance"], scores
        if activation == "topk":  # (ReLU at these settings recovers the features only to mmcs 0.70)
            assert scores[part]["mmcs"] < scores["none"]["mmcs"] - 0.1, scores
    with pytest.raises(FeatureControlsError, match="unknown frozen part"):
        tms_sae(frozen="bias").fit(H)
