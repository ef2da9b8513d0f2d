"""Used: does changing the candidate at the site move the model's outputs more than an equally large
change that carries no feature?

- Directional ablation (and resample ablation): the relative output change when the candidate's
  direction is ablated, against the same for the class-mean directions of shuffled labels, which have
  the noise structure of an estimated direction but carry nothing (``NullScores``: permutation p).
- Counterfactual patching: per example, the output change when the site is patched from an input
  with the feature changed, against random perturbations of the same norm (``PairedScores``: sign
  test over examples).
- Erasure (LEACE): the task score lost when the concept is erased, against random subspaces of the
  same rank (``NullScores``).

Every used test is a minimum-effect test: H0 is "the change moves the outputs at most the margin more
than its null does" (``Margins``, in the control's unit), so "used" needs an effect shown larger than
a change too small to matter, and "not used" one shown smaller (``axes/verdict.py``). Against 0 instead,
a large enough run calls a change of 1e-5 nats in the next-token distribution "used".
"""

from __future__ import annotations

from featurecontrols.axes.evidence import Bootstrap, Evidence
from featurecontrols.axes.from_scores import from_null, from_pairs
from featurecontrols.axes.scores import NullScores, PairedScores, RawScores


def assess(control: str, scores: RawScores, key: tuple[str, ...], bootstrap: Bootstrap) -> Evidence:
    """The used axis' evidence from one control's raw scores for one candidate, tested against the
    margin of the scores' unit."""
    if isinstance(scores, NullScores):
        return from_null(
            "used", control, scores, key, bootstrap, bootstrap.margins.of(scores.unit), spread=True
        )
    if isinstance(scores, PairedScores):
        return from_pairs("used", control, scores, key, bootstrap, bootstrap.margins.of(scores.unit))
    raise TypeError(f"the used axis takes NullScores or PairedScores, got {type(scores).__name__}")
