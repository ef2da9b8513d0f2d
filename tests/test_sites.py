from typing import Any, NamedTuple

import pytest
import torch
from torch import Tensor, nn

from featurecontrols.adapters import huggingface, transformer_lens
from featurecontrols.adapters.sites import Site, intervene, read_activations, resolve_module, site_names
from featurecontrols.errors import FeatureControlsError


class Counted(nn.Module):
    """A linear layer that counts its forward calls."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.lin(x)


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.mlp = nn.Linear(d, d)
        self.hook_resid_post = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_resid_post(x + torch.relu(self.mlp(x)))


class PairOut(nn.Module):
    """Returns (tensor, None), like many attention modules."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
        return self.lin(x), None


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.pair = PairOut(4)
        self.head = Counted(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        h, _ = self.pair(h)
        return self.head(h)


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


def batches(n: int = 3, rows: int = 4, seq: int | None = None) -> list[Tensor]:
    g = torch.Generator().manual_seed(1)
    shape = (rows, 3) if seq is None else (rows, seq, 3)
    return [torch.randn(shape, generator=g) for _ in range(n)]


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --- Site ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "site"),
    [
        ("blocks.0.mlp", Site("blocks.0.mlp")),
        ("blocks.0.mlp:input", Site("blocks.0.mlp", "input")),
        ("blocks.0.hook_resid_post[-1]", Site("blocks.0.hook_resid_post", position=-1)),
        ("x[1:3]", Site("x", position=slice(1, 3))),
        ("x:input[0]", Site("x", "input", 0)),
        ("x[::2]", Site("x", position=slice(None, None, 2))),
        ("x[-3:]", Site("x", position=slice(-3, None))),
        ("", Site("")),
    ],
)
def test_parse_round_trips(spec: str, site: Site) -> None:
    assert Site.parse(spec) == site
    assert str(site) == spec
    assert Site.parse(str(site)) == site
    assert Site.parse(site) is site
    assert hash(Site.parse(spec)) == hash(site)


def test_output_is_the_default_io() -> None:
    assert Site.parse("x:output") == Site.parse("x")
    assert str(Site.parse("x:output[2]")) == "x[2]"


@pytest.mark.parametrize("spec", ["x:inp", "x[a]", "x[1:2:3:4]", "x[1]y", "a b", "x[0:1:0]"])
def test_bad_specs_raise(spec: str) -> None:
    with pytest.raises(FeatureControlsError):
        Site.parse(spec)


def test_site_fields_are_checked() -> None:
    with pytest.raises(FeatureControlsError, match="module path"):
        Site("x:input")
    with pytest.raises(FeatureControlsError, match="position"):
        Site("x", position=1.5)  # type: ignore[arg-type]
    with pytest.raises(FeatureControlsError, match="io"):
        Site("x", io="both")  # type: ignore[arg-type]


def test_unknown_site_lists_nearest_names(model: Tiny) -> None:
    assert resolve_module(model, "blocks.1.mlp") is model.blocks[1].mlp
    assert resolve_module(model, "") is model
    with pytest.raises(FeatureControlsError) as err:
        resolve_module(model, "blocks.0.mpl")
    assert "blocks.0.mlp" in str(err.value)
    assert "site_names(model)" in err.value.fix
    assert "blocks.0.mlp" in site_names(model)
    with pytest.raises(FeatureControlsError) as err:
        resolve_module(model, "blocks.0.hook_attn_out")
    assert "TransformerLens hook name" in err.value.fix and "HuggingFaceEncoder" in err.value.fix


# --- read_activations ---------------------------------------------------------------------------


def test_reads_the_right_values(model: Tiny) -> None:
    data = batches()
    acts = read_activations(model, data, ["embed", "blocks.0.mlp", "pair", "head:input"], stop_early=False)
    x = torch.cat(data)
    with torch.no_grad():
        embed = model.embed(x)
        pair = model.pair(model.blocks[1](model.blocks[0](embed)))[0]
        assert torch.allclose(acts["embed"], embed)
        assert torch.allclose(acts["blocks.0.mlp"], model.blocks[0].mlp(embed))
    assert torch.allclose(acts["pair"], pair)  # tuple output unwrapped
    assert torch.equal(acts["head:input"], acts["pair"])  # input site: first positional input
    assert all(a.dtype == torch.float32 and a.device.type == "cpu" for a in acts.values())
    assert all(a.shape == (12, 4) for a in acts.values())


def test_hooks_are_removed_after_success_and_after_an_error(model: Tiny) -> None:
    read_activations(model, batches(), ["blocks.0.mlp", "head:input"])
    assert no_hooks(model)

    def failing(m: nn.Module, batch: Any) -> Any:
        m(batch)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # not swallowed
        read_activations(model, batches(), ["head"], forward=failing, stop_early=False)
    assert no_hooks(model)
    with pytest.raises(FeatureControlsError):  # second site unknown: the first hook is not left behind
        read_activations(model, batches(), ["embed", "nope"])
    assert no_hooks(model)


def test_early_stop_skips_the_rest_of_the_forward_pass(model: Tiny) -> None:
    early = read_activations(model, batches(), ["blocks.1.mlp", "embed"])
    assert model.head.calls == 0
    full = read_activations(model, batches(), ["blocks.1.mlp", "embed"], stop_early=False)
    assert model.head.calls == 3
    assert all(torch.equal(early[k], full[k]) for k in full)


def test_position_selector(model: Tiny) -> None:
    data = batches(n=2, rows=3, seq=5)
    acts = read_activations(model, data, ["embed", "embed[-1]", "embed[1:3]", "embed:input[0]"])
    full = torch.cat([d for d in data])
    embedded = acts["embed"].reshape(6, 5, 4)
    assert torch.equal(acts["embed[-1]"], embedded[:, -1])
    assert torch.equal(acts["embed[1:3]"], embedded[:, 1:3].reshape(-1, 4))
    assert torch.equal(acts["embed:input[0]"], full[:, 0])
    with pytest.raises(FeatureControlsError, match="no position"):
        read_activations(model, data, ["embed[7]"])
    with pytest.raises(FeatureControlsError, match="no sequence axis"):
        read_activations(model, batches(), ["embed[0]"])  # (batch, d): dim 1 is the feature dim
    assert no_hooks(model)


def test_batches_can_be_tuples_or_mappings() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, a: Tensor, b: Tensor) -> Tensor:
            return self.lin(a + b)

    m = Two()
    a, b = torch.ones(3, 2), torch.zeros(3, 2)
    by_position = read_activations(m, [(a, b)], "lin:input")["lin:input"]
    by_name = read_activations(m, [{"a": a, "b": b}], Site("lin", "input"))["lin:input"]
    assert torch.equal(by_position, a) and torch.equal(by_name, a)


def test_keeps_training_mode_and_float64(model: Tiny) -> None:
    model.train().double()
    acts = read_activations(model, [b.double() for b in batches()], ["embed"])
    assert model.training
    assert acts["embed"].dtype == torch.float64


def test_empty_dataset_raises(model: Tiny) -> None:
    with pytest.raises(FeatureControlsError, match="empty"):
        read_activations(model, [], ["embed"])
    with pytest.raises(FeatureControlsError, match="no sites"):
        read_activations(model, batches(), [])


def test_site_never_reached_raises(model: Tiny) -> None:
    def only_embed(m: nn.Module, batch: Any) -> Any:
        return m.embed(batch)

    with pytest.raises(FeatureControlsError, match=r"never reached site.*blocks\.0\.mlp") as err:
        read_activations(model, batches(), ["embed", "blocks.0.mlp"], forward=only_embed)
    assert "forward" in err.value.fix
    assert no_hooks(model)


def test_a_module_that_runs_twice_is_ambiguous() -> None:
    lin = nn.Linear(2, 2)
    twice = nn.Sequential(lin, lin)
    with pytest.raises(FeatureControlsError, match="more than once"):
        read_activations(twice, [torch.ones(1, 2)], ["0"], stop_early=False)
    assert no_hooks(twice)


def test_outputs_that_are_not_tensors_raise_a_clear_error() -> None:
    class DictOut(nn.Module):
        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"x": x}

    with pytest.raises(FeatureControlsError, match="is a dict"):
        read_activations(nn.Sequential(DictOut()), [torch.ones(2, 2)], ["0"])
    with pytest.raises(FeatureControlsError, match="tuple whose first element is a NoneType"):
        read_activations(nn.Sequential(nn.Identity()), [(None,)], ["0:input"], forward=lambda m, b: m(*b))


def test_progress_bar_runs(model: Tiny) -> None:
    acts = read_activations(model, iter(batches()), ["embed"], progress=3)
    assert acts["embed"].shape == (12, 4)


# --- intervene ----------------------------------------------------------------------------------


def test_intervene_replaces_composes_and_is_removed(model: Tiny) -> None:
    x = batches(n=1)[0]
    with torch.no_grad():
        clean = model(x)
        with intervene(model, "blocks.1.mlp", torch.zeros_like):
            zeroed = model(x)
            h = model.blocks[0](model.embed(x))
            expected = model.head(model.pair(model.blocks[1].hook_resid_post(h))[0])
        assert torch.allclose(zeroed, expected)
        with intervene(model, "pair", lambda t: t + 1), intervene(model, "pair", lambda t: 2 * t):
            composed = read_activations(model, [x], "pair")["pair"]
        plain = read_activations(model, [x], "pair")["pair"]
    assert torch.allclose(composed, 2 * (plain + 1))  # outer first, then inner
    assert no_hooks(model)
    assert torch.equal(model(x), clean)


def test_intervene_on_an_input_site_and_tuple_output(model: Tiny) -> None:
    x = batches(n=1)[0]
    with torch.no_grad(), intervene(model, "head:input", torch.zeros_like):
        out = model(x)
    assert torch.allclose(out, model.head.lin.bias.detach().expand_as(out))
    pair_out = None
    with torch.no_grad(), intervene(model, Site("pair"), torch.ones_like):
        pair_out = model.pair(torch.zeros(2, 4))
    assert isinstance(pair_out, tuple) and pair_out[1] is None and torch.equal(pair_out[0], torch.ones(2, 4))


def test_intervene_keeps_a_namedtuple_output() -> None:
    class Out(NamedTuple):
        hidden: Tensor
        extra: int

    class Named(nn.Module):
        def forward(self, x: Tensor) -> Out:
            return Out(x, 7)

    m = nn.Sequential(Named())
    with intervene(m, "0", torch.zeros_like):
        out = m(torch.ones(2, 3))
    assert isinstance(out, Out) and out.extra == 7 and torch.equal(out.hidden, torch.zeros(2, 3))


def test_intervene_checks_the_shape_and_cleans_up_after_errors(model: Tiny) -> None:
    x = batches(n=1)[0]
    with pytest.raises(FeatureControlsError, match="same shape"), intervene(model, "embed", lambda t: t[:1]):
        model(x)
    assert no_hooks(model)
    with pytest.raises(KeyError), intervene(model, "embed", lambda t: t):
        raise KeyError("inside")
    assert no_hooks(model)


# --- adapters -----------------------------------------------------------------------------------


class FakeHooked(nn.Module):
    """Imitates a HookedTransformer: HookPoints are submodules listed in hook_dict."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.hook_embed = nn.Identity()
        self.blocks = nn.ModuleList([Block(4)])
        self.hook_dict = {
            "hook_embed": self.hook_embed,
            "blocks.0.hook_resid_post": self.blocks[0].hook_resid_post,
        }

    def forward(self, tokens: Tensor) -> Tensor:
        return self.blocks[0](self.hook_embed(self.embed(tokens)))


def test_transformer_lens_adapter() -> None:
    m = FakeHooked()
    assert transformer_lens.hook_names(m) == ["hook_embed", "blocks.0.hook_resid_post"]
    tokens = torch.randint(0, 10, (2, 5))
    acts = read_activations(m, [tokens], "blocks.0.hook_resid_post[-1]", forward=transformer_lens.forward)
    with torch.no_grad():
        assert torch.allclose(acts["blocks.0.hook_resid_post[-1]"], m(tokens)[:, -1])
    with pytest.raises(FeatureControlsError, match="hook_dict"):
        transformer_lens.hook_names(nn.Linear(2, 2))
    with pytest.raises(FeatureControlsError, match="tokens"):
        transformer_lens.forward(m, (tokens,))


def layer_stack(layer: type[nn.Module], n: int) -> nn.ModuleList:
    return nn.ModuleList([layer() for _ in range(n)])


class BertLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(4, 4)
        self.output = nn.Module()
        self.output.dense = nn.Linear(4, 4)

    def forward(self, h: Tensor) -> tuple[Tensor]:
        return (h + 1,)


class Gpt2Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.ln_2, self.mlp = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4)

    def forward(self, h: Tensor) -> tuple[Tensor, None]:
        return h + self.mlp(self.ln_2(h + self.attn(h))), None


class LlamaLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attn, self.post_attention_layernorm = nn.Linear(4, 4), nn.LayerNorm(4)
        self.mlp = nn.Linear(4, 4)


def fake_bert() -> nn.Module:
    bert = nn.Module()
    bert.embeddings = nn.Module()
    bert.embeddings.word_embeddings = nn.Embedding(10, 4)
    bert.embeddings.position_embeddings = nn.Embedding(8, 4)
    bert.encoder = nn.Module()
    bert.encoder.layer = layer_stack(BertLayer, 2)
    model = nn.Module()
    model.bert = bert
    return model


class FakeGpt2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte, self.transformer.wpe = nn.Embedding(10, 4), nn.Embedding(8, 4)
        self.transformer.h = layer_stack(Gpt2Block, 2)
        self.transformer.ln_f = nn.LayerNorm(4)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        h = self.transformer.wte(input_ids)
        for block in self.transformer.h:
            h = block(h)[0]
        return self.transformer.ln_f(h)


def fake_llama() -> nn.Module:
    model = nn.Module()
    model.model = nn.Module()
    model.model.embed_tokens, model.model.norm = nn.Embedding(10, 4), nn.LayerNorm(4)
    model.model.layers = layer_stack(LlamaLayer, 1)
    return model


def test_huggingface_aliases_for_bert_gpt2_llama() -> None:
    bert = huggingface.resid_aliases(fake_bert())
    assert bert["blocks.1.hook_resid_post"] == "bert.encoder.layer.1"
    assert bert["blocks.0.hook_resid_pre"] == "bert.encoder.layer.0:input"
    assert bert["blocks.0.hook_attn_out"] == "bert.encoder.layer.0.attention.output.dense"
    assert bert["blocks.0.hook_resid_mid"] == "bert.encoder.layer.0.attention.output"
    assert bert["blocks.0.hook_mlp_out"] == "bert.encoder.layer.0.output.dense"
    assert bert["hook_embed"] == "bert.embeddings.word_embeddings"
    gpt2 = huggingface.resid_aliases(FakeGpt2())
    assert gpt2["blocks.1.hook_attn_out"] == "transformer.h.1.attn"
    assert gpt2["blocks.1.hook_mlp_out"] == "transformer.h.1.mlp"
    assert gpt2["blocks.0.hook_resid_mid"] == "transformer.h.0.ln_2:input"
    assert gpt2["hook_pos_embed"] == "transformer.wpe"
    assert gpt2["ln_final.hook_normalized"] == "transformer.ln_f"
    llama = huggingface.resid_aliases(fake_llama())
    assert llama["blocks.0.hook_resid_post"] == "model.layers.0"
    assert llama["blocks.0.hook_attn_out"] == "model.layers.0.self_attn"
    assert llama["ln_final.hook_normalized"] == "model.norm"
    assert "blocks.1.hook_resid_post" not in llama
    for aliases, model in [(bert, fake_bert()), (gpt2, FakeGpt2()), (llama, fake_llama())]:
        for spec in aliases.values():  # every alias names a real module
            resolve_module(model, Site.parse(spec).module)
    assert huggingface.resid_aliases(nn.Sequential(nn.Linear(2, 2))) == {}


def test_huggingface_resolve_alias_and_forward() -> None:
    m = FakeGpt2()
    site = huggingface.resolve_alias(m, "blocks.1.hook_resid_post[-1]")
    assert site == Site("transformer.h.1", position=-1)
    assert huggingface.resolve_alias(m, "transformer.ln_f:input") == Site("transformer.ln_f", "input")
    with pytest.raises(FeatureControlsError, match=r"blocks\.1\.hook_resid_post"):
        huggingface.resolve_alias(m, "blocks.1.hook_resid_pots")
    ids = torch.randint(0, 10, (2, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    post, pre = (huggingface.resolve_alias(m, f"blocks.1.hook_resid_{w}") for w in ("post", "pre"))
    acts = read_activations(m, [batch], [site, pre, post], forward=huggingface.forward)
    with torch.no_grad():
        h0 = m.transformer.h[0](m.transformer.wte(ids))[0]
        h1 = m.transformer.h[1](h0)[0]
    assert torch.allclose(acts[str(pre)], h0.reshape(-1, 4))
    assert torch.allclose(acts[str(post)], h1.reshape(-1, 4))  # tuple-returning layer unwrapped
    assert torch.equal(acts[str(site)], h1[:, -1])
    with pytest.raises(FeatureControlsError, match="tokenizer output"):
        huggingface.forward(m, (ids,))


def test_adapters_are_not_imported_by_the_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, featurecontrols.adapters.sites, featurecontrols.pipeline.store; "
        "print(sorted(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "featurecontrols.adapters.huggingface" not in out
    assert "featurecontrols.adapters.transformer_lens" not in out
    assert "transformers" not in out and "transformer_lens" not in out
