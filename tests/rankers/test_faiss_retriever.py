"""FaissRetriever: exact flat search, IVF/HNSW recall, persistence, sync, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.exceptions import DataError, ModelFormatError, NotFittedError
from maasrec.rankers import FaissRetriever
from maasrec.rankers.ann import fingerprint

FAST = settings(max_examples=40, deadline=None)


def clustered(n: int, d: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((32, d)) * 2
    items = centers[rng.integers(0, 32, n)] + rng.standard_normal((n, d))
    queries = centers[rng.integers(0, 32, n_queries)] + rng.standard_normal((n_queries, d))
    return items.astype(np.float32), queries.astype(np.float32)


def exact_topk(q, v, k):
    s = q.astype(np.float64) @ v.astype(np.float64).T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def recall(got, ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, ref)])


@FAST
@given(n=st.integers(1, 60), d=st.integers(1, 6), k=st.integers(1, 70), seed=st.integers(0, 999))
def test_flat_search_equals_exact(n, d, k, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((3, d)).astype(np.float32)
    idx, scores = FaissRetriever("flat").fit(v).search(q, k)
    kk = min(k, n)
    assert idx.shape == scores.shape == (3, kk)  # k is capped at the items indexed
    ref = exact_topk(q, v, kk)
    np.testing.assert_array_equal(idx[:, :kk], ref)
    np.testing.assert_allclose(scores[:, :kk], np.take_along_axis(q @ v.T, ref, 1), rtol=1e-5,
                               atol=1e-5)
    assert (idx[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()


def test_search_orders_ties_by_lower_index():
    v = np.array([[1.0], [2.0], [2.0], [1.0], [2.0]], dtype=np.float32)
    idx, _ = FaissRetriever("flat").fit(v).search(np.ones((1, 1), np.float32), 5)
    np.testing.assert_array_equal(idx, [[1, 2, 4, 0, 3]])


@pytest.mark.parametrize("index, extra", [("ivf", {"nprobe": 8}), ("hnsw", {})])
def test_ann_recall_on_clustered_vectors(index, extra):
    v, q = clustered(4000, 16, 200)
    r = FaissRetriever(index, **extra).fit(v)
    idx, scores = r.search(q, 10)
    assert recall(idx, exact_topk(q, v, 10)) >= 0.9
    assert (np.diff(scores, axis=1) <= 0).all()


def test_cosine_metric_returns_cosines():
    v, q = clustered(500, 8, 20)
    idx, scores = FaissRetriever("flat", metric="cosine").fit(v).search(q, 5)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_array_equal(idx, exact_topk(qn, vn, 5))
    np.testing.assert_allclose(scores, np.take_along_axis(qn @ vn.T, idx, 1), atol=1e-5)
    hnsw = FaissRetriever("hnsw", metric="cosine").fit(v).search(q, 5)[0]
    assert recall(hnsw, idx) >= 0.9


def test_defaults_and_ivf_determinism():
    import faiss

    v, q = clustered(3000, 8, 10)
    a = FaissRetriever("ivf", random_state=3).fit(v)
    b = FaissRetriever("ivf", random_state=3).fit(v)
    assert a.nlist_ == min(round(4 * np.sqrt(3000)), 3000 // 39) == 76
    assert bytes(faiss.serialize_index(a.index_)) == bytes(faiss.serialize_index(b.index_))
    np.testing.assert_array_equal(a.search(q, 10)[0], b.search(q, 10)[0])
    h = FaissRetriever("hnsw", n_threads=1).fit(v)
    assert h.index_.hnsw.efConstruction == 40 and h.index_.hnsw.nb_neighbors(1) == 32
    assert FaissRetriever("ivf").fit(v[:20]).nlist_ == 1  # tiny catalogues still work
    assert repr(FaissRetriever("ivf", nprobe=4)) == "FaissRetriever(index='ivf', nprobe=4)"
    assert FaissRetriever().get_params()["n_candidates"] == 100


def test_save_load_round_trip(tmp_path):
    v, q = clustered(2000, 8, 30)
    for index in ("flat", "ivf", "hnsw"):
        r = FaissRetriever(index, ef_search=64, random_state=1).fit(v)
        r.save(tmp_path / index)
        assert sorted(p.name for p in (tmp_path / index).iterdir()) == ["index.faiss",
                                                                      "retriever.json"]
        back = FaissRetriever.load(tmp_path / index)
        assert back.get_params() == r.get_params()
        assert (back.n_items_, back.dim_, back.nlist_, back.fingerprint_) == (
            r.n_items_, r.dim_, r.nlist_, r.fingerprint_)
        for a, b in zip(r.search(q, 10), back.search(q, 10)):
            np.testing.assert_array_equal(a, b)
    meta_path = tmp_path / "hnsw" / "retriever.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="99"):
        FaissRetriever.load(tmp_path / "hnsw")
    (tmp_path / "flat" / "index.faiss").unlink()
    with pytest.raises(ModelFormatError, match="missing"):
        FaissRetriever.load(tmp_path / "flat")
    with pytest.raises(ModelFormatError, match=r"retriever\.json"):
        FaissRetriever.load(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        r.save(tmp_path / "ivf")


def test_sync_adds_new_items_and_rebuilds_changed_vectors():
    v, q = clustered(1000, 8, 20)
    extra, _ = clustered(200, 8, 1, seed=5)
    for index in ("flat", "hnsw", "ivf"):
        r = FaissRetriever(index, nprobe=32).fit(v)
        assert r.sync(v) == "unchanged"
        grown = np.vstack([v, extra * 3])  # new items that win many queries
        assert r.sync(grown) == "added"
        assert r.n_items_ == 1200 and r.index_.ntotal == 1200
        assert r.fingerprint_ == fingerprint(grown)
        assert recall(r.search(q, 10)[0], exact_topk(q, grown, 10)) >= 0.9
        assert r.sync(grown[:, :4]) == "rebuilt" and r.dim_ == 4
        assert r.sync(grown[:, :4] + 1.0) == "rebuilt"
    ivf = FaissRetriever("ivf").fit(v[:100])
    assert ivf.sync(v) == "rebuilt" and ivf.n_trained_ == 1000  # > 2x: retrain the lists
    assert FaissRetriever("flat").sync(v) == "built"


@pytest.mark.parametrize("kwargs, match", [
    ({"index": "lsh"}, "index must be one of .* got 'lsh'"),
    ({"metric": "l2"}, "metric must be one of .* got 'l2'"),
    ({"n_candidates": 0}, "n_candidates must be >= 1, got 0"),
    ({"hnsw_m": 1}, "hnsw_m"),
    ({"nprobe": -3}, "nprobe must be >= 1, got -3"),
    ({"ef_search": 2.5}, "ef_search must be an integer, got 2.5"),
])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(DataError, match=match):
        FaissRetriever(**kwargs).fit(np.ones((5, 2), np.float32))


def test_bad_inputs_are_named():
    v = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    with pytest.raises(NotFittedError):
        FaissRetriever().search(v, 3)
    r = FaissRetriever("flat").fit(v)
    for k in (0, -2, 1.5, None):
        with pytest.raises(DataError, match="k must be a positive integer"):
            r.search(v[:2], k)
    with pytest.raises(DataError, match="dimension 3, but the index holds 4-d"):
        r.search(np.ones((2, 3)), 5)
    with pytest.raises(DataError, match=r"2-d array \[n, dim\], got shape \(4,\)"):
        r.search(np.ones(4), 5)
    bad = v.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf .*row 7"):
        FaissRetriever().fit(bad)
    with pytest.raises(DataError, match="NaN or inf"):
        r.search(bad[5:9], 2)
    with pytest.raises(DataError, match="empty"):
        FaissRetriever().fit(np.ones((0, 4)))
    with pytest.raises(DataError, match="numeric"):
        FaissRetriever().fit(np.array([["a", "b"]]))
    with pytest.raises(DataError, match="'nope' is not a parameter"):
        r.set_params(nope=1)
    assert r.set_params(n_candidates=7).n_candidates == 7
