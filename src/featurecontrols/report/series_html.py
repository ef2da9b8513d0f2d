"""A series of runs over training checkpoints as one self-contained HTML page (no network).

The verdict of every followed feature at every step (cells coloured by verdict), then per feature its
effect on each axis against the step with each point coloured by that step's verdict, and the
training's own progress measures (loss, accuracy) on the same step axis.
"""

from __future__ import annotations

import html

from featurecontrols.axes.evidence import AXES
from featurecontrols.pipeline.series import SeriesResult
from featurecontrols.report import plots
from featurecontrols.report.html import STYLE


def series_to_html(series: SeriesResult, names: list[str], title: str) -> str:
    """The page for the candidates ``names`` of ``series``."""
    e = html.escape
    head = "".join(f"<th>{s}</th>" for s in series.steps)
    rows = ""
    for name in names:
        cells = "".join(
            f"<td class='{c.verdict.replace(' ', '-')}'>{e(c.verdict)}</td>" for c in series.trajectory(name)
        )
        rows += f"<tr><td>{e(name)}</td>{cells}</tr>"
    measures = "".join(
        plots.series_plot(series.steps, [c.measures[m] for c in series.checkpoints], None, m)
        for m in series.checkpoints[0].measures
    )
    sections = "".join(_feature(series, name) for name in names)
    timeline = series_timeline(series, names, title)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>featurecontrols series: {e(title)}</title>
<style>{STYLE}</style></head><body>
<h1>featurecontrols: {e(title)} over training</h1>
<p>{series.n_tests} tests corrected together over {len(series.steps)} checkpoints.</p>
<table id="series"><tr><th>feature</th>{head}</tr>{rows}</table>
<figure>{timeline}</figure>
<section><h2>Training</h2><div class="plots">{measures}</div></section>
{sections}
</body></html>
"""


def series_timeline(series: SeriesResult, names: list[str], title: str) -> str:
    """The training's measures above one verdict band per candidate of ``names`` (a standalone SVG)."""
    curves = {m: [c.measures[m] for c in series.checkpoints] for m in series.checkpoints[0].measures}
    rows = {name: [c.verdict for c in series.trajectory(name)] for name in names}
    return plots.timeline(series.steps, curves, rows, f"{title}: the verdicts over training")


def _feature(series: SeriesResult, name: str) -> str:
    """One feature: each test's effect against the step, points coloured by verdict."""
    trajectory = series.trajectory(name)
    verdicts = [c.verdict for c in trajectory]
    figures = []
    for axis in AXES:
        for control in [e.control for e in trajectory[-1].axes[axis].evidence]:
            values = series.effect(name, axis, control)
            figures.append(plots.series_plot(series.steps, values, verdicts, f"{axis}: {control}"))
    return f"<section><h2>{html.escape(name)}</h2><div class='plots'>{''.join(figures)}</div></section>"
