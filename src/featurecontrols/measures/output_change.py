"""How much an intervention at a site moves a model's outputs, per example.

The change is measured relative to how much the outputs vary across the data, in one of two ways,
by what the adapter's outputs are (``ModelAdapter.output_kind``):

``values`` (rows, o): the clean outputs f(x_j) on fixed batches are recorded once, and

    change_i = ||f'(x_i) - f(x_i)||^2 / mean_j ||f(x_j) - mean f||^2.

``logits`` (rows, positions, vocab), next-token logits: the distributions p_it = softmax(f(x_i)_t)
are compared by their KL divergence, averaged over positions, relative to the information radius
of the clean distributions (their mean KL to the pooled distribution pbar, = H(pbar) - mean H(p)):

    change_i = mean_t KL(p_it || p'_it) / (H(pbar) - mean_jt H(p_jt)).

When a batch is a Mapping with an ``attention_mask`` (rows, positions) that matches the logits, the
means over t (and the pooled distribution and entropies) run over its unmasked positions only:
padding counts for nothing.

Logits are never kept: each batch's clean distributions are recomputed (float32) while that batch's
interventions run, and each forward pass is reduced to one number per example at once. With
d = z - z' (clean minus changed logits),

    KL(p || p') = sum_v p_v d_v + log1p(sum_v p_v expm1(-d_v)),

exact, and precise in float32 for small changes (no difference of two log-partition functions),
in chunks of CHUNK numbers: memory is bounded by the batch and ``elements_per_pass``, whatever the
vocabulary and the number of examples.

A feature's **read-off** at the outputs (``OutputChange.read_off``) measures the change along the
feature's own output direction instead: with v_i the feature's value on example i (a 0/1 label, a
latent's code), m_i how far the intervention moves it, and u the unit vector of the clean outputs'
covariance with it, u = sum_i (v_i - mean v)(f(x_i) - mean f) / ||...||,

    change_i = sign(m_i) (f'(x_i) - f(x_i)) . u / sqrt(mean_j ||f(x_j) - mean f||^2),

how far the intervention moves example i's outputs the way the outputs follow the feature, in
standard deviations of the outputs (the square root of the plain measure's spread: a move the plain
measure counts as 0.01 counts 0.1 here when it lies along u). For a label, u is the unit difference
of the class means (the covariance is n p (1 - p) times it) and moving class 1 to class 0 has
sign -1. It is selective where the plain change is not: in a bottleneck whose outputs read every
direction (toy models of superposition), any move of the site moves the outputs, but only a move of
the feature moves them along the feature's own output direction.

For logits the read-off takes f(x_i) to be the square roots of example i's next-token distributions,
sqrt(p_it) over its (unmasked) positions t and the vocabulary: the embedding in which Euclidean
distance is the Hellinger distance, ||sqrt(p) - sqrt(p')||^2 = 2 H^2(p, p') ~ KL(p || p') / 2 for
small changes (Amari & Nagaoka 2000, the Fisher metric), bounded (||sqrt(p_t)|| = 1) so tokens of
vanishing probability cannot dominate it as their log-probabilities would. u has one entry per
(position, vocabulary) pair and is found in one more pass over the batches; every batch needs the
same number of positions. "Not used" (``size``) bounds ||sqrt(p') - sqrt(p)|| in the same spread.

Every causal control measures with it; steering curves and erasure run the model with
:func:`outputs_under`, the one loop over batches under interventions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site, repeat_batch, take_rows
from featurecontrols.errors import FeatureControlsError

Intervention = Callable[[Tensor], Tensor]
CHUNK = 1 << 22  # output numbers per temporary of the KL reductions


def outputs_under(
    adapter: ModelAdapter, batches: Sequence[Any], site: Site, interventions: Sequence[Intervention | None]
) -> list[Tensor]:
    """The outputs of every batch, batch b under ``interventions[b]`` at ``site`` (None: clean)."""
    out = []
    with torch.no_grad():
        for batch, intervention in zip(batches, interventions, strict=True):
            if intervention is None:
                out.append(adapter.outputs(batch))
            else:
                with adapter.intervening([(site, intervention)]):
                    out.append(adapter.outputs(batch))
    return out


class OutputChange:
    """The relative change (module docstring) that interventions at ``site`` make to the outputs of
    ``adapter`` on ``batches``. A forward pass holds at most about ``rows_per_pass`` rows and
    ``elements_per_pass`` output numbers (many interventions are stacked along the batch up to these)."""

    def __init__(
        self,
        adapter: ModelAdapter,
        batches: Sequence[Any],
        site: Site,
        rows_per_pass: int = 1 << 15,
        elements_per_pass: int = 1 << 25,
        spread: float | None = None,
    ) -> None:
        self.adapter, self.batches, self.site = adapter, batches, site
        self.rows_per_pass, self.elements_per_pass = rows_per_pass, elements_per_pass
        self.logits = adapter.output_kind == "logits"
        self.reference: list[Tensor] = []  # clean outputs (values only)
        self.rows: list[int] = []
        self.row_size: list[int] = []
        self.masks: list[Tensor | None] = []  # per batch, the positions that count (logits only)
        self.direction: Tensor | None = None  # a read-off's u, shaped like one example's outputs
        self.signs: list[Tensor] = []  # a read-off's sign(m_i), per batch (rows,)
        self.roots = False  # logits measured as sqrt(p) (a read-off's space), not by KL
        pooled, entropy, tokens = torch.zeros((), dtype=torch.float64), 0.0, 0
        for batch in batches:  # one batch's outputs at a time: logits are never all held
            (clean,) = outputs_under(adapter, [batch], site, [None])
            self.rows.append(clean.shape[0])
            self.row_size.append(clean[0].numel() if clean.shape[0] else 1)
            if not self.logits:
                self.reference.append(clean.double())
                self.masks.append(None)
                continue
            z, p = _distributions(clean)
            del clean, z
            mask = _position_mask(batch, p)
            self.masks.append(mask)
            weights = mask.to(p.dtype)[..., None]
            pooled = pooled + (p * weights).sum(dim=(0, 1), dtype=torch.float64)
            entropy -= sum(
                float((torch.special.xlogy(p[s], p[s]) * weights[s]).sum(dtype=torch.float64))
                for s in _chunks(p)
            )
            tokens += int(mask.sum())
        self.spread = self._spread(pooled, entropy, tokens) if spread is None else spread

    def _spread(self, pooled: Tensor, entropy: float, tokens: int) -> float:
        if self.logits:
            p_bar = pooled / max(tokens, 1)
            spread = float(-(p_bar * p_bar.clamp(min=1e-300).log()).sum()) - entropy / max(tokens, 1)
        else:
            everything = torch.cat(self.reference)
            spread = float((everything - everything.mean(dim=0)).square().sum(dim=1).mean())
        if not spread > 0:
            raise FeatureControlsError(
                "the model's outputs are identical on every input, so no intervention can change them",
                "measure an output that varies across the dataset (give the adapter output=...)",
            )
        return spread

    def restricted(self, examples: Tensor) -> OutputChange:
        """The same measure on the examples ``examples`` (sorted indices over all batches) only, with
        this one's spread and read-off: where an intervention leaves the other examples' outputs as
        they are, their changes are 0 and need no forward pass."""
        bounds = torch.tensor([0, *self.rows]).cumsum(0)
        batches = []
        for b, batch in enumerate(self.batches):
            inside = examples[(examples >= bounds[b]) & (examples < bounds[b + 1])] - bounds[b]
            if inside.numel():
                batches.append(take_rows(batch, inside))
        out = OutputChange(
            self.adapter, batches, self.site, self.rows_per_pass, self.elements_per_pass, self.spread
        )
        if self.direction is not None:  # a read-off keeps its direction, found on every example
            signs = torch.cat(self.signs)
            out.direction, out.roots = self.direction, self.roots
            out.signs = list(torch.split(signs[examples.to(signs.device)], out.rows))
        return out

    def read_off(self, values: Tensor, moves: Tensor) -> OutputChange:
        """The same measure along the outputs' covariance with a feature (module docstring): the move
        of each example's outputs the way they follow the feature, signed by the move of its value, in
        standard deviations of the outputs (``values`` and ``moves`` (n,) per example, in the order of
        the batches' rows). A feature whose values do not vary has no direction: u = 0, no change."""
        if values.shape != (self.n,) or moves.shape != (self.n,):
            raise FeatureControlsError(
                f"the read-off needs the feature's value and its move on each of the {self.n} measured "
                f"examples; got shapes {tuple(values.shape)} and {tuple(moves.shape)}",
                "give one value per example, at a site with one row per example or summed over its rows",
            )
        centred = values.cpu().double() - values.double().mean().cpu()
        covariance, spread = self._roots_covariance(centred) if self.logits else self._covariance(centred)
        device = self.reference[0].device if self.reference else covariance.device
        u = torch.nn.functional.normalize(covariance.flatten(), dim=0).reshape(covariance.shape)
        out = copy.copy(self)
        out.direction = u.to(device, torch.float32 if self.logits else torch.float64)
        out.signs = [s.to(device) for s in torch.split(moves.cpu().double().sign(), self.rows)]
        out.roots, out.spread = self.logits, spread**0.5
        return out

    def _covariance(self, centred: Tensor) -> tuple[Tensor, float]:
        """sum_i (v_i - mean v) f(x_i) over the clean values (o,), and the plain spread."""
        outputs = torch.cat(self.reference).cpu()
        return centred @ (outputs - outputs.mean(dim=0)), self.spread

    def _roots_covariance(self, centred: Tensor) -> tuple[Tensor, float]:
        """sum_i (v_i - mean v) sqrt(p_i) (positions, vocab) and mean_i ||sqrt(p_i) - mean sqrt(p)||^2,
        in one pass over the clean batches (recomputed: logits are never kept)."""
        total: Tensor | None = None
        weighted: Tensor | None = None
        for b, (v, mask) in enumerate(zip(torch.split(centred, self.rows), self.masks, strict=True)):
            _, p = self._clean(b)
            assert p is not None and mask is not None
            if total is not None and p.shape[1:] != total.shape:
                raise FeatureControlsError(
                    f"the read-off on logits needs one number of positions in every batch; got "
                    f"{total.shape[0]} and {p.shape[1]}",
                    "pad every batch to one length (its attention_mask keeps the padding out)",
                )
            roots = p.sqrt_().mul_(mask[..., None])
            batch_sum = roots.sum(dim=0).double()
            batch_weighted = (v.to(roots) @ roots.flatten(1)).double().reshape(batch_sum.shape)
            total = batch_sum if total is None else total + batch_sum
            weighted = batch_weighted if weighted is None else weighted + batch_weighted
        assert total is not None and weighted is not None
        tokens = float(sum(int(m.sum()) for m in self.masks if m is not None))
        spread = tokens / self.n - float((total / self.n).square().sum())  # ||sqrt(p_t)|| = 1
        return weighted, max(spread, 0.0)

    def size(self, each: Sequence[Intervention]) -> Tensor | None:
        """Where this measure is a signed read-off, how far ``each`` (one intervention per batch) moves
        each example's outputs whatever the direction, ||f' - f|| in their standard deviations (one
        more forward pass): what "not used" bounds (``NullScores.size``). None for the plain change,
        which is a size already."""
        if self.direction is None:
            return None
        plain = copy.copy(self)
        plain.direction, plain.spread = None, self.spread**2  # the squared distance in its space
        size: Tensor = plain.under_stacked([each])[0].sqrt()
        return size

    @property
    def n(self) -> int:
        """Number of examples measured."""
        return sum(self.rows)

    def under(self, intervention: Intervention) -> Tensor:
        """Per-example relative change (n,) with the same intervention on every batch."""
        return self.under_each([intervention] * len(self.batches))

    def under_each(self, interventions: Sequence[Intervention]) -> Tensor:
        """Per-example relative change (n,) with ``interventions[b]`` on batch b."""
        return self.under_stacked([interventions])[0]

    def under_stacked(self, each: Sequence[Sequence[Intervention]]) -> Tensor:
        """Per-example relative changes (K, n) of K interventions, ``each[k][b]`` on batch b, run many
        at once: each batch is stacked along dim 0 and intervention k applied to the k-th copy (the
        model must treat the rows of a batch independently, as in eval mode)."""
        out = torch.empty(len(each), self.n, dtype=torch.float64)
        start = 0
        for b, (batch, rows) in enumerate(zip(self.batches, self.rows, strict=True)):
            per = max(
                1,
                min(
                    self.rows_per_pass // max(rows, 1),
                    self.elements_per_pass // (rows * self.row_size[b] or 1),
                ),
            )
            clean = self._clean(b)
            for first in range(0, len(each), per):
                chosen = range(first, min(len(each), first + per))
                stacked = _Stacked([each[k][b] for k in chosen])
                with torch.no_grad(), self.adapter.intervening([(self.site, stacked)]):
                    changed = self.adapter.outputs(repeat_batch(batch, len(chosen)))
                changes = self._changes(b, changed, clean)
                out[first : first + len(chosen), start : start + rows] = changes / self.spread
            start += rows
        return out

    def _clean(self, b: int) -> tuple[Tensor, Tensor | None]:
        """Batch b's clean outputs (values), or its clean logits and distributions (logits, recomputed)."""
        if not self.logits:
            return self.reference[b], None
        (clean,) = outputs_under(self.adapter, [self.batches[b]], self.site, [None])
        return _distributions(clean)

    def _changes(self, b: int, changed: Tensor, clean: tuple[Tensor, Tensor | None]) -> Tensor:
        """(K, rows) squared distances, signed read-offs s_i (f' - f) . u, or position-mean
        KL(clean || changed), of K changed copies of batch b."""
        reference, p = clean
        changed = changed.reshape(-1, *reference.shape)
        mask = self.masks[b]
        if self.roots and p is not None and mask is not None:
            moves = torch.stack([_root_moves(p, c, mask, self.direction) for c in changed])
            return moves if self.direction is None else moves * self.signs[b]
        if self.direction is not None:
            return (changed.double() - reference) @ self.direction * self.signs[b]
        if p is None or mask is None:
            return (changed.double() - reference).square().sum(dim=2)
        weights = mask.double()
        counts = weights.sum(dim=1).clamp(min=1.0)
        return torch.stack([(_kl(reference, p, c) * weights).sum(dim=1) / counts for c in changed])


def _position_mask(batch: Any, p: Tensor) -> Tensor:
    """(rows, positions) bool: the batch's ``attention_mask`` where it matches the logits, else all."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if isinstance(mask, Tensor) and tuple(mask.shape) == tuple(p.shape[:2]):
        return mask.to(p.device).bool()
    return torch.ones(p.shape[:2], dtype=torch.bool, device=p.device)


def _positions(logits: Tensor) -> Tensor:
    """Logits as (rows, positions, vocab): one position when they are (rows, vocab)."""
    if logits.ndim == 2:
        logits = logits[:, None]
    if logits.ndim != 3:
        raise FeatureControlsError(
            f"next-token logits must be (rows, positions, vocab), got shape {tuple(logits.shape)}",
            "give the adapter output_kind='values' for outputs that are not next-token logits",
        )
    return logits


def _chunks(logits: Tensor) -> list[slice]:
    """Slices of rows of (rows, positions, vocab) logits, about CHUNK numbers each."""
    step = max(1, CHUNK // max(logits[0].numel(), 1)) if logits.shape[0] else 1
    return [slice(i, i + step) for i in range(0, logits.shape[0], step)]


def _finite(logits: Tensor) -> Tensor:
    """float32 logits (rows, positions, vocab), -inf (masked) made finite so that 0 * z = 0 (in place
    when they are float32 already: the caller's fresh outputs)."""
    return _positions(logits).float().clamp_(min=-1e9)


def _distributions(logits: Tensor) -> tuple[Tensor, Tensor]:
    """float32 logits z and next-token distributions p = softmax(z), (rows, positions, vocab) each."""
    z = _finite(logits)
    return z, torch.softmax(z, dim=-1)


def _root_moves(p: Tensor, changed: Tensor, mask: Tensor, direction: Tensor | None) -> Tensor:
    """Per row (rows,), float64, over its unmasked positions t: sum_t (sqrt(p'_t) - sqrt(p_t)) . u_t
    along ``direction`` u (positions, vocab), or sum_t ||sqrt(p'_t) - sqrt(p_t)||^2 without one."""
    changed = _positions(changed)
    out = torch.empty(p.shape[0], dtype=torch.float64, device=p.device)
    for s in _chunks(p):
        d = torch.softmax(_finite(changed[s]), dim=-1).sqrt_().sub_(p[s].sqrt())
        per = torch.linalg.vecdot(d, direction) if direction is not None else d.square().sum(dim=-1)
        out[s] = (per.double() * mask[s]).sum(dim=1)
    return out


def _kl(z: Tensor, p: Tensor, changed: Tensor) -> Tensor:
    """KL(p || softmax(changed)) per row and position (rows, positions), float64 (module docstring).

    Every chunk's d = z - z' is written into one scratch tensor: no temporaries the size of a chunk
    are allocated per chunk (they fragment the heap: the resident memory then grows with the number
    of batches)."""
    changed = _positions(changed)
    kl = torch.empty(z.shape[:2], dtype=torch.float64, device=z.device)
    chunks = _chunks(z)
    scratch = torch.empty_like(z[chunks[0]]) if chunks else z
    for s in chunks:
        d = scratch[: z[s].shape[0]]
        d.copy_(changed[s]).clamp_(min=-1e9)
        torch.sub(z[s], d, out=d)
        first = torch.linalg.vecdot(p[s], d).double()
        kl[s] = first + torch.log1p(torch.linalg.vecdot(p[s], d.neg_().expm1_()).double())
    return kl


class _Stacked:
    """Apply intervention k to the k-th of K equal chunks of the site's tensor along dim 0."""

    def __init__(self, interventions: Sequence[Intervention]) -> None:
        self.interventions = interventions

    def __call__(self, h: Tensor) -> Tensor:
        chunks = h.chunk(len(self.interventions), dim=0)
        if len(chunks) != len(self.interventions) or any(c.shape != chunks[0].shape for c in chunks):
            raise FeatureControlsError(
                f"the site's tensor of shape {tuple(h.shape)} does not split into {len(self.interventions)} "
                "stacked copies along dim 0",
                "run interventions one at a time at a site whose rows are not per batch example",
            )
        return torch.cat([fn(c) for fn, c in zip(self.interventions, chunks, strict=True)], dim=0)
