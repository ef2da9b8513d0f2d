"""Interventions on the forward pass at any site: add, set a projection, project out, patch.

Each intervention maps the site's activations h (..., d) at the site's positions to new ones:

    AddVector(v, alpha)         h' = h + alpha v
    SetProjection(u, value)     h' = h + (value - h . u_hat) u_hat          (u_hat = u / ||u||)
    ProjectOut(U)               h' = h - h P                                 (zero-ablation)
    ProjectOut(U, mean=mu)      h' = h - (h - mu) P                          (mean-ablation)
    Patch(h_src)                h' = h_src                                   (activation patching)
    Patch(h_src, U)             h' = h + (h_src - h) P                       (patch the subspace only)

with P = Q Q^T the orthogonal projector onto the row span of U (Q from a QR factorisation).
:func:`applied` installs a list of (site, intervention) pairs through :func:`sites.intervene`
(hooks, tuple outputs, nesting and removal are handled there), in order, and checks on exit that
the forward pass reached every site.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from featurecontrols.adapters.sites import Site, call_model, intervene
from featurecontrols.errors import FeatureControlsError

Forward = Callable[[nn.Module, Any], Any]


def as_directions(directions: Tensor, what: str = "direction") -> Tensor:
    """Rows of a (d,) or (r, d) tensor as a float64 (r, d) matrix; zero or non-finite rows raise."""
    D = torch.as_tensor(directions).detach().to(device="cpu", dtype=torch.float64)
    D = D[None] if D.ndim == 1 else D
    if D.ndim != 2 or D.shape[0] == 0 or D.shape[1] == 0:
        raise FeatureControlsError(
            f"a {what} must be a vector (d,) or a matrix of row vectors (r, d), got shape {tuple(D.shape)}",
            "pass one vector per row, in the site's activation space",
        )
    if not bool(torch.isfinite(D).all()):
        raise FeatureControlsError(f"the {what} contains NaN or inf", "pass finite vectors")
    norms = D.norm(dim=1)
    if bool((norms == 0).any()):
        raise FeatureControlsError(
            f"{what} {int(torch.nonzero(norms == 0)[0])} is the zero vector, which has no direction",
            "pass non-zero vectors (a class-mean difference or a probe that came out zero has no signal)",
        )
    return D


def _check_width(h: Tensor, width: int, what: str) -> None:
    if h.shape[-1] != width:
        raise FeatureControlsError(
            f"the {what} has width {width} but the site's activations have width {h.shape[-1]}",
            "give vectors in the activation space of the site they are applied at (check the site name)",
        )


class Intervention:
    """Maps activations (..., d) at a site's positions to new ones of the same shape."""

    def __call__(self, h: Tensor) -> Tensor:
        raise NotImplementedError


class AddVector(Intervention):
    """h' = h + alpha v: steering along ``vector`` (d,)."""

    def __init__(self, vector: Tensor, alpha: float = 1.0) -> None:
        self.vector = as_directions(vector, "steering vector")[0]
        self.alpha = alpha

    def __call__(self, h: Tensor) -> Tensor:
        _check_width(h, self.vector.shape[0], "steering vector")
        return h + self.alpha * self.vector.to(h)


class SetProjection(Intervention):
    """h' = h + (value - h . u_hat) u_hat: the coordinate along ``direction`` becomes ``value``."""

    def __init__(self, direction: Tensor, value: float) -> None:
        d = as_directions(direction)[0]
        self.unit = d / d.norm()
        self.value = value

    def __call__(self, h: Tensor) -> Tensor:
        _check_width(h, self.unit.shape[0], "direction")
        u = self.unit.to(h)
        out: Tensor = h + (self.value - h @ u)[..., None] * u
        return out


def _orthonormal_rows(D: Tensor) -> Tensor:
    """Q^T (r', d): an orthonormal basis of the row span of D (rank-deficient rows dropped)."""
    Q, Rf = torch.linalg.qr(D.T)
    keep = Rf.diagonal().abs() > 1e-10 * float(Rf.diagonal().abs().max())
    basis: Tensor = Q[:, keep].T.contiguous()
    return basis


class ProjectOut(Intervention):
    """Remove the subspace spanned by the rows of ``directions``: zero-ablation, or mean-ablation.

    h' = h - (h - mu) P with P the projector onto the span; mu = 0 unless ``mean`` (d,) is given,
    so mean-ablation keeps the dataset-average coordinate, zero-ablation removes it.
    """

    def __init__(self, directions: Tensor, mean: Tensor | None = None) -> None:
        self.basis = _orthonormal_rows(as_directions(directions, "ablation direction"))
        width = self.basis.shape[1]
        self.mean = None if mean is None else torch.as_tensor(mean).detach().double().reshape(-1)
        if self.mean is not None and self.mean.shape[0] != width:
            raise FeatureControlsError(
                f"the ablation directions have width {width} but the mean has width {self.mean.shape[0]}",
                "pass directions and the mean activation of the same site",
            )

    def __call__(self, h: Tensor) -> Tensor:
        _check_width(h, self.basis.shape[1], "ablation direction")
        Q = self.basis.to(h)
        centred = h if self.mean is None else h - self.mean.to(h)
        return h - (centred @ Q.T) @ Q


class Patch(Intervention):
    """Activation patching: h' = h_src, or h + (h_src - h) P to patch only the span of ``directions``.

    ``source`` holds the site's activations on another input, shaped like the site's tensor at its
    positions (read them with :func:`site_tensor`).
    """

    def __init__(self, source: Tensor, directions: Tensor | None = None) -> None:
        self.source = source.detach()
        self.basis = None if directions is None else _orthonormal_rows(as_directions(directions))

    def __call__(self, h: Tensor) -> Tensor:
        if self.source.shape != h.shape:
            raise FeatureControlsError(
                f"the patch source has shape {tuple(self.source.shape)} but the site's activations "
                f"have shape {tuple(h.shape)}",
                "record the source at the same site on a batch of the same shape (site_tensor)",
            )
        src = self.source.to(h)
        if self.basis is None:
            return src.clone()
        Q = self.basis.to(h)
        return h + ((src - h) @ Q.T) @ Q


def _at_positions(site: Site, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Apply ``fn`` to the site's positions along dim 1 (all of the tensor when it names none)."""

    def apply(h: Tensor) -> Tensor:
        if site.position is None:
            return fn(h)
        if h.ndim < 3:
            raise FeatureControlsError(
                f"site {site} selects positions along dim 1, but its tensor has shape {tuple(h.shape)}",
                f"drop the position selector: use '{Site(site.module, site.io)}'",
            )
        out = h.clone()
        out[:, site.position] = fn(h[:, site.position])
        return out

    return apply


@contextmanager
def applied(
    model: nn.Module, interventions: Sequence[tuple[str | Site, Callable[[Tensor], Tensor]]]
) -> Iterator[None]:
    """While active, every (site, intervention) changes the forward pass, in list order.

    An intervention is any map of the activations at the site's positions (an :class:`Intervention`).

    Interventions at the same module compose (the later one sees the earlier one's result). All
    hooks are removed on exit. If the body ran without the forward pass reaching a site, raises.
    """
    parsed = [(Site.parse(site), fn) for site, fn in interventions]
    reached = [False] * len(parsed)

    def hit(i: int, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        def run(h: Tensor) -> Tensor:
            reached[i] = True
            return fn(h)

        return run

    with ExitStack() as stack:
        for i, (site, fn) in enumerate(parsed):
            stack.enter_context(intervene(model, site, hit(i, _at_positions(site, fn))))
        yield
    missing = [str(site) for (site, _), ok in zip(parsed, reached, strict=True) if not ok]
    if missing:
        raise FeatureControlsError(
            f"the forward pass never reached the intervention site(s) {', '.join(missing)}",
            "intervene at a module that forward(model, batch) runs (see sites.site_names(model))",
        )


def site_tensor(model: nn.Module, site: str | Site, batch: Any, forward: Forward | None = None) -> Tensor:
    """The site's tensor on one batch, at its positions, unflattened (a :class:`Patch` source)."""
    parsed = Site.parse(site)
    seen: list[Tensor] = []

    def keep(h: Tensor) -> Tensor:
        seen.append(h.detach().clone())
        return h

    run = forward if forward is not None else call_model
    with torch.no_grad(), applied(model, [(parsed, keep)]):
        run(model, batch)
    return seen[0]
