"""Tests of maasrec.data.vocab.IdVocab."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.data.vocab import IdVocab
from maasrec.exceptions import DataError, UnknownIdError

int_ids = st.lists(st.integers(-(2**62), 2**62), unique=True, max_size=40)
str_ids = st.lists(st.text(max_size=8), unique=True, max_size=40)
float_ids = st.lists(st.floats(allow_nan=False, allow_infinity=False), unique=True, max_size=20)

FAST = settings(max_examples=60, deadline=None)


# -- round trips -------------------------------------------------------------------------------


@FAST
@given(ids=st.one_of(int_ids, str_ids), data=st.data())
def test_index_ids_of_round_trip(ids, data):
    v = IdVocab(ids)
    assert len(v) == len(ids)
    np.testing.assert_array_equal(v.index(ids), np.arange(len(ids)))
    if ids:
        pick = data.draw(st.lists(st.integers(0, len(ids) - 1), max_size=30))
        got = v.ids_of(pick)
        assert [x for x in got.tolist()] == [ids[i] for i in pick]
        np.testing.assert_array_equal(
            v.index([ids[i] for i in pick]), np.asarray(pick, dtype=np.int64)
        )


@FAST
@given(ids=st.one_of(int_ids, str_ids, float_ids))
def test_to_dict_from_dict_round_trip(ids):
    v = IdVocab(ids, name="user")
    d = json.loads(json.dumps(v.to_dict()))  # must survive real JSON
    w = IdVocab.from_dict(d)
    assert w == v
    assert w.name == "user"
    assert w.ids.tolist() == v.ids.tolist()
    np.testing.assert_array_equal(w.index(ids), np.arange(len(ids)))


def test_int_ids_are_int64_and_str_ids_object():
    assert IdVocab([3, 1, 2]).ids.dtype == np.int64
    assert IdVocab(np.array([3, 1], dtype=np.int32)).index([1])[0] == 1
    assert IdVocab(["a", "b"]).ids.dtype == object
    assert IdVocab(np.array(["a", "b"])).ids.dtype == object  # numpy unicode -> object
    assert IdVocab(pd.Series(["x", "y"])).ids.tolist() == ["x", "y"]
    assert IdVocab(pd.Index([5, 6])).ids.dtype.kind == "i"


@pytest.mark.parametrize(
    "ids, kind",
    [
        ([1, 2], "int"),
        (np.array([1.5, 2.5]), "float"),
        (["a", "b"], "str"),
        ([1, "a"], "object"),
    ],
)
def test_id_kind_and_json_round_trip(ids, kind):
    v = IdVocab(ids)
    assert v.id_kind == kind
    d = json.loads(json.dumps(v.to_dict()))
    assert d["kind"] == kind
    w = IdVocab.from_dict(d)
    assert w == v and w.ids.tolist() == v.ids.tolist()


def test_float_ids_round_trip_exactly():
    v = IdVocab(np.array([0.1, 1e-300, -3.5, 1e300]))
    w = IdVocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert w.ids.dtype == np.float64
    assert w.ids.tolist() == v.ids.tolist()


def test_unsaveable_ids():
    v = IdVocab([(1, 2), (3, 4)])  # tuples are hashable ids, but JSON cannot keep them
    with pytest.raises(DataError, match=r"\(1, 2\).*tuple"):
        v.to_dict()
    with pytest.raises(DataError):
        IdVocab([b"a", "b"]).to_dict()


# -- lookups -----------------------------------------------------------------------------------


def test_unknown_raise_names_the_id():
    v = IdVocab(["a", "b", "c"], name="item")
    with pytest.raises(UnknownIdError) as info:
        v.index(["a", "zzz", "b", "yyy"])
    err = info.value
    assert "'zzz'" in str(err) and "'yyy'" in str(err)
    assert "item" in str(err)
    assert err.ids == ["zzz", "yyy"]
    assert err.kind == "item"
    assert isinstance(err, KeyError)


def test_unknown_error_lists_at_most_five_in_message_but_keeps_ids():
    v = IdVocab([0], name="user")
    with pytest.raises(UnknownIdError) as info:
        v.index(list(range(1, 21)))
    assert "and 15 more" in str(info.value)
    assert info.value.ids == list(range(1, 21))
    assert all(type(x) is int for x in info.value.ids)  # plain python ids, not numpy scalars


def test_unknown_ignore_maps_to_minus_one():
    v = IdVocab([10, 20, 30])
    np.testing.assert_array_equal(v.index([20, 99, 10, -5], unknown="ignore"), [1, -1, 0, -1])
    assert v.index([20, 99], unknown="ignore").dtype == np.int64


def test_index_bad_policy():
    with pytest.raises(DataError, match="unknown="):
        IdVocab([1]).index([1], unknown="drop")


def test_index_scalar_and_empty():
    v = IdVocab(["a", "b"])
    np.testing.assert_array_equal(v.index("b"), [1])
    np.testing.assert_array_equal(IdVocab([5, 6]).index(6), [1])
    np.testing.assert_array_equal(IdVocab([5, 6]).index(np.int64(5)), [0])
    assert v.index([]).shape == (0,) and v.index([]).dtype == np.int64


def test_index_type_mismatch_is_unknown():
    v = IdVocab([1, 2, 3])
    with pytest.raises(UnknownIdError, match="'1'"):
        v.index(["1"])


def test_index_rejects_nan_query():
    with pytest.raises(DataError, match=r"NaN|missing"):
        IdVocab([1.0, 2.0]).index([np.nan])
    with pytest.raises(DataError, match="NaN"):
        IdVocab([1.0, 2.0]).index(np.array([np.nan]))


def test_ids_of_out_of_range():
    v = IdVocab(["a", "b"], name="user")
    with pytest.raises(DataError, match=r"user indices out of range 0\.\.1: \[2\]"):
        v.ids_of([0, 2])
    with pytest.raises(DataError, match=r"\[-1\]"):
        v.ids_of([-1])
    assert v.ids_of([]).shape == (0,)


def test_contains():
    v = IdVocab(["a", "b"])
    assert "a" in v and "z" not in v
    assert [1] not in v  # unhashable: not in, no crash


def test_ids_read_only():
    v = IdVocab([1, 2, 3])
    with pytest.raises(ValueError):
        v.ids[0] = 7


def test_does_not_alias_or_freeze_callers_array():
    arr = np.arange(5)
    v = IdVocab(arr)
    assert arr.flags.writeable, "IdVocab froze the caller's array"
    arr[0] = 99
    assert v.ids[0] == 0 and v.index([0])[0] == 0
    df = pd.DataFrame({"id": [5, 6, 7]})
    w = IdVocab(df["id"])
    df.loc[0, "id"] = 9
    assert w.ids.tolist() == [5, 6, 7]
    np.testing.assert_array_equal(w.index([5, 6, 7]), [0, 1, 2])


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [[1, 2, 1], ["a", "b", "a"], [1, 1.0]])
def test_duplicates_rejected(ids):
    with pytest.raises(DataError, match="distinct"):
        IdVocab(ids, name="item")


def test_duplicate_message_names_duplicate():
    with pytest.raises(DataError, match=r"user ids must be distinct; duplicated: \['x'\]"):
        IdVocab(["x", "y", "x"], name="user")


@pytest.mark.parametrize(
    "ids",
    [
        [1.0, np.nan],
        np.array([1.0, np.nan]),
        ["a", None],
        [None],
        ["a", np.nan],
        pd.Series([1, None], dtype="Int64"),
        pd.Series(["a", None]),
    ],
)
def test_missing_ids_rejected(ids):
    with pytest.raises(DataError, match=r"NaN|missing"):
        IdVocab(ids)


@pytest.mark.parametrize("ids", ["abc", 5, b"ab", np.zeros((2, 2))])
def test_not_a_sequence(ids):
    with pytest.raises(DataError):
        IdVocab(ids)


def test_empty_vocab():
    v = IdVocab([])
    assert len(v) == 0
    assert v.index([1], unknown="ignore").tolist() == [-1]
    with pytest.raises(UnknownIdError):
        v.index([1])


# -- from_values -------------------------------------------------------------------------------


def test_from_values_sorted_and_deterministic():
    a = IdVocab.from_values([3, 1, 3, 2, 1])
    assert a.ids.tolist() == [1, 2, 3]
    b = IdVocab.from_values(["b", "a", "c", "a"])
    assert b.ids.tolist() == ["a", "b", "c"]
    assert IdVocab.from_values([3, 1, 3, 2], sort=False).ids.tolist() == [3, 1, 2]


@FAST
@given(st.lists(st.one_of(st.integers(-50, 50)), min_size=1, max_size=50), st.randoms())
def test_from_values_independent_of_order(values, rnd):
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert IdVocab.from_values(values) == IdVocab.from_values(shuffled)
    assert IdVocab.from_values(values).ids.tolist() == sorted(set(values))


@FAST
@given(st.lists(st.text(max_size=4), min_size=1, max_size=30), st.randoms())
def test_from_values_str_independent_of_order(values, rnd):
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert IdVocab.from_values(values).ids.tolist() == IdVocab.from_values(shuffled).ids.tolist()
    assert IdVocab.from_values(values).ids.tolist() == sorted(set(values))


def test_from_values_mixed_types_deterministic():
    a = IdVocab.from_values([2, "b", 1, "a"])
    b = IdVocab.from_values(["a", 1, "b", 2])
    assert a.ids.tolist() == b.ids.tolist() == [1, 2, "a", "b"]


def test_from_values_name_and_nan():
    assert IdVocab.from_values([1], name="user").name == "user"
    with pytest.raises(DataError):
        IdVocab.from_values(np.array([1.0, np.nan]))


# -- extend ------------------------------------------------------------------------------------


@FAST
@given(old=int_ids, new=st.lists(st.integers(-(2**62), 2**62), max_size=30))
def test_extend_keeps_old_indices(old, new):
    v = IdVocab(old)
    w = v.extend(new)
    np.testing.assert_array_equal(w.index(old), np.arange(len(old)))
    assert set(w.ids.tolist()) == set(old) | set(new)
    assert len(w) == len(set(old) | set(new))
    # new ids appended in first-seen order
    fresh = list(dict.fromkeys(x for x in new if x not in set(old)))
    assert w.ids.tolist()[len(old) :] == fresh


def test_extend_returns_self_when_nothing_new_and_mixes_types():
    v = IdVocab([1, 2], name="user")
    assert v.extend([2, 1]) is v
    w = v.extend(["a"])
    assert w.ids.tolist() == [1, 2, "a"] and w.name == "user"
    assert w.index([1, "a"]).tolist() == [0, 2]
    assert v.extend(np.array([3])).ids.dtype == np.int64


# -- equality / repr ---------------------------------------------------------------------------


def test_equality_and_hash():
    assert IdVocab([1, 2]) == IdVocab([1, 2])
    assert IdVocab([1, 2]) != IdVocab([2, 1])
    assert IdVocab([1, 2]) != IdVocab([1, 2, 3])
    assert IdVocab(["a"]) != ["a"]
    with pytest.raises(TypeError):
        hash(IdVocab([1]))


def test_repr():
    r = repr(IdVocab(["a", "b", "c", "d"], name="user"))
    assert r == "IdVocab(name='user', n=4, ids=['a', 'b', 'c', ...])"


# -- id rules: no booleans, int64 only, ordered containers -------------------------------------


@pytest.mark.parametrize("ids, shown", [
    ([1, True], "True"), ([False, "a"], "False"), (np.array([True, False]), "True"),
    (pd.Series([0, 1], dtype=bool), "False"), ([np.True_, 2], "True"),
])
def test_boolean_ids_rejected(ids, shown):
    # True/False would merge with 1/0 (4 raw ids became 2 users): refused, naming the value
    with pytest.raises(DataError, match=f"boolean {shown}"):
        IdVocab(ids, name="user")
    with pytest.raises(DataError, match=f"boolean {shown}"):
        IdVocab.from_values(ids, name="user")
    with pytest.raises(DataError, match=f"boolean {shown}"):
        IdVocab([1, 2, 3]).index(ids)


@pytest.mark.parametrize("big", [2**63, 2**64, -(2**63) - 1, 10**30])
def test_ids_beyond_int64_rejected(big):
    for ids in ([big], [1, big], ["a", big]):
        with pytest.raises(DataError, match=f"{big}.*64-bit integer"):
            IdVocab(ids)
    with pytest.raises(DataError, match=f"{big}.*64-bit integer"):
        IdVocab([1, 2]).index(big)
    assert IdVocab([2**63 - 1, -(2**63)]).ids.dtype == np.int64  # the bounds themselves fit


def test_int64_bounds_in_uint64_arrays():
    with pytest.raises(DataError, match=str(2**63)):
        IdVocab(np.array([1, 2**63], dtype=np.uint64))
    assert IdVocab(np.array([1, 2], dtype=np.uint64)).index([2])[0] == 1


@pytest.mark.parametrize("ids, what", [
    ({1, 2}, "set"), (frozenset({1}), "frozenset"), ({1: "a"}, "dict"),
    ((i for i in range(2)), "generator"), ({1: 2}.keys(), "dict_keys"),
])
def test_unordered_id_containers_rejected(ids, what):
    with pytest.raises(DataError, match=f"is a {what}"):
        IdVocab(ids)
    with pytest.raises(DataError, match=f"is a {what}"):
        IdVocab([1, 2]).index(ids)
