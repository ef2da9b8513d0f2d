"""A synthetic language with latent variables, for a toy causal LM (``testbeds/toy_causal_lm.py``).

Every sequence has two hidden binary variables, ``topic`` and ``negated``, and is 12 words::

    marker  c c c c c c c c c  filler  answer
    (topic) (9 content slots)  (uh/um) (topic, negated)

- the **marker** is one of 32 words of its topic (``ma07``, ``mb19``);
- each **content** slot is a word drawn uniformly from the topic's 4,096 (``ca0123`` / ``cb0123``);
  when ``negated``, one slot (uniform over the 9) holds a negation word instead (``not``, ``never``,
  ``no``);
- the **filler** is ``uh`` or ``um`` with probability 1/2 each, independent of everything else;
- the **answer** is drawn uniformly from the 8 words of its (topic, negated) cell (``r10_3``).

Vocabulary: 8,192 content + 64 markers + 32 answers + 3 negations + 2 fillers + ``<pad>``, ``<unk>``
= 8,295 words. A model that predicts the answer at the filler must compute ``topic`` (from the marker
and the content words) and ``negated`` (from whether a negation word occurred anywhere) and carry both
to the last position; the filler's identity sits in the last position's residual stream of any model
(its own embedding) and no next word depends on it.

:func:`sample` gives the sequences without their answer (they end at the filler, where the answer is
predicted), the three labels per sequence and, per label, every sequence with that label toggled and
all else kept (same length): the counterfactuals of the used axis.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from featurecontrols.errors import FeatureControlsError

CONTENT = 4096  # content words per topic
MARKERS = 32  # marker words per topic
ANSWERS = 8  # answer words per (topic, negated) cell
SLOTS = 9  # content slots per sequence
NEGATIONS = ("not", "never", "no")
FILLERS = ("uh", "um")
SPECIALS = ("<pad>", "<unk>")
FEATURES = ("topic", "negated", "filler_um")
TOPICS = ("a", "b")


def vocabulary() -> list[str]:
    """Every word of the language, specials first (id 0 is ``<pad>``); 8,295 words."""
    words = [*SPECIALS, *FILLERS, *NEGATIONS]
    words += [f"m{t}{i:02d}" for t in TOPICS for i in range(MARKERS)]
    words += [answer_word(t, n, i) for t in range(2) for n in range(2) for i in range(ANSWERS)]
    words += [f"c{t}{i:04d}" for t in TOPICS for i in range(CONTENT)]
    return words


def answer_word(topic: int, negated: int, i: int) -> str:
    """The i-th answer word of the (topic, negated) cell."""
    return f"r{topic}{negated}_{i}"


@dataclass(frozen=True)
class Sequence:
    """One sequence's hidden variables and the draws that realise them."""

    topic: int
    negated: int
    filler_um: int
    marker: int  # index within the topic's markers
    content: tuple[int, ...]  # SLOTS indices within the topic's content words
    negation_slot: int  # the slot a negation word takes when negated
    negation: int  # which negation word
    answer: int  # index within the answer cell

    def words(self) -> list[str]:
        """The sequence up to and including the filler (11 words; the answer is predicted after it)."""
        t = TOPICS[self.topic]
        content = [f"c{t}{i:04d}" for i in self.content]
        if self.negated:
            content[self.negation_slot] = NEGATIONS[self.negation]
        return [f"m{t}{self.marker:02d}", *content, FILLERS[self.filler_um]]

    def with_answer(self) -> list[str]:
        """The whole 12-word sequence, answer last (what the model is trained on)."""
        return [*self.words(), answer_word(self.topic, self.negated, self.answer)]


def draw(rng: random.Random) -> Sequence:
    """A sequence from the generator (module docstring)."""
    return Sequence(
        topic=rng.randrange(2),
        negated=rng.randrange(2),
        filler_um=rng.randrange(2),
        marker=rng.randrange(MARKERS),
        content=tuple(rng.randrange(CONTENT) for _ in range(SLOTS)),
        negation_slot=rng.randrange(SLOTS),
        negation=rng.randrange(len(NEGATIONS)),
        answer=rng.randrange(ANSWERS),
    )


def negation_before_filler(words: list[str]) -> bool:
    """Whether the word just before the filler (the last content slot) is the negation word."""
    return words[-2] in NEGATIONS


def toggled(sequence: Sequence, feature: str) -> Sequence:
    """The same draws with ``feature`` flipped: the other topic's words at the same indices, the
    negation word put in (or taken out of) its slot, or the other filler."""
    if feature not in FEATURES:
        raise FeatureControlsError(f"the toy language has no feature {feature!r}", f"use one of {FEATURES}")
    return replace(sequence, **{feature: 1 - getattr(sequence, feature)})


def sample(n: int, seed: int) -> tuple[list[list[str]], dict[str, list[int]], dict[str, list[list[str]]]]:
    """``n`` sequences (words up to the filler), their labels and their counterfactuals per label."""
    rng = random.Random(f"toy language {seed}")
    sequences = [draw(rng) for _ in range(n)]
    labels = {f: [getattr(s, f) for s in sequences] for f in FEATURES}
    counterfactuals = {f: [toggled(s, f).words() for s in sequences] for f in FEATURES}
    return [s.words() for s in sequences], labels, counterfactuals
