"""Deterministic seeds: one run seed, derived independently for every part of the run.

``derive_seed(seed, "shuffles", "x4")`` is the same on every machine and does not depend on the
order in which parts run, so adding a feature or a control never changes another one's numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from the run seed and any keys: sha256("seed/key1/key2...")."""
    text = "/".join([str(seed), *(str(k) for k in keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


@contextmanager
def seeded_global_rng(seed: int, devices: Iterable[torch.device]) -> Iterator[None]:
    """Seed the global CPU generator and those of ``devices``; restore all their states on exit.

    For code that draws from the global RNG and takes no generator (``reset_parameters``).
    """
    indices: dict[str, set[int]] = {}
    for device in devices:
        if device.type != "cpu":
            indices.setdefault(device.type, set()).add(device.index or 0)
    with ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.default_generator.manual_seed(seed)
        for device_type, ids in indices.items():
            stack.enter_context(torch.random.fork_rng(devices=sorted(ids), device_type=device_type))
            module = getattr(torch, device_type)  # torch.cuda, torch.xpu, torch.mps
            generators = getattr(module, "default_generators", None)
            if generators is None:  # a single-device backend (mps) has one global generator
                module.manual_seed(seed)
            else:
                for index in ids:
                    generators[index].manual_seed(seed)
        yield
