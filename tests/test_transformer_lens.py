"""TransformerLens's HookedTransformer (transformer-lens 3.x, built from a config): its own initialiser
for the re-initialised control, one matrix per head for the spectrum-matched control, NaN weights
refused, and the battery end to end on hook names; a TransformerBridge (booted from a local folder) read
through the Hugging Face model it wraps."""

import warnings
from pathlib import Path

import pytest
import torch

tl = pytest.importorskip("transformer_lens")

from featurecontrols import Battery  # noqa: E402
from featurecontrols.adapters import adapt  # noqa: E402
from featurecontrols.controls.weight.moment_matched_weights import MomentMatchedWeights  # noqa: E402
from featurecontrols.controls.weight.reinitialised_weights import ReinitialisedWeights  # noqa: E402
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights  # noqa: E402
from featurecontrols.errors import FeatureControlsError  # noqa: E402


def model(seed: int | None = 7) -> torch.nn.Module:
    cfg = tl.HookedTransformerConfig(
        n_layers=2, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_vocab=50, act_fn="gelu",
        normalization_type="LN", seed=seed,
    )  # fmt: skip
    m = tl.HookedTransformer(cfg).eval()
    with torch.no_grad():  # "trained": LayerNorm gains away from 1, biases away from 0
        for name, p in m.named_parameters():
            if "ln" in name and name.endswith(".w"):
                p.mul_(3.0)
            elif name.rsplit(".", 1)[-1].startswith("b_"):
                p.add_(0.5)
    return m


def test_reinitialised_uses_init_weights_and_the_constructors_values() -> None:
    m = model()
    copy = ReinitialisedWeights().randomise(m, seed=0)
    params = dict(copy.model.named_parameters())
    assert copy.methods["blocks.0.attn.W_Q"] == "init_weights (gpt2)"
    assert copy.methods["blocks.0.ln1.w"] == "constructor"
    assert torch.equal(params["blocks.1.ln2.w"], torch.ones(32))  # not the trained 3.0
    assert torch.equal(params["blocks.0.attn.b_Q"], torch.zeros(4, 8))
    std = float(params["blocks.0.mlp.W_in"].detach().std())
    assert abs(std - m.cfg.initializer_range) < 0.15 * m.cfg.initializer_range  # gpt2: N(0, range^2)
    again = dict(ReinitialisedWeights().randomise(m, seed=0).model.named_parameters())
    other = dict(ReinitialisedWeights().randomise(m, seed=1).model.named_parameters())
    moment = dict(MomentMatchedWeights().randomise(m, seed=0).model.named_parameters())
    w = "blocks.0.attn.W_Q"
    assert torch.equal(params[w], again[w])  # same seed, same copy
    assert not torch.equal(params[w], other[w])  # cfg.seed = 7 does not fix every copy's draw
    assert not torch.equal(params[w], moment[w])  # no fallback to the moment-matched draw
    assert torch.equal(dict(m.named_parameters())["blocks.1.ln2.w"], torch.full((32,), 3.0))  # untouched


def test_spectrum_matched_keeps_each_heads_spectrum() -> None:
    m = model()
    with torch.no_grad():  # head 2 of W_Q of rank 2
        a, b = torch.randn(32, 2), torch.randn(2, 8)
        m.blocks[0].attn.W_Q[2] = a @ b
    copy = SpectrumMatchedWeights().randomise(m, seed=0)
    assert copy.methods["blocks.0.attn.W_Q"] == "spectrum-matched (4 matrices)"
    assert copy.methods["blocks.0.attn.b_Q"] == "permuted"
    before, after = m.blocks[0].attn.W_Q.detach(), copy.model.blocks[0].attn.W_Q.detach()
    for h in range(4):
        s0, s1 = torch.linalg.svdvals(before[h].double()), torch.linalg.svdvals(after[h].double())
        assert torch.allclose(s0, s1, atol=1e-5)
    assert int(torch.linalg.matrix_rank(after[2])) == 2
    assert not torch.allclose(before[2], after[2])


def test_nan_weights_are_refused_with_the_fix() -> None:
    m = model()
    with torch.no_grad():
        m.blocks[1].attn.W_O[0, 0, 0] = float("nan")
    with pytest.raises(FeatureControlsError, match="NaN or infinite weights") as err:
        adapt(m)
    assert "blocks.1.attn.W_O" in str(err.value) and "nan_to_num_" in err.value.fix


def test_the_battery_runs_on_hook_names_with_the_librarys_initialiser() -> None:
    m = model()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (256, 6), generator=g)
    is_low = (torch.rand(256, generator=g) < 0.5).float()
    tokens[:, -1] = torch.where(is_low.bool(), 3, 7)  # the last token's identity: decodable everywhere
    site = "blocks.0.hook_resid_post[-1]"
    battery = Battery(n_weight_seeds=1, run_used=False, n_bootstrap=100, progress=False)
    result = battery.run(m, list(tokens.split(64)), site, {"is_low": is_low})
    (candidate,) = result.candidates
    assert candidate.axes["decodable"].status == "yes"
    reinit = next(c for c in result.settings.weight_controls if c.name == "reinitialised")
    assert any(method.startswith("init_weights (gpt2)") for method in reinit.methods)


def test_a_transformer_bridge_is_read_through_the_model_it_wraps(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    from featurecontrols.adapters.huggingface import HuggingFaceCausalLM
    from featurecontrols.testbeds.text_tasks import encode_causal, make_task
    from featurecontrols.testbeds.toy_causal_lm import word_tokenizer

    tokenizer = word_tokenizer()
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=16
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = bridge_module.TransformerBridge.boot_transformers(str(tmp_path), device="cpu")
    adapter = adapt(bridge)
    assert isinstance(adapter, HuggingFaceCausalLM) and adapter.module is bridge.original_model
    batches, labels, _ = encode_causal(make_task("toy_language", 120, 0), tokenizer, 40)
    with torch.no_grad():  # the bridge's logits are its Hugging Face model's
        torch.testing.assert_close(bridge(batches[0]["input_ids"]), adapter.outputs(batches[0]))
    battery = Battery(n_weight_seeds=1, run_used=False, n_bootstrap=50, progress=False)
    result = battery.run(bridge, batches, "blocks.1.hook_resid_post[-1]", {"filler_um": labels["filler_um"]})
    assert result.candidates[0].axes["decodable"].status == "yes"
    assert all(m.startswith("_init_weights") for m in result.settings.weight_controls[0].methods)
    bridge.compatibility_mode = True
    with pytest.raises(FeatureControlsError, match="compatibility mode"):
        adapt(bridge)


def test_a_transcoders_loss_recovered_splices_it_in_at_the_mlp_output() -> None:
    """A transcoder from ``ln2.hook_normalized`` to ``hook_mlp_out`` with the LM loss: the battery's
    loss recovered is (L_ablated - L_spliced) / (L_ablated - L_clean), each recomputed here with the
    library's own ``run_with_hooks`` (the MLP's output replaced by the transcoder's, or by its mean)."""
    from featurecontrols import Latents
    from featurecontrols.finders import Transcoder

    m = model()
    tokens = torch.randint(0, 50, (128, 8), generator=torch.Generator().manual_seed(1))
    read, write = "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"
    _, cache = m.run_with_cache(tokens, names_filter=[read, write])
    finder = Transcoder(d_sae=16, activation="topk", k=4, n_epochs=5, batch_size=128)
    tc = finder.fit(cache[read].reshape(-1, 32), cache[write].reshape(-1, 32))
    latents = Latents("tc", read, finder=finder, dictionary=tc, writes=write,
                      loss=lambda model, batch: model(batch, return_type="loss"))  # fmt: skip
    battery = Battery(weight_controls=[ReinitialisedWeights()], n_weight_seeds=1, run_used=False,
                      n_bootstrap=50, progress=False)  # fmt: skip
    batches = list(tokens.split(64))
    metrics = battery.run(m, batches, read, [latents]).dictionaries[f"{read}/tc"]["trained"]

    def loss(hook_fn: object = None) -> float:
        hooks = [] if hook_fn is None else [(write, hook_fn)]
        return sum(float(m.run_with_hooks(b, return_type="loss", fwd_hooks=hooks)) for b in batches) / 2

    with torch.no_grad():
        seen: dict[str, torch.Tensor] = {}
        spliced = sum(
            float(m.run_with_hooks(b, return_type="loss", fwd_hooks=[
                (read, lambda h, hook: seen.update(h=h)),
                (write, lambda h, hook: tc.decode(tc.encode(seen["h"].reshape(-1, 32))).reshape(h.shape)),
            ]))
            for b in batches
        ) / 2  # fmt: skip
        mean = cache[write].reshape(-1, 32).mean(0)
        clean, ablated = loss(), loss(lambda h, hook: mean.expand_as(h))
    assert spliced != pytest.approx(clean, rel=1e-3)  # the splice changes the forward pass
    assert metrics["loss_clean"] == pytest.approx(clean, rel=1e-5)
    assert metrics["loss_spliced"] == pytest.approx(spliced, rel=1e-5)
    assert metrics["loss_ablated"] == pytest.approx(ablated, rel=1e-5)
    assert metrics["loss_recovered"] == pytest.approx((ablated - spliced) / (ablated - clean), rel=1e-4)
