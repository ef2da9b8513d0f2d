"""TransformerLens: its HookPoints are ordinary submodules, so ``Site("blocks.0.hook_resid_post")``
resolves like any module path. :class:`TransformerLensModel` lists the hook names as its sites and
calls the model on tokens; its outputs are the next-token logits, compared by KL on the used axis.

Weight controls see the model as TransformerLens builds it (tested against transformer-lens 3.x):
- re-initialised: a fresh ``HookedTransformer(cfg)`` drawn under the copy's seed, so ``init_weights``
  honours ``cfg.init_mode`` and ``cfg.initializer_range`` for every ``W_*`` and the constructor's
  values hold for the rest (LayerNorm gains 1, biases 0); ``cfg.seed`` is cleared first, or every
  copy would be the same draw;
- spectrum-matched: ``W_Q``, ``W_K``, ``W_V`` (heads, d_model, d_head) and ``W_O`` (heads, d_head,
  d_model) are one matrix per head; ``b_*`` (``b_Q`` is (heads, d_head)) are vectors, permuted.
A model with NaN or infinite weights is refused (TransformerLens issue #902: a model built from a
config has been reported with NaNs in unused ``W_O`` entries).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.base import MatrixView, leading_matrix
from featurecontrols.adapters.sites import call_model
from featurecontrols.adapters.torch_model import TorchModel
from featurecontrols.errors import FeatureControlsError
from featurecontrols.seeding import seeded_global_rng

PER_HEAD = ("W_Q", "W_K", "W_V", "W_O")  # (heads, ., .) in TransformerLens; "_W_K" under grouped queries


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
        bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise FeatureControlsError(
                f"{type(module).__name__} has NaN or infinite weights in {len(bad)} parameter(s), "
                f"first {bad[:3]} (a model built from a config has shown NaNs in unused W_O entries)",
                "load or initialise every weight (model.init_weights(), or load_state_dict), or zero the "
                "unused entries: torch.nan_to_num_(param)",
            )

    def site_names(self) -> list[str]:
        return hook_names(self.module)

    def rewrap(self, weights: nn.Module) -> TransformerLensModel:
        return TransformerLensModel(weights)

    def reinitialise(self, module: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        """Every target from a fresh ``type(module)(cfg)`` drawn under ``seed`` (module docstring)."""
        cfg: Any = getattr(module, "cfg", None)
        if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
            return {}  # not a HookedTransformer's config: the caller's fallback draws every target
        mode = str(getattr(cfg, "init_mode", "?"))
        fresh_cfg = dataclasses.replace(cfg, seed=None, init_weights=True, device="cpu")
        with seeded_global_rng(seed, []), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # transformer-lens 3.9 on HookedTransformer
            fresh = dict(type(module)(fresh_cfg).named_parameters())
        methods = {}
        for name, p in targets.items():
            if name in fresh and fresh[name].shape == p.shape:
                p.copy_(fresh[name])
                methods[name] = f"init_weights ({mode})" if ".W_" in f".{name}" else "constructor"
        return methods

    def matrix_view(self, name: str, parameter: Tensor) -> MatrixView | None:
        """Per-head matrices for ``W_Q``, ``W_K``, ``W_V``, ``W_O``; ``b_*`` as vectors."""
        leaf = name.rsplit(".", 1)[-1].lstrip("_")
        if leaf in PER_HEAD and parameter.ndim == 3:
            return MatrixView(*(int(s) for s in parameter.shape))
        if leaf.startswith("b_") or parameter.ndim < 2:
            return None
        return leading_matrix(parameter.shape)
