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

from featurecontrols.adapters.interventions import AddVector, applied
from featurecontrols.adapters.sites import Site, call_model, read_activations
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import flat_output
from featurecontrols.measures.steering_vectors import SteeringVectors
from featurecontrols.seeding import generator
from featurecontrols.stats import bootstrap_mean_ci

Forward = Callable[[nn.Module, Any], Any]
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
    forward : ``forward(model, batch)``; defaults to ``sites.call_model``.
    n_bootstrap, confidence, seed : the bootstrap intervals across inputs.
    """

    def __init__(
        self,
        alphas: Sequence[float] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
        target: TargetMetric | None = None,
        log_probs: Callable[[Tensor], Tensor] | None = softmax_log_probs,
        forward: Forward | None = None,
        n_bootstrap: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.alphas = alphas
        self.target = target
        self.log_probs = log_probs
        self.forward = forward
        self.n_bootstrap = n_bootstrap
        self.confidence = confidence
        self.seed = seed

    def fit(
        self,
        model: nn.Module,
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
        parsed = Site.parse(site)
        elsewhere = list(unrelated) if unrelated is not None else list(batches)
        run = self.forward if self.forward is not None else call_model

        def readouts() -> Tensor:
            acts = read_activations(model, batches, [parsed], forward=run)[str(parsed)]
            return acts.double() @ R.T

        def outputs(on: Sequence[Any]) -> Tensor:
            with torch.no_grad():
                return torch.cat([flat_output(run(model, b)) for b in on])

        clean_read = readouts()
        clean_out = outputs(batches) if self.target is not None else None
        clean_lp = self.log_probs(outputs(elsewhere)) if self.log_probs is not None else None
        self.curves_: dict[tuple[str, str], EffectCurve] = {}
        for kind, vectors in steering.vectors_.items():
            for i, name in enumerate(names):
                others = [j for j in range(len(names)) if j != i]
                columns: dict[str, list[Tensor]] = {"readout": [], "off_target": [], "target": [], "kl": []}
                for alpha in self.alphas:
                    with applied(model, [(parsed, AddVector(vectors[i], alpha))]):
                        moved = readouts() - clean_read
                        columns["readout"].append(moved[:, i])
                        columns["off_target"].append(moved[:, others].square().mean(dim=1).sqrt())
                        if self.target is not None and clean_out is not None:
                            delta = self.target(outputs(batches), i) - self.target(clean_out, i)
                            columns["target"].append(delta)
                        if self.log_probs is not None and clean_lp is not None:
                            lp = self.log_probs(outputs(elsewhere))
                            columns["kl"].append((clean_lp.exp() * (clean_lp - lp)).sum(dim=1))
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
