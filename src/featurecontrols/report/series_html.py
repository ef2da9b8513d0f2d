"""A series of runs over training checkpoints as one self-contained HTML page (no network).

The verdict of every followed candidate at every step (cells coloured by verdict), then per candidate
its effect on each axis against the step with each point coloured by that step's verdict, and the
training's own progress measures (loss, accuracy) on the same step axis. Dictionary latents, which a
refit at each checkpoint numbers afresh, are counted per verdict at each step, one table and one curve
of model-feature latents per dictionary.
"""

from __future__ import annotations

import html

from featurecontrols.axes.evidence import AXES, VERDICTS
from featurecontrols.pipeline.series import SeriesResult
from featurecontrols.report import plots
from featurecontrols.report.html import STYLE


def series_to_html(series: SeriesResult, title: str) -> str:
    """The page of ``series``: every followed candidate, and every dictionary's counts per step."""
    e = html.escape
    head = "".join(f"<th>{s}</th>" for s in series.steps)
    shown = labels(series)
    rows = ""
    for (site, name), text in shown.items():
        cells = "".join(
            f"<td class='{c.verdict.replace(' ', '-')}'>{e(c.verdict)}</td>"
            for c in series.trajectory(name, site)
        )
        rows += f"<tr><td>{e(text)}</td>{cells}</tr>"
    measures = "".join(
        plots.series_plot(series.steps, [c.measures[m] for c in series.checkpoints], None, m)
        for m in series.checkpoints[0].measures
    )
    sections = "".join(_feature(series, site, name, text) for (site, name), text in shown.items())
    latents = "".join(_latents(series, key, counts) for key, counts in series.latent_counts().items())
    followed = f"<table id='series'><tr><th>feature</th>{head}</tr>{rows}</table>" if rows else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>featurecontrols series: {e(title)}</title>
<style>{STYLE}</style></head><body>
<h1>featurecontrols: {e(title)} over training</h1>
<p>{series.n_tests} tests corrected together over {len(series.steps)} checkpoints.</p>
{followed}
<figure>{series_timeline(series, title)}</figure>
<section><h2>Training</h2><div class="plots">{measures}</div></section>
{latents}{sections}
</body></html>
"""


def labels(series: SeriesResult) -> dict[tuple[str, str], str]:
    """Each followed (site, name) as shown: the name, with its site where the series reads several."""
    followed = series.followed()
    several = len({site for site, _ in followed}) > 1 or bool(series.latent_counts())
    return {(site, name): f"{name} @ {site}" if several else name for site, name in followed}


def series_timeline(series: SeriesResult, title: str) -> str:
    """The training's measures above one verdict band per followed candidate (a standalone SVG)."""
    curves = {m: [c.measures[m] for c in series.checkpoints] for m in series.checkpoints[0].measures}
    rows = {
        text: [c.verdict for c in series.trajectory(name, site)]
        for (site, name), text in labels(series).items()
    }
    return plots.timeline(series.steps, curves, rows, f"{title}: the verdicts over training")


def _feature(series: SeriesResult, site: str, name: str, text: str) -> str:
    """One candidate, shown as ``text``: each test's effect against the step, points coloured by verdict."""
    trajectory = series.trajectory(name, site)
    verdicts = [c.verdict for c in trajectory]
    figures = []
    for axis in AXES:
        for control in [e.control for e in trajectory[-1].axes[axis].evidence]:
            values = series.effect(name, axis, control, site)
            figures.append(plots.series_plot(series.steps, values, verdicts, f"{axis}: {control}"))
    return f"<section><h2>{html.escape(text)}</h2><div class='plots'>{''.join(figures)}</div></section>"


def _latents(series: SeriesResult, key: str, counts: list[dict[str, int]]) -> str:
    """One dictionary: its latents per verdict at each step, and the model-feature count as a curve."""
    head = "".join(f"<th>{s}</th>" for s in series.steps)
    rows = ""
    for v in (v for v in VERDICTS if any(v in c for c in counts)):
        cells = "".join(f"<td>{c.get(v, 0)}</td>" for c in counts)
        rows += f"<tr><td class='{v.replace(' ', '-')}'>{v}</td>{cells}</tr>"
    curve = plots.series_plot(
        series.steps,
        [c.get("model feature", 0) for c in counts],
        None,
        "model-feature latents",
        "latents called model feature at each step (the dictionary refitted at every checkpoint)",
    )
    return (
        f"<section><h2>{html.escape(key)}: latents per verdict</h2>"
        f"<table><tr><th>verdict</th>{head}</tr>{rows}</table><div class='plots'>{curve}</div></section>"
    )
