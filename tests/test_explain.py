"""Recommender.explain and the deletion test (maasrec.explain)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maasrec.data import datasets
from maasrec.exceptions import DataError, NotFittedError, UnknownIdError
from maasrec.explain import Explanation, NotExplainableError, deletion_test
from maasrec.models import ALS, BPRMF, EASE, BiasedMF, ItemKNN, Popularity, PureSVD


@pytest.fixture(scope="module")
def data():
    return datasets.make_synthetic(n_users=300, n_items=120, density=0.08, n_factors=4,
                                   seed=3, with_text=True).interactions


def _factories():
    return {
        "EASE": lambda: EASE(l2=50.0),
        "ItemKNN": lambda: ItemKNN(n_neighbors=20),
        "PureSVD": lambda: PureSVD(factors=8, random_state=0),
        "ALS": lambda: ALS(factors=8, iterations=5, random_state=0, device="cpu"),
    }


@pytest.fixture(scope="module")
def fitted(data):
    return {name: make().fit(data) for name, make in _factories().items()}


def _user_and_top(model, data, r=0):
    """The r-th most active user (at least 10 items here) and their top-1 item."""
    lengths = np.diff(data.to_csr().indptr)
    user = data.user_vocab.ids[np.argsort(-lengths, kind="stable")[r]]
    ids, _ = model.recommend(user, k=1)
    return user, ids[0]


@pytest.mark.parametrize("name", ["EASE", "ItemKNN", "PureSVD", "ALS"])
def test_exact_contributions_sum_to_the_score(fitted, data, name):
    model = fitted[name]
    hist = list(data.item_vocab.ids[model.seen_[5].indices])
    ids, scores = model.recommend(history=hist, k=3)
    for item, score in zip(ids, scores):
        e = model.explain(history=hist, item=item, n=len(hist))
        assert e.method == "exact" and e.baseline == 0.0
        assert e.n_history == len(hist) == len(e.contributions)
        total = sum(c.weight for c in e.contributions)
        np.testing.assert_allclose(total, e.score, rtol=1e-6, atol=1e-9)
        # the decomposed score is the model's own score of that history
        np.testing.assert_allclose(e.score, score, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["EASE", "ItemKNN", "PureSVD"])
def test_known_user_matches_recommend(fitted, data, name):
    model = fitted[name]
    user, item = _user_and_top(model, data, 7)
    e = model.explain(user, item, n=10)
    np.testing.assert_allclose(e.score, model.score([user], [item])[0], rtol=1e-5, atol=1e-6)
    assert e.user == user and e.item == item and e.model == name


def test_contributions_sorted_by_magnitude_and_truncated(fitted, data):
    model = fitted["EASE"]
    user, item = _user_and_top(model, data, 2)
    full = model.explain(user, item, n=1000)
    mags = [abs(c.weight) for c in full.contributions]
    assert mags == sorted(mags, reverse=True)
    top = model.explain(user, item, n=3)
    assert len(top.contributions) == 3
    assert [c.item for c in top.contributions] == [c.item for c in full.contributions[:3]]
    # history items of the user only
    seen = set(data.item_vocab.ids[model.seen_[model.user_vocab_.index([user])[0]].indices])
    assert {c.item for c in full.contributions} <= seen


def test_reason_with_and_without_titles(fitted, data):
    model = fitted["EASE"]
    user, item = _user_and_top(model, data, 4)
    plain = model.explain(user, item, n=5)
    support = [c for c in plain.contributions if c.weight > 0][:2]
    assert len(support) == 2
    assert plain.reason == f"Because you watched item {support[0].item} and item {support[1].item}"
    assert all(c.title is None for c in plain.contributions)
    titles = {i: f"Film {i}" for i in data.item_vocab.ids}
    named = model.explain(user, item, n=5, item_titles=titles, verb="liked")
    assert named.reason == f"Because you liked Film {support[0].item} and Film {support[1].item}"
    assert [c.title for c in named.contributions] == [f"Film {c.item}" for c in plain.contributions]


def test_titles_from_item_features_and_a_series():
    ds = datasets.load_movielens()  # embedded latest-small: titles and text
    X = ds.interactions
    keep = X.to_csr().getnnz(axis=0) >= 40  # a small catalogue: EASE stays quick
    items = set(X.item_vocab.ids[keep].tolist())
    df = X.to_pandas()
    df = df[df["item"].isin(items)]
    model = EASE(l2=100.0).fit(df[["user", "item"]])
    user = model.user_vocab_.ids[0]
    ids, _ = model.recommend(user, k=1)
    by_series = model.explain(user, ids[0], item_titles=ds.item_titles)
    by_text = model.explain(user, ids[0], item_titles=ds.item_features)
    first = by_series.contributions[0]
    assert first.title == ds.item_titles[first.item]
    assert by_text.contributions[0].title.startswith(first.title)
    assert first.title in by_series.reason and by_series.reason.startswith("Because you watched ")


def test_history_for_a_new_user_and_to_dict(fitted, data):
    model = fitted["ItemKNN"]
    hist = [data.item_vocab.ids[i] for i in (1, 5, 9, 17)]
    ids, _ = model.recommend(history=hist, k=1)
    e = model.explain(history=hist, item=ids[0], n=2)
    assert isinstance(e, Explanation) and e.user is None and len(e.contributions) <= 2
    d = json.loads(json.dumps(e.to_dict()))
    assert d["item"] == e.item and d["method"] == "exact" and d["modalities"] == {}
    assert [c["item"] for c in d["contributions"]] == [c.item for c in e.contributions]
    with pytest.raises(AttributeError):
        e.score = 0.0  # frozen


def test_empty_history_explains_nothing(fitted, data):
    e = fitted["EASE"].explain(history=[], item=data.item_vocab.ids[0])
    assert e.contributions == () and e.score == 0.0
    assert e.reason.startswith("No history")


def test_bad_inputs(fitted, data):
    model = fitted["EASE"]
    user, item = _user_and_top(model, data)
    with pytest.raises(UnknownIdError, match="nope"):
        model.explain("nope", item)
    with pytest.raises(UnknownIdError):
        model.explain(user, -12345)
    with pytest.raises(UnknownIdError):
        model.explain(history=[-999], item=item)
    with pytest.raises(DataError, match="exactly one"):
        model.explain(item=item)
    with pytest.raises(DataError, match="exactly one"):
        model.explain(user, item, history=[item])
    seen = data.item_vocab.ids[model.seen_[model.user_vocab_.index([user])[0]].indices[0]]
    with pytest.raises(DataError, match="already in"):
        model.explain(user, seen)
    with pytest.raises(DataError, match="already in"):
        model.explain(history=[seen], item=seen)
    with pytest.raises(DataError, match="n"):
        model.explain(user, item, n=0)
    with pytest.raises(DataError, match="item="):
        model.explain(user, [item])
    with pytest.raises(DataError, match="item_titles"):
        model.explain(user, item, item_titles=["a", "b"])


def test_unfitted_raises():
    with pytest.raises(NotFittedError):
        EASE().explain(1, 2)


def test_popularity_says_it_has_no_history_contributions(data):
    model = Popularity().fit(data)
    user, item = _user_and_top(model, data)
    e = model.explain(user, item)
    assert e.method == "popularity" and e.contributions == ()
    assert e.score == e.baseline == float(model.item_scores_[model.item_vocab_.index([item])[0]])
    assert e.reason == f"Popular with {e.score:g} users"


def test_bprmf_is_an_approximation_for_known_users_only(data):
    model = BPRMF(factors=8, epochs=3, random_state=0).fit(data)
    user, item = _user_and_top(model, data)
    e = model.explain(user, item, n=4)
    assert e.method == "approximation" and e.baseline is None
    np.testing.assert_allclose(e.score, model.score([user], [item])[0], rtol=1e-5)
    assert all(-1.0 - 1e-9 <= c.weight <= 1.0 + 1e-9 for c in e.contributions)
    with pytest.raises(NotExplainableError, match="BPRMF"):
        model.explain(history=[item], item=next(i for i in data.item_vocab.ids if i != item))


def test_a_model_that_cannot_explain_names_its_class(data):
    rated = data.to_pandas().assign(rating=4.0)
    model = BiasedMF(factors=4, epochs=1, random_state=0).fit(rated)
    user = data.user_vocab.ids[0]
    seen = set(model.seen_[0].indices.tolist())
    item = model.item_vocab_.ids[next(i for i in range(model.n_items_) if i not in seen)]
    with pytest.raises(NotExplainableError, match="BiasedMF"):
        model.explain(user, item)


def test_deletion_top_beats_random_for_ease(fitted, data):
    model = fitted["EASE"]
    res = deletion_test(model, n_users=40, k_remove=3, random_state=0)
    assert res.n_users == 40 and res.model == "EASE"
    assert res.score_drop_top > res.score_drop_random > -1
    assert res.rank_drop_top > res.rank_drop_random >= 0
    assert res.rank_ratio == pytest.approx(res.rank_drop_top / res.rank_drop_random)
    assert res.top_wins > 0.5
    assert 0 < res.rank_ratio_se < res.rank_ratio and 0 < res.score_ratio_se
    again = deletion_test(model, n_users=40, k_remove=3, random_state=0)
    assert again == res  # seeded
    json.dumps(res.to_dict())


def test_deletion_test_on_other_data_and_bad_inputs(fitted, data):
    model = fitted["ItemKNN"]
    res = deletion_test(model, data, n_users=10, random_state=1)
    assert res.n_users == 10
    with pytest.raises(DataError, match="min_history"):
        deletion_test(model, n_users=5, min_history=10**6)
    with pytest.raises(DataError, match="k_remove"):
        deletion_test(model, k_remove=0)
    bpr = BPRMF(factors=4, epochs=1, random_state=0).fit(data)
    with pytest.raises(NotExplainableError, match="BPRMF"):
        deletion_test(bpr, n_users=5)


def test_ratio_standard_error_matches_a_bootstrap():
    """The delta-method SE of mean(top) / mean(random) over paired users agrees with a
    seeded bootstrap of the same users; degenerate samples give nan."""
    from maasrec.explain import _ratio_se

    rng = np.random.default_rng(0)
    rand = rng.poisson(0.5, size=400).astype(float)
    top = 2.0 * rand + rng.poisson(1.5, size=400)  # correlated with the random drops
    se = _ratio_se(list(top), list(rand))
    boot = []
    for _ in range(2000):
        i = rng.integers(0, 400, size=400)
        boot.append(top[i].mean() / rand[i].mean())
    assert se == pytest.approx(np.std(boot), rel=0.1)
    assert np.isnan(_ratio_se([1.0, 2.0], [0.0, 0.0]))
    assert np.isnan(_ratio_se([1.0], [1.0]))
