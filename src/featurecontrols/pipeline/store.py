"""An on-disk activation store: (N, d) activations per site in ``.npy`` shards, with bounded memory.

Layout of a complete cache ``root/key/``::

    manifest.json       written last: format, version, key, the parameters the cache was made with,
                        and per site its shape, dtype and shards (each with its size and sha256)
    s0-000000.npy ...   shard j of site i, at most ``shard_rows`` rows each

Shards are written into ``root/.{key}.tmp-<pid>/``, which is renamed to ``root/key`` only once the
manifest is in it, so a crash never leaves a folder that looks complete. :meth:`ShardedStore.fill`
trusts a cache only after checking it against its manifest (every shard there, of its size and
checksum; the parameters those of the run), and otherwise discards and recomputes it; it holds a
lock on ``root/.{key}.lock`` meanwhile, so runs sharing a folder never write one key at once (the
second waits, then reads the first's cache). Nothing is pickled.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from featurecontrols.adapters.sites import Site
from featurecontrols.atomic import write_json
from featurecontrols.errors import FeatureControlsError

FORMAT = "featurecontrols-activations"
VERSION = 2
MANIFEST = "manifest.json"


def fingerprint(*tensors: Tensor) -> str:
    """sha256 hex digest of the tensors' dtypes, shapes and bytes, in order (e.g. a dataset's ``data_id``)."""
    h = hashlib.sha256()
    for t in tensors:
        _hash_tensor(h, t)
    return h.hexdigest()


def cache_key(model: nn.Module, sites: Iterable[str | Site], data_id: str) -> str:
    """sha256 hex key of the model (class and every state_dict entry), the sites and ``data_id``.

    Any change to a weight, a site or the data gives another key, so a stale cache is never reused.
    """
    h = hashlib.sha256(f"{FORMAT} v{VERSION}\0{type(model).__module__}.{type(model).__qualname__}\0".encode())
    for name, value in model.state_dict().items():
        h.update(f"{name}\0".encode())
        _hash_tensor(h, value)
    for site in sorted({str(Site.parse(s)) for s in sites}):
        h.update(f"site {site}\0".encode())
    h.update(f"data {data_id}".encode())
    return h.hexdigest()


def _file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in 1 MiB chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _hash_tensor(h: Any, t: Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype} {tuple(t.shape)}\0".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy())


class ShardWriter:
    """Buffers each site's rows and writes a shard every ``shard_rows`` rows (from ShardedStore.writing)."""

    def __init__(self, folder: Path, shard_rows: int) -> None:
        self.folder = folder
        self.shard_rows = shard_rows
        self._pending: dict[str, list[Tensor]] = {}
        self._n_pending: dict[str, int] = {}
        self._sites: dict[str, dict[str, Any]] = {}

    def append(self, site: str, acts: Tensor) -> None:
        """Add (n, d) activations for ``site``; a full shard goes to disk at once."""
        entry = self._sites.get(site)
        if entry is None:
            if acts.ndim != 2:
                raise FeatureControlsError(
                    f"the store takes (n, d) activations, got shape {tuple(acts.shape)} for {site}",
                    "flatten with acts.reshape(-1, acts.shape[-1])",
                )
            entry = {
                "index": len(self._sites),
                "rows": 0,
                "width": acts.shape[1],
                "dtype": str(acts.dtype),
                "shards": [],
            }
            self._sites[site] = entry
            self._pending[site], self._n_pending[site] = [], 0
        if acts.ndim != 2 or acts.shape[1] != entry["width"] or str(acts.dtype) != entry["dtype"]:
            raise FeatureControlsError(
                f"activations for {site} changed from (n, {entry['width']}) {entry['dtype']} "
                f"to {tuple(acts.shape)} {acts.dtype}",
                "give every batch the same width and dtype at a site",
            )
        self._pending[site].append(acts)
        self._n_pending[site] += acts.shape[0]
        if self._n_pending[site] >= self.shard_rows:
            self._flush(site, final=False)

    def _flush(self, site: str, final: bool) -> None:
        rows = torch.cat(self._pending[site]).detach().cpu()
        cut = rows.shape[0] if final else rows.shape[0] - rows.shape[0] % self.shard_rows
        for start in range(0, cut, self.shard_rows):
            self._write_shard(site, rows[start : min(start + self.shard_rows, cut)])
        self._pending[site] = [rows[cut:].clone()] if cut < rows.shape[0] else []  # frees the rest of rows
        self._n_pending[site] = rows.shape[0] - cut

    def _write_shard(self, site: str, rows: Tensor) -> None:
        entry = self._sites[site]
        name = f"s{entry['index']}-{len(entry['shards']):06d}.npy"
        with open(self.folder / name, "wb") as f:
            np.save(f, rows.contiguous().numpy(), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        size, digest = _file_digest(self.folder / name)
        entry["shards"].append({"name": name, "bytes": size, "sha256": digest})
        entry["rows"] += rows.shape[0]

    def finish(self, key: str, params: Mapping[str, Any]) -> None:
        """Write the last partial shards (an empty one for a site with no rows), then the manifest."""
        for site, entry in self._sites.items():
            if self._n_pending[site]:
                self._flush(site, final=True)
            if not entry["shards"]:
                self._write_shard(site, torch.cat(self._pending[site]))
        sites = {
            site: {"shape": [e["rows"], e["width"]], "dtype": e["dtype"], "shards": e["shards"]}
            for site, e in self._sites.items()
        }
        manifest = {
            "format": FORMAT, "version": VERSION, "key": key, "params": dict(params),
            "shard_rows": self.shard_rows,
        }  # fmt: skip
        write_json(self.folder / MANIFEST, {**manifest, "sites": sites})


class ShardedStore:
    """Activations of one run (``key``, e.g. from :func:`cache_key`) in ``.npy`` shards under ``root/key``.

    Writing buffers at most ``shard_rows`` rows per site (plus the batch being added); reading
    memory-maps the shards. ``params`` (JSON values: what the cache is made from) go into the
    manifest; a cache made with other parameters under the same key is stale and never read.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str,
        shard_rows: int = 65536,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if not key or key.startswith(".") or Path(key).name != key:
            raise FeatureControlsError(
                f"store key must be a plain folder name, got {key!r}",
                "use featurecontrols.pipeline.store.cache_key(model, sites, data_id)",
            )
        if shard_rows < 1:
            raise FeatureControlsError(f"shard_rows must be at least 1, got {shard_rows}", "use e.g. 65536")
        self.root = Path(root)
        self.key = key
        self.shard_rows = shard_rows
        self.params = json.loads(json.dumps(dict(params or {})))  # as the manifest will read back

    @property
    def path(self) -> Path:
        """The folder of the complete cache."""
        return self.root / self.key

    def exists(self) -> bool:
        """Whether a complete cache is there (its manifest is written last)."""
        return (self.path / MANIFEST).is_file()

    def problem(self) -> str | None:
        """Why the cache at ``path`` cannot be trusted (absent, truncated, corrupted, stale), or None.

        Reads every shard once to check its sha256 against the manifest.
        """
        try:
            manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "absent" if not self.path.exists() else f"it has no {MANIFEST}"
        except (OSError, ValueError) as err:
            return f"its {MANIFEST} cannot be read ({err})"
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            return f"format {manifest.get('format')} v{manifest.get('version')}, not {FORMAT} v{VERSION}"
        if manifest.get("key") != self.key or manifest.get("params") != self.params:
            return f"it was made with other parameters ({manifest.get('params')}, not {self.params})"
        for site in manifest["sites"].values():
            for shard in site["shards"]:
                path = self.path / shard["name"]
                if not path.is_file():
                    return f"shard {shard['name']} is missing"
                size, digest = _file_digest(path)
                if size != shard["bytes"]:
                    return f"shard {shard['name']} has {size} bytes, not {shard['bytes']}"
                if digest != shard["sha256"]:
                    return f"shard {shard['name']} fails its checksum"
        return None

    def fill(self, make: Callable[[ShardWriter], None]) -> None:
        """Leave a complete, checked cache at ``path``: keep a sound one, else discard it and write one
        with ``make(writer)``, under a lock that other processes sharing ``root`` respect."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.key}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                problem = self.problem()
                if problem is None:
                    return
                if problem != "absent":
                    warnings.warn(f"activation cache {self.path}: {problem}; recomputing it", stacklevel=2)
                    discarded = self.root / f".{self.key}.discarded-{os.getpid()}"
                    self.path.rename(discarded)
                    shutil.rmtree(discarded)
                for left in self.root.glob(f".{self.key}.tmp-*"):  # a killed writer's (we hold the lock)
                    shutil.rmtree(left, ignore_errors=True)
                with self.writing() as writer:
                    make(writer)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def writing(self) -> Iterator[ShardWriter]:
        """Yield a writer into a temporary folder; publish it as ``path`` only if the body succeeds."""
        tmp = self.root / f".{self.key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier failed attempt of this process
        tmp.mkdir(parents=True)
        try:
            writer = ShardWriter(tmp, self.shard_rows)
            yield writer
            writer.finish(self.key, self.params)
            try:
                tmp.rename(self.path)
            except OSError:
                if not self.exists():
                    raise FeatureControlsError(
                        f"{self.path} exists but is not a complete activation cache (it has no {MANIFEST})",
                        f"delete {self.path} and run again",
                    ) from None
                shutil.rmtree(tmp)  # another process published the same key first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def manifest(self) -> dict[str, Any]:
        """The cache's manifest (raises if there is no complete cache or it has another format)."""
        try:
            manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FeatureControlsError(
                f"no complete activation cache at {self.path}", "run read_activations(..., store=store) first"
            ) from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise FeatureControlsError(
                f"the cache at {self.path} has format {manifest.get('format')} v{manifest.get('version')}, "
                f"this version of featurecontrols reads {FORMAT} v{VERSION}",
                f"delete {self.path} so that it is rebuilt",
            )
        return manifest

    def sites(self) -> list[str]:
        """The canonical site keys in the cache."""
        return list(self.manifest()["sites"])

    def iter_shards(self, site: str | Site) -> Iterator[Tensor]:
        """Yield the site's shards in order, each an (n, d) tensor over a memory-mapped file.

        The maps are copy-on-write: writing to a tensor never changes the cache.
        """
        key = str(Site.parse(site))
        entries = self.manifest()["sites"]
        if key not in entries:
            raise FeatureControlsError(
                f"the cache at {self.path} has no site {key} (it has {', '.join(entries)})",
                "key each cache by its sites: ShardedStore(root, cache_key(model, sites, data_id))",
            )
        for shard in entries[key]["shards"]:
            yield torch.from_numpy(np.load(self.path / shard["name"], allow_pickle=False, mmap_mode="c"))

    def load(self, site: str | Site) -> Tensor:
        """The site's (N, d) activations: its shards concatenated (in memory)."""
        return torch.cat(list(self.iter_shards(site)))
