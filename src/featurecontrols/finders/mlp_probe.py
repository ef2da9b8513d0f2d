"""MLP probes: one independent ReLU network per label (or target) column, all trained at once.

For column j, on standardised activations z = (x - mean) / std,

    h_1 = relu(W_1j^T z + c_1j),   h_l = relu(W_lj^T h_(l-1) + c_lj)  (l = 2..depth),
    output = v_j . h_depth + a_j,

with W_1j = A_j B_j of rank ``rank`` when given (a bottleneck: Hewitt & Liang 2019, "Designing and
interpreting probes with control tasks", limit probe capacity by rank and width). Dropout (rate
``dropout``) follows every hidden layer in training. The loss is the binary cross-entropy averaged
over a minibatch and summed over columns; AdamW (decoupled weight decay on the weight matrices, not
the biases) is elementwise, so every column trains exactly as it would alone. The columns' weights
are stacked, so a step is a few batched matmuls for all of them. Initialisation, minibatches and
dropout masks all come from one generator seeded with ``seed``: the same seed gives the same probe.
``MLPProbe`` reads the output as a logit (binary labels). ``MLPRegression`` reads it as a standardised
real target, (t - mean) / std per column, trains on the squared error instead of the cross-entropy,
and is scored by held-out R^2.

``directions_`` is the mean over the training examples of d output / d x (d logit / d x; d t / d x
for a regression): the probe's best linear read-off, in the units of x.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import BinaryClassifier, Finder, r_squared
from featurecontrols.validation import check_labels, check_targets


class _BatchedMLP(Finder):
    """The networks of the module docstring and their training; subclasses give the loss and read-out.

    Parameters
    ----------
    hidden : width of every hidden layer.
    depth : number of hidden layers (>= 1).
    dropout : dropout rate after each hidden layer during training.
    weight_decay : AdamW's decoupled weight decay on the weight matrices.
    rank : if given, the first layer is a product of (d x rank) and (rank x hidden) matrices.
    steps : optimiser steps.
    lr : AdamW learning rate.
    batch_size : examples per step (drawn with replacement); ``None`` for full-batch steps.
    seed : seeds initialisation, minibatches and dropout.
    """

    def __init__(
        self,
        hidden: int = 128,
        depth: int = 1,
        dropout: float = 0.0,
        weight_decay: float = 0.0,
        rank: int | None = None,
        steps: int = 1000,
        lr: float = 1e-3,
        batch_size: int | None = 256,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.depth = depth
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.rank = rank
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def _train(self, X: Tensor, Y: Tensor, loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        """Train k networks on checked X (n, d) and targets Y (n, k); ``loss(outputs, Y)`` summed."""
        self._check_parameters()
        n, d = X.shape
        k = Y.shape[1]
        self.mean_ = X.mean(dim=0)
        std = X.std(dim=0, correction=0)
        self.scale_ = torch.where(std > 0, std, torch.ones_like(std))  # a constant unit stays 0
        Z = (X - self.mean_) / self.scale_
        generator = torch.Generator(device=X.device).manual_seed(self.seed)
        self.weights_, self.biases_ = _init_network(
            d, k, self.hidden, self.depth, self.rank, generator, X.device
        )
        optimiser = torch.optim.AdamW(
            [
                {"params": self.weights_, "weight_decay": self.weight_decay},
                {"params": self.biases_, "weight_decay": 0.0},
            ],
            lr=self.lr,
        )
        for _ in range(self.steps):
            if self.batch_size is None or self.batch_size >= n:
                zb, yb = Z, Y
            else:
                rows = torch.randint(0, n, (self.batch_size,), generator=generator, device=X.device)
                zb, yb = Z[rows], Y[rows]
            value = loss(self._forward(zb, generator), yb) / zb.shape[0]
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(value)
            optimiser.step()
        for p in [*self.weights_, *self.biases_]:
            p.requires_grad_(False)
        self.directions_ = self._mean_input_gradient(Z) / self.scale_

    def _outputs(self, X: Tensor) -> Tensor:
        """Network outputs (n, k) for activations X."""
        Z = (self._input(X).float() - self.mean_) / self.scale_
        with torch.no_grad():
            return self._forward(Z, None)

    def _check_parameters(self) -> None:
        problems = []
        if self.hidden < 1 or self.depth < 1 or self.steps < 1:
            problems.append(f"hidden={self.hidden}, depth={self.depth}, steps={self.steps} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} must be in [0, 1)")
        if self.weight_decay < 0 or self.lr <= 0:
            problems.append(f"weight_decay={self.weight_decay} must be >= 0 and lr={self.lr} > 0")
        if self.rank is not None and self.rank < 1:
            problems.append(f"rank={self.rank} must be >= 1 (or None for a full-rank first layer)")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} must be >= 1 (or None for full batches)")
        if problems:
            name = type(self).__name__
            raise FeatureControlsError(
                f"invalid {name} parameters: " + "; ".join(problems),
                f"use e.g. {name}(hidden=128, depth=1, dropout=0.0, weight_decay=0.0, rank=None)",
            )

    def _forward(self, Z: Tensor, generator: torch.Generator | None) -> Tensor:
        """Outputs (b, k) for standardised inputs Z (b, d); ``generator`` given means training (dropout).

        Z may also be (k, b, d): a separate input per column (used for input gradients)."""
        k = self.biases_[-1].shape[0]
        if self.rank is None:
            first, rest = self.weights_[0], self.weights_[1:]
        else:
            first, rest = self.weights_[0], self.weights_[2:]
        width = first.shape[1] // k
        if Z.ndim == 2:
            h = (Z @ first).reshape(Z.shape[0], k, width).transpose(0, 1)  # (k, b, width)
        else:
            h = torch.bmm(Z, first.reshape(first.shape[0], k, width).transpose(0, 1))
        if self.rank is not None:
            h = torch.bmm(h, self.weights_[1])
        for layer, bias in enumerate(self.biases_):
            h = h + bias
            if layer == len(self.biases_) - 1:
                break
            h = torch.relu(h)
            if generator is not None and self.dropout > 0:
                keep = torch.rand(h.shape, generator=generator, device=h.device) >= self.dropout
                h = h * keep / (1.0 - self.dropout)
            h = torch.bmm(h, rest[layer])
        return h[:, :, 0].T

    def _mean_input_gradient(self, Z: Tensor, chunk_elements: int = 1 << 22) -> Tensor:
        """Mean over rows of d output_j / d z, shape (k, d), with one copy of the rows per column."""
        k = self.biases_[-1].shape[0]
        n, d = Z.shape
        rows = max(1, chunk_elements // (k * d))
        total = torch.zeros(k, d, device=Z.device)
        for start in range(0, n, rows):
            chunk = Z[start : start + rows].expand(k, -1, -1).clone().requires_grad_(True)
            torch.autograd.backward(self._forward(chunk, None).sum())
            assert chunk.grad is not None
            total += chunk.grad.sum(dim=1)
        return total / n


class MLPProbe(BinaryClassifier, _BatchedMLP):
    """Batched MLP classifier (one network per 0/1 label column), trained on the binary cross-entropy.

    Parameters: those of the module's networks (``hidden``, ``depth``, ``dropout``, ``weight_decay``,
    ``rank``, ``steps``, ``lr``, ``batch_size``, ``seed``); see ``_BatchedMLP``.
    """

    def fit(self, X: Tensor, Y: Tensor) -> MLPProbe:
        """Fit k networks: X (n, d) float, Y (n, k) or (n,) with values in {0, 1}."""
        X = self._fit_input(X).float()
        Y = check_labels(Y, X.shape[0], recode=False).to(X.device)
        self._train(X, Y, lambda logits, y: F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
        return self

    def decision_function(self, X: Tensor) -> Tensor:
        """Logits (n, k); positive means class 1."""
        return self._outputs(X)

    def predict_proba(self, X: Tensor) -> Tensor:
        """P(y = 1 | x), shape (n, k)."""
        return torch.sigmoid(self.decision_function(X))


class MLPRegression(_BatchedMLP):
    """Batched MLP regression (one network per real-valued target column), scored by held-out R^2.

    Each column is standardised for training and mapped back for ``predict``; the loss is the squared
    error. Parameters as for ``MLPProbe``.
    """

    def fit(self, X: Tensor, T: Tensor) -> MLPRegression:
        """Fit k networks: X (n, d) float, T (n, k) or (n,) finite, non-constant real targets."""
        X = self._fit_input(X).float()
        T = check_targets(T, X.shape[0]).float().to(X.device)
        self.target_mean_ = T.mean(dim=0)
        self.target_scale_ = T.std(dim=0, correction=0)
        self._train(
            X,
            (T - self.target_mean_) / self.target_scale_,
            lambda out, t: F.mse_loss(out, t, reduction="sum"),
        )
        self.directions_ = self.directions_ * self.target_scale_[:, None]
        return self

    def predict(self, X: Tensor) -> Tensor:
        """Predicted targets (n, k)."""
        return self._outputs(X) * self.target_scale_ + self.target_mean_

    def score(self, X: Tensor, T: Tensor) -> Tensor:
        """Per-column R^2 (k,) on (X, T)."""
        return r_squared(check_targets(T, X.shape[0]).float().to(self.target_mean_.device), self.predict(X))


def _init_network(
    d: int,
    k: int,
    hidden: int,
    depth: int,
    rank: int | None,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[list[Tensor], list[Tensor]]:
    """Stacked weights and biases for k networks, PyTorch's default ``nn.Linear`` initialisation
    (uniform in +-1/sqrt(fan_in)). The first matrix is (d, k * width) so that one matmul serves every
    column; the others are (k, fan_in, fan_out); biases are (k, 1, fan_out)."""

    def uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        values = (torch.rand(shape, generator=generator, device=device) * 2.0 - 1.0) * bound
        return values.requires_grad_(True)

    weights: list[Tensor] = []
    biases: list[Tensor] = []
    if rank is None:
        weights.append(uniform((d, k * hidden), d))
    else:
        weights.append(uniform((d, k * rank), d))
        weights.append(uniform((k, rank, hidden), rank))
    biases.append(uniform((k, 1, hidden), d))
    for _ in range(depth - 1):
        weights.append(uniform((k, hidden, hidden), hidden))
        biases.append(uniform((k, 1, hidden), hidden))
    weights.append(uniform((k, hidden, 1), hidden))
    biases.append(uniform((k, 1, 1), hidden))
    return weights, biases
