"""Learned: does the finder beat the controls that keep what the data and the method can do but remove
what the model learned?

- Weight controls: the same finder on randomised copies of the model, same inputs, same split. The
  trained model must beat *every* copy (``CopyScores``: McNemar per copy, the largest p).
- Control tasks (Hewitt & Liang 2019): held-out accuracy on the real labels against random labels
  fixed per input type, which a finder can reach only by memorising the types (``NullScores``,
  paired per example, whole types resampled); also as online codelength (Voita & Titov 2020; lower
  is better).
- Dictionary latents: a dictionary fitted the same way on a copy's activations, or on structure-free
  inputs, contains no latent with the same codes on the same inputs: the latent recurs in a refit
  of the trained dictionary more than in the control's (``MatchPairScores``: Steiger's Z).
"""

from __future__ import annotations

from featurecontrols.axes.evidence import Bootstrap, Evidence
from featurecontrols.axes.from_scores import from_copies, from_match_pair, from_null
from featurecontrols.axes.scores import CopyScores, MatchPairScores, NullScores, RawScores


def assess(control: str, scores: RawScores, key: tuple[str, ...], bootstrap: Bootstrap) -> Evidence:
    """The learned axis' evidence from one control's raw scores for one candidate."""
    if isinstance(scores, CopyScores):
        return from_copies("learned", control, scores, key, bootstrap)
    if isinstance(scores, NullScores):
        return from_null("learned", control, scores, key, bootstrap)
    if isinstance(scores, MatchPairScores):
        return from_match_pair("learned", control, scores, bootstrap)
    raise TypeError(
        f"the learned axis takes CopyScores, NullScores or MatchPairScores, got {type(scores).__name__}"
    )
