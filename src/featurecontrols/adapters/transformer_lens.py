"""TransformerLens: its HookPoints are ordinary submodules, so ``Site("blocks.0.hook_resid_post")``
resolves like any module path. :class:`TransformerLensModel` lists the hook names as its sites and
calls the model on tokens; its outputs are the next-token logits, compared by KL on the used axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from featurecontrols.adapters.sites import call_model
from featurecontrols.adapters.torch_model import TorchModel
from featurecontrols.errors import FeatureControlsError


def hook_names(model: nn.Module) -> list[str]:
    """The names of the model's HookPoints (``model.hook_dict``), in module order."""
    hook_dict = getattr(model, "hook_dict", None)
    if not isinstance(hook_dict, Mapping):
        raise FeatureControlsError(
            f"{type(model).__name__} has no hook_dict, so it is not a TransformerLens HookedTransformer",
            "for other models, list module paths with featurecontrols.adapters.sites.site_names(model)",
        )
    return list(hook_dict)


def forward(model: nn.Module, batch: Any) -> Any:
    """Call a HookedTransformer on a batch: tokens (batch, seq), a string or a list of strings.

    A Mapping is passed as keyword arguments (e.g. ``{"input": tokens, "attention_mask": mask}``).
    Returns what the model returns (logits by default).
    """
    if not isinstance(batch, (Tensor, str, list, Mapping)):
        raise FeatureControlsError(
            f"a TransformerLens batch must be tokens, text or a dict of keyword arguments, "
            f"got {type(batch).__name__}",
            "pass token tensors of shape (batch, seq), e.g. model.to_tokens(texts)",
        )
    return call_model(model, batch)


class TransformerLensModel(TorchModel):
    """A HookedTransformer: hook names as sites, tokens (or text) as batches, logits as outputs."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module, forward=forward, output_kind="logits")
        hook_names(module)  # refuses anything that is not a HookedTransformer

    def site_names(self) -> list[str]:
        return hook_names(self.module)

    def rewrap(self, weights: nn.Module) -> TransformerLensModel:
        return TransformerLensModel(weights)
