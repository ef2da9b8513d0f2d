"""Sparse parity (Barak et al. 2022, "Hidden progress in deep learning"): a testbed with known used bits.

Construction: x uniform in {-1, +1}^n, y = prod_{i in S} x_i for a hidden set S of size k. A width-1000
ReLU MLP (one hidden layer) is trained with minibatch SGD on the hinge loss max(0, 1 - y f(x)).

Ground truth at the site ``hidden`` (post-ReLU activations; label 1 = value +1):
- model features: ``x_i`` for i in S (the output depends on them) and ``parity`` (the label itself,
  computed by the network and read by the output layer);
- dataset features: ``x_i`` for i not in S. Each is uncorrelated with y alone and in any subset other
  than S, yet decodable from the hidden layer of any network with random first-layer weights.
Independent check (in ``checks``): test accuracy, and the output flip rate when one bit is flipped
(1 for bits in S once solved, about 0 for the others). ``counterfactuals`` holds those flipped inputs
(for ``parity``: the first bit of S flipped), for the used axis by counterfactual patching.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from featurecontrols.pipeline.checkpoint import Checkpoint, state_copy
from featurecontrols.seeding import generator
from featurecontrols.testbeds.base import GroundTruth, Testbed


@dataclass(frozen=True)
class SparseParityConfig:
    """The recipe: (n, k) = (40, 3) solves in about 2k steps (TESTBEDS.md)."""

    n: int = 40
    k: int = 3
    width: int = 1000
    steps: int = 3000
    batch_size: int = 32
    lr: float = 0.1
    n_examples: int = 4000
    seed: int = 0


class SparseParityMLP(nn.Module):
    """x -> hidden = ReLU(fc(x)) -> out(hidden), one scalar logit."""

    def __init__(self, config: SparseParityConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n, config.width)
        self.hidden = nn.ReLU()
        self.out = nn.Linear(config.width, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (m, 1) for inputs x (m, n) in {-1, +1}."""
        logits: Tensor = self.out(self.hidden(self.fc(x)))
        return logits


def _inputs(m: int, n: int, rng: torch.Generator) -> Tensor:
    return 2.0 * torch.randint(0, 2, (m, n), generator=rng).float() - 1.0


def train_sparse_parity(
    config: SparseParityConfig = SparseParityConfig(), checkpoint_every: int = 0
) -> Testbed:
    """Train the MLP on fresh minibatches each step and label its candidate features; with
    ``checkpoint_every`` keep the weights every that many steps (and at the end) as ``checkpoints``,
    each with its hinge loss and accuracy on the testbed's inputs."""
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator(config.seed, "init"))))
    model = SparseParityMLP(config)
    rng = generator(config.seed, "data")
    support = tuple(sorted(torch.randperm(config.n, generator=rng)[: config.k].tolist()))
    optimiser = torch.optim.SGD(model.parameters(), lr=config.lr)
    states: list[tuple[int, dict[str, Tensor]]] = []
    for step in range(config.steps):
        if checkpoint_every and step % checkpoint_every == 0:
            states.append((step, state_copy(model)))
        x = _inputs(config.batch_size, config.n, rng)
        y = x[:, list(support)].prod(dim=1)
        loss = torch.clamp(1 - y * model(x).squeeze(1), min=0).mean()
        optimiser.zero_grad()
        torch.autograd.backward(loss)
        optimiser.step()
    if checkpoint_every:
        states.append((config.steps, state_copy(model)))
    x = _inputs(config.n_examples, config.n, rng)
    y = x[:, list(support)].prod(dim=1)
    flipped = {i: x * (1 - 2 * (torch.arange(config.n) == i)) for i in range(config.n)}  # bit i flipped
    with torch.no_grad():
        pred = model(x).squeeze(1).sign()
        flips = {
            i: (model(flipped[i]).squeeze(1).sign() != pred).float().mean().item() for i in range(config.n)
        }
    features = {f"x_{i}": (x[:, i] > 0).long() for i in range(config.n)}
    features["parity"] = (y > 0).long()
    truth: dict[str, GroundTruth] = {
        f"x_{i}": "model feature" if i in support else "dataset feature" for i in range(config.n)
    }
    truth["parity"] = "model feature"
    counterfactuals = {f"x_{i}": flipped[i] for i in range(config.n)}
    counterfactuals["parity"] = flipped[support[0]]  # flipping one relevant bit flips the parity
    checks = {
        "accuracy": (pred == y).float().mean().item(),
        "flip_rate_support_min": min(flips[i] for i in support),
        "flip_rate_other_max": max(flips[i] for i in range(config.n) if i not in support),
    }
    return Testbed(
        name="sparse_parity",
        model=model,
        inputs=x,
        site="hidden",
        features=features,
        ground_truth=truth,
        description=__doc__ or "",
        checks=checks,
        counterfactuals=counterfactuals,
        checkpoints=tuple(Checkpoint(step, state, _measures(config, state, x, y)) for step, state in states),
    )


def _measures(config: SparseParityConfig, state: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, float]:
    """Hinge loss and accuracy on (x, y) of the MLP with weights ``state``."""
    model = SparseParityMLP(config)
    model.load_state_dict(state)
    with torch.no_grad():
        out = model(x).squeeze(1)
    return {
        "loss": float(torch.clamp(1 - y * out, min=0).mean()),
        "accuracy": float((out.sign() == y).float().mean()),
    }
