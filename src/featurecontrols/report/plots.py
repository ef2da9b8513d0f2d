"""Inline SVG plots for the HTML report: null distributions with the real score marked, trained model
against randomised copies, per-example scatters, steering curves, activation spectra, Pareto fronts,
curves over training steps.
Each returns a ``<figure>`` with a caption that says what the marks are; none needs the network."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from featurecontrols.axes.evidence import Evidence
from featurecontrols.report.text import num as _num
from featurecontrols.stats import NullSummary


def histogram(null: NullSummary, real: float, title: str, xlabel: str) -> str:
    """SVG histogram of a null distribution (``stats.summarise_null``) with the real score in red."""
    w, h, pad = 320, 180, 28
    counts = null.counts
    lo, hi = min(null.low, real), max(null.high, real)
    span = (hi - lo) or 1.0
    top = max(counts) or 1
    bin_width = (null.high - null.low) / len(counts)
    scale = (w - 2 * pad) / span
    bars = "".join(
        f"<rect x='{pad + (null.low + i * bin_width - lo) * scale:.1f}' "
        f"y='{h - pad - c / top * (h - 2 * pad):.1f}' width='{max(bin_width * scale, 1.0):.1f}' "
        f"height='{c / top * (h - 2 * pad):.1f}' fill='#8ab4f8'/>"
        for i, c in enumerate(counts)
    )
    x = pad + (real - lo) * scale
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>{html.escape(title)}</title>"
        f"<text x='{pad}' y='14' font-size='12'>{html.escape(title)}</text>{bars}"
        f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{pad}' y2='{h - pad}' stroke='#d93025' stroke-width='2'/>"
        f"<line x1='{pad}' x2='{w - pad}' y1='{h - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<text x='{pad}' y='{h - 10}' font-size='10'>{_num(lo)}</text>"
        f"<text x='{w - pad}' y='{h - 10}' font-size='10' text-anchor='end'>{_num(hi)}</text></svg>"
    )
    caption = f"{xlabel}: null of {null.n} (blue bars) and the real score (red line)"
    return _figure(svg, caption)


def strip(ev: Evidence, title: str) -> str:
    """SVG strip: the trained model's score (red) and each randomised copy's (blue) on [0, 1]."""
    w, h, pad = 320, 80, 28

    def x(v: float) -> float:
        return pad + v * (w - 2 * pad)

    dots = "".join(f"<circle cx='{x(v):.1f}' cy='40' r='5' fill='#8ab4f8'/>" for v in ev.detail.copies)
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>{html.escape(title)}</title>"
        f"<text x='{pad}' y='14' font-size='12'>{html.escape(title)}</text>"
        f"<line x1='{pad}' x2='{w - pad}' y1='40' y2='40' stroke='#999'/>{dots}"
        f"<circle cx='{x(ev.score):.1f}' cy='40' r='6' fill='#d93025'/>"
        f"<text x='{pad}' y='{h - 10}' font-size='10'>0</text>"
        f"<text x='{w - pad}' y='{h - 10}' font-size='10' text-anchor='end'>1</text></svg>"
    )
    return _figure(svg, f"{ev.metric}: randomised copies (blue) and the trained model (red)")


def paired_scatter(ev: Evidence, title: str) -> str:
    """SVG scatter, one dot per example: the change under noise (x) against the change when patched
    from the counterfactual (y), on a common square-root scale, with the diagonal y = x."""
    w, h, pad = 320, 180, 28
    xs, ys = ev.detail.control, ev.detail.real
    top = math.sqrt(max(*xs, *ys, 0.0)) or 1.0

    def at(v: float, size: int) -> float:
        return pad + math.sqrt(max(v, 0.0)) / top * (size - 2 * pad)

    dots = "".join(
        f"<circle cx='{at(a, w):.1f}' cy='{h - at(b, h):.1f}' r='2' fill='#1a73e8' fill-opacity='0.5'/>"
        for a, b in zip(xs, ys, strict=True)
    )
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>{html.escape(title)}</title>"
        f"<text x='{pad}' y='14' font-size='12'>{html.escape(title)}</text>"
        f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{pad}' stroke='#d93025'/>"
        f"<line x1='{pad}' x2='{w - pad}' y1='{h - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<line x1='{pad}' x2='{pad}' y1='{pad}' y2='{h - pad}' stroke='#999'/>{dots}</svg>"
    )
    caption = (
        f"{ev.metric}, one dot per example (square-root scale): under the control (x; for patching, "
        f"equal-norm noise) and the real change (y); {ev.detail.above_control}/"
        f"{len(ev.detail.real)} above the red diagonal"
    )
    return _figure(svg, caption)


_KIND_COLOURS = {
    "probe": "#1a73e8",
    "mass-mean": "#e37400",
    "covariance": "#9334e6",
    "dual": "#188038",
    "random": "#999999",
}


def steering_plot(curves: list[dict[str, Any]]) -> str:
    """SVG lines: off-target movement (RMS of the other probes) against alpha, one line per kind."""
    w, h, pad = 320, 180, 28
    alphas = curves[0]["alphas"]
    top = max(max(c["off_target"]["mean"]) for c in curves) or 1.0
    lo_a, hi_a = min(alphas), max(alphas)
    span = (hi_a - lo_a) or 1.0

    def point(a: float, v: float) -> str:
        return f"{pad + (a - lo_a) / span * (w - 2 * pad):.1f},{h - pad - v / top * (h - 2 * pad):.1f}"

    lines, legend = [], []
    for i, c in enumerate(curves):
        colour = _KIND_COLOURS.get(c["kind"], "#000")
        pts = " ".join(point(a, v) for a, v in zip(alphas, c["off_target"]["mean"], strict=True))
        lines.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='2'/>")
        legend.append(
            f"<text x='{w - pad}' y='{30 + 12 * i}' font-size='10' text-anchor='end' fill='{colour}'>"
            f"{html.escape(c['kind'])}</text>"
        )
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>steering</title>"
        f"<text x='{pad}' y='14' font-size='12'>used: steering along each kind of vector</text>"
        f"{''.join(lines)}{''.join(legend)}"
        f"<line x1='{pad}' x2='{w - pad}' y1='{h - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<text x='{pad}' y='{h - 10}' font-size='10'>alpha {_num(lo_a)}</text>"
        f"<text x='{w - pad}' y='{h - 10}' font-size='10' text-anchor='end'>{_num(hi_a)}</text></svg>"
    )
    caption = (
        f"off-target movement (RMS of the other probes, up to {_num(top)}) per unit of target-probe "
        "movement alpha; the dual vectors stay at zero"
    )
    return _figure(svg, caption)


_MODEL_COLOURS = ("#8ab4f8", "#e37400", "#9334e6", "#188038", "#999999")


def spectra_plot(spectra: dict[str, list[list[float]]]) -> str:
    """SVG lines: log10 singular value against index, the trained model in red, each control's copies in
    its own colour."""
    w, h, pad = 320, 180, 28
    logs = {name: [[math.log10(max(v, 1e-12)) for v in s] for s in runs] for name, runs in spectra.items()}
    values = [v for runs in logs.values() for s in runs for v in s] or [0.0]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    length = max((len(s) for runs in logs.values() for s in runs), default=1)
    step = (w - 2 * pad) / max(length - 1, 1)
    controls = [name for name in logs if name != "trained"]
    colours = {"trained": "#d93025"} | {
        name: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, name in enumerate(controls)
    }
    lines, legend = [], []
    for i, name in enumerate(["trained", *controls] if "trained" in logs else controls):
        for s in logs[name]:
            pts = " ".join(
                f"{pad + j * step:.1f},{h - pad - (v - lo) / span * (h - 2 * pad):.1f}"
                for j, v in enumerate(s)
            )
            lines.append(
                f"<polyline points='{pts}' fill='none' stroke='{colours[name]}' stroke-width='1.5'/>"
            )
        legend.append(
            f"<text x='{w - pad}' y='{30 + 12 * i}' font-size='10' text-anchor='end' fill='{colours[name]}'>"
            f"{html.escape(name)}</text>"
        )
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>spectra</title>"
        f"<text x='{pad}' y='14' font-size='12'>singular values of the activations</text>"
        f"{''.join(lines)}{''.join(legend)}"
        f"<line x1='{pad}' x2='{w - pad}' y1='{h - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<text x='{pad}' y='{h - 10}' font-size='10'>index 1</text>"
        f"<text x='{w - pad}' y='{h - 10}' font-size='10' text-anchor='end'>{length}</text></svg>"
    )
    caption = (
        f"singular values of the centred activations / sqrt(n), log scale from {10**lo:.2g} to {10**hi:.2g}: "
        "trained model (red) against each randomised copy"
    )
    return _figure(svg, caption)


def pareto_plots(search: dict[str, Any]) -> list[str]:
    """Two SVG scatters of a probe search (``probe_search.SearchResult.as_dict``): held-out accuracy against
    control-task accuracy and against log complexity; the Pareto front joined, the chosen probe ringed."""
    trials = {t["number"]: t for t in search["trials"]}
    log_max = math.log(search["max_complexity"])
    chosen = search["chosen"]
    spec = chosen["spec"]
    architecture = (
        f"linear (C={spec['C']:.3g})"
        if spec["kind"] == "linear"
        else f"MLP width {spec['hidden']}, depth {spec['depth']}, rank {spec['rank'] or 'full'}"
    )
    axes = (
        ("control", "control-task accuracy", lambda t: t["control_accuracy"]),
        ("complexity", "log parameters / log max", lambda t: math.log(t["complexity"]) / log_max),
    )
    w, h, pad = 320, 180, 28
    plots = []
    for key, xlabel, x_of in axes:
        xy = {
            n: (pad + x_of(t) * (w - 2 * pad), h - pad - t["accuracy"] * (h - 2 * pad))
            for n, t in trials.items()
        }
        dots = "".join(
            "<circle cx='{:.1f}' cy='{:.1f}' r='3' fill='#8ab4f8'/>".format(*p) for p in xy.values()
        )
        front = " ".join("{:.1f},{:.1f}".format(*xy[n]) for n in search[f"front_{key}"])
        cx, cy = xy[chosen["number"]]
        svg = (
            f"<svg class='plot' width='{w}' height='{h}' role='img'><title>search {key}</title>"
            f"<text x='{pad}' y='14' font-size='12'>search by {html.escape(search['objective'])}</text>{dots}"
            f"<polyline points='{front}' fill='none' stroke='#188038' stroke-width='1.5'/>"
            f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='7' fill='none' stroke='#d93025' stroke-width='2'/>"
            f"<line x1='{pad}' x2='{w - pad}' y1='{h - pad}' y2='{h - pad}' stroke='#999'/>"
            f"<line x1='{pad}' x2='{pad}' y1='{pad}' y2='{h - pad}' stroke='#999'/>"
            f"<text x='{pad}' y='{h - 10}' font-size='10'>0</text>"
            f"<text x='{w - pad}' y='{h - 10}' font-size='10' text-anchor='end'>1</text></svg>"
        )
        caption = (
            f"held-out accuracy (up, 0 to 1) against {xlabel} (right) for {len(trials)} trials (blue), "
            f"Pareto front (green), hypervolume {search[f'hypervolume_{key}']:.3f}; chosen (red ring): "
            f"{architecture}, selectivity {chosen['selectivity']:.3f}"
        )
        plots.append(_figure(svg, caption))
    return plots


VERDICT_COLOURS = {
    "model feature": "#188038",
    "dataset feature": "#e37400",
    "not found": "#999999",
    "inconclusive": "#d93025",
}


def series_plot(
    steps: Sequence[int],
    values: Sequence[float],
    verdicts: Sequence[str] | None,
    title: str,
    caption: str = "the training's own measure against the step",
) -> str:
    """SVG line over training steps; each point coloured by that step's verdict (blue without one,
    then ``caption`` says what the curve is)."""
    w, h, pad = 320, 180, 30
    lo, hi = min(values), max(values)
    span, width = (hi - lo) or 1.0, (steps[-1] - steps[0]) or 1

    def xy(step: int, v: float) -> tuple[float, float]:
        return pad + (step - steps[0]) / width * (w - 2 * pad), h - pad - (v - lo) / span * (h - 2 * pad)

    points = [xy(s, v) for s, v in zip(steps, values, strict=True)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    colours = [VERDICT_COLOURS.get(v, "#000") for v in verdicts] if verdicts else ["#8ab4f8"] * len(points)
    dots = "".join(
        f"<circle cx='{x:.1f}' cy='{y:.1f}' r='4' fill='{c}'/>"
        for (x, y), c in zip(points, colours, strict=True)
    )
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>{html.escape(title)}</title>"
        f"<text x='{pad}' y='14' font-size='12'>{html.escape(title)}</text>"
        f"<polyline points='{line}' fill='none' stroke='#bbb' stroke-width='1.5'/>{dots}"
        f"<line x1='{pad}' x2='{w - pad}' y1='{h - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<text x='{pad}' y='{h - 10}' font-size='10'>step {steps[0]}</text>"
        f"<text x='{w - pad}' y='{h - 10}' font-size='10' text-anchor='end'>{steps[-1]}</text>"
        f"<text x='4' y='{pad}' font-size='10'>{_num(hi)}</text>"
        f"<text x='4' y='{h - pad}' font-size='10'>{_num(lo)}</text></svg>"
    )
    caption = (
        "against the training step; points coloured by that step's verdict (green model feature, orange "
        "dataset feature, grey not found, red inconclusive)"
        if verdicts
        else caption
    )
    return _figure(svg, caption)


def timeline(
    steps: Sequence[int], curves: Mapping[str, Sequence[float]], rows: Mapping[str, Sequence[str]], title: str
) -> str:
    """One standalone SVG over the training steps: the ``curves`` (the training's measures, each scaled
    to its own range) above one band per feature of ``rows``, each step's cell coloured by its verdict."""
    w, left, right, top, plot_h, band = 820, 190, 20, 28, 150, 14
    h = top + plot_h + 30 + band * len(rows) + 40
    span = (steps[-1] - steps[0]) or 1

    def x(step: float) -> float:
        return left + (step - steps[0]) / span * (w - left - right)

    lines = _timeline_curves(steps, curves, x, top, plot_h)
    bands = _timeline_bands(steps, rows, x, left, top + plot_h + 30, band)
    axis = (
        f"<line x1='{left}' x2='{w - right}' y1='{top + plot_h}' y2='{top + plot_h}' stroke='#999'/>"
        f"<text x='{left}' y='{top + plot_h + 14}' font-size='10'>step {steps[0]}</text>"
        f"<text x='{w - right}' y='{top + plot_h + 14}' font-size='10' text-anchor='end'>{steps[-1]}</text>"
        f"<text x='8' y='{h - 10}' font-size='10'>cells: green model feature, orange dataset feature, "
        "grey not found, red inconclusive; each curve scaled to its own range (given in the legend)</text>"
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='plot' width='{w}' height='{h}' role='img'>"
        f"<title>{html.escape(title)}</title><rect width='{w}' height='{h}' fill='#fff'/>"
        f"<text x='8' y='16' font-size='13'>{html.escape(title)}</text>{lines}{bands}{axis}</svg>"
    )


def _timeline_curves(
    steps: Sequence[int],
    curves: Mapping[str, Sequence[float]],
    x: Callable[[float], float],
    top: int,
    plot_h: int,
) -> str:
    """Each curve as a polyline scaled to its own range, with a legend line giving that range."""
    palette = ["#1a73e8", "#d93025", "#188038", "#9334e6", "#e37400", "#5f6368"]
    parts = []
    for i, (name, values) in enumerate(curves.items()):
        lo, hi = min(values), max(values)
        ys = [top + plot_h - (v - lo) / ((hi - lo) or 1.0) * plot_h for v in values]
        line = " ".join(f"{x(s):.1f},{y:.1f}" for s, y in zip(steps, ys, strict=True))
        colour = palette[i % len(palette)]
        parts.append(
            f"<polyline points='{line}' fill='none' stroke='{colour}' stroke-width='1.8'/>"
            f"<text x='8' y='{top + 12 + 14 * i}' font-size='11' fill='{colour}'>"
            f"{html.escape(name)} ({_num(lo)} to {_num(hi)})</text>"
        )
    return "".join(parts)


def _timeline_bands(
    steps: Sequence[int],
    rows: Mapping[str, Sequence[str]],
    x: Callable[[float], float],
    left: int,
    y0: int,
    band: int,
) -> str:
    """One row of cells per feature, a cell per step reaching halfway to its neighbours."""
    edges = [steps[0], *((a + b) / 2 for a, b in pairwise(steps)), steps[-1]]
    parts = []
    for r, (name, verdicts) in enumerate(rows.items()):
        y, label = y0 + r * band, html.escape(name)
        parts.append(
            f"<text x='{left - 6}' y='{y + band - 3}' font-size='10' text-anchor='end'>{label}</text>"
        )
        parts += [
            f"<rect x='{x(edges[i]):.1f}' y='{y}' width='{x(edges[i + 1]) - x(edges[i]):.1f}' "
            f"height='{band - 2}' fill='{VERDICT_COLOURS.get(v, '#000')}'>"
            f"<title>{label} at step {steps[i]}: {html.escape(v)}</title></rect>"
            for i, v in enumerate(verdicts)
        ]
    return "".join(parts)


def latent_scatter(points: Sequence[tuple[float, float, str]], title: str) -> str:
    """SVG scatter, one dot per latent: its learned effect (x: refit minus the strongest control's
    match) against its used effect (y), coloured by verdict, with the zero lines."""
    w, h, pad = 360, 240, 34
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(*xs, 0.0), max(*xs, 0.0)
    y_lo, y_hi = min(*ys, 0.0), max(*ys, 0.0)

    def at(v: float, lo: float, hi: float, size: int) -> float:
        return pad + (v - lo) / ((hi - lo) or 1.0) * (size - 2 * pad)

    dots = "".join(
        f"<circle cx='{at(x, x_lo, x_hi, w):.1f}' cy='{h - at(y, y_lo, y_hi, h):.1f}' r='3' "
        f"fill='{VERDICT_COLOURS.get(v, '#000')}' fill-opacity='0.7'/>"
        for x, y, v in points
    )
    x0, y0 = at(0.0, x_lo, x_hi, w), h - at(0.0, y_lo, y_hi, h)
    svg = (
        f"<svg class='plot' width='{w}' height='{h}' role='img'><title>{html.escape(title)}</title>"
        f"<text x='{pad}' y='14' font-size='12'>{html.escape(title)}</text>"
        f"<line x1='{x0:.1f}' x2='{x0:.1f}' y1='{pad}' y2='{h - pad}' stroke='#bbb'/>"
        f"<line x1='{pad}' x2='{w - pad}' y1='{y0:.1f}' y2='{y0:.1f}' stroke='#bbb'/>{dots}"
        f"<text x='{w - pad}' y='{h - 8}' font-size='10' text-anchor='end'>learned effect "
        f"{_num(x_lo)} to {_num(x_hi)}</text>"
        f"<text x='4' y='{pad - 6}' font-size='10'>used effect {_num(y_lo)} to {_num(y_hi)}</text></svg>"
    )
    caption = (
        "one dot per latent: learned effect (x, against the strongest control) and used effect (y, the "
        "largest of its used tests), coloured by verdict (green model feature, orange dataset feature, "
        "grey not found, red inconclusive)"
    )
    return _figure(svg, caption)


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
