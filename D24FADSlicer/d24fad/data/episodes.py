"""Episode sampling for meta-training (NOTES §1).

An episode is a query image from one training task and K support images drawn at random
from the same task, never the query itself; all are normal images. An epoch visits every
training image once as a query, in an order drawn from ``default_rng([seed, epoch])``: the
episodes of an epoch depend only on the seed and the epoch number, which is what makes
``--resume`` give the same result as an uninterrupted run. K is drawn per batch (a batch
is one tensor [B, K, ...]). The last incomplete batch of an epoch is left out (training
only; the next epoch's new order uses those images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class EpisodeBatch:
    """``tasks[b]`` indexes the task list; ``queries[b]`` and ``supports[b, :]`` index that
    task's image pool."""

    tasks: np.ndarray  # int64 [B]
    queries: np.ndarray  # int64 [B]
    supports: np.ndarray  # int64 [B, K]

    @property
    def shots(self) -> int:
        return int(self.supports.shape[1])

    def part(self, index: int, parts: int) -> "EpisodeBatch":
        """The ``index``-th of ``parts`` contiguous slices (a DDP rank's or a micro-batch's share)."""
        size = len(self.queries) // parts
        window = slice(index * size, (index + 1) * size)
        return EpisodeBatch(self.tasks[window], self.queries[window], self.supports[window])


def check_pools(pool_sizes: Sequence[int], shots: Sequence[int], names: Sequence[str]) -> None:
    if not shots or min(shots) < 1:
        raise InputError(f"shots {tuple(shots)}: need at least one K >= 1")
    for name, size in zip(names, pool_sizes):
        if size < max(shots) + 1:
            raise InputError(
                f"task {name}: {size} training images cannot give episodes with K={max(shots)} supports "
                "plus a query; lower --shots or add images"
            )


def epoch_batches(
    pool_sizes: Sequence[int], shots: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[EpisodeBatch]:
    """All full batches of one epoch."""
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}: must be at least 1")
    rng = np.random.default_rng([seed, epoch])
    pairs = np.array([(t, i) for t, size in enumerate(pool_sizes) for i in range(size)], dtype=np.int64)
    pairs = pairs[rng.permutation(len(pairs))]
    batches = []
    for start in range(0, len(pairs) - batch_size + 1, batch_size):
        chunk = pairs[start : start + batch_size]
        k = int(rng.choice(np.asarray(shots)))
        supports = np.empty((batch_size, k), dtype=np.int64)
        for b, (task, query) in enumerate(chunk):
            # Draw among the pool without the query, then shift indices at or above it.
            others = rng.choice(pool_sizes[task] - 1, size=k, replace=False)
            supports[b] = others + (others >= query)
        batches.append(EpisodeBatch(chunk[:, 0].copy(), chunk[:, 1].copy(), supports))
    return batches
