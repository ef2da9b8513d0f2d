"""The train/test split shared by every probe fit of a run (real, null and randomised copies), and
the fit that uses it: a fresh copy of the probe fitted on the training rows, judged on the test rows."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.errors import FeatureControlsError
from featurecontrols.finders.base import Probe


@dataclass(frozen=True)
class Split:
    train: Tensor
    test: Tensor

    @classmethod
    def random(cls, n: int, test_fraction: float, generator: torch.Generator) -> Split:
        """A random split of n rows; raises if either part would be empty."""
        if not 0.0 < test_fraction < 1.0:
            raise FeatureControlsError(
                f"test_fraction must be in (0, 1), got {test_fraction}", "use e.g. test_fraction=0.3"
            )
        n_test = round(n * test_fraction)
        if n_test < 1 or n - n_test < 2:
            raise FeatureControlsError(
                f"{n} examples are too few to split into a training and a test set",
                "use at least a few dozen examples per feature (hundreds for reliable p-values)",
            )
        order = torch.randperm(n, generator=generator)
        return cls(train=order[n_test:], test=order[:n_test])

    def check_both_classes(self, Y: Tensor, names: list[str]) -> None:
        """Every label column must have both classes in both parts."""
        for part, idx in (("training", self.train), ("test", self.test)):
            counts = Y[idx].sum(dim=0)
            for j, name in enumerate(names):
                if counts[j] == 0 or counts[j] == idx.numel():
                    raise FeatureControlsError(
                        f"feature {name!r} has a single class in the {part} split",
                        "the feature is too rare for this dataset: add examples of the rare class",
                    )


def held_out_correctness(probe: Probe, X: Tensor, Y: Tensor, split: Split) -> Tensor:
    """Fit a fresh copy of ``probe`` on the training rows; return test correctness (n_test, k), bool."""
    fitted = copy.deepcopy(probe).fit(X[split.train], Y[split.train])
    correct: Tensor = fitted.predict(X[split.test]) == Y[split.test]
    return correct
