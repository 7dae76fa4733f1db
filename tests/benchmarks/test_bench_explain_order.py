"""bench_explain's ML-1M order for the order-aware models: timestamps where present,
the untimed ratings first in file order (needs ml-1m in MAASREC_DATA)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maasrec.data import datasets

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_explain import _ordered_interactions, _user_sample  # noqa: E402


@pytest.mark.data
def test_ml1m_in_the_order_available(data_home, require_dataset):
    folder = require_dataset("ml-1m", "ratings_partial_with_timestamps.dat.gz")
    if (folder / "ratings.dat").exists():
        pytest.skip("a full ratings.dat is here: its timestamps are used as they are")
    ds = datasets.load_movielens("1m", data_home, download=False)
    X, order = _ordered_interactions(ds, "1m", data_home)
    assert X.has_timestamps and X.nnz == ds.interactions.nnz == 1_000_209
    assert order.startswith("timestamps where present (250,440 of 1,000,209")
    ts = pd.read_csv(folder / "ratings_partial_with_timestamps.dat.gz", sep="::",
                     engine="python", names=["user", "item", "rating", "ts"])
    counts = ts.groupby("user").size()
    total = pd.Series(np.diff(X.to_csr().indptr), index=X.user_vocab.ids)
    mixed = [u for u in counts.index if 0 < counts[u] < total[u]]
    assert len(mixed) > 1000  # most users have both kinds
    for user in (mixed[0], mixed[-1]):
        seq = X.item_vocab.ids[X.sequences()[int(X.user_vocab.index([user])[0])]]
        timed = ts[ts.user == user].sort_values(["ts", "item"], kind="stable")
        n_untimed = len(seq) - len(timed)
        untimed = seq[:n_untimed]
        assert list(untimed) == sorted(untimed)  # file order: by MovieID
        assert set(untimed).isdisjoint(timed.item)
        assert list(seq[n_untimed:]) == list(timed.item)  # then by time
    sample = _user_sample(X, 50, seed=0)
    assert sample.n_users == 50 and sample.has_timestamps
    u = sample.user_vocab.ids[0]
    np.testing.assert_array_equal(
        sample.item_vocab.ids[sample.sequences()[0]],
        X.item_vocab.ids[X.sequences()[int(X.user_vocab.index([u])[0])]])
