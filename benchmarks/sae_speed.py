"""TopK SAE training at matched quality: featurecontrols next to SAELens, same data, same tokens.

Planted sparse features (``--d-sae`` random unit directions in ``--d-in`` dimensions, about ``--k``
active per token, ``controls/input/planted_structure.py``) give ``--tokens`` training tokens and 8,192
held-out ones, saved once as safetensors and read by both trainers. Both train a TopK SAE with
``--d-sae`` latents and k = ``--k``, Adam at lr 1e-3, batches of ``--batch``, aux-k loss on, float32,
``--epochs`` passes over the same tokens (the defaults, 524,288 tokens x 8 passes, take both to a
plateau: the curve printed shows ours flat from about 12 s). Compared side by side on the held-out
tokens: the fraction of variance unexplained (FVU), L0, dead latents (never active there), the
recovery of the planted directions (for each, the largest cosine with a decoder row; the mean over
directions), and the wall time of training. Ours is also evaluated every ``--eval-every`` batches
(outside the clock), which gives the time-to-quality: the training seconds it takes to reach
SAELens's final FVU. SAELens runs in the interpreter given by ``--saelens-python`` (default
``.venv-saelens/bin/python``, which ``make bench-sae`` makes: sae-lens pins transformer-lens < 4), or
in this one when it imports sae_lens. Prints a table, our FVU curve, and, last,
``speedup=<SAELens training seconds / our seconds to SAELens's final FVU>`` (a speedup counts only at
equal or better final quality: the table says).

    .venv/bin/python benchmarks/sae_speed.py [--tokens 524288] [--epochs 8] [--saelens-python PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from featurecontrols.controls.input.planted_structure import PlantedSparseFeatures
from featurecontrols.finders.sparse_autoencoder import SparseAutoencoder

EVAL = 8192

SAELENS = """
import sys, time, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
torch.set_num_threads({threads})
data = load_file(sys.argv[1])
train = data["train"]
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in={d_in}, d_sae={d_sae}, k={k}, device="cpu"))
cfg = SAETrainerConfig(
    total_training_samples={epochs} * train.shape[0], train_batch_size_samples={batch}, lr=1e-3, lr_end=1e-3
)
start = time.perf_counter()
batches = (b for _ in range({epochs}) for b in train.split({batch}))
SAETrainer(cfg=cfg, sae=sae, data_provider=batches).fit()
seconds = time.perf_counter() - start
with torch.no_grad():
    z = sae.encode(data["eval"])
    out = {{"z": z, "x_hat": sae.decode(z), "decoder": sae.W_dec.detach().clone()}}
save_file({{k: v.contiguous() for k, v in out.items()}}, sys.argv[2])
print(seconds)
"""


def quality(x: Tensor, z: Tensor, x_hat: Tensor, decoder: Tensor, planted: Tensor) -> dict[str, float]:
    """FVU, L0, dead latents and mean max cosine of the planted directions, on held-out tokens."""
    fvu = float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    decoder = decoder.detach()
    unit = decoder / decoder.norm(dim=1, keepdim=True).clamp(min=1e-12)
    recovery = float((planted @ unit.T).max(dim=1).values.mean())
    active = z != 0
    return {
        "fvu": fvu,
        "l0": float(active.sum(1).float().mean()),
        "dead": int((~active.any(0)).sum()),
        "recovery": recovery,
    }


def ours(
    train: Tensor, held_out: Tensor, planted: Tensor, args: argparse.Namespace
) -> tuple[float, list[tuple[float, float]], dict[str, float]]:
    """(training seconds, [(seconds, FVU)] every ``eval_every`` batches, final quality)."""
    sae = SparseAutoencoder(
        args.d_sae, "topk", k=args.k, batch_size=args.batch, lr=1e-3, dead_after=2 * args.batch
    )
    curve: list[tuple[float, float]] = []
    clock = {"start": 0.0, "paused": 0.0}

    def batches() -> Iterator[Tensor]:
        clock["start"] = time.perf_counter()
        for i, batch in enumerate(b for _ in range(args.epochs) for b in train.split(args.batch)):
            if i and i % args.eval_every == 0:
                paused = time.perf_counter()
                z = sae.encode(held_out)
                curve.append(
                    (
                        paused - clock["start"] - clock["paused"],
                        quality(held_out, z, sae.decode(z), sae.decoder_, planted)["fvu"],
                    )
                )
                clock["paused"] += time.perf_counter() - paused
            yield batch

    sae.fit(batches())
    seconds = time.perf_counter() - clock["start"] - clock["paused"]
    z = sae.encode(held_out)
    final = quality(held_out, z, sae.decode(z), sae.decoder_, planted)
    curve.append((seconds, final["fvu"]))
    return seconds, curve, final


def saelens(data: Path, out: Path, python: str, args: argparse.Namespace) -> tuple[float, str]:
    """SAELens's training seconds and where it ran; its held-out codes, reconstructions, decoder: ``out``."""
    script = SAELENS.format(
        threads=torch.get_num_threads(),
        batch=args.batch,
        d_in=args.d_in,
        d_sae=args.d_sae,
        k=args.k,
        epochs=args.epochs,
    )
    if Path(python).exists():
        where = python
    elif importlib.util.find_spec("sae_lens") is not None:
        where = sys.executable
    else:
        raise SystemExit(f"no SAELens: {python} does not exist and sae_lens does not import here")
    done = subprocess.run(
        [where, "-c", script, str(data), str(out)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1]), where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1 << 19)
    parser.add_argument("--d-in", type=int, default=128)
    parser.add_argument("--d-sae", type=int, default=512)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training tokens")
    parser.add_argument("--eval-every", type=int, default=256, help="batches between our FVU checks")
    parser.add_argument("--saelens-python", default=".venv-saelens/bin/python")
    args = parser.parse_args()
    base = torch.randn(args.tokens + EVAL, args.d_in, generator=torch.Generator().manual_seed(0))
    planted = PlantedSparseFeatures(args.d_sae, args.k).plant(base, seed=0, keep_codes=False)
    data = planted.activations.contiguous()
    train, held_out = data[: args.tokens], data[args.tokens :]
    with tempfile.TemporaryDirectory() as folder:
        path, out = Path(folder) / "data.safetensors", Path(folder) / "saelens.safetensors"
        save_file({"train": train, "eval": held_out.contiguous()}, str(path))
        theirs_s, where = saelens(path, out, args.saelens_python, args)
        theirs = quality(held_out, **load_file(str(out)), planted=planted.directions)
    mine_s, curve, mine = ours(train, held_out, planted.directions, args)
    reached = next((t for t, fvu in curve if fvu <= theirs["fvu"]), None)
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU")
    print(
        f"data: {args.tokens:,} training tokens x {args.epochs} passes, {EVAL:,} held out; d_in {args.d_in}, "
        f"d_sae {args.d_sae}, k {args.k}, batch {args.batch}; SAELens in {where}"
    )
    print(
        "| trainer | seconds | tokens/s | FVU | L0 | dead | planted recovery |\n|---|---|---|---|---|---|---|"
    )
    for name, seconds, q in (
        ("featurecontrols SparseAutoencoder (topk)", mine_s, mine),
        ("SAELens SAETrainer + TopKTrainingSAE", theirs_s, theirs),
    ):
        rate = args.epochs * args.tokens / seconds
        print(
            f"| {name} | {seconds:.1f} | {rate:,.0f} | {q['fvu']:.4f} | {q['l0']:.1f} | {q['dead']} | "
            f"{q['recovery']:.4f} |"
        )
    print("our FVU curve (training seconds, FVU): " + ", ".join(f"({t:.1f}, {f:.4f})" for t, f in curve))
    if reached is None:
        print(f"ours never reached SAELens's final FVU {theirs['fvu']:.4f}")
        print("speedup=0.00")
    else:
        print(f"ours reached SAELens's final FVU {theirs['fvu']:.4f} after {reached:.1f} s of training")
        print(f"speedup={theirs_s / reached:.2f}")


if __name__ == "__main__":
    main()
