"""Target and off-target effects of steering, as curves over the steering strength alpha.

For each steering vector v_i of feature i (see ``steering_vectors.py``) and each alpha, the site's
activations become h + alpha v_i (an :class:`~featurecontrols.adapters.interventions.AddVector`), and per
input x (bootstrap intervals across inputs, ``stats.bootstrap_mean_ci``):

    read-out    Δ r_i . h(x)                                      the target feature's probe
    off-target  sqrt(mean_{j != i} (Δ r_j . h(x))^2)             the other features' probes (RMS)
    target      Δ metric(f(x), i)                                 an output the feature should drive
    kl          KL(p(. | x) || p_steered(. | x)) on unrelated x   the output distribution elsewhere

with p = exp(log_probs(outputs)) (softmax over the outputs by default; ``bernoulli_log_probs`` for
independent sigmoid outputs). A random vector of the dual vector's norm is the null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters import adapt
from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.interventions import AddVector
from featurecontrols.adapters.sites import Site
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import outputs_under
from featurecontrols.measures.steering_vectors import SteeringVectors
from featurecontrols.seeding import generator
from featurecontrols.stats import bootstrap_mean_ci

TargetMetric = Callable[[Tensor, int], Tensor]
"""(outputs (n, o), feature index i) -> per-example value (n,) that feature i should drive."""


def softmax_log_probs(outputs: Tensor) -> Tensor:
    """log p over the outputs (one categorical distribution per input)."""
    return torch.log_softmax(outputs, dim=-1)


def bernoulli_log_probs(outputs: Tensor) -> Tensor:
    """log p of independent Bernoulli outputs (logits): [log sigmoid(z), log sigmoid(-z)], (n, 2 o)."""
    return torch.cat([nn.functional.logsigmoid(outputs), nn.functional.logsigmoid(-outputs)], dim=-1)


@dataclass
class Curve:
    """Mean over inputs at each alpha, with its bootstrap interval: three (A,) tensors."""

    mean: Tensor
    low: Tensor
    high: Tensor

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "low": self.low.tolist(), "high": self.high.tolist()}


@dataclass
class EffectCurve:
    """The effects of steering one feature along one kind of vector (``target``/``kl`` may be absent)."""

    kind: str
    feature: str
    alphas: Tensor
    readout: Curve
    off_target: Curve
    target: Curve | None
    kl: Curve | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: kind, feature, alphas and every curve present."""
        curves = {
            "readout": self.readout,
            "off_target": self.off_target,
            "target": self.target,
            "kl": self.kl,
        }
        return {
            "kind": self.kind,
            "feature": self.feature,
            "alphas": self.alphas.tolist(),
            **{name: curve.to_dict() for name, curve in curves.items() if curve is not None},
        }


class SteeringEffects:
    """Measure target and off-target effects of every steering vector over a grid of alphas.

    Parameters
    ----------
    alphas : steering strengths, in units of the target probe's movement (vectors are calibrated).
    target : optional metric(outputs, i) -> (n,) of the output feature i should drive.
    log_probs : outputs -> log-probabilities for the KL; ``None`` skips the KL.
    n_bootstrap, confidence, seed : the bootstrap intervals across inputs.
    """

    def __init__(
        self,
        alphas: Sequence[float] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
        target: TargetMetric | None = None,
        log_probs: Callable[[Tensor], Tensor] | None = softmax_log_probs,
        n_bootstrap: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.alphas = alphas
        self.target = target
        self.log_probs = log_probs
        self.n_bootstrap = n_bootstrap
        self.confidence = confidence
        self.seed = seed

    def fit(
        self,
        model: ModelAdapter | nn.Module,
        batches: Sequence[Any],
        site: str | Site,
        steering: SteeringVectors,
        names: Sequence[str],
        unrelated: Sequence[Any] | None = None,
    ) -> SteeringEffects:
        """Fill ``curves_[(kind, name)]`` for every kind of ``steering.vectors_`` and feature name.

        ``unrelated`` are the inputs of the KL (default: ``batches``).
        """
        R = steering.read_off_
        if len(names) != R.shape[0]:
            raise FeatureControlsError(
                f"{len(names)} feature names for {R.shape[0]} steering vectors", "name every feature once"
            )
        if len(self.alphas) == 0:
            raise FeatureControlsError("no alphas were given", "pass alphas=(-1.0, 0.0, 1.0) or similar")
        adapter = adapt(model)
        parsed = adapter.resolve(site)
        elsewhere = list(unrelated) if unrelated is not None else list(batches)
        clean = _Measured.of(adapter, batches, elsewhere, parsed, R, self.target is not None, self.log_probs)
        self.curves_: dict[tuple[str, str], EffectCurve] = {}
        for kind, vectors in steering.vectors_.items():
            for i, name in enumerate(names):
                columns: dict[str, list[Tensor]] = {"readout": [], "off_target": [], "target": [], "kl": []}
                for alpha in self.alphas:
                    with adapter.intervening([(parsed, AddVector(vectors[i], alpha))]):
                        moved = _Measured.of(
                            adapter, batches, elsewhere, parsed, R, clean.outputs is not None, self.log_probs
                        )
                    for quantity, values in clean.effects(moved, i, self.target).items():
                        columns[quantity].append(values)
                curves = {q: self._curve(v, kind, name, q) for q, v in columns.items() if v}
                self.curves_[kind, name] = EffectCurve(
                    kind=kind,
                    feature=name,
                    alphas=torch.tensor(self.alphas, dtype=torch.float64),
                    readout=curves["readout"],
                    off_target=curves["off_target"],
                    target=curves.get("target"),
                    kl=curves.get("kl"),
                )
        return self

    def _curve(self, columns: list[Tensor], kind: str, name: str, quantity: str) -> Curve:
        values = torch.stack(columns, dim=1).double()  # (n, A)
        rng = generator(self.seed, "steering effects", kind, name, quantity)
        low, high = bootstrap_mean_ci(values, self.n_bootstrap, self.confidence, rng)
        return Curve(mean=values.mean(dim=0), low=low, high=high)


@dataclass(frozen=True)
class _Measured:
    """What one forward configuration gives: probe read-outs (n, k), outputs, log-probs elsewhere."""

    readouts: Tensor
    outputs: Tensor | None
    log_probs: Tensor | None

    @classmethod
    def of(
        cls,
        adapter: ModelAdapter,
        batches: Sequence[Any],
        elsewhere: Sequence[Any],
        site: Site,
        R: Tensor,
        with_outputs: bool,
        log_probs: Callable[[Tensor], Tensor] | None,
    ) -> _Measured:
        acts = adapter.activations(batches, [site])[str(site)]
        outputs = (
            torch.cat(outputs_under(adapter, batches, site, [None] * len(batches))) if with_outputs else None
        )
        lp = None
        if log_probs is not None:
            lp = log_probs(
                torch.cat(outputs_under(adapter, elsewhere, site, [None] * len(elsewhere))).double()
            )
        return cls(acts.double() @ R.T, None if outputs is None else outputs.double(), lp)

    def effects(self, moved: _Measured, i: int, target: TargetMetric | None) -> dict[str, Tensor]:
        """Per example: the target probe's movement, the RMS of the others', the target, the KL."""
        delta = moved.readouts - self.readouts
        others = [j for j in range(delta.shape[1]) if j != i]
        out = {"readout": delta[:, i], "off_target": delta[:, others].square().mean(dim=1).sqrt()}
        if target is not None and self.outputs is not None and moved.outputs is not None:
            out["target"] = target(moved.outputs, i) - target(self.outputs, i)
        if self.log_probs is not None and moved.log_probs is not None:
            out["kl"] = (self.log_probs.exp() * (self.log_probs - moved.log_probs)).sum(dim=1)
        return out
