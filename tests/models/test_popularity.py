"""Tests of maasrec.models.Popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec.data import IdVocab, Interactions
from maasrec.models import Popularity


def test_counts_distinct_users_not_rows():
    df = pd.DataFrame({"user": [1, 1, 1, 1, 2, 3], "item": ["a", "a", "a", "b", "b", "c"]})
    X = Interactions.from_pandas(df, duplicates="keep")
    assert X.nnz == 6
    m = Popularity().fit(X)
    np.testing.assert_array_equal(m.item_scores_, [1, 2, 1])  # "a": one user, three rows
    assert m.item_scores_.dtype == np.float32
    s = Popularity().fit(Interactions.from_pandas(df, duplicates="sum"))
    np.testing.assert_array_equal(s.item_scores_, [1, 2, 1])


def test_ratings_do_not_weigh():
    df = pd.DataFrame({"user": [1, 2, 3], "item": ["a", "b", "b"], "rating": [5.0, 1.0, 1.0]})
    m = Popularity().fit(df)
    np.testing.assert_array_equal(m.item_scores_, [1, 2])


def test_ties_by_lower_index_and_same_list_for_everyone():
    # items 30, 10, 20 get 2, 2, 2 users; 40 gets 3 users
    df = pd.DataFrame(
        {"user": [1, 2, 3, 4, 5, 6, 7, 8, 9], "item": [40, 40, 40, 30, 30, 10, 10, 20, 20]}
    )
    m = Popularity().fit(df)
    ids, scores = m.recommend([1, 4], k=4, exclude_seen=False)
    np.testing.assert_array_equal(ids, [[40, 10, 20, 30], [40, 10, 20, 30]])
    np.testing.assert_array_equal(scores[0], [3, 2, 2, 2])
    ids, _ = m.recommend(4, k=3)  # user 4 saw 30
    np.testing.assert_array_equal(ids, [40, 10, 20])
    ids, _ = m.recommend(history=[40, 10], k=2)
    np.testing.assert_array_equal(ids, [20, 30])


def test_unseen_catalogue_items_score_zero():
    X = Interactions.from_arrays([1, 2], ["b", "b"], item_vocab=IdVocab(["a", "b", "c"]))
    m = Popularity().fit(X)
    np.testing.assert_array_equal(m.item_scores_, [0, 2, 0])
    ids, scores = m.recommend(1, k=3)
    np.testing.assert_array_equal(ids, ["a", "c", None])
    np.testing.assert_array_equal(scores[:2], [0, 0])


def test_score_and_params(tmp_path):
    df = pd.DataFrame({"user": [1, 2, 2], "item": [7, 7, 8]})
    m = Popularity().fit(df)
    np.testing.assert_array_equal(m.score([1, 2], [7, 8]), [2, 1])
    assert m.get_params() == {}
    assert repr(m) == "Popularity()"
    m.save(tmp_path / "p")
    np.testing.assert_array_equal(Popularity.load(tmp_path / "p").item_scores_, m.item_scores_)


def test_similar_items_not_supported():
    m = Popularity().fit(pd.DataFrame({"user": [1], "item": [2]}))
    with pytest.raises(NotImplementedError):
        m.similar_items([2])
