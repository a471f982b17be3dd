"""Derived seeds: stable, collision-free where `seed + epoch + step` collides."""

from __future__ import annotations

import random

import torch

from dpr.utils.seed import derive_seed, make_rng, set_global_seed


def test_derive_seed_is_stable_and_separates_sums() -> None:
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert 0 <= derive_seed(1, 2, 3) < 2**63
    # (seed 0, epoch 1) and (seed 1, epoch 0) share a sum but not a stream
    assert derive_seed(0, 1) != derive_seed(1, 0)
    assert make_rng(0, 1).random() != make_rng(1, 0).random()
    assert make_rng(5, 7).random() == random.Random(derive_seed(5, 7)).random()


def test_set_global_seed_makes_torch_and_random_repeatable() -> None:
    set_global_seed(3)
    first = (random.random(), torch.rand(2))
    set_global_seed(3)
    second = (random.random(), torch.rand(2))
    assert first[0] == second[0] and torch.equal(first[1], second[1])
