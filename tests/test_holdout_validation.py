"""holdout_validation (the slice neural models hold out by themselves) and its use by
SequentialRecommender, HybridRecommender and NeuMF when fit gets no validation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from maasrec import Interactions
from maasrec.data.split import holdout_validation
from maasrec.exceptions import DataError
from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n_users=80, n_items=30, seed=0, with_short=True) -> Interactions:
    """Users of 2..20 rows (some below the minimum history), timestamps in row order."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(2 if with_short else 6, 21))
        items = rng.choice(n_items, size=n, replace=False)
        rows += [(f"u{u}", int(i), t) for t, i in enumerate(items)]
    return Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def _pairs(X: Interactions) -> set:
    return set(zip(X.user_indices.tolist(), X.item_indices.tolist()))


@pytest.mark.parametrize("ordered", [False, True])
def test_deterministic_disjoint_and_complete(ordered):
    X = _data()
    a = holdout_validation(X, 0.2, ordered=ordered, random_state=3)
    b = holdout_validation(X, 0.2, ordered=ordered, random_state=3)
    c = holdout_validation(X, 0.2, ordered=ordered, random_state=4, min_users=5)
    for p, q in zip(a, b):
        assert _pairs(p) == _pairs(q)
    train, hold = a
    assert train.nnz + hold.nnz == X.nnz and not (_pairs(train) & _pairs(hold))
    assert _pairs(train) | _pairs(hold) == _pairs(X)
    assert train.user_vocab is X.user_vocab and train.item_vocab is X.item_vocab
    assert _pairs(c[1]) != _pairs(hold)  # another seed (and size) holds out other rows


def test_random_sizes_and_short_users_stay_in_train():
    X = _data()
    train, hold = holdout_validation(X, 0.2, random_state=0, min_history=5)
    counts, held = X.user_counts(), np.bincount(hold.user_indices, minlength=X.n_users)
    expected = np.where(counts >= 5, np.maximum(1, np.floor(0.2 * counts + 1e-9)), 0)
    np.testing.assert_array_equal(held, expected)
    assert (np.bincount(train.user_indices, minlength=X.n_users) >= 1).all()
    assert (counts < 5).any() and (held[counts < 5] == 0).all()


def test_ordered_holds_out_the_last_row_of_a_sample_of_users():
    X = _data(n_users=200)
    eligible = int((X.user_counts() >= 5).sum())
    train, hold = holdout_validation(X, 0.25, ordered=True, min_users=10, random_state=1)
    held = np.bincount(hold.user_indices, minlength=X.n_users)
    assert held.max() == 1 and held.sum() == int(np.ceil(0.25 * eligible))
    for u in np.flatnonzero(held):  # the held-out row is the user's latest
        t_hold = hold.timestamps[hold.user_indices == u]
        assert t_hold.max() > train.timestamps[train.user_indices == u].max()
    # min_users: a small data set holds out every eligible user
    everyone = holdout_validation(X, 0.25, ordered=True, random_state=1)[1]
    assert len(np.unique(everyone.user_indices)) == eligible
    assert hold.nnz != everyone.nnz


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), "0.1", True])
def test_bad_fraction(bad):
    with pytest.raises(DataError, match="fraction"):
        holdout_validation(_data(), bad)


def _seq(**kw):
    return SequentialRecommender(max_len=12, dim=16, n_layers=1, n_heads=1, epochs=40,
                                 patience=2, batch_size=32, random_state=0, verbose=False,
                                 **kw)


def _hybrid(cls=HybridRecommender, **kw):
    return cls(dim=16, epochs=40, patience=2, random_state=0, verbose=False, **kw)


@pytest.mark.parametrize("make", [_seq, _hybrid, lambda **kw: _hybrid(NeuMF, **kw)],
                         ids=["sequential", "hybrid", "neumf"])
def test_models_hold_out_and_stop_early_without_validation(make, caplog):
    X = _data(with_short=True)
    with caplog.at_level(logging.INFO, logger="maasrec"):
        m = make().fit(X)
    log = getattr(m, "training_log_", None) or m.training_log_
    hold = log["holdout"]
    assert hold["rows"] > 0 and hold["train_rows"] + hold["rows"] == X.nnz
    assert "no validation given: holding out" in caplog.text
    assert f"holding out {hold['rows']} of {X.nnz}" in caplog.text
    if isinstance(m, SequentialRecommender):
        assert log["stopped_early"] and len(log["losses"]) < 40 and log["best_epoch"] is not None
        # the held-out items are history again once trained
        assert m.history_indptr_[-1] == np.minimum(X.user_counts(), 12).sum()
    else:  # stopped early on the holdout, then refitted on everything for its best epochs
        first = hold["first_fit"]
        assert first["stopped_early"] and len(first["losses"]) < 40
        assert hold["refit"] and hold["best_epoch"] == first["best_epoch"]
        assert len(log["losses"]) == hold["best_epoch"] and "ndcg@10" not in str(log["metrics"])
        assert f"refitting on all {X.nnz} interactions" in caplog.text
        assert m.training_log_.get("best_epoch") is None
    # the same seed gives the same holdout and model
    m2 = make().fit(X)
    log2 = getattr(m2, "training_log_", None) or m2.training_log_
    assert log2["holdout"] == hold and log2["losses"] == log["losses"]


@pytest.mark.parametrize("make", [_seq, _hybrid], ids=["sequential", "hybrid"])
@pytest.mark.parametrize("off", [None, 0.0])
def test_switched_off_trains_every_epoch(make, off):
    X = _data()
    m = make(validation_fraction=off)
    m.set_params(epochs=3)
    m.fit(X)
    log = getattr(m, "training_log_", None) or m.training_log_
    assert "holdout" not in log and len(log["losses"]) == 3 and not log["stopped_early"]


@pytest.mark.parametrize("make", [_seq, _hybrid], ids=["sequential", "hybrid"])
def test_explicit_validation_is_used_as_before(make):
    X = _data()
    train, valid = holdout_validation(X, 0.2, random_state=9)
    a = make().fit(train, validation=valid)
    b = make(validation_fraction=None).fit(train, validation=valid)
    la = getattr(a, "training_log_", None) or a.training_log_
    lb = getattr(b, "training_log_", None) or b.training_log_
    assert "holdout" not in la and la["losses"] == lb["losses"]
    assert la["metrics"] == lb["metrics"]


@pytest.mark.parametrize("bad", [1.0, -0.5, "0.1"])
def test_bad_validation_fraction(bad):
    with pytest.raises(DataError, match="validation_fraction"):
        _seq(validation_fraction=bad).fit(_data())
    with pytest.raises(DataError, match="validation_fraction"):
        _hybrid(validation_fraction=bad).fit(_data())
