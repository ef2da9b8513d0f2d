"""The used tests that move dictionary latents (latent ablation, resample ablation and insertion):
the loop they share (``LatentTest``: which examples a latent's test runs on, and how far each of their
rows moves along d_j, is all a test says), the measured rows of a site (which example each row
belongs to, the sub-batches of those examples), and the shared measurement, h' = h + move_i d_j on
those rows against the same moves along random directions of the data's span with d_j's Euclidean
norm (``moves.py`` stacks and stops them).

The null's directions (``LatentNull``): ``"span"``, uniform on the unit sphere of the span the data
visits; ``"matched variance"``, uniform among the unit directions u of the span along which the data
varies as much as along d_j, u^T Sigma u = d^T Sigma d / |d|^2 (``MatchedShifts.of_variance``);
``"uncorrelated"``, uniform among the unit directions of the span orthogonal to the covariance of
the site's rows with the latent's code, c_j = mean_i (z_ij - mean z_j)(h_i - mean h), so the null's
coordinate u . h is uncorrelated with z_j: it carries nothing of the latent, linearly. A
dictionary's latents lie where the data varies most (it is fitted to reconstruct the data) and a
uniform direction mostly where it varies little, so on a model that reads its high-variance
directions every latent beats the span's null for where it lies alone; the matched-variance null
asks whether the latent is read more than a direction of the data that varies as much. The
uncorrelated null is the read-off's (``latent_ablation_readoff.py``): a move that carries nothing
of the latent moves the outputs along the latent's own output direction only through interference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from featurecontrols.adapters.sites import batch_rows
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalControl, CausalTarget, Requirement
from featurecontrols.controls.causal.moves import null_changes, patches
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.matched_shifts import MatchedShifts
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import generator

LatentNull = Literal["span", "matched variance", "uncorrelated"]
LATENT_NULLS: tuple[LatentNull, ...] = ("span", "matched variance", "uncorrelated")
NULL_NAMES: dict[LatentNull, str] = {
    "span": "",
    "matched variance": " of equal variance",
    "uncorrelated": " uncorrelated with it",
}


class LatentTest(Params):
    """What the used tests of latents share: they run on dictionary latents, measure output changes,
    and take the null's directions (``null``, module docstring); ``title`` names the test, ``stream``
    its progress bar and seeds. A test says what it moves (``written``; default: the latent's code z_j
    and direction d_j), which examples it runs on (``examples``; default: those where the latent fires)
    and how far it moves their rows along d_j (``moves``)."""

    requires: ClassVar[Requirement] = "codes"
    unit: ClassVar[Unit] = "output change"
    title: ClassVar[str]
    stream: ClassVar[str]
    metric: str

    def __init__(self, null: LatentNull = "span") -> None:
        self.null = null

    @property
    def name(self) -> str:
        """The control's name in the evidence; a null other than the span's says so."""
        return self.title + NULL_NAMES[self.null]

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """Per latent, the output change of each example its test runs on (k,) against the null's
        mean changes over the same examples. One generator per latent (the run's seed, ``stream``
        and the latent's name) draws first the examples, then the moves."""
        rows = LatentRows(at, self.null)
        out = {}
        for target in track(targets, self.stream, len(targets), at.progress):
            code, write = self.written(target, rows)
            draw = generator(at.seed, self.stream, target.name)
            examples = self.examples(rows, code, draw)
            clean, kept = rows.of(examples)
            moves = self.moves(code, kept, draw)
            outputs = self.measure(rows, code, kept, moves)
            out[target.name] = rows.scores(
                self, f"{self.stream} null", target.name, (examples, clean, outputs), (code, moves, write)
            )
        return out

    def written(self, target: CausalTarget, rows: LatentRows) -> tuple[Tensor, Tensor]:
        """The codes the test moves (n_rows,) and the direction they write (width,): the latent's."""
        return code_and_write(target, rows.n_rows, rows.span)

    def examples(self, rows: LatentRows, code: Tensor, draw: torch.Generator) -> Tensor:
        """The examples (sorted) the test runs on: by default those where the latent fires."""
        return rows.firing(code)

    def moves(self, code: Tensor, kept: Tensor, draw: torch.Generator) -> Tensor:
        """How far each kept row (``kept``, (n_rows,) bool) moves along d_j, float64 (k,); along each
        of several directions (k, g) when ``written`` gives several."""
        raise NotImplementedError

    def measure(self, rows: LatentRows, code: Tensor, kept: Tensor, moves: Tensor) -> OutputChange:
        """What the moves are measured by: by default the relative output change."""
        return rows.outputs


class LatentRows:
    """The measured rows of a site, for tests that move latents along their directions: the clean site
    tensors, the example each row belongs to, the data's span (where the null's directions lie) and
    the output change, restricted to the examples a latent's test runs on."""

    def __init__(self, at: AtSite, null: LatentNull = "span") -> None:
        if null not in LATENT_NULLS:
            raise FeatureControlsError(f"unknown latent null {null!r}", f"use one of {LATENT_NULLS}")
        self.at, self.null = at, null
        self.outputs = OutputChange(at.adapter, at.batches, at.site)
        self.clean = [at.adapter.site_tensor(at.site, batch) for batch in at.batches]
        self.metric = MatchedShifts(at.X, "covariance", "mahalanobis")
        self.span = self.metric.basis  # (d, r) the data's span
        owners = [at.adapter.row_examples(b, c) for b, c in zip(at.batches, self.clean, strict=True)]
        firsts = torch.tensor([0, *(batch_rows(b) for b in at.batches)]).cumsum(0)[:-1]
        self.owner = torch.cat([o.cpu() + f for o, f in zip(owners, firsts, strict=True)])  # per row
        self.sizes = [o.numel() for o in owners]  # rows per batch
        self.n_rows = self.owner.numel()
        self.n_examples = int(firsts[-1]) + batch_rows(at.batches[-1])

    def per_example(self, values: Tensor, kept: Tensor | None = None) -> Tensor:
        """Per-row values (n_rows,), or values on the ``kept`` rows only (k,), summed per example
        (n_examples,) float64."""
        owner = self.owner if kept is None else self.owner[kept]
        out = torch.zeros(self.n_examples, dtype=torch.float64)
        return out.index_add_(0, owner, values.cpu().double())

    def firing(self, code: Tensor) -> Tensor:
        """The examples (sorted) with a row where the latent fires."""
        examples: Tensor = torch.unique(self.owner[code.ne(0)])
        return examples

    def of(self, examples: Tensor) -> tuple[list[Tensor], Tensor]:
        """The clean site tensors of ``examples`` per batch that has any (every row of theirs, as the
        sub-batch of those examples gives them), and which measured rows those are (n_rows,) bool."""
        kept = torch.isin(self.owner, examples)
        clean = []
        for c, rows, keep in zip(
            self.clean, torch.split(self.owner, self.sizes), torch.split(kept, self.sizes), strict=True
        ):
            if bool(keep.any()):
                chosen = c.reshape(-1, c.shape[-1])[keep.to(c.device)]
                k = int(torch.unique(rows[keep]).numel())
                clean.append(chosen.reshape(k, *c.shape[1:]) if c.ndim > 2 else chosen)
        return clean, kept

    def scores(
        self, control: CausalControl, stream: str, name: str,
        measured: tuple[Tensor, list[Tensor], OutputChange], moved: tuple[Tensor, Tensor, Tensor],
    ) -> NullScores:  # fmt: skip
        """The change (``measured``: the examples, their clean site tensors, the measure) of each
        example under h' = h + move_i d_j (``moved``: the rows' codes, the moves over the examples'
        rows, d_j), against the mean changes of the same moves along the null's random directions with
        d_j's norm (seeded by ``stream`` and the latent), drawn until STOP reach the real change less
        the margin. Several latents at once (moves (k, g), write (g, width)): row i moves by
        s_i = sum_l move_il d_l, and the null moves it |s_i| along each random direction. A signed
        measure (a read-off) comes with each example's plain change, square-rooted: its size."""
        at = self.at
        (examples, clean, outputs), (code, moves, write) = measured, moved
        if not examples.numel():  # nothing to move: the latent changes nothing here
            nothing = torch.zeros(1, dtype=torch.float64)
            return NullScores(control.metric, control.unit, nothing, nothing)
        sub, patched = outputs.restricted(examples), patches(clean, moves, write)
        real = sub.under_stacked([patched])[0]
        sizes, norm = (moves, write.norm()) if write.ndim == 1 else ((moves @ write).norm(dim=1), 1.0)
        writes = self.directions(code, write, at.n_null, generator(at.seed, stream, name)) * norm
        stop = float(real.mean()) - at.margin
        null = null_changes(sub, clean, sizes.expand(at.n_null, -1), writes, [stop])[0]
        return NullScores(control.metric, control.unit, real, null, size=sub.size(patched))

    def directions(self, code: Tensor, write: Tensor, n: int, draw: torch.Generator) -> Tensor:
        """The null's n unit directions (n, width) for a latent with codes ``code`` (n_rows,) writing
        ``write`` (module docstring)."""
        if self.null == "matched variance" and write.ndim > 1:
            raise FeatureControlsError(
                "the 'matched variance' null moves along one latent's direction, not several",
                'use null="span" or "uncorrelated" for a test that moves several latents at once',
            )
        if self.null == "matched variance":
            return self.metric.of_variance(self.metric.variance_along(write), n, draw)
        u = torch.randn(n, self.span.shape[1], generator=draw, dtype=torch.float64)
        unit: Tensor = torch.nn.functional.normalize(u, dim=1) @ self.span.T
        if self.null == "uncorrelated":  # off the covariance with every code (one, or a group's)
            covariance = self.covariance_with(code)
            Q = torch.linalg.qr(covariance.reshape(-1, covariance.shape[-1]).T)[0]  # (width, g)
            unit = torch.nn.functional.normalize(unit - (unit @ Q) @ Q.T, dim=1)
        return unit

    def covariance_with(self, code: Tensor) -> Tensor:
        """c = mean_i (z_i - mean z)(h_i - mean h) over the measured rows: (width,) for one code
        (n_rows,), (g, width) for several (n_rows, g)."""
        h = torch.cat([c.reshape(-1, c.shape[-1]).cpu().double() for c in self.clean])
        z = code.cpu().double()
        covariance: Tensor = (z - z.mean(dim=0)).movedim(0, -1) @ (h - h.mean(dim=0)) / z.shape[0]
        return covariance


def code_and_write(target: CausalTarget, n: int, span: Tensor) -> tuple[Tensor, Tensor]:
    """The latent's code on the measured rows (n,) and the direction it writes (width,)."""
    if target.code is None or target.direction is None:
        raise FeatureControlsError(
            f"{target.name!r} is a {target.kind}, but this test moves dictionary latents",
            "use it with Latents candidates (the battery runs it on latents only)",
        )
    width = span.shape[0]
    if target.code.shape != (n,) or target.direction.shape != (width,):
        raise FeatureControlsError(
            f"latent {target.name!r} has codes of shape {tuple(target.code.shape)} and a direction of "
            f"shape {tuple(target.direction.shape)}; expected ({n},) and ({width},)",
            "give one code per measured row and a direction in the site's activation space",
        )
    return target.code.cpu(), target.direction.double()
