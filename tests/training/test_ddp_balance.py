"""maasrec.training.distributed.balanced_order: rank shards of equal rows and nearly
equal cost (HybridRecommender orders its user batches with it under DDP)."""

from __future__ import annotations

import pytest
import torch

from maasrec.training.distributed import balanced_order, shard


@pytest.mark.parametrize("n", [1, 2, 7, 10, 11, 1000, 1024])
@pytest.mark.parametrize("W", [2, 3, 4])
def test_a_permutation_with_shards_row_counts(n, W):
    cost = torch.randint(1, 2000, (n,), generator=torch.Generator().manual_seed(n * W))
    order = balanced_order(cost, W)
    assert sorted(order.tolist()) == list(range(n))
    for r in range(W):                    # the same number of rows as shard gives
        assert len(shard(cost[order], r, W)) == len(shard(cost, r, W))
    assert torch.equal(balanced_order(cost, W), order)   # deterministic


def test_heavy_tailed_costs_are_balanced():
    # ML-1M-like interaction counts: a few users with thousands of rows
    g = torch.Generator().manual_seed(0)
    cost = (torch.rand(1024, generator=g) ** -1.5 * 20).round().clamp(max=2000)
    order = balanced_order(cost, 2)
    plain = [float(shard(cost, r, 2).sum()) for r in range(2)]
    sums = [float(shard(cost[order], r, 2).sum()) for r in range(2)]
    # the snake leaves at most one row's cost between the ranks
    assert abs(sums[0] - sums[1]) <= float(cost.max())
    assert abs(sums[0] - sums[1]) < abs(plain[0] - plain[1])


def test_one_rank_keeps_the_order():
    cost = torch.tensor([3.0, 1.0, 2.0])
    assert balanced_order(cost, 1).tolist() == [0, 1, 2]
