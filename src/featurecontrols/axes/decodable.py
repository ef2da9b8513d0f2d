"""Decodable: does the finder beat its null at this site?

- A labelled feature (or a direction given with labels): the probe's held-out accuracy against the
  same probe fitted on shuffled labels, which keep the class balance and break any relation to the
  activations (``NullScores``: permutation p, effect = accuracy - mean null accuracy).
- A dictionary latent ("found"): its best code correlation with a dictionary refitted with another
  seed, on held-out rows, against the matches that chance gives (``MatchScores``); and, with
  dictionary baselines (Korznikov et al. 2026), better than the best match in a fit whose decoder or
  encoder stayed random (``MatchPairScores``, the learned axis' test of latents against a control).

If not, the candidate is *not found* at this site.
"""

from __future__ import annotations

from featurecontrols.axes.evidence import Bootstrap, Evidence
from featurecontrols.axes.from_scores import from_match, from_match_pair, from_null
from featurecontrols.axes.scores import MatchPairScores, MatchScores, NullScores, RawScores


def assess(control: str, scores: RawScores, key: tuple[str, ...], bootstrap: Bootstrap) -> Evidence:
    """The decodable axis' evidence from one control's raw scores for one candidate."""
    if isinstance(scores, NullScores):
        return from_null("decodable", control, scores, key, bootstrap)
    if isinstance(scores, MatchScores):
        return from_match("decodable", control, scores, bootstrap)
    if isinstance(scores, MatchPairScores):
        return from_match_pair("decodable", control, scores, bootstrap)
    raise TypeError(
        f"the decodable axis takes NullScores, MatchScores or MatchPairScores, got {type(scores).__name__}"
    )
