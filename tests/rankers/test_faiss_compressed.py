"""FaissRetriever with compressed indexes: IVF-PQ and 8-bit scalar quantizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maasrec import Recommender
from maasrec.exceptions import DataError, ModelFormatError
from maasrec.models import ALS
from maasrec.rankers import FaissRetriever
from maasrec.testing import tiny_interactions


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, 32))
    v = centers[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 32))
    return v.astype(np.float32)


def _exact(v, q, k):
    return np.argsort(-(q @ v.T), axis=1, kind="stable")[:, :k]


def _recall(a, b):
    return np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)])


@pytest.mark.parametrize("index, k, floor", [("sq8", 10, 0.9), ("ivfpq", 100, 0.9)])
def test_compressed_candidates_hold_the_exact_top_10(vectors, index, k, floor):
    r = FaissRetriever(index, n_threads=1).fit(vectors)
    q = vectors[:50] + 0.1
    idx, scores = r.search(q, k)
    assert idx.shape == (50, k) and (idx >= 0).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert _recall(idx, _exact(vectors, q, 10)) >= floor


def test_sizes_and_shapes(vectors, tmp_path):
    sizes = {}
    for index in ("flat", "sq8", "ivfpq"):
        r = FaissRetriever(index, n_threads=1).fit(vectors)
        r.save(tmp_path / index)
        sizes[index] = (tmp_path / index / "index.faiss").stat().st_size
    n, d = vectors.shape
    assert sizes["sq8"] < sizes["flat"] / 3.9
    r = FaissRetriever("ivfpq", n_threads=1).fit(vectors)
    assert r.pq_shape_ == [8, 8]  # largest divisor of 32 that is <= 32 / 4; 8 bits
    # codes (8 bytes) + ids (8 bytes) per vector, plus the codebooks and centroids
    assert sizes["ivfpq"] < n * 16 + 4 * d * 256 + 4 * d * r.nlist_ + 20_000


@pytest.mark.parametrize("index", ["sq8", "ivfpq"])
def test_save_load_searches_identically(vectors, index, tmp_path):
    r = FaissRetriever(index, n_threads=1, random_state=3).fit(vectors)
    r.save(tmp_path / "r")
    back = FaissRetriever.load(tmp_path / "r")
    a = r.search(vectors[:20], 10)
    b = back.search(vectors[:20], 10)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert back.pq_shape_ == r.pq_shape_ and back.index_type_ == index
    again = FaissRetriever(index, n_threads=1, random_state=3).fit(vectors)
    assert np.array_equal(again.search(vectors[:20], 10)[0], a[0])  # seeded build


def test_pq_parameters_are_checked(vectors):
    with pytest.raises(DataError, match="pq_m=5 must divide the vector dimension 32"):
        FaissRetriever("ivfpq", pq_m=5).fit(vectors)
    with pytest.raises(DataError, match="pq_nbits must be"):
        FaissRetriever("ivfpq", pq_nbits=9).fit(vectors)
    with pytest.raises(DataError, match="pq_nbits=8 needs at least 256 vectors"):
        FaissRetriever("ivfpq", pq_nbits=8).fit(vectors[:100])
    small = FaissRetriever("ivfpq", n_threads=1).fit(vectors[:100])
    assert small.pq_shape_ == [8, 6]  # 2**6 <= 100 training vectors
    with pytest.raises(DataError, match="pq_m must be"):
        FaissRetriever("ivfpq", pq_m=0).fit(vectors)


def test_growing_catalogue_retrains_a_compressed_index(vectors):
    r = FaissRetriever("sq8", n_threads=1).fit(vectors[:1000])
    assert r.sync(vectors[:1500]) == "added"
    assert r.sync(vectors) == "rebuilt" and r.n_trained_ == 3000


def test_model_with_an_ivfpq_retriever_round_trips(tmp_path):
    data = tiny_interactions(n_users=80, n_items=60, per_user=8)
    m = ALS(factors=8, iterations=3, random_state=0).fit(data)
    m.set_retriever(FaissRetriever("ivfpq", n_candidates=30, n_threads=1))
    users = list(m.user_vocab_.ids[:15])
    ids, scores = m.recommend(users, 5)
    exact = m.recommend(users, 5, retriever="exact")
    assert _recall(ids, exact[0]) >= 0.9
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    ids2, scores2 = back.recommend(users, 5)
    assert np.array_equal(ids, ids2) and np.array_equal(scores, scores2)


# -- corrupt files: refused before (or right after) faiss reads them --------------------------
def _saved(vectors, tmp_path, index):
    FaissRetriever(index, n_threads=1).fit(vectors[:500]).save(tmp_path / index)
    return tmp_path / index


def _edit_state(path, **changes):
    meta = json.loads((path / "retriever.json").read_text())
    meta["state"].update(changes)
    (path / "retriever.json").write_text(json.dumps(meta))


def test_truncated_sq8_file_is_refused_by_size(vectors, tmp_path):
    p = _saved(vectors, tmp_path, "sq8")
    data = (p / "index.faiss").read_bytes()
    (p / "index.faiss").write_bytes(data[:-7])
    with pytest.raises(ModelFormatError, match="8-bit scalar-quantizer index of 500 x 32"):
        FaissRetriever.load(p)


def test_sq8_file_with_a_wrong_item_count_is_refused(vectors, tmp_path):
    p = _saved(vectors, tmp_path, "sq8")
    _edit_state(p, n_items=501)
    with pytest.raises(ModelFormatError):
        FaissRetriever.load(p)


@pytest.mark.parametrize("pq, match", [([4, 8], "described as"), (None, "needs state.pq"),
                                       ([4, 9], "state.pq"), (["x", 8], "state.pq")])
def test_ivfpq_description_must_match_the_file(vectors, tmp_path, pq, match):
    p = _saved(vectors, tmp_path, "ivfpq")
    _edit_state(p, pq=pq)
    with pytest.raises(ModelFormatError, match=match):
        FaissRetriever.load(p)


def test_index_type_swapped_under_the_description_is_refused(vectors, tmp_path):
    sq = _saved(vectors, tmp_path, "sq8")
    pq = _saved(vectors, tmp_path, "ivfpq")
    (sq / "index.faiss").write_bytes((pq / "index.faiss").read_bytes())
    with pytest.raises(ModelFormatError, match="starts with b'IwPQ'"):
        FaissRetriever.load(sq)
    _edit_state(pq, pq=None, index="sq8")
    with pytest.raises(ModelFormatError):
        FaissRetriever.load(pq)


def test_ivfpq_list_ids_out_of_range_are_refused(vectors, tmp_path):
    p = _saved(vectors, tmp_path, "ivfpq")
    _edit_state(p, n_items=400)  # the lists hold ids up to 499
    with pytest.raises(ModelFormatError):
        FaissRetriever.load(p)
