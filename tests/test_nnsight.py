"""nnsight (0.8): an NNsight or LanguageModel wrapper is unwrapped to the module it wraps, whatever
that module's library, and the battery gives the numbers of the bare module."""

import warnings

import pytest

nnsight = pytest.importorskip("nnsight")

from featurecontrols import Battery  # noqa: E402
from featurecontrols.adapters import TorchModel, adapt  # noqa: E402
from featurecontrols.adapters.huggingface import HuggingFaceCausalLM  # noqa: E402
from featurecontrols.testbeds import train_planted_residual  # noqa: E402


def test_an_nnsight_wrapper_runs_as_its_module() -> None:
    testbed = train_planted_residual()
    wrapped = nnsight.NNsight(testbed.model)
    adapter = adapt(wrapped)
    assert isinstance(adapter, TorchModel) and adapter.module is testbed.model
    battery = Battery(n_weight_seeds=1, run_used=False, n_bootstrap=50, progress=False)
    features = {"x_6": testbed.features["x_6"]}
    through = battery.run(wrapped, testbed.inputs, testbed.site, features)
    bare = battery.run(testbed.model, testbed.inputs, testbed.site, features)
    assert through.to_dict()["candidates"] == bare.to_dict()["candidates"]
    methods = " ".join(m for c in through.settings.weight_controls for m in c.methods)
    assert "Envoy" not in methods and "NNsight" not in methods


def test_an_nnsight_wrapped_causal_lm_gets_its_adapter() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=8, vocab_size=32)
    lm = transformers.GPT2LMHeadModel(config).eval()
    adapter = adapt(nnsight.NNsight(lm))
    assert isinstance(adapter, HuggingFaceCausalLM) and adapter.module is lm
    assert str(adapter.resolve("blocks.0.hook_resid_post[-1]")) == "transformer.h.0[-1]"


def test_a_language_model_built_around_a_module_runs_as_the_module() -> None:
    transformers = pytest.importorskip("transformers")
    from featurecontrols.testbeds.text_tasks import encode_causal, make_task
    from featurecontrols.testbeds.toy_causal_lm import word_tokenizer

    tokenizer = word_tokenizer()  # LanguageModel(module, tokenizer=...) loads nothing by name
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=16
    )
    lm = transformers.GPT2LMHeadModel(config).eval()
    with warnings.catch_warnings():  # nnsight 0.8 deprecates LanguageModel for TransformersModel
        warnings.simplefilter("ignore")
        wrapped = nnsight.LanguageModel(lm, tokenizer=tokenizer)
    adapter = adapt(wrapped)
    assert isinstance(adapter, HuggingFaceCausalLM) and adapter.module is lm
    batches, labels, _ = encode_causal(make_task("toy_language", 200, 0), tokenizer, 50)
    battery = Battery(n_weight_seeds=1, run_used=False, n_bootstrap=50, progress=False)
    site = "blocks.0.hook_resid_post[-1]"
    through = battery.run(wrapped, batches, site, {"filler_um": labels["filler_um"]})
    bare = battery.run(lm, batches, site, {"filler_um": labels["filler_um"]})
    assert through.to_dict()["candidates"] == bare.to_dict()["candidates"]
