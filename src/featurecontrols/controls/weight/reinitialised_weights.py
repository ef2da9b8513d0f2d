"""Re-initialised weights: the model as it was before training, drawn afresh.

Every module that defines ``reset_parameters`` (``nn.Linear``, ``nn.Conv2d``, ``nn.Embedding``,
``nn.LayerNorm``, ...) re-draws its own parameters with the model's own initialiser. It draws from
the global RNG, so each call runs under a forked RNG seeded from (seed, module name): the caller's
RNG state is untouched and the result does not depend on module order. A parameter that no
``reset_parameters`` covers (a bare ``nn.Parameter`` on a custom module) gets a moment-matched
Gaussian, w' ~ N(mean(w), std(w)^2) entrywise, the per-tensor scheme of Heap et al. (2025).
A finding that survives re-initialisation comes from the architecture and the data, not training.
"""

from __future__ import annotations

import torch
from torch import nn

from featurecontrols.controls.weight._copy import WeightControlBase, seeded_global_rng
from featurecontrols.seeding import derive_seed, generator

MOMENT_MATCHED = "moment-matched Gaussian"


class ReinitialisedWeights(WeightControlBase):
    """Weight control: re-draw every parameter with its module's ``reset_parameters``.

    Options ``keep``, ``presets``, ``layers``: see ``controls._weights.WeightControlBase``.
    """

    name = "reinitialised"

    def redraw(self, model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        return _reinitialise(model, targets, seed)


def _reinitialise(model: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
    name_of = {id(p): name for name, p in targets.items()}
    methods: dict[str, str] = {}
    resets = []
    for module_name, module in model.named_modules():
        reset = getattr(module, "reset_parameters", None)
        own = list(module.parameters(recurse=False))
        mine = [name_of[id(p)] for p in own if id(p) in name_of and name_of[id(p)] not in methods]
        if callable(reset) and mine:
            methods |= dict.fromkeys(mine, f"reset_parameters ({type(module).__name__})")
            resets.append((module_name, reset, own, {id(targets[n]) for n in mine}))

    # Moments are taken before any reset, in case an initialiser reaches beyond its own tensors.
    moments = {}
    for name, p in targets.items():
        if name not in methods:
            w = p.detach().to("cpu", torch.float64)
            moments[name] = (w.mean(), w.std(correction=0))

    for module_name, reset, own, mine_ids in resets:
        others = [(p, p.detach().clone()) for p in own if id(p) not in mine_ids]  # kept, or tied elsewhere
        with seeded_global_rng(derive_seed(seed, module_name), {p.device for p in own}):
            reset()
        for p, value in others:
            p.copy_(value)

    for name, (mean, std) in moments.items():
        p = targets[name]
        draw = torch.randn(p.shape, generator=generator(seed, name), dtype=torch.float64)
        p.copy_(draw * std + mean)
        methods[name] = MOMENT_MATCHED
    return methods
