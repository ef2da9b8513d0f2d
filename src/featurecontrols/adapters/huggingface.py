"""Hugging Face transformers: TransformerLens-style site names for standard module paths.

``resid_aliases(model)`` maps names like ``blocks.3.hook_resid_post`` to the module path that
holds that tensor in BERT-like (``encoder.layer.{l}``), GPT-2 (``h.{l}``) and Llama-like
(``layers.{l}``) models, with any prefix (``bert.``, ``transformer.``, ``model.``). Only aliases
whose module exists are listed. BERT is post-LayerNorm: its residual stream is read after each
LayerNorm, so ``hook_resid_mid`` there is the output of ``attention.output`` (after its LayerNorm).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from featurecontrols.errors import FeatureControlsError
from featurecontrols.sites import Site, call_model, site_names


@dataclass(frozen=True)
class _Family:
    layers: str  # path of the layer list below the prefix
    anchor: str  # a module at the prefix that tells this family apart
    top: dict[str, str]  # alias -> spec below the prefix
    per_layer: dict[str, str]  # hook name -> spec below the layer module


_FAMILIES = (
    _Family(
        layers="encoder.layer",
        anchor="embeddings",
        top={"hook_embed": "embeddings.word_embeddings", "hook_pos_embed": "embeddings.position_embeddings"},
        per_layer={
            "hook_attn_out": "attention.output.dense",
            "hook_resid_mid": "attention.output",
            "hook_mlp_out": "output.dense",
        },
    ),
    _Family(
        layers="h",
        anchor="wte",
        top={"hook_embed": "wte", "hook_pos_embed": "wpe", "ln_final.hook_normalized": "ln_f"},
        per_layer={"hook_attn_out": "attn", "hook_resid_mid": "ln_2:input", "hook_mlp_out": "mlp"},
    ),
    _Family(
        layers="layers",
        anchor="embed_tokens",
        top={"hook_embed": "embed_tokens", "ln_final.hook_normalized": "norm"},
        per_layer={
            "hook_attn_out": "self_attn",
            "hook_resid_mid": "post_attention_layernorm:input",
            "hook_mlp_out": "mlp",
        },
    ),
)


def resid_aliases(model: nn.Module) -> dict[str, str]:
    """TransformerLens-style name -> site spec of the Hugging Face module that holds that tensor.

    Per layer l: ``blocks.{l}.hook_resid_pre`` (the layer's input), ``hook_resid_post`` (its
    output), and where the module names are standard ``hook_attn_out``, ``hook_resid_mid`` and
    ``hook_mlp_out``; once per model ``hook_embed`` (token embeddings) and the like.
    """
    names = site_names(model)
    present = set(names)
    aliases: dict[str, str] = {}
    for family in _FAMILIES:
        layer_path = re.compile(rf"^(?P<prefix>(?:.+\.)?){re.escape(family.layers)}\.(?P<layer>\d+)$")
        for name in names:
            m = layer_path.match(name)
            if m is None or f"{m['prefix']}{family.anchor}" not in present:
                continue
            block = f"blocks.{m['layer']}"
            found = {
                **{alias: f"{m['prefix']}{spec}" for alias, spec in family.top.items()},
                f"{block}.hook_resid_pre": f"{name}:input",
                f"{block}.hook_resid_post": name,
                **{f"{block}.{hook}": f"{name}.{spec}" for hook, spec in family.per_layer.items()},
            }
            for alias, spec in found.items():
                if Site.parse(spec).module in present:
                    aliases.setdefault(alias, spec)
    return aliases


def resolve_alias(model: nn.Module, spec: str | Site) -> Site:
    """The site for ``spec``, which names an alias of :func:`resid_aliases` or a module path.

    A position selector on an alias is kept (``blocks.3.hook_resid_post[-1]``); its io is the
    alias' own (a TransformerLens hook's input and output are the same tensor).
    """
    site = Site.parse(spec)
    aliases = resid_aliases(model)
    if site.module in aliases:
        target = Site.parse(aliases[site.module])
        return Site(target.module, target.io, site.position)
    names = site_names(model)
    if site.module in names:
        return site
    nearest = difflib.get_close_matches(site.module, [*aliases, *filter(None, names)], n=5)
    hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
    raise FeatureControlsError(
        f"{type(model).__name__} has no alias or module named {site.module!r}{hint}",
        "see featurecontrols.adapters.huggingface.resid_aliases(model) for the aliases and "
        "featurecontrols.sites.site_names(model) for the module paths",
    )


def forward(model: nn.Module, batch: Any) -> Any:
    """Call a Hugging Face model: a Mapping (tokenizer output) as keyword args, a tensor as input ids.

    Tensors move to the model's device. Returns the model's output object.
    """
    if not isinstance(batch, (Mapping, Tensor)):
        raise FeatureControlsError(
            f"a Hugging Face batch must be a tokenizer output (dict) or a tensor of input ids, "
            f"got {type(batch).__name__} (positional order differs between architectures)",
            "pass tokenizer(texts, return_tensors='pt', padding=True) or its input_ids",
        )
    return call_model(model, batch)
