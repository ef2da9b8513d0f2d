"""Latent ablation: the used test of a dictionary latent, in the latent's own units.

Latent j of a dictionary writes z_j(h) d_j into the site (its code times the direction it writes,
d_j = decode(e_j) - decode(0)). Ablating it removes exactly that from each example,

    h'_i = h_i - z_j(h_i) d_j,

so rows where the latent does not fire are untouched, and the statistic is the mean relative output
change (``measures/output_change.py``) over the examples where it fires (only those run a forward
pass): how much the model's outputs rest on the latent when it is there, whatever its frequency
(a mean over every example would put a latent that fires on 0.1% of them below any margin however
much the outputs rest on it there). The null removes the same codes along B random directions of the
data's span with d_j's Euclidean norm, h'_i = h_i - z_j(h_i) ||d_j|| u_b, u_b uniform on the unit
sphere of the span the data visits (a direction outside it carries no input, Makelov et al. 2023): a
latent that carries nothing, firing on the same examples just as strongly. The used axis tests
against its margin, p = (1 + #{b : null_b >= real - margin}) / (1 + B), the null drawn until STOP
draws reach the real change less the margin.

The size is matched in the site's Euclidean norm, the units the latent itself writes in: matching
it in standard deviations of the data along d_j (as dual interchange does for labelled features)
would make a sparse latent's removal many standard deviations (its spread is small because it
rarely fires), and its null moves that large along random directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from featurecontrols.adapters.sites import batch_rows
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalTarget, Requirement
from featurecontrols.controls.causal.moves import null_changes, patches
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.matched_shifts import MatchedShifts
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import generator


class LatentAblation(Params):
    """Causal control: remove each latent's contribution z_j d_j; the null removes the same codes along
    random directions of the data of the same norm (module docstring). Runs on dictionary latents only."""

    name = "latent ablation vs random directions"
    requires: ClassVar[Requirement] = "codes"
    metric = "relative output change when the latent is removed"
    unit: ClassVar[Unit] = "output change"

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """Per latent, the output change of each example where it fires (k,) against the null's mean
        changes over the same examples."""
        outputs = OutputChange(at.adapter, at.batches, at.site)
        clean = [at.adapter.site_tensor(at.site, batch) for batch in at.batches]
        span = MatchedShifts(at.X, "covariance", "mahalanobis").basis  # (d, r) the data's span
        owners = [at.adapter.row_examples(b, c) for b, c in zip(at.batches, clean, strict=True)]
        sizes = [batch_rows(b) for b in at.batches]
        n_rows = sum(o.numel() for o in owners)
        out = {}
        for target in track(targets, "latent ablation", len(targets), at.progress):
            code, write = _code_and_write(target, n_rows, span)
            examples, fired, moves = _firing(clean, owners, sizes, code)
            if not examples.numel():  # a latent that never fires here changes nothing
                nothing = torch.zeros(1, dtype=torch.float64)
                out[target.name] = NullScores(self.metric, self.unit, nothing, nothing)
                continue
            sub = outputs.restricted(examples)
            real = sub.under_stacked([patches(fired, moves, write)])[0]
            draw = generator(at.seed, "latent ablation null", target.name)
            u = torch.randn(at.n_null, span.shape[1], generator=draw, dtype=torch.float64)
            writes = torch.nn.functional.normalize(u, dim=1) @ span.T * write.norm()
            stop = float(real.mean()) - at.margin
            null = null_changes(sub, fired, moves.expand(at.n_null, -1), writes, [stop])[0]
            out[target.name] = NullScores(self.metric, self.unit, real, null)
        return out


def _firing(
    clean: list[Tensor], owners: list[Tensor], sizes: list[int], code: Tensor
) -> tuple[Tensor, list[Tensor], Tensor]:
    """The examples (over all batches) with a site row where the latent fires, their clean site
    tensors per batch (every row of theirs, as the sub-batch of those examples gives them), and the
    moves -z_j of those rows; ``owners[b]`` is the example of each row of batch b (rows per example
    may differ, as with the tokens of sentences), ``sizes[b]`` its number of examples."""
    examples, fired, moves = [], [], []
    row, first = 0, 0
    for c, owner, size in zip(clean, owners, sizes, strict=True):
        rows = code[row : row + owner.numel()]
        chosen = torch.unique(owner[rows.ne(0)])
        if chosen.numel():
            keep = torch.isin(owner, chosen)
            flat = c.reshape(-1, c.shape[-1])[keep.to(c.device)]
            examples.append(chosen + first)
            fired.append(flat.reshape(chosen.numel(), *c.shape[1:]) if c.ndim > 2 else flat)
            moves.append(-rows[keep].double())
        row, first = row + owner.numel(), first + size
    if not examples:
        return torch.zeros(0, dtype=torch.long), [], torch.zeros(0, dtype=torch.float64)
    return torch.cat(examples), fired, torch.cat(moves)


def _code_and_write(target: CausalTarget, n: int, span: Tensor) -> tuple[Tensor, Tensor]:
    """The latent's code on the measured rows (n,) and the direction it writes (width,)."""
    if target.code is None or target.direction is None:
        raise FeatureControlsError(
            f"latent ablation needs a dictionary latent, but {target.name!r} is a {target.kind}",
            "use it with Latents candidates (the battery runs it on latents only)",
        )
    width = span.shape[0]
    if target.code.shape != (n,) or target.direction.shape != (width,):
        raise FeatureControlsError(
            f"latent {target.name!r} has codes of shape {tuple(target.code.shape)} and a direction of "
            f"shape {tuple(target.direction.shape)}; expected ({n},) and ({width},)",
            "give one code per measured row and a direction in the site's activation space",
        )
    return target.code, target.direction.double()
