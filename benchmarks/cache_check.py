"""What does checking an activation cache cost, next to reading it?

Before a cache is trusted, ``ShardedStore.fill`` checks every shard's size and sha256 against the
manifest; a user without the check would simply memory-map and read the shards. One run, one cache of
``--rows`` x ``--width`` float32 activations (1 GiB by default) in 64k-row shards on this machine's
disk: writing it (shards, fsync, their checksums and the manifest), the check, and a full read as the
battery does it (``store.load``: the shards memory-mapped and concatenated, then summed). The files are
in the page cache after the write, as they are when a run reads its own cache back. Prints a table
and, last, ``check_over_read=<check seconds / read seconds>``.

    python benchmarks/cache_check.py [--rows 262144] [--width 1024]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from featurecontrols.pipeline.store import ShardedStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    X = torch.randn(args.rows, args.width, generator=torch.Generator().manual_seed(0))
    root = Path(tempfile.mkdtemp(prefix="cache-check-"))
    try:
        store = ShardedStore(root, "key", params={"benchmark": "cache_check"})
        start = time.perf_counter()
        store.fill(lambda writer: writer.append("site", X))
        write = time.perf_counter() - start
        start = time.perf_counter()
        assert store.problem() is None
        check = time.perf_counter() - start
        start = time.perf_counter()
        total = float(store.load("site").sum())  # as the battery reads a cache
        read = time.perf_counter() - start
        assert abs(total - float(X.sum())) <= 1e-3 * X.numel() ** 0.5
    finally:
        shutil.rmtree(root)
    gib = X.numel() * 4 / 2**30
    print(f"{'step':<36} {'seconds':>8} {'GiB/s':>7}")
    for name, seconds in (("write (shards, fsync, sha256)", write), ("check (size + sha256)", check),
                          ("read (load as the battery does, sum)", read)):  # fmt: skip
        print(f"{name:<36} {seconds:>8.2f} {gib / seconds:>7.2f}")
    print(f"cache {gib:.2f} GiB")
    print(f"check_over_read={check / read:.2f}")


if __name__ == "__main__":
    main()
