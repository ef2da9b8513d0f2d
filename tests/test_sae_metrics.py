import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featurecontrols import Battery, Labelled, Latents
from featurecontrols.controls.weight.moment_matched_weights import MomentMatchedWeights
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.shuffled_weights import ShuffledWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.pca import PCA
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder
from featurecontrols.finders.sparse_codes import SparseCodes
from featurecontrols.measures import sae_metrics
from featurecontrols.measures.sae_metrics import (
    evaluate_dictionary,
    explained_variance,
    latent_auroc,
    loss_recovered,
    token_concentration,
)
from featurecontrols.report.text import metrics_table
from featurecontrols.testbeds.planted_residual import train_planted_residual, xor_labels


class Identity:
    def encode(self, X: torch.Tensor) -> torch.Tensor:
        return X

    def decode(self, Z: torch.Tensor) -> torch.Tensor:
        return Z


def test_explained_variance_l0_dead_and_dense() -> None:
    X = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    assert explained_variance(X, X) == pytest.approx(1.0)
    assert explained_variance(X, X.mean(0).expand_as(X)) == pytest.approx(0.0, abs=1e-9)
    sparse = torch.zeros(500, 6)
    sparse[:, 0] = 1.0  # latent 0 always on (dense), latents 4 and 5 never (dead)
    sparse[::4, 1] = 1.0
    summary = evaluate_dictionary(Identity(), sparse).summary
    assert summary["l0"] == pytest.approx(1.25)
    assert summary["dead_fraction"] == pytest.approx(4 / 6)
    assert summary["dense_fraction"] == pytest.approx(2 / 6)


def test_moments_over_chunks_equal_the_two_pass_formula() -> None:
    X = 5.0 + torch.randn(1000, 7, generator=torch.Generator().manual_seed(0))
    mean, squares = sae_metrics.moments(X, chunk=7 * 13)  # 13 rows at a time, not dividing 1,000
    Xd = X.double()
    assert torch.allclose(mean, Xd.mean(0), atol=1e-12)
    assert abs(float(squares) - float((Xd - Xd.mean(0)).square().sum())) < 1e-9
    assert sae_metrics.total_variance(torch.ones(4, 3)) == torch.finfo(torch.float64).tiny


def test_latent_auroc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (300,), generator=g)
    Z = torch.relu(torch.randn(300, 5, generator=g) + y[:, None] * torch.arange(5.0) * 0.3).round(decimals=1)
    auroc = latent_auroc(Z, y)
    for j in range(5):
        a = roc_auc_score(y.numpy(), Z[:, j].numpy())
        assert float(auroc[0, j]) == pytest.approx(max(a, 1 - a), abs=1e-5)
    with pytest.raises(FeatureControlsError, match="single class"):
        latent_auroc(Z, torch.ones(300))


def test_token_concentration() -> None:
    tokens = torch.tensor([0, 1, 2, 0, 1, 2])
    Z = torch.tensor(
        [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [3.0, 1.0, 0.0], [0, 1, 0], [0, 1, 0]]
    )
    conc = token_concentration(SparseCodes.of(Z), tokens)
    assert conc[0] == pytest.approx(1.0) and conc[1] == pytest.approx(1 / 3) and torch.isnan(conc[2])


def test_metrics_in_chunks_equal_the_dense_formulas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoded 7 rows at a time and ranked 2 latents at a time, every metric equals its formula on
    the whole dense code matrix: L0, firing rates, explained variance, token concentration (by
    scatter over tokens), and each latent's AUROC (sklearn's)."""
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    pca = PCA(5).fit(torch.randn(200, 8, generator=g) * torch.arange(1.0, 9.0))
    X = torch.randn(101, 8, generator=g) * torch.arange(1.0, 9.0)
    tokens = torch.randint(0, 6, (101,), generator=g)
    y = (X[:, 7] > 0).long()
    monkeypatch.setattr(sae_metrics, "COLUMNS", 2)
    metrics = evaluate_dictionary(pca, X, tokens=tokens, labels={"y": y}, chunk=7)
    Z = pca.encode(X)
    assert metrics.summary["l0"] == pytest.approx(float((Z != 0).sum(1).float().mean()))
    assert torch.equal(metrics.per_latent["firing_rate"], (Z != 0).float().mean(0))
    assert metrics.summary["explained_variance"] == pytest.approx(explained_variance(X, pca.decode(Z)))
    mass = torch.zeros(6, 5, dtype=torch.float64).index_add_(0, tokens, Z.abs().double())
    expected = (mass.max(0).values / mass.sum(0)).float()
    torch.testing.assert_close(metrics.per_latent["token_concentration"], expected)
    aurocs = [roc_auc_score(y.numpy(), Z[:, j].numpy()) for j in range(5)]
    best = torch.tensor([max(a, 1 - a) for a in aurocs])
    torch.testing.assert_close(metrics.per_latent["best_auroc"], best.float(), atol=1e-5, rtol=0)
    codes = SparseCodes.stacked([SparseCodes.of(Z[:50]), SparseCodes.of(Z[50:])])
    assert torch.equal(codes.columns(0, 5), Z)


def test_loss_recovered_and_bad_ground_truth() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))

    def loss_fn(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(m(batch), batch[:, :1])

    perfect = loss_recovered(model, [x], "1", Identity(), loss_fn)
    assert perfect["loss_recovered"] == pytest.approx(1.0)
    assert perfect["loss_spliced"] == pytest.approx(perfect["loss_clean"])
    with pytest.raises(FeatureControlsError, match="true_directions"):
        evaluate_dictionary(PCA(2).fit(x), x, true_directions=torch.randn(3, 5))


def test_sae_metrics_on_the_planted_testbed_trained_against_randomised_copies() -> None:
    """The report's table of dictionary metrics: which tell the trained model from its randomised copies."""
    testbed = train_planted_residual()
    pairs = ((0, 1), (2, 3), (4, 5))

    def loss_fn(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(batch), xor_labels(batch, pairs).float())

    controls = [ReinitialisedWeights(), SpectrumMatchedWeights(), MomentMatchedWeights(), ShuffledWeights()]
    sae = SparseAutoencoder(64, "topk", k=13, batch_size=256, n_epochs=20, lr=3e-3, dead_after=4000)
    candidates = [Labelled(n, y) for n, y in testbed.features.items()]
    battery = Battery(
        weight_controls=controls, n_weight_seeds=1, run_used=False, correction="bh", n_shuffles=200,
        n_latent_null=200, n_bootstrap=50, progress=False,
    )  # fmt: skip
    result = battery.run(
        testbed.model,
        testbed.inputs,
        testbed.site,
        [*candidates, Latents("sae", testbed.site, sae, loss=loss_fn)],
    )
    fits = result.dictionaries[f"{testbed.site}/sae"]
    print("\n".join(metrics_table(fits)))
    trained = fits["trained"]
    model_features = [f"sparse_probing/{f}" for f, t in testbed.ground_truth.items() if t == "model feature"]
    dataset_features = [
        f"sparse_probing/{f}" for f, t in testbed.ground_truth.items() if t == "dataset feature"
    ]
    for control in controls:
        other = fits[f"{control.name} #0"]
        # These fail to separate: the randomised copies score as well.
        assert abs(other["explained_variance"] - trained["explained_variance"]) < 0.02
        assert other["loss_recovered"] > 0.9  # meaningless where the copy has no task to lose
        mean = sum(other[f] for f in dataset_features) / len(dataset_features)
        assert mean > sum(trained[f] for f in dataset_features) / len(dataset_features) - 0.05
        # This separates: latents that read the trained XORs exist only in the trained model.
        assert min(trained[f] for f in model_features) > max(other[f] for f in model_features) + 0.05


class TinyTransformer(nn.Module):
    """One causal attention layer and an MLP on a residual stream, tied embedding."""

    def __init__(self, vocab: int = 24, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))
        self.resid = nn.Identity()
        self.unembed = nn.Linear(d, vocab, bias=False)
        self.unembed.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        mask = torch.triu(torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool), 1)
        h = h + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = self.resid(h + self.mlp(self.ln(h)))
        return self.unembed(h)


def markov_language(n: int, length: int = 16, vocab: int = 24, seed: int = 0) -> torch.Tensor:
    """Sequences of a sparse random bigram chain: each token has 3 likely successors."""
    g = torch.Generator().manual_seed(seed)
    successors = torch.stack([torch.randperm(vocab, generator=g)[:3] for _ in range(vocab)])
    tokens = torch.empty(n, length, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for t in range(1, length):
        tokens[:, t] = successors[tokens[:, t - 1], torch.randint(0, 3, (n,), generator=g)]
    return tokens


def test_tiny_language_model_under_weight_and_data_controls() -> None:
    from featurecontrols.controls.input.random_inputs import RandomInputs
    from featurecontrols.measures.sae_metrics import default_loss

    torch.manual_seed(0)
    model = TinyTransformer()
    data = markov_language(512)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):
        batch = data[(step * 32) % 512 :][:32]
        loss = default_loss(model, batch)
        optimiser.zero_grad()
        torch.autograd.backward(loss)
        optimiser.step()
    model.eval()
    real = data[:256]

    def sae() -> SparseAutoencoder:
        return SparseAutoencoder(128, "topk", k=8, batch_size=512, n_epochs=10, lr=3e-3, dead_after=20000)

    controls = [ReinitialisedWeights(), MomentMatchedWeights(presets=["embeddings"])]
    battery = Battery(
        weight_controls=controls, input_controls=[RandomInputs("unigram")], n_weight_seeds=1, run_used=False,
        correction="bh", n_latent_null=200, progress=False,
    )  # fmt: skip
    latents = Latents("sae", "resid", sae(), loss=default_loss)
    result = battery.run(model, list(real.split(64)), "resid", [latents], cells=real.flatten())
    fits = result.dictionaries["resid/sae"]
    print("\n".join(metrics_table(fits)))
    assert fits["trained"]["loss_clean"] < 0.8 * fits["reinitialised #0"]["loss_clean"]
    assert fits["trained"]["loss_recovered"] > 0.8
    for name, metrics in fits.items():
        assert metrics["explained_variance"] > 0.5, name
        assert name == "random-inputs (unigram)" or 0 < metrics["token_concentration"] <= 1
