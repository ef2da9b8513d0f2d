"""Parameters the scikit-learn way: ``__init__`` stores its arguments, ``get_params`` reads them back.

Every finder and control derives from :class:`Params`, so ``get_params`` / ``set_params`` work,
``sklearn.base.clone`` makes an unfitted copy, the ``repr`` shows what differs from the defaults, and
:func:`params_key` turns an object into a stable text that cache keys hash: the class and its
parameters, tensors by content, never a ``vars()`` repr that carries fitted state or memory addresses.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from typing import Any, TypeVar

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError

P = TypeVar("P", bound="Params")


class Params:
    """``get_params``, ``set_params`` and ``__repr__`` from the signature of ``__init__``.

    A subclass stores every ``__init__`` argument unchanged under its own name (scikit-learn's
    contract), keeps learned state in attributes ending in ``_``, and validates its parameters in
    ``fit`` (or wherever it first uses them).
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` parameters by name; with ``deep``, nested ones as ``outer__inner`` too."""
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and isinstance(value, Params):
                out |= {f"{name}__{k}": v for k, v in value.get_params(deep=True).items()}
        return out

    def set_params(self: P, **params: Any) -> P:
        """Set parameters by name (``outer__inner`` reaches a nested object); returns ``self``."""
        names = self._param_names()
        for key, value in params.items():
            outer, _, inner = key.partition("__")
            if outer not in names:
                raise FeatureControlsError(
                    f"{type(self).__name__} has no parameter {outer!r}", f"use one of {names}"
                )
            if inner:
                getattr(self, outer).set_params(**{inner: value})
            else:
                setattr(self, outer, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        shown = [
            f"{name}={getattr(self, name)!r}"
            for name in self._param_names()
            if not _same(getattr(self, name), defaults[name].default)
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


def clone(obj: P) -> P:
    """An unfitted copy of ``obj`` with deep copies of its parameters (``sklearn.base.clone``'s rule)."""
    params = {name: copy.deepcopy(value) for name, value in obj.get_params(deep=False).items()}
    return type(obj)(**params)


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, Tensor) or isinstance(default, Tensor):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError, RuntimeError):
        return False


def params_key(obj: Any) -> str:
    """A stable text for ``obj``: its class and parameters, recursively; tensors by sha256 of content.

    Two objects with the same key compute the same thing, so the key can name a cached result.
    """
    return json.dumps(_describe(obj), sort_keys=True, separators=(",", ":"))


def _describe(obj: Any) -> Any:
    if isinstance(obj, Params):
        params = obj.get_params(deep=False)
        return {"class": _qualname(obj), "params": {k: _describe(v) for k, v in params.items()}}
    if isinstance(obj, Tensor):
        return {"tensor": tensor_digest(obj)}
    if isinstance(obj, (list, tuple)):
        return [_describe(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (torch.device, torch.dtype)):
        return str(obj)
    if callable(obj):
        return {"callable": _qualname(obj)}
    raise FeatureControlsError(
        f"cannot build a cache key from a parameter of type {type(obj).__name__}",
        "give parameters as numbers, strings, tensors, lists or featurecontrols objects",
    )


def _qualname(obj: Any) -> str:
    kind = obj if isinstance(obj, type) or inspect.isroutine(obj) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def tensor_digest(t: Tensor) -> str:
    """sha256 hex digest of a tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    c = t.detach().to("cpu").contiguous()
    h.update(f"{c.dtype} {tuple(c.shape)}\0".encode())
    h.update(c.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()
