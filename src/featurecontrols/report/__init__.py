"""Render a run: a terminal table (``report/text.py``), JSON, and one offline HTML page
(``report/html.py``, plots in ``report/plots.py``). Files are written atomically: complete or absent."""

from __future__ import annotations

import os
from pathlib import Path

from featurecontrols import atomic
from featurecontrols.pipeline.results import RunResult
from featurecontrols.report.html import to_html
from featurecontrols.report.text import axis_cell, fixed_width, summary_lines, table


def write_json(result: RunResult, path: str | os.PathLike[str]) -> Path:
    """The run as JSON (``RunResult.to_dict``)."""
    return atomic.write_json(path, result.to_dict())


def write_html(result: RunResult, path: str | os.PathLike[str]) -> Path:
    """The run as one HTML page."""
    return atomic.write_text(path, to_html(result))


__all__ = ["axis_cell", "fixed_width", "summary_lines", "table", "to_html", "write_html", "write_json"]
