import math

import pytest
import torch
from torch import Tensor, nn

from featurecontrols.controls.base import RandomisedModel, WeightControl
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights, haar_columns
from featurecontrols.errors import FeatureControlsError

Control = type[ReinitialisedWeights] | type[SpectrumMatchedWeights]
CONTROLS: list[Control] = [ReinitialisedWeights, SpectrumMatchedWeights]


class Custom(nn.Module):
    """Bare parameters that no ``reset_parameters`` covers."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(1.0 + 0.1 * torch.randn(d))
        self.mix = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.temperature = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.gain) @ self.mix / self.temperature


class TinyLM(nn.Module):
    """Embedding, LayerNorm, conv, a custom module and an unembedding tied to the embedding."""

    def __init__(self, vocab: int = 50, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.ln = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, kernel_size=3, padding=1)
        self.custom = Custom(d)
        self.unembed = nn.Linear(d, vocab)
        self.unembed.weight = self.embed.weight
        with torch.no_grad():  # stand-ins for trained values: a non-trivial, positive norm gain
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.normal_()

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.ln(self.embed(tokens))
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        return self.unembed(self.custom(h))


def tiny_lm() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM()


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters(remove_duplicate=False)}


def planted_linear() -> nn.Linear:
    """A 128 x 64 weight with a dominant learned direction (rank one plus noise)."""
    g = torch.Generator().manual_seed(3)
    linear = nn.Linear(64, 128)
    u, v = torch.randn(128, 1, generator=g), torch.randn(1, 64, generator=g)
    with torch.no_grad():
        linear.weight.copy_(u @ v / 8 + 0.05 * torch.randn(128, 64, generator=g))
    return linear


def test_controls_follow_the_protocol() -> None:
    assert [c.name for c in CONTROLS] == ["reinitialised", "spectrum-matched"]
    assert all(isinstance(c(), WeightControl) for c in CONTROLS)


def test_spectrum_matched_keeps_singular_values_of_every_matrix() -> None:
    model = tiny_lm()
    result = SpectrumMatchedWeights().randomise(model, seed=0)
    new = dict(result.model.named_parameters())
    matrices = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2]
    assert {n for n, _ in matrices} == {"embed.weight", "conv.weight", "custom.mix"}
    for name, p in matrices:
        s_old = torch.linalg.svdvals(p.detach().reshape(p.shape[0], -1).double())
        s_new = torch.linalg.svdvals(new[name].detach().reshape(p.shape[0], -1).double())
        torch.testing.assert_close(s_new, s_old, rtol=1e-5, atol=1e-5 * float(s_old[0]))
        assert new[name].shape == p.shape and new[name].dtype == p.dtype
        assert result.methods[name] == "spectrum-matched"


def test_spectrum_matched_destroys_the_learned_directions() -> None:
    linear = planted_linear()
    new = SpectrumMatchedWeights(keep=["bias"]).randomise(linear, seed=1).model.weight.detach()
    old = linear.weight.detach()
    u_old, _, vh_old = torch.linalg.svd(old)
    u_new, _, vh_new = torch.linalg.svd(new)
    assert abs(float(u_old[:, 0] @ u_new[:, 0])) < 0.3
    assert abs(float(vh_old[0] @ vh_new[0])) < 0.3
    correlation = torch.corrcoef(torch.stack([old.flatten(), new.flatten()]))[0, 1]
    assert abs(float(correlation)) < 0.05


def test_haar_columns_are_orthonormal_and_unbiased() -> None:
    g = torch.Generator().manual_seed(0)
    q = haar_columns(7, 3, g)
    torch.testing.assert_close(q.T @ q, torch.eye(3, dtype=torch.float64))
    # Haar: the diagonal entries are symmetric about 0 (mean over 600 of them: sd about 0.005).
    # Without the sign correction, QR returns a negatively biased diagonal (mean about -0.08).
    diagonals = torch.cat([haar_columns(60, 60, g).diagonal() for _ in range(10)])
    assert abs(float(diagonals.mean())) < 0.025


def test_spectrum_matched_permutes_vectors_and_keeps_scalars() -> None:
    model = tiny_lm()
    result = SpectrumMatchedWeights().randomise(model, seed=0)
    new = dict(result.model.named_parameters())
    vectors = [(n, p) for n, p in model.named_parameters() if p.ndim == 1]
    for name, p in vectors:
        assert torch.equal(new[name].sort().values, p.sort().values)
        assert not torch.equal(new[name], p)
        assert result.methods[name] == "permuted"
    assert bool((new["ln.weight"] > 0).all())
    assert result.methods["custom.temperature"] == "kept (scalar)"
    assert torch.equal(new["custom.temperature"], model.custom.temperature)


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_copy_is_complete_finite_tied_and_the_original_is_untouched(control: Control) -> None:
    model = tiny_lm()
    before = snapshot(model)
    result = control().randomise(model, seed=5)
    assert isinstance(result, RandomisedModel)
    assert (result.control, result.seed) == (control.name, 5)
    after = snapshot(model)
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    copy = result.model
    assert copy is not model
    assert list(result.methods) == list(before)  # every name, tied ones included, in model order
    assert all(bool(torch.isfinite(p).all()) for p in copy.parameters())
    assert copy.unembed.weight is copy.embed.weight  # the tie survives
    assert not torch.equal(copy.embed.weight, model.embed.weight)
    assert result.methods["unembed.weight"] == f"{result.methods['embed.weight']} (tied to embed.weight)"
    new = snapshot(copy)
    redrawn = [n for n, m in result.methods.items() if not m.startswith("kept")]
    assert len(redrawn) == len(before) - 1  # all but the 0-d temperature
    assert all(not torch.equal(after[n], new[n]) for n in redrawn)
    logits = copy(torch.randint(0, 50, (2, 7)))
    assert logits.shape == (2, 7, 50) and bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_keep_patterns_leave_parameters_bit_identical(control: Control) -> None:
    model = tiny_lm()
    result = control(keep=["unembed.*", "ln.*", "conv.bias"]).randomise(model, seed=0)
    new = dict(result.model.named_parameters(remove_duplicate=False))
    kept = ["embed.weight", "unembed.weight", "unembed.bias", "ln.weight", "ln.bias", "conv.bias"]
    for name in kept:
        assert torch.equal(new[name], dict(model.named_parameters(remove_duplicate=False))[name])
        assert result.methods[name].startswith("kept")
    assert result.methods["embed.weight"] == "kept"  # kept through its tied name
    assert not torch.equal(new["conv.weight"], model.conv.weight)


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_seeded_reproducible_and_independent_of_the_global_rng(control: Control) -> None:
    model = tiny_lm()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = snapshot(control().randomise(model, seed=7).model)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(456)
    again = snapshot(control().randomise(model, seed=7).model)
    other = snapshot(control().randomise(model, seed=8).model)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first["embed.weight"], other["embed.weight"])
    assert not torch.equal(first["conv.weight"], other["conv.weight"])


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_result_does_not_depend_on_parameter_order(control: Control) -> None:
    def build(order: list[str]) -> nn.Module:
        model = nn.Module()
        for name in order:
            model.add_module(name, nn.Linear(6, 5))
        return model

    forward = build(["a", "b", "c"])
    backward = build(["c", "b", "a"])
    backward.load_state_dict(forward.state_dict())
    one = dict(control().randomise(forward, seed=2).model.named_parameters())
    two = dict(control().randomise(backward, seed=2).model.named_parameters())
    assert all(torch.equal(one[n], two[n]) for n in one)


def test_reinitialised_linear_draws_from_its_own_initialiser() -> None:
    linear = nn.Linear(256, 128)
    with torch.no_grad():
        linear.weight.fill_(5.0)
        linear.bias.fill_(-5.0)
    result = ReinitialisedWeights().randomise(linear, seed=0)
    weight, bias = result.model.weight.detach(), result.model.bias.detach()
    bound = 1 / math.sqrt(256)  # kaiming_uniform(a=sqrt(5)) on the weight and the bias: U(-bound, bound)
    assert float(weight.abs().max()) <= bound and float(bias.abs().max()) <= bound
    fresh = nn.Linear(256, 128).weight.detach()
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    torch.testing.assert_close(
        weight.quantile(quantiles), fresh.quantile(quantiles), atol=0.05 * bound, rtol=0
    )
    assert result.methods == {"weight": "reset_parameters (Linear)", "bias": "reset_parameters (Linear)"}


def test_reinitialised_restores_kept_parameters_of_a_reset_module() -> None:
    linear = nn.Linear(32, 8)
    result = ReinitialisedWeights(keep=["bias"]).randomise(linear, seed=0)
    assert torch.equal(result.model.bias, linear.bias)
    assert not torch.equal(result.model.weight, linear.weight)
    assert result.methods == {"weight": "reset_parameters (Linear)", "bias": "kept"}


def test_reinitialised_tied_weight_is_reset_once_by_its_first_module() -> None:
    model = tiny_lm()
    result = ReinitialisedWeights().randomise(model, seed=0)
    assert result.methods["embed.weight"] == "reset_parameters (Embedding)"
    assert result.methods["unembed.bias"] == "reset_parameters (Linear)"
    embedding = result.model.embed.weight.detach()
    assert abs(float(embedding.std()) - 1.0) < 0.1  # N(0, 1), not the unembedding's U(-1/4, 1/4)
    assert torch.equal(result.model.ln.weight, torch.ones(16))  # LayerNorm's own initialiser


def test_reinitialised_bare_parameters_are_moment_matched() -> None:
    module = nn.Module()
    module.table = nn.Parameter(3.0 + 0.5 * torch.randn(100, 100))
    module.scale = nn.Parameter(torch.tensor(2.0))
    result = ReinitialisedWeights().randomise(module, seed=0)
    new = result.model.table.detach()
    assert abs(float(new.mean()) - float(module.table.detach().mean())) < 0.02
    assert abs(float(new.std()) - float(module.table.detach().std())) < 0.02
    assert (
        abs(float(torch.corrcoef(torch.stack([new.flatten(), module.table.detach().flatten()]))[0, 1])) < 0.05
    )
    assert result.methods == {"table": "moment-matched Gaussian", "scale": "kept (scalar)"}


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_bad_models_are_refused_with_a_fix(control: Control) -> None:
    with pytest.raises(FeatureControlsError, match="no parameters to randomise"):
        control().randomise(nn.ReLU(), seed=0)
    with torch.device("meta"):
        meta = nn.Linear(4, 4)
    with pytest.raises(FeatureControlsError, match=r"meta device(.|\n)*to_empty"):
        control().randomise(meta, seed=0)
    counts = nn.Module()
    counts.table = nn.Parameter(torch.arange(6).reshape(2, 3), requires_grad=False)
    counts.proj = nn.Linear(3, 3)
    with pytest.raises(FeatureControlsError, match="not floating: table"):
        control().randomise(counts, seed=0)
    assert control(keep=["table"]).randomise(counts, seed=0).methods["table"] == "kept"
    with pytest.raises(FeatureControlsError, match="match no parameter"):
        control(keep=["tabel"]).randomise(counts, seed=0)
    broken = nn.Linear(3, 3)
    with torch.no_grad():
        broken.weight[0, 0] = float("nan")
    with pytest.raises(FeatureControlsError, match=r"non-finite values.*: weight"):
        control().randomise(broken, seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_cuda_models_leave_the_cuda_rng_alone(control: Control) -> None:
    model = tiny_lm().cuda()
    state = torch.cuda.get_rng_state()
    first = control().randomise(model, seed=3)
    assert torch.equal(torch.cuda.get_rng_state(), state)
    again = snapshot(control().randomise(model, seed=3).model)
    assert all(p.is_cuda for p in first.model.parameters())
    assert all(torch.equal(p, again[n]) for n, p in snapshot(first.model).items())
    if control is SpectrumMatchedWeights:  # the maths runs on CPU: the same copy on any device
        on_cpu = snapshot(control().randomise(tiny_lm(), seed=3).model)
        assert all(torch.equal(p.cpu(), on_cpu[n]) for n, p in snapshot(first.model).items())
