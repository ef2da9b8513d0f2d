"""Progress of long steps: a live bar in a terminal, plain periodic lines anywhere else (a log file).

In a terminal (stderr is a TTY) with rich installed (the ``report`` extra), :func:`track` draws rich's
bar. Otherwise it writes one plain line on stderr when the step starts, then at most one every
``FEATURECONTROLS_PROGRESS_SECONDS`` seconds (default 30), and one when it ends::

    featurecontrols: dual interchange: 12/40 (30%), 0.8/s, ETA 35 s
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from featurecontrols.errors import FeatureControlsError

T = TypeVar("T")

INTERVAL_ENV = "FEATURECONTROLS_PROGRESS_SECONDS"


def track(
    items: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Yield ``items``, showing progress on stderr when ``enabled`` (a bar, or plain lines in a log)."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        try:
            from rich.console import Console
            from rich.progress import track as rich_track
        except ImportError:
            pass
        else:
            yield from rich_track(
                items, description=description, total=total, console=Console(stderr=True), transient=True
            )
            return
    yield from log_lines(items, description, total, sys.stderr, _interval())


def log_lines(
    items: Iterable[T], description: str, total: int | None, stream: TextIO, interval: float
) -> Iterator[T]:
    """Yield ``items``; write a line at the start, every ``interval`` seconds and at the end."""
    start = last = time.monotonic()
    done = 0
    _line(stream, description, done, total, 0.0)
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= interval:
            _line(stream, description, done, total, now - start)
            last = now
    _line(stream, description, done, total, time.monotonic() - start, finished=True)


def _line(
    stream: TextIO, description: str, done: int, total: int | None, elapsed: float, finished: bool = False
) -> None:
    rate = done / elapsed if elapsed > 0 else 0.0
    count = f"{done}/{total} ({100 * done / total:.0f}%)" if total else f"{done}"
    if finished:
        tail = f"done in {_seconds(elapsed)}"
    elif total and rate > 0:
        tail = f"{rate:.3g}/s, ETA {_seconds((total - done) / rate)}"
    else:
        tail = f"{rate:.3g}/s" if done else "started"
    stream.write(f"featurecontrols: {description}: {count}, {tail}\n")
    stream.flush()


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "30")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise FeatureControlsError(
            f"{INTERVAL_ENV} must be a number of seconds >= 0, got {raw!r}",
            f"unset it, or e.g. {INTERVAL_ENV}=30",
        )
    return value
