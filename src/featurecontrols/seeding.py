"""Deterministic seeds: one run seed, derived independently for every part of the run.

``derive_seed(seed, "shuffles", "x4")`` is the same on every machine and does not depend on the
order in which parts run, so adding a feature or a control never changes another one's numbers.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from the run seed and any keys: sha256("seed/key1/key2...")."""
    text = "/".join([str(seed), *(str(k) for k in keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))
