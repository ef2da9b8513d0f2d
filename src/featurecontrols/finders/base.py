"""The finder contract: what every method that finds features must offer.

A finder is a scikit-learn shaped estimator: parameters in ``__init__``, ``fit`` returns ``self``,
learned state ends in ``_``. Supervised finders accept a *batch* of label columns at once, so a
permutation null of 1,000 shuffles is one call, not a loop. A finder never knows which control it
runs under: the controls change its inputs (labels, activations, weights), never the finder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.validation import check_activations


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


def check_dictionary(dictionary: Dictionary, X: Tensor) -> int:
    """Check that ``dictionary`` reads and writes activations of X's width; return its number of latents."""
    d = X.shape[1]
    try:
        codes = dictionary.encode(X[:2])
        back = dictionary.decode(codes)
    except RuntimeError as error:  # torch's shape mismatch in a matmul
        raise FeatureControlsError(
            f"{type(dictionary).__name__} cannot encode activations of width {d}: {error}",
            "use a dictionary trained at this site (its input width must equal the site's width)",
        ) from None
    if codes.ndim != 2 or codes.shape[0] != 2 or tuple(back.shape) != (2, d):
        raise FeatureControlsError(
            f"{type(dictionary).__name__} maps width-{d} activations to codes {tuple(codes.shape)} and "
            f"back to {tuple(back.shape)}, not (2, m) and (2, {d})",
            "use a dictionary trained at this site (its input width must equal the site's width)",
        )
    return int(codes.shape[1])


class BinaryClassifier:
    """Mixin for probes with a ``decision_function`` (n, k) whose sign is the predicted class."""

    def decision_function(self, X: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, X: Tensor) -> Tensor:
        """Predicted labels (n, k) in {0, 1}."""
        return (self.decision_function(X) > 0).to(torch.float32)

    def score(self, X: Tensor, Y: Tensor) -> Tensor:
        """Per-column accuracy (k,)."""
        Y = as_label_matrix(Y, X.shape[0]).to(X.device)
        return (self.predict(X) == Y).float().mean(dim=0)


def as_label_matrix(Y: Tensor, n: int) -> Tensor:
    """Labels (n,) or (n, k) of 0/1 as a float (n, k) matrix."""
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise FeatureControlsError(
            f"labels of shape {tuple(Y.shape)} do not match {n} activation rows",
            "give labels of shape (n,) or (n, k) for the same n examples as the activations",
        )
    if not bool(((Y == 0) | (Y == 1)).all()):
        raise FeatureControlsError(
            "probe labels must be 0/1", "encode the two classes as 0 and 1 (featurecontrols.validation)"
        )
    return Y.float()


def check_binary_columns(Y: Tensor, n: int) -> Tensor:
    """``as_label_matrix``, also checking that every column has both classes."""
    Y = as_label_matrix(Y, n)
    positives = Y.sum(dim=0)
    single = torch.nonzero((positives == 0) | (positives == n)).flatten().tolist()
    if single:
        raise FeatureControlsError(
            f"label column(s) {single[:5]} have a single class (all 0 or all 1); a probe cannot be fitted",
            "drop those columns, or add examples of the missing class",
        )
    return Y


def as_target_matrix(T: Tensor, n: int) -> Tensor:
    """Targets (n,) or (n, k) as a finite, non-constant float (n, k) matrix."""
    T = T[:, None] if T.ndim == 1 else T
    if T.ndim != 2 or T.shape[0] != n:
        raise FeatureControlsError(
            f"targets of shape {tuple(T.shape)} do not match {n} activation rows",
            "give targets of shape (n,) or (n, k) for the same n examples as the activations",
        )
    T = T.to(torch.float64) if T.dtype == torch.float64 else T.float()
    if not bool(torch.isfinite(T).all()):
        raise FeatureControlsError(
            f"targets contain {int((~torch.isfinite(T)).sum())} NaN or infinite values",
            "drop the examples without a target from the targets and the activations alike",
        )
    constant = torch.nonzero((T[:1] == T).all(dim=0)).flatten().tolist()
    if constant:
        raise FeatureControlsError(
            f"target column(s) {constant[:5]} are constant: R^2 is undefined",
            "drop those columns; a constant target carries nothing to decode",
        )
    return T


def r_squared(T: Tensor, predicted: Tensor) -> Tensor:
    """Per-column coefficient of determination, 1 - sum (t - t_hat)^2 / sum (t - mean t)^2, shape (k,)."""
    residual = ((T - predicted) ** 2).sum(dim=0)
    total = ((T - T.mean(dim=0)) ** 2).sum(dim=0)
    return 1.0 - residual / total.clamp(min=torch.finfo(T.dtype).tiny)
