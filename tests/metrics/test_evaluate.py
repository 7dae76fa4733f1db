"""evaluate() / evaluate_lists() with tiny fake models."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import maasrec.metrics.evaluation as ev
from maasrec.data import Interactions
from maasrec.exceptions import ColdStartWarning, DataError, MaasrecWarning, NotFittedError
from maasrec.metrics import (
    METRICS,
    EvaluationResult,
    evaluate,
    evaluate_lists,
    gini_index,
    ndcg_at_k,
    paired_test,
)

RANK = ("precision", "recall", "f1", "ndcg", "map", "mrr", "hit")


# ---------------------------------------------------------------------------
# synthetic data and fake models
# ---------------------------------------------------------------------------
def make_data(n_users=80, n_items=50, density=0.15, seed=0, str_ids=False):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    users = np.array([f"u{x}" for x in u], dtype=object) if str_ids else u * 10 + 1
    items = np.array([f"i{x}" for x in i], dtype=object) if str_ids else i + 1000
    full = Interactions.from_arrays(users, items)
    test_rows = rng.random(full.nnz) < 0.25
    return full, full.subset(~test_rows), full.subset(test_rows)


class FakeModel:
    """A fitted model: fixed score matrix over the full data's vocabularies."""

    def __init__(self, full, scores):
        self.user_vocab_ = full.user_vocab
        self.item_vocab_ = full.item_vocab
        self.scores = np.asarray(scores, dtype=np.float32)
        self.calls = []

    def _score_users(self, idx):
        self.calls.append(len(idx))
        return self.scores[idx]  # fancy indexing: a fresh array


def random_model(full, seed=1):
    rng = np.random.default_rng(seed)
    return FakeModel(full, rng.random((full.n_users, full.n_items)))


def oracle_model(full, test):
    s = np.zeros((full.n_users, full.n_items), dtype=np.float32)
    s[test.user_indices, test.item_indices] = 1.0
    return FakeModel(full, s)


def naive_lists(scores, train, k):
    """Top-k per user by a plain loop: seen items out, ties -> lower index."""
    seen = train.to_csr(binary=True)
    out = []
    for u in range(scores.shape[0]):
        banned = set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]].tolist())
        order = sorted((i for i in range(scores.shape[1]) if i not in banned),
                       key=lambda i: (-scores[u, i], i))
        out.append(order[:k])
    return out


@pytest.fixture(scope="module")
def data():
    return make_data()


# ---------------------------------------------------------------------------
# behaviour
# ---------------------------------------------------------------------------
def test_oracle_is_perfect(data):
    full, train, test = data
    res = evaluate(oracle_model(full, test), train, test, k=(5, 10), n_bootstrap=50)
    for m in ("ndcg@5", "ndcg@10", "map@10", "mrr@5", "hit@10", "auc"):
        assert res[m] == pytest.approx(1.0), m
    n_rel = pd.Series(test.user_indices).value_counts().reindex(
        full.user_vocab.index(res.users)).to_numpy()
    np.testing.assert_allclose(res.per_user["recall@5"], np.minimum(n_rel, 5) / n_rel)
    assert res.protocol == "full" and res.n_users == len(np.unique(test.user_indices))


def test_random_model_recall_is_about_k_over_candidates():
    full, train, test = make_data(n_users=400, n_items=200, density=0.1, seed=3)
    res = evaluate(random_model(full, seed=4), train, test, k=10, n_bootstrap=0)
    n_cand = full.n_items - train.user_counts()[full.user_vocab.index(res.users)]
    expected = np.mean(10 / n_cand)
    assert res["recall@10"] == pytest.approx(expected, rel=0.25)
    assert res["auc"] == pytest.approx(0.5, abs=0.03)


def test_ndcg_matches_naive_loop(data):
    full, train, test = data
    model = random_model(full)
    res = evaluate(model, train, test, k=(3, 10), metrics=["ndcg", "recall"], n_bootstrap=0)
    lists = naive_lists(model.scores, train, 10)
    rel = test.to_csr(binary=True)
    seen = train.to_csr(binary=True)
    uidx = full.user_vocab.index(res.users)
    for k in (3, 10):
        want = []
        for u in uidx:
            relevant = set(rel.indices[rel.indptr[u]:rel.indptr[u + 1]].tolist()) - set(
                seen.indices[seen.indptr[u]:seen.indptr[u + 1]].tolist())
            want.append(ndcg_at_k(lists[u], relevant, k))
        np.testing.assert_allclose(res.per_user[f"ndcg@{k}"], want)


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_chunked_equals_unchunked(data, protocol):
    full, train, test = data
    model = random_model(full)
    kw = dict(k=(1, 5, 10), metrics=[*METRICS, "diversity"], protocol=protocol,
              n_negatives=7, n_bootstrap=100, random_state=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = evaluate(model, train, test, batch_size=1, **kw)
        big = evaluate(model, train, test, batch_size=10_000, **kw)
        mid = evaluate(model, train, test, batch_size=7, **kw)
    for other in (big, mid):
        np.testing.assert_array_equal(one.users, other.users)
        assert list(one) == list(other)
        for m in one:
            assert one[m] == other[m] or (math.isnan(one[m]) and math.isnan(other[m])), m
            assert one.ci[m] == other.ci[m] or math.isnan(one.ci[m][0]), m
        for m, v in one.per_user.items():
            np.testing.assert_array_equal(v, other.per_user[m])


def test_memory_is_bounded_by_batch_size_and_budget(data, monkeypatch):
    full, train, test = data
    model = random_model(full)
    evaluate(model, train, test, batch_size=3, n_bootstrap=0)
    assert max(model.calls) <= 3 and sum(model.calls) == len(np.unique(test.user_indices))
    # the default chunk follows the memory budget: budget // (4 * n_items) users
    model.calls.clear()
    monkeypatch.setattr(ev, "DEFAULT_MEMORY_BUDGET", 4 * full.n_items * 5)
    evaluate(model, train, test, n_bootstrap=0)
    assert max(model.calls) == 5
    model.calls.clear()
    evaluate(model, train, test, protocol="sampled", n_bootstrap=0)
    assert max(model.calls) == 5


def test_seen_items_never_counted(data):
    full, train, test = data
    # a model that loves training items, then test items: seen items are masked,
    # so test items rank first and every ranking metric is perfect
    s = np.zeros((full.n_users, full.n_items), dtype=np.float32)
    s[test.user_indices, test.item_indices] = 1.0
    s[train.user_indices, train.item_indices] = 5.0
    res = evaluate(FakeModel(full, s), train, test, k=5, n_bootstrap=0)
    assert res["ndcg@5"] == pytest.approx(1.0)
    assert res["auc"] == pytest.approx(1.0)
    # a test pair that is also in train is not relevant (it cannot be recommended)
    u, i = train.user_indices[0], train.item_indices[0]
    dup = Interactions(np.r_[test.user_indices, u], np.r_[test.item_indices, i],
                       full.user_vocab, full.item_vocab)
    res2 = evaluate(FakeModel(full, s), train, dup, k=5, n_bootstrap=0)
    assert res2.counts["test_pairs_seen"] == 1
    assert res2["ndcg@5"] == pytest.approx(1.0)


def test_exclude_removes_items_from_ranking_and_relevance(data):
    full, train, test = data
    valid_rows = np.arange(test.nnz) % 3 == 0
    valid, rest = test.subset(valid_rows), test.subset(~valid_rows)
    s = np.zeros((full.n_users, full.n_items), dtype=np.float32)
    s[rest.user_indices, rest.item_indices] = 1.0
    s[valid.user_indices, valid.item_indices] = 9.0  # would beat the test items
    model = FakeModel(full, s)
    assert evaluate(model, train, rest, k=5, n_bootstrap=0)["ndcg@5"] < 1.0
    res = evaluate(model, train, rest, k=5, exclude=valid, n_bootstrap=0)
    assert res["ndcg@5"] == pytest.approx(1.0)
    res = evaluate(model, train, test, k=5, exclude=[valid], n_bootstrap=0)
    assert res.counts["test_pairs_seen"] == valid.nnz


def test_ties_broken_by_lower_item_index(data):
    full, train, test = data
    model = FakeModel(full, np.zeros((full.n_users, full.n_items)))
    res = evaluate(model, train, test, k=(3, 10), metrics=["ndcg", "auc"], n_bootstrap=0)
    lists = naive_lists(model.scores, train, 10)
    ids = [full.item_vocab.ids_of(lst) for lst in lists]
    uidx = full.user_vocab.index(res.users)
    ref = evaluate_lists([ids[u] for u in uidx], res.users, test, train=train, k=(3, 10),
                         metrics=["ndcg"], n_items=full.n_items, n_bootstrap=0)
    np.testing.assert_allclose(res.per_user["ndcg@10"], ref.per_user["ndcg@10"])
    np.testing.assert_allclose(res.per_user["auc"], 0.5)  # every pair ties


def test_sampled_protocol(data):
    full, train, test = data
    model = random_model(full)
    a = evaluate(model, train, test, protocol="sampled", n_negatives=10, random_state=5,
                 n_bootstrap=20)
    b = evaluate(model, train, test, protocol="sampled", n_negatives=10, random_state=5,
                 n_bootstrap=20)
    c = evaluate(model, train, test, protocol="sampled", n_negatives=10, random_state=6,
                 n_bootstrap=20)
    for m in a.per_user:
        np.testing.assert_array_equal(a.per_user[m], b.per_user[m])
    assert any(not np.array_equal(a.per_user[m], c.per_user[m]) for m in a.per_user)
    assert a.protocol == "sampled" and a.n_negatives == 10
    assert "SAMPLED" in repr(a) and a.to_dict()["protocol"] == "sampled"
    assert "coverage@10" not in a  # beyond-accuracy metrics are not defaults when sampled
    # the oracle is perfect on sampled candidates too
    o = evaluate(oracle_model(full, test), train, test, protocol="sampled", n_negatives=5,
                 n_bootstrap=0)
    assert o["ndcg@10"] == pytest.approx(1.0) and o["auc"] == pytest.approx(1.0)
    # more negatives than eligible items: all eligible items are used (a full ranking)
    f = evaluate(model, train, test, metrics=["ndcg", "auc"], n_bootstrap=0)
    s = evaluate(model, train, test, metrics=["ndcg", "auc"], protocol="sampled",
                 n_negatives=10_000, n_bootstrap=0)
    for m in f.per_user:
        np.testing.assert_allclose(f.per_user[m], s.per_user[m])


def test_bootstrap_ci_contains_mean_and_is_seeded(data):
    full, train, test = data
    model = random_model(full)
    res = evaluate(model, train, test, k=(5, 10), metrics=[*METRICS, "diversity"],
                   n_bootstrap=200, random_state=3)
    for m in res:
        lo, hi = res.ci[m]
        if m.split("@")[0] in ("coverage", "gini"):
            assert math.isnan(lo) and math.isnan(hi)
        else:
            assert lo <= res[m] <= hi, m
            assert lo < hi, m
    again = evaluate(model, train, test, k=(5, 10), metrics=[*METRICS, "diversity"],
                     n_bootstrap=200, random_state=3)
    np.testing.assert_equal(again.ci, res.ci)
    none = evaluate(model, train, test, k=5, n_bootstrap=0)
    assert all(math.isnan(lo) for lo, _ in none.ci.values())


def test_beyond_accuracy_through_evaluate(data):
    full, train, test = data
    model = random_model(full)
    res = evaluate(model, train, test, k=5, metrics=["coverage", "gini", "novelty", "diversity"],
                   n_bootstrap=0)
    lists = naive_lists(model.scores, train, 5)
    uidx = full.user_vocab.index(res.users)
    top = np.array([lists[u] for u in uidx])
    assert res["coverage@5"] == pytest.approx(len(np.unique(top)) / full.n_items)
    assert res["gini@5"] == pytest.approx(gini_index(top, full.n_items))
    counts = np.bincount(train.item_indices, minlength=full.n_items)
    n_train_users = len(np.unique(train.user_indices))
    info = -np.log2(np.maximum(counts, 1) / n_train_users)
    np.testing.assert_allclose(res.per_user["novelty@5"], info[top].mean(axis=1))
    # co-occurrence diversity by hand
    x = train.to_csr(binary=True).toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    want = []
    for row in top:
        d = [1 - (x[:, a] @ x[:, b] / (norms[a] * norms[b]) if norms[a] and norms[b] else 0)
             for j, a in enumerate(row) for b in row[j + 1:]]
        want.append(np.mean(d))
    np.testing.assert_allclose(res.per_user["diversity@5"], want)
    # explicit dense vectors, by position or by raw id
    vec = np.random.default_rng(0).standard_normal((full.n_items, 4))
    r1 = evaluate(model, train, test, k=5, metrics=["diversity"], item_vectors=vec,
                  n_bootstrap=0)
    frame = pd.DataFrame(vec, index=full.item_vocab.ids)
    r2 = evaluate(model, train, test, k=5, metrics=["diversity"],
                  item_vectors=frame.iloc[::-1], n_bootstrap=0)
    np.testing.assert_allclose(r1.per_user["diversity@5"], r2.per_user["diversity@5"])
    with pytest.raises(DataError, match="one row per item"):
        evaluate(model, train, test, k=5, metrics=["diversity"], item_vectors=vec[:3])


# ---------------------------------------------------------------------------
# evaluate_lists
# ---------------------------------------------------------------------------
def test_evaluate_lists_equals_evaluate():
    full, train, test = make_data(str_ids=True, seed=2)
    model = random_model(full, seed=9)
    metrics = ["precision", "recall", "f1", "ndcg", "map", "mrr", "hit", "coverage",
               "novelty", "diversity", "gini"]
    res = evaluate(model, train, test, k=(3, 8), metrics=metrics, n_bootstrap=100)
    lists = naive_lists(model.scores, train, 8)
    uidx = full.user_vocab.index(res.users)
    recs = [list(full.item_vocab.ids_of(lists[u])) for u in uidx]
    other = evaluate_lists(recs, res.users, test, train=train, k=(3, 8), metrics=metrics,
                           n_items=full.n_items, n_bootstrap=100)
    assert other.protocol == "lists"
    np.testing.assert_array_equal(other.users, res.users)
    for m in res:
        assert other[m] == pytest.approx(res[m]), m
    for m, v in res.per_user.items():
        np.testing.assert_allclose(other.per_user[m], v, err_msg=m)
    # frames in, (ids, scores) with -inf padding, longer lists truncated
    ids = np.full((len(uidx), 10), "", dtype=object)
    scores = np.full((len(uidx), 10), -np.inf)
    for r, rec in enumerate(recs):
        ids[r, :8] = rec
        scores[r, :8] = np.arange(8, 0, -1)
    third = evaluate_lists((ids, scores), list(res.users), test.to_pandas(),
                           train=train.to_pandas(), k=(3, 8), metrics=metrics,
                           n_items=full.n_items, n_bootstrap=0)
    for m, v in res.per_user.items():
        np.testing.assert_allclose(third.per_user[m], v, err_msg=m)


def test_evaluate_lists_counts_padding_and_warnings():
    test = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "c", "d"]})
    with pytest.warns(MaasrecWarning, match="no recommendation list"):
        res = evaluate_lists([["a", None, "a", "x"], ["y", "c"]], [1, 2], test, k=2,
                             metrics=["hit", "recall", "precision", "coverage"],
                             n_bootstrap=0)
    np.testing.assert_allclose(res.per_user["recall@2"], [0.5, 1.0])
    np.testing.assert_allclose(res.per_user["precision@2"], [0.5, 0.5])
    assert res.counts["test_users_without_list"] == 1
    assert res["coverage@2"] == pytest.approx(3 / 6)  # a, c, y of {a, b, c, d, x, y}
    with pytest.warns(MaasrecWarning, match="id types"):
        evaluate_lists([[10, 11]], [1], test[test.user == 1], k=2, metrics=["hit"],
                       n_bootstrap=0)
    with pytest.raises(DataError, match="auc"):
        evaluate_lists([["a"]], [1], test, metrics=["auc"])
    with pytest.raises(DataError, match="novelty needs train"):
        evaluate_lists([["a"]], [1], test, metrics=["novelty"])
    with pytest.raises(DataError, match="lists but users"):
        evaluate_lists([["a"], ["b"]], [1], test)
    with pytest.raises(DataError, match="distinct"):
        evaluate_lists([["a"], ["b"]], [1, 1], test)
    with pytest.raises(DataError, match="smaller than"):
        evaluate_lists([["a", "b"]], [1], test, n_items=1, metrics=["hit"])


# ---------------------------------------------------------------------------
# inputs, errors and warnings
# ---------------------------------------------------------------------------
def test_frames_and_cold_start(data):
    full, train, test = data
    model = random_model(full)
    base = evaluate(model, train, test, k=5, n_bootstrap=0)
    df = test.to_pandas()
    cold = pd.concat([df, pd.DataFrame({"user": [999_999, df.user[0]],
                                        "item": [df.item[0], 777_777]})])
    with pytest.warns(ColdStartWarning, match="1 test row"):
        res = evaluate(model, train.to_pandas(), cold, k=5, n_bootstrap=0)
    assert res.counts["test_rows_unknown_user"] == 1
    assert res.counts["test_rows_unknown_item"] == 1
    for m in base.per_user:
        np.testing.assert_allclose(res.per_user[m], base.per_user[m])
    with pytest.raises(DataError, match="no test row"):
        with pytest.warns(ColdStartWarning):
            evaluate(model, train, pd.DataFrame({"user": [-5], "item": [-6]}))


def test_warnings_point_at_the_caller(data):
    """Every warning of evaluate/evaluate_lists names the caller's line (stacklevel)."""
    full, train, test = data
    model = random_model(full)
    cold = pd.concat([test.to_pandas(), pd.DataFrame({"user": [999_999], "item": [777_777]})])
    lists = pd.DataFrame({"user": [1, 2], "item": ["a", "b"]})
    calls = [
        (ColdStartWarning, lambda: evaluate(model, train, cold, k=5, n_bootstrap=0)),
        (ColdStartWarning, lambda: evaluate(model, train, test, k=5, n_bootstrap=0,
                                            users=[full.user_vocab.ids[0], "nobody"])),
        (MaasrecWarning, lambda: evaluate_lists([["a"]], [1], lists, k=1, metrics=["hit"],
                                                n_bootstrap=0)),
        (MaasrecWarning, lambda: evaluate_lists([[10]], [1], lists, k=1, metrics=["hit"],
                                                n_bootstrap=0)),
    ]
    for category, call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        mine = [w for w in caught if issubclass(w.category, category)]
        assert mine, category
        for w in mine:
            assert w.filename == __file__, (str(w.message), w.filename)


def test_users_subset(data):
    full, train, test = data
    model = random_model(full)
    allres = evaluate(model, train, test, k=5, n_bootstrap=0)
    pick = [*list(allres.users[::3]), full.user_vocab.ids[0]]
    with pytest.warns(ColdStartWarning, match="requested users"):
        res = evaluate(model, train, test, k=5, users=[*pick, "nobody"], n_bootstrap=0)
    assert set(res.users) <= set(pick)
    assert res.counts["users_requested_unknown"] == 1
    keep = np.isin(allres.users, res.users)
    np.testing.assert_allclose(res.per_user["ndcg@5"], allres.per_user["ndcg@5"][keep])


def test_errors(data):
    full, train, test = data
    model = random_model(full)
    with pytest.raises(DataError, match="k must be a positive integer"):
        evaluate(model, train, test, k=0)
    with pytest.raises(DataError, match="k must be a positive integer"):
        evaluate(model, train, test, k=[10, "20"])
    with pytest.raises(DataError, match=r"unknown metric 'ndgc'.*valid names"):
        evaluate(model, train, test, metrics=["ndgc"])
    with pytest.raises(DataError, match="no cut-off"):
        evaluate(model, train, test, metrics=["auc@10"])
    with pytest.raises(DataError, match="protocol"):
        evaluate(model, train, test, protocol="loo")
    with pytest.raises(DataError, match="n_negatives"):
        evaluate(model, train, test, protocol="sampled", n_negatives=0)
    with pytest.raises(DataError, match="batch_size"):
        evaluate(model, train, test, batch_size=0)
    with pytest.raises(DataError, match="test"):
        evaluate(model, train, pd.DataFrame({"user": [], "item": []}))
    with pytest.raises(NotFittedError, match="not fitted"):
        evaluate(object(), train, test)

    class Bad(FakeModel):
        def _score_users(self, idx):
            out = super()._score_users(idx)
            out[0, 0] = np.nan
            return out

    with pytest.raises(DataError, match="NaN/inf"):
        evaluate(Bad(full, model.scores), train, test)

    class Wrong(FakeModel):
        def _score_users(self, idx):
            return super()._score_users(idx)[:, :3]

    with pytest.raises(DataError, match="shape"):
        evaluate(Wrong(full, model.scores), train, test)


def test_model_arrays_are_left_untouched(data):
    full, train, test = data
    scores = np.random.default_rng(0).random((full.n_users, full.n_items)).astype(np.float32)

    class Cached(FakeModel):  # returns its own array (a view), not a copy
        def _score_users(self, idx):
            return self.scores[idx[0]:idx[-1] + 1] if len(idx) == 1 else self.scores[idx]

    class ReadOnly(FakeModel):  # read-only float64 broadcast
        def _score_users(self, idx):
            return np.broadcast_to(self.scores[0].astype(np.float64), (len(idx), full.n_items))

    m = Cached(full, scores.copy())
    evaluate(m, train, test, batch_size=1, n_bootstrap=0)
    np.testing.assert_array_equal(m.scores, scores)
    res = evaluate(ReadOnly(full, scores), train, test, k=5, n_bootstrap=0)
    assert 0 <= res["ndcg@5"] <= 1


def test_result_api(data):
    full, train, test = data
    res = evaluate(random_model(full), train, test, k=(5, 10), n_bootstrap=30)
    assert isinstance(res, EvaluationResult)
    assert list(res) == [
        "ndcg@5", "ndcg@10", "recall@5", "recall@10", "precision@5", "precision@10", "map@5",
        "map@10", "mrr@5", "mrr@10", "hit@5", "hit@10", "auc", "coverage@5", "coverage@10",
        "novelty@5", "novelty@10"]
    assert len(res) == 17 and isinstance(res["auc"], float)
    with pytest.raises(KeyError, match="holds"):
        res["ndcg@3"]
    frame = res.to_frame()
    assert list(frame.columns) == ["value", "ci_low", "ci_high"]
    assert frame.loc["ndcg@5", "value"] == res["ndcg@5"]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["metrics"]["auc"] == pytest.approx(res["auc"]) and d["k"] == [5, 10]
    assert d["ci"]["coverage@5"] == [None, None]
    pu = res.per_user_frame()
    assert len(pu) == res.n_users and "coverage@5" not in pu.columns
    text = repr(res)
    assert "ndcg@5" in text and "full ranking" in text and "95% CI" in text
    assert res.elapsed >= res.scoring_time >= 0 and res.n_items == full.n_items
    # explicit cut-offs and case-insensitive names
    r2 = evaluate(random_model(full), train, test, k=10, metrics=["NDCG@3", "hit"],
                  n_bootstrap=0)
    assert list(r2) == ["ndcg@3", "hit@10"]


def test_paired_test_on_evaluations(data):
    full, train, test = data
    good = evaluate(oracle_model(full, test), train, test, k=5, n_bootstrap=0)
    bad = evaluate(random_model(full), train, test, k=5, n_bootstrap=0)
    out = paired_test(good, bad, "ndcg@5", n_bootstrap=200)
    assert out.mean_diff > 0.5 and out.t_pvalue < 1e-6 and out.wilcoxon_pvalue < 1e-6
    assert out.ci[0] <= out.mean_diff <= out.ci[1]
    same = paired_test(bad, bad, "ndcg@5")
    assert same.mean_diff == 0 and same.t_pvalue == 1.0 and same.wilcoxon_pvalue == 1.0
    sampled = evaluate(random_model(full), train, test, k=5, protocol="sampled",
                       n_bootstrap=0)
    with pytest.raises(DataError, match="cannot compare"):
        paired_test(good, sampled, "ndcg@5")
    with pytest.raises(DataError, match="per-user"):
        paired_test(good, bad, "coverage@5")


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6), st.integers(1, 400), st.integers(1, 40),
       st.sampled_from([1, 3, 50, 10**6]), st.sampled_from([0.0, 0.1, 0.95]),
       st.integers(0, 2**32 - 1))
def test_topk_kernel_matches_stable_argsort(b, n, k, hi, p_inf, seed):
    rng = np.random.default_rng(seed)
    S = rng.integers(0, hi + 1, size=(b, n)).astype(np.float32)  # small hi: heavy ties
    S[rng.random((b, n)) < p_inf] = -np.inf
    got = ev._topk_rows(S, k)
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    want = np.where(np.isneginf(np.take_along_axis(S, order, axis=1)), -1, order)
    # k is capped at the catalogue (a k beyond it costs what k = n costs), so the kernel
    # returns min(k, n) columns; -1 only where a row runs out of finite scores
    assert got.shape == (b, min(k, n))
    np.testing.assert_array_equal(got, want)


def test_auc_kernel_block_boundaries(monkeypatch):
    import maasrec.metrics.ranking as rk
    from maasrec.metrics import auc_from_scores

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 6, size=(9, 40)).astype(float)
    pos = rng.random((9, 40)) < np.linspace(0.02, 0.6, 9)[:, None]  # few and many positives
    cand = rng.random((9, 40)) < 0.9
    want = auc_from_scores(scores, pos, candidates=cand)
    for block, thr in ((1, 10), (45, 10), (100, 0), (10**6, 100)):
        monkeypatch.setattr(rk, "_BLOCK_ELEMENTS", block)
        monkeypatch.setattr(rk, "_SORT_THRESHOLD", thr)
        np.testing.assert_allclose(auc_from_scores(scores, pos, candidates=cand), want)


def test_huge_k_is_cheap(data):
    full, train, test = data
    res = evaluate(random_model(full), train, test, k=10**7, metrics=["precision", "recall"],
                   n_bootstrap=0)
    n_cand = full.n_items - train.user_counts()[full.user_vocab.index(res.users)]
    np.testing.assert_allclose(res.per_user["recall@10000000"], 1.0)
    assert res["precision@10000000"] < 1e-5
    assert np.all(n_cand > 0)


# ---------------------------------------------------------------------------
# the public scoring protocol (issue 22): score_indices / rank_indices
# ---------------------------------------------------------------------------
def _models_for_protocol():
    from maasrec.models import ALS, EASE
    from maasrec.neural import HybridRecommender

    return [EASE(l2=5.0), ALS(factors=4, iterations=2, random_state=0),
            HybridRecommender(dim=8, epochs=1, patience=None, random_state=0, verbose=False)]


@pytest.mark.parametrize("model", _models_for_protocol(), ids=lambda m: type(m).__name__)
def test_evaluate_uses_public_score_indices(model, monkeypatch):
    """evaluate() scores through score_indices and ranks exactly as recommend() does."""
    from maasrec.metrics import evaluate_lists
    from maasrec.testing.checks import tiny_interactions

    data = tiny_interactions()
    rng = np.random.default_rng(0)
    test_mask = rng.random(data.nnz) < 0.3
    train, test = data.subset(~test_mask), data.subset(test_mask)
    model.fit(train)
    calls = []
    public = type(model).score_indices

    def spy(self, user_idx):
        calls.append(len(user_idx))
        return public(self, user_idx)

    monkeypatch.setattr(type(model), "score_indices", spy)
    res = evaluate(model, train, test, k=(3, 5), n_bootstrap=0)
    assert sum(calls) == res.n_users
    users = list(res.users)
    ref = evaluate_lists(model.recommend(users, k=5), users, test, train=train, k=(3, 5),
                         metrics=["ndcg", "recall", "map", "hit"], n_items=model.n_items_,
                         n_bootstrap=0)
    for m in ("ndcg@3", "ndcg@5", "recall@5", "map@5", "hit@3"):
        assert res[m] == pytest.approx(ref[m], abs=1e-12), m


def test_duck_typed_models_public_or_legacy_hook(data):
    """An object with score_indices, or only the older _score_users, evaluates the same."""
    full, train, test = data
    legacy = random_model(full)

    class Public:
        def __init__(self, inner):
            self.user_vocab_, self.item_vocab_ = inner.user_vocab_, inner.item_vocab_
            self.scores = inner.scores

        def score_indices(self, idx):
            return self.scores[idx]

    a = evaluate(legacy, train, test, k=5, n_bootstrap=0)
    b = evaluate(Public(legacy), train, test, k=5, n_bootstrap=0)
    assert a.metrics == b.metrics
    for m in a.metrics:
        np.testing.assert_array_equal(a.per_user.get(m, a[m]), b.per_user.get(m, b[m]))

    class Wrong(Public):
        def score_indices(self, idx):
            return self.scores[idx][:, :3]

    with pytest.raises(DataError, match=r"Wrong\.score_indices returned shape"):
        evaluate(Wrong(legacy), train, test)

    class RanksOnly(Public):
        scores_all_items = False

    with pytest.raises(DataError, match="rank_indices"):
        evaluate(RanksOnly(legacy), train, test)
