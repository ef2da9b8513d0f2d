"""What a testbed is: a small model whose candidate features are labelled by construction.

The controls must themselves be tested (DESIGN.md, "Testbeds with ground truth"). A testbed ships a
model, the inputs to run it on, the site where candidate features are probed, a 0/1 label per
example for every candidate feature, and the truth about each feature:

- ``"model feature"``: the model computes it and its output depends on it;
- ``"dataset feature"``: decodable at the site whatever the model learned (it is in the inputs),
  but the model does not use it;
- ``"absent"``: the model never computes it, so it should not be found at all.

The truth comes from how the testbed was built and is verified independently of any control;
``checks`` holds the figures of that verification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from torch import Tensor, nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.axes.evidence import AxisName, GroundTruth
from featurecontrols.errors import FeatureControlsError
from featurecontrols.pipeline.candidates import Direction, Labelled, Latents
from featurecontrols.pipeline.checkpoint import Checkpoint

__all__ = ["GroundTruth", "Testbed"]


@dataclass
class Testbed:
    """A model with candidate features labelled by construction.

    Attributes
    ----------
    name : short identifier of the testbed.
    model : ``model(inputs)`` returns the model's outputs (logits); or the model's adapter, where the
        one ``adapters.adapt`` gives is not how the testbed is read.
    inputs : the n examples to run the model on.
    site : module path (as in ``named_modules()``) where candidate features are probed by default.
    features : feature name -> (n,) tensor of 0/1 labels, one per example of ``inputs``.
    ground_truth : feature name -> what the feature is, by construction.
    description : how the testbed was built and why its ground truth holds.
    checks : figures of the independent verification of the ground truth (name -> value).
    counterfactuals : feature name -> the inputs with that feature changed (one per input), where the
        testbed can build them; the battery then tests those features' use by counterfactual patching.
    extra : candidates other than the labelled features (directions, dictionary latents), each with
        its ground truth.
    checkpoints : the model's training history, where the testbed keeps one (``pipeline/series.py``).
    axis_truth : candidate result name -> axis -> whether that axis should be yes, for candidates
        whose truth decides an axis on its own (a latent of a variable the model computes: learned;
        of one it reads: used); the bench measures each control's AUROC on them.
    contexts : one short text per example of ``inputs`` (a token in its sentence), shown beside
        each latent's top-activating inputs in the report.
    """

    __test__ = False  # not a pytest test class, despite its name

    name: str
    model: nn.Module | ModelAdapter
    inputs: Tensor
    site: str
    features: dict[str, Tensor]
    ground_truth: dict[str, GroundTruth]
    description: str
    checks: dict[str, float]
    counterfactuals: dict[str, Tensor] = field(default_factory=dict)
    extra: tuple[Direction | Latents, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    axis_truth: dict[str, dict[AxisName, bool]] = field(default_factory=dict)
    contexts: tuple[str, ...] = ()

    def candidates(self) -> list[Labelled | Direction | Latents]:
        """Every candidate: each labelled feature (with its truth and counterfactuals), then ``extra``."""
        labelled = [
            Labelled(n, y, self.ground_truth[n], self.counterfactuals.get(n))
            for n, y in self.features.items()
        ]
        return [*labelled, *self.extra]

    def sites(self) -> list[str]:
        """``site``, then the other sites of ``extra``'s candidates (each once): every labelled
        feature is judged at each of them, every other candidate at its own."""
        extra = [c.site for c in self.extra]
        return list(dict.fromkeys([self.site, *extra]))

    def __post_init__(self) -> None:
        if set(self.features) != set(self.ground_truth):
            raise FeatureControlsError(
                f"testbed {self.name!r}: features {sorted(self.features)} and ground truth "
                f"{sorted(self.ground_truth)} name different features",
                "give every labelled feature exactly one ground-truth entry",
            )
        kinds = get_args(GroundTruth)
        n = self.inputs.shape[0]
        for feature, labels in self.features.items():
            if self.ground_truth[feature] not in kinds:
                raise FeatureControlsError(
                    f"testbed {self.name!r}: ground truth {self.ground_truth[feature]!r} of {feature!r} "
                    "is not a known kind",
                    f"use one of {kinds}",
                )
            if labels.shape != (n,):
                raise FeatureControlsError(
                    f"testbed {self.name!r}: labels of {feature!r} have shape {tuple(labels.shape)}, "
                    f"expected ({n},)",
                    "give one 0/1 label per example of inputs",
                )
