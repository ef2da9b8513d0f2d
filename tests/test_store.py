import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from featurecontrols.adapters.sites import read_activations
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.store import ShardedStore, cache_key, fingerprint

SITES = ["0", "1:input[-1]"]


class CountingSeq(nn.Sequential):
    """A Sequential that counts its forward calls."""

    calls = 0

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self.calls += 1
        return super().forward(x)


def make_model() -> CountingSeq:
    torch.manual_seed(0)
    return CountingSeq(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))


def make_batches(n: int = 5, rows: int = 3, seq: int = 4) -> list[Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randn(rows, seq, 3, generator=g) for _ in range(n)]


def store_for(root: Path, model: nn.Module, data: list[Tensor], shard_rows: int = 65536) -> ShardedStore:
    return ShardedStore(root, cache_key(model, SITES, fingerprint(*data)), shard_rows=shard_rows)


def test_second_run_reuses_the_cache(tmp_path: Path) -> None:
    model, data = make_model(), make_batches()
    in_memory = read_activations(model, data, SITES)
    calls = model.calls
    first = read_activations(model, data, SITES, store=store_for(tmp_path, model, data, shard_rows=7))
    assert model.calls == calls + len(data)
    second = read_activations(model, data, SITES, store=store_for(tmp_path, model, data, shard_rows=7))
    assert model.calls == calls + len(data)  # no forward pass
    for key in SITES:
        assert torch.equal(first[key], in_memory[key])
        assert torch.equal(second[key], in_memory[key])
    key = store_for(tmp_path, model, data).key
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{key}.lock", key]  # the lock stays, empty


def test_shards_are_bounded_and_round_trip(tmp_path: Path) -> None:
    model, data = make_model(), make_batches(n=5, rows=3, seq=4)  # 60 rows at "0", 15 at "1:input[-1]"
    store = store_for(tmp_path, model, data, shard_rows=7)
    acts = read_activations(model, data, SITES, store=store)
    sizes = {s: [t.shape[0] for t in store.iter_shards(s)] for s in SITES}
    assert sizes == {"0": [7] * 8 + [4], "1:input[-1]": [7, 7, 1]}
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["sites"]["0"]["shape"] == [60, 5] and manifest["key"] == store.key
    assert store.sites() == SITES
    for s in SITES:
        assert torch.equal(store.load(s), acts[s])
    for shard in manifest["sites"]["0"]["shards"]:
        assert np.load(store.path / shard["name"], allow_pickle=False).dtype == np.float32


def test_writing_streams_while_the_forward_runs(tmp_path: Path) -> None:
    model, data = make_model(), make_batches(n=4, rows=2, seq=4)  # 8 rows per batch at "0"
    store = store_for(tmp_path, model, data, shard_rows=8)
    seen: list[int] = []

    def forward(m: nn.Module, batch: Any) -> Any:
        seen.append(len(list(tmp_path.glob(".*.tmp-*/s0-*.npy"))))
        return m(batch)

    read_activations(model, data, SITES, store=store, forward=forward, stop_early=False)
    assert seen == [0, 1, 2, 3]  # each full shard is on disk before the next batch runs


def test_a_crash_midway_leaves_no_cache(tmp_path: Path) -> None:
    model, data = make_model(), make_batches()
    store = store_for(tmp_path, model, data, shard_rows=2)

    def crashing(m: nn.Module, batch: Any) -> Any:
        if m.calls == 3:
            raise RuntimeError("crash")
        return m(batch)

    with pytest.raises(RuntimeError, match="crash"):
        read_activations(model, data, SITES, store=store, forward=crashing)
    assert not store.exists()
    left = [p.name for p in tmp_path.iterdir()]
    assert left == [f".{store.key}.lock"]  # no complete folder, no manifest, no temporary folder
    acts = read_activations(model, data, SITES, store=store)  # a later run writes the cache
    assert store.exists() and acts["0"].shape == (60, 5)


def test_writer_round_trips_exactly(tmp_path: Path) -> None:
    store = ShardedStore(tmp_path, "k", shard_rows=4)
    g = torch.Generator().manual_seed(3)
    a = [torch.randn(n, 3, generator=g) for n in (1, 6, 2, 9)]
    b = [torch.randn(n, 2, generator=g, dtype=torch.float64) for n in (1, 6, 2, 9)]
    with store.writing() as writer:
        for x, y in zip(a, b, strict=True):
            writer.append("a", x)
            writer.append("b[0]", y)
        writer.append("empty", torch.empty(0, 4))
    assert torch.equal(store.load("a"), torch.cat(a))
    assert torch.equal(store.load("b[0]"), torch.cat(b)) and store.load("b[0]").dtype == torch.float64
    assert store.load("empty").shape == (0, 4)
    shard = next(store.iter_shards("a"))
    shard += 1  # copy-on-write: the cache is untouched
    assert torch.equal(store.load("a"), torch.cat(a))


def test_writer_rejects_inconsistent_batches(tmp_path: Path) -> None:
    store = ShardedStore(tmp_path, "k")
    with pytest.raises(FeatureControlsError, match="changed"), store.writing() as writer:
        writer.append("a", torch.zeros(2, 3))
        writer.append("a", torch.zeros(2, 4))
    with pytest.raises(FeatureControlsError, match=r"\(n, d\)"), store.writing() as writer:
        writer.append("a", torch.zeros(2, 3, 1))
    assert list(tmp_path.iterdir()) == []


def test_cache_errors(tmp_path: Path) -> None:
    model, data = make_model(), make_batches()
    store = ShardedStore(tmp_path, "k")
    with pytest.raises(FeatureControlsError, match="no complete"):
        store.load("0")
    read_activations(model, data, ["0"], store=store)
    with pytest.raises(FeatureControlsError, match="has no site 2"):
        read_activations(model, data, ["0", "2"], store=store)
    manifest = json.loads((store.path / "manifest.json").read_text())
    (store.path / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(FeatureControlsError, match="delete"):
        store.load("0")
    for bad in ["", ".hidden", "a/b"]:
        with pytest.raises(FeatureControlsError, match="plain folder name"):
            ShardedStore(tmp_path, bad)
    with pytest.raises(FeatureControlsError, match="shard_rows"):
        ShardedStore(tmp_path, "k", shard_rows=0)


def test_cache_key_and_fingerprint() -> None:
    model, data = make_model(), make_batches()
    key = cache_key(model, SITES, fingerprint(*data))
    assert key == cache_key(make_model(), list(reversed(SITES)), fingerprint(*make_batches()))
    assert key == cache_key(model, ["0:output", "1:input[-1]"], fingerprint(*data))  # canonical sites
    assert key != cache_key(model, ["0"], fingerprint(*data))
    assert key != cache_key(model, SITES, fingerprint(*data[:-1]))
    with torch.no_grad():
        model[2].bias[0] += 1e-6
    assert key != cache_key(model, SITES, fingerprint(*data))
    x = torch.arange(6.0)
    assert fingerprint(x) != fingerprint(x.reshape(2, 3)) != fingerprint(x.double())
    assert fingerprint(x.bfloat16()) == fingerprint(x.bfloat16().clone())
