"""Metrics of a dictionary (SAE, PCA, any ``encode``/``decode`` object), to compare real and control runs.

Heap et al. (2025) found that SAEs on randomly initialised transformers score about as well as on
trained ones; these are the metrics to put side by side. With codes Z = encode(X), X_hat = decode(Z):

- ``explained_variance``: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2.
- ``l0``: mean number of non-zero codes per example.
- ``dead_fraction`` / ``dense_fraction``: latents active on no example / on more than ``dense_above``.
- ``loss_recovered``: (L_ablated - L_spliced) / (L_ablated - L_clean), the model's loss with the
  reconstruction spliced in at the site (a transcoder's output at the site it writes), against the
  clean loss and the mean-ablated site.
- ``mmcs``: mean max cosine similarity (Sharkey et al. 2022) between ground-truth directions and the
  dictionary's directions d_j = decode(e_j) - decode(0).
- ``token_concentration``: per latent, the largest share of its total activation that falls on one
  token id, max_t sum_{i: tok_i = t} z_ij / sum_i z_ij; averaged over live latents.
- ``sparse_probing``: per label, the best single latent's AUROC, max_j max(A_j, 1 - A_j) (1-sparse
  probing, Gurnee et al. 2023); averaged over labels.

The battery computes them for a Latents candidate's dictionary under every condition of the run
(trained, each weight control's copies, each input control's data): the table of Heap et al.; the
per-latent verdicts are the axes' business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.sites import Site, call_model, intervene
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Dictionary, check_dictionary
from featurecontrols.finders.sparse_codes import SparseCodes, code_chunks
from featurecontrols.measures.latent_matching import decoder_directions
from featurecontrols.validation import check_activations

COLUMNS = 256  # latents ranked at a time for sparse probing

LossFn = Callable[[nn.Module, Any], Tensor]
"""``loss_fn(model, batch)``: the model's scalar loss on one batch (it runs the forward pass itself)."""


@dataclass
class DictionaryMetrics:
    """Summary metrics (name -> value) and per-latent scores (name -> (m,) tensor)."""

    summary: dict[str, float]
    per_latent: dict[str, Tensor] = field(default_factory=dict)


def explained_variance(X: Tensor, X_hat: Tensor) -> float:
    """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2."""
    return 1.0 - squared_error(X, X_hat) / total_variance(X)


def squared_error(X: Tensor, X_hat: Tensor) -> float:
    """sum ||x - x_hat||^2, in float64."""
    return float((X.double() - X_hat.double()).pow(2).sum())


def total_variance(X: Tensor) -> float:
    """sum ||x - mean(x)||^2, in float64 (at least the smallest positive float64)."""
    return max(float(moments(X)[1]), torch.finfo(torch.float64).tiny)


def moments(X: Tensor, chunk: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """The mean (d,) of X's rows and sum ||x - mean||^2, in float64, by two passes over ``chunk``
    numbers at a time (no float64 copy of X)."""
    rows = max(1, chunk // max(X.shape[1], 1))
    total = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], rows):
        total += X[start : start + rows].double().sum(0)
    mean = total / X.shape[0]
    squares = torch.zeros((), dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], rows):
        squares += (X[start : start + rows].double() - mean).square().sum()
    return mean, squares


def directions(dictionary: Dictionary, n_latents: int) -> Tensor:
    """Unit (m, d) directions written by each latent: decode(e_j) - decode(0), normalised (in chunks)."""
    written = decoder_directions(dictionary, n_latents).float()
    unit: Tensor = written / written.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return unit


def best_cosine(found: Tensor, truth: Tensor) -> Tensor:
    """For each ground-truth direction (rows of ``truth``), the max |cosine| to any row of ``found``."""
    a = found / found.norm(dim=1, keepdim=True).clamp(min=1e-12)
    b = truth.float() / truth.float().norm(dim=1, keepdim=True).clamp(min=1e-12)
    cosines: Tensor = (b @ a.T).abs().max(dim=1).values
    return cosines


def token_concentration(codes: SparseCodes, tokens: Tensor) -> Tensor:
    """Per latent, max_t (activation mass on token t) / (total mass); NaN for a latent never active.

    Summed over the nonzero entries only, one (token, latent) pair at a time: never a (vocabulary, m)
    matrix."""
    pair = tokens.reshape(-1).cpu().long()[codes.rows] * codes.m + codes.latents
    keys, ids = torch.unique(pair, return_inverse=True)
    mass = torch.zeros(keys.numel(), dtype=torch.float64).index_add_(0, ids, codes.values.abs().double())
    latent = keys % codes.m
    top = torch.zeros(codes.m, dtype=torch.float64).scatter_reduce_(0, latent, mass, "amax")
    total = torch.zeros(codes.m, dtype=torch.float64).index_add_(0, latent, mass)
    return (top / total).float()


def latent_auroc(Z: Tensor, labels: Tensor) -> Tensor:
    """AUROC of every latent for every binary label column, max(A, 1 - A): shape (k, m).

    A = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0), R_1 the sum of the positives' ranks (ties averaged).
    """
    Y = labels.reshape(labels.shape[0], -1).bool()
    ranks = _average_ranks(Z.double())
    n1 = Y.sum(0).double()
    n0 = Y.shape[0] - n1
    if bool((n1 == 0).any() | (n0 == 0).any()):
        raise FeatureControlsError("a label column has a single class", "give labels with both classes")
    r1 = Y.double().T @ ranks  # (k, m)
    a = (r1 - (n1 * (n1 + 1) / 2)[:, None]) / (n1 * n0)[:, None]
    return torch.maximum(a, 1 - a).float()


def _average_ranks(Z: Tensor) -> Tensor:
    """Column-wise ranks 1..n with ties given their average rank."""
    n = Z.shape[0]
    order = Z.argsort(dim=0)
    sorted_z = Z.gather(0, order)
    new_group = torch.ones_like(sorted_z, dtype=torch.bool)
    new_group[1:] = sorted_z[1:] != sorted_z[:-1]
    group = new_group.long().cumsum(0) - 1  # tie group per sorted position
    positions = torch.arange(1, n + 1, dtype=torch.float64)[:, None].expand_as(Z)
    size = torch.zeros_like(Z).scatter_add_(0, group, torch.ones_like(Z))
    first = torch.zeros_like(Z).scatter_reduce_(0, group, positions, "amin", include_self=False)
    average = first.gather(0, group) + (size.gather(0, group) - 1) / 2
    return torch.empty_like(Z).scatter_(0, order, average)


def loss_recovered(
    model: nn.Module,
    batches: Iterable[Any],
    site: str | Site,
    dictionary: Dictionary,
    loss_fn: LossFn,
    writes: str | Site | None = None,
) -> dict[str, float]:
    """Clean, spliced and mean-ablated losses, and the fraction of loss recovered by the reconstruction.

    The reconstruction (or the site's mean, over all batches) replaces the site's tensor at every
    position. For a transcoder, ``writes`` is the site it writes (the component's output): in each
    forward pass its output from ``site``'s tensor replaces the tensor at ``writes``, and the ablation
    is of ``writes`` (Dunefsky et al. 2024, "Transcoders find interpretable LLM feature circuits").
    The fraction means something only where the model beats the ablation (L_ablated > L_clean).
    """
    batches = list(batches)
    read = Site.parse(site)
    written = read if writes is None else Site.parse(writes)
    seen: list[Tensor] = []  # the read site's tensor of the forward pass under way (transcoders)
    means: list[Tensor] = []

    def record(h: Tensor) -> Tensor:
        seen[:] = [h]
        return h

    def splice(h: Tensor) -> Tensor:
        source = h if writes is None else _read_before(seen, read, written, h)
        means.append(h.reshape(-1, h.shape[-1]).mean(0))
        reconstruction = dictionary.decode(dictionary.encode(source.reshape(-1, source.shape[-1])))
        return reconstruction.to(h.dtype).reshape(h.shape)

    def average(fn: Callable[[Tensor], Tensor] | None, recorded: bool = False) -> float:
        total = 0.0
        with torch.no_grad():
            for batch in batches:
                with ExitStack() as stack:
                    if recorded:
                        stack.enter_context(intervene(model, read, record))
                    if fn is not None:
                        stack.enter_context(intervene(model, written, fn))
                    total += float(loss_fn(model, batch))
                seen.clear()
        return total / len(batches)

    clean = average(None)
    spliced = average(splice, recorded=writes is not None)
    mean = torch.stack(means).mean(0)
    ablated = average(lambda h: mean.to(h.dtype).expand_as(h).clone())
    gap = ablated - clean
    recovered = (ablated - spliced) / gap if abs(gap) > 1e-12 else float("nan")
    return {
        "loss_clean": clean,
        "loss_spliced": spliced,
        "loss_ablated": ablated,
        "loss_recovered": recovered,
    }


def _read_before(seen: list[Tensor], read: Site, written: Site, h: Tensor) -> Tensor:
    """The read site's tensor of this forward pass, checked to line up with the written one ``h``."""
    if not seen:
        raise FeatureControlsError(
            f"the forward pass reached the written site {written} before the read site {read}",
            "give the transcoder's input site as site= and its output site as writes= (a transcoder "
            "reads a component's input and writes its output)",
        )
    source = seen.pop()
    if source.shape[:-1] != h.shape[:-1]:
        raise FeatureControlsError(
            f"the read site {read} has shape {tuple(source.shape)} but the written site {written} has "
            f"{tuple(h.shape)}: their positions do not line up",
            "pick sites with one row per position at both (e.g. blocks.0.ln2.hook_normalized and "
            "blocks.0.hook_mlp_out)",
        )
    return source


def evaluate_dictionary(
    dictionary: Dictionary,
    X: Tensor,
    *,
    tokens: Tensor | None = None,
    labels: Mapping[str, Tensor] | None = None,
    true_directions: Tensor | None = None,
    dense_above: float = 0.1,
    target: Tensor | None = None,
    chunk: int | None = None,
) -> DictionaryMetrics:
    """Every activation-level metric of the module docstring on activations X (n, d).

    Codes are encoded ``chunk`` rows at a time (by default ``sparse_codes.chunk_rows``) and kept as
    their nonzero entries (``SparseCodes``).
    ``target`` (n, d_out): what a transcoder writes for X (the output site's activations); explained
    variance is then of the target.

    ``tokens`` (n,) token ids of the rows, ``labels`` (name -> (n,) binary labels; each gets its
    ``sparse_probing/<name>`` entry) and
    ``true_directions`` (r, d) ground truth each add their metrics; the loss effect is separate
    (:func:`loss_recovered`), since it needs the model.
    """
    X = check_activations(X)
    written = X if target is None else check_activations(target, "the transcoder's targets")
    m = check_dictionary(dictionary, X, written.shape[1])
    if true_directions is not None and (true_directions.ndim != 2 or true_directions.shape[1] != X.shape[1]):
        raise FeatureControlsError(
            f"true_directions must be (r, {X.shape[1]}), got {tuple(true_directions.shape)}",
            "give one ground-truth direction per row, in activation space",
        )
    codes, error = _codes_and_error(dictionary, X, written, chunk)
    rate = codes.firing_rate()
    summary = {
        "explained_variance": 1.0 - error / total_variance(written),
        "l0": codes.values.numel() / X.shape[0],
        "dead_fraction": float((rate == 0).float().mean()),
        "dense_fraction": float((rate > dense_above).float().mean()),
    }
    per_latent = {"firing_rate": rate}
    if true_directions is not None:
        found = directions(dictionary, m)
        summary["mmcs"] = float(best_cosine(found, true_directions).mean())
        per_latent["best_cosine"] = best_cosine(true_directions, found)
    if tokens is not None:
        concentration = token_concentration(codes, tokens)
        per_latent["token_concentration"] = concentration
        summary["token_concentration"] = float(concentration[rate > 0].mean())
    if labels:
        auroc = latent_auroc_in_chunks(codes, labels)
        best = auroc.max(1).values
        summary["sparse_probing"] = float(best.mean())
        summary |= {f"sparse_probing/{name}": float(b) for name, b in zip(labels, best, strict=True)}
        per_latent["best_auroc"] = auroc.max(0).values
    return DictionaryMetrics(summary, per_latent)


def _codes_and_error(
    dictionary: Dictionary, X: Tensor, written: Tensor, chunk: int | None
) -> tuple[SparseCodes, float]:
    """X's codes, encoded ``chunk`` rows at a time, and the reconstruction's squared error against
    ``written`` (X, or a transcoder's targets), summed."""
    parts, error = [], 0.0
    for start, codes in code_chunks(dictionary, X, chunk):
        with torch.no_grad():
            error += squared_error(written[start : start + codes.shape[0]], dictionary.decode(codes))
        parts.append(SparseCodes.of(codes))
    return SparseCodes.stacked(parts), error


def latent_auroc_in_chunks(codes: SparseCodes, labels: Mapping[str, Tensor]) -> Tensor:
    """``latent_auroc`` of every latent for every label (k, m), COLUMNS latents ranked at a time."""
    Y = torch.stack([y.reshape(-1).cpu() for y in labels.values()], 1)
    parts = [latent_auroc(codes.columns(a, min(a + COLUMNS, codes.m)), Y) for a in range(0, codes.m, COLUMNS)]
    return torch.cat(parts, 1)


def causal_lm_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """A Hugging Face causal LM's next-token cross-entropy on a tokenizer batch (``input_ids`` and
    ``attention_mask``), padded positions left out (label -100)."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    labels = ids if mask is None else ids.masked_fill(mask == 0, -100)
    loss: Tensor = call_model(model, {**batch, "labels": labels}).loss
    return loss


def default_loss(model: nn.Module, batch: Any) -> Tensor:
    """Next-token cross-entropy for a language model: batch (B, T) token ids, output (B, T, vocab)."""
    logits = call_model(model, batch)
    return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten())
