"""Labelled text generated from templates and word lists: token-level and sentence-level features.

Three built-in datasets (:data:`DATASETS`), deterministic for a seed:

- ``"tokens"``: short sentences; every word carries ``is_digit`` ("3", not "three"),
  ``is_capitalised`` (sentence-initial words and proper names; invisible to an uncased tokenizer),
  and its part of speech from a small lexicon: ``is_noun``, ``is_verb``, ``is_adjective``.
- ``"sentences"``: "The teachers do not know that Paris is the capital of France." with three
  independent labels: ``negated``, ``plural_subject`` and ``capital_fact_true`` (the city is the
  country's capital). The first two are carried by single tokens ("not", "teachers"); the third
  depends on the pair (city, country), so no function of token identity alone gives it. Every
  sentence comes with three counterfactuals, one per feature: the same sentence with that feature
  toggled ("do not know" -> "know", "teachers know" -> "teacher knows", the capital -> another city).
- ``"toy_language"``: sequences of the synthetic language of ``testbeds/toy_language.py`` (for the toy
  causal LM of ``testbeds/toy_causal_lm.py``), labelled ``topic``, ``negated`` and ``filler_um``,
  with counterfactuals.

:func:`encode` tokenises a task for a Hugging Face fast tokenizer into batches for
:class:`featurecontrols.adapters.huggingface.Readout`, with one label per activation row: per
word-piece token (special and pad tokens excluded) or per sentence. :func:`encode_causal` batches a
sentence-level task for a causal LM read at its last token.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from featurecontrols.adapters.huggingface import READOUT_MASK, Level
from featurecontrols.errors import FeatureControlsError
from featurecontrols.testbeds import toy_language

NOUNS = ("cat", "dog", "teacher", "farmer", "apple", "book", "car", "house", "river", "student", "doctor")
VERBS = ("saw", "found", "bought", "painted", "liked", "carried", "sold", "washed", "took", "met")
ADJECTIVES = ("red", "big", "old", "happy", "small", "green", "quiet", "bright", "cold", "new")
NAMES = ("Alice", "Bob", "Maria", "John", "Sara", "David", "Anna", "Peter")
DAYS = ("Monday", "Tuesday", "Friday", "Sunday")
NUMBER_WORDS = ("two", "three", "five", "seven", "nine", "ten")
DIGITS = ("2", "3", "5", "7", "9", "10", "12", "40")
CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Russia": "Moscow",
    "Greece": "Athens",
    "Poland": "Warsaw",
    "Kenya": "Nairobi",
    "Peru": "Lima",
}
SUBJECTS = ("teacher", "farmer", "student", "doctor", "writer", "driver", "player", "singer")
# (singular, plural) verb phrase, affirmative then negated
CLAUSES = (
    (("knows", "know"), ("does not know", "do not know")),
    (("says", "say"), ("does not say", "do not say")),
    (("was told", "were told"), ("was not told", "were not told")),
)
TOKEN_FEATURES = ("is_digit", "is_capitalised", "is_noun", "is_verb", "is_adjective")
SENTENCE_FEATURES = ("negated", "plural_subject", "capital_fact_true")


@dataclass(frozen=True)
class TextTask:
    """Sentences as word lists with labels: per word (token level) or per sentence."""

    name: str
    level: Level
    sentences: list[list[str]]
    word_labels: dict[str, list[list[int]]]  # token level: feature -> sentence -> word -> 0/1
    sentence_labels: dict[str, list[int]]  # sentence level: feature -> sentence -> 0/1
    # sentence level: feature -> every sentence with that feature toggled and all else kept
    counterfactuals: dict[str, list[list[str]]] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.word_labels or self.sentence_labels)

    def texts(self) -> list[str]:
        return [" ".join(words) for words in self.sentences]


def token_task(n_sentences: int = 300, seed: int = 0) -> TextTask:
    """Sentences whose words are tagged digit / capitalised / noun / verb / adjective."""
    rng = random.Random(seed)
    sentences: list[list[str]] = []
    labels: dict[str, list[list[int]]] = {f: [] for f in TOKEN_FEATURES}
    for _ in range(n_sentences):
        tagged = _token_sentence(rng)
        words = [w for w, _ in tagged]
        words[0] = words[0][0].upper() + words[0][1:]
        sentences.append(words)
        tags = [t for _, t in tagged]
        labels["is_digit"].append([int(w.isdigit()) for w in words])
        labels["is_capitalised"].append([int(w[0].isupper()) for w in words])
        for feature, tag in (("is_noun", "noun"), ("is_verb", "verb"), ("is_adjective", "adj")):
            labels[feature].append([int(t == tag) for t in tags])
    return TextTask("tokens", "token", sentences, labels, {})


def _token_sentence(rng: random.Random) -> list[tuple[str, str]]:
    def pick(words: tuple[str, ...], tag: str) -> tuple[str, str]:
        return rng.choice(words), tag

    number = pick(DIGITS if rng.random() < 0.5 else NUMBER_WORDS, "num")
    plural = (rng.choice(NOUNS) + "s", "noun")
    templates = (
        [pick(NAMES, "propn"), pick(VERBS, "verb"), number, pick(ADJECTIVES, "adj"), plural,
         pick(("in", "near", "with", "after"), "prep"), ("the", "det"), pick(NOUNS, "noun"), (".", "punct")],
        [("the", "det"), pick(ADJECTIVES, "adj"), pick(NOUNS, "noun"), pick(VERBS, "verb"), number,
         plural, ("on", "prep"), pick(DAYS, "propn"), (".", "punct")],
        [("on", "prep"), pick(DAYS, "propn"), (",", "punct"), pick(NAMES, "propn"), pick(VERBS, "verb"),
         ("a", "det"), pick(ADJECTIVES, "adj"), pick(NOUNS, "noun"), (".", "punct")],
    )  # fmt: skip
    return rng.choice(templates)


def sentence_task(n_sentences: int = 400, seed: int = 0) -> TextTask:
    """Sentences with independent labels negated, plural_subject and capital_fact_true."""
    rng = random.Random(seed)
    countries = sorted(CAPITALS)
    others = random.Random(f"{seed} counterfactual cities")  # the main stream stays as it was
    sentences: list[list[str]] = []
    labels: dict[str, list[int]] = {f: [] for f in SENTENCE_FEATURES}
    counterfactuals: dict[str, list[list[str]]] = {f: [] for f in SENTENCE_FEATURES}
    for _ in range(n_sentences):
        negated, plural, true = (rng.random() < 0.5 for _ in range(3))
        country = rng.choice(countries)
        draw = others if true else rng
        wrong = CAPITALS[draw.choice([c for c in countries if c != country])]
        parts = (country, wrong, rng.choice(SUBJECTS), rng.choice(CLAUSES), rng.choice(("The", "Our", "My")))
        sentences.append(_sentence(*parts, negated, plural, true))
        counterfactuals["negated"].append(_sentence(*parts, not negated, plural, true))
        counterfactuals["plural_subject"].append(_sentence(*parts, negated, not plural, true))
        counterfactuals["capital_fact_true"].append(_sentence(*parts, negated, plural, not true))
        for feature, value in zip(SENTENCE_FEATURES, (negated, plural, true), strict=True):
            labels[feature].append(int(value))
    return TextTask("sentences", "sentence", sentences, {}, labels, counterfactuals)


def _sentence(
    country: str,
    wrong_city: str,
    subject: str,
    clause: tuple[tuple[str, str], tuple[str, str]],
    determiner: str,
    negated: bool,
    plural: bool,
    true: bool,
) -> list[str]:
    """ "The teachers do not know that Paris is the capital of France ." as words."""
    verb = clause[int(negated)][int(plural)].split()
    city = CAPITALS[country] if true else wrong_city
    noun = subject + ("s" if plural else "")
    return [determiner, noun, *verb, "that", city, "is", "the", "capital", "of", country, "."]


def toy_language_task(n_sentences: int = 400, seed: int = 0) -> TextTask:
    """Sequences of the toy language (``testbeds/toy_language.py``), labelled topic, negated and
    filler_um, each with its counterfactuals; for the toy causal LM."""
    sentences, labels, counterfactuals = toy_language.sample(n_sentences, seed)
    return TextTask("toy_language", "sentence", sentences, {}, labels, counterfactuals)


DATASETS: dict[str, Callable[[int, int], TextTask]] = {
    "tokens": token_task,
    "sentences": sentence_task,
    "toy_language": toy_language_task,
}
"""Built-in generators: name -> ``f(n_sentences, seed)``."""


def make_task(name: str, n_sentences: int, seed: int) -> TextTask:
    """The built-in dataset ``name`` (see :data:`DATASETS`) with ``n_sentences`` sentences."""
    if name not in DATASETS:
        raise FeatureControlsError(f"unknown dataset {name!r}", f"use one of {sorted(DATASETS)}")
    if n_sentences < 2:
        raise FeatureControlsError(f"n_sentences must be at least 2, got {n_sentences}", "ask for more")
    return DATASETS[name](n_sentences, seed)


def encode(
    task: TextTask, tokenizer: Any, batch_size: int
) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
    """Tokenise ``task`` into batches (tokenizer output plus :data:`READOUT_MASK`) and row labels.

    Token level: the mask selects every word-piece of a word (not special or pad tokens); each
    takes its word's labels. Sentence level: the mask is the attention mask (mean pooling as in
    sentence-transformers), one row per sentence. ``tokenizer`` is a Hugging Face fast tokenizer.
    ``controls/label/control_task.token_cells`` gives the token id of every row (token level), for a
    control task.
    """
    batches: list[dict[str, Tensor]] = []
    rows: dict[str, list[int]] = {f: [] for f in task.features}
    for start in range(0, len(task.sentences), batch_size):
        words = task.sentences[start : start + batch_size]
        enc = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
        batch = {key: value for key, value in enc.items()}
        if task.level == "sentence":
            batch[READOUT_MASK] = enc["attention_mask"].bool()
            for f in task.features:
                rows[f] += task.sentence_labels[f][start : start + batch_size]
        else:
            word_ids = [enc.word_ids(i) for i in range(len(words))]
            batch[READOUT_MASK] = torch.tensor([[w is not None for w in ids] for ids in word_ids])
            for f in task.features:
                for i, ids in enumerate(word_ids):
                    rows[f] += [task.word_labels[f][start + i][w] for w in ids if w is not None]
        batches.append(batch)
    return batches, {f: torch.tensor(v, dtype=torch.float32) for f, v in rows.items()}


def encode_causal(
    task: TextTask, tokenizer: Any, batch_size: int, counterfactuals: bool = False
) -> tuple[list[dict[str, Tensor]], dict[str, Tensor], dict[str, list[dict[str, Tensor]]] | None]:
    """Batches of input ids for a causal LM read at the last token (a site ``...[-1]``), the row labels
    and, with ``counterfactuals``, each feature's counterfactual batches row for row.

    Sentences are grouped by their token length (and, with ``counterfactuals``, by the lengths of all
    their counterfactuals), so no batch is padded and position -1 is every row's last token, in the
    sentences and in the counterfactuals alike. Rows follow the batches (sorted by length, stably);
    the labels follow the rows.
    """
    if task.level != "sentence":
        raise FeatureControlsError(
            f"a causal LM is read at one position per sequence, but dataset {task.name!r} is labelled "
            "per token",
            "use a sentence-level dataset (sentences, toy_language)",
        )
    if counterfactuals and not task.counterfactuals:
        raise FeatureControlsError(f"dataset {task.name!r} has no counterfactuals", "drop counterfactuals")
    texts = [task.sentences, *(task.counterfactuals.values() if counterfactuals else ())]
    lengths = [[len(ids) for ids in tokenizer(t, is_split_into_words=True)["input_ids"]] for t in texts]
    keys = list(zip(*lengths, strict=True))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    groups: list[list[int]] = []
    for i in order:
        if not groups or keys[groups[-1][0]] != keys[i] or len(groups[-1]) == batch_size:
            groups.append([])
        groups[-1].append(i)

    def batches(sentences: list[list[str]]) -> list[dict[str, Tensor]]:
        return [
            dict(tokenizer([sentences[i] for i in g], is_split_into_words=True, return_tensors="pt"))
            for g in groups
        ]

    labels = {
        f: torch.tensor([task.sentence_labels[f][i] for i in order], dtype=torch.float32)
        for f in task.features
    }
    changed = {f: batches(s) for f, s in task.counterfactuals.items()} if counterfactuals else None
    return batches(task.sentences), labels, changed


def encode_counterfactuals(
    task: TextTask, tokenizer: Any, batch_size: int
) -> dict[str, list[dict[str, Tensor]]]:
    """Each feature's counterfactual sentences batched as :func:`encode` batches the task (sentence
    level: one row per sentence, so a counterfactual may differ in length from its sentence)."""
    if task.level != "sentence" or not task.counterfactuals:
        raise FeatureControlsError(
            f"dataset {task.name!r} has no counterfactual sentences (only sentence-level datasets do)",
            'use dataset = "sentences", or drop counterfactuals',
        )
    return {
        feature: encode(replace(task, sentences=sentences), tokenizer, batch_size)[0]
        for feature, sentences in task.counterfactuals.items()
    }


def row_contexts(
    batches: list[dict[str, Tensor]], tokenizer: Any, rows: Level | Literal["last token"], window: int = 8
) -> list[str]:
    """One text per activation row of ``batches`` (from :func:`encode` or :func:`encode_causal`), for
    the report's top-activating inputs: a token row is its token in brackets among up to ``window``
    tokens each side, a sentence row its sentence, a last-token row its sentence ending in the
    bracketed last token. Special and pad tokens are left out."""
    special = set(tokenizer.all_special_ids)
    out = []
    for batch in batches:
        attention = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool().tolist()
        readout = batch.get(READOUT_MASK)
        for i, ids in enumerate(batch["input_ids"].tolist()):
            tokens = tokenizer.convert_ids_to_tokens(ids)
            kept = [p for p, t in enumerate(ids) if attention[i][p] and t not in special]
            if rows == "sentence":
                out.append(" ".join(tokens[p] for p in kept))
                continue
            read = [len(ids) - 1] if rows == "last token" or readout is None else readout[i].nonzero()[:, 0]
            for p in map(int, read):
                near = [q for q in kept if abs(q - p) <= window and q != p]
                words = (
                    [tokens[q] for q in near if q < p]
                    + [f"[{tokens[p]}]"]
                    + [tokens[q] for q in near if q > p]
                )
                out.append(" ".join(words))
    return out
