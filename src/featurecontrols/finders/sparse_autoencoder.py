"""Sparse autoencoders (SAEs): ReLU + L1, TopK, BatchTopK and JumpReLU, trained from any batch stream.

With inputs normalised to E||x||^2 = d (x <- s x, s fitted on the first batch; Gao et al. 2024),

    pre   = (x - b_dec) W_enc^T + b_enc                  (n, m) pre-activations
    z     = ReLU(pre)                                    "relu"      (Bricken et al. 2023)
          = ReLU(pre) on the k largest entries per row   "topk"      (Gao et al. 2024)
          = ReLU(pre) on the n k largest of the batch    "batchtopk" (Bussmann et al. 2024); at
            inference z = pre 1[pre > theta], theta an EMA of the smallest kept value
          = pre 1[pre > theta_j]                         "jumprelu"  (Rajamanoharan et al. 2024), one
            learned threshold theta_j = exp(t_j) > 0 per latent
    x_hat = z W_dec + b_dec,  every row of W_dec of unit norm (re-projected after each step)

Loss per example: ||x - x_hat||^2 / d, plus for "relu" l1 sum_j z_j / sqrt(d), for "jumprelu"
l0 sum_j 1[pre_j > theta_j], plus the aux-k loss for dead latents (Gao et al. 2024): a latent that
has not fired for ``dead_after`` tokens is dead; the ``aux_k`` largest dead pre-activations
reconstruct the residual e = x - x_hat, adding aux_coefficient ||e - e_hat||^2 / ||e||^2, which
gives dead latents a gradient towards live structure.

JumpReLU's step has no gradient; its straight-through estimators (Rajamanoharan et al. 2024, eqs.
11-12) use the rectangle kernel K(u) = 1[|u| < 1/2] of bandwidth eps:

    d z_j / d pre_j = 1[pre_j > theta_j]   d z_j / d theta_j = -(theta_j / eps) K((pre_j - theta_j) / eps)
    d H_j / d pre_j = 0                    d H_j / d theta_j = -(1 / eps) K((pre_j - theta_j) / eps)

with H_j = 1[pre_j > theta_j], so the L0 penalty moves only the thresholds, and the reconstruction
moves both.

Frozen baselines (Korznikov et al. 2026, "Sanity checks for sparse autoencoders"): ``frozen="decoder"``
keeps W_dec at its random initialisation (the directions are random; the encoder and biases learn
which to use), ``frozen="encoder"`` keeps W_enc at its random initialisation (the activation pattern
is a thresholded random projection; the decoder and biases learn what to write). Such SAEs score
close to fully trained ones on aggregate metrics; ``controls/dictionary/frozen_baselines.py`` asks
the question latent by latent.

A transcoder (``finders/transcoder.py``) is the same code reading one site and writing another:
``SparseCoder`` holds what both share, x_hat above becomes the written site's y_hat.

Speed: with a k-sparse code the decoder is an ``embedding_bag`` over the active latents, and the
encoder's backward pass is sparse too (only the selected pre-activations carry a gradient), so a
training step costs one dense matmul (the forward pre-activations) plus O(n k d).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Finder, batches_of, check_codes
from featurecontrols.seeding import generator

Activation = Literal["relu", "topk", "batchtopk", "jumprelu"]
_ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
Frozen = Literal["none", "decoder", "encoder"]
_FROZEN = ("none", "decoder", "encoder")


class _SelectedPreactivations(torch.autograd.Function):
    """Pre-activations at chosen (row, latent) pairs, with a backward pass that touches only those.

    Forward returns ``values`` (computed without gradient); backward gives d/dxc, d/dW_enc and
    d/db_enc of sum_t g_t pre[rows_t, cols_t], at O(nnz d) cost instead of a dense (n, m) product.
    """

    @staticmethod
    def forward(
        ctx: Any, xc: Tensor, enc: Tensor, b_enc: Tensor, values: Tensor, code: tuple[Tensor, Tensor, Tensor]
    ) -> Tensor:
        rows, cols, offsets = code
        ctx.save_for_backward(xc, enc, rows, cols, offsets)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor, None, None]:
        xc, enc, rows, cols, offsets = ctx.saved_tensors
        grad_xc = None
        if ctx.needs_input_grad[0]:
            grad_xc = F.embedding_bag(cols, enc, offsets, mode="sum", per_sample_weights=g)
        indices = torch.stack([cols, rows])
        sparse = torch.sparse_coo_tensor(indices, g, (enc.shape[0], xc.shape[0]), check_invariants=False)
        grad_enc = torch.sparse.mm(sparse, xc) if ctx.needs_input_grad[1] else None
        grad_b_enc = torch.zeros(enc.shape[0], dtype=g.dtype, device=g.device).index_add_(0, cols, g)
        return grad_xc, grad_enc, grad_b_enc, None, None


def _selected(
    xc: Tensor, enc: Tensor, b_enc: Tensor, values: Tensor, code: tuple[Tensor, Tensor, Tensor]
) -> Tensor:
    """``_SelectedPreactivations`` with its types."""
    out: Tensor = _SelectedPreactivations.apply(xc, enc, b_enc, values, code)  # type: ignore[no-untyped-call]
    return out


def _rectangle(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """K((pre - theta) / eps) / eps, the kernel of both straight-through estimators."""
    return ((pre - threshold).abs() < bandwidth / 2).to(pre.dtype) / bandwidth


class _JumpReLU(torch.autograd.Function):
    """z = pre 1[pre > theta], with the straight-through gradients of the module docstring."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        grad_threshold = -(threshold * _rectangle(pre, threshold, ctx.bandwidth) * g).sum(0)
        return g * (pre > threshold), grad_threshold, None


class _Step(torch.autograd.Function):
    """1[pre > theta], with a gradient for theta only (module docstring)."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        return None, -(_rectangle(pre, threshold, ctx.bandwidth) * g).sum(0), None


def jump_relu(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """``_JumpReLU`` with its types."""
    out: Tensor = _JumpReLU.apply(pre, threshold, bandwidth)  # type: ignore[no-untyped-call]
    return out


def step(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """``_Step`` with its types."""
    out: Tensor = _Step.apply(pre, threshold, bandwidth)  # type: ignore[no-untyped-call]
    return out


class SparseCoder(Finder):
    """What a sparse autoencoder and a transcoder share: parameters, training and the code.

    A sparse coder reads x (d_in) and writes y_hat (d_out): an SAE writes back its input (y = x), a
    transcoder (``finders/transcoder.py``) another site. Trained with Adam on a stream of batches.

    Parameters
    ----------
    d_sae : number of latents m.
    activation : "topk", "batchtopk", "relu" or "jumprelu" (see the module docstring).
    k : active latents per example (topk; batchtopk on average).
    l1_coefficient : weight of the L1 penalty (relu only).
    l0_coefficient : weight of the L0 penalty (jumprelu only): a latent fires where it removes more
        than this fraction of an example's squared norm / d.
    bandwidth : eps of JumpReLU's straight-through estimators, in normalised units (pre-activations
        of order 1); also the thresholds' initial value. Adam moves log theta by about ``lr`` a step,
        so thresholds need ~ log(theta / eps) / lr steps to settle: at eps = 0.001 (Rajamanoharan et
        al. 2024) and 400 steps on TMS data they stayed below 0.002, hence 0.05.
    lr : Adam learning rate.
    batch_size : examples per step.
    n_epochs : passes over the data (a one-shot iterator allows one).
    dead_after : tokens without firing after which a latent counts as dead (aux-k loss, ``dead_fraction_``).
    aux_k : dead latents used by the aux-k loss (default d // 2); 0 turns the loss off.
    aux_coefficient : weight of the aux-k loss.
    normalise_input : scale inputs so that E||x||^2 = d.
    frozen : "none", or "decoder" / "encoder" to keep that matrix at its random initialisation (the
        frozen baselines of Korznikov et al. 2026; module docstring).
    seed : seed of the initial weights and of the shuffling of a tensor's rows.
    device : where to train ("cpu", "cuda", ...).

    Attributes
    ----------
    encoder_, decoder_ : (m, d_in) encoder rows and (m, d_out) unit-norm decoder rows (in
        normalised units).
    b_enc_, b_dec_ : (m,) and (d_out,) biases; scale_ : the input scale s.
    threshold_ : (m,) thresholds theta_j of batchtopk (all equal) and jumprelu; zeros otherwise.
    n_tokens_ : examples seen; loss_history_ : loss per step; dead_fraction_ : dead at the end.
    """

    def __init__(
        self,
        d_sae: int,
        activation: Activation = "topk",
        k: int = 32,
        l1_coefficient: float = 0.05,
        l0_coefficient: float = 0.01,
        bandwidth: float = 0.05,
        lr: float = 1e-3,
        batch_size: int = 4096,
        n_epochs: int = 1,
        dead_after: int = 100_000,
        aux_k: int | None = None,
        aux_coefficient: float = 1 / 32,
        normalise_input: bool = True,
        frozen: Frozen = "none",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.d_sae = d_sae
        self.activation = activation
        self.k = k
        self.l1_coefficient = l1_coefficient
        self.l0_coefficient = l0_coefficient
        self.bandwidth = bandwidth
        self.lr = lr
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.dead_after = dead_after
        self.aux_k = aux_k
        self.aux_coefficient = aux_coefficient
        self.normalise_input = normalise_input
        self.frozen = frozen
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------------------------------
    # Training

    def _train(self, stream: Iterator[Tensor], d_in: int | None) -> None:
        """Train on ``stream``'s batches: rows x that reconstruct themselves, or, with ``d_in``, rows
        [x | y] of which the first ``d_in`` columns are read and the rest written (a transcoder)."""
        self._check_params()
        first = next(stream, None)  # batches_of checks every batch
        if first is None:
            raise FeatureControlsError(
                f"the {type(self).__name__} got no activations", "pass at least one batch"
            )
        self._initialise(*_parts(first.to(self.device, torch.float32), d_in))
        params = [p for p in (self.encoder_, self.decoder_, self.b_enc_, self.b_dec_) if p.requires_grad]
        if self.activation == "jumprelu":
            params.append(self.log_threshold_)
        optimiser = torch.optim.Adam(params, lr=self.lr)
        since_fired = torch.zeros(self.d_sae, dtype=torch.long, device=self.device)
        self.loss_history_: list[float] = []
        self.n_tokens_ = 0
        for raw in _chain(first, stream):
            x, y = _parts(raw.to(self.device, torch.float32), d_in)
            x, y = x * self.scale_, y * self._target_scale()
            loss, fired = self._loss(x, y, since_fired >= self.dead_after)
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimiser.step()
            if self.decoder_.requires_grad:  # a frozen decoder keeps its unit rows bit for bit
                with torch.no_grad():
                    self.decoder_.div_(self.decoder_.norm(dim=1, keepdim=True).clamp(min=1e-12))
            since_fired += x.shape[0]
            since_fired[fired] = 0
            self.n_tokens_ += x.shape[0]
            self.loss_history_.append(float(loss.detach()))
        for p in params:
            p.requires_grad_(False)
        if self.activation == "jumprelu":
            self.threshold_ = self.log_threshold_.exp()
        self.dead_fraction_ = float((since_fired >= self.dead_after).float().mean())

    def _check_params(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise FeatureControlsError(
                f"unknown SAE activation {self.activation!r}", f"use one of {', '.join(_ACTIVATIONS)}"
            )
        if self.frozen not in _FROZEN:
            raise FeatureControlsError(
                f"unknown frozen part {self.frozen!r}", f"use one of {', '.join(_FROZEN)}"
            )
        if self.activation == "jumprelu" and not (self.bandwidth > 0 and self.l0_coefficient >= 0):
            raise FeatureControlsError(
                f"JumpReLU needs bandwidth > 0 and l0_coefficient >= 0, got {self.bandwidth}, "
                f"{self.l0_coefficient}",
                "use a small positive bandwidth (1e-3) and a non-negative L0 weight",
            )
        if self.d_sae < 1 or self.batch_size < 1 or self.n_epochs < 1:
            raise FeatureControlsError(
                f"d_sae, batch_size and n_epochs must be >= 1, got {self.d_sae}, {self.batch_size}, "
                f"{self.n_epochs}",
                "use positive sizes",
            )
        if self.activation in ("topk", "batchtopk") and not 1 <= self.k <= self.d_sae:
            raise FeatureControlsError(
                f"k must be in [1, d_sae={self.d_sae}], got {self.k}", "choose k <= d_sae"
            )

    def _batches(self, data: Tensor | Iterable[Tensor]) -> Iterator[Tensor]:
        """Every epoch's batches; a tensor's rows are reshuffled each epoch."""
        if isinstance(data, Tensor):
            order = generator(self.seed, "sparse_autoencoder", "shuffle")
            for _ in range(self.n_epochs):
                yield from batches_of(data[torch.randperm(data.shape[0], generator=order)], self.batch_size)
            return
        if self.n_epochs > 1 and iter(data) is data:
            raise FeatureControlsError(
                f"n_epochs={self.n_epochs} needs data that can be iterated again; got a one-shot iterator",
                "pass a tensor or a list of batches, or train for one epoch",
            )
        for _ in range(self.n_epochs):
            yield from batches_of(data, self.batch_size)

    def _initialise(self, x: Tensor, y: Tensor) -> None:
        """Unit-norm random decoder rows, the encoder's from ``_initial_encoder``, b_dec = the batch
        mean of what is written."""
        self.n_features_in_ = x.shape[1]
        self.scale_ = self._scale_of(x)
        rng = generator(self.seed, "sparse_autoencoder", "init")
        decoder = unit_rows(self.d_sae, y.shape[1], rng)
        encoder = self._initial_encoder(decoder, x.shape[1], rng)
        self.encoder_ = encoder.to(self.device, copy=True).requires_grad_(self.frozen != "encoder")
        self.decoder_ = decoder.to(self.device).requires_grad_(self.frozen != "decoder")
        self.b_enc_ = torch.zeros(self.d_sae, device=self.device, requires_grad=True)
        mean = y.float().mean(0) * self._target_scale()
        self.b_dec_ = mean.to(self.device).requires_grad_(True)
        self.threshold_ = torch.zeros(self.d_sae, device=self.device)
        if self.activation == "jumprelu":
            start = torch.full((self.d_sae,), math.log(self.bandwidth), device=self.device)
            self.log_threshold_: Tensor = start.requires_grad_(True)
        self.aux_k_ = y.shape[1] // 2 if self.aux_k is None else self.aux_k

    def _scale_of(self, x: Tensor) -> float:
        """s with E||s x||^2 = d on a batch, or 1 without input normalisation."""
        return math.sqrt(x.shape[1] / float(x.pow(2).sum(1).mean())) if self.normalise_input else 1.0

    def _initial_encoder(self, decoder: Tensor, d_in: int, rng: torch.Generator) -> Tensor:
        """The encoder's initial rows: the decoder's (Gao et al. 2024)."""
        return decoder.clone()

    def _target_scale(self) -> float:
        """The scale of what is written, in which the loss is measured: the input's."""
        return self.scale_

    def _input_bias(self) -> Tensor:
        """What is subtracted from x before encoding: b_dec (an SAE's inputs and outputs share it)."""
        return self.b_dec_

    def _loss(self, x: Tensor, y: Tensor, dead: Tensor) -> tuple[Tensor, Tensor]:
        """The batch loss of writing y from x, and the latents that fired."""
        d = y.shape[1]
        xc = x - self._input_bias()
        if self.activation in ("relu", "jumprelu"):
            pre = torch.addmm(self.b_enc_, xc, self.encoder_.T)
            z, penalty = self._dense_code(pre, d)
            y_hat = z @ self.decoder_ + self.b_dec_
            fired = (z != 0).any(0)
            pre = pre.detach()
        else:
            with torch.no_grad():
                pre = torch.addmm(self.b_enc_, xc, self.encoder_.T)
            code, values = self._select(pre)
            z_values = F.relu(_selected(xc, self.encoder_, self.b_enc_, values, code))
            y_hat = F.embedding_bag(code[1], self.decoder_, code[2], mode="sum", per_sample_weights=z_values)
            y_hat = y_hat + self.b_dec_
            penalty = x.new_zeros(())
            fired = torch.zeros(self.d_sae, dtype=torch.bool, device=x.device)
            fired[code[1][z_values > 0]] = True
        loss = (y - y_hat).pow(2).sum(1).mean() / d + penalty
        if self.aux_k_ > 0 and bool(dead.any()):
            loss = loss + self.aux_coefficient * self._aux_loss(y - y_hat.detach(), xc, pre, dead)
        return loss, fired

    def _dense_code(self, pre: Tensor, d: int) -> tuple[Tensor, Tensor]:
        """ReLU's or JumpReLU's code and its sparsity penalty (L1 / sqrt(d), or L0)."""
        if self.activation == "relu":
            z = F.relu(pre)
            return z, self.l1_coefficient * z.sum(1).mean() / math.sqrt(d)
        theta = self.log_threshold_.exp()
        l0 = step(pre, theta, self.bandwidth).sum(1).mean()
        return jump_relu(pre, theta, self.bandwidth), self.l0_coefficient * l0

    def _select(self, pre: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        """The active (row, latent) pairs of a k-sparse code, as rows, latents and bag offsets."""
        n, m = pre.shape
        if self.activation == "topk":
            values, cols = pre.topk(self.k, dim=1, sorted=False)
            rows = torch.arange(n, device=pre.device).repeat_interleave(self.k)
            offsets = torch.arange(0, n * self.k, self.k, device=pre.device)
            return (rows, cols.flatten(), offsets), values.flatten()
        kept, flat = F.relu(pre).flatten().topk(n * self.k, sorted=False)
        flat, order = flat.sort()
        values = kept[order]
        positive = values > 0
        if bool(positive.any()):
            self.threshold_ = 0.99 * self.threshold_ + 0.01 * values[positive].min()
        rows = torch.div(flat, m, rounding_mode="floor")
        offsets = torch.searchsorted(rows, torch.arange(n, device=pre.device))
        return (rows, flat % m, offsets), values

    def _aux_loss(self, residual: Tensor, xc: Tensor, pre: Tensor, dead: Tensor) -> Tensor:
        """||e - e_hat||^2 / ||e||^2 with e_hat from the aux_k largest dead pre-activations per row."""
        dead_latents = torch.nonzero(dead).flatten()
        k = min(self.aux_k_, dead_latents.numel())
        n = pre.shape[0]
        values, where = pre[:, dead_latents].topk(k, dim=1, sorted=False)
        rows = torch.arange(n, device=pre.device).repeat_interleave(k)
        code = (rows, dead_latents[where].flatten(), torch.arange(0, n * k, k, device=pre.device))
        z = F.relu(_selected(xc.detach(), self.encoder_, self.b_enc_, values.flatten(), code))
        e_hat = F.embedding_bag(code[1], self.decoder_, code[2], mode="sum", per_sample_weights=z)
        return (residual - e_hat).pow(2).sum() / residual.pow(2).sum().clamp(min=1e-12)

    # ------------------------------------------------------------------------------------------
    # Inference

    @property
    def n_latents(self) -> int:
        """Number of latents m, known before fitting."""
        return self.d_sae

    def encode(self, X: Tensor) -> Tensor:
        """Dense codes z, shape (n, m), in normalised units."""
        with torch.no_grad():
            x = self._input(X).to(self.decoder_.device, torch.float32) * self.scale_
            pre = torch.addmm(self.b_enc_, x - self._input_bias(), self.encoder_.T)
            if self.activation == "relu":
                return F.relu(pre)
            if self.activation in ("batchtopk", "jumprelu"):
                return pre * (pre > self.threshold_)
            values, cols = pre.topk(self.k, dim=1)
            return torch.zeros_like(pre).scatter_(1, cols, F.relu(values))

    def decode(self, Z: Tensor) -> Tensor:
        """What the codes write, (Z W_dec + b_dec) / s, shape (n, d_out), in the written site's units."""
        with torch.no_grad():
            Z = check_codes(self, Z, self.d_sae).to(self.decoder_.device, torch.float32)
            return (Z @ self.decoder_ + self.b_dec_) / self._target_scale()


class SparseAutoencoder(SparseCoder):
    """A sparse autoencoder: reads activations and writes them back (module docstring; parameters
    and attributes: :class:`SparseCoder`)."""

    def fit(self, data: Tensor | Iterable[Tensor]) -> SparseAutoencoder:
        """Train on a tensor (n, d) or an iterable of (rows, d) chunks (e.g. ``store.iter_shards``)."""
        self._train(self._batches(data), None)
        return self


def _parts(rows: Tensor, d_in: int | None) -> tuple[Tensor, Tensor]:
    """A batch's read and written parts: x and x itself, or [x | y] split after ``d_in`` columns."""
    return (rows, rows) if d_in is None else (rows[:, :d_in], rows[:, d_in:])


def unit_rows(m: int, d: int, rng: torch.Generator) -> Tensor:
    """m random directions in R^d: Gaussian rows scaled to unit norm."""
    rows = torch.randn(m, d, generator=rng)
    unit: Tensor = rows / rows.norm(dim=1, keepdim=True)
    return unit


def _chain(first: Tensor, rest: Iterator[Tensor]) -> Iterator[Tensor]:
    yield first
    yield from rest
