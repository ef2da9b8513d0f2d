"""Token embeddings with a linear property: the setting of Hewitt & Liang's control tasks.

Hewitt & Liang (EMNLP 2019, "Designing and interpreting probes with control tasks") probe word
representations, which are mostly determined by the word type. Here that is exact and small:

    token t_i ~ Zipf(s) over V types,   x_i = E[t_i] + sigma * eps_i,   E[t] ~ N(0, I_d),
    property y_i = [E[t_i] . u > 0]    (u a fixed unit vector: linear structure in the representation),

flipped for a fraction ``exceptions`` of the types (irregular words: right only by memorising them).

The property is a function of the token type, so a probe can get it right either by reading the
structure (a linear direction) or by memorising each type's label. A control task (a random label per
type) can be solved only by memorising: with V >> d a linear probe cannot, an expressive MLP can.
The cells of a control task are the token ids ``tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featurecontrols.seeding import generator


@dataclass(frozen=True)
class TokenEmbeddingTask:
    """Activations (n, d), the property's 0/1 labels (n,) and the token id of every example (n,)."""

    activations: Tensor
    labels: Tensor
    tokens: Tensor


def token_embedding_task(
    n: int = 20_000,
    vocab: int = 500,
    d: int = 32,
    sigma: float = 0.1,
    zipf: float = 1.0,
    exceptions: float = 0.0,
    seed: int = 0,
) -> TokenEmbeddingTask:
    """Draw the data of the module docstring (every type appears: the rarest about n / (vocab H) times)."""
    g = generator(seed, "token embeddings")
    embedding = torch.randn(vocab, d, generator=g)
    u = torch.randn(d, generator=g)
    u /= u.norm()
    frequency = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64) ** zipf
    tokens = torch.multinomial(frequency, n, replacement=True, generator=g)
    activations = embedding[tokens] + sigma * torch.randn(n, d, generator=g)
    flipped = torch.rand(vocab, generator=g) < exceptions
    labels = ((embedding @ u > 0) ^ flipped)[tokens].long()
    return TokenEmbeddingTask(activations=activations, labels=labels, tokens=tokens)
