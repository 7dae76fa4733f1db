"""Ranking metrics: hand-computed answers, properties, and a naive reference."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maasrec.exceptions import DataError
from maasrec.metrics import (
    auc_from_scores,
    f1_at_k,
    hit_rate_at_k,
    hits_from_lists,
    map_at_k,
    map_from_hits,
    mrr_at_k,
    ndcg_at_k,
    ndcg_from_hits,
    precision_at_k,
    precision_from_hits,
    ranking_metrics_from_hits,
    recall_at_k,
    recall_from_hits,
)

ALL = ("precision", "recall", "f1", "ndcg", "map", "mrr", "hit")


# ---------------------------------------------------------------------------
# a naive, obviously-correct reference (one user at a time, plain Python)
# ---------------------------------------------------------------------------
def naive(ranked, relevant, k):
    seen, hits = set(), []
    for x in list(ranked)[:k]:
        hit = x is not None and x != -1 and x in relevant and x not in seen
        hits.append(1 if hit else 0)
        seen.add(x)
    hits += [0] * (k - len(hits))
    r = len(relevant)
    n_hits = sum(hits)
    prec = n_hits / k
    rec = n_hits / r if r else math.nan
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(min(r, k)))
    ap, run = 0.0, 0
    for j, h in enumerate(hits):
        if h:
            run += 1
            ap += run / (j + 1)
    first = next((j + 1 for j, h in enumerate(hits) if h), None)
    f1 = math.nan if not r else (0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    return {
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "ndcg": dcg / idcg if r else math.nan,
        "map": ap / min(r, k) if r else math.nan,
        "mrr": 1 / first if first else 0.0,
        "hit": 1.0 if n_hits else 0.0,
    }


# ---------------------------------------------------------------------------
# hand-computed examples
# ---------------------------------------------------------------------------
def test_brief_example_relevant_1_3_ranked_3_2_1():
    ranked, relevant = [3, 2, 1], {1, 3}
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(
        (1 / math.log2(2) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert precision_at_k(ranked, relevant, 3) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1.0)
    assert f1_at_k(ranked, relevant, 3) == pytest.approx(0.8)
    assert map_at_k(ranked, relevant, 3) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert mrr_at_k(ranked, relevant, 3) == 1.0
    assert hit_rate_at_k(ranked, relevant, 3) == 1.0
    # k = 2 sees [3, 2]
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert precision_at_k(ranked, relevant, 2) == pytest.approx(0.5)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(0.5)
    assert map_at_k(ranked, relevant, 2) == pytest.approx(1 / 2)  # precision@1 / min(2, 2)


def test_late_single_hit():
    ranked, relevant = [1, 2, 5, 7], {5}
    assert mrr_at_k(ranked, relevant, 4) == pytest.approx(1 / 3)
    assert mrr_at_k(ranked, relevant, 2) == 0.0
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx(1 / math.log2(4))
    assert map_at_k(ranked, relevant, 4) == pytest.approx(1 / 3)
    assert hit_rate_at_k(ranked, relevant, 2) == 0.0


def test_more_relevant_than_k():
    # R = 5 > k = 3: recall divides by R, IDCG and MAP by min(R, k) = 3
    ranked, relevant = [1, 9, 2], {1, 2, 3, 4, 5}
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(2 / 5)
    assert map_at_k(ranked, relevant, 3) == pytest.approx((1 + 2 / 3) / 3)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4)))


def test_padding_duplicates_and_short_lists():
    relevant = {1, 3}
    # None / -1 are empty slots, the repeated 3 counts once
    assert precision_at_k([3, None, 3, -1, 1], relevant, 5) == pytest.approx(2 / 5)
    assert ndcg_at_k([3, None, 3, -1, 1], relevant, 5) == pytest.approx(
        (1 + 1 / math.log2(6)) / (1 + 1 / math.log2(3)))
    # a list shorter than k: precision still divides by k
    assert precision_at_k([3], relevant, 10) == pytest.approx(0.1)
    assert recall_at_k([3], relevant, 10) == pytest.approx(0.5)
    # string ids, "" is padding
    assert hit_rate_at_k(["", "b"], {"b"}, 2) == 1.0
    assert mrr_at_k(["", "b"], {"b"}, 2) == pytest.approx(0.5)


def test_empty_relevant_is_nan_where_undefined():
    assert math.isnan(recall_at_k([1, 2], set(), 2))
    assert math.isnan(ndcg_at_k([1, 2], set(), 2))
    assert math.isnan(map_at_k([1, 2], set(), 2))
    assert precision_at_k([1, 2], set(), 2) == 0.0
    assert mrr_at_k([1, 2], set(), 2) == 0.0


def test_many_users_returns_array():
    recs = [[3, 2, 1], ["a", "b"], []]
    rel = [{1, 3}, {"b"}, {7}]
    out = ndcg_at_k(recs, rel, 3)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert out[0] == pytest.approx(naive([3, 2, 1], {1, 3}, 3)["ndcg"])
    assert out[1] == pytest.approx(naive(["a", "b"], {"b"}, 3)["ndcg"])
    assert out[2] == 0.0
    arr = np.array([[3, 2, 1], [1, 2, 3]])
    np.testing.assert_allclose(precision_at_k(arr, [{1}, {1, 2}], 2), [0.0, 1.0])


def test_hit_matrix_layer_matches_lists():
    hits, n_rel = hits_from_lists([[3, 2, 1], [5, 1, 2, 7]], [{1, 3}, {5}])
    np.testing.assert_array_equal(hits, [[True, False, True, False], [True] + [False] * 3])
    np.testing.assert_array_equal(n_rel, [2, 1])
    assert ndcg_from_hits(hits, n_rel, 3)[0] == pytest.approx(ndcg_at_k([3, 2, 1], {1, 3}, 3))
    # k beyond the width: missing ranks are misses
    np.testing.assert_allclose(precision_from_hits([[1, 0]], [1], k=4), [0.25])
    out = ranking_metrics_from_hits(hits, n_rel, k=(1, 3))
    assert set(out) == {f"{m}@{k}" for m in ALL for k in (1, 3)}


@pytest.mark.parametrize("bad_k", [0, -1, 1.5, True, "3", None])
def test_bad_k(bad_k):
    with pytest.raises(DataError, match="k must be a positive integer"):
        ndcg_at_k([1], {1}, bad_k)


def test_input_validation():
    with pytest.raises(DataError, match="n_relevant"):
        recall_from_hits([[True, True]], [1])  # two hits, one relevant item
    with pytest.raises(DataError, match="one entry per row"):
        recall_from_hits([[True], [False]], [1])
    with pytest.raises(DataError, match="unknown ranking metric"):
        ranking_metrics_from_hits([[True]], [1], metrics=["ndgc"])
    with pytest.raises(DataError, match="relevant has"):
        ndcg_at_k([[1], [2]], [{1}], 1)
    with pytest.raises(DataError, match="boolean"):
        map_from_hits([[2, 0]], [1])


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------
@st.composite
def hit_matrices(draw):
    n, width = draw(st.integers(1, 12)), draw(st.integers(1, 15))
    hits = draw(hnp.arrays(bool, (n, width)))
    extra = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, 20)))
    return hits, hits.sum(axis=1) + extra


@settings(max_examples=60, deadline=None)
@given(hit_matrices())
def test_properties_bounds_monotonicity_precision(data):
    hits, n_rel = data
    width = hits.shape[1]
    ks = list(range(1, width + 3))
    out = ranking_metrics_from_hits(hits, n_rel, ks)
    for name, vals in out.items():
        ok = ~np.isnan(vals)
        assert np.all((vals[ok] >= -1e-12) & (vals[ok] <= 1 + 1e-12)), name
        assert np.isnan(vals[n_rel > 0]).sum() == 0, name
    for k in ks:
        n_hits = hits[:, :k].sum(axis=1)
        np.testing.assert_allclose(out[f"precision@{k}"] * k, n_hits)
    for a, b in itertools.pairwise(ks):
        pos = n_rel > 0
        assert np.all(out[f"recall@{b}"][pos] >= out[f"recall@{a}"][pos] - 1e-12)
        assert np.all(out[f"hit@{b}"] >= out[f"hit@{a}"])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30))
def test_perfect_ranking_scores_one(n_rel, k):
    width = max(k, n_rel)
    hits = np.zeros((1, width), dtype=bool)
    hits[0, :n_rel] = True
    out = ranking_metrics_from_hits(hits, [n_rel], k)
    for m in ("ndcg", "map", "mrr", "hit"):
        assert out[f"{m}@{k}"][0] == pytest.approx(1.0), m
    if n_rel <= k:
        assert out[f"recall@{k}"][0] == pytest.approx(1.0)
    auc = auc_from_scores(-np.arange(width + 1, dtype=float), np.arange(width + 1) < n_rel)
    assert auc == 1.0


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_lists_match_naive_reference(data):
    n_items = data.draw(st.integers(1, 15))
    ranked = data.draw(st.lists(st.integers(-1, n_items), max_size=12))
    relevant = set(data.draw(st.lists(st.integers(0, n_items), max_size=8)))
    k = data.draw(st.integers(1, 14))
    ref = naive(ranked, relevant, k)
    hits, n_rel = hits_from_lists(ranked, relevant, k)
    got = ranking_metrics_from_hits(hits, n_rel, k)
    for m in ALL:
        v = got[f"{m}@{k}"][0]
        if math.isnan(ref[m]):
            assert math.isnan(v), m
        else:
            assert v == pytest.approx(ref[m]), m


def test_ndcg_cross_check_random_many_users():
    rng = np.random.default_rng(7)
    recs, rels = [], []
    for _ in range(200):
        recs.append(rng.permutation(50)[: rng.integers(1, 25)].tolist())
        rels.append(set(rng.choice(50, size=rng.integers(1, 12), replace=False).tolist()))
    for k in (1, 5, 10, 20):
        fast = ndcg_at_k(recs, rels, k)
        slow = np.array([naive(r, s, k)["ndcg"] for r, s in zip(recs, rels)])
        np.testing.assert_allclose(fast, slow, rtol=1e-12)
        np.testing.assert_allclose(map_at_k(recs, rels, k),
                                   [naive(r, s, k)["map"] for r, s in zip(recs, rels)])


# ---------------------------------------------------------------------------
# AUC
# ---------------------------------------------------------------------------
def naive_auc(scores, pos, cand):
    p = [s for s, a, c in zip(scores, pos, cand) if a and c]
    n = [s for s, a, c in zip(scores, pos, cand) if c and not a]
    if not p or not n:
        return math.nan
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in p for y in n) / (len(p) * len(n))


def test_auc_known_answers():
    # positive 0.5 vs negatives 0.9 (wrong), 0.5 (tie: 1/2), 0.1 (right)
    assert auc_from_scores([0.9, 0.5, 0.5, 0.1], [False, True, False, False]) == 0.5
    assert auc_from_scores([3, 2, 1], [True, False, False]) == 1.0
    assert auc_from_scores([1, 2, 3], [True, False, False]) == 0.0
    # non-candidates are ignored
    assert auc_from_scores([9, 2, 1], [False, True, False], candidates=[False, True, True]) == 1.0
    # -0.0 ties with +0.0
    assert auc_from_scores([0.0, -0.0], [True, False]) == 0.5
    assert math.isnan(auc_from_scores([1.0, 2.0], [True, True]))
    with pytest.raises(DataError, match="finite"):
        auc_from_scores([np.nan, 1.0], [True, False])


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_auc_matches_pairwise_count(data):
    # integer-valued scores force many ties; up to 30 positives exercises both code paths
    n_users = data.draw(st.integers(1, 6))
    n_items = data.draw(st.integers(2, 40))
    shape = (n_users, n_items)
    scores = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, 3))).astype(float)
    pos = data.draw(hnp.arrays(bool, shape))
    cand = data.draw(hnp.arrays(bool, shape))
    got = auc_from_scores(scores, pos, candidates=cand)
    want = [naive_auc(s, p, c) for s, p, c in zip(scores, pos, cand)]
    np.testing.assert_allclose(got, want, equal_nan=True)


def test_auc_many_positives_path():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 20, size=(5, 300)).astype(float)
    pos = rng.random((5, 300)) < 0.3  # ~90 positives per row: the sort-based path
    got = auc_from_scores(scores, pos)
    want = [naive_auc(s, p, np.ones(300, bool)) for s, p in zip(scores, pos)]
    np.testing.assert_allclose(got, want)
