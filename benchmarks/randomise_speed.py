"""What does a spectrum-matched copy of all-MiniLM-L6-v2 cost, next to the SVDs it needs?

One run, same machine, interleaved over repeats:
- the singular values (``torch.linalg.svdvals``, float64, as the control computes them) of every
  parameter with ndim >= 2, the least work any spectrum-matched randomisation must do;
- ``SpectrumMatchedWeights().randomise(model, seed)``: deep copy, singular values, Haar-random
  U' and V', U' S V'^T, permuted vectors, finiteness check.
Prints a table and, last, ``ratio=<randomise time / SVD time>`` (median of per-repeat ratios).

    HF_HUB_OFFLINE=1 python benchmarks/randomise_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from featurecontrols.apps.run_config import load_model
from featurecontrols.controls.weight.spectrum_matched_weights import SpectrumMatchedWeights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, _, _ = load_model("all-minilm-l6-v2")
    matrices = [p.detach() for p in model.parameters() if p.ndim >= 2]

    def svds() -> None:
        for w in matrices:
            torch.linalg.svdvals(w.reshape(w.shape[0], -1).double())

    control = SpectrumMatchedWeights()
    times: dict[str, list[float]] = {"svd": [], "randomise": []}
    for repeat in range(args.repeats):
        start = time.perf_counter()
        svds()
        times["svd"].append(time.perf_counter() - start)
        start = time.perf_counter()
        control.randomise(model, seed=repeat)
        times["randomise"].append(time.perf_counter() - start)

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"all-MiniLM-L6-v2: {n_params / 1e6:.1f} M parameters, {len(matrices)} matrices (largest "
        f"{tuple(max(matrices, key=torch.Tensor.numel).shape)}), torch threads {torch.get_num_threads()}, "
        f"medians of {args.repeats}"
    )
    print(f"{'what':<58} {'seconds':>8}")
    print(f"{'svdvals of every matrix (float64)':<58} {np.median(times['svd']):>8.3f}")
    print(f"{'SpectrumMatchedWeights().randomise(model)':<58} {np.median(times['randomise']):>8.3f}")
    ratios = [r / s for r, s in zip(times["randomise"], times["svd"], strict=True)]
    print(f"ratio={float(np.median(ratios)):.2f}")


if __name__ == "__main__":
    main()
