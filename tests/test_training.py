"""Tests of maasrec.training: seeds, batches, negative sampling, the epoch driver."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from maasrec.exceptions import DataError
from maasrec.training import (
    UniformNegativeSampler,
    minibatches,
    run_epochs,
    seed_from,
    torch_generator,
)


def test_seeds_are_reproducible():
    assert seed_from(3) == seed_from(3) != seed_from(4)
    a = torch.rand(5, generator=torch_generator(3))
    b = torch.rand(5, generator=torch_generator(3))
    assert torch.equal(a, b)
    assert 0 <= seed_from(None) < 2**63


@pytest.mark.parametrize("n, bs, drop", [(10, 3, False), (10, 3, True), (7, 7, False), (0, 4, False)])
def test_minibatches_cover_every_index_once(n, bs, drop):
    batches = list(minibatches(n, bs, generator=torch_generator(0), drop_last=drop))
    flat = torch.cat(batches).tolist() if batches else []
    assert all(len(b) <= bs for b in batches)
    if drop:
        assert len(flat) == n - n % bs and all(len(b) == bs for b in batches)
    else:
        assert sorted(flat) == list(range(n))
    assert [b.tolist() for b in minibatches(n, bs, shuffle=False)][:1] in ([], [list(range(min(bs, n)))])
    with pytest.raises(DataError, match="batch_size"):
        list(minibatches(n, 0))


def test_negative_sampler_default_bitmap_scales_with_the_positives(monkeypatch):
    # beyond the fixed floor, the bit map is built while it takes <= 16 bytes per positive
    import maasrec.training as training

    monkeypatch.setattr(training, "BITMAP_BYTES", 0)
    dense = sp.random(400, 100, density=0.05, random_state=0, format="csr")  # 40,000 cells
    sparse = sp.random(400, 100, density=0.001, random_state=0, format="csr")
    assert 5_000 <= 16 * dense.nnz and 5_000 > 16 * sparse.nnz  # 5,000 bytes of bit map
    with_map, without = UniformNegativeSampler(dense), UniformNegativeSampler(sparse)
    assert with_map._bitmap is not None and without._bitmap is None
    # the same answers either way, so the drawn negatives do not depend on the choice
    forced = UniformNegativeSampler(dense, bitmap_bytes=0)
    users = torch.arange(400).repeat(20)
    a = with_map.sample(users, torch_generator(4))
    assert torch.equal(a, forced.sample(users, torch_generator(4)))


@pytest.mark.parametrize("bitmap_bytes", [2**20, 0])  # bit map, and binary search
def test_negative_sampler_never_returns_positives(bitmap_bytes):
    R = sp.random(30, 12, density=0.6, random_state=0, format="csr")
    R.data[:] = 1
    s = UniformNegativeSampler(R, bitmap_bytes=bitmap_bytes, max_tries=100)
    assert (s._bitmap is None) == (bitmap_bytes == 0)
    users = torch.arange(30).repeat(50)
    items = torch.randint(12, users.shape, generator=torch_generator(1))
    expected = torch.from_numpy(R.toarray()[users.numpy(), items.numpy()] > 0)
    assert torch.equal(s.is_positive(users, items), expected)
    neg = s.sample(users, torch_generator(2))
    dense = R.toarray()
    assert not (dense[users.numpy(), neg.numpy()] > 0).any()
    # uniform over each user's negatives: every negative item of user 0 shows up
    many = s.sample(torch.zeros(4000, dtype=torch.int64), torch_generator(3))
    assert set(many.tolist()) == set(np.flatnonzero(dense[0] == 0).tolist())
    loose = UniformNegativeSampler(R, exclude_positives=False)
    assert (dense[users.numpy(), loose.sample(users, torch_generator(2)).numpy()] > 0).any()


def test_run_epochs_logs_and_is_silent(capsys, caplog):
    calls = []
    with caplog.at_level(logging.DEBUG, logger="maasrec.training"):
        log = run_epochs(lambda e: calls.append(e) or 1.0 / (e + 1), 3, verbose=False, name="X")
    assert calls == [0, 1, 2] and log.losses == [1.0, 0.5, 1 / 3] and len(log.seconds) == 3
    assert log.seconds_per_epoch >= 0
    assert capsys.readouterr().err == ""
    assert any("X" in r.getMessage() for r in caplog.records)
    run_epochs(lambda e: None, 2, verbose=True, desc="demo")
    assert "demo" in capsys.readouterr().err


def test_threads_for_small_work_is_single_threaded_and_restores():
    from maasrec.training import SMALL_WORK, threads_for

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads_for(10) as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads_for(SMALL_WORK) as n:
            assert n == 2 and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), threads_for(10):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
