"""Model adapters: the only code that knows a model library (contract in ``adapters/base.py``).

- :class:`~featurecontrols.adapters.torch_model.TorchModel`: any ``nn.Module`` (the default).
- :class:`~featurecontrols.adapters.huggingface.HuggingFaceEncoder`: a Hugging Face encoder read per
  token or per sentence at TransformerLens-style site names; its output is the sentence embedding.
- :class:`~featurecontrols.adapters.huggingface.HuggingFaceCausalLM`: a Hugging Face causal LM at the
  same names (a position selector picks the token), its next-token logits compared by KL.
- :class:`~featurecontrols.adapters.transformer_lens.TransformerLensModel`: a HookedTransformer, its
  hook names as sites.

:func:`adapt` wraps a bare module in the adapter its library needs; :data:`ADAPTERS` names them for
configs. No adapter imports its library: each works on the model object it is given.
"""

from __future__ import annotations

from torch import nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.torch_model import TorchModel
from featurecontrols.errors import FeatureControlsError

CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_causal_lm_name(name: str) -> bool:
    """Whether a transformers class or architecture name is a causal LM (``GPT2LMHeadModel``, ...)."""
    return name.endswith(CAUSAL_LM_SUFFIXES)


def adapt(model: ModelAdapter | nn.Module) -> ModelAdapter:
    """``model`` if it is an adapter; a TransformerLens model, a Hugging Face causal LM
    (``...ForCausalLM``, ``...LMHeadModel``) or an nnsight wrapper in its adapter; a TransformerLens
    ``TransformerBridge`` (transformer-lens >= 3) as the Hugging Face model it wraps, read at the same
    TransformerLens names by that model's aliases; any other ``nn.Module`` as a :class:`TorchModel`."""
    if isinstance(model, ModelAdapter):
        return model
    bases = {cls.__name__ for cls in type(model).__mro__}
    if "HookedTransformer" in bases:
        from featurecontrols.adapters.transformer_lens import TransformerLensModel

        return TransformerLensModel(model)
    if hasattr(model, "config") and any(is_causal_lm_name(b) for b in bases):
        from featurecontrols.adapters.huggingface import HuggingFaceCausalLM

        return HuggingFaceCausalLM(model)
    if "TransformerBridge" in bases:  # TransformerLens's bridge around a Hugging Face model
        return adapt(_bridged(model))
    if "Envoy" in bases or "NNsight" in bases:  # nnsight >= 0.4 keeps the module in _module, before in _model
        for attribute in ("_module", "_model"):
            inner = getattr(model, attribute, None)
            if isinstance(inner, nn.Module):
                return adapt(inner)
    if not isinstance(model, nn.Module):
        raise FeatureControlsError(
            f"the model must be a torch.nn.Module or a featurecontrols adapter, got {type(model).__name__}",
            "pass the torch module, or wrap it: featurecontrols.adapters.TorchModel(module, forward=...)",
        )
    return TorchModel(model)


def _bridged(bridge: object) -> nn.Module:
    """The Hugging Face model a TransformerLens ``TransformerBridge`` wraps (``original_model``)."""
    if getattr(bridge, "compatibility_mode", False):
        raise FeatureControlsError(
            "this TransformerBridge is in compatibility mode: it computes with processed weights "
            "(folded LayerNorm, centred writes) that the Hugging Face model it wraps does not hold",
            "pass the bridge before enable_compatibility_mode(), or a HookedTransformer",
        )
    inner = vars(bridge).get("original_model")
    if not isinstance(inner, nn.Module):
        raise FeatureControlsError(
            "this TransformerBridge holds no original_model", "pass the Hugging Face model it was booted from"
        )
    return inner


ADAPTERS: dict[str, str] = {
    "torch": "featurecontrols.adapters.torch_model.TorchModel",
    "huggingface-encoder": "featurecontrols.adapters.huggingface.HuggingFaceEncoder",
    "transformer-lens": "featurecontrols.adapters.transformer_lens.TransformerLensModel",
    "huggingface-causal-lm": "featurecontrols.adapters.huggingface.HuggingFaceCausalLM",
}
"""The adapters by name (their modules are imported only when used)."""

__all__ = ["ADAPTERS", "ModelAdapter", "TorchModel", "adapt", "is_causal_lm_name"]
