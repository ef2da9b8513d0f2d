"""Hugging Face transformers: TransformerLens-style site names for standard module paths.

``resid_aliases(model)`` maps names like ``blocks.3.hook_resid_post`` to the module path that
holds that tensor in BERT-like (``encoder.layer.{l}``), GPT-2 (``h.{l}``) and Llama-like
(``layers.{l}``) models, with any prefix (``bert.``, ``transformer.``, ``model.``). Only aliases
whose module exists are listed. BERT is post-LayerNorm: its residual stream is read after each
LayerNorm, so ``hook_resid_mid`` there is the output of ``attention.output`` (after its LayerNorm).

:class:`Readout` wraps an encoder so that one site is read per token (pad and special tokens
dropped) or mean-pooled per sentence, and the model's output is its sentence embedding.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn
from torch.nn import functional

from featurecontrols.adapters.sites import Site, call_model, intervene, site_names
from featurecontrols.errors import FeatureControlsError


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
        "featurecontrols.adapters.sites.site_names(model) for the module paths",
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


Level = Literal["token", "sentence"]
READOUT_MASK = "readout_mask"
"""Batch key of the (batch, seq) boolean mask of the tokens a :class:`Readout` reads or pools."""


class Readout(nn.Module):
    """A Hugging Face encoder read at one site per token or per sentence, at its own site ``"read"``.

    The batch is the tokenizer output plus ``readout_mask`` (batch, seq). At ``site`` (an alias
    of :func:`resid_aliases` or a module path) the tensor h (batch, seq, d) is turned into rows:
    ``level="token"``: h at the masked tokens, (n_tokens, d), in row-major order;
    ``level="sentence"``: the mean of h over the masked tokens, (batch, d). The rows pass through
    the ``nn.Identity`` submodule ``read``, so ``featurecontrols.adapters.sites`` reads and intervenes on
    them as on any site; a change made there goes back into h (added to each masked token) before
    the model goes on. The output is the model's sentence embedding: the unit-normalised mean of
    its last hidden state over the attention mask (the sentence-transformers pooling).
    """

    def __init__(self, model: nn.Module, site: str | Site, level: Level = "sentence") -> None:
        super().__init__()
        if level not in ("token", "sentence"):
            raise FeatureControlsError(f"level must be 'token' or 'sentence', got {level!r}", "use one")
        resolved = resolve_alias(model, site)
        if resolved.position is not None:
            raise FeatureControlsError(
                f"a Readout site selects its tokens with the mask, not a position: {site}",
                f"drop the position: use '{Site(resolved.module, resolved.io)}'",
            )
        self.model = model
        self.site = resolved
        self.level = level
        self.read = nn.Identity()

    def forward(self, readout_mask: Tensor, **inputs: Tensor) -> Tensor:
        mask = readout_mask.bool()
        with intervene(self.model, self.site, lambda h: self._through_read(h, mask)):
            hidden: Tensor = self.model(**inputs).last_hidden_state
        return functional.normalize(mean_pool(hidden, inputs["attention_mask"]), dim=-1)

    def _through_read(self, h: Tensor, mask: Tensor) -> Tensor:
        rows = h[mask] if self.level == "token" else mean_pool(h, mask)
        new: Tensor = self.read(rows)
        if new is rows:
            return h
        delta = new - rows
        if self.level == "token":
            return h.index_put((mask,), delta, accumulate=True)
        return h + delta[:, None, :] * mask[..., None].to(h.dtype)


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of h (batch, seq, d) over the positions where mask (batch, seq) is true: (batch, d)."""
    weights = mask.to(h.dtype)[..., None]
    return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
