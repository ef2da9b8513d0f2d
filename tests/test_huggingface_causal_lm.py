"""Hugging Face causal LMs built from configs (GPT-2, Llama): the model's own initialiser for the
re-initialised control (initializer_range, LayerNorm 1, tied lm_head kept tied), alias sites, and the
battery end to end with the used axis on next-token distributions."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from featurecontrols import Battery  # noqa: E402
from featurecontrols.adapters import adapt  # noqa: E402
from featurecontrols.adapters.huggingface import HuggingFaceCausalLM  # noqa: E402
from featurecontrols.adapters.sites import Site  # noqa: E402
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights  # noqa: E402
from featurecontrols.errors import FeatureControlsError  # noqa: E402


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=16, vocab_size=64)
    m = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # "trained": LayerNorm gains away from 1, weights wider than the init
        m.transformer.h[0].ln_1.weight.mul_(3.0)
        m.transformer.h[1].mlp.c_fc.weight.mul_(5.0)
    return m


def llama() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=64, max_position_embeddings=16,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


def test_gpt2_is_reinitialised_by_its_own_init_weights_and_stays_tied() -> None:
    m = gpt2()
    adapter = adapt(m)
    assert isinstance(adapter, HuggingFaceCausalLM)
    copy = ReinitialisedWeights().randomise(m, seed=0)
    c = copy.model
    assert copy.methods["transformer.h[1].mlp.c_fc.weight".replace("[1]", ".1")].startswith("_init_weights")
    assert torch.equal(c.transformer.h[0].ln_1.weight, torch.ones(32))
    std = float(c.transformer.h[1].mlp.c_fc.weight.detach().std())
    assert abs(std - m.config.initializer_range) < 0.15 * m.config.initializer_range  # not 5x
    assert c.lm_head.weight is c.transformer.wte.weight  # tied in the copy as in the model
    assert not torch.equal(c.transformer.wte.weight, m.transformer.wte.weight)
    again = ReinitialisedWeights().randomise(m, seed=0).model
    assert torch.equal(again.transformer.h[0].attn.c_attn.weight, c.transformer.h[0].attn.c_attn.weight)
    assert float(m.transformer.h[0].ln_1.weight[0]) == 3.0  # the model itself untouched


def test_llama_is_reinitialised_by_its_own_init_weights() -> None:
    m = llama()
    with torch.no_grad():
        m.model.layers[0].input_layernorm.weight.mul_(2.0)
    copy = ReinitialisedWeights().randomise(m, seed=1)
    assert all(method.startswith("_init_weights") for method in copy.methods.values())
    assert torch.equal(copy.model.model.layers[0].input_layernorm.weight, torch.ones(32))


def test_alias_sites_and_unknown_names() -> None:
    adapter = adapt(gpt2())
    assert str(adapter.resolve("blocks.1.hook_resid_post[-1]")) == "transformer.h.1[-1]"
    assert "blocks.0.hook_resid_pre" in adapter.site_names()
    with pytest.raises(FeatureControlsError, match="nearest"):
        adapter.resolve("blocks.1.hook_resid_pots")


def test_the_battery_on_a_causal_lm_with_the_used_axis_on_next_token_distributions() -> None:
    m = gpt2()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (96, 8), generator=g)
    label = (torch.rand(96, generator=g) < 0.5).float()
    tokens[:, -1] = torch.where(label.bool(), 5, 9)
    battery = Battery(
        n_weight_seeds=1, n_bootstrap=100, used_examples=32, n_random_directions=200, progress=False
    )
    result = battery.run(m, list(tokens.split(32)), "blocks.0.hook_resid_post[-1]", {"last_is_5": label})
    (candidate,) = result.candidates
    assert candidate.axes["decodable"].status == "yes"
    used = candidate.axes["used"].evidence[0]
    assert used.metric.startswith("relative output change") and 0 < used.p_value <= 1
    reinit = next(c for c in result.settings.weight_controls if c.name == "reinitialised")
    assert any(method.startswith("_init_weights") for method in reinit.methods)


def test_padded_positions_count_for_nothing_on_the_used_axis() -> None:
    from featurecontrols.adapters.interventions import ProjectOut
    from featurecontrols.measures.output_change import OutputChange

    adapter = adapt(gpt2())
    g = torch.Generator().manual_seed(1)
    long, short = torch.randint(0, 64, (1, 8), generator=g), torch.randint(0, 64, (1, 5), generator=g)
    padded = {  # right padding: a causal LM's real positions never see the pad tokens
        "input_ids": torch.cat([long, torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], 1)]),
        "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
    }
    alone = [{"input_ids": long, "attention_mask": torch.ones(1, 8, dtype=torch.long)},
             {"input_ids": short, "attention_mask": torch.ones(1, 5, dtype=torch.long)}]  # fmt: skip
    site = adapter.resolve("blocks.0.hook_resid_post")
    direction = torch.randn(32, generator=g)
    in_one = OutputChange(adapter, [padded], site)
    separate = OutputChange(adapter, alone, site)
    assert in_one.spread == pytest.approx(separate.spread, rel=1e-5)  # over the 13 real tokens only
    torch.testing.assert_close(
        in_one.under(ProjectOut(direction[None])), separate.under(ProjectOut(direction[None])),
        rtol=1e-4, atol=1e-7,
    )  # fmt: skip


def test_a_position_that_is_padding_is_refused() -> None:
    m = gpt2()
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    padded = {"input_ids": ids, "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2])}
    battery = Battery(n_weight_seeds=1, run_used=False, n_bootstrap=20, progress=False)
    labels = {"f": torch.tensor([0.0, 1.0] * 10)}
    with pytest.raises(FeatureControlsError, match=r"position -1 .* padding") as err:
        battery.run(HuggingFaceCausalLM(m), [padded] * 10, "blocks.0.hook_resid_post[-1]", labels)
    assert "encode_causal" in err.value.fix
    with pytest.raises(FeatureControlsError, match="padding"):
        HuggingFaceCausalLM(m, last_token=True).outputs(padded)
    first = {"input_ids": ids, "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    first["attention_mask"][1, 5] = 0  # padding after position 3: reading [3] is fine
    assert HuggingFaceCausalLM(m).activations([first], [Site.parse("transformer.h.0[3]")])
