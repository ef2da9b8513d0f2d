"""From evidence to verdicts (DESIGN.md, "Evidence and verdict").

Every p-value of a run (all sites, candidates and controls) is corrected together, once; the p-values
of equivalence of the learned and used axes (``p_equivalent``: H0 the effect is at least the margin)
are corrected together as a second family, by the same method, so a "no" (and with it "dataset
feature") keeps the run's error rate as a "yes" does. An axis is

    yes           decodable and learned: each piece of its evidence has a corrected p below alpha and a
                  positive effect (the real result beats every control). used: any piece does (each
                  used test is a test of the same question, corrected with every test of the run),
                  and there the p-value is that of a minimum-effect test (H0: effect <= margin,
                  ``axes/used.py``) and the effect must exceed the margin;
    no            decodable: otherwise. learned: the trained model is shown equivalent to some control
                  (the effect shown below the margin, ``Margins``: corrected p of equivalence below
                  alpha), so it cannot beat every control. used: every test shows the intervention
                  barely moves the outputs: its effect and the change itself shown below the margin
                  (a change no larger than a null that itself moves the outputs shows nothing: the
                  null may be read as much as the feature, as at a site whose every direction is);
    inconclusive  neither was shown: the test lacks the power to decide;
    not run       no evidence.

Then:

    not decodable                              -> not found
    decodable and (learned or used)            -> model feature
    decodable and learned = no and used = no   -> dataset feature (shown on both axes)
    anything else                              -> inconclusive, with the reason
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from featurecontrols.axes.evidence import Axis, AxisName, AxisStatus, Evidence, Verdict
from featurecontrols.stats import Correction, adjust_p_values

EQUIVALENCE_AXES: tuple[AxisName, ...] = ("learned", "used")  # the axes whose "no" is a test


def corrected(evidence: Sequence[Evidence], method: Correction) -> list[Evidence]:
    """The evidence with ``p_adjusted`` filled in, every p-value corrected as one family, and
    ``p_equivalent_adjusted`` on the learned and used axes, their p-values of equivalence corrected as
    a second family."""
    adjusted = adjust_p_values(torch.tensor([e.p_value for e in evidence], dtype=torch.float64), method)
    out = [replace(e, p_adjusted=p) for e, p in zip(evidence, adjusted.tolist(), strict=True)]
    tested = [i for i, e in enumerate(out) if e.axis in EQUIVALENCE_AXES]
    p_eq = torch.tensor([out[i].p_equivalent for i in tested], dtype=torch.float64)
    for i, p in zip(tested, adjust_p_values(p_eq, method).tolist(), strict=True):
        out[i] = replace(out[i], p_equivalent_adjusted=p)
    return out


def make_axis(name: AxisName, evidence: Sequence[Evidence], alpha: float) -> Axis:
    """The axis' status from its evidence (module docstring)."""
    status: AxisStatus
    if not evidence:
        status = "not run"
    elif (any if name == "used" else all)(significant(e, alpha) for e in evidence):
        status = "yes"
    elif name == "decodable" or (any if name == "learned" else all)(equivalent(e, alpha) for e in evidence):
        status = "no"
    else:
        status = "inconclusive"
    return Axis(name=name, status=status, evidence=tuple(evidence))


def significant(e: Evidence, alpha: float) -> bool:
    """The real result beats its control: corrected p below alpha and a positive effect (on the used
    axis, an effect above the margin its test is against)."""
    return e.p_adjusted < alpha and e.effect > (e.margin if e.axis == "used" else 0.0)


def equivalent(e: Evidence, alpha: float) -> bool:
    """The real result is shown no better than its control: its effect below the margin (on the used
    axis, the intervention's change itself too), corrected p of equivalence below alpha."""
    return e.p_equivalent_adjusted < alpha


def decide(decodable: AxisStatus, learned: AxisStatus, used: AxisStatus) -> Verdict:
    """The verdict from the three axis statuses (table in the module docstring)."""
    if decodable != "yes":
        return "not found" if decodable == "no" else "inconclusive"
    if learned == "yes" or used == "yes":
        return "model feature"
    if learned == "no" and used == "no":
        return "dataset feature"
    return "inconclusive"


def reason(axes: dict[AxisName, Axis], alpha: float) -> str:
    """Why an inconclusive verdict is one: each axis that could not decide, and its weakest test."""
    if decide(*(axes[a].status for a in ("decodable", "learned", "used"))) != "inconclusive":
        return ""
    parts = []
    for axis in axes.values():
        if axis.status == "not run":
            parts.append(f"{axis.name}: not run")
        elif axis.status == "inconclusive":
            open_ = [e for e in axis.evidence if not significant(e, alpha) and not equivalent(e, alpha)]
            e = max(open_, key=lambda t: t.ci_high - t.ci_low)
            parts.append(_open_reason(axis.name, e, alpha))
    return "; ".join(parts)


def _open_reason(axis: AxisName, e: Evidence, alpha: float) -> str:
    """Why one test decided nothing."""
    p, m = f"corrected p {e.p_adjusted:.2g}", f"the margin {e.margin:g}"
    head = f"{axis}: {e.control} effect {e.effect:.3g} [{e.ci_low:.3g}, {e.ci_high:.3g}]"
    if e.ci_low > (e.margin if axis == "used" else 0.0):  # the interval is of this test alone
        above = m if axis == "used" else "0"
        return (
            f"{head} lies above {above} for this test alone (p {e.p_value:.2g}), but not after the "
            f"correction over the run's tests ({p})"
        )
    if axis == "used" and e.ci_high < e.margin and e.score_high >= e.margin:
        return (
            f"{head}: the change itself, {e.score:.3g} (upper bound {e.score_high:.3g}), is not below "
            f"{m}, and no larger than its null's: the null moves the outputs as much, so the test "
            "cannot tell"
        )
    if e.p_equivalent < alpha:
        return (
            f"{head} lies below {m} for this test alone (p of equivalence {e.p_equivalent:.2g}), but "
            f"not after the correction over the run's tests of equivalence (corrected "
            f"{e.p_equivalent_adjusted:.2g})"
        )
    if axis != "used":
        return f"{head} is neither significant ({p}) nor within {m}: the test lacks power to decide"
    return f"{head} is shown neither above nor below {m} ({p}): the test lacks power to decide"
