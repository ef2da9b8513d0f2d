"""Counterfactual patching: the used axis by interchange intervention, for features used nonlinearly.

For every example x_i the user gives a counterfactual x'_i: the same input with the feature changed
(a bit flipped, a minimal pair of sentences). At the site, the activation h_i = h(x_i) is replaced by
h'_i = h(x'_i) while everything else runs on x_i (activation patching, Vig et al. 2020; interchange
intervention, Geiger et al. 2021), and the output change is measured per example
(``measures/output_change.py``):

    real_i = change_i(h_i -> h'_i).

The control replaces h_i by h_i + r_i instead, with r_i random in direction and of the same norm as
the counterfactual's difference, ||r_i|| = ||h'_i - h_i|| (per position for sequence sites): a
perturbation of the same size that carries no particular feature. By default r_i is drawn from
N(0, Sigma), Sigma the covariance of the site's clean activations, then rescaled: a change shaped like
the differences between inputs. Isotropic directions (``noise="isotropic"``) are a weaker null: most
of them point where the data never varies and the model is insensitive, so on a real model almost
any on-data change beats them (all-MiniLM-L6-v2: every sentence feature at both sites). With R draws,

    d_i = real_i - mean_r change_i(h_i -> h_i + r_i),

and the evidence is the mean of d (effect), its bootstrap interval over examples, and the exact
one-sided sign test over examples that d_i > 0 more often than not (examples are independent given
the model, so the test needs no null of thousands of forward passes).

A feature the model uses downstream of the site moves the output more than noise of its size. A
feature the site carries but the model ignores moves it no more, and usually less: training makes
the output insensitive to the changes it does not use. Unlike directional ablation, the test does
not assume the feature lives along one direction: on sparse parity the relevant bits, which the
output reads only through their product, are found used at the hidden layer; their class-mean
directions are not. The premise is that the model is selectively sensitive at the site: where it
reads every direction (a bottleneck such as the 5-dimensional hidden layer of a toy model of
superposition) noise of the same norm moves the output as much as the feature does, and the test
says nothing (bench: 1/30 represented TMS features pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, get_args

import torch
from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import PairedScores
from featurecontrols.controls.base import AtSite, CausalTarget, Requirement
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.matched_shifts import Match, MatchedShifts, Noise, paired_changes
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import derive_seed, generator


class CounterfactualPatching(Params):
    """Causal control: patch the site from counterfactual inputs; compare with equal-norm noise.

    Parameters
    ----------
    n_draws : random perturbations per example (R above).
    noise : ``"covariance"`` (shaped like the clean activations' covariance) or ``"isotropic"``.
    match : the norm the perturbations share with the counterfactual's difference: ``"euclidean"``
        or ``"mahalanobis"`` (the data's metric; ``measures/matched_shifts.py``).
    """

    name = "counterfactual patching vs equal-norm noise"
    requires: ClassVar[Requirement] = "counterfactuals"
    metric = "relative output change under counterfactual patching"
    unit: ClassVar[Unit] = "output change"

    def __init__(self, n_draws: int = 16, noise: Noise = "covariance", match: Match = "euclidean") -> None:
        self.n_draws = n_draws
        self.noise = noise
        self.match = match

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, PairedScores]:
        """Per target, the per-example change when patched (n,) and the mean change under noise (n,)."""
        if self.n_draws < 1 or self.noise not in get_args(Noise) or self.match not in get_args(Match):
            raise FeatureControlsError(
                f"CounterfactualPatching needs n_draws >= 1, noise in {get_args(Noise)} and match in "
                f"{get_args(Match)}; got n_draws={self.n_draws}, noise={self.noise!r}, match={self.match!r}",
                'use e.g. CounterfactualPatching(n_draws=16, noise="covariance", match="euclidean")',
            )
        outputs = OutputChange(at.adapter, at.batches, at.site)
        clean = [at.adapter.site_tensor(at.site, batch) for batch in at.batches]
        shifts = MatchedShifts(torch.cat([c.reshape(-1, c.shape[-1]) for c in clean]), self.noise, self.match)
        out = {}
        for target in track(targets, "counterfactual patching", len(targets), at.progress):
            deltas = [s - c for s, c in zip(_sources(at.adapter, at.site, target, clean), clean, strict=True)]
            draw = generator(derive_seed(at.seed, "patching", target.name), "counterfactual patching noise")
            real, noise = paired_changes(outputs, clean, deltas, shifts, self.n_draws, draw)
            out[target.name] = PairedScores(self.metric, self.unit, real, noise)
        return out


def _sources(adapter: ModelAdapter, site: Site, target: CausalTarget, clean: list[Tensor]) -> list[Tensor]:
    """The site's tensors on the target's counterfactual batches, checked against the clean ones."""
    batches = list(target.counterfactuals or [])
    if len(batches) != len(clean):
        raise FeatureControlsError(
            f"{len(batches)} counterfactual batches of {target.name!r} for {len(clean)} batches",
            "give one counterfactual input per input, batched the same way",
        )
    sources = []
    for b, (batch, c) in enumerate(zip(batches, clean, strict=True)):
        source = adapter.site_tensor(site, batch)
        if not bool(torch.isfinite(source).all()):
            raise FeatureControlsError(
                f"counterfactual batch {b} of {target.name!r} gives NaN or inf activations at the site",
                "check the counterfactual inputs (they run through the model like the inputs)",
            )
        if source.shape != c.shape:
            raise FeatureControlsError(
                f"counterfactual batch {b} gives site activations of shape {tuple(source.shape)}, "
                f"the input batch {tuple(c.shape)}",
                "pair every input with a counterfactual of the same shape (same length, same padding)",
            )
        sources.append(source)
    return sources
