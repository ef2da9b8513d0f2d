"""From evidence to verdicts (DESIGN.md, "Evidence and verdict").

Every p-value of a run (all features, all controls) is corrected together; an axis is ``yes``
when each of its pieces of evidence has a corrected p below alpha and a positive effect. Then:

    not decodable                              -> not found
    decodable and (learned or used)            -> model feature
    decodable and learned = no and used = no   -> dataset feature
    anything else (e.g. used not run)          -> inconclusive
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featurecontrols.axes.evidence import Axis, AxisName, AxisStatus, Evidence, RunResult, Verdict
from featurecontrols.stats import Correction, adjust_p_values


def correct_all(evidence: Sequence[Evidence], method: Correction) -> None:
    """Fill ``p_adjusted`` of every piece of evidence, corrected as one family."""
    adjusted = adjust_p_values(torch.tensor([e.p_value for e in evidence], dtype=torch.float64), method)
    for e, p in zip(evidence, adjusted.tolist(), strict=True):
        e.p_adjusted = p


def make_axis(name: AxisName, evidence: list[Evidence], alpha: float) -> Axis:
    """``not run`` without evidence; else ``yes`` iff every piece is significant with positive effect."""
    status: AxisStatus
    if not evidence:
        status = "not run"
    elif all(e.p_adjusted < alpha and e.effect > 0 for e in evidence):
        status = "yes"
    else:
        status = "no"
    return Axis(name=name, status=status, evidence=evidence)


def decide(decodable: AxisStatus, learned: AxisStatus, used: AxisStatus) -> Verdict:
    """The verdict from the three axis statuses (table in the module docstring)."""
    if decodable != "yes":
        return "not found" if decodable == "no" else "inconclusive"
    if learned == "yes" or used == "yes":
        return "model feature"
    if learned == "no" and used == "no":
        return "dataset feature"
    return "inconclusive"


def judge_together(results: Sequence[RunResult], method: Correction, alpha: float) -> None:
    """Correct every p-value of several runs as one family (every site of a model, say), then redo
    each feature's axes and verdict in place."""
    every = [e for r in results for f in r.features for axis in f.axes.values() for e in axis.evidence]
    correct_all(every, method)
    for result in results:
        result.settings["n_tests_corrected"] = len(every)
        for feature in result.features:
            feature.axes = {
                name: make_axis(name, axis.evidence, alpha) for name, axis in feature.axes.items()
            }
            axes = feature.axes
            feature.verdict = decide(axes["decodable"].status, axes["learned"].status, axes["used"].status)
