"""Counterfactual patching: the used axis by interchange intervention, for features used nonlinearly.

For every example x_i the user gives a counterfactual x'_i: the same input with the feature changed
(a bit flipped, a minimal pair of sentences). At the site, the activation h_i = h(x_i) is replaced by
h'_i = h(x'_i) while everything else runs on x_i (activation patching, Vig et al. 2020; interchange
intervention, Geiger et al. 2021), and the output change is measured per example
(``controls/output_change.py``):

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

from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from featurecontrols.adapters.interventions import Patch, site_tensor
from featurecontrols.adapters.sites import Site
from featurecontrols.axes.evidence import Evidence
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.output_change import OutputChange
from featurecontrols.seeding import generator
from featurecontrols.stats import bootstrap_mean_ci, paired_sign_test

Forward = Callable[[nn.Module, Any], Any]
Noise = Literal["covariance", "isotropic"]


class CounterfactualPatching:
    """Patch the site from counterfactual inputs; compare with random perturbations of equal norm.

    Parameters
    ----------
    forward : ``forward(model, batch)`` returns the outputs to measure.
    n_draws : random perturbations per example (R above).
    noise : ``"covariance"`` (shaped like the clean activations' covariance) or ``"isotropic"``.
    """

    name = "counterfactual patching vs equal-norm noise"

    def __init__(self, forward: Forward, n_draws: int = 16, noise: Noise = "covariance") -> None:
        self.forward = forward
        self.n_draws = n_draws
        self.noise = noise

    def fit(self, model: nn.Module, batches: Sequence[Any], site: Site) -> CounterfactualPatching:
        """Record the clean outputs of ``model`` on ``batches`` and the site's activations on them."""
        if self.n_draws < 1 or self.noise not in get_args(Noise):
            raise FeatureControlsError(
                f"CounterfactualPatching needs n_draws >= 1 and noise in {get_args(Noise)}; "
                f"got n_draws={self.n_draws}, noise={self.noise!r}",
                'use e.g. CounterfactualPatching(forward, n_draws=16, noise="covariance")',
            )
        self.outputs_ = OutputChange(model, batches, site, self.forward)
        self.clean_ = [site_tensor(model, site, batch, self.forward) for batch in batches]
        rows = torch.cat([c.reshape(-1, c.shape[-1]) for c in self.clean_]).double()
        if self.noise == "covariance":
            centred = rows - rows.mean(dim=0)
            eigenvalues, V = torch.linalg.eigh(centred.T @ centred / max(1, rows.shape[0] - 1))
            self.shape_ = V * eigenvalues.clamp(min=0.0).sqrt()  # Sigma = shape shape^T
        else:
            self.shape_ = torch.eye(rows.shape[1], dtype=torch.float64)
        return self

    def change(self, counterfactual_batches: Sequence[Any], seed: int) -> tuple[Tensor, Tensor]:
        """Per-example output change (n,) when patched from the counterfactuals, and the mean change
        (n,) over ``n_draws`` equal-norm random perturbations."""
        outputs = self.outputs_
        if len(counterfactual_batches) != len(outputs.batches):
            raise FeatureControlsError(
                f"{len(counterfactual_batches)} counterfactual batches for {len(outputs.batches)} batches",
                "give one counterfactual input per input, batched the same way",
            )
        sources = []
        for b, (batch, clean) in enumerate(zip(counterfactual_batches, self.clean_, strict=True)):
            source = site_tensor(outputs.model, outputs.site, batch, self.forward)
            if not bool(torch.isfinite(source).all()):
                raise FeatureControlsError(
                    f"counterfactual batch {b} gives NaN or inf activations at the site",
                    "check the counterfactual inputs (they run through the model like the inputs)",
                )
            if source.shape != clean.shape:
                raise FeatureControlsError(
                    f"counterfactual batch {b} gives site activations of shape {tuple(source.shape)}, "
                    f"the input batch {tuple(clean.shape)}",
                    "pair every input with a counterfactual of the same shape (same length, same padding)",
                )
            sources.append(source)
        real = outputs.under_each([Patch(s) for s in sources])
        draw = generator(seed, "counterfactual patching noise")
        noise = torch.zeros_like(real)
        for _ in range(self.n_draws):
            pairs = zip(sources, self.clean_, strict=True)
            noise += outputs.under_each([Patch(c + self._equal_norm(s - c, draw)) for s, c in pairs])
        return real, noise / self.n_draws

    def _equal_norm(self, difference: Tensor, draw: torch.Generator) -> Tensor:
        """Random vectors (shaped by ``noise``) with the norms of ``difference`` along its last dim."""
        r = torch.randn(difference.shape, generator=draw, dtype=torch.float64) @ self.shape_.T
        scale = difference.norm(dim=-1, keepdim=True).double() / r.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        noise: Tensor = r.mul_(scale)
        return noise.to(difference)


def assess_patching(
    real: Tensor, noise: Tensor, name: str, *, seed: int, n_bootstrap: int, confidence: float
) -> Evidence:
    """Used-axis evidence from per-example changes: patched (n,) against equal-norm noise (n,)."""
    d = (real - noise).double()
    low, high = bootstrap_mean_ci(
        d[:, None], n_bootstrap, confidence, generator(seed, "bootstrap", "patching", name)
    )
    return Evidence(
        axis="used",
        control=CounterfactualPatching.name,
        metric="relative output change under counterfactual patching",
        score=float(real.mean()),
        control_score=float(noise.mean()),
        effect=float(d.mean()),
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        p_value=paired_sign_test(d > 0, d < 0),
        detail={
            "examples": int(d.numel()),
            "examples_above_noise": int((d > 0).sum()),
            "patched": [round(float(v), 6) for v in real],  # per example, for the report's plot
            "noise": [round(float(v), 6) for v in noise],
        },
    )
