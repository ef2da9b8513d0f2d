"""Toy Models of Superposition (Elhage et al. 2022, transformer-circuits.pub/2022/toy_model).

Model (tied weights), one instance per feature probability, all trained in parallel::

    h  = W x                  W in R^{m x n}, m < n; site ``hidden`` (batch, instances, m)
    x' = ReLU(W^T h + b)

Data: x_i ~ U[0, 1] with probability p (the instance's feature probability, 1 - sparsity), else 0.
Loss: sum_i I_i (x_i - x'_i)^2, mean over the batch, importance I_i = decay^i. AdamW, Xavier init,
b = 0. The paper's recipe is 10,000 steps of batch 1024 at lr 1e-3 (n = 20, m = 5, 6 instances:
about 44 s on 2 CPU cores); the default here is 3,000 steps (a few seconds), which already shows
the phases at moderate sparsity; see TESTBEDS.md for the full recipe's figures.

Superposition metrics (W_i is column i, the direction of feature i; hat = unit vector):

    norm            ||W_i||                         about 1 if represented, about 0 if dropped
    interference    sum_{j != i} (W_i_hat . W_j)^2
    dimensionality  D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2     (1: own dimension; 1/2: antipodal pair)
    dims/feature    m / ||W||_F^2

Ground truth for one instance at ``hidden``: feature i ("x_i > 0") is a model feature when it is
represented (||W_i|| >= ``represented_norm``): the model writes it into h and reads it back out.
A dropped feature is absent: h carries nothing of it. The feature directions are not orthogonal
in superposition, so probe and steering vectors differ there. ``counterfactuals`` toggles one
feature per input (off where it is on, a fresh U(0, 1] value where it is off), for the used axis
by counterfactual patching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from featurecontrols.errors import FeatureControlsError
from featurecontrols.progress import track
from featurecontrols.seeding import generator
from featurecontrols.testbeds.base import GroundTruth, Testbed


@dataclass(frozen=True)
class ToySuperpositionConfig:
    """The recipe (defaults: n = 20 features in m = 5 dimensions, importance 0.9^i).

    Attributes
    ----------
    n_features, n_hidden : n and m.
    feature_probabilities : p of each instance (one instance per value), 1 = dense.
    importance_decay : I_i = importance_decay^i.
    steps, batch_size, lr, weight_decay : AdamW training (the paper: 10,000 steps).
    instance : which instance the testbed returns (an index into ``feature_probabilities``).
    n_examples : inputs the testbed labels.
    represented_norm : ||W_i|| at or above which feature i counts as represented.
    seed : seed of the initial weights, the training batches and the inputs.
    """

    n_features: int = 20
    n_hidden: int = 5
    feature_probabilities: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)
    importance_decay: float = 0.9
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    instance: int = 1
    n_examples: int = 4000
    represented_norm: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_hidden < self.n_features:
            raise FeatureControlsError(
                f"need 1 <= n_hidden < n_features, got {self.n_hidden} and {self.n_features}",
                "superposition needs fewer dimensions than features, e.g. n_features=20, n_hidden=5",
            )
        if not self.feature_probabilities or not all(0 < p <= 1 for p in self.feature_probabilities):
            raise FeatureControlsError(
                f"feature_probabilities must be non-empty values in (0, 1], got {self.feature_probabilities}",
                "use e.g. (1.0, 0.3, 0.1, 0.03)",
            )
        if not 0 <= self.instance < len(self.feature_probabilities):
            raise FeatureControlsError(
                f"instance {self.instance} is not an index into {len(self.feature_probabilities)} instances",
                f"use 0 to {len(self.feature_probabilities) - 1}",
            )


class ToyModel(nn.Module):
    """Parallel instances of h = W x, x' = ReLU(W^T h + b); inputs and outputs (batch, instances, n)."""

    def __init__(self, n_instances: int, n_features: int, n_hidden: int, rng: torch.Generator) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (n_features + n_hidden))  # Xavier uniform
        self.W = nn.Parameter(
            torch.rand(n_instances, n_hidden, n_features, generator=rng) * 2 * bound - bound
        )
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))
        self.hidden = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.hidden(torch.einsum("imn,bin->bim", self.W, x))
        return torch.relu(torch.einsum("imn,bim->bin", self.W, h) + self.b)

    def instance(self, k: int) -> ToyModel:
        """A one-instance copy of instance k (inputs (batch, 1, n))."""
        n_hidden, n_features = self.W.shape[1:]
        single = ToyModel(1, n_features, n_hidden, torch.Generator())
        with torch.no_grad():
            single.W.copy_(self.W[k : k + 1])
            single.b.copy_(self.b[k : k + 1])
        return single


def sample_inputs(probabilities: Tensor, n: int, n_features: int, rng: torch.Generator) -> Tensor:
    """(n, instances, n_features): each x_i ~ U[0, 1] with its instance's probability, else 0."""
    shape = (n, probabilities.numel(), n_features)
    active = torch.rand(shape, generator=rng) < probabilities[None, :, None]
    return torch.rand(shape, generator=rng) * active


def train_toy_models(
    config: ToySuperpositionConfig = ToySuperpositionConfig(), *, progress: bool = False
) -> ToyModel:
    """Train one instance per feature probability, in parallel (AdamW, importance-weighted MSE)."""
    probabilities = torch.tensor(config.feature_probabilities)
    model = ToyModel(
        len(probabilities), config.n_features, config.n_hidden, generator(config.seed, "tms", "init")
    )
    importance = config.importance_decay ** torch.arange(config.n_features, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = generator(config.seed, "tms", "batches")
    for _ in track(range(config.steps), "training toy models of superposition", enabled=progress):
        x = sample_inputs(probabilities, config.batch_size, config.n_features, rng)
        loss = (importance * (x - model(x)).square()).sum(dim=(1, 2)).mean()
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
    return model


def superposition_metrics(W: Tensor) -> dict[str, Tensor]:
    """Metrics of W (m, n) or (instances, m, n): norm, interference, dimensionality (..., n); dims/feature."""
    W = W.detach().double()
    norms = W.norm(dim=-2)
    unit = W / norms.clamp_min(1e-12)[..., None, :]
    overlaps = (unit.transpose(-1, -2) @ W).square()  # [i, j] = (W_i_hat . W_j)^2
    total = overlaps.sum(dim=-1)
    return {
        "norm": norms,
        "interference": total - overlaps.diagonal(dim1=-2, dim2=-1),
        "dimensionality": norms.square() / total.clamp_min(1e-12),
        "dims_per_feature": W.shape[-2] / W.square().sum(dim=(-2, -1)),
    }


def antipodal_pairs(W: Tensor, represented_norm: float = 0.5, cosine: float = -0.9) -> list[tuple[int, int]]:
    """Pairs (i, j) of represented features of W (m, n) whose directions have cosine below ``cosine``."""
    W = W.detach().double()
    norms = W.norm(dim=0)
    unit = W / norms.clamp_min(1e-12)
    cos = unit.T @ unit
    kept = [i for i in range(W.shape[1]) if norms[i] >= represented_norm]
    return [(i, j) for a, i in enumerate(kept) for j in kept[a + 1 :] if cos[i, j] < cosine]


def train_toy_superposition(
    config: ToySuperpositionConfig = ToySuperpositionConfig(), *, progress: bool = False
) -> Testbed:
    """Train the instances, and label the features of ``config.instance`` at site ``hidden``.

    ``checks`` holds the instance's metrics (represented count, mean D of represented features,
    dims/feature, antipodal pairs) and its reconstruction loss.
    """
    models = train_toy_models(config, progress=progress)
    k = config.instance
    model = models.instance(k)
    W = model.W[0]
    metrics = superposition_metrics(W)
    represented = metrics["norm"] >= config.represented_norm
    rng = generator(config.seed, "tms", "inputs")
    inputs = sample_inputs(torch.tensor(config.feature_probabilities[k : k + 1]), config.n_examples,
                           config.n_features, rng)  # fmt: skip
    features: dict[str, Tensor] = {}
    ground_truth: dict[str, GroundTruth] = {}
    counterfactuals: dict[str, Tensor] = {}
    fresh = 1.0 - torch.rand(inputs.shape, generator=generator(config.seed, "tms", "counterfactuals"))
    for i in range(config.n_features):
        labels = (inputs[:, 0, i] > 0).long()
        if labels.min() == labels.max():
            continue  # a feature never active in the sample cannot be labelled
        features[f"x_{i}"] = labels
        ground_truth[f"x_{i}"] = "model feature" if bool(represented[i]) else "absent"
        toggled = inputs.clone()  # x_i switched off where it is on, on (a fresh U(0, 1] value) where off
        toggled[:, 0, i] = torch.where(labels.bool(), 0.0, fresh[:, 0, i])
        counterfactuals[f"x_{i}"] = toggled
    with torch.no_grad():
        loss = float((inputs - model(inputs)).square().sum(dim=(1, 2)).mean())
    dims = metrics["dimensionality"][represented]
    checks = {
        "feature_probability": config.feature_probabilities[k],
        "n_represented": float(represented.sum()),
        "mean_dimensionality_represented": float(dims.mean()) if dims.numel() else 0.0,
        "dims_per_feature": float(metrics["dims_per_feature"]),
        "n_antipodal_pairs": float(len(antipodal_pairs(W, config.represented_norm))),
        "reconstruction_loss": loss,
    }
    description = (
        f"Toy model of superposition (Elhage et al. 2022): {config.n_features} features in "
        f"{config.n_hidden} dimensions, feature probability {config.feature_probabilities[k]}, "
        f"{config.steps} AdamW steps. x_i (label: x_i > 0) is a model feature when ||W_i|| >= "
        f"{config.represented_norm} (represented in h and read back out), else absent."
    )
    return Testbed(
        name="toy_superposition",
        model=model,
        inputs=inputs,
        site="hidden",
        features=features,
        ground_truth=ground_truth,
        description=description,
        checks=checks,
        counterfactuals=counterfactuals,
    )
