"""Latent group ablation: latent ablation of a latent together with the latents that carry what it carries.

Removing one latent tells little when several latents of the dictionary carry its variable: the
model reads the variable from the others (a toy LM's negation word, written by six latents of its
embedding's SAE, moved its answer by less than the null when any one was removed). The group of
latent j is j and every latent k whose codes correlate with j's over the measured rows,

    G_j = {j} u {k : r_jk >= min_correlation}     (``measures/code_correlation.py``),

found from the codes alone, without labels. On every row i of the examples where j fires the test
removes the whole group's contribution,

    h'_i = h_i - s_i,   s_i = sum_{k in G_j} z_k(h_i) d_k,

and the statistic is the mean relative output change over those examples (``latent_ablation.py``).
The null moves each row as far, |s_i|, along B random directions of the data's span (one per draw,
uniform on its unit sphere): a latent that carries nothing, firing on the same examples and moving
each row as far as the group does. A group of one is latent ablation (its null equal in
distribution). The matched-variance null is not defined for a group (it matches one direction's
variance); the uncorrelated null is (orthogonal to the rows' covariance with every code of the
group: ``latent_group_ablation_readoff.py``).

What it claims: "used" says the model reads what the group carries, not that it reads latent j
alone. Correlation is a proxy for "carries the same variable": two latents of one variable that never
fire together (exclusive values) correlate negatively and do not group, which costs nothing, since
on j's rows the other's code is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from featurecontrols.axes.scores import NullScores
from featurecontrols.controls.base import AtSite, CausalTarget
from featurecontrols.controls.causal.latent_ablation import LatentAblation
from featurecontrols.controls.causal.latent_rows import LatentNull, LatentRows, code_and_write
from featurecontrols.errors import FeatureControlsError


class LatentGroupAblation(LatentAblation):
    """Causal control: remove each latent and the latents whose codes correlate with it at
    ``min_correlation`` or more; the null moves each row as far along random directions of the data
    (module docstring). Runs on dictionary latents only."""

    title = "latent group ablation vs random directions"
    stream = "latent group ablation"
    metric = "relative output change when the latent and those correlated with it are removed"

    def __init__(self, null: LatentNull = "span", min_correlation: float = 0.5) -> None:
        super().__init__(null)
        self.min_correlation = min_correlation

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, NullScores]:
        """As ``LatentTest.scores``, after checking the parameters."""
        if not 0.0 < self.min_correlation <= 1.0:
            raise FeatureControlsError(
                f"min_correlation must lie in (0, 1], got {self.min_correlation!r}",
                "pass the smallest code correlation that puts a latent in another's group, e.g. 0.5",
            )
        if self.null == "matched variance":
            raise FeatureControlsError(
                "latent group ablation has no 'matched variance' null (it is defined for one latent's "
                "direction)",
                'use null="span" or null="uncorrelated"',
            )
        raw = super().scores(at, targets)
        return {t.name: replace(raw[t.name], group=self.group(t)) for t in targets}

    def group(self, target: CausalTarget) -> Tensor:
        """G_j (module docstring): latent j first, then the others, as indices of its dictionary."""
        if target.dictionary is None or target.latent is None:
            raise FeatureControlsError(
                f"latent {target.name!r} came without its dictionary's other latents",
                "give the target its dictionary (CausalTarget.dictionary and .latent)",
            )
        correlation = target.dictionary.correlation.of(target.latent)
        others = torch.nonzero(correlation >= self.min_correlation).flatten()
        return torch.cat([torch.tensor([target.latent]), others[others != target.latent]])

    def written(self, target: CausalTarget, rows: LatentRows) -> tuple[Tensor, Tensor]:
        """The group's codes (n_rows, g), latent j first, and their directions (g, width)."""
        code_and_write(target, rows.n_rows, rows.span)  # the latent's own shapes, checked
        group, every = self.group(target), target.dictionary
        assert every is not None  # checked by group
        return every.codes.gather(group).double(), every.writes[group].double()

    def examples(self, rows: LatentRows, code: Tensor, draw: torch.Generator) -> Tensor:
        """The examples where latent j (the group's first column) fires."""
        return rows.firing(code[:, 0])
