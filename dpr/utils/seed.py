"""Derived seeds: one private stream per (seed, epoch, index) instead of the global generators,
which transformers' `set_seed` seeds once per run.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: int) -> int:
    """A non-negative 63-bit seed (for `random.Random`, `torch.manual_seed`) of the integers
    identifying a stream, e.g. (seed, epoch, sample_index), without the collisions of
    `seed + epoch + step`."""
    digest = hashlib.blake2b(repr(parts).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def make_rng(*parts: int) -> random.Random:
    """Returns a private `random.Random` seeded from `parts` (see `derive_seed`)."""
    return random.Random(derive_seed(*parts))

