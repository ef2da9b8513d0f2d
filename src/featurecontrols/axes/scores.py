"""Raw scores: what a control's run hands to the axes, the real condition against the control one.

A control (with the finder or the forward pass it runs under) produces one of these per candidate;
only ``axes/`` turns them into :class:`~featurecontrols.axes.evidence.Evidence` (effect, interval,
p-value). Each record says which test fits it:

    NullScores      a statistic against B draws of a permutation null           -> permutation p
    CopyScores      per-example correctness against S randomised copies         -> McNemar per copy
    PairedScores    per-example values against a control on the same examples   -> sign test
    MatchScores     a latent's best code match against a pooled chance null     -> permutation p
    MatchPairScores two dependent correlations of a latent's codes              -> Steiger's Z
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from featurecontrols.axes.evidence import Unit


@dataclass(frozen=True)
class NullScores:
    """The mean of ``real`` (n,) per-example values against ``null`` (B,), the same mean under B
    control draws. ``control`` (n,), when given, is each example's mean over the control draws
    (the interval is then of the paired difference, resampling ``clusters`` (n,) when given).
    ``lower_is_better`` flips the direction (a codelength). ``size`` (n,), for a signed statistic,
    is how far each example's outputs moved whatever the direction: what "not used" bounds.
    ``group`` (g,), for a test that moves several latents at once, their indices, the latent first."""

    metric: str
    unit: Unit
    real: Tensor
    null: Tensor
    control: Tensor | None = None
    clusters: Tensor | None = None
    lower_is_better: bool = False
    size: Tensor | None = None
    group: Tensor | None = None


@dataclass(frozen=True)
class CopyScores:
    """Per-example correctness (n,) of the trained model against that of S randomised copies (S, n)."""

    metric: str
    real: Tensor
    copies: Tensor


@dataclass(frozen=True)
class PairedScores:
    """Per-example values of the real condition (n,) and of the control on the same examples (n,)."""

    metric: str
    unit: Unit
    real: Tensor
    control: Tensor


@dataclass(frozen=True)
class MatchScores:
    """One latent's best code correlation with a refitted dictionary, against a pooled chance null.

    ``real`` is a 0-d tensor (the latent's match), ``null`` (N,) the matches that chance gives,
    ``n_rows`` the held-out rows the correlations are computed on.
    """

    metric: str
    real: Tensor
    null: Tensor
    n_rows: int


@dataclass(frozen=True)
class MatchPairScores:
    """Correlations of one latent's codes z on the same rows: with its match in a refit of the trained
    dictionary (``real``, 0-d) and in each of S control dictionaries (``control``, (S,)); ``between``
    (S,) is the correlation of the two partners. Correlations are oriented to be >= 0."""

    metric: str
    real: Tensor
    control: Tensor
    between: Tensor
    n_rows: int


RawScores = NullScores | CopyScores | PairedScores | MatchScores | MatchPairScores
