"""Progress bars for long steps: rich when it is installed (the ``report`` extra), else silent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(
    items: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Yield ``items``, drawing a progress bar on stderr when enabled and rich is importable."""
    if not enabled:
        yield from items
        return
    try:
        from rich.console import Console
        from rich.progress import track as rich_track
    except ImportError:
        yield from items
        return
    yield from rich_track(
        items, description=description, total=total, console=Console(stderr=True), transient=True
    )
