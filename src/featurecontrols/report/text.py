"""The run as text: a fixed-width table of verdicts, one row per candidate, and the cells it is made of."""

from __future__ import annotations

from dataclasses import asdict

from featurecontrols.axes.evidence import AXES, Axis, CandidateResult, Margins
from featurecontrols.pipeline.results import RunResult


def axis_cell(axis: Axis) -> str:
    """e.g. ``yes 1.00 vs 0.50 p=0.001``: the score against the control score of the test with the
    largest corrected p (the one the axis stands or falls by), and that p."""
    if axis.status == "not run":
        return "not run"
    weakest = max(axis.evidence, key=lambda e: e.p_adjusted)
    return (
        f"{axis.status:<3} {num(weakest.score)} vs {num(weakest.control_score)} p={p_text(axis.p_adjusted)}"
    )


def table(result: RunResult) -> str:
    """A fixed-width table, one row per candidate, and a summary of verdicts against ground truth."""
    several = len(result.sites) > 1
    header = [*(["site"] if several else []), "candidate", "ground truth", "verdict", "ok", *AXES]
    rows = [
        [
            *([c.site] if several else []),
            c.name,
            c.ground_truth or "-",
            c.verdict,
            {True: "yes", False: "NO", None: "-"}[c.correct],
            *(axis_cell(c.axes[a]) for a in AXES),
        ]
        for c in result.candidates
    ]
    lines = fixed_width([header, *rows])
    s = result.settings
    lines.append("")
    lines.append(
        f"site{'s' if several else ''} {', '.join(result.sites)}; "
        f"{s.n_examples} examples ({s.n_test} held out); "
        f"p-values {s.correction}-corrected over {s.n_tests_corrected} tests; alpha {s.alpha}"
    )
    lines.append("cells: status, real score vs control score, corrected p (of the test with the largest p)")
    lines.append(f"learned/used 'no': shown within the margin of a control ({margins_text(s.margins)})")
    lines += [f"inconclusive {c.site}/{c.name}: {c.reason}" for c in result.candidates if c.reason]
    lines.extend(summary_lines(result.candidates))
    for name, fits in result.dictionaries.items():
        lines += [
            "",
            f"dictionary {name}: metrics of each fit on its own held-out activations",
            *metrics_table(fits),
        ]
    return "\n".join(lines)


def metrics_table(fits: dict[str, dict[str, float]]) -> list[str]:
    """One row per metric, one column per fit (trained, each copy, each input control)."""
    names = list(fits)
    metrics = list(dict.fromkeys(m for values in fits.values() for m in values))
    rows = [[m, *(num(fits[n].get(m, float("nan"))) for n in names)] for m in metrics]
    return fixed_width([["metric", *names], *rows])


def fixed_width(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, the first row a header underlined with dashes."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def summary_lines(candidates: tuple[CandidateResult, ...] | list[CandidateResult]) -> list[str]:
    """Per ground-truth category: how many verdicts match, e.g. ``model feature: 2/2 verdicts match``."""
    by_truth: dict[str, list[CandidateResult]] = {}
    for c in candidates:
        if c.ground_truth is not None:
            by_truth.setdefault(c.ground_truth, []).append(c)
    return [
        f"{truth}: {sum(bool(c.correct) for c in cs)}/{len(cs)} verdicts match the ground truth"
        for truth, cs in by_truth.items()
    ]


def margins_text(margins: Margins) -> str:
    """e.g. ``margins: accuracy 0.02, bits 0.02, ...``."""
    return "margins: " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in asdict(margins).items())


def num(x: float) -> str:
    """A number in a cell: 3 significant digits when small, else 2 decimals."""
    return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.2f}"


def p_text(p: float) -> str:
    """A p-value in a cell."""
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"
