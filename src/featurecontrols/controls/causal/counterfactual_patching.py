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
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.interventions import Patch
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.evidence import Unit
from featurecontrols.axes.scores import PairedScores
from featurecontrols.controls.base import AtSite, CausalTarget, Requirement
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.params import Params
from featurecontrols.progress import track
from featurecontrols.seeding import derive_seed, generator

Noise = Literal["covariance", "isotropic"]


class CounterfactualPatching(Params):
    """Causal control: patch the site from counterfactual inputs; compare with equal-norm noise.

    Parameters
    ----------
    n_draws : random perturbations per example (R above).
    noise : ``"covariance"`` (shaped like the clean activations' covariance) or ``"isotropic"``.
    """

    name = "counterfactual patching vs equal-norm noise"
    requires: ClassVar[Requirement] = "counterfactuals"
    metric = "relative output change under counterfactual patching"
    unit: ClassVar[Unit] = "output change"

    def __init__(self, n_draws: int = 16, noise: Noise = "covariance") -> None:
        self.n_draws = n_draws
        self.noise = noise

    def scores(self, at: AtSite, targets: Sequence[CausalTarget]) -> dict[str, PairedScores]:
        """Per target, the per-example change when patched (n,) and the mean change under noise (n,)."""
        if self.n_draws < 1 or self.noise not in get_args(Noise):
            raise FeatureControlsError(
                f"CounterfactualPatching needs n_draws >= 1 and noise in {get_args(Noise)}; "
                f"got n_draws={self.n_draws}, noise={self.noise!r}",
                'use e.g. CounterfactualPatching(n_draws=16, noise="covariance")',
            )
        outputs = OutputChange(at.adapter, at.batches, at.site)
        clean = [at.adapter.site_tensor(at.site, batch) for batch in at.batches]
        shape = self._noise_shape(clean)
        out = {}
        for target in track(targets, "counterfactual patching", len(targets), at.progress):
            sources = _sources(at.adapter, at.site, target, clean)
            real = outputs.under_each([Patch(s) for s in sources])
            draw = generator(derive_seed(at.seed, "patching", target.name), "counterfactual patching noise")
            noise = torch.zeros_like(real)
            for _ in range(self.n_draws):
                pairs = zip(sources, clean, strict=True)
                noise += outputs.under_each([Patch(c + _equal_norm(s - c, shape, draw)) for s, c in pairs])
            out[target.name] = PairedScores(self.metric, self.unit, real, noise / self.n_draws)
        return out

    def _noise_shape(self, clean: list[Tensor]) -> Tensor:
        """A matrix A with A A^T the noise covariance: the clean activations' (or the identity)."""
        rows = torch.cat([c.reshape(-1, c.shape[-1]) for c in clean]).double()
        if self.noise == "isotropic":
            return torch.eye(rows.shape[1], dtype=torch.float64)
        centred = rows - rows.mean(dim=0)
        eigenvalues, V = torch.linalg.eigh(centred.T @ centred / max(1, rows.shape[0] - 1))
        shape: Tensor = V * eigenvalues.clamp(min=0.0).sqrt()
        return shape


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


def _equal_norm(difference: Tensor, shape: Tensor, draw: torch.Generator) -> Tensor:
    """Random vectors (N(0, shape shape^T)) with the norms of ``difference`` along its last dim."""
    r = torch.randn(difference.shape, generator=draw, dtype=torch.float64) @ shape.T
    scale = difference.norm(dim=-1, keepdim=True).double() / r.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    noise: Tensor = r.mul_(scale)
    return noise.to(difference)
