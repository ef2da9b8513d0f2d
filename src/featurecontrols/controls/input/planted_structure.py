"""Planted structure: the data's structure replaced by random sparse features of matched statistics.

Activations are rebuilt as x = b + s sum_i c_i d_i with r random unit directions d_i (Gaussian,
normalised), each feature active independently with probability p = l0 / r and coefficient
c_i ~ U[0, 1] when active (the Toy Models of Superposition data, Elhage et al. 2022), s chosen so
that the total variance E||x - E x||^2 and b so that the mean E x match the real activations. Match ``l0`` to
the real finder's L0 and ``n_features`` to its live latents. A finder that recovers the planted
directions (high MMCS) as well as it finds latents in the real activations would find such
structure anywhere: its latents say how sparse the data is, not what the model learned.

The codes are drawn CHUNK elements at a time (rows x features), and the moments summed over chunks
of rows, so memory is the float64 signal (n, d) plus one chunk, and the (n, r) codes are kept only
when asked for (a 16k-feature control on 100k tokens would otherwise hold 13 GB of float64 codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site
from featurecontrols.errors import FeatureControlsError
from featurecontrols.measures.sae_metrics import moments
from featurecontrols.params import Params
from featurecontrols.seeding import generator
from featurecontrols.validation import check_activations

CHUNK = 1 << 22  # code entries (rows x features) drawn at once


@dataclass
class PlantedActivations:
    """Synthetic activations (n, d), the planted unit directions (r, d) and their codes (n, r), or
    None when they were not kept."""

    activations: Tensor
    directions: Tensor
    codes: Tensor | None


class PlantedSparseFeatures(Params):
    """Input control: random sparse features with ``l0`` active out of ``n_features`` on average."""

    name = "planted-sparse-features"

    def __init__(self, n_features: int = 64, l0: float = 8.0) -> None:
        self.n_features = n_features
        self.l0 = l0

    def control_activations(
        self, adapter: ModelAdapter, batches: Sequence[Any], sites: Sequence[Site], seed: int
    ) -> dict[str, Tensor]:
        """Per site, planted activations with the real activations' shape, mean and total variance."""
        real = adapter.activations(batches, sites)
        return {key: self.plant(X, seed, keep_codes=False).activations for key, X in real.items()}

    def plant(self, X: Tensor, seed: int, keep_codes: bool = True) -> PlantedActivations:
        """Synthetic activations with X's shape, mean and total variance; X itself is not modified."""
        X = check_activations(X)
        if self.n_features < 1 or not 0 < self.l0 <= self.n_features:
            raise FeatureControlsError(
                f"need n_features >= 1 and 0 < l0 <= n_features, got {self.n_features} and {self.l0}",
                "match them to the real finder: its live latents and its L0",
            )
        n, d = X.shape
        rng = generator(seed, "planted_structure")
        directions = torch.randn(self.n_features, d, generator=rng, dtype=torch.float64)
        directions /= directions.norm(dim=1, keepdim=True)
        p = self.l0 / self.n_features
        signal = torch.empty(n, d, dtype=torch.float64)
        codes = torch.empty(n, self.n_features, dtype=X.dtype) if keep_codes else None
        rows = max(1, CHUNK // self.n_features)
        for start in range(0, n, rows):
            m = min(rows, n - start)
            active = torch.rand(m, self.n_features, generator=rng, dtype=torch.float64) < p
            chunk = torch.rand(m, self.n_features, generator=rng, dtype=torch.float64) * active
            signal[start : start + m] = chunk @ directions
            if codes is not None:
                codes[start : start + m] = chunk
        mean, target = moments(X)  # sums over rows: their ratio is that of the variances
        signal_mean, spread = moments(signal)
        scale = (target / spread.clamp(min=1e-300)).sqrt()
        offset = mean - scale * signal_mean
        return PlantedActivations(
            activations=signal.mul_(scale).add_(offset).to(X.dtype),
            directions=directions.to(X.dtype),
            codes=None if codes is None else codes.mul_(scale.to(X.dtype)),
        )
