"""Episode sampling: queries never among their supports, same task, deterministic per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from d24fad.data.episodes import check_pools, epoch_batches
from d24fad.errors import InputError

POOLS = [5, 9, 7]


def test_supports_are_distinct_other_images_of_the_query_task():
    batches = epoch_batches(POOLS, shots=(2, 4), batch_size=3, seed=1, epoch=1)
    assert len(batches) == sum(POOLS) // 3
    for batch in batches:
        assert batch.shots in (2, 4)
        for task, query, supports in zip(batch.tasks, batch.queries, batch.supports):
            assert query not in supports
            assert len(set(supports.tolist())) == len(supports)
            assert 0 <= supports.min() and supports.max() < POOLS[task]


def test_each_image_is_a_query_at_most_once_per_epoch_and_epochs_differ():
    first = epoch_batches(POOLS, (2,), batch_size=4, seed=0, epoch=1)
    pairs = [(t, q) for b in first for t, q in zip(b.tasks, b.queries)]
    assert len(pairs) == len(set(pairs)) == (sum(POOLS) // 4) * 4
    second = epoch_batches(POOLS, (2,), batch_size=4, seed=0, epoch=2)
    assert [b.queries.tolist() for b in first] != [b.queries.tolist() for b in second]


def test_same_seed_and_epoch_give_the_same_episodes():
    a = epoch_batches(POOLS, (2, 3), batch_size=2, seed=7, epoch=3)
    b = epoch_batches(POOLS, (2, 3), batch_size=2, seed=7, epoch=3)
    for x, y in zip(a, b):
        assert np.array_equal(x.tasks, y.tasks) and np.array_equal(x.supports, y.supports)


def test_batch_parts_are_contiguous_slices():
    batch = epoch_batches(POOLS, (2,), batch_size=4, seed=0, epoch=1)[0]
    halves = [batch.part(i, 2) for i in range(2)]
    assert np.array_equal(np.concatenate([h.queries for h in halves]), batch.queries)
    assert np.array_equal(np.concatenate([h.supports for h in halves]), batch.supports)


def test_pools_too_small_for_k_are_refused_naming_the_task():
    with pytest.raises(InputError, match="tiny"):
        check_pools([9, 3], shots=(2, 4), names=["big", "tiny"])
    with pytest.raises(InputError, match="batch"):
        epoch_batches(POOLS, (2,), batch_size=0, seed=0, epoch=1)
