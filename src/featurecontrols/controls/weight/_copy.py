"""Machinery shared by the weight controls: validate, copy, choose what to re-draw, check the result.

A weight control supplies only a ``redraw`` method that overwrites, in place, the parameters it is
given and says how it re-drew each one; the model adapter tells it how the library initialises a
parameter and how a tensor factors into matrices. Everything else lives here, once:

- the model is validated and deep-copied; the original is never modified;
- every parameter is handled once, even when tied (several names, one tensor): the tie survives and
  the tensor is re-drawn once, under its first name; the other names are recorded as tied to it;
- parameters matching a ``keep`` glob pattern (under any of their names) and 0-d parameters are left
  as they are;
- randomness comes only from CPU generators seeded by ``seeding.derive_seed(seed, name)``, so the
  result does not depend on, or change, the global RNG state, nor on the order of the parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase

import torch
from torch import nn

from featurecontrols.adapters import adapt
from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.controls.base import RandomisedModel
from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import Params

KEPT = "kept"
KEPT_SCALAR = "kept (scalar)"

Redraw = Callable[[nn.Module, dict[str, nn.Parameter], int, ModelAdapter], dict[str, str]]
"""``redraw(copy, targets, seed, adapter)`` overwrites every target in place and returns its method."""


def randomised_copy(
    adapter: ModelAdapter, seed: int, control: str, keep: Sequence[str], redraw: Redraw
) -> RandomisedModel:
    """Deep-copy the adapter's weights, re-draw their parameters with ``redraw``, record each method."""
    model = adapter.weights
    patterns = (keep,) if isinstance(keep, str) else tuple(keep)
    first_of = _first_names(model)
    kept = {first_of[name] for name in first_of if _matches(name, patterns)}
    _validate(model, list(first_of), kept, patterns)

    randomised = copy.deepcopy(model)
    randomised.zero_grad(set_to_none=True)  # the original's gradients mean nothing for the copy
    params = dict(randomised.named_parameters())
    methods = {name: KEPT for name in kept} | {
        name: KEPT_SCALAR for name, p in params.items() if p.ndim == 0 and name not in kept
    }
    targets = {name: p for name, p in params.items() if name not in methods}
    with torch.no_grad():
        methods |= redraw(randomised, targets, seed, adapter)
        originals = dict(model.named_parameters())
        for name in kept:  # bit-identical even if a module's initialiser reached beyond its own tensors
            params[name].copy_(originals[name])

    bad = [name for name, p in params.items() if not bool(torch.isfinite(p).all())]
    if bad:
        raise FeatureControlsError(
            f"{control} randomisation produced non-finite values in {_listing(bad)}",
            "the dtype cannot hold the re-drawn values; cast the model to float32 first, "
            "or keep these parameters with keep=[...]",
        )
    recorded = {  # every name of every parameter, in model order
        name: methods[first] if name == first else f"{methods[first]} (tied to {first})"
        for name, first in first_of.items()
    }
    return RandomisedModel(adapter=adapter.rewrap(randomised), control=control, seed=seed, methods=recorded)


def _first_names(model: nn.Module) -> dict[str, str]:
    """Map every parameter name, in model order, to the first name of its tensor (tied weights)."""
    first_by_id: dict[int, str] = {}
    return {
        name: first_by_id.setdefault(id(p), name)
        for name, p in model.named_parameters(remove_duplicate=False)
    }


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _validate(model: nn.Module, all_names: list[str], kept: set[str], patterns: tuple[str, ...]) -> None:
    if not all_names:
        raise FeatureControlsError(
            "model has no parameters to randomise",
            "pass the module that holds the weights (a weight control randomises parameters; "
            "buffers and plain tensor attributes are not parameters)",
        )
    unused = [p for p in patterns if not any(fnmatchcase(n, p) for n in all_names)]
    if unused:
        raise FeatureControlsError(
            f"keep pattern(s) {unused} match no parameter name",
            f"use fnmatch patterns over names from model.named_parameters(), e.g. {_listing(all_names, 4)}",
        )
    params = dict(model.named_parameters())
    meta = [n for n, p in params.items() if p.is_meta]
    if meta:
        raise FeatureControlsError(
            f"parameters on the meta device have no values to randomise: {_listing(meta)}",
            "materialise the model first, e.g. model.to_empty(device='cpu') then load its weights "
            "(model.load_state_dict(...))",
        )
    redrawn = {n: p for n, p in params.items() if n not in kept}
    integral = [n for n, p in redrawn.items() if not p.is_floating_point()]
    if integral:
        raise FeatureControlsError(
            f"weight controls re-draw floating-point parameters only; not floating: {_listing(integral)}",
            "keep them with keep=[...] or cast the model to a floating dtype",
        )
    infinite = [n for n, p in redrawn.items() if not bool(torch.isfinite(p).all())]
    if infinite:
        raise FeatureControlsError(
            f"parameters with non-finite values (nan or inf): {_listing(infinite)}",
            "fix the checkpoint, or keep them with keep=[...]",
        )


KEEP_PRESETS: dict[str, tuple[str, ...]] = {
    "embeddings": (
        *("embed.*", "*.embed.*", "*embed_tokens*", "*wte*", "*wpe*", "*W_E", "*W_pos", "*embeddings.*"),
    ),
    "unembeddings": ("unembed.*", "*.unembed.*", "*lm_head*", "*W_U", "*b_U"),
    "norms": ("*norm*", "*ln*", "*LayerNorm*"),
}
"""fnmatch patterns for common parameter names (nn.Module, TransformerLens, Hugging Face) per preset."""


def keep_patterns(
    model: nn.Module,
    presets: Sequence[str] = (),
    layers: Sequence[str] | None = None,
    keep: Sequence[str] = (),
) -> tuple[str, ...]:
    """The ``keep`` argument of any weight control, from presets, a layer choice and extra patterns.

    ``presets``: names in :data:`KEEP_PRESETS` ("embeddings", "unembeddings", "norms"); only their
    patterns that match a parameter are returned, and a preset that matches none raises.
    ``layers``: fnmatch patterns of the parameters to randomise (e.g. ``["blocks.1.*"]``); every
    other parameter is kept. ``keep``: more patterns, passed through.
    """
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    patterns = list(keep)
    for preset in presets:
        if preset not in KEEP_PRESETS:
            raise FeatureControlsError(
                f"unknown keep preset {preset!r}", f"use one of {sorted(KEEP_PRESETS)}"
            )
        matched = [p for p in KEEP_PRESETS[preset] if any(fnmatchcase(n, p) for n in names)]
        if not matched:
            raise FeatureControlsError(
                f"keep preset {preset!r} matches no parameter of {type(model).__name__}",
                f"name the parameters with keep=[...] patterns; the names are {_listing(names, 6)}",
            )
        patterns += matched
    if layers is not None:
        chosen = tuple(layers)
        unmatched = [p for p in chosen if not any(fnmatchcase(n, p) for n in names)]
        if unmatched or not chosen:
            raise FeatureControlsError(
                f"layer pattern(s) {unmatched or chosen} match no parameter name",
                f"use fnmatch patterns over parameter names, e.g. {_listing(names, 4)}",
            )
        patterns += [_literal(n) for n in names if not _matches(n, chosen)]
    return tuple(dict.fromkeys(patterns))


def _literal(name: str) -> str:
    """An fnmatch pattern that matches exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


class WeightControlBase(Params):
    """The options every weight control shares, and its ``randomise``.

    ``keep``: fnmatch patterns of parameters left as they are (e.g. ``"embed.*"``); ``presets``:
    "embeddings", "unembeddings", "norms" (see :data:`KEEP_PRESETS`); ``layers``: patterns of the
    only parameters to randomise (``None``: all). A subclass sets ``name`` and implements ``redraw``.
    """

    name: str

    def __init__(
        self, keep: Sequence[str] = (), presets: Sequence[str] = (), layers: Sequence[str] | None = None
    ) -> None:
        self.keep = keep
        self.presets = presets
        self.layers = layers

    def randomise(self, model: ModelAdapter | nn.Module, seed: int) -> RandomisedModel:
        """Return a randomised deep copy of ``model``; ``model`` itself is not modified."""
        adapter = adapt(model)
        keep = keep_patterns(adapter.weights, self.presets, self.layers, self.keep)
        return randomised_copy(adapter, seed, self.name, keep, self.redraw)

    def redraw(
        self, copy: nn.Module, targets: dict[str, nn.Parameter], seed: int, adapter: ModelAdapter
    ) -> dict[str, str]:
        """Overwrite every target parameter of the copy in place; return how each was re-drawn."""
        raise NotImplementedError
