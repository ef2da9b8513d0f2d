"""nnsight (0.8): an NNsight wrapper is unwrapped to the module it wraps, whatever that module's
library, and the battery gives the numbers of the bare module."""

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
