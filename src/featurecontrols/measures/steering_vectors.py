"""Steering vectors for k features found together: probe, mass-mean, covariance-transformed, dual.

If activations are a = sum_i f_i d_i (representation vectors d_i) and feature i is read off by the
probe vector r_i (rows of R, k x d), reading is R a = f exactly when R D = I: the read-off and the
representation vectors are dual bases. The *surgical* steering vectors are therefore the columns
of D = pinv(R) (R full row rank, k <= d): adding alpha s_i moves probe i by alpha and every other
probe by 0, since R s_i = e_i. The probe vector r_i moves probe j by alpha (r_j . r_i) / ||r_i||^2,
zero only when the r_i are orthogonal (the best probe is not the best steering vector).

Candidates, each row scaled so that it moves its own probe by exactly 1 (r_i . v_i = 1), so that
steering by alpha gives equal target movement for every kind:

    probe        r_i / ||r_i||^2
    mass-mean    m_i / (r_i . m_i),      m_i = mean(a | y_i = 1) - mean(a | y_i = 0)
    covariance   S r_i / (r_i S r_i),    S = Cov(a)  (the activation pattern of a linear decoder,
                                         Haufe et al. 2014, NeuroImage 87)
    dual         s_i = pinv(R)[:, i]     (already r_i . s_i = 1, r_j . s_i = 0)
    random       a Gaussian direction with the norm of s_i: the null, which steers no feature
"""

from __future__ import annotations

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe
from featurecontrols.finders.mass_mean_probe import class_mean_directions
from featurecontrols.finders.ridge_probe import RidgeProbe
from featurecontrols.seeding import generator
from featurecontrols.validation import check_activations, check_labels

KINDS = ("probe", "mass-mean", "covariance", "dual", "random")


def dual_basis(R: Tensor) -> Tensor:
    """The surgical steering vectors as rows (k, d): pinv(R)^T, so that R @ result.T = I.

    Raises unless R (k, d) has full row rank k (k <= d): otherwise no vector moves one probe alone.
    """
    Rd = R.double()
    k, d = Rd.shape
    rank = int(torch.linalg.matrix_rank(Rd))
    if rank < k:
        raise FeatureControlsError(
            f"the {k} probe vectors span only {rank} dimension(s) of {d}: no steering vector moves one "
            "probe while keeping the others fixed (R D = I has no solution)",
            f"steer at most {min(k, d)} linearly independent features together (drop redundant ones, "
            "or use a wider site)",
        )
    dual: Tensor = torch.linalg.pinv(Rd).T.contiguous()
    return dual


class SteeringVectors:
    """Fit k probes on activations X (n, d) with labels Y (n, k); build every kind of steering vector.

    Parameters
    ----------
    probe : the supervised finder whose ``directions_`` are the read-off vectors (default RidgeProbe).
    seed : seed of the random (null) vectors.

    Attributes
    ----------
    read_off_ : (k, d) float64 probe matrix R.
    vectors_ : kind -> (k, d) float64 steering vectors, one row per feature (kinds in ``KINDS``).
    """

    def __init__(self, probe: Probe | None = None, seed: int = 0) -> None:
        self.probe = probe
        self.seed = seed

    def fit(self, X: Tensor, Y: Tensor) -> SteeringVectors:
        X = check_activations(X)
        Y = check_labels(Y, X.shape[0])
        probe = self.probe if self.probe is not None else RidgeProbe()
        R = probe.fit(X, Y).directions_.double()
        dual = dual_basis(R)
        Xd = X.double()
        cov = torch.cov(Xd.T).reshape(X.shape[1], X.shape[1])
        patterns = R @ cov
        means = class_mean_directions(X, Y)
        gaussian = torch.randn(R.shape, generator=generator(self.seed, "steering", "random"), dtype=R.dtype)
        self.read_off_ = R
        self.vectors_ = {
            "probe": R / R.square().sum(dim=1, keepdim=True),
            "mass-mean": means / (R * means).sum(dim=1, keepdim=True),
            "covariance": patterns / (R * patterns).sum(dim=1, keepdim=True),
            "dual": dual,
            "random": gaussian * (dual.norm(dim=1) / gaussian.norm(dim=1))[:, None],
        }
        return self
