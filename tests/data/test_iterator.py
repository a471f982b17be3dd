from __future__ import annotations

import pytest

from dpr.data.iterator import ShardedIterator


def _all_batches(n: int, world: int, batch: int, epoch: int = 0, shuffle: bool = True):
    return [list(ShardedIterator(n, rank=r, world_size=world, batch_size=batch, shuffle=shuffle,
                                 seed=3).batches(epoch)) for r in range(world)]


@pytest.mark.parametrize("n,world,batch", [(10, 1, 3), (10, 2, 3), (11, 3, 2), (2, 4, 2)])
def test_iterator_equal_batches_per_rank_and_full_coverage(n: int, world: int, batch: int) -> None:
    # Given a dataset sharded over `world` processes
    per_rank = _all_batches(n, world, batch)
    # Then every process yields the same number of full batches
    assert len({len(b) for b in per_rank}) == 1
    assert all(len(idx) == batch for rank in per_rank for _, idx in rank)
    # And every sample is seen in the epoch
    seen = {i for rank in per_rank for _, idx in rank for i in idx}
    assert seen == set(range(n))


def test_iterator_shards_are_disjoint_before_top_up() -> None:
    its = [ShardedIterator(12, rank=r, world_size=3, batch_size=4, shuffle=True, seed=1)
           for r in range(3)]
    shards = [set(it.shard_indices(0)) for it in its]
    assert shards[0].isdisjoint(shards[1]) and shards[1].isdisjoint(shards[2])


def test_iterator_epoch_orders_differ_and_depend_only_on_seed_and_epoch() -> None:
    it = ShardedIterator(50, rank=0, world_size=1, batch_size=5, shuffle=True, seed=0)
    assert it.epoch_order(0) != it.epoch_order(1)
    # Asking for epoch 1 first gives the same order: no state carried between epochs
    fresh = ShardedIterator(50, rank=0, world_size=1, batch_size=5, shuffle=True, seed=0)
    assert fresh.epoch_order(1) == it.epoch_order(1)


def test_iterator_resumes_exactly_mid_epoch() -> None:
    it = ShardedIterator(23, rank=1, world_size=2, batch_size=3, shuffle=True, seed=9)
    full = list(it.batches(2))
    assert list(it.batches(2, start=2)) == full[2:]
    assert [i for i, _ in full] == list(range(1, it.batches_per_epoch + 1))


def test_iterator_without_shuffle_keeps_file_order() -> None:
    it = ShardedIterator(5, rank=0, world_size=1, batch_size=2, shuffle=False)
    assert [idx for _, idx in it.batches(0)] == [[0, 1], [2, 3], [4, 0]]


def test_iterator_rejects_empty_dataset() -> None:
    with pytest.raises(ValueError, match="empty"):
        ShardedIterator(0, rank=0, world_size=1, batch_size=2, shuffle=True)
