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
"""

from __future__ import annotations

from featurecontrols.axes.evidence import Bootstrap, Evidence
from featurecontrols.axes.from_scores import from_null, from_pairs
from featurecontrols.axes.scores import NullScores, PairedScores, RawScores


def assess(control: str, scores: RawScores, key: tuple[str, ...], bootstrap: Bootstrap) -> Evidence:
    """The used axis' evidence from one control's raw scores for one candidate."""
    if isinstance(scores, NullScores):
        return from_null("used", control, scores, key, bootstrap)
    if isinstance(scores, PairedScores):
        return from_pairs("used", control, scores, key, bootstrap)
    raise TypeError(f"the used axis takes NullScores or PairedScores, got {type(scores).__name__}")
