"""The finder contract: what every method that finds features must offer.

A finder is a scikit-learn estimator: parameters in ``__init__`` only (``get_params``,
``set_params``, ``sklearn.base.clone`` work through :class:`~featurecontrols.params.Params`), ``fit``
returns ``self``, learned state ends in ``_`` (``n_features_in_`` among it), and predicting before
fitting or at another width raises a clear error. Supervised finders accept a *batch* of label
columns at once, so a permutation null of 1,000 shuffles is one call, not a loop. A finder never
knows which control it runs under: the controls change its inputs (labels, activations, weights),
never the finder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import Params
from featurecontrols.validation import check_activations, check_labels


class Finder(Params):
    """The shared checks of every finder: activations at fit, fitted state and width at predict."""

    n_features_in_: int

    def _fit_input(self, X: Tensor) -> Tensor:
        """Checked activations (n, d) for ``fit``; records ``n_features_in_ = d``."""
        X = check_activations(X)
        self.n_features_in_ = int(X.shape[1])
        return X

    def _input(self, X: Tensor) -> Tensor:
        """Checked activations for a fitted finder: it must be fitted, and X of its width."""
        if not hasattr(self, "n_features_in_"):
            raise FeatureControlsError(
                f"this {type(self).__name__} is not fitted yet",
                f"call {type(self).__name__}(...).fit(X, ...) first",
            )
        X = check_activations(X)
        if X.shape[1] != self.n_features_in_:
            raise FeatureControlsError(
                f"{type(self).__name__} was fitted on width {self.n_features_in_}, got activations of "
                f"width {X.shape[1]}",
                "pass activations from the same site the finder was fitted at",
            )
        return X


@runtime_checkable
class Probe(Protocol):
    """A supervised finder over binary label columns.

    ``fit(X, Y)`` with X of shape (n, d) and Y of shape (n, k) fits k independent probes.
    ``predict(X)`` returns (n, k) predicted labels in {0, 1}; ``score(X, Y)`` returns the (k,)
    per-column accuracy; ``directions_`` is the (k, d) matrix of read-off (probe) vectors.
    """

    directions_: Tensor

    def fit(self, X: Tensor, Y: Tensor) -> Probe: ...

    def predict(self, X: Tensor) -> Tensor: ...

    def score(self, X: Tensor, Y: Tensor) -> Tensor: ...


@runtime_checkable
class Dictionary(Protocol):
    """An unsupervised finder read as a dictionary of directions: an SAE, PCA, or any object with these.

    ``encode(X)`` maps activations (n, d) to codes (n, m); ``decode(Z)`` maps codes back to (n, d).
    An SAE trained elsewhere (SAELens, say) is evaluated as it is, without retraining.
    """

    def encode(self, X: Tensor) -> Tensor: ...

    def decode(self, Z: Tensor) -> Tensor: ...


@runtime_checkable
class UnsupervisedFinder(Dictionary, Protocol):
    """A dictionary that is fitted on activations: ``fit(data)`` takes a tensor (n, d) or an iterable
    of (rows, d) chunks and returns the fitted finder."""

    def fit(self, data: Tensor | Iterable[Tensor]) -> UnsupervisedFinder: ...


def batches_of(data: Tensor | Iterable[Tensor], batch_size: int) -> Iterator[Tensor]:
    """Cut a tensor, or any iterable of (rows, d) chunks (e.g. ``ShardedStore.iter_shards``), into
    float32 batches of ``batch_size`` rows (the last one may be smaller), in order; each batch is
    checked (2-D, finite) with ``check_activations``."""
    chunks = [data] if isinstance(data, Tensor) else data
    carry: list[Tensor] = []
    held = 0
    for chunk in chunks:
        chunk = torch.as_tensor(chunk, dtype=torch.float32)
        start = 0
        while start < chunk.shape[0]:
            take = min(batch_size - held, chunk.shape[0] - start)
            carry.append(chunk[start : start + take])
            held += take
            start += take
            if held == batch_size:
                yield check_activations(torch.cat(carry) if len(carry) > 1 else carry[0])
                carry, held = [], 0
    if carry:
        yield check_activations(torch.cat(carry))


def check_dictionary(dictionary: Dictionary, X: Tensor, d_out: int | None = None) -> int:
    """Check that ``dictionary`` reads activations of X's width and writes ``d_out`` (default: X's
    width, as an SAE does); return its number of latents."""
    d = X.shape[1]
    d_out = d if d_out is None else d_out
    try:
        codes = dictionary.encode(X[:2])
        back = dictionary.decode(codes)
    except RuntimeError as error:  # torch's shape mismatch in a matmul
        raise FeatureControlsError(
            f"{type(dictionary).__name__} cannot encode activations of width {d}: {error}",
            "use a dictionary trained at this site (its input width must equal the site's width)",
        ) from None
    if codes.ndim != 2 or codes.shape[0] != 2 or tuple(back.shape) != (2, d_out):
        raise FeatureControlsError(
            f"{type(dictionary).__name__} maps width-{d} activations to codes {tuple(codes.shape)} and "
            f"back to {tuple(back.shape)}, not (2, m) and (2, {d_out})",
            "use a dictionary trained at this site (its input width must equal the site's width)",
        )
    return int(codes.shape[1])


def check_codes(dictionary: Finder, Z: Tensor, m: int) -> Tensor:
    """Codes (n, m) for a fitted dictionary of m latents; raises before fitting or at another m."""
    if not hasattr(dictionary, "n_features_in_"):
        raise FeatureControlsError(
            f"this {type(dictionary).__name__} is not fitted yet", "call .fit(activations) first"
        )
    if Z.ndim != 2 or Z.shape[1] != m:
        raise FeatureControlsError(
            f"{type(dictionary).__name__} has {m} latents, got codes of shape {tuple(Z.shape)}",
            f"pass codes of shape (n, {m}), e.g. from its encode",
        )
    return Z


def fitted_state(finder: Finder) -> tuple[dict[str, Tensor], dict[str, str]]:
    """A fitted finder's learned state (its attributes ending in ``_``) as tensors and their kinds, for
    a safetensors file: tensors as they are; ints, floats, bools and lists of numbers as tensors."""
    tensors: dict[str, Tensor] = {}
    kinds: dict[str, str] = {}
    for name, value in vars(finder).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        kind = _KINDS.get(type(value))
        if isinstance(value, Tensor):
            tensors[name], kinds[name] = value.detach().cpu().contiguous(), "tensor"
        elif kind is not None:
            tensors[name], kinds[name] = (
                torch.tensor(value, dtype=torch.float64 if kind != "int" else torch.int64),
                kind,
            )
        else:
            raise FeatureControlsError(
                f"{type(finder).__name__}.{name} of type {type(value).__name__} cannot be stored",
                "keep a finder's fitted state in tensors, numbers and lists of numbers",
            )
    return tensors, kinds


_KINDS = {int: "int", float: "float", bool: "bool", list: "list"}


def restore_state(finder: Finder, tensors: dict[str, Tensor], kinds: dict[str, str]) -> Finder:
    """Set the learned state of an unfitted ``finder`` (its parameters as when fitted) from
    :func:`fitted_state`'s output; returns the finder, now fitted."""
    for name, kind in kinds.items():
        t = tensors[name]
        setattr(finder, name, _value(t, kind))
    return finder


def _value(t: Tensor, kind: str) -> object:
    if kind == "tensor":
        return t
    if kind == "list":
        return t.tolist()
    return {"int": int, "float": float, "bool": bool}[kind](t.item())


class BinaryClassifier(Finder):
    """Base of probes with a ``decision_function`` (n, k) whose sign is the predicted class."""

    def decision_function(self, X: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, X: Tensor) -> Tensor:
        """Predicted labels (n, k) in {0, 1}."""
        return (self.decision_function(X) > 0).to(torch.float32)

    def score(self, X: Tensor, Y: Tensor) -> Tensor:
        """Per-column accuracy (k,)."""
        Y = check_labels(Y, X.shape[0], recode=False, both_classes=False).to(X.device)
        return (self.predict(X) == Y).float().mean(dim=0)


def r_squared(T: Tensor, predicted: Tensor) -> Tensor:
    """Per-column coefficient of determination, 1 - sum (t - t_hat)^2 / sum (t - mean t)^2, shape (k,)."""
    residual = ((T - predicted) ** 2).sum(dim=0)
    total = ((T - T.mean(dim=0)) ** 2).sum(dim=0)
    return 1.0 - residual / total.clamp(min=torch.finfo(T.dtype).tiny)
