"""A damaged or stale activation cache is never read: it is detected, discarded and recomputed; two
processes sharing a cache folder both finish with the right activations."""

import json
import multiprocessing
import sys
from pathlib import Path

import pytest
import torch
from test_store import CountingSeq
from torch import Tensor, nn

from featurecontrols.adapters.sites import read_activations
from featurecontrols.pipeline.store import ShardedStore

SITES = ["0", "2"]


def model() -> CountingSeq:
    torch.manual_seed(0)
    return CountingSeq(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def batches() -> list[Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(10, 3, generator=g) for _ in range(6)]


def cached(root: Path, params: dict[str, object] | None = None) -> tuple[dict[str, Tensor], int]:
    """Activations through the store at ``root`` and the number of forward passes it took."""
    m = model()
    store = ShardedStore(root, "key", shard_rows=16, params=params or {"model": "m0"})
    acts = read_activations(m, batches(), SITES, store=store)
    return {k: v.clone() for k, v in acts.items()}, m.calls


def shard(root: Path, index: int = 1) -> Path:
    manifest = json.loads((root / "key" / "manifest.json").read_text())
    return root / "key" / manifest["sites"]["0"]["shards"][index]["name"]


@pytest.fixture
def reference() -> dict[str, Tensor]:
    return read_activations(model(), batches(), SITES)


def test_a_sound_cache_is_read_without_running_the_model(
    tmp_path: Path, reference: dict[str, Tensor]
) -> None:
    _, calls = cached(tmp_path)
    again, calls_again = cached(tmp_path)
    assert calls == 6 and calls_again == 0
    assert all(torch.equal(again[s], reference[s]) for s in SITES)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "missing shard", "manifest cut"])
def test_a_damaged_cache_is_detected_and_recomputed(
    tmp_path: Path, reference: dict[str, Tensor], damage: str
) -> None:
    cached(tmp_path)
    path = shard(tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:])
    elif damage == "missing shard":
        path.unlink()
    else:
        manifest = tmp_path / "key" / "manifest.json"
        manifest.write_text(manifest.read_text()[:40])
    store = ShardedStore(tmp_path, "key", shard_rows=16, params={"model": "m0"})
    assert store.problem() is not None
    with pytest.warns(UserWarning, match="recomputing"):
        again, calls = cached(tmp_path)
    assert calls == 6  # recomputed, not read
    assert all(torch.equal(again[s], reference[s]) for s in SITES)
    assert store.problem() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".key.lock", "key"]  # nothing else left


def test_a_cache_made_with_other_parameters_is_stale(tmp_path: Path) -> None:
    cached(tmp_path, {"model": "m0"})
    store = ShardedStore(tmp_path, "key", params={"model": "m1"})
    assert "other parameters" in str(store.problem())
    with pytest.warns(UserWarning, match="other parameters"):
        _, calls = cached(tmp_path, {"model": "m1"})
    assert calls == 6
    _, calls = cached(tmp_path, {"model": "m1"})
    assert calls == 0


def test_a_killed_writers_temporary_folder_is_swept(tmp_path: Path) -> None:
    (tmp_path / ".key.tmp-999999").mkdir(parents=True)
    (tmp_path / ".key.tmp-999999" / "s0-000000.npy").write_bytes(b"half")
    cached(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".key.lock", "key"]


def _worker(root: str, out: str) -> None:
    acts, calls = cached(Path(root))
    torch.save({"acts": acts, "calls": calls}, out)


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks")
def test_two_processes_sharing_a_cache_folder_both_finish_correct(
    tmp_path: Path, reference: dict[str, Tensor]
) -> None:
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out{i}.pt" for i in range(2)]
    workers = [context.Process(target=_worker, args=(str(tmp_path / "cache"), str(o))) for o in outs]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    results = [torch.load(o, weights_only=True) for o in outs]
    assert sorted(r["calls"] for r in results) == [0, 6]  # one wrote the cache, the other read it
    for r in results:
        assert all(torch.equal(r["acts"][s], reference[s]) for s in SITES)
    assert ShardedStore(tmp_path / "cache", "key", params={"model": "m0"}).problem() is None
