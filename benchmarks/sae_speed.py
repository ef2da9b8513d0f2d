"""TopK SAE training throughput (tokens/s): featurecontrols next to SAELens, same data, same machine.

d_in 512, d_sae 4096, k 32, batch 4096, Adam, aux-k loss on, float32. The data are planted sparse
features (4096 random directions, about 32 active per token) saved once and read by both trainers.
SAELens runs in the interpreter given by --saelens-python (default /tmp/saelens-venv/bin/python, a
separate venv: sae-lens pins transformer-lens < 4), or in this interpreter when it imports sae_lens.
The last line is ``speedup=<ours / SAELens>``.

    .venv/bin/python benchmarks/sae_speed.py [--tokens 49152] [--saelens-python PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder

D_IN, D_SAE, K, BATCH = 512, 4096, 32, 4096

SAELENS = """
import itertools, sys, time, torch
from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
torch.set_num_threads({threads})
data = torch.load(sys.argv[1])
batches = itertools.cycle(data.split({batch}))
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in={d_in}, d_sae={d_sae}, k={k}, device="cpu"))
cfg = SAETrainerConfig(
    total_training_samples=data.shape[0], train_batch_size_samples={batch}, lr=1e-3, lr_end=1e-3
)
start = time.perf_counter()
SAETrainer(cfg=cfg, sae=sae, data_provider=batches).fit()
print(data.shape[0] / (time.perf_counter() - start))
"""


def ours(data: torch.Tensor) -> float:
    """Tokens per second of one epoch of our TopK SAE (aux-k loss on, dead_after small enough to use it)."""
    sae = SparseAutoencoder(D_SAE, "topk", k=K, batch_size=BATCH, lr=1e-3, dead_after=2 * BATCH)
    start = time.perf_counter()
    sae.fit(iter(data.split(BATCH)))
    return data.shape[0] / (time.perf_counter() - start)


def saelens(data_path: Path, python: str) -> tuple[float, str]:
    """Tokens per second of SAELens's own trainer, and where it ran."""
    script = SAELENS.format(threads=torch.get_num_threads(), batch=BATCH, d_in=D_IN, d_sae=D_SAE, k=K)
    if Path(python).exists():
        where = python
    elif importlib.util.find_spec("sae_lens") is not None:
        where = sys.executable
    else:
        raise SystemExit(f"no SAELens: {python} does not exist and sae_lens does not import here")
    done = subprocess.run([where, "-c", script, str(data_path)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1]), where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=12 * BATCH)
    parser.add_argument("--saelens-python", default="/tmp/saelens-venv/bin/python")
    args = parser.parse_args()
    base = torch.randn(args.tokens, D_IN, generator=torch.Generator().manual_seed(0))
    data = PlantedSparseFeatures(D_SAE, K).plant(base, seed=0).activations.contiguous()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "acts.pt"
        torch.save(data, path)
        theirs, where = saelens(path, args.saelens_python)
    mine = ours(data)
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU")
    print(f"data: {args.tokens} tokens, d_in {D_IN}, d_sae {D_SAE}, k {K}, batch {BATCH}")
    print("| trainer | tokens/s |\n|---|---|")
    print(f"| featurecontrols SparseAutoencoder (topk, sparse backward) | {mine:,.0f} |")
    print(f"| SAELens SAETrainer + TopKTrainingSAE ({where}) | {theirs:,.0f} |")
    print(f"speedup={mine / theirs:.2f}")


if __name__ == "__main__":
    main()
