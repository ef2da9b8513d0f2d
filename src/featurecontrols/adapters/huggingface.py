"""Hugging Face transformers: TransformerLens-style site names for standard module paths.

``resid_aliases(model)`` maps names like ``blocks.3.hook_resid_post`` to the module path that
holds that tensor in BERT-like (``encoder.layer.{l}``), GPT-2 (``h.{l}``) and Llama-like
(``layers.{l}``) models, with any prefix (``bert.``, ``transformer.``, ``model.``). Only aliases
whose module exists are listed. BERT is post-LayerNorm: its residual stream is read after each
LayerNorm, so ``hook_resid_mid`` there is the output of ``attention.output`` (after its LayerNorm).

:class:`HuggingFaceEncoder` is the adapter of an encoder: a :class:`Readout` reads each site per token
(pad and special tokens dropped) or mean-pooled per sentence, and the model's output is its sentence
embedding. :class:`HuggingFaceCausalLM` is the adapter of an ``AutoModelForCausalLM`` (GPT-2,
Llama-style): sites by alias or module path (a position selector picks the token), next-token logits
as outputs, compared by KL on the used axis. Both re-initialise with the model's own
``_init_weights`` (:func:`init_weights`: ``initializer_range``, LayerNorm 1 and 0, tied weights
stay tied).
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional

from featurecontrols.adapters.sites import Site, call_model, intervene, site_names
from featurecontrols.adapters.torch_model import TorchModel
from featurecontrols.errors import FeatureControlsError
from featurecontrols.seeding import seeded_global_rng

if TYPE_CHECKING:
    from featurecontrols.pipeline.store import ShardedStore


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


def init_weights(model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
    """Re-draw the ``targets`` of a transformers model (a copy) with its own ``_init_weights``, applied
    to every submodule under ``seed``; every other parameter keeps its value. A target the
    initialiser does not write (it is NaN-filled first, so any write shows) keeps its value and is not
    reported: the caller's fallback draws it. A tied weight (GPT-2's ``lm_head`` and ``wte``) is one
    parameter, so it stays tied."""
    init = getattr(model, "_init_weights", None)
    if not callable(init):
        return {}
    target_ids = {id(p) for p in targets.values()}
    kept = [(p, p.detach().clone()) for p in model.parameters() if id(p) not in target_ids]
    before = {name: p.detach().clone() for name, p in targets.items()}
    device = next(iter(targets.values())).device if targets else torch.device("cpu")
    with seeded_global_rng(seed, [device]), torch.no_grad():
        for p in targets.values():
            p.fill_(float("nan"))
        model.apply(init)
        for p, value in kept:
            p.copy_(value)
        written = {name: bool(torch.isfinite(p).all()) for name, p in targets.items()}
        for name, p in targets.items():
            if not written[name]:
                p.copy_(before[name])
    scale = getattr(getattr(model, "config", None), "initializer_range", None)
    method = "_init_weights" + ("" if scale is None else f" (initializer_range {scale:g})")
    return {name: method for name in targets if written[name]}


Level = Literal["token", "sentence"]
READOUT_MASK = "readout_mask"
"""Batch key of the (batch, seq) boolean mask of the tokens a :class:`Readout` reads or pools."""


class Readout(nn.Module):
    """A Hugging Face encoder read at any number of sites, per token or per sentence.

    The batch is the tokenizer output plus ``readout_mask`` (batch, seq). :meth:`tap` adds a site (an
    alias of :func:`resid_aliases` or a module path) and returns where to read it: the ``nn.Identity``
    submodule ``taps.<key>``. In the forward pass the site's tensor h (batch, seq, d) becomes rows:
    ``level="token"``: h at the masked tokens, (n_tokens, d), in row-major order;
    ``level="sentence"``: the mean of h over the masked tokens, (batch, d). The rows pass through the
    tap, so ``featurecontrols.adapters.sites`` reads and intervenes on them as on any site; a change made
    there goes back into h (added to each masked token) before the model goes on. The output is the
    model's sentence embedding: the unit-normalised mean of its last hidden state over the attention
    mask (the sentence-transformers pooling).
    """

    def __init__(self, model: nn.Module, level: Level = "sentence") -> None:
        super().__init__()
        if level not in ("token", "sentence"):
            raise FeatureControlsError(f"level must be 'token' or 'sentence', got {level!r}", "use one")
        self.model = model
        self.level = level
        self.taps = nn.ModuleDict()
        self.tapped: dict[str, Site] = {}
        self.specs: dict[str, str] = {}

    def tap(self, site: str | Site) -> Site:
        """The site that reads ``site`` per token or per sentence (added once, then reused)."""
        resolved = resolve_alias(self.model, site)
        if resolved.position is not None:
            raise FeatureControlsError(
                f"a Readout site selects its tokens with the mask, not a position: {site}",
                f"drop the position: use '{Site(resolved.module, resolved.io)}'",
            )
        key = re.sub(r"\W", "_", str(Site.parse(site)))
        if key not in self.taps:
            self.taps[key] = nn.Identity()
            self.tapped[key] = resolved
            self.specs[key] = str(Site.parse(site))
        return Site(f"taps.{key}")

    def forward(self, readout_mask: Tensor, **inputs: Tensor) -> Tensor:
        mask = readout_mask.bool()
        with ExitStack() as stack:
            for key, site in self.tapped.items():
                stack.enter_context(intervene(self.model, site, partial(self._through, self.taps[key], mask)))
            hidden: Tensor = self.model(**inputs).last_hidden_state
        return functional.normalize(mean_pool(hidden, inputs["attention_mask"]), dim=-1)

    def _through(self, tap: nn.Module, mask: Tensor, h: Tensor) -> Tensor:
        rows = h[mask] if self.level == "token" else mean_pool(h, mask)
        new: Tensor = tap(rows)
        if new is rows:
            return h
        delta = new - rows
        if self.level == "token":
            return h.index_put((mask,), delta, accumulate=True)
        return h + delta[:, None, :] * mask[..., None].to(h.dtype)


class HuggingFaceEncoder(TorchModel):
    """A Hugging Face encoder (BERT, all-MiniLM-L6-v2, ...) read per token or per sentence.

    Sites are the aliases of :func:`resid_aliases` (``blocks.3.hook_resid_post``) or module paths,
    read through a :class:`Readout`; batches are tokenizer outputs plus ``readout_mask``
    (``testbeds/text_tasks.encode`` makes them); the outputs are the sentence embeddings. Call
    ``model.eval()`` first: dropout left on makes every forward pass different.
    """

    def __init__(self, model: nn.Module, level: Level = "sentence") -> None:
        super().__init__(model if isinstance(model, Readout) else Readout(model, level))

    @property
    def readout(self) -> Readout:
        assert isinstance(self.module, Readout)
        return self.module

    def run(self, batch: Any) -> Any:
        if not isinstance(batch, Mapping) or READOUT_MASK not in batch:
            raise FeatureControlsError(
                f"a HuggingFaceEncoder batch is a tokenizer output with {READOUT_MASK!r}, got "
                f"{type(batch).__name__}",
                "make batches with featurecontrols.testbeds.text_tasks.encode(task, tokenizer, batch_size)",
            )
        return call_model(self.module, batch)

    def outputs(self, batch: Any) -> Tensor:
        out: Tensor = self.run(batch)
        return out.detach()

    def resolve(self, site: str | Site) -> Site:
        return self.readout.tap(site)

    def site_names(self) -> list[str]:
        return [*resid_aliases(self.readout.model), *site_names(self.readout.model)]

    @property
    def weights(self) -> nn.Module:
        """The encoder itself: parameters keep the names of the Hugging Face model."""
        return self.readout.model

    def rewrap(self, weights: nn.Module) -> HuggingFaceEncoder:
        """An encoder of the same level around ``weights``, reading the same sites."""
        copy = HuggingFaceEncoder(weights, self.readout.level)
        for spec in self.readout.specs.values():
            copy.resolve(spec)
        return copy

    def reinitialise(self, module: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        return init_weights(module, targets, seed)

    def row_examples(self, batch: Any, tensor: Tensor) -> Tensor:
        """Per token: the sentence of every masked token (row-major); per sentence: one row each."""
        if self.readout.level == "sentence":
            return super().row_examples(batch, tensor)
        return torch.nonzero(batch[READOUT_MASK].bool())[:, 0]


class HuggingFaceCausalLM(TorchModel):
    """A Hugging Face causal LM (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ...): sites by alias
    (``blocks.0.hook_resid_post[-1]``: the last token's residual stream after layer 0) or module path,
    batches of input ids (batch, seq) or tokenizer outputs, next-token logits as outputs (the used axis
    compares their distributions by KL in float32, batch by batch, over the positions a batch's
    ``attention_mask`` keeps). A position selector reads that position of every row, so a batch whose
    ``attention_mask`` marks it as padding in any row is refused: ``[-1]`` wants batches of equal
    length (``text_tasks.encode_causal`` makes them). With
    ``last_token=True`` only the last position's next-token distribution is an output (the prediction
    the sequence ends on; computed alone through ``logits_to_keep=1`` where the model takes it, which
    skips the unembedding of every other position). Call ``model.eval()``.
    """

    def __init__(self, model: nn.Module, last_token: bool = False) -> None:
        super().__init__(
            model, forward=forward, output=_last_logits if last_token else None, output_kind="logits"
        )
        self.last_token = last_token

    def resolve(self, site: str | Site) -> Site:
        return resolve_alias(self.module, site)

    def site_names(self) -> list[str]:
        return [*resid_aliases(self.module), *site_names(self.module)]

    def activations(
        self,
        batches: Iterable[Any],
        sites: Sequence[Site],
        *,
        store: ShardedStore | None = None,
        progress: int | None = None,
    ) -> dict[str, Tensor]:
        """Each site's activations (``ModelAdapter.activations``); a position that is padding is refused."""
        checked = (_unpadded_at(batch, sites) for batch in batches)
        return super().activations(checked, sites, store=store, progress=progress)

    def rewrap(self, weights: nn.Module) -> HuggingFaceCausalLM:
        return HuggingFaceCausalLM(weights, self.last_token)

    def reinitialise(self, module: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        return init_weights(module, targets, seed)


def _unpadded_at(batch: Any, sites: Sequence[Site]) -> Any:
    """``batch``, once every site's position is checked to be a real token in every row."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    for site in sites:
        if site.position is None or not isinstance(mask, Tensor):
            continue
        padded = int((~mask[:, site.position].bool()).sum())
        if padded:
            raise FeatureControlsError(
                f"site {site} reads position {site.position} of every row, but in {padded} row(s) of a "
                "batch that position is padding (attention_mask 0)",
                "batch sequences of equal length (featurecontrols.testbeds.text_tasks.encode_causal)",
            )
    return batch


def _last_logits(model: nn.Module, batch: Any) -> Tensor:
    """The next-token logits at the last position, (rows, 1, vocab)."""
    if isinstance(batch, Tensor):
        batch = {"input_ids": batch}
    _unpadded_at(batch, [Site("", position=-1)])
    takes = "logits_to_keep" in inspect.signature(model.forward).parameters
    logits: Tensor = forward(model, {**batch, "logits_to_keep": 1} if takes else batch).logits
    return logits[:, -1:]


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of h (batch, seq, d) over the positions where mask (batch, seq) is true: (batch, d)."""
    weights = mask.to(h.dtype)[..., None]
    return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
