"""Deferred model-wide updates (``partial_fit(defer=True)``, ``apply_deferred``,
``rebase_deferred``): the eventual model is the exact ``partial_fit`` of the same events."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from maasrec import online
from maasrec.models import ALS, EASE


def _data(seed=0, n_users=60, n_items=40):
    rng = np.random.default_rng(seed)
    rows = {(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 700),
                                              rng.integers(0, n_items, 700), strict=True)}
    df = pd.DataFrame(sorted(rows), columns=["user", "item"])
    return df


def _stream(seed=1, n=120, n_items=40):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 75, n)  # users 60..74 are new
    return pd.DataFrame({"user": users, "item": rng.integers(0, n_items, n)})


def _same(a, b, users):
    np.testing.assert_allclose(a.B_, b.B_, atol=1e-6)
    ia, sa = a.recommend(users, k=10)
    ib, sb = b.recommend(users, k=10)
    np.testing.assert_allclose(sa, sb, atol=1e-5)
    np.testing.assert_array_equal(ia, ib)


def test_deferred_then_applied_equals_partial_fit():
    base, stream = _data(), _stream()
    model = EASE(l2=10.0).fit(base)
    exact = copy.copy(model).partial_fit(stream)
    chunks = np.array_split(np.arange(len(stream)), 6)
    d = copy.copy(model)
    for c in chunks:
        online.partial_fit(d, stream.iloc[c], defer=True)
    assert online.deferred_calls(d) == 6
    assert d.B_ is model.B_  # nothing model-wide changed yet
    users = sorted(set(stream["user"]))
    # the histories are served at once: each user's events are excluded from its list
    ids, _ = d.recommend(users, k=10)
    for u, row in zip(users, ids, strict=True):
        assert not set(row) & set(stream.loc[stream.user == u, "item"])
    applied = online.apply_deferred(d)
    assert online.deferred_calls(d) == 0 and len(applied) == len(users)
    _same(d, exact, users)
    refit = EASE(l2=10.0).fit(pd.concat([base, stream]))
    np.testing.assert_allclose(d.B_, refit.B_, atol=1e-5)


def test_rebase_keeps_the_calls_that_came_meanwhile():
    base, stream = _data(2), _stream(3)
    model = EASE(l2=10.0).fit(base)
    exact = copy.copy(model).partial_fit(stream)
    parts = np.array_split(np.arange(len(stream)), 5)
    served = copy.copy(model)
    for c in parts[:2]:
        online.partial_fit(served, stream.iloc[c], defer=True)
    snapshot = served
    work = copy.copy(snapshot)
    online.apply_deferred(work)  # "in the background"
    for c in parts[2:4]:  # meanwhile two more groups are served (copies, as the service)
        served = copy.copy(served)
        online.partial_fit(served, stream.iloc[c], defer=True)
    merged = online.rebase_deferred(served, work, snapshot)
    assert merged is not None and online.deferred_calls(merged) == 2
    assert merged.B_ is work.B_ and merged.seen_ is served.seen_
    # an exact partial_fit takes the pending calls with it
    merged.partial_fit(stream.iloc[parts[4]])
    assert online.deferred_calls(merged) == 0
    _same(merged, exact, sorted(set(stream["user"])))
    # a model that does not descend from the snapshot (e.g. reloaded): stale, None
    assert online.rebase_deferred(copy.copy(model), work, snapshot) is None
    other = copy.copy(model)
    online.partial_fit(other, stream.iloc[parts[0]], defer=True)
    assert online.rebase_deferred(other, work, snapshot) is None


def test_a_failed_update_leaves_the_model_pending(monkeypatch):
    model = EASE(l2=10.0).fit(_data())
    online.partial_fit(model, _stream().iloc[:10], defer=True)
    B = model.B_

    def boom(*a, **k):
        raise RuntimeError("no")

    monkeypatch.setattr(type(model), "_partial_fit", boom)
    with pytest.raises(RuntimeError):
        online.apply_deferred(model)
    assert model.B_ is B and online.deferred_calls(model) == 1


def test_other_models_ignore_defer():
    base, stream = _data(), _stream().query("user < 60")
    als = ALS(factors=4, iterations=2, random_state=0).fit(base)
    assert not online.supports_deferred(als) and online.supports_deferred(EASE())
    a = copy.copy(als)
    online.partial_fit(a, stream, defer=True)
    b = copy.copy(als).partial_fit(stream)
    assert online.deferred_calls(a) == 0
    np.testing.assert_allclose(a.item_factors_, b.item_factors_)


def test_merge_seen_sliced_path_equals_the_general_one(monkeypatch):
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    for trial in range(100):
        n_u, n_i = int(rng.integers(1, 30)), int(rng.integers(1, 20))
        seen = sp.random(n_u, n_i, density=rng.uniform(0, 0.5), format="csr",
                         dtype=np.float32, random_state=trial)
        seen.sort_indices()
        grow, k = int(rng.integers(0, 3)), int(rng.integers(1, 12))
        rows, cols = rng.integers(0, n_u + grow, k), rng.integers(0, n_i, k)
        vals = rng.random(k).astype(np.float32)
        out = []
        for limit in (256, 0):  # sliced, then the general path
            monkeypatch.setattr(online, "_SLICED_MERGE_MAX_ROWS", limit)
            out.append(online._merge_seen(seen, rows, cols, vals, (n_u + grow, n_i)))
        a, b = out
        for x, y in ((a.indptr, b.indptr), (a.indices, b.indices), (a.data, b.data)):
            np.testing.assert_array_equal(x, y)
        assert a.indices.dtype == b.indices.dtype
        dense = np.zeros((n_u + grow, n_i), np.float32)
        dense[:n_u] = seen.toarray()
        dense[rows, cols] = vals  # the last value of a repeated pair wins
        np.testing.assert_array_equal(a.toarray(), dense)
