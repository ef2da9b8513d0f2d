"""The finder contract: what every method that finds features must offer.

A finder is a scikit-learn shaped estimator: parameters in ``__init__``, ``fit`` returns ``self``,
learned state ends in ``_``. Supervised finders accept a *batch* of label columns at once, so a
permutation null of 1,000 shuffles is one call, not a loop. A finder never knows which control it
runs under: the controls change its inputs (labels, activations, weights), never the finder.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


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
