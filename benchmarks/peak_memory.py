"""Memory of a benchmark step: resident memory of this process, and a step run in a fresh process so
that its peak is its own (imported by the benchmarks that report peak memory)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a spawned process (``fn`` importable from its module), its result returned."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        out: T = pool.apply(fn, args)
        return out
