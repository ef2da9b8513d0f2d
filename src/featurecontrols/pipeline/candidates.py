"""Candidates: what gets a verdict (DESIGN.md, "Candidates").

    Labelled   a label per example; the battery's probe finds its direction at every site of the run
    Direction  a vector at one site (a probe direction, a steering vector, a PCA component), with
               the labels it should read, if any, and the finder that produced it
    Latents    every latent of one dictionary (an SAE, a transcoder, PCA) at one site: fitted by the
               run from ``finder``, or given fitted (``dictionary``, e.g. an SAELens SAE); a
               transcoder reads ``site`` and writes ``writes``

A run's candidates are checked and named here (``prepare``), before any work: one id per candidate
and site, ``site/name`` (a latent: ``site/name/j``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast, get_args

import torch
from torch import Tensor, nn

from featurecontrols.axes.evidence import GroundTruth
from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Dictionary, Finder, Probe, UnsupervisedFinder, check_dictionary
from featurecontrols.finders.sparse_codes import code_chunks
from featurecontrols.finders.transcoder import Transcoder


@dataclass(frozen=True)
class Labelled:
    """A labelled feature: one 0/1 label (any two values) per activation row.

    ``counterfactuals``: the inputs with this feature changed, one per input (a tensor, or batches
    like the inputs); the used axis then patches from them instead of ablating a direction.
    """

    name: str
    labels: Tensor
    ground_truth: GroundTruth | None = None
    counterfactuals: Tensor | Sequence[Any] | None = None
    kind = "labelled feature"


@dataclass(frozen=True)
class Direction:
    """A direction (d,) at ``site``. With ``labels`` it is decodable when the projection x . v reads
    them (held out, against shuffled labels), and learned when ``finder`` (default: the battery's
    probe), refitted on every control, does worse there; without labels only the used axis runs."""

    name: str
    vector: Tensor
    site: str
    labels: Tensor | None = None
    finder: Probe | None = None
    ground_truth: GroundTruth | None = None
    kind = "direction"


@dataclass(frozen=True)
class Latents:
    """Every latent of one dictionary at ``site``. ``finder`` is fitted on the trained model's
    activations (and refitted the same way under every control); ``dictionary`` is an already fitted
    one, judged as it is (then ``finder`` refits it under the controls; without a finder a fitted
    featurecontrols dictionary refits itself). ``ground_truth`` maps latent indices to their truth;
    ``n_latents`` is needed only for a dictionary that does not say how many latents it has;
    ``loss(model, batch)``, the model's scalar loss on a batch, adds the loss-recovered metric to the
    report's table of dictionary metrics (a transcoder's output spliced in at ``writes``). A
    :class:`~featurecontrols.finders.Transcoder` reads ``site`` and writes ``writes`` (the component's
    output site): it is fitted on both sites' rows, its latents are matched by their codes at ``site``
    and removed from ``writes``."""

    name: str
    site: str
    finder: UnsupervisedFinder | Transcoder | None = None
    dictionary: Dictionary | None = None
    ground_truth: Mapping[int, GroundTruth] | None = None
    n_latents: int | None = None
    loss: Callable[[nn.Module, Any], Tensor] | None = None
    writes: str | None = None
    kind = "dictionary latent"


Candidate = Labelled | Direction | Latents


def has_latents(candidates: Sequence[Candidate]) -> bool:
    """Whether a run over ``candidates`` judges dictionary latents (its defaults depend on it)."""
    return any(isinstance(c, Latents) for c in candidates)


def refit_source(latents: Latents) -> Finder:
    """What refits a Latents' dictionary under the controls and other seeds: its ``finder``, else a
    featurecontrols dictionary given fitted (it refits itself). Checked when the run is planned,
    with the transcoder's written site (``check_writes``)."""
    source = latents.finder if latents.finder is not None else latents.dictionary
    if isinstance(source, Finder) and callable(getattr(source, "fit", None)):
        check_writes(latents, source)
        return source
    cfg = getattr(latents.dictionary, "cfg", None)
    if cfg is not None and hasattr(cfg, "d_sae"):  # an SAELens SAE: judged as it is, refitted by ours
        k = getattr(cfg, "k", None)
        jumprelu = "JumpReLU" in type(latents.dictionary).__name__
        activation = f"'topk', k={k}" if k is not None else ("'jumprelu'" if jumprelu else "'relu'")
        settings = f"d_sae={cfg.d_sae}, activation={activation}"
        fix = (
            "pass the SAE with a finder of its settings: Latents(..., dictionary=sae, "
            f"finder=SparseAutoencoder({settings}))"
        )
    else:
        fix = "give Latents(..., finder=SparseAutoencoder(...)) with the dictionary's settings"
    raise FeatureControlsError(
        f"latents {latents.name!r} have no finder to refit under the controls and other seeds", fix
    )


def check_writes(latents: Latents, source: Finder) -> None:
    """A transcoder needs the site it writes, and only a transcoder has one."""
    if isinstance(source, Transcoder) and latents.writes is None:
        raise FeatureControlsError(
            f"latents {latents.name!r} come from a transcoder, which writes another site than it reads",
            "name the site it writes: Latents(..., site=<input site>, writes=<output site>)",
        )
    if latents.writes is not None and not isinstance(source, Transcoder):
        raise FeatureControlsError(
            f"latents {latents.name!r} name a written site ({latents.writes}) but their finder "
            f"{type(source).__name__} writes back the site it reads",
            "use finder=Transcoder(...) for a dictionary that reads one site and writes another, "
            "or drop writes",
        )


def check_given_dictionary(latents: Latents, expected: int, X: Tensor, Y: Tensor | None) -> None:
    """A dictionary given fitted must read the site's width (X), write the written site's (Y, for a
    transcoder; else X's), have the ``expected`` latents the plan counts, and give finite codes of
    which some are non-zero on the run's rows: checked once the trained activations are read, before
    any fit."""
    if latents.dictionary is None:
        return
    what = f"the dictionary of latents {latents.name!r} at {latents.site}"
    m = check_dictionary(latents.dictionary, X, X.shape[1] if Y is None else Y.shape[1])
    if m != expected:
        raise FeatureControlsError(
            f"{what} gives {m} codes per row, but the run counts {expected} latents",
            "give n_latents equal to the dictionary's number of latents (or leave it out)",
        )
    fired = False
    for start, codes in code_chunks(latents.dictionary, X):
        if not bool(torch.isfinite(codes).all()):
            raise FeatureControlsError(
                f"{what} gives NaN or infinite codes on the run's activations (rows {start} on)",
                "check the dictionary's weights, and that it was trained at this site and dtype",
            )
        fired = fired or bool(codes.ne(0).any())
    if not fired:
        raise FeatureControlsError(
            f"every latent of {what} is dead: no code is non-zero on the run's {X.shape[0]} rows",
            "use a dictionary trained at this site (its normalisation and layer), or refit one",
        )


def from_features(
    features: Mapping[str, Tensor] | Sequence[Candidate],
    ground_truth: Mapping[str, str] | None,
    counterfactuals: Mapping[str, Tensor | Sequence[Any]] | None,
) -> list[Candidate]:
    """The run's candidates: a Mapping name -> labels becomes :class:`Labelled` candidates (with their
    ``ground_truth`` and ``counterfactuals``); a sequence of candidates is taken as it is."""
    if isinstance(features, Tensor) or _looks_like_labels(features):
        raise FeatureControlsError(
            f"candidates were given as bare labels ({type(features).__name__}); each needs a name",
            "name them: features={'my_feature': torch.as_tensor(labels)} "
            "(several: one entry per feature, each one 0/1 label per activation row)",
        )
    if not isinstance(features, (Mapping, Sequence)) or isinstance(features, str):
        raise FeatureControlsError(
            "candidates must be a mapping name -> labels or a list of candidates, got "
            f"{type(features).__name__}",
            "pass features={'name': labels} (one 0/1 label per activation row), "
            "or [Labelled(...), Direction(...), Latents(...)]",
        )
    if not features:
        raise FeatureControlsError(
            "no candidate features were given", "pass features={name: labels}, or a list of candidates"
        )
    if isinstance(features, Mapping):
        names = list(features)
        for extra, what in ((ground_truth, "ground_truth"), (counterfactuals, "counterfactuals")):
            unknown = sorted(set(extra or {}) - set(names))
            if unknown:
                raise FeatureControlsError(
                    f"{what} for unknown feature(s) {unknown}; the features are {names}",
                    f"key {what} by the names used in features",
                )
        return [
            Labelled(
                name, _labels(name, labels), _truth(ground_truth, name), (counterfactuals or {}).get(name)
            )
            for name, labels in features.items()
        ]
    if ground_truth or counterfactuals:
        raise FeatureControlsError(
            "ground_truth and counterfactuals go inside the candidates when candidates are given as a list",
            "set Labelled(name, labels, ground_truth=..., counterfactuals=...)",
        )
    out = list(features)
    bad = [type(c).__name__ for c in out if not isinstance(c, (Labelled, Direction, Latents))]
    if bad:
        raise FeatureControlsError(f"unknown candidate type(s) {bad}", "use Labelled, Direction or Latents")
    return out


def _looks_like_labels(features: object) -> bool:
    """A list of numbers (or of lists of numbers), or a numpy array: labels without a name."""
    if type(features).__module__ == "numpy":
        return True
    if not isinstance(features, Sequence) or isinstance(features, str) or not features:
        return False
    first = features[0]
    return isinstance(first, (int, float)) or (
        isinstance(first, Sequence) and not isinstance(first, str) and bool(first)
        and isinstance(first[0], (int, float))
    )  # fmt: skip


def _labels(name: str, labels: Any) -> Tensor:
    if not isinstance(labels, Tensor):
        raise FeatureControlsError(
            f"the labels of {name!r} must be a torch.Tensor, got {type(labels).__name__}",
            "convert them: torch.as_tensor(labels), one label per activation row",
        )
    return labels.reshape(-1)


def _truth(ground_truth: Mapping[str, str] | None, name: str) -> GroundTruth | None:
    value = (ground_truth or {}).get(name)
    if value is not None and value not in get_args(GroundTruth):
        raise FeatureControlsError(
            f"ground truth {value!r} of {name!r} is not a known kind", f"use one of {get_args(GroundTruth)}"
        )
    return cast(GroundTruth | None, value)
