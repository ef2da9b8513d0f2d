"""The run as text: a fixed-width table of verdicts, one row per candidate, and the cells it is made of."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from featurecontrols.axes.evidence import AXES, Axis, AxisName, CandidateResult, Margins
from featurecontrols.pipeline.results import RunResult, TopInput


def axis_cell(axis: Axis) -> str:
    """e.g. ``yes 1.00 vs 0.50 p=0.001``: the score against the control score of the test with the
    largest corrected p (the one the axis stands or falls by), and that p."""
    if axis.status == "not run":
        return "not run"
    weakest = max(axis.evidence, key=lambda e: e.p_adjusted)
    return (
        f"{axis.status:<3} {num(weakest.score)} vs {num(weakest.control_score)} p={p_text(axis.p_adjusted)}"
    )


SHOWN = 5  # latents per verdict in the verdict table and the plots


def dictionaries(candidates: Sequence[CandidateResult]) -> dict[str, list[CandidateResult]]:
    """Each dictionary's latents (``site/name``), in order."""
    groups: dict[str, list[CandidateResult]] = {}
    for c in candidates:
        if c.kind == "dictionary latent":
            groups.setdefault(f"{c.site}/{c.name.rsplit('/', 1)[0]}", []).append(c)
    return groups


def latent_effect(c: CandidateResult, axis: AxisName) -> float | None:
    """A latent's effect on an axis: learned against its strongest control (the smallest effect),
    used the largest of its tests; None where the axis did not run."""
    effects = [e.effect for e in c.axes[axis].evidence]
    if not effects:
        return None
    return min(effects) if axis == "learned" else max(effects)


def top_latents(latents: Sequence[CandidateResult]) -> list[CandidateResult]:
    """The SHOWN latents with the largest used effect of each verdict."""
    out = []
    for verdict in dict.fromkeys(c.verdict for c in latents):
        same = [c for c in latents if c.verdict == verdict]
        out += sorted(same, key=lambda c: -(latent_effect(c, "used") or 0.0))[:SHOWN]
    return out


def top_inputs(result: RunResult, c: CandidateResult) -> tuple[TopInput, ...]:
    """Latent ``c``'s top-activating held-out inputs (none where the run kept none)."""
    name, j = c.name.rsplit("/", 1)
    latents = result.top_inputs.get(f"{c.site}/{name}", ())
    return latents[int(j)] if int(j) < len(latents) else ()


def input_text(t: TopInput) -> str:
    """e.g. ``2.31 the [cat] sat``: the code, then the row's context (or its row number)."""
    return f"{num(t.code)} {t.context if t.context is not None else f'row {t.row}'}"


def shown_candidates(candidates: Sequence[CandidateResult]) -> list[CandidateResult]:
    """Every candidate but a dictionary's latents, of which only its ``top_latents``: what the verdict
    tables list (a run over 16k latents prints tens of rows, and their counts per verdict)."""
    top = {id(c) for latents in dictionaries(candidates).values() for c in top_latents(latents)}
    return [c for c in candidates if c.kind != "dictionary latent" or id(c) in top]


def table(result: RunResult) -> str:
    """A fixed-width table, one row per candidate (of a dictionary's latents, its ``top_latents``), and
    a summary of verdicts against ground truth."""
    several = len(result.sites) > 1
    shown = shown_candidates(result.candidates)
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
        for c in shown
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
    lines.append(
        f"learned/used 'no': shown within the margin of a control (used: the change itself too), "
        f"tests of equivalence {s.correction}-corrected over the run's; used "
        f"'yes': above the margin ({margins_text(s.margins)})"
    )
    lines += [f"inconclusive {c.site}/{c.name}: {c.reason}" for c in shown if c.reason]
    lines.extend(summary_lines(result.candidates))
    for name, latents in dictionaries(result.candidates).items():
        counts = Counter(c.verdict for c in latents)
        lines.append(
            f"latents of {name}: {len(latents)}, "
            + ", ".join(f"{n} {v}" for v, n in counts.items())
            + f" (the table lists the {SHOWN} with the largest used effect of each verdict)"
        )
        lines += [
            f"  {c.name} ({c.verdict}): " + " | ".join(input_text(t) for t in top_inputs(result, c)[:3])
            for c in top_latents(latents)
            if top_inputs(result, c)
        ]
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
