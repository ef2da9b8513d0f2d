"""Plain torch: any ``nn.Module``, with torch's own conventions.

- ``run``: a tuple batch is positional arguments, a Mapping keyword arguments, anything else one
  argument (``sites.call_model``); or the ``forward(module, batch)`` you give.
- ``outputs``: what the forward returns, flattened to (rows, o): a tuple's first item, an object's
  ``.logits``; or the ``output(module, batch)`` you give. With ``output_kind="logits"`` (a language
  model's next-token logits) they stay (rows, positions, vocab) and are compared by KL.
- ``reinitialise``: every module that defines ``reset_parameters`` (``nn.Linear``, ``nn.Embedding``,
  ``nn.LayerNorm``, ...) re-draws its own parameters. It draws from the global RNG, so each call runs
  under a forked RNG seeded from (seed, module name): the caller's RNG state is untouched and the
  result does not depend on module order. A parameter no ``reset_parameters`` covers is left to the
  control (the re-initialised control gives it a moment-matched Gaussian).
- ``matrix_view``: a weight of shape (out, ...) is one (out, everything else) matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from featurecontrols.adapters.base import ModelAdapter, OutputKind
from featurecontrols.adapters.sites import call_model
from featurecontrols.errors import FeatureControlsError
from featurecontrols.seeding import derive_seed, seeded_global_rng

Forward = Callable[[nn.Module, Any], Any]


class TorchModel(ModelAdapter):
    """Any torch module. ``forward(module, batch)`` and ``output(module, batch)`` override the defaults;
    ``output_kind`` says whether the outputs are values or next-token logits (``ModelAdapter``)."""

    def __init__(
        self,
        module: nn.Module,
        forward: Forward | None = None,
        output: Forward | None = None,
        output_kind: OutputKind = "values",
    ) -> None:
        if not isinstance(module, nn.Module):
            raise FeatureControlsError(
                f"the model must be a torch.nn.Module, got {type(module).__name__}",
                "pass the module itself (for nnsight, its ._model), or a featurecontrols adapter",
            )
        if output_kind not in ("values", "logits"):
            raise FeatureControlsError(
                f"unknown output_kind {output_kind!r}", "give output_kind='values' or output_kind='logits'"
            )
        self.module = module
        self.forward = forward
        self.output = output
        self.output_kind = output_kind

    def run(self, batch: Any) -> Any:
        return (self.forward or call_model)(self.module, batch)

    def outputs(self, batch: Any) -> Tensor:
        out = self.output(self.module, batch) if self.output is not None else self.run(batch)
        return flat_output(out, keep_positions=self.output_kind == "logits")

    def describe(self) -> list[str]:
        """The class, the output kind and the qualified names of the ``forward`` and ``output`` given."""
        given = [f and f"{f.__module__}.{f.__qualname__}" for f in (self.forward, self.output)]
        return [*super().describe(), *(name or "default" for name in given)]

    def rewrap(self, weights: nn.Module) -> TorchModel:
        return TorchModel(weights, self.forward, self.output, self.output_kind)

    def reinitialise(self, module: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
        return reset_parameters(module, targets, seed)


def flat_output(out: Any, keep_positions: bool = False) -> Tensor:
    """A model's output as a (batch, outputs) matrix (first item of a tuple; ``.logits``), detached;
    with ``keep_positions``, logits keep their (batch, positions, vocab) shape."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    if not isinstance(out, Tensor):
        raise FeatureControlsError(
            f"the model's forward returned {type(out).__name__}, not a tensor",
            "give the adapter output=... returning the tensor to measure (e.g. logits)",
        )
    return out.detach() if keep_positions else out.detach().reshape(out.shape[0], -1)


def reset_parameters(module: nn.Module, targets: dict[str, nn.Parameter], seed: int) -> dict[str, str]:
    """Re-draw the targets of every submodule with a ``reset_parameters``, seeded per module name.

    A submodule's parameters that are not targets (kept, or tied to a parameter elsewhere) keep
    their values. Returns the method of every target re-drawn.
    """
    name_of = {id(p): name for name, p in targets.items()}
    methods: dict[str, str] = {}
    resets = []
    for module_name, sub in module.named_modules():
        reset = getattr(sub, "reset_parameters", None)
        own = list(sub.parameters(recurse=False))
        mine = [name_of[id(p)] for p in own if id(p) in name_of and name_of[id(p)] not in methods]
        if callable(reset) and mine:
            methods |= dict.fromkeys(mine, f"reset_parameters ({type(sub).__name__})")
            resets.append((module_name, reset, own, {id(targets[n]) for n in mine}))
    for module_name, reset, own, mine_ids in resets:
        others = [(p, p.detach().clone()) for p in own if id(p) not in mine_ids]
        with seeded_global_rng(derive_seed(seed, module_name), {p.device for p in own}):
            reset()
        for p, value in others:
            p.copy_(value)
    return methods
