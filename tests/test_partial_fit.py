"""Recommender.partial_fit on the classical models (maasrec.online)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec.exceptions import DataError, NotFittedError, UnknownIdError
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD

FACTORIES = {
    "EASE": lambda: EASE(l2=10.0),
    "ItemKNN": lambda: ItemKNN(n_neighbors=10),
    "PureSVD": lambda: PureSVD(factors=4, random_state=0),
    "ALS": lambda: ALS(factors=4, iterations=3, random_state=0),
    "BPRMF": lambda: BPRMF(factors=4, epochs=3, random_state=0),
    "Popularity": Popularity,
}


def _frame(seed=0, n_users=40, n_items=30, n=500):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"user": rng.integers(0, n_users, n) + 1000,
                       "item": rng.integers(0, n_items, n) + 1})
    return df.drop_duplicates(["user", "item"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def split():
    df = _frame()
    base, new = df.iloc[:350], df.iloc[350:].copy()
    new = new[new["item"].isin(base["item"])]  # known items only
    new = pd.concat([new, pd.DataFrame({"user": [5000, 5000, 5001], "item": [1, 2, 3]})])
    return base.reset_index(drop=True), new.reset_index(drop=True)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_batching_does_not_change_the_model(name, split):
    base, new = split
    one = FACTORIES[name]().fit(base).partial_fit(new)
    many = FACTORIES[name]().fit(base)
    for part in np.array_split(np.arange(len(new)), 3):
        many.partial_fit(new.iloc[part])
    users = [1000, 1005, 5000, 5001]
    a_ids, a_sc = one.recommend(users, k=5)
    b_ids, b_sc = many.recommend(users, k=5)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_sc, b_sc, rtol=1e-5, atol=1e-6)
    assert one.n_users_ == base["user"].nunique() + 2
    # folded-in events are seen: never recommended again
    for u, it in new[["user", "item"]].itertuples(index=False):
        assert it not in set(one.recommend(u, k=10)[0].tolist())


@pytest.mark.parametrize("name", ["EASE", "ItemKNN", "PureSVD", "ALS"])
def test_known_user_scores_equal_scoring_the_whole_history(name, split):
    base, new = split
    model = FACTORIES[name]().fit(base)
    model.partial_fit(new)
    # ItemKNN and PureSVD keep their item side: the base model scores the history; EASE
    # and ALS update it: the updated model scores the history as it scores the user
    fresh = FACTORIES[name]().fit(base) if name in ("ItemKNN", "PureSVD") else model
    for u in (5000, int(new["user"].iloc[0])):
        hist = pd.concat([base, new]).query("user == @u")["item"].tolist()
        ids, sc = model.recommend(u, k=5)
        ids2, sc2 = fresh.recommend(history=hist, k=5)
        np.testing.assert_array_equal(ids, ids2)
        np.testing.assert_allclose(sc, sc2, rtol=1e-4, atol=1e-5)


def test_als_is_the_exact_user_solve(split):
    base, new = split
    model = FACTORIES["ALS"]().fit(base)
    items_before = model.item_factors_.copy()
    model.partial_fit(new)
    # only the items that got events move; the users are solved against the moved items
    moved = model.item_vocab_.index(new["item"].unique())
    still = np.setdiff1d(np.arange(model.n_items_), moved)
    np.testing.assert_array_equal(model.item_factors_[still], items_before[still])
    assert not np.allclose(model.item_factors_[moved], items_before[moved])
    u = model.user_vocab_.index([5000])
    expect = model.recalculate_users(model.seen_[u])
    np.testing.assert_allclose(model.user_factors_[u], expect, rtol=1e-4, atol=1e-5)


def test_bprmf_fold_in_moves_the_user_towards_new_items(split):
    base, _ = split
    model = FACTORIES["BPRMF"]().fit(base)
    before = model.score([1000], [1])
    model.partial_fit(pd.DataFrame({"user": [1000] * 3, "item": [1, 2, 3]}))
    # item 1 is now seen; the user's factor was re-learned: deterministic and finite
    again = FACTORIES["BPRMF"]().fit(base).partial_fit(
        pd.DataFrame({"user": [1000] * 3, "item": [1, 2, 3]}))
    np.testing.assert_array_equal(model.user_factors_, again.user_factors_)
    assert np.isfinite(model.user_factors_).all()
    assert model.score([1000], [1])[0] != before[0]


def test_popularity_counts_and_new_items(split):
    base, _ = split
    model = Popularity().fit(base)
    model.partial_fit(pd.DataFrame({"user": [1, 2, 3], "item": [999, 999, 1]}))
    full = Popularity().fit(pd.concat([base, pd.DataFrame({"user": [1, 2, 3],
                                                           "item": [999, 999, 1]})]))
    for item in (999, 1, 2):
        assert model.score([1], [item])[0] == full.score([1], [item])[0]


@pytest.mark.parametrize("name", ["EASE", "ItemKNN", "PureSVD", "ALS", "BPRMF"])
def test_new_item_is_refused_and_the_model_unchanged(name, split):
    base, _ = split
    model = FACTORIES[name]().fit(base)
    before = model.recommend([1000], k=5)
    with pytest.raises(UnknownIdError, match=r"12345.*refit"):
        model.partial_fit(pd.DataFrame({"user": [1000, 7777], "item": [1, 12345]}))
    assert 7777 not in model.user_vocab_
    np.testing.assert_array_equal(model.recommend([1000], k=5)[0], before[0])


def test_bad_input():
    with pytest.raises(NotFittedError):
        EASE().partial_fit(_frame())
    model = EASE(l2=10.0).fit(_frame())
    with pytest.raises(DataError):
        model.partial_fit(pd.DataFrame({"user": [], "item": []}))
    import scipy.sparse as sp
    with pytest.raises(DataError, match="raw ids"):
        model.partial_fit(sp.csr_matrix(np.eye(3)))
    with pytest.raises(DataError):
        model.partial_fit(pd.DataFrame({"user": [1000], "item": [1], "rating": [np.nan]}))


def test_repeated_pair_replaces_the_value():
    model = EASE(l2=10.0, implicit=False).fit(_frame().assign(rating=1.0))
    model.partial_fit(pd.DataFrame({"user": [1000], "item": [1], "rating": [4.0]}))
    model.partial_fit(pd.DataFrame({"user": [1000], "item": [1], "rating": [2.0]}))
    u, i = model.user_vocab_.index([1000])[0], model.item_vocab_.index([1])[0]
    assert model.seen_[u, i] == 2.0


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_after_partial_fit(name, split, tmp_path):
    from maasrec.base import Recommender

    base, new = split
    model = FACTORIES[name]().fit(base).partial_fit(new)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    users = [1000, 5000, 5001]
    np.testing.assert_array_equal(loaded.recommend(users, k=5)[0], model.recommend(users, k=5)[0])
