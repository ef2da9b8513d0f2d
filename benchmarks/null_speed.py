"""How much does a 1,000-shuffle permutation null cost, next to what a user would write?

One run, same data (Gaussian X of 20,000 x 512, a binary label with a linear signal), same machine:
- one scikit-learn fit (LogisticRegression lbfgs, and RidgeClassifier);
- a loop of scikit-learn fits over 1,000 shuffled labels (timed on a sample of shuffles and
  extrapolated: the table says how many were timed);
- one LogisticProbe and one RidgeProbe fit, and featurecontrols' batched nulls: 1,000 shuffles as
  label columns of one batched logistic fit (Böhning-preconditioned CG) and of one closed-form ridge
  solve (shuffling included).
``--condition`` spreads X's singular values (sklearn's lbfgs slows down a lot on ill-conditioned X).
It also times the floor of any exact batched logistic null on this machine (the permutations, and the
three passes of X over the columns that a first Newton step and one convergence check need) and prints
``floor_speedup``, the most such a null could gain over the sklearn loop here.
Prints a table, ``floor_ratio=<batched logistic null / floor>`` and, last,
``speedup=<sklearn logistic loop / batched logistic null>``.

    python benchmarks/null_speed.py [--n 20000] [--d 512] [--shuffles 1000] [--sample 20] [--condition 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from featurecontrols.controls.label.shuffled_labels import ShuffledLabels
from featurecontrols.finders import LogisticProbe, RidgeProbe


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--shuffles", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=20, help="sklearn shuffled fits actually timed")
    parser.add_argument("--condition", type=float, default=1.0, help="condition number of X (1: isotropic)")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    torch.manual_seed(0)
    X = torch.randn(args.n, args.d) * torch.logspace(0, -float(np.log10(args.condition)), args.d)
    y = ((X @ torch.randn(args.d) / args.d**0.5 + 0.5 * torch.randn(args.n)) > 0).float()
    n_train = int(0.7 * args.n)
    Xtr, Xte, ytr, yte = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    Xtr_np, Xte_np, ytr_np, yte_np = Xtr.numpy(), Xte.numpy(), ytr.numpy(), yte.numpy()
    alpha_sklearn = 1e-3 * float(Xtr.var(0).mean()) * n_train  # the same penalty as RidgeProbe()

    # featurecontrols first: sklearn's OpenMP pool keeps spinning after its fits and would slow torch.
    rows: list[tuple[str, float, str]] = []
    nulls: dict[str, float] = {}
    for name, make in (("LogisticProbe", LogisticProbe), ("RidgeProbe", RidgeProbe)):
        probe = make()
        t = timed(lambda probe=probe: probe.fit(Xtr, ytr))
        rows.append((f"featurecontrols {name}, 1 fit", t, f"acc {float(probe.score(Xte, yte)[0]):.4f}"))

        def batched_null(make: Callable[[], LogisticProbe | RidgeProbe] = make) -> torch.Tensor:
            null = ShuffledLabels().null_labels(y, args.shuffles, torch.Generator().manual_seed(1))
            return make().fit(Xtr, null[:n_train]).score(Xte, null[n_train:])

        null_acc = batched_null()
        nulls[name] = timed(batched_null)
        rows.append(
            (
                f"featurecontrols {name} batched null, {args.shuffles} shuffles",
                nulls[name],
                f"null acc {float(null_acc.mean()):.4f} +- {float(null_acc.std()):.4f}",
            )
        )

    # What no exact batched logistic null can avoid: the shuffled labels themselves, and three passes of
    # X over the columns (X^T Y for the first Newton step, X W for its margins, X^T R for the gradient
    # that tells whether a column has converged) plus the held-out scores, at this machine's matmul speed.
    t_labels = timed(lambda: ShuffledLabels().null_labels(y, args.shuffles, torch.Generator().manual_seed(1)))
    Z = torch.cat([Xtr, torch.ones(n_train, 1)], dim=1)
    Y = torch.rand(n_train, args.shuffles)
    W = torch.randn(args.d + 1, args.shuffles)
    Zte = torch.cat([Xte, torch.ones(args.n - n_train, 1)], dim=1)
    t_passes = timed(lambda: (Z.T @ Y, Z @ W, Z.T @ Y, Zte @ W))
    floor = t_labels + t_passes
    rows.append((f"floor: {args.shuffles} label permutations", t_labels, "torch.randperm per shuffle"))
    rows.append((f"floor: 3 passes of X over {args.shuffles} columns + test", t_passes, "matmuls only"))

    logistic = LogisticRegression(max_iter=1000)
    t = timed(lambda: logistic.fit(Xtr_np, ytr_np))
    rows.append(("sklearn LogisticRegression, 1 fit", t, f"acc {logistic.score(Xte_np, yte_np):.4f}"))
    ridge = RidgeClassifier(alpha=alpha_sklearn)
    t_ridge = timed(lambda: ridge.fit(Xtr_np, ytr_np))
    rows.append(("sklearn RidgeClassifier, 1 fit", t_ridge, f"acc {ridge.score(Xte_np, yte_np):.4f}"))

    rng = np.random.default_rng(0)
    sample = [rng.permutation(ytr_np) for _ in range(args.sample)]
    start = time.perf_counter()
    for ys in sample:
        LogisticRegression(max_iter=1000).fit(Xtr_np, ys)
    t_log_loop = (time.perf_counter() - start) / args.sample * args.shuffles
    start = time.perf_counter()
    for ys in sample:
        RidgeClassifier(alpha=alpha_sklearn).fit(Xtr_np, ys)
    t_ridge_loop = (time.perf_counter() - start) / args.sample * args.shuffles
    note = f"extrapolated from {args.sample} timed fits"
    rows.append((f"sklearn LogisticRegression loop, {args.shuffles} shuffles", t_log_loop, note))
    rows.append((f"sklearn RidgeClassifier loop, {args.shuffles} shuffles", t_ridge_loop, note))

    t_null = nulls["LogisticProbe"]
    print(
        f"X {args.n} x {args.d} (condition {args.condition:g}), binary label, 70/30 split, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'what':<56} {'seconds':>9} {'x logistic null':>16}  note")
    for name, seconds, extra in rows:
        print(f"{name:<56} {seconds:>9.3f} {seconds / t_null:>16.1f}  {extra}")
    print(f"ridge_speedup={t_ridge_loop / nulls['RidgeProbe']:.1f}")
    print(
        f"floor_speedup={t_log_loop / floor:.1f}  (the most any exact batched logistic null could reach here)"
    )
    print(f"floor_ratio={t_null / floor:.2f}  (batched logistic null / floor, this run)")
    print(f"speedup={t_log_loop / t_null:.1f}")


if __name__ == "__main__":
    main()
