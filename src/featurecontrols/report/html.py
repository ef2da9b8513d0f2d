"""The run as one self-contained HTML page (no network): the verdict table first, then the plots.

Sections: the verdicts (coloured by verdict, with a legend), per site the activation spectra of the
trained and randomised models, per dictionary its latents' counts per verdict, a scatter of their
learned against used effects and the top-activating held-out inputs of the latents shown, per
candidate every test's plot (null distributions with the real score, trained model against its
copies, per-example scatters, steering curves, Pareto fronts), and the settings that reproduce the
run. A dictionary's latents appear in the verdict table and get
plots only for the ``SHOWN`` with the largest used effect per verdict, so a page over 16k latents
stays small.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from featurecontrols.axes.evidence import AXES, CandidateResult
from featurecontrols.pipeline.results import RunResult
from featurecontrols.report import plots
from featurecontrols.report.text import (
    SHOWN,
    axis_cell,
    dictionaries,
    input_text,
    latent_effect,
    margins_text,
    num,
    shown_candidates,
    summary_lines,
    top_inputs,
    top_latents,
)

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
.model-feature { background: #e6f4ea; } .dataset-feature { background: #fef7e0; }
.not-found { background: #f1f3f4; } .inconclusive { background: #fce8e6; }
.wrong { outline: 3px solid #d93025; }
section { margin-top: 2em; } .plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; width: 320px; } figcaption { font-size: 12px; color: #555; }
"""

LEGEND = (
    "Each axis cell: the axis' status, the real score against the control score of the test with the "
    "largest corrected p-value (for the learned axis the strongest copy, the one the test is against), "
    "and that p-value. yes: beats every control significantly (used: any one used test does, by more "
    "than its margin); no: on the decodable axis not significant, on the learned axis shown equivalent "
    "to a copy, on the used axis every test shown within its margin (the effect and the change itself "
    "shown below it, by tests of equivalence corrected over the run's as the p-values are; against a "
    "null of random directions or latents the effect's interval is of the change less a random null "
    "draw, so it carries the null's spread); inconclusive: "
    "neither, the reason is in the last column. Verdict colours: green model feature, yellow dataset "
    "feature, grey not found, red inconclusive; a red outline marks "
    "a verdict that disagrees with the ground truth."
)


def to_html(result: RunResult) -> str:
    """The page (module docstring)."""
    e = html.escape
    several = len(result.sites) > 1
    groups = dictionaries(result.candidates)
    shown = shown_candidates(result.candidates)
    rows = "".join(_row(c, several) for c in shown)
    spectra = "".join(
        f"<section><h2>Activations at <code>{e(site)}</code></h2><div class='plots'>"
        f"{plots.spectra_plot(by_model)}</div></section>"
        for site, by_model in result.spectra.items()
        if by_model
    )
    sections = "".join(_section(c, result) for c in shown)
    tables = "".join(_dictionary_table(name, fits) for name, fits in result.dictionaries.items())
    tables += "".join(_latents_section(name, latents, result) for name, latents in groups.items())
    settings = "".join(
        f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in asdict(result.settings).items()
    )
    summary = "".join(f"<li>{e(line)}</li>" for line in summary_lines(result.candidates))
    testbed = (
        ""
        if result.testbed is None
        else f"<p>Testbed {e(result.testbed.name)}: {e(result.testbed.description)}</p>"
    )
    site_head = "<th>site</th>" if several else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>featurecontrols report: {e(", ".join(result.sites))}</title>
<style>{STYLE}</style></head><body>
<h1>featurecontrols: verdicts at <code>{e(", ".join(result.sites))}</code></h1>
{testbed}
<table id="verdicts"><tr>{site_head}<th>candidate</th><th>ground truth</th><th>verdict</th>
<th>decodable</th><th>learned</th><th>used</th><th>why inconclusive</th></tr>{rows}</table>
<p class="legend">{e(LEGEND)} {e(margins_text(result.settings.margins))}.</p>
<ul>{summary}</ul>
{spectra}
{tables}
{sections}
<h2>Settings</h2><table>{settings}</table>
</body></html>
"""


def _row(c: CandidateResult, several: bool) -> str:
    e = html.escape
    css = c.verdict.replace(" ", "-") + (" wrong" if c.correct is False else "")
    return (
        "<tr>"
        + (f"<td>{e(c.site)}</td>" if several else "")
        + f"<td>{e(c.name)}</td><td>{e(c.ground_truth or '-')}</td><td class='{css}'>{e(c.verdict)}</td>"
        + "".join(f"<td>{e(axis_cell(c.axes[a]))}</td>" for a in AXES)
        + f"<td><small>{e(c.reason)}</small></td></tr>"
    )


def _dictionary_table(name: str, fits: dict[str, dict[str, float]]) -> str:
    """The metrics of one dictionary under every fit: trained against its controls (Heap et al. 2025)."""
    e = html.escape
    metrics = list(dict.fromkeys(m for values in fits.values() for m in values))
    head = "".join(f"<th>{e(f)}</th>" for f in fits)
    rows = "".join(
        f"<tr><td>{e(m)}</td>"
        + "".join(f"<td>{num(v.get(m, float('nan')))}</td>" for v in fits.values())
        + "</tr>"
        for m in metrics
    )
    return (
        f"<section><h2>Dictionary <code>{e(name)}</code> under every fit</h2>"
        f"<table><tr><th>metric</th>{head}</tr>"
        f"{rows}</table><p>Each fit's metrics on its own held-out activations: where the randomised fits "
        "score as well as the trained one, the metric does not tell what the model learned.</p></section>"
    )


def _latents_section(name: str, latents: Sequence[CandidateResult], result: RunResult) -> str:
    """A dictionary's latents: counts per verdict, learned against used effects per latent, and the
    top-activating held-out inputs of the latents the verdict table shows."""
    e = html.escape
    counts = Counter(c.verdict for c in latents)
    rows = "".join(
        f"<tr><td class='{e(v.replace(' ', '-'))}'>{e(v)}</td><td>{n}</td></tr>" for v, n in counts.items()
    )
    points = [
        (x, y, c.verdict)
        for c in latents
        for x, y in [(latent_effect(c, "learned"), latent_effect(c, "used"))]
        if x is not None and y is not None
    ]
    scatter = plots.latent_scatter(points, f"latents of {name}") if points else ""
    inputs = "".join(
        f"<tr><td>{e(c.name)}</td><td class='{e(c.verdict.replace(' ', '-'))}'>{e(c.verdict)}</td><td>"
        + "<br>".join(e(input_text(t)) for t in top_inputs(result, c))
        + "</td></tr>"
        for c in top_latents(latents)
    )
    return (
        f"<section><h2>Latents of <code>{e(name)}</code></h2><table><tr><th>verdict</th><th>latents</th>"
        f"</tr>{rows}</table><p>{len(latents)} latents; the verdict table and the plots below show the "
        f"{SHOWN} with the largest used effect of each verdict.</p>"
        f"<div class='plots'>{scatter}</div><h3>Top-activating held-out inputs</h3>"
        f"<table class='top-inputs'><tr><th>latent</th><th>verdict</th><th>code, input</th></tr>{inputs}"
        "</table></section>"
    )


def _section(c: CandidateResult, result: RunResult) -> str:
    figures = []
    curves = [s for s in result.steering if s["feature"] == c.name]
    if curves:
        figures.append(plots.steering_plot(curves))
    for search in result.search.get(c.name, []):
        figures.extend(plots.pareto_plots(search))
    for axis in c.axes.values():
        for ev in axis.evidence:
            title = f"{ev.axis}: {ev.control}"
            if ev.null is not None:
                figures.append(plots.histogram(ev.null, ev.score, title, ev.metric))
            elif ev.detail.copies:
                figures.append(plots.strip(ev, title))
            elif ev.detail.real:
                figures.append(plots.paired_scatter(ev, title))
    where = f" at {c.site}" if len(result.sites) > 1 else ""
    return (
        f"<section><h2>{html.escape(c.name)}{html.escape(where)}: {html.escape(c.verdict)}</h2>"
        f"<div class='plots'>{''.join(figures)}</div></section>"
    )
