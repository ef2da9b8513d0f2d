"""Re-initialised weights: the model as it was before training, drawn afresh.

Each parameter is re-drawn by the model library's own initialiser, which the model adapter knows
(plain torch: every module's ``reset_parameters``, seeded per module name; see ``adapters/``). A
parameter that no initialiser covers (a bare ``nn.Parameter`` on a custom module) gets a
moment-matched Gaussian, w' ~ N(mean(w), std(w)^2) entrywise, the per-tensor scheme of Heap et al.
(2025), with the moments taken before any initialiser runs. The report lists which parameters fell
back. A finding that survives re-initialisation comes from the architecture and the data, not
training.
"""

from __future__ import annotations

from torch import nn

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.controls.weight._copy import WeightControlBase
from featurecontrols.controls.weight.moment_matched_weights import (
    MOMENT_MATCHED,
    moment_matched_draw,
    moments,
)


class ReinitialisedWeights(WeightControlBase):
    """Weight control: re-draw every parameter with the library's initialiser (module docstring).

    Options ``keep``, ``presets``, ``layers``: see ``controls/weight/_copy.WeightControlBase``.
    """

    name = "reinitialised"

    def redraw(
        self, copy: nn.Module, targets: dict[str, nn.Parameter], seed: int, adapter: ModelAdapter
    ) -> dict[str, str]:
        before = {name: moments(p) for name, p in targets.items()}
        methods = adapter.reinitialise(copy, targets, seed)
        for name, p in targets.items():
            if name not in methods:
                p.copy_(moment_matched_draw(p.shape, before[name], seed, name))
                methods[name] = MOMENT_MATCHED
        return methods
