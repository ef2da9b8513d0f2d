"""Random shifts of the site's activations matched in size to a given shift: the null of the paired
used tests (counterfactual patching, dual interchange).

For a real shift delta of an activation h (a counterfactual's difference h' - h, or a feature moved
along its dual vector), a matched random shift r has a random direction and the same size,

    euclidean     ||r||_2 = ||delta||_2
    mahalanobis   r^T S^-1 r = delta^T S^-1 delta,   S = Sigma + gamma mean(eig Sigma) I   (the data's
                  own metric, shrunk: an estimated shift that leaks a little into a direction of
                  almost no variance is not taken for a huge change),

drawn as r = A z, z ~ N(0, I), rescaled, with A A^T = S (``noise="covariance"``: shaped like the
differences between inputs) or the identity (``"isotropic"``); Sigma is the covariance of the clean
activations.
Matching in the Euclidean norm lets covariance-shaped noise pile onto the high-variance directions,
which a model that reads what dominates its activations reads most, so a used feature that dominates
the variance looks no more used than noise; the data's metric measures every shift in standard
deviations of the data along it, so a shift as large as the feature's change is as typical a change
of the inputs as the feature's own. Shifts are kept inside the span the data visits
(eigen-directions of Sigma with variance above ``1e-6`` of the largest): a direction the data never
visits carries no change of any input, only an intervention artefact (Makelov et al. 2023).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from featurecontrols.measures.output_change import OutputChange

Noise = Literal["covariance", "isotropic"]
Match = Literal["euclidean", "mahalanobis"]


class MatchedShifts:
    """Random shifts like a given one (module docstring), from the clean activations' covariance."""

    def __init__(self, clean_rows: Tensor, noise: Noise, match: Match, shrinkage: float = 0.05) -> None:
        rows = clean_rows.double()
        centred = rows - rows.mean(dim=0)
        self.covariance = centred.T @ centred / max(1, rows.shape[0] - 1)  # (d, d) Sigma
        eigenvalues, V = torch.linalg.eigh(self.covariance)
        keep = eigenvalues > 1e-6 * eigenvalues.max().clamp(min=1e-300)
        self.basis = V[:, keep]  # (d, r) the data's span
        kept = eigenvalues[keep]
        self.stds = kept.sqrt()  # (r,) its standard deviations
        self.scales = (kept + shrinkage * kept.mean()).sqrt()  # (r,) shrunk, for the metric
        self.noise, self.match = noise, match

    def inside(self, delta: Tensor) -> Tensor:
        """``delta`` (..., d) projected onto the data's span."""
        B = self.basis.to(delta)
        projected: Tensor = (delta @ B) @ B.T
        return projected

    def size(self, delta: Tensor) -> Tensor:
        """The size of each shift (..., d) in the matched norm, shape (...)."""
        coords = delta.double() @ self.basis
        if self.match == "mahalanobis":
            coords = coords / self.scales
        sizes: Tensor = coords.norm(dim=-1)
        return sizes

    def one_std(self, n: int, generator: torch.Generator, uncorrelated: Tensor | None = None) -> Tensor:
        """n random shifts (n, d), each moving the data by one standard deviation along a random
        direction of its whitened coordinates: Sigma^(1/2) u, u uniform on the unit sphere of the span;
        with a read-off r (d,) ``uncorrelated``, on the sphere's great circle orthogonal to r's
        whitened coordinates a = Sigma^(1/2) r: the shift's coordinate u . z is then uncorrelated with
        r . h over the data, and moves r . h by 0."""
        u = torch.randn(n, self.basis.shape[1], generator=generator, dtype=torch.float64)
        if uncorrelated is not None:
            a = torch.nn.functional.normalize(self.stds * (uncorrelated.double() @ self.basis), dim=0)
            u = u - (u @ a)[:, None] * a
        u = u / u.norm(dim=1, keepdim=True).clamp(min=1e-300)
        shifts: Tensor = (u * self.stds) @ self.basis.T
        return shifts

    def of_variance(self, variance: float, n: int, generator: torch.Generator) -> Tensor:
        """n random unit directions (n, d) of the data's span along which the data varies by
        ``variance``, u^T Sigma u = variance: in the eigenbasis, u = cos(t) a + sin(t) b with a uniform on
        the unit sphere of the eigen-directions of larger variance and b of the others, and
        cos^2(t) = (variance - b^T L b) / (a^T L a - b^T L b), L the eigenvalues. A variance outside the
        span's range is clamped into it (at the top, the draw is the top eigen-direction)."""
        lam = self.stds**2
        q = min(max(variance, float(lam.min())), float(lam.max()))
        z = torch.randn(n, lam.numel(), generator=generator, dtype=torch.float64)
        high = lam > q
        if not bool(high.any()):
            high = lam >= lam.max()
        a = torch.nn.functional.normalize(z * high, dim=1)
        b = torch.nn.functional.normalize(z * ~high, dim=1)
        va, vb = (a**2 * lam).sum(dim=1), (b**2 * lam).sum(dim=1)
        cos2 = ((q - vb) / (va - vb).clamp(min=1e-300)).clamp(0.0, 1.0)
        u = cos2.sqrt()[:, None] * a + (1.0 - cos2).sqrt()[:, None] * b
        directions: Tensor = u @ self.basis.T
        return directions

    def variance_along(self, v: Tensor) -> float:
        """The data's variance along v's unit direction within the span, (Pv)^T Sigma (Pv) / |Pv|^2."""
        coords = v.double() @ self.basis
        return float((coords**2 * self.stds**2).sum() / (coords**2).sum().clamp(min=1e-300))

    def like(self, delta: Tensor, generator: torch.Generator) -> Tensor:
        """Random shifts with the sizes of ``delta`` (..., d) in the matched norm."""
        z = torch.randn((*delta.shape[:-1], self.basis.shape[1]), generator=generator, dtype=torch.float64)
        shaped = z * self.scales if self.noise == "covariance" else z
        r = shaped @ self.basis.T
        scale = self.size(delta) / self.size(r).clamp(min=1e-300)
        shift: Tensor = (r * scale[..., None]).to(delta)
        return shift


def paired_changes(
    outputs: OutputChange,
    clean: list[Tensor],
    deltas: list[Tensor],
    shifts: MatchedShifts,
    n_draws: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Per example, the output change (n,) when each batch's site tensor moves by its delta, and the
    mean change (n,) over ``n_draws`` matched random shifts of the same sizes."""
    from featurecontrols.adapters.interventions import Patch

    real = outputs.under_each([Patch(c + d) for c, d in zip(clean, deltas, strict=True)])
    null = torch.zeros_like(real)
    for _ in range(n_draws):
        pairs = zip(clean, deltas, strict=True)
        null += outputs.under_each([Patch(c + shifts.like(d, generator)) for c, d in pairs])
    return real, null / n_draws
