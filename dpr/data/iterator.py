"""Sharded, deterministic, resumable iteration over a dataset's indices."""

from __future__ import annotations

import math
from collections.abc import Iterator

from dpr.utils.seed import make_rng


class ShardedIterator:
    """Splits each epoch's sample order into per-process batches.

    Semantics (written down because resuming depends on them):
    - The order of epoch `e` is a permutation drawn from `(seed, e)` alone, never from earlier
      epochs, so a run resumed mid-epoch sees exactly the batches of an uninterrupted run.
    - Process `rank` (global) of `world_size` takes the contiguous slice
      `[rank * per_shard, (rank + 1) * per_shard)` of that order, `per_shard = ceil(N / W)`.
    - Every process yields the same number of batches, `ceil(per_shard / batch_size)`: a short
      or empty slice is topped up cyclically (with its own samples, or with the whole order
      when it is empty), as every batch takes part in collectives.
    - The dataset itself is never mutated.

    `shuffle`: training's shuffled epochs; False keeps file order (validation).
    """

    def __init__(self, num_samples: int, *, rank: int, world_size: int, batch_size: int,
                 shuffle: bool, seed: int = 0) -> None:
        if num_samples <= 0:
            raise ValueError("cannot iterate over an empty dataset")
        self.num_samples = num_samples
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.per_shard = math.ceil(num_samples / world_size)

    @property
    def batches_per_epoch(self) -> int:
        """Batches every process yields in one epoch (DPR's `max_iterations`)."""
        return math.ceil(self.per_shard / self.batch_size)

    def epoch_order(self, epoch: int) -> list[int]:
        """Returns the sample order of `epoch` (identical on every process)."""
        order = list(range(self.num_samples))
        if self.shuffle:
            make_rng(self.seed, epoch).shuffle(order)
        return order

    def shard_indices(self, epoch: int) -> list[int]:
        """Returns this process's sample indices for `epoch`, topped up to whole batches."""
        order = self.epoch_order(epoch)
        start = self.rank * self.per_shard
        shard = order[start : min(start + self.per_shard, self.num_samples)] or order
        needed = self.batches_per_epoch * self.batch_size
        return [shard[i % len(shard)] for i in range(needed)]

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[int, list[int]]]:
        """(1-based iteration within the epoch, sample indices) of the batches of `epoch`
        (0-based) after the `start` already done (a checkpoint's offset)."""
        indices = self.shard_indices(epoch)
        for iteration in range(start + 1, self.batches_per_epoch + 1):
            begin = (iteration - 1) * self.batch_size
            yield iteration, indices[begin : begin + self.batch_size]
