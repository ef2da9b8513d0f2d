"""Random inputs: the same model run on structure-free inputs instead of the real data.

Each entry of the input tensor (a token id, or any input value) is drawn independently:

- ``"uniform"``: uniform over the vocabulary, range(vocab_size) (default: the values seen in the data);
- ``"unigram"``: from the empirical distribution of the entries of the real inputs (for tokens,
  the unigram distribution), so token frequencies are kept and every sequence-level structure is gone.

A finder that scores as well on the model's activations for random inputs as for real ones reads
the model's response to token identity, not structure of the data (Heap et al. 2025 run SAEs on
random-token activations for this reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from featurecontrols.adapters.base import ModelAdapter
from featurecontrols.adapters.sites import Site
from featurecontrols.errors import FeatureControlsError
from featurecontrols.params import Params
from featurecontrols.seeding import generator

Distribution = Literal["uniform", "unigram"]


class RandomInputs(Params):
    """Input control: i.i.d. inputs of the real inputs' shape and dtype.

    ``distribution``: "uniform" or "unigram"; ``vocab_size``: the token range for "uniform"
    (``None``: the distinct values of the real inputs). A batch is a tensor, a tuple whose first item
    is the input tensor, or a Mapping whose ``input_ids`` are replaced (masks and the rest are kept).
    """

    def __init__(self, distribution: Distribution = "unigram", vocab_size: int | None = None) -> None:
        self.distribution = distribution
        self.vocab_size = vocab_size

    @property
    def name(self) -> str:
        return f"random-inputs ({self.distribution})"

    def control_activations(
        self, adapter: ModelAdapter, batches: Sequence[Any], sites: Sequence[Site], seed: int
    ) -> dict[str, Tensor]:
        """The model's activations at ``sites`` on random batches shaped like ``batches``."""
        real = [_tokens(b) for b in batches]
        random = self.inputs(torch.cat([r.flatten() for r in real]), seed)
        sizes = [r.numel() for r in real]
        parts = torch.split(random, sizes)
        made = [_replace(b, p.reshape(r.shape)) for b, p, r in zip(batches, parts, real, strict=True)]
        return adapter.activations(made, sites)

    def inputs(self, real: Tensor, seed: int) -> Tensor:
        """Random inputs with the shape and dtype of ``real``; ``real`` itself is not modified."""
        if self.distribution not in ("uniform", "unigram"):
            raise FeatureControlsError(
                f"unknown distribution {self.distribution!r}", "use 'uniform' or 'unigram'"
            )
        if real.numel() == 0:
            raise FeatureControlsError("the real inputs are empty", "pass at least one input")
        rng = generator(seed, "random_inputs", self.distribution)
        values, counts = torch.unique(real.cpu(), return_counts=True)
        if self.distribution == "uniform" and self.vocab_size is not None:
            if real.is_floating_point() or self.vocab_size < 1:
                raise FeatureControlsError(
                    f"vocab_size={self.vocab_size} needs integer token ids and a positive size",
                    "leave vocab_size=None for non-token inputs (the observed values are used)",
                )
            values = torch.arange(self.vocab_size, dtype=real.dtype)
            counts = torch.ones_like(values)
        elif self.distribution == "uniform":
            counts = torch.ones_like(counts)
        draws = torch.multinomial(counts.double(), real.numel(), replacement=True, generator=rng)
        random: Tensor = values[draws].reshape(real.shape).to(real.device)
        return random


def _tokens(batch: Any) -> Tensor:
    """The input tensor of a batch (itself, a tuple's first item, or a Mapping's ``input_ids``)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, Mapping) and isinstance(batch.get("input_ids"), Tensor):
        tokens: Tensor = batch["input_ids"]
        return tokens
    raise FeatureControlsError(
        f"random inputs replace a batch's input tensor, but a {type(batch).__name__} batch has none",
        "give batches that are tensors, tuples starting with the input tensor, or dicts with input_ids",
    )


def _replace(batch: Any, tokens: Tensor) -> Any:
    if isinstance(batch, Tensor):
        return tokens
    if isinstance(batch, tuple):
        return (tokens, *batch[1:])
    return {**batch, "input_ids": tokens}
