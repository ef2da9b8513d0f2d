"""Modular addition (Nanda et al. 2023, "Progress measures for grokking via mechanistic interpretability").

A one-layer transformer reads the tokens ``a b =`` ('=' is token p) and predicts c = (a + b) mod p from
its final position. Trained full-batch with strong weight decay on 30% of the p^2 pairs, it first
memorises, then *groks*: it generalises by computing cos(w_k (a + b)), sin(w_k (a + b)) with
w_k = 2 pi k / p at a few key frequencies k, and reads out c through cos(w_k (a + b - c)).

Recipe (TESTBEDS.md): d_model 128, 4 heads of 32, d_mlp 512, ReLU, no LayerNorm, learned positional
embedding, untied embed/unembed, no attention biases; AdamW lr 1e-3, betas (0.9, 0.98), 10-step
linear warm-up, cross-entropy in float64 on the final position. ``ModularAdditionConfig()`` is
p = 53 with weight decay 5 (the shipped run passes 99% test accuracy at step 3,200, TESTBEDS.md
measured about 4,800); ``ModularAdditionConfig.paper()`` is the paper's p = 113 with weight decay 1
(about 10,400 steps). Only the path to the final position is computed, so every site after
attention holds the '=' position alone (n, width).

Module paths follow TransformerLens: ``embed``, ``pos_embed``, ``blocks.0.attn``,
``blocks.0.hook_resid_mid``, ``blocks.0.mlp``, ``blocks.0.mlp.hook_post`` (post-ReLU neurons),
``blocks.0.hook_resid_post``, ``unembed``; parameters ``embed.W_E``, ``blocks.0.mlp.W_in``, ...

The shipped checkpoint (p = 53) is ``checkpoints/modular_addition_p53.safetensors`` with its config,
training history and key frequencies in ``modular_addition_p53.json``. Regenerate it with::

    python -m featurecontrols.testbeds.modular_addition --out src/featurecontrols/testbeds/checkpoints

(6,000 steps; 6 minutes here on one thread of a shared CPU). Bit-identical weights need the same torch
build and CPU kernels: float differences as small as reordering the attention's matmuls change the
trajectory, and so which key frequencies survive (another run here found {1, 15, 26}).

Ground truth of :func:`modular_addition_testbed` (all p^2 inputs; label 1 where the function is > 0
or the predicate holds) depends on the site; the testbed takes one of two:

``site="blocks.0.mlp.hook_post"`` (the neurons at '='; the default)
- model features: cos/sin(w_k (a + b)) at the key frequencies. The MLP computes them (the restricted
  loss matches the train loss; a random network cannot compute them) and W_L = W_out W_U reads them.
- dataset features: cos/sin(w a), cos/sin(w b) at key and non-key frequencies, a mod 2, b mod 2,
  a < p/2, b < p/2 and (a - b) mod p < p/2. Given c = (a + b) mod p, each of a, b and a - b is
  uniform on Z_p, so a model that outputs c (test accuracy about 1) uses none of them from here,
  while the neurons of any network carry functions of its input tokens.
- left out: cos/sin(w (a + b)) at non-key frequencies. They are functions of c, which the model
  computes, so a probe reads them off its neurons (about 0.9 for w_2 through the ReLU's harmonics),
  yet they are no part of its Fourier algorithm: neither label fits.

``site="embed[0]"`` (the embedding of a; the worked example of DESIGN.md)
- model features: cos/sin(w_k a) at the key frequencies: removing them from the embedding destroys
  the accuracy (``checks``).
- dataset features: cos/sin(w a) at non-key frequencies, a mod 2, a < p/2. With d_model >= p every
  function of a token is linearly decodable from any embedding; removing a non-key frequency leaves
  the accuracy intact. Only interventions separate key from non-key here.
- absent: cos/sin(w_k b) and cos/sin(w_k (a + b)) at the key frequencies, b mod 2, b < p/2 and
  (a - b) mod p < p/2: each is independent of a, so nothing in a's embedding predicts it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featurecontrols.adapters.interventions import ProjectOut, applied, site_tensor
from featurecontrols.atomic import write_bytes, write_json
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.checkpoint import Checkpoint, state_copy
from featurecontrols.progress import track
from featurecontrols.seeding import generator
from featurecontrols.testbeds import grokking_measures as gm
from featurecontrols.testbeds.base import GroundTruth, Testbed

CHECKPOINTS = Path(__file__).parent / "checkpoints"
FORMAT = "featurecontrols.modular_addition/1"
NEURONS = "blocks.0.mlp.hook_post"
EMBED_A = "embed[0]"


@dataclass(frozen=True)
class ModularAdditionConfig:
    """The recipe. Defaults: p = 53, weight decay 5, 6,000 full-batch steps (the shipped run groks by 3,200).

    Attributes
    ----------
    p : the modulus, an odd prime; inputs are ``a b =`` with '=' the token p.
    d_model, n_heads, d_head, d_mlp : widths of the one-layer transformer.
    train_fraction : share of the p^2 pairs (shuffled with ``seed``) in the training set.
    lr, betas, weight_decay : AdamW (decoupled weight decay); lr warms up linearly over ``warmup_steps``.
    steps : full-batch training steps.
    seed : seed of the initial weights and of the train/test split.
    """

    p: int = 53
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    train_fraction: float = 0.3
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 5.0
    warmup_steps: int = 10
    steps: int = 6000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.p < 3 or any(self.p % d == 0 for d in range(2, math.isqrt(self.p) + 1)):
            raise FeatureControlsError(f"p must be an odd prime, got {self.p}", "use p = 53 or p = 113")
        if not 0 < self.train_fraction < 1:
            raise FeatureControlsError(
                f"train_fraction must be in (0, 1), got {self.train_fraction}", "use 0.3 as in the paper"
            )
        if min(self.d_model, self.n_heads, self.d_head, self.d_mlp, self.steps, self.warmup_steps) < 1:
            raise FeatureControlsError(
                "widths, steps and warmup_steps must be positive", "start from ModularAdditionConfig()"
            )

    @classmethod
    def paper(cls) -> ModularAdditionConfig:
        """The paper's main run: p = 113, weight decay 1, 40,000 steps (groks after about 10,400)."""
        return cls(p=113, weight_decay=1.0, steps=40_000)

    @classmethod
    def from_dict(cls, fields: object) -> ModularAdditionConfig:
        """The config from its JSON form (``dataclasses.asdict``), with its types checked."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, dict) or set(fields) != names:
            got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise FeatureControlsError(
                f"a modular-addition config needs exactly the fields {sorted(names)}, got {got}",
                "regenerate the checkpoint with: python -m featurecontrols.testbeds.modular_addition",
            )

        def number(name: str, value: Any) -> bool:
            real = name in {"train_fraction", "lr", "weight_decay", "betas"}
            return not isinstance(value, bool) and isinstance(value, (int, float) if real else int)

        values = dict(fields)
        betas = values["betas"]
        bad = [n for n in sorted(names - {"betas"}) if not number(n, values[n])]
        if not (isinstance(betas, list) and len(betas) == 2 and all(number("betas", x) for x in betas)):
            bad.append("betas")
        if bad:
            raise FeatureControlsError(
                f"config field(s) {bad} have the wrong type in {fields}",
                "regenerate the checkpoint with: python -m featurecontrols.testbeds.modular_addition",
            )
        values["betas"] = (float(betas[0]), float(betas[1]))
        return cls(**values)


# ----------------------------------------------------------------------------------------------
# The model


def _normal_(weight: Tensor, std: float, rng: torch.Generator | None) -> None:
    with torch.no_grad():
        weight.normal_(0.0, std, generator=rng)


class Embed(nn.Module):
    """Token embedding W_E (p + 1, d_model)."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(config.p + 1, config.d_model))
        self.reset_parameters(rng)

    def reset_parameters(self, rng: torch.Generator | None = None) -> None:
        """W_E ~ N(0, 1 / d_model)."""
        _normal_(self.W_E, self.W_E.shape[1] ** -0.5, rng)

    def forward(self, tokens: Tensor) -> Tensor:
        """(n, n_ctx) tokens -> (n, n_ctx, d_model). ``F.embedding``, not ``W_E[tokens]``: indexing's
        backward pass accumulates with threads in any order on CPU, so training was not reproducible."""
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    """Learned positional embedding W_pos (n_ctx = 3, d_model)."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(3, config.d_model))
        self.reset_parameters(rng)

    def reset_parameters(self, rng: torch.Generator | None = None) -> None:
        """W_pos ~ N(0, 1 / d_model)."""
        _normal_(self.W_pos, self.W_pos.shape[1] ** -0.5, rng)

    def forward(self, tokens: Tensor) -> Tensor:
        """(n, n_ctx) tokens -> (n_ctx, d_model), broadcast over the batch."""
        return self.W_pos[: tokens.shape[1]]


class Attention(nn.Module):
    """Multi-head attention without biases, from the final position only: (n, n_ctx, d) -> (n, d)."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None) -> None:
        super().__init__()
        h, d, e = config.n_heads, config.d_model, config.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, e))
        self.W_K = nn.Parameter(torch.empty(h, d, e))
        self.W_V = nn.Parameter(torch.empty(h, d, e))
        self.W_O = nn.Parameter(torch.empty(h, e, d))
        self.hook_pattern = nn.Identity()
        self.reset_parameters(rng)

    def reset_parameters(self, rng: torch.Generator | None = None) -> None:
        """Every weight ~ N(0, 1 / d_model)."""
        for weight in (self.W_Q, self.W_K, self.W_V, self.W_O):
            _normal_(weight, self.W_Q.shape[1] ** -0.5, rng)

    def forward(self, resid: Tensor) -> Tensor:
        q = torch.einsum("nd,hde->nhe", resid[:, -1], self.W_Q)
        k = torch.einsum("ncd,hde->nhce", resid, self.W_K)
        v = torch.einsum("ncd,hde->nhce", resid, self.W_V)
        scores = torch.einsum("nhe,nhce->nhc", q, k) / math.sqrt(q.shape[-1])
        pattern = self.hook_pattern(scores.softmax(dim=-1))  # (n, heads, n_ctx)
        z = torch.einsum("nhc,nhce->nhe", pattern, v)
        return torch.einsum("nhe,hed->nd", z, self.W_O)


class MLP(nn.Module):
    """ReLU MLP with biases: resid (n, d) -> hook_post = ReLU(resid W_in + b_in) -> post W_out + b_out."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(config.d_model, config.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(config.d_mlp))
        self.W_out = nn.Parameter(torch.empty(config.d_mlp, config.d_model))
        self.b_out = nn.Parameter(torch.zeros(config.d_model))
        self.hook_post = nn.Identity()  # the neurons: TransformerLens' blocks.0.mlp.hook_post
        self.reset_parameters(rng)

    def reset_parameters(self, rng: torch.Generator | None = None) -> None:
        """Weights ~ N(0, 1 / d_model), biases 0."""
        for weight in (self.W_in, self.W_out):
            _normal_(weight, self.W_in.shape[0] ** -0.5, rng)
        with torch.no_grad():
            self.b_in.zero_()
            self.b_out.zero_()

    def forward(self, resid: Tensor) -> Tensor:
        post = self.hook_post(F.relu(resid @ self.W_in + self.b_in))
        out: Tensor = post @ self.W_out + self.b_out
        return out


class Block(nn.Module):
    """resid_mid = resid[-1] + attn(resid); resid_post = resid_mid + mlp(resid_mid), at '=' only."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None) -> None:
        super().__init__()
        self.attn = Attention(config, rng)
        self.hook_resid_mid = nn.Identity()
        self.mlp = MLP(config, rng)
        self.hook_resid_post = nn.Identity()

    def forward(self, resid: Tensor) -> Tensor:
        mid = self.hook_resid_mid(resid[:, -1] + self.attn(resid))
        post: Tensor = self.hook_resid_post(mid + self.mlp(mid))
        return post


class Unembed(nn.Module):
    """Unembedding W_U (d_model, p), no bias: the '=' token is never an answer, so it has no logit."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(config.d_model, config.p))
        self.reset_parameters(rng)

    def reset_parameters(self, rng: torch.Generator | None = None) -> None:
        """W_U ~ N(0, 1 / d_vocab) with d_vocab = p + 1."""
        _normal_(self.W_U, (self.W_U.shape[1] + 1) ** -0.5, rng)

    def forward(self, resid: Tensor) -> Tensor:
        logits: Tensor = resid @ self.W_U
        return logits


class ModularAdditionTransformer(nn.Module):
    """One-layer transformer: tokens ``a b =`` (n, 3) -> logits (n, p) for c = (a + b) mod p."""

    def __init__(self, config: ModularAdditionConfig, rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.embed = Embed(config, rng)
        self.pos_embed = PosEmbed(config, rng)
        self.blocks = nn.ModuleList([Block(config, rng)])
        self.unembed = Unembed(config, rng)

    def forward(self, tokens: Tensor) -> Tensor:
        resid = self.embed(tokens) + self.pos_embed(tokens)
        for block in self.blocks:
            resid = block(resid)
        logits: Tensor = self.unembed(resid)
        return logits


# ----------------------------------------------------------------------------------------------
# Data and progress measures


def all_pairs(p: int) -> tuple[Tensor, Tensor]:
    """Tokens ``a b =`` (p^2, 3) for all pairs, a-major (row a p + b), and the answers (a + b) mod p."""
    a, b = torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)
    return torch.stack([a, b, torch.full_like(a, p)], dim=1), (a + b) % p


def train_indices(config: ModularAdditionConfig) -> Tensor:
    """Rows of :func:`all_pairs` in the training set: the first ``train_fraction`` of a seeded shuffle."""
    order = torch.randperm(config.p**2, generator=generator(config.seed, "modular_addition", "split"))
    return order[: int(config.train_fraction * config.p**2)]


def _loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy in float64: in float32 it spikes once the train loss nears 1e-7."""
    return F.cross_entropy(logits.double(), labels)


@dataclass(frozen=True)
class ProgressMeasures:
    """The paper's progress measures at one step (on all p^2 inputs; see ``grokking_measures``)."""

    step: int
    train_loss: float
    test_loss: float
    train_accuracy: float
    test_accuracy: float
    key_frequencies: tuple[int, ...]
    restricted_loss: float
    excluded_loss: float
    gini_embed: float
    gini_neuron_logits: float
    sum_squared_weights: float


@torch.no_grad()
def progress_measures(
    model: ModularAdditionTransformer, step: int = 0, keys: Sequence[int] | None = None
) -> ProgressMeasures:
    """Losses, accuracies, key frequencies, restricted/excluded loss, Gini coefficients, sum of squares.

    The restricted and excluded losses keep or remove ``keys`` (default: the model's own key
    frequencies; over training, Nanda et al. use the final model's)."""
    config = model.config
    p = config.p
    tokens, labels = all_pairs(p)
    train = train_indices(config)
    test = torch.ones(p**2, dtype=torch.bool)
    test[train] = False
    logits = model(tokens).double()
    correct = logits.argmax(dim=1) == labels
    own = gm.key_frequencies(site_tensor(model, NEURONS, tokens), p)
    keys = list(own) if keys is None else list(keys)
    W_L = model.get_parameter("blocks.0.mlp.W_out") @ model.unembed.W_U
    return ProgressMeasures(
        step=step,
        train_loss=float(_loss(logits[train], labels[train])),
        test_loss=float(_loss(logits[test], labels[test])),
        train_accuracy=float(correct[train].double().mean()),
        test_accuracy=float(correct[test].double().mean()),
        key_frequencies=tuple(own),
        restricted_loss=gm.restricted_loss(logits, labels, p, keys),
        excluded_loss=gm.excluded_loss(logits, labels, p, keys, train),
        gini_embed=gm.gini(gm.embedding_fourier_norms(model.embed.W_E[:p], p)),
        gini_neuron_logits=gm.gini(gm.neuron_logit_fourier_norms(W_L, p)),
        sum_squared_weights=gm.sum_of_squared_weights(list(model.parameters())),
    )


# ----------------------------------------------------------------------------------------------
# Training, saving and loading


@dataclass
class ModularAdditionRun:
    """A trained model, its recipe and its progress measures every ``log_every`` steps (and at the end);
    ``checkpoints``: its weights every ``checkpoint_every`` steps, where training kept them."""

    config: ModularAdditionConfig
    model: ModularAdditionTransformer
    history: list[ProgressMeasures]
    training_seconds: float
    checkpoints: tuple[Checkpoint, ...] = ()

    @property
    def key_frequencies(self) -> tuple[int, ...]:
        """The key frequencies of the trained model (its last progress measures)."""
        return self.history[-1].key_frequencies


def train_modular_addition(
    config: ModularAdditionConfig = ModularAdditionConfig(),
    *,
    log_every: int = 100,
    progress: bool = True,
    checkpoint_every: int = 0,
) -> ModularAdditionRun:
    """Train full-batch on the training pairs, recording :func:`progress_measures` every ``log_every`` steps;
    with ``checkpoint_every``, keep the weights every that many steps (and at the end), each with
    :func:`series_measures` against the final model's key frequencies.

    Seeded (initialisation and split); yet two runs of the default config on one 2-core machine
    have differed (README, "Modular addition across grokking").
    """
    if log_every < 1 or checkpoint_every < 0:
        raise FeatureControlsError(
            f"log_every must be at least 1 and checkpoint_every at least 0, got {log_every}, "
            f"{checkpoint_every}",
            "use log_every=100, and checkpoint_every=0 (none) or a number of steps",
        )
    model = ModularAdditionTransformer(config, generator(config.seed, "modular_addition", "init"))
    tokens, labels = all_pairs(config.p)
    train = train_indices(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / config.warmup_steps, 1.0))
    history, states = [], []
    start = time.perf_counter()
    for step in track(range(config.steps), f"training modular addition (p = {config.p})", enabled=progress):
        if step % log_every == 0:
            history.append(progress_measures(model, step))
        if checkpoint_every and step % checkpoint_every == 0:
            states.append((step, state_copy(model)))
        loss = _loss(model(tokens[train]), labels[train])
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        warmup.step()
    history.append(progress_measures(model, config.steps))
    seconds = time.perf_counter() - start
    if checkpoint_every:
        states.append((config.steps, state_copy(model)))
    keys = history[-1].key_frequencies
    checkpoints = tuple(Checkpoint(s, state, series_measures(config, state, keys)) for s, state in states)
    return ModularAdditionRun(config, model, history, seconds, checkpoints)


def series_measures(
    config: ModularAdditionConfig, state: dict[str, Tensor], keys: Sequence[int]
) -> dict[str, float]:
    """A checkpoint's progress on the series' time axis: log10 of the train, test, restricted and
    excluded losses (restricted and excluded with the final ``keys``, as in Nanda et al.'s Figure 7),
    and the test accuracy."""
    model = ModularAdditionTransformer(config)
    model.load_state_dict(state)
    m = progress_measures(model.eval(), keys=keys)
    losses = {
        "train": m.train_loss,
        "test": m.test_loss,
        "restricted": m.restricted_loss,
        "excluded": m.excluded_loss,
    }
    return {f"log10 {k} loss": math.log10(max(v, 1e-300)) for k, v in losses.items()} | {
        "test accuracy": m.test_accuracy
    }


def checkpoint_paths(directory: str | os.PathLike[str], p: int) -> tuple[Path, Path]:
    """(weights, metadata) paths: ``modular_addition_p{p}.safetensors`` and ``.json`` in ``directory``."""
    stem = Path(directory) / f"modular_addition_p{p}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_modular_addition(run: ModularAdditionRun, directory: str | os.PathLike[str]) -> Path:
    """Write the weights (safetensors) and then the JSON that names their sha256, each atomically.

    The JSON is written last, so a half-done save never passes :func:`load_modular_addition`.
    """
    weights_path, meta_path = checkpoint_paths(directory, run.config.p)
    tensors = {name: t.detach().contiguous() for name, t in run.model.state_dict().items()}
    data = safetensors.torch.save(tensors)
    write_bytes(weights_path, data)
    meta = {
        "format": FORMAT,
        "config": dataclasses.asdict(run.config),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "training_seconds": round(run.training_seconds, 1),
        "torch_version": torch.__version__,
        "history": [dataclasses.asdict(m) for m in run.history],
    }
    write_json(meta_path, meta)
    return weights_path


def _bad_checkpoint(path: Path, problem: str) -> FeatureControlsError:
    return FeatureControlsError(
        f"modular-addition checkpoint {path}: {problem}",
        f"regenerate it with: python -m featurecontrols.testbeds.modular_addition --out {path.parent}",
    )


def load_modular_addition(directory: str | os.PathLike[str] = CHECKPOINTS, p: int = 53) -> ModularAdditionRun:
    """The trained model of ``directory`` (default: the shipped p = 53 checkpoint), validated.

    Checks the JSON's format and config, that the weights' sha256 is the one the JSON names, and that
    every tensor has the name and shape the config implies. Loads with safetensors (never pickle).
    """
    weights_path, meta_path = checkpoint_paths(directory, p)
    for path in (weights_path, meta_path):
        if not path.is_file():
            raise _bad_checkpoint(path, "the file does not exist")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad_checkpoint(meta_path, f"not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise _bad_checkpoint(meta_path, f"format is {got!r}, expected {FORMAT!r}")
    config = ModularAdditionConfig.from_dict(meta.get("config"))
    if config.p != p:
        raise _bad_checkpoint(meta_path, f"its config has p = {config.p}, but the file is named for p = {p}")
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise _bad_checkpoint(weights_path, f"the weights do not match the sha256 named in {meta_path.name}")
    try:
        history = [
            ProgressMeasures(**{**m, "key_frequencies": tuple(m["key_frequencies"])}) for m in meta["history"]
        ]
    except (KeyError, TypeError) as e:
        raise _bad_checkpoint(meta_path, f"its history is malformed ({e})") from None
    if not history:
        raise _bad_checkpoint(meta_path, "its history is empty")
    model = ModularAdditionTransformer(config)
    tensors = safetensors.torch.load(data)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))
        raise _bad_checkpoint(
            weights_path, f"tensors do not match the config: differing (name, shape) {wrong[:6]}"
        )
    model.load_state_dict(tensors)
    model.eval()
    return ModularAdditionRun(config, model, history, float(meta.get("training_seconds", 0.0)))


# ----------------------------------------------------------------------------------------------
# Ablations and the testbed


def embedding_fourier_directions(model: ModularAdditionTransformer, frequencies: Sequence[int]) -> Tensor:
    """The embedding's Fourier components (2 |K|, d_model): rows f_cos_k^T W_E and f_sin_k^T W_E, k in K.

    The directions along which the residual stream at positions a and b carries cos/sin(w_k x).
    """
    p = model.config.p
    rows = [i for k in frequencies for i in (2 * k - 1, 2 * k)]
    return gm.fourier_basis(p)[rows] @ model.embed.W_E[:p].detach().double()


@torch.no_grad()
def performance_without_frequencies(
    model: ModularAdditionTransformer, frequencies: Sequence[int]
) -> tuple[float, float]:
    """(accuracy, cross-entropy) on all p^2 pairs with the frequencies mean-ablated from the embedding.

    ``ProjectOut`` at site ``embed[0:2]`` (the tokens a and b): h' = h - (h - mu) P, mu the mean
    embedding of 0..p-1, P the projector onto :func:`embedding_fourier_directions`.
    """
    p = model.config.p
    tokens, labels = all_pairs(p)
    ablate = ProjectOut(embedding_fourier_directions(model, frequencies), mean=model.embed.W_E[:p].mean(0))
    with applied(model, [("embed[0:2]", ablate)]):
        logits = model(tokens)
    accuracy = (logits.argmax(dim=1) == labels).double().mean()
    return float(accuracy), float(_loss(logits, labels))


def _other_frequencies(p: int, keys: Sequence[int], n: int) -> list[int]:
    """``n`` non-key frequencies spread evenly over 1..(p-1)/2."""
    others = [k for k in range(1, (p - 1) // 2 + 1) if k not in keys]
    if not 1 <= n <= len(others):
        raise FeatureControlsError(
            f"n_other_frequencies must be in [1, {len(others)}] (the non-key frequencies), got {n}",
            "leave it None: as many non-key frequencies as key ones",
        )
    return [others[int(i * len(others) / n)] for i in range(n)]


def _truth(site: str, variable: str, key: bool | None) -> GroundTruth | None:
    """What a function of ``variable`` is at ``site`` (see the module docstring); None: left out.

    ``key`` is True or False for cos/sin at a key or non-key frequency, None for a predicate.
    """
    if site == EMBED_A:
        if variable == "a":
            return "model feature" if key else "dataset feature"
        return None if key is False else "absent"
    if variable == "a_plus_b":
        return "model feature" if key else None
    return "dataset feature"


def _candidate_features(
    site: str, tokens: Tensor, keys: Sequence[int], others: Sequence[int]
) -> tuple[dict[str, Tensor], dict[str, GroundTruth]]:
    """0/1 labels of cos/sin(w_k x) > 0 for x in a, b, a + b, and of the predicates, with their truth."""
    p = int(tokens[0, 2])
    a, b = tokens[:, 0], tokens[:, 1]
    candidates: dict[str, tuple[Tensor, GroundTruth | None]] = {}
    for k in [*keys, *others]:
        w = 2 * math.pi * k / p
        for variable, x in (("a", a), ("b", b), ("a_plus_b", a + b)):
            kind = _truth(site, variable, k in keys)
            candidates[f"cos_{variable}_{k}"] = ((torch.cos(w * x) > 0).long(), kind)
            candidates[f"sin_{variable}_{k}"] = ((torch.sin(w * x) > 1e-9).long(), kind)  # sin(w p) ~ -2e-16
    for name, labels, variable in (
        ("a_mod_2", a % 2, "a"),
        ("b_mod_2", b % 2, "b"),
        ("a_lt_half", (a < p / 2).long(), "a"),
        ("b_lt_half", (b < p / 2).long(), "b"),
        ("a_minus_b_lt_half", ((a - b) % p < p / 2).long(), "a_minus_b"),
    ):
        candidates[name] = (labels, _truth(site, variable, None))
    features = {name: labels for name, (labels, kind) in candidates.items() if kind is not None}
    truth = {name: kind for name, (_, kind) in candidates.items() if kind is not None}
    return features, truth


def modular_addition_testbed(
    run: ModularAdditionRun | None = None, site: str = NEURONS, n_other_frequencies: int | None = None
) -> Testbed:
    """Label the candidate features of a trained model (default: the shipped p = 53 checkpoint).

    ``site`` is ``"blocks.0.mlp.hook_post"`` or ``"embed[0]"``; ``n_other_frequencies`` non-key
    frequencies (default: as many as there are key ones) get the same features as the key ones. The
    module docstring gives the ground truth; ``checks`` holds the accuracies, the restricted and
    excluded losses and the embedding ablations that verify it.
    """
    if site not in (NEURONS, EMBED_A):
        raise FeatureControlsError(
            f"the modular-addition testbed labels features at {NEURONS!r} or {EMBED_A!r}, not {site!r}",
            f"pass site={NEURONS!r} (the MLP neurons) or site={EMBED_A!r} (the embedding of a)",
        )
    run = run if run is not None else load_modular_addition()
    model = run.model.eval()
    p = run.config.p
    keys = list(run.key_frequencies)
    others = _other_frequencies(p, keys, len(keys) if n_other_frequencies is None else n_other_frequencies)
    order = torch.randperm(p**2, generator=generator(run.config.seed, "modular_addition", "testbed"))
    tokens = all_pairs(p)[0][order]  # shuffled, so that the first n inputs are a fair sample
    features, ground_truth = _candidate_features(site, tokens, keys, others)

    final = progress_measures(model, run.config.steps)
    key_accuracy, key_loss = zip(*(performance_without_frequencies(model, [k]) for k in keys), strict=True)
    other_accuracy, other_loss = zip(
        *(performance_without_frequencies(model, [k]) for k in others), strict=True
    )
    checks = {
        "train_accuracy": final.train_accuracy,
        "test_accuracy": final.test_accuracy,
        "train_loss": final.train_loss,
        "restricted_loss": final.restricted_loss,
        "excluded_loss": final.excluded_loss,
        "accuracy_without_all_key_frequencies": performance_without_frequencies(model, keys)[0],
        "accuracy_without_one_key_frequency_max": max(key_accuracy),
        "accuracy_without_one_other_frequency_min": min(other_accuracy),
        "loss_without_one_key_frequency_min": min(key_loss),
        "loss_without_one_other_frequency_max": max(other_loss),
    }
    description = (
        f"One-layer transformer trained on (a + b) mod {p} (Nanda et al. 2023), key frequencies {keys}, "
        f"features probed at {site} at the key and the non-key frequencies {others}; label 1 = the "
        "function is > 0 (or the predicate holds). Ground truth: featurecontrols.testbeds.modular_addition."
    )
    return Testbed(
        name="modular_addition",
        model=model,
        inputs=tokens,
        site=site,
        features=features,
        ground_truth=ground_truth,
        description=description,
        checks=checks,
        checkpoints=run.checkpoints,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Train a model and write its checkpoint: ``python -m featurecontrols.testbeds.modular_addition``."""
    parser = argparse.ArgumentParser(
        description="Train the modular-addition testbed and save its checkpoint."
    )
    parser.add_argument("--out", default=str(CHECKPOINTS), help="folder for the .safetensors and .json")
    parser.add_argument("--paper", action="store_true", help="the paper's p = 113, weight decay 1 run")
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--log-every", type=int, default=100, help="steps between progress measures")
    args = parser.parse_args(argv)
    config = ModularAdditionConfig.paper() if args.paper else ModularAdditionConfig()
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    run = train_modular_addition(config, log_every=args.log_every)
    path = save_modular_addition(run, args.out)
    last = run.history[-1]
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) after {config.steps} steps in "
        f"{run.training_seconds:.0f} s: test accuracy {last.test_accuracy:.4f}, key frequencies "
        f"{list(last.key_frequencies)}, restricted loss {last.restricted_loss:.3g}, "
        f"excluded loss {last.excluded_loss:.3g}"
    )


if __name__ == "__main__":
    main()
