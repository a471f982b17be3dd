"""Deterministic seeding helpers."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """Derives a 63-bit seed from integers, without the collisions of `seed + epoch + step`.

    Args:
        *parts: Integers identifying the stream, e.g. (seed, epoch, sample_index).

    Returns:
        A non-negative integer usable by `random.Random` and `torch.manual_seed`.
    """
    digest = hashlib.blake2b(repr(parts).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def make_rng(*parts: int) -> random.Random:
    """Returns a private `random.Random` seeded from `parts` (see `derive_seed`)."""
    return random.Random(derive_seed(*parts))


def set_global_seed(seed: int) -> None:
    """Seeds Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
