"""Logistic probe: L2-regularised logistic regression for many label columns at once.

Each column j of Y (0/1) gets its own (w_j, b_j) minimising scikit-learn's objective, with its C:

    f(w, b) = sum_i [log(1 + exp(m_i)) - y_i m_i] + ||w||^2 / (2C),    m_i = x_i . w + b,

the intercept b unpenalised. The solver is batched over columns and shares all the work that does
not depend on the labels:

- the activations are centred once (so the intercept decouples) and Böhning's bound on the Hessian,
  X_c^T X_c / 4 + I / C (Böhning 1992, "Multinomial logistic regression algorithm"), is inverted
  once (eigendecomposition in float64, so ill-conditioned X is fine) and used by every column as a
  preconditioner;
- the first step, from w = 0, is Newton's (at 0 the bound is the Hessian: the ridge solution);
- then preconditioned nonlinear conjugate gradients (Polak-Ribière+), each step a safeguarded
  Newton line search (bracketed, so the objective always decreases) on the per-example curvature
  p_i (1 - p_i), p_i = sigmoid(m_i);
- a column stops when sqrt(4 g^T P g / n) < tol (g the gradient, P the inverse bound): a bound on
  the RMS change of the training margins that one more Böhning step would make. Converged columns
  leave the batch, so a permutation null costs a few passes of X over all the columns, and the
  real label, which needs more steps, runs alone.

The (n x k) products run in X's dtype (float32 by default; float64 for reference fits).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import BinaryClassifier
from featurecontrols.validation import check_labels


class LogisticProbe(BinaryClassifier):
    """Batched binary L2 logistic regression (scikit-learn's ``LogisticRegression(C=C)`` per column).

    Parameters
    ----------
    C : inverse regularisation strength, as in scikit-learn (the penalty is ||w||^2 / (2C), the loss
        summed over examples).
    tol : stop a column when one more Böhning step would move its training margins by less than
        ``tol`` (RMS).
    max_iter : conjugate-gradient iterations per column at most (a warning names the columns that
        did not converge).
    max_line_search : safeguarded Newton steps per line search at most.
    """

    def __init__(
        self, C: float = 1.0, tol: float = 1e-4, max_iter: int = 200, max_line_search: int = 6
    ) -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.max_line_search = max_line_search

    def fit(self, X: Tensor, Y: Tensor) -> LogisticProbe:
        """Fit k probes: X (n, d) float, Y (n, k) or (n,) with values in {0, 1}."""
        X = self._fit_input(X)
        Y = check_labels(Y, X.shape[0], recode=False)
        if not (0.0 < self.C < float("inf")) or self.tol <= 0 or self.max_iter < 1:
            raise FeatureControlsError(
                f"LogisticProbe needs 0 < C < inf, tol > 0 and max_iter >= 1; got C={self.C}, "
                f"tol={self.tol}, max_iter={self.max_iter}",
                "use e.g. LogisticProbe(C=1.0, tol=1e-4, max_iter=200)",
            )
        dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
        X = X.to(dtype)
        n, d = X.shape
        mean = X.double().mean(dim=0)
        Z = torch.empty(n, d + 1, dtype=dtype, device=X.device)  # [X - mean, 1]: the intercept decouples
        torch.sub(X, mean.to(dtype), out=Z[:, :d])
        Z[:, d] = 1.0
        solver = _Solver(Z, 1.0 / self.C, self.tol, self.max_line_search)
        coef, self.n_iter_, self.converged_ = solver.run(Y.to(dtype), self.max_iter)
        if not bool(self.converged_.all()):
            bad = torch.nonzero(~self.converged_).flatten().tolist()
            warnings.warn(
                f"LogisticProbe did not converge in {self.max_iter} iterations for {len(bad)} label "
                f"column(s) (first: {bad[:5]}); raise max_iter, or lower C if the classes are separable",
                RuntimeWarning,
                stacklevel=2,
            )
        self.coef_ = coef[:d].T.contiguous()  # (k, d)
        self.intercept_ = coef[d] - mean.to(dtype) @ coef[:d]  # back from centred coordinates
        self.directions_ = self.coef_
        return self

    def decision_function(self, X: Tensor) -> Tensor:
        """Margins x . w + b, shape (n, k); positive means class 1."""
        X = self._input(X).to(self.coef_.dtype)
        return torch.addmm(self.intercept_, X, self.coef_.T)

    def predict_proba(self, X: Tensor) -> Tensor:
        """P(y = 1 | x) = sigmoid(x . w + b), shape (n, k)."""
        return torch.sigmoid(self.decision_function(X))


class _Solver:
    """The batched solver of the module docstring, on centred activations Z = [X - mean, 1]."""

    def __init__(self, Z: Tensor, penalty: float, tol: float, max_line_search: int) -> None:
        n, p = Z.shape
        self.Z, self.ZT = Z, Z.T
        self.n, self.tol, self.max_line_search = n, tol, max_line_search
        gram = (self.ZT[:-1] @ Z[:, :-1]).double()
        eigenvalues, V = torch.linalg.eigh(gram)
        bound = torch.zeros(p, p, dtype=torch.float64, device=Z.device)  # inverse of Böhning's bound
        bound[:-1, :-1] = (V / (eigenvalues.clamp(min=0.0) / 4.0 + penalty)) @ V.T
        bound[-1, -1] = 4.0 / n
        self.P = bound.to(Z.dtype)
        self.penalty = torch.full((p, 1), penalty, dtype=Z.dtype, device=Z.device)
        self.penalty[-1] = 0.0

    def gradient(self, residual: Tensor, B: Tensor) -> Tensor:
        """Z^T (sigmoid(M) - Y) + penalty * B, with ``residual`` = sigmoid(M) - Y."""
        return torch.addcmul(self.ZT @ residual, self.penalty, B)

    def run(self, Y: Tensor, max_iter: int) -> tuple[Tensor, Tensor, Tensor]:
        """Coefficients (p, k) in centred coordinates, iterations used and convergence, per column."""
        n, k = Y.shape
        out = torch.zeros(self.P.shape[0], k, dtype=Y.dtype, device=Y.device)
        n_iter = torch.full((k,), max_iter, dtype=torch.long)
        converged = torch.zeros(k, dtype=torch.bool)
        columns = torch.arange(k)
        # Newton's step from zero: at w = 0 every p_i = 1/2 and the Hessian is the bound itself.
        G = self.ZT @ Y
        G.neg_()
        G[-1] += n / 2.0
        H = self.P @ G
        D = -H
        B = torch.zeros_like(D)
        U = self.Z @ D
        M = torch.zeros_like(U)
        prob = torch.empty_like(U)
        work = torch.empty_like(U)
        state: tuple[Tensor, Tensor] | None = None  # previous (G, H), for Polak-Ribière
        for it in range(max_iter + 1):
            B = self.line_search(M, U, B, D, G, Y, prob, work, curvature_known=it == 0)
            prob.sub_(Y)  # prob held sigmoid(M); now the residual
            G = self.gradient(prob, B)
            H = self.P @ G
            done = (4.0 * (G * H).sum(dim=0) / n).sqrt().cpu() < self.tol
            if bool(done.any()):
                out[:, columns[done]] = B[:, done.to(B.device)]
                n_iter[columns[done]] = it
                converged[columns[done]] = True
                keep = ~done
                if not bool(keep.any()):
                    return out, n_iter, converged
                columns = columns[keep]
                kept = keep.to(B.device)
                M, Y, B, G, H, D = M[:, kept], Y[:, kept], B[:, kept], G[:, kept], H[:, kept], D[:, kept]
                prob, work, U = torch.empty_like(M), torch.empty_like(M), torch.empty_like(M)
                if state is not None:
                    state = (state[0][:, kept], state[1][:, kept])
            if it == max_iter:
                break
            if state is not None:
                beta = ((G * (H - state[1])).sum(dim=0) / (state[0] * state[1]).sum(dim=0)).clamp(min=0.0)
                D = beta * D - H
                uphill = (G * D).sum(dim=0) >= 0  # lost conjugacy: restart along -H
                D[:, uphill] = -H[:, uphill]
            else:
                D = -H
            state = (G, H)
            torch.mm(self.Z, D, out=U)
        out[:, columns] = B
        return out, n_iter, converged

    def line_search(
        self,
        M: Tensor,
        U: Tensor,
        B: Tensor,
        D: Tensor,
        G: Tensor,
        Y: Tensor,
        prob: Tensor,
        work: Tensor,
        *,
        curvature_known: bool,
    ) -> Tensor:
        """Minimise f(B + t D) over t > 0 for every column; updates M (margins) and ``prob`` in place.

        phi'(t) = sum_i (p_i - y_i) u_i + t D^T pen D + B^T pen D and phi''(t) = sum_i p_i (1 - p_i) u_i^2
        + D^T pen D, with u = Z D. Newton steps inside a bracket [lo, hi] around the minimiser (bisection
        when Newton leaves it) stop once |phi'(t)| <= |phi'(0)| / 10. The first step is tried on every
        column; the columns it leaves open go on alone (in a permutation null, the real label's). Returns
        B + t D.
        """
        slope0 = (G * D).sum(dim=0)  # phi'(0) < 0
        dpd = (self.penalty * D * D).sum(dim=0)
        bpd = (self.penalty * B * D).sum(dim=0)
        if curvature_known:  # from zero, the bound is the Hessian: Newton's step is t = 1
            t = torch.ones_like(slope0)
        else:
            torch.sigmoid(M, out=prob)
            torch.addcmul(prob, prob, prob, value=-1.0, out=work)
            t = -slope0 / (_column_dot(work, U, U) + dpd).clamp(min=torch.finfo(U.dtype).tiny)
        M.addcmul_(U, t)
        torch.sigmoid(M, out=prob)
        slope = _column_dot(torch.sub(prob, Y, out=work), U) + t * dpd + bpd
        open_ = torch.nonzero(slope.abs() > 0.1 * slope0.abs()).flatten()
        if open_.numel() and self.max_line_search > 1:
            search = _Search(M[:, open_], U[:, open_], Y[:, open_], prob[:, open_], slope0[open_], dpd[open_])
            t[open_] = search.refine(t[open_], slope[open_], bpd[open_], self.max_line_search - 1)
            M[:, open_], prob[:, open_] = search.M, search.prob
        return B + t * D


class _Search:
    """The line search of ``_Solver.line_search`` after its first step, on the columns still open."""

    def __init__(self, M: Tensor, U: Tensor, Y: Tensor, prob: Tensor, slope0: Tensor, dpd: Tensor) -> None:
        self.M, self.U, self.Y, self.prob = M, U, Y, prob  # prob = sigmoid(M) throughout
        self.slope0, self.dpd = slope0, dpd

    def refine(self, t: Tensor, slope: Tensor, bpd: Tensor, steps: int) -> Tensor:
        """Up to ``steps`` more safeguarded Newton steps from t, whose slope is ``slope``; M follows t."""
        lo = torch.zeros_like(t)
        hi = torch.full_like(t, float("inf"))
        work = torch.empty_like(self.M)
        for _ in range(steps):
            settled = slope.abs() <= 0.1 * self.slope0.abs()
            if bool(settled.all()):
                break
            lo = torch.where(slope < 0, t, lo)
            hi = torch.where(slope > 0, t, hi)
            torch.addcmul(self.prob, self.prob, self.prob, value=-1.0, out=work)
            curvature = (_column_dot(work, self.U, self.U) + self.dpd).clamp(min=torch.finfo(t.dtype).tiny)
            newton = t - slope / curvature
            inside = (newton > lo) & (newton < hi)
            fallback = torch.where(torch.isinf(hi), 2.0 * t, (lo + hi) / 2.0)
            new_t = torch.where(settled, t, torch.where(inside, newton, fallback))
            self.M.addcmul_(self.U, new_t - t)
            t = new_t
            torch.sigmoid(self.M, out=self.prob)
            slope = _column_dot(torch.sub(self.prob, self.Y, out=work), self.U) + t * self.dpd + bpd
        return t


def _column_dot(A: Tensor, B: Tensor, C: Tensor | None = None) -> Tensor:
    """Per-column sums of A * B (* C), shape (k,); overwrites A."""
    A.mul_(B)
    if C is not None:
        A.mul_(C)
    return A.sum(dim=0)
