"""Properties of the data splits (hypothesis) and their error messages."""

from __future__ import annotations

import itertools
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maasrec.data import Interactions
from maasrec.data.split import (
    SplitResult,
    _ratio_counts,
    cold_item_split,
    cold_user_split,
    leave_last_out,
    random_split,
    temporal_split,
)
from maasrec.exceptions import ColdStartWarning, DataError, MaasrecWarning

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

RATIOS = st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.3), (0.5, 0.5), (0.6, 0.2, 0.2),
                          (0.1, 0.1, 0.8), (0.34, 0.33, 0.33), (0.9, 0.1)])


@st.composite
def interactions(draw, timestamps=True):
    """Small interactions whose ``values`` tag each input row uniquely (0, 1, 2, ...)."""
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 12))
    n = draw(st.integers(1, 80))
    users = draw(st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n))
    ts = None
    if timestamps:
        ts = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))  # many ties
    users = [f"u{x}" for x in users]
    return Interactions.from_arrays(users, items, np.arange(n, dtype=float), ts,
                                    duplicates="keep")


def tags(X: Interactions) -> np.ndarray:
    return np.sort(X.values.astype(np.int64))


def check_partition(X: Interactions, parts) -> None:
    assert isinstance(parts, SplitResult)
    assert len(parts) in (2, 3)
    all_tags = np.concatenate([tags(p) for p in parts])
    assert len(all_tags) == X.nnz  # disjoint + union: every row exactly once
    np.testing.assert_array_equal(np.sort(all_tags), tags(X))
    for p in parts:
        assert p.user_vocab is X.user_vocab and p.item_vocab is X.item_vocab
        assert p.has_timestamps == X.has_timestamps
    rep = parts.report
    assert [rep["parts"][n]["rows"] for n in parts.names] == [p.nnz for p in parts]


def rows_by_tag(X: Interactions) -> pd.DataFrame:
    df = pd.DataFrame({"u": X.user_indices, "i": X.item_indices,
                       "tag": X.values.astype(np.int64)})
    if X.has_timestamps:
        df["t"] = X.timestamps
    return df


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return fn(*args, **kwargs)


def reference_counts(n: int, ratios) -> list[int]:
    """RecBole's rounding, written as plain Python for one user."""
    cnt = [int(r * n + 1e-9) for r in ratios]
    cnt[0] = n - sum(cnt[1:])
    for j in range(len(ratios) - 1, 0, -1):
        if cnt[0] <= 1:
            break
        if cnt[j] == 0:
            cnt[j] += 1
            cnt[0] -= 1
    return cnt


# -- rounding rule ---------------------------------------------------------------------
@pytest.mark.parametrize("n, expected", [(1, [1, 0, 0]), (2, [1, 0, 1]), (3, [1, 1, 1]),
                                         (5, [3, 1, 1]), (10, [8, 1, 1]), (25, [21, 2, 2])])
def test_rounding_examples_in_docstring(n, expected):
    assert _ratio_counts(np.array([n]), (0.8, 0.1, 0.1))[0].tolist() == expected


@given(st.integers(0, 500), RATIOS)
def test_rounding_matches_reference(n, ratios):
    assert _ratio_counts(np.array([n]), ratios)[0].tolist() == reference_counts(n, ratios)


# -- random_split ----------------------------------------------------------------------
@SETTINGS
@given(interactions(), RATIOS, st.integers(0, 2**31), st.booleans())
def test_random_split_partition(X, ratios, seed, per_user):
    parts = quiet(random_split, X, ratios, per_user=per_user, random_state=seed)
    check_partition(X, parts)
    assert len(parts) == len(ratios)
    if per_user:
        counts = np.stack([p.user_counts() for p in parts], axis=1)
        for u, n in enumerate(X.user_counts()):
            assert counts[u].tolist() == reference_counts(int(n), ratios)
            if n >= 1:
                assert counts[u, 0] >= 1
        assert parts.report["cold_users"] == dict.fromkeys(parts.names[1:], 0)
    else:
        got = [p.nnz for p in parts]
        assert got == reference_counts(X.nnz, ratios)


@SETTINGS
@given(interactions(), RATIOS, st.integers(0, 2**31), st.booleans())
def test_random_split_deterministic(X, ratios, seed, per_user):
    a = quiet(random_split, X, ratios, per_user=per_user, random_state=seed)
    b = quiet(random_split, X, ratios, per_user=per_user, random_state=seed)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.values, pb.values)
        np.testing.assert_array_equal(pa.user_indices, pb.user_indices)


def test_random_split_users_with_three_rows_get_every_part():
    users = np.repeat(np.arange(50), 3)
    X = Interactions.from_arrays(users, np.tile(np.arange(3), 50))
    train, valid, test = random_split(X, random_state=0)
    for p in (train, valid, test):
        assert (p.user_counts() == 1).all()


def test_random_split_seed_changes_result_and_is_uniform():
    X = Interactions.from_arrays(np.zeros(1000, dtype=int), np.arange(1000))
    a = quiet(random_split, X, (0.5, 0.5), random_state=1)
    b = quiet(random_split, X, (0.5, 0.5), random_state=2)
    assert not np.array_equal(a.test.item_indices, b.test.item_indices)
    # held-out rows are spread over the user's rows, not the first/last ones
    assert 350 < a.test.item_indices.mean() < 650


def test_random_split_accepts_generator_and_dataframe():
    df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2], "item": [1, 2, 3, 1, 2, 3]})
    parts = random_split(df, (0.5, 0.5), random_state=np.random.default_rng(0))
    assert sum(p.nnz for p in parts) == 6


def test_global_split_warns_and_reports_cold_users():
    X = Interactions.from_arrays(np.arange(200), np.zeros(200, dtype=int))  # 1 row per user
    with pytest.warns(ColdStartWarning, match="no train row"):
        parts = random_split(X, (0.8, 0.2), per_user=False, random_state=0)
    assert parts.report["cold_users"]["test"] == parts.test.nnz == 40
    assert parts.report["parts"]["test"]["users"] == 40


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.5, 0.5, 0.5), (1.0,), (0.5, 0.3, 0.1, 0.1),
                                 (1.2, -0.2), (0.0, 1.0), "0.8", 0.8, (0.5, float("nan"))])
def test_random_split_bad_ratios(bad):
    X = Interactions.from_arrays([1, 2], [1, 2])
    with pytest.raises(DataError, match="ratios must be 2 or 3 positive numbers summing to 1"):
        random_split(X, bad)


def test_bad_ratios_message_names_them():
    X = Interactions.from_arrays([1, 2], [1, 2])
    with pytest.raises(DataError, match=r"\(0\.8, 0\.1\).*sum to 0\.9"):
        random_split(X, (0.8, 0.1))


def test_empty_input_raises():
    X = Interactions.from_arrays([1, 2], [1, 2]).subset(np.zeros(2, dtype=bool))
    for fn in (random_split, leave_last_out, cold_user_split, cold_item_split):
        with pytest.raises(DataError, match="empty"):
            fn(X)
    with pytest.raises(DataError, match="empty"):
        random_split(pd.DataFrame({"user": [], "item": []}))


def test_wrong_type_raises():
    with pytest.raises(DataError, match="expected Interactions"):
        random_split([[1, 2]])


# -- temporal_split --------------------------------------------------------------------
@SETTINGS
@given(interactions(), st.integers(0, 21), st.integers(0, 21))
def test_temporal_cutoffs_respected(X, c1, c2):
    c1, c2 = min(c1, c2), max(c1, c2)
    parts = quiet(temporal_split, X, (c1, c2))
    check_partition(X, parts)
    train, valid, test = parts
    assert (train.timestamps < c1).all()
    assert ((valid.timestamps >= c1) & (valid.timestamps < c2)).all()
    assert (test.timestamps >= c2).all()
    two = quiet(temporal_split, X, c1)
    check_partition(X, two)
    assert len(two) == 2 and (two.train.timestamps < c1).all() and (two.test.timestamps >= c1).all()


@SETTINGS
@given(interactions(), RATIOS)
def test_temporal_ratios(X, ratios):
    parts = quiet(temporal_split, X, ratios=ratios)
    check_partition(X, parts)
    cuts = parts.report["cutoffs"]
    assert len(cuts) == len(ratios) - 1
    # everything in an earlier part is strictly older than everything in a later part
    for a, b in itertools.pairwise(parts):
        if a.nnz and b.nnz:
            assert a.timestamps.max() < b.timestamps.min()
    if len(np.unique(X.timestamps)) == X.nnz:  # without ties the shares are exact
        assert [p.nnz for p in parts] == reference_counts(X.nnz, ratios)


def test_temporal_default_ratios_and_dates():
    ts = pd.date_range("2020-01-01", periods=100, freq="D")
    df = pd.DataFrame({"user": np.arange(100) % 5, "item": np.arange(100), "timestamp": ts})
    parts = quiet(temporal_split, df)
    assert [p.nnz for p in parts] == [80, 10, 10]
    parts = quiet(temporal_split, df, "2020-03-01")  # datetimes are stored as ns
    assert parts.train.nnz == 31 + 29
    secs = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 3],
                         "timestamp": [946684799, 946684800, 978307200]})  # unix seconds
    train, test = quiet(temporal_split, secs, pd.Timestamp("2000-01-01"))
    assert train.nnz == 1 and test.nnz == 2


def test_temporal_needs_timestamps():
    X = Interactions.from_arrays([1, 2], [1, 2])
    with pytest.raises(DataError, match="no timestamps") as exc:
        temporal_split(X, 5)
    msg = str(exc.value)
    assert "random_split" in msg and "cold_user_split" in msg and "leave_last_out" in msg


@pytest.mark.parametrize("kwargs, match", [
    ({"cutoff": 3, "ratios": (0.5, 0.5)}, "not both"),
    ({"cutoff": (3, 2)}, "increasing"),
    ({"cutoff": (1, 2, 3)}, "one or two"),
    ({"cutoff": "yesterday-ish"}, "not a date"),
    ({"cutoff": float("nan")}, "not finite"),
    ({"ratios": (0.9, 0.2)}, "ratios must be"),
])
def test_temporal_bad_arguments(kwargs, match):
    X = Interactions.from_arrays([1, 2], [1, 2], timestamps=[1, 2])
    with pytest.raises(DataError, match=match):
        temporal_split(X, **kwargs)


# -- leave_last_out --------------------------------------------------------------------
@SETTINGS
@given(interactions(), st.integers(0, 2), st.integers(1, 2))
def test_leave_last_out_picks_latest(X, n_valid, n_test):
    parts = quiet(leave_last_out, X, n_valid, n_test)
    check_partition(X, parts)
    assert len(parts) == (3 if n_valid else 2)
    df = rows_by_tag(X)
    part_of = {}
    for j, p in enumerate(parts):
        part_of.update(dict.fromkeys(p.values.astype(np.int64).tolist(), j))
    df["part"] = df["tag"].map(part_of)
    need = n_valid + n_test + 1
    last = len(parts) - 1
    for _, g in df.groupby("u", sort=False):
        g = g.sort_values(["t", "tag"])  # time, then input order (tags are input order)
        if len(g) < need:
            assert (g["part"] == 0).all()
            continue
        expected = [0] * (len(g) - n_valid - n_test) + [1] * n_valid + [last] * n_test
        assert g["part"].tolist() == expected
        t = g["t"].to_numpy()
        assert t[: len(g) - n_valid - n_test].max() <= t[len(g) - n_valid - n_test:].min()
    short = int(((X.user_counts() > 0) & (X.user_counts() < need)).sum())
    assert parts.report["users_all_in_train"] == short


def test_leave_last_out_without_timestamps_warns_and_uses_input_order():
    X = Interactions.from_arrays([1, 1, 1, 1], [10, 40, 30, 20])
    with pytest.warns(MaasrecWarning, match="input order"):
        _, valid, test = quiet(leave_last_out, X)
    assert test.item_vocab.ids_of(test.item_indices).tolist() == [20]
    assert valid.item_vocab.ids_of(valid.item_indices).tolist() == [30]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaasrecWarning)
        warnings.simplefilter("ignore", ColdStartWarning)  # items 20/30 are only held out
        leave_last_out(X, assume_ordered=True)


@pytest.mark.parametrize("kwargs, match", [({"n_test": 0}, "n_test"), ({"n_valid": -1}, "n_valid"),
                                           ({"n_test": 1.5}, "integer")])
def test_leave_last_out_bad_arguments(kwargs, match):
    X = Interactions.from_arrays([1, 2], [1, 2], timestamps=[1, 2])
    with pytest.raises(DataError, match=match):
        leave_last_out(X, **kwargs)


# -- cold splits -----------------------------------------------------------------------
@SETTINGS
@given(interactions(), RATIOS, st.integers(0, 2**31))
def test_cold_user_split(X, ratios, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColdStartWarning)  # the point of the split: no warning
        parts = cold_user_split(X, ratios, random_state=seed)
    check_partition(X, parts)
    train_users = set(parts.train.users_with_interactions().tolist())
    held = [set(p.users_with_interactions().tolist()) for p in parts[1:]]
    for h in held:
        assert not (h & train_users)
    if len(held) == 2:
        assert not (held[0] & held[1])
    n_active = len(X.users_with_interactions())
    assert [len(train_users), *map(len, held)] == reference_counts(n_active, ratios)
    again = cold_user_split(X, ratios, random_state=seed)
    np.testing.assert_array_equal(again.test.values, parts.test.values)


@SETTINGS
@given(interactions(), st.sampled_from([0.1, 0.3, 0.5]), st.sampled_from([0.0, 0.2]),
       st.integers(0, 2**31))
def test_cold_item_split(X, test_size, valid_size, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColdStartWarning)
        parts = cold_item_split(X, test_size, valid_size, random_state=seed)
    check_partition(X, parts)
    assert len(parts) == (3 if valid_size else 2)
    train_items = set(np.flatnonzero(parts.train.item_counts()).tolist())
    held = [set(np.flatnonzero(p.item_counts()).tolist()) for p in parts[1:]]
    for h in held:
        assert not (h & train_items)
        assert parts.report["cold_items"][parts.names[1 + held.index(h)]] == len(h)


@pytest.mark.parametrize("kwargs, match", [
    ({"test_size": 0}, "test_size"), ({"test_size": 1.0}, "test_size"),
    ({"valid_size": -0.1}, "valid_size"), ({"test_size": 0.6, "valid_size": 0.5}, "< 1"),
])
def test_cold_item_split_bad_sizes(kwargs, match):
    X = Interactions.from_arrays([1, 2], [1, 2])
    with pytest.raises(DataError, match=match):
        cold_item_split(X, **kwargs)


# -- the result object -----------------------------------------------------------------
def test_split_result_api():
    X = Interactions.from_arrays(np.repeat(np.arange(20), 10), np.tile(np.arange(10), 20),
                                 timestamps=np.arange(200))
    res = random_split(X, random_state=0)
    train, valid, test = res
    assert res.train is train and res.valid is valid and res.test is test
    assert res.names == ("train", "valid", "test")
    rep = res.report
    assert rep["method"] == "random_split"
    assert rep["params"] == {"ratios": (0.8, 0.1, 0.1), "per_user": True, "random_state": 0}
    assert rep["parts"]["train"] == {"rows": 160, "users": 20, "items": 10}
    assert set(rep["cold_users"]) == set(rep["cold_items"]) == {"valid", "test"}
    text = repr(res)
    assert text.startswith("SplitResult(random_split") and "train:" in text and "160 rows" in text
    two = quiet(leave_last_out, X, n_valid=0)
    assert two.valid is None and two.names == ("train", "test")
    back = pickle.loads(pickle.dumps(res))
    assert isinstance(back, SplitResult) and back.report == rep


# -- real data -------------------------------------------------------------------------
@pytest.mark.data
def test_splits_on_movielens_1m(data_home, require_dataset):
    from maasrec.datasets import load_movielens

    require_dataset("ml-1m", "movies.dat")
    X = load_movielens("1m", data_home, download=False).interactions
    parts = quiet(random_split, X, random_state=0)
    assert sum(p.nnz for p in parts) == 1_000_209
    assert parts.report["parts"]["train"]["users"] == 6040
    assert parts.report["cold_users"] == {"valid": 0, "test": 0}
    if not X.has_timestamps:
        with pytest.raises(DataError, match="no timestamps"):
            temporal_split(X)


@pytest.mark.data
def test_leave_last_out_on_beauty_holds_out_last_items(data_home, require_dataset):
    from maasrec.datasets import load_amazon_sequences

    folder = require_dataset("amazon-beauty", "Beauty.txt")
    X = load_amazon_sequences("beauty", data_home, download=False).interactions
    _, valid, test = quiet(leave_last_out, X)
    assert test.nnz == valid.nnz == 22_363  # every sequence has >= 5 items
    last = {}
    with open(folder / "Beauty.txt") as f:
        for line in f:
            tok = line.split()
            last[int(tok[0])] = (int(tok[-2]), int(tok[-1]))
    df_t = test.to_pandas().set_index("user")["item"]
    df_v = valid.to_pandas().set_index("user")["item"]
    for u in list(last)[:2000]:
        assert (df_v[u], df_t[u]) == last[u]
