import pytest
import torch
from torch import nn

from featurecontrols.controls.base import WeightControl
from featurecontrols.controls.weight._copy import KEEP_PRESETS, keep_patterns
from featurecontrols.controls.weight.moment_matched_weights import MomentMatchedWeights
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights
from featurecontrols.controls.weight.shuffled_weights import ShuffledWeights
from featurecontrols.errors import FeatureControlsError

Control = type[MomentMatchedWeights] | type[ShuffledWeights]
CONTROLS: list[Control] = [MomentMatchedWeights, ShuffledWeights]


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.mlp = nn.Linear(d, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.ln(h))


class TiedLM(nn.Module):
    """Embedding, two blocks, a final norm and an unembedding tied to the embedding."""

    def __init__(self, vocab: int = 40, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d), Block(d)])
        self.ln_final = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, vocab, bias=False)
        self.unembed.weight = self.embed.weight
        with torch.no_grad():
            for p in self.parameters():
                p.add_(0.3 * torch.randn_like(p) + 0.1)  # non-trivial means and stds

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self.unembed(self.ln_final(h))


def tied_lm() -> TiedLM:
    torch.manual_seed(0)
    return TiedLM()


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters(remove_duplicate=False)}


def test_new_controls_follow_the_protocol() -> None:
    assert [c.name for c in CONTROLS] == ["moment-matched", "shuffled"]
    assert all(isinstance(c(), WeightControl) for c in CONTROLS)


def test_moment_matched_keeps_each_tensors_mean_and_std_not_its_values() -> None:
    model = tied_lm()
    copy = MomentMatchedWeights().randomise(model, seed=0)
    new = params(copy.model)
    for name, p in params(model).items():
        q = new[name]
        assert not torch.allclose(q, p)
        if p.numel() >= 256:  # sampling error of the moments below 0.1 std
            assert abs(float(q.mean() - p.mean())) < 0.1 * float(p.std()), name
            assert abs(float(q.std() / p.std()) - 1.0) < 0.1, name
    big, big_new = model.embed.weight.detach(), copy.model.embed.weight.detach()
    assert abs(float(torch.corrcoef(torch.stack([big.flatten(), big_new.flatten()]))[0, 1])) < 0.1
    assert set(copy.methods.values()) <= {
        "moment-matched Gaussian",
        "moment-matched Gaussian (tied to embed.weight)",
    }


def test_shuffled_keeps_each_tensors_values() -> None:
    model = tied_lm()
    copy = ShuffledWeights().randomise(model, seed=0)
    new = params(copy.model)
    for name, p in params(model).items():
        assert torch.equal(p.flatten().sort().values, new[name].flatten().sort().values), name
        assert not torch.equal(p, new[name]), name


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_tied_weights_are_randomised_once_and_stay_tied(control: Control) -> None:
    model = tied_lm()
    copy = control().randomise(model, seed=1)
    assert copy.model.unembed.weight is copy.model.embed.weight
    assert copy.methods["unembed.weight"].endswith("(tied to embed.weight)")
    assert copy.model(torch.randint(0, 40, (2, 5))).shape == (2, 5, 40)
    assert torch.equal(params(model)["embed.weight"], model.embed.weight.detach())  # original untouched
    again = control().randomise(model, seed=1)
    assert all(torch.equal(p, params(again.model)[n]) for n, p in params(copy.model).items())


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_presets_and_layers_choose_what_is_randomised(control: Control) -> None:
    model = tied_lm()
    before = params(model)
    copy = control(presets=["embeddings", "norms"]).randomise(model, seed=0)
    after = params(copy.model)
    kept = [n for n in before if "embed" in n or "ln" in n]
    assert kept and all(torch.equal(before[n], after[n]) for n in kept)  # the tied unembedding too
    assert not torch.equal(before["blocks.0.mlp.weight"], after["blocks.0.mlp.weight"])
    only = params(control(layers=["blocks.1.*"]).randomise(model, seed=0).model)
    changed = {n for n in before if not torch.equal(before[n], only[n])}
    assert changed == {n for n in before if n.startswith("blocks.1.")}


def test_keep_patterns_work_with_any_control_and_refuse_bad_options() -> None:
    model = tied_lm()
    keep = keep_patterns(model, presets=["unembeddings", "norms"])
    assert "unembed.*" in keep and all(
        p in KEEP_PRESETS["unembeddings"] + KEEP_PRESETS["norms"] for p in keep
    )
    copy = ReinitialisedWeights(keep=keep).randomise(model, seed=0)
    assert copy.methods["embed.weight"] == "kept"  # tied to the kept unembedding
    with pytest.raises(FeatureControlsError, match="unknown keep preset"):
        keep_patterns(model, presets=["attention"])
    with pytest.raises(FeatureControlsError, match="matches no parameter"):
        keep_patterns(nn.Linear(2, 2), presets=["norms"])
    with pytest.raises(FeatureControlsError, match="layer pattern"):
        keep_patterns(model, layers=["layers.0.*"])


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.name)
def test_meta_and_integer_parameters_are_refused(control: Control) -> None:
    with torch.device("meta"):
        meta = nn.Linear(4, 4)
    with pytest.raises(FeatureControlsError, match="meta device"):
        control().randomise(meta, seed=0)
    counts = nn.Module()
    counts.table = nn.Parameter(torch.arange(6).reshape(2, 3), requires_grad=False)
    counts.proj = nn.Linear(3, 3)
    with pytest.raises(FeatureControlsError, match="not floating: table"):
        control().randomise(counts, seed=0)
    assert control(keep=["table"]).randomise(counts, seed=0).methods["table"] == "kept"
