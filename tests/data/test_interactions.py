"""Tests of maasrec.data.interactions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.data.interactions import Interactions, as_interactions
from maasrec.data.vocab import IdVocab
from maasrec.exceptions import DataError, UnknownIdError

FAST = settings(max_examples=60, deadline=None)


def rows_of(X: Interactions) -> list[tuple]:
    """(user id, item id, value, timestamp) per row, in stored order."""
    u = X.user_vocab.ids[X.user_indices].tolist()
    i = X.item_vocab.ids[X.item_indices].tolist()
    v = X.values.tolist() if X.has_values else [None] * X.nnz
    t = X.timestamps.tolist() if X.has_timestamps else [None] * X.nnz
    return list(zip(u, i, v, t))


def as_map(X: Interactions) -> dict:
    return {(u, i): (v, t) for u, i, v, t in rows_of(X)}


# -- from_pandas -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cols",
    [
        ("user", "item", "rating", "timestamp"),
        ("userId", "movieId", "rating", "timestamp"),
        ("user_id", "item_id", "weight", "time"),
        ("UserID", "MovieID", "Rating", "Timestamp"),
        ("uid", "iid", "score", "ts"),
    ],
)
def test_from_pandas_auto_detects_columns(cols):
    uc, ic, rc, tc = cols
    df = pd.DataFrame(
        {
            uc: [1, 1, 2],
            ic: [10, 20, 10],
            rc: [4.0, 3.0, 5.0],
            tc: [3, 2, 1],
            "other": ["x", "y", "z"],
        }
    )
    X = Interactions.from_pandas(df)
    assert (X.n_users, X.n_items, X.nnz) == (2, 2, 3)
    assert X.has_values and X.has_timestamps
    # user 1: item 20 (t=2) before item 10 (t=3)
    assert rows_of(X) == [(1, 20, 3.0, 2), (1, 10, 4.0, 3), (2, 10, 5.0, 1)]


def test_from_pandas_without_optional_columns():
    X = Interactions.from_pandas(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}))
    assert not X.has_values and not X.has_timestamps
    np.testing.assert_array_equal(X.values, [1.0, 1.0])
    assert X.values.dtype == np.float32
    assert X.timestamps is None


def test_from_pandas_explicit_names_win():
    df = pd.DataFrame(
        {
            "user": [9, 9],
            "item": [8, 8],
            "who": ["a", "b"],
            "what": ["x", "y"],
            "stars": [1.0, 2.0],
            "rating": [5.0, 5.0],
            "when": [2, 1],
        }
    )
    X = Interactions.from_pandas(
        df, user_col="who", item_col="what", rating_col="stars", timestamp_col="when"
    )
    assert X.user_vocab.ids.tolist() == ["a", "b"]
    assert sorted(rows_of(X)) == [("a", "x", 1.0, 2), ("b", "y", 2.0, 1)]


@pytest.mark.parametrize(
    "kwargs, what",
    [
        ({"user_col": "nope"}, "user column 'nope'"),
        ({"item_col": "nope"}, "item column 'nope'"),
        ({"rating_col": "nope"}, "rating column 'nope'"),
        ({"timestamp_col": "nope"}, "timestamp column 'nope'"),
    ],
)
def test_from_pandas_missing_named_column_lists_columns(kwargs, what):
    df = pd.DataFrame({"user": [1], "item": [2]})
    with pytest.raises(DataError, match=what) as info:
        Interactions.from_pandas(df, **kwargs)
    assert "['user', 'item']" in str(info.value)


def test_from_pandas_undetectable_columns():
    df = pd.DataFrame({"person": [1], "thing": [2]})
    with pytest.raises(DataError, match="no user column found") as info:
        Interactions.from_pandas(df)
    assert "['person', 'thing']" in str(info.value) and "user_col" in str(info.value)
    with pytest.raises(DataError, match="no item column found"):
        Interactions.from_pandas(df, user_col="person")


def test_from_pandas_bad_inputs():
    with pytest.raises(DataError, match="DataFrame"):
        Interactions.from_pandas({"user": [1], "item": [2]})
    with pytest.raises(DataError, match="empty"):
        Interactions.from_pandas(pd.DataFrame({"user": [], "item": []}))
    with pytest.raises(DataError, match="not numeric"):
        Interactions.from_pandas(pd.DataFrame({"user": [1], "item": [2], "rating": ["good"]}))
    with pytest.raises(DataError, match="neither numeric nor dates"):
        Interactions.from_pandas(pd.DataFrame({"user": [1], "item": [2], "timestamp": ["soon"]}))


def test_from_pandas_nan_rating_names_nan_and_row():
    df = pd.DataFrame(
        {"user": [1, 2, 3, 4], "item": [1, 2, 3, 4], "rating": [1.0, 2.0, np.nan, 3.0]}
    )
    with pytest.raises(DataError, match="NaN") as info:
        Interactions.from_pandas(df)
    assert "row 2" in str(info.value)


def test_from_pandas_nan_ids():
    df = pd.DataFrame({"user": [1.0, np.nan], "item": [1, 2]})
    with pytest.raises(DataError, match="NaN"):
        Interactions.from_pandas(df)
    df = pd.DataFrame({"user": ["a", None], "item": [1, 2]})
    with pytest.raises(DataError, match="missing"):
        Interactions.from_pandas(df)


# -- from_arrays -------------------------------------------------------------------------------


def test_from_arrays_length_mismatch_names_lengths():
    with pytest.raises(DataError, match="same length") as info:
        Interactions.from_arrays([1, 2, 3], [1, 2])
    assert "'users': 3" in str(info.value) and "'items': 2" in str(info.value)
    with pytest.raises(DataError, match="'values': 1"):
        Interactions.from_arrays([1, 2], [1, 2], values=[1.0])
    with pytest.raises(DataError, match="'timestamps': 3"):
        Interactions.from_arrays([1, 2], [1, 2], timestamps=[1, 2, 3])


def test_from_arrays_empty_and_shape():
    with pytest.raises(DataError, match="empty"):
        Interactions.from_arrays([], [])
    with pytest.raises(DataError, match="1-d"):
        Interactions.from_arrays([[1, 2]], [[1, 2]])
    with pytest.raises(DataError, match="duplicates="):
        Interactions.from_arrays([1], [1], duplicates="average")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_from_arrays_non_finite_values(bad):
    with pytest.raises(DataError, match=r"NaN/inf.*row 1"):
        Interactions.from_arrays([1, 2, 3], [1, 2, 3], values=[1.0, bad, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_from_arrays_non_finite_timestamps(bad):
    with pytest.raises(DataError, match=r"timestamps.*NaN/inf.*row 2"):
        Interactions.from_arrays([1, 2, 3], [1, 2, 3], timestamps=[1.0, 2.0, bad])


def test_nat_timestamps_rejected():
    ts = pd.to_datetime(["2020-01-01", None, "2020-01-02"])
    with pytest.raises(DataError, match=r"NaT.*row 1"):
        Interactions.from_arrays([1, 2, 3], [1, 2, 3], timestamps=ts.to_numpy())
    df = pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3], "timestamp": ts})
    with pytest.raises(DataError, match="NaN"):
        Interactions.from_pandas(df)
    df = pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": ["2020-01-01", None]})
    with pytest.raises(DataError, match="NaT"):
        Interactions.from_pandas(df)


def test_timestamps_of_wrong_type():
    with pytest.raises(DataError, match=r"numbers or datetimes|neither numbers nor dates"):
        Interactions.from_arrays([1], [1], timestamps=["not a date"])
    with pytest.raises(DataError, match="numbers or datetimes"):
        Interactions(
            np.array([0]), np.array([0]), IdVocab([1]), IdVocab([1]), timestamps=np.array([b"x"])
        )


def test_from_arrays_with_vocab_unknown():
    uv, iv = IdVocab(["a", "b"], name="user"), IdVocab([1, 2], name="item")
    with pytest.raises(UnknownIdError, match="'c'"):
        Interactions.from_arrays(["a", "c"], [1, 2], user_vocab=uv, item_vocab=iv)
    X = Interactions.from_arrays(
        ["a", "c", "b", "b"],
        [1, 2, 3, 2],
        values=[1, 2, 3, 4],
        timestamps=[1, 2, 3, 4],
        user_vocab=uv,
        item_vocab=iv,
        unknown="ignore",
    )
    assert X.user_vocab is uv and X.item_vocab is iv
    assert rows_of(X) == [("a", 1, 1.0, 1), ("b", 2, 4.0, 4)]
    with pytest.raises(DataError, match="no interaction has a known user and item"):
        Interactions.from_arrays(["z"], [1], user_vocab=uv, item_vocab=iv, unknown="ignore")


def test_string_ids_and_counts():
    X = Interactions.from_arrays(["u2", "u1", "u2", "u3"], ["x", "x", "y", "x"])
    assert X.user_vocab.ids.tolist() == ["u1", "u2", "u3"]
    assert X.item_vocab.ids.tolist() == ["x", "y"]
    np.testing.assert_array_equal(X.user_counts(), [1, 2, 1])
    np.testing.assert_array_equal(X.item_counts(), [3, 1])
    np.testing.assert_array_equal(X.user_indptr, [0, 1, 3, 4])
    np.testing.assert_array_equal(X.users_with_interactions(), [0, 1, 2])
    assert len(X) == X.nnz == 4
    assert X.sequences(as_ids=True)[1].tolist() == ["x", "y"]


def test_counts_include_users_without_rows():
    uv = IdVocab([1, 2, 3], name="user")
    X = Interactions.from_arrays([1, 3], [5, 5], user_vocab=uv)
    np.testing.assert_array_equal(X.user_counts(), [1, 0, 1])
    np.testing.assert_array_equal(X.users_with_interactions(), [0, 2])
    assert [len(s) for s in X.sequences()] == [1, 0, 1]


# -- duplicates --------------------------------------------------------------------------------

DUP = {
    "users": ["a", "a", "a", "b", "b"],
    "items": [1, 1, 2, 1, 1],
    "values": [1.0, 5.0, 3.0, 2.0, 4.0],
    "timestamps": [20, 10, 5, 1, 1],
}


@pytest.mark.parametrize(
    "policy, expected",
    [
        # (a,1): rows (t20,v1) and (t10,v5); (b,1): rows (t1,v2) and (t1,v4) tie -> input order
        ("last", {("a", 1): (1.0, 20), ("a", 2): (3.0, 5), ("b", 1): (4.0, 1)}),
        ("first", {("a", 1): (5.0, 10), ("a", 2): (3.0, 5), ("b", 1): (2.0, 1)}),
        ("sum", {("a", 1): (6.0, 20), ("a", 2): (3.0, 5), ("b", 1): (6.0, 1)}),
        ("mean", {("a", 1): (3.0, 20), ("a", 2): (3.0, 5), ("b", 1): (3.0, 1)}),
        ("max", {("a", 1): (5.0, 20), ("a", 2): (3.0, 5), ("b", 1): (4.0, 1)}),
    ],
)
def test_duplicate_policies(policy, expected):
    X = Interactions.from_arrays(**DUP, duplicates=policy)
    assert X.nnz == 3
    assert as_map(X) == expected
    # rows stay sorted by (user, time)
    assert rows_of(X)[0][:2] == ("a", 2)


def test_duplicates_last_first_without_timestamps_use_input_order():
    kw = {"users": [1, 1, 1], "items": [7, 7, 7], "values": [1.0, 2.0, 3.0]}
    assert as_map(Interactions.from_arrays(**kw, duplicates="last")) == {(1, 7): (3.0, None)}
    assert as_map(Interactions.from_arrays(**kw, duplicates="first")) == {(1, 7): (1.0, None)}


def test_duplicates_min_negative_values_max():
    X = Interactions.from_arrays([1, 1], [1, 1], values=[-3.0, -5.0], duplicates="max")
    assert X.values.tolist() == [-3.0]


def test_duplicates_keep_and_raise():
    X = Interactions.from_arrays(**DUP, duplicates="keep")
    assert X.nnz == 5
    assert X.to_csr()[0, 0] == 6.0  # repeated pairs summed in the matrix
    with pytest.raises(DataError, match="duplicate interaction") as info:
        Interactions.from_arrays(**DUP, duplicates="raise")
    msg = str(info.value)
    assert "item 1" in msg and ("user 'a'" in msg or "user 'b'" in msg)
    Interactions.from_arrays([1, 2], [1, 1], duplicates="raise")  # no duplicates: fine


def test_duplicates_sum_implicit_counts():
    X = Interactions.from_arrays([1, 1, 1, 2], [5, 5, 6, 5], duplicates="sum")
    assert as_map(X) == {(1, 5): (2.0, None), (1, 6): (1.0, None), (2, 5): (1.0, None)}


def test_duplicates_default_is_last():
    X = Interactions.from_arrays(**DUP)
    assert as_map(X)[("a", 1)] == (1.0, 20)


# -- from_csr ----------------------------------------------------------------------------------


def test_from_csr_values_ids_and_zeros():
    m = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    m.data[1] = 0.0  # an explicit stored zero is not an interaction
    snapshot = (m.indptr.copy(), m.indices.copy(), m.data.copy())
    X = Interactions.from_csr(m, user_ids=["a", "b"], item_ids=[10, 20, 30])
    assert rows_of(X) == [("a", 10, 1.0, None), ("b", 20, 3.0, None)]
    assert X.n_items == 3  # item 30 has no rows but stays in the catalogue
    # the caller's matrix is untouched
    np.testing.assert_array_equal(m.indptr, snapshot[0])
    np.testing.assert_array_equal(m.indices, snapshot[1])
    np.testing.assert_array_equal(m.data, snapshot[2])


def test_from_csr_binary_is_implicit_and_sums_duplicates():
    m = sp.coo_matrix((np.ones(3), ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    X = Interactions.from_csr(m)
    assert X.has_values and X.to_csr()[0, 1] == 2.0  # duplicates summed -> 2
    X = Interactions.from_csr(np.eye(3))
    assert not X.has_values
    assert X.user_vocab.ids.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(X.to_csr().toarray(), np.eye(3))


def test_from_csr_errors():
    with pytest.raises(DataError, match="no non-zero"):
        Interactions.from_csr(sp.csr_matrix((2, 3)))
    with pytest.raises(DataError, match="2-d"):
        Interactions.from_csr(np.ones(3))
    with pytest.raises(DataError, match="NaN"):
        Interactions.from_csr(np.array([[1.0, np.nan]]))
    with pytest.raises(DataError, match="user ids"):
        Interactions.from_csr(np.eye(2), user_ids=["a"])
    with pytest.raises(DataError, match="distinct"):
        Interactions.from_csr(np.eye(2), item_ids=["a", "a"])


# -- views -------------------------------------------------------------------------------------


def test_to_csr_values_and_binary():
    X = Interactions.from_arrays([1, 1, 2], ["x", "y", "y"], values=[4.0, 0.5, 2.0])
    m = X.to_csr()
    assert m.dtype == np.float32 and m.shape == (2, 2)
    np.testing.assert_array_equal(m.toarray(), [[4.0, 0.5], [0.0, 2.0]])
    np.testing.assert_array_equal(X.to_csr(binary=True).toarray(), [[1, 1], [0, 1]])
    # copies: mutating the result never changes the data
    m.data[:] = 99
    np.testing.assert_array_equal(X.to_csr().toarray(), [[4.0, 0.5], [0.0, 2.0]])
    assert m.has_sorted_indices


def test_to_csr_without_copy_is_the_shared_read_only_matrix():
    X = Interactions.from_arrays([1, 1, 2], ["x", "y", "y"], values=[4.0, 0.5, 3.0])
    a, b = X.to_csr(copy=False), X.to_csr(copy=False)
    assert a is b and a.has_canonical_format
    np.testing.assert_array_equal(a.toarray(), [[4.0, 0.5], [0.0, 3.0]])
    for arr in (a.data, a.indices, a.indptr):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 7
    # binary without copy shares the structure, and its values are ones
    ones = X.to_csr(binary=True, copy=False)
    assert np.shares_memory(ones.indices, a.indices)
    np.testing.assert_array_equal(ones.toarray(), [[1, 1], [0, 1]])
    # a copy is the caller's: writable, and changing it leaves the shared matrix alone
    c = X.to_csr()
    c.data[:] = 0
    np.testing.assert_array_equal(X.to_csr(copy=False).toarray(), [[4.0, 0.5], [0.0, 3.0]])
    # implicit data: already ones, so binary is the shared matrix itself
    Y = Interactions.from_arrays([1, 2], [1, 2])
    assert Y.to_csr(binary=True, copy=False) is Y.to_csr(copy=False)


def test_fitted_models_share_the_interactions_matrix_read_only():
    from maasrec.models import Popularity

    X = Interactions.from_arrays([1, 1, 2], ["x", "y", "y"])
    m = Popularity().fit(X)
    assert m.seen_ is X.to_csr(copy=False) and not m.seen_.data.flags.writeable
    np.testing.assert_array_equal(m.item_scores_, [1, 2])


def test_arrays_are_read_only():
    X = Interactions.from_arrays([1, 2], [1, 2], values=[1.0, 2.0], timestamps=[1, 2])
    for arr in (
        X.user_indices,
        X.item_indices,
        X.values,
        X.timestamps,
    ):
        with pytest.raises(ValueError):
            arr[0] = 5


def test_sequences_time_order_with_ties_by_input_order():
    X = Interactions.from_arrays(
        ["u", "u", "u", "u", "v"], [5, 3, 4, 1, 2], timestamps=[30, 10, 10, 5, 1], duplicates="keep"
    )
    seqs = X.sequences(as_ids=True)
    assert seqs[0].tolist() == [1, 3, 4, 5]  # t=5, t=10 (input order 3 then 4), t=30
    assert seqs[1].tolist() == [2]
    X = Interactions.from_arrays(["u"] * 3, [3, 1, 2])  # no timestamps: input order
    assert X.sequences(as_ids=True)[0].tolist() == [3, 1, 2]


def test_datetime_timestamps():
    t = pd.to_datetime(["2021-01-02", "2021-01-01", "2021-01-03"])
    df = pd.DataFrame({"user": [1, 1, 1], "item": [1, 2, 3], "timestamp": t})
    X = Interactions.from_pandas(df)
    assert X.timestamps.dtype == np.int64
    assert X.sequences(as_ids=True)[0].tolist() == [2, 1, 3]
    assert X.timestamps[0] == pd.Timestamp("2021-01-01").value  # nanoseconds
    Y = Interactions.from_arrays([1, 1, 1], [1, 2, 3], timestamps=t.to_numpy())
    np.testing.assert_array_equal(Y.timestamps, X.timestamps)
    # python datetimes, date strings, tz-aware times
    py = [dt.datetime(2021, 1, 2), dt.datetime(2021, 1, 1), dt.datetime(2021, 1, 3)]
    Z = Interactions.from_arrays([1, 1, 1], [1, 2, 3], timestamps=py)
    np.testing.assert_array_equal(Z.timestamps, X.timestamps)
    S = Interactions.from_pandas(df.assign(timestamp=["2021-01-02", "2021-01-01", "2021-01-03"]))
    np.testing.assert_array_equal(S.timestamps, X.timestamps)
    tz = df.assign(timestamp=t.tz_localize("Europe/Paris"))
    T = Interactions.from_pandas(tz)
    assert T.sequences(as_ids=True)[0].tolist() == [2, 1, 3]
    np.testing.assert_array_equal(T.timestamps, X.timestamps - 3600 * 10**9)  # UTC


def test_to_pandas_round_trip():
    df = pd.DataFrame(
        {
            "user": ["b", "a", "a"],
            "item": [1, 2, 1],
            "rating": [1.0, 2.0, 3.0],
            "timestamp": [5, 7, 6],
        }
    )
    X = Interactions.from_pandas(df)
    out = X.to_pandas()
    assert list(out.columns) == ["user", "item", "rating", "timestamp"]
    Y = Interactions.from_pandas(out)
    assert rows_of(Y) == rows_of(X)
    assert list(Interactions.from_arrays([1], [2]).to_pandas().columns) == ["user", "item"]


def test_subset_shares_vocab():
    X = Interactions.from_arrays(
        [1, 1, 2, 3], [1, 2, 1, 3], values=[1, 2, 3, 4], timestamps=[4, 3, 2, 1]
    )
    S = X.subset([3, 0])
    assert S.user_vocab is X.user_vocab and S.item_vocab is X.item_vocab
    assert rows_of(S) == [rows_of(X)[0], rows_of(X)[3]]
    mask = np.array([False, True, True, False])
    assert rows_of(X.subset(mask)) == [rows_of(X)[1], rows_of(X)[2]]
    with pytest.raises(DataError, match="boolean mask"):
        X.subset(np.array([True, False]))
    assert X.subset(np.zeros(4, dtype=bool)).nnz == 0
    assert X.subset(mask).to_csr().shape == X.to_csr().shape


def test_with_vocab_remaps_and_drops():
    X = Interactions.from_arrays(["a", "b", "c"], [1, 2, 3], values=[1, 2, 3], timestamps=[3, 2, 1])
    uv = IdVocab(["c", "a", "z"], name="user")
    iv = IdVocab([3, 2, 1], name="item")
    with pytest.raises(UnknownIdError, match="'b'"):
        X.with_vocab(uv, iv)
    Y = X.with_vocab(uv, iv, unknown="ignore")
    assert Y.user_vocab is uv and Y.item_vocab is iv
    assert sorted(rows_of(Y)) == [("a", 1, 1.0, 3), ("c", 3, 3.0, 1)]
    np.testing.assert_array_equal(Y.user_indices, [0, 1])  # c -> 0, a -> 1
    np.testing.assert_array_equal(Y.item_indices, [0, 2])
    assert X.with_vocab(X.user_vocab, X.item_vocab) is X
    assert X.with_vocab(IdVocab(["a", "b", "c"]), IdVocab([1, 2, 3])) is X


def test_init_validation():
    uv, iv = IdVocab([1, 2]), IdVocab([1])
    with pytest.raises(DataError, match="equal length"):
        Interactions([0, 1], [0], uv, iv)
    with pytest.raises(DataError, match="user indices"):
        Interactions([0, 2], [0, 0], uv, iv)
    with pytest.raises(DataError, match="item indices"):
        Interactions([0, 1], [0, -1], uv, iv)
    with pytest.raises(DataError, match="values must have shape"):
        Interactions([0, 1], [0, 0], uv, iv, values=[1.0])
    with pytest.raises(DataError, match="timestamps must have shape"):
        Interactions([0, 1], [0, 0], uv, iv, timestamps=[1])


def test_repr():
    X = Interactions.from_arrays([1, 2], [1, 1], values=[1.0, 2.0], timestamps=[1, 2])
    assert repr(X) == (
        "Interactions(n_users=2, n_items=1, nnz=2, density=100.0000%, with values and timestamps)"
    )
    assert repr(Interactions.from_arrays([1], [1])).endswith("density=100.0000%)")


def test_as_interactions():
    X = Interactions.from_arrays([1], [1])
    assert as_interactions(X) is X
    assert as_interactions(pd.DataFrame({"user": [1], "item": [2]})).nnz == 1
    assert as_interactions(sp.csr_matrix(np.eye(2))).nnz == 2
    with pytest.raises(DataError, match="list"):
        as_interactions([[1, 2]])
    with pytest.raises(DataError, match="empty"):
        as_interactions(X.subset(np.zeros(1, dtype=bool)))
    uv = IdVocab([1, 5], name="user")
    assert as_interactions(pd.DataFrame({"user": [5], "item": [2]}), user_vocab=uv).user_vocab is uv


# -- properties --------------------------------------------------------------------------------

triples = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 8), st.integers(-3, 3), st.integers(0, 4)),
    min_size=1,
    max_size=40,
)


@FAST
@given(triples)
def test_to_csr_equals_dense_accumulation(rows):
    users, items, vals, ts = (list(x) for x in zip(*rows))
    X = Interactions.from_arrays(
        users, items, values=[float(v) for v in vals], timestamps=ts, duplicates="keep"
    )
    dense = np.zeros((X.n_users, X.n_items))
    for u, i, v in zip(users, items, vals):
        dense[X.user_vocab.index(u)[0], X.item_vocab.index(i)[0]] += v
    np.testing.assert_array_equal(X.to_csr().toarray(), dense)
    binary = np.zeros_like(dense)
    for u, i in zip(users, items):
        binary[X.user_vocab.index(u)[0], X.item_vocab.index(i)[0]] = 1
    np.testing.assert_array_equal(X.to_csr(binary=True).toarray(), binary)


@FAST
@given(triples)
def test_rows_sorted_by_user_time_input_order(rows):
    users, items, _, ts = (list(x) for x in zip(*rows))
    X = Interactions.from_arrays(users, items, timestamps=ts, duplicates="keep")
    expected = sorted(range(len(rows)), key=lambda r: (users[r], ts[r], r))
    assert rows_of(X) == [(users[r], items[r], None, ts[r]) for r in expected]
    seqs = X.sequences()
    flat = np.concatenate(seqs) if seqs else np.empty(0)
    np.testing.assert_array_equal(flat, X.item_indices)
    assert [len(s) for s in seqs] == X.user_counts().tolist()
    assert X.user_counts().sum() == X.item_counts().sum() == X.nnz


@FAST
@given(triples, st.sampled_from(["last", "first", "sum", "mean", "max"]))
def test_dedup_leaves_unique_pairs_and_matching_aggregates(rows, policy):
    users, items, vals, ts = (list(x) for x in zip(*rows))
    X = Interactions.from_arrays(
        users, items, values=[float(v) for v in vals], timestamps=ts, duplicates=policy
    )
    got = as_map(X)
    assert len(got) == X.nnz
    groups: dict = {}
    for r, key in enumerate(zip(users, items)):
        groups.setdefault(key, []).append(r)
    assert set(got) == set(groups)
    for key, rs in groups.items():
        by_time = sorted(rs, key=lambda r: (ts[r], r))
        v = [vals[r] for r in rs]
        want = {
            "last": vals[by_time[-1]],
            "first": vals[by_time[0]],
            "sum": sum(v),
            "mean": sum(v) / len(v),
            "max": max(v),
        }[policy]
        assert got[key][0] == pytest.approx(want, abs=1e-6)
        want_t = ts[by_time[0]] if policy == "first" else ts[by_time[-1]]
        assert got[key][1] == want_t
