"""From evidence to verdicts (DESIGN.md, "Evidence and verdict").

Every p-value of a run (all sites, candidates and controls) is corrected together, once; an axis is
``yes`` when each of its pieces of evidence has a corrected p below alpha and a positive effect. Then:

    not decodable                              -> not found
    decodable and (learned or used)            -> model feature
    decodable and learned = no and used = no   -> dataset feature
    anything else (e.g. used not run)          -> inconclusive
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from featurecontrols.axes.evidence import Axis, AxisName, AxisStatus, Evidence, Verdict
from featurecontrols.stats import Correction, adjust_p_values


def corrected(evidence: Sequence[Evidence], method: Correction) -> list[Evidence]:
    """The evidence with ``p_adjusted`` filled in, every p-value corrected as one family."""
    adjusted = adjust_p_values(torch.tensor([e.p_value for e in evidence], dtype=torch.float64), method)
    return [replace(e, p_adjusted=p) for e, p in zip(evidence, adjusted.tolist(), strict=True)]


def make_axis(name: AxisName, evidence: Sequence[Evidence], alpha: float) -> Axis:
    """``not run`` without evidence; else ``yes`` iff every piece is significant with positive effect."""
    status: AxisStatus
    if not evidence:
        status = "not run"
    elif all(e.p_adjusted < alpha and e.effect > 0 for e in evidence):
        status = "yes"
    else:
        status = "no"
    return Axis(name=name, status=status, evidence=tuple(evidence))


def decide(decodable: AxisStatus, learned: AxisStatus, used: AxisStatus) -> Verdict:
    """The verdict from the three axis statuses (table in the module docstring)."""
    if decodable != "yes":
        return "not found" if decodable == "no" else "inconclusive"
    if learned == "yes" or used == "yes":
        return "model feature"
    if learned == "no" and used == "no":
        return "dataset feature"
    return "inconclusive"
