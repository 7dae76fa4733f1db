"""retrieve_topk: ANN candidates + exact re-scoring + filters equals exact filtered ranking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.exceptions import DataError
from maasrec.rankers import FaissRetriever, TopK, retrieve_topk

FAST = settings(max_examples=40, deadline=None)


def exact(q, v, k, **filters):
    return TopK(k).rank(q @ v.T, **filters)


@st.composite
def filtered_case(draw):
    """Integer-valued vectors (exact float arithmetic, many ties) and random filters."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n_items = draw(st.integers(1, 80))
    d = draw(st.integers(1, 4))
    n = draw(st.integers(1, 6))
    v = rng.integers(-2, 3, (n_items, d)).astype(np.float32)
    q = rng.integers(-2, 3, (n, d)).astype(np.float32)
    filters = {}
    for name in ("exclude", "allow", "deny"):
        kind = draw(st.sampled_from(["none", "rows"] if name == "exclude"
                                    else ["none", "global", "rows"]))
        density = draw(st.sampled_from([0.05, 0.5, 0.95]))
        mask = rng.random((n, n_items)) < density
        if kind == "rows":
            filters[name] = sp.csr_matrix(mask.astype(np.float32))
        elif kind == "global":
            filters[name] = np.flatnonzero(mask[0])
    k = draw(st.integers(1, n_items + 3))
    n_candidates = draw(st.integers(1, 20))
    return q, v, k, n_candidates, filters


@FAST
@given(filtered_case())
def test_flat_retrieval_equals_exact_ranking_with_filters(case):
    q, v, k, n_candidates, filters = case
    r = FaissRetriever("flat", n_candidates=n_candidates).fit(v)
    idx, val = retrieve_topk(r, q, v, k, **filters)
    ref_idx, ref_val = exact(q, v, k, **filters)
    np.testing.assert_array_equal(idx, ref_idx)  # ties included: the cut is re-checked
    np.testing.assert_array_equal(val, ref_val)


@FAST
@given(filtered_case(), st.sampled_from(["ivf", "hnsw"]))
def test_approximate_indexes_never_break_filters_nor_starve_k(case, index):
    q, v, k, n_candidates, filters = case
    r = FaissRetriever(index, n_candidates=n_candidates).fit(v)
    idx, val = retrieve_topk(r, q, v, k, **filters)
    ref_idx, _ = exact(q, v, k, **filters)
    n_ok = (ref_idx >= 0).sum(axis=1)
    assert ((idx >= 0).sum(axis=1) == n_ok).all(), "padding only when filters leave < k items"
    full = q @ v.T
    for row in range(len(q)):
        got = idx[row][idx[row] >= 0]
        assert len(set(got.tolist())) == len(got)
        np.testing.assert_array_equal(val[row][: len(got)], full[row, got])  # exact scores
        assert (np.diff(val[row][: len(got)]) <= 0).all()
        for name in ("exclude", "deny"):
            f = filters.get(name)
            if f is not None:
                bad = f[row].indices if sp.issparse(f) else f
                assert not set(got.tolist()) & set(bad.tolist())
        a = filters.get("allow")
        if a is not None:
            allowed = a[row].indices if sp.issparse(a) else a
            assert set(got.tolist()) <= set(allowed.tolist())


def test_heavy_exclusions_grow_the_fetch_then_fall_back_to_exact():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5000, 8)).astype(np.float32)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    r = FaissRetriever("hnsw", n_candidates=20).fit(v)
    scores = q @ v.T
    # row 0: its 300 best items are "seen"; row 1: nothing; row 2: all but 5 items seen;
    # row 3: allow-list of 2,000 items (larger than the exact-on-allowed threshold? no:
    # scored exactly on the allowed items)
    seen = np.zeros((4, 5000), dtype=bool)
    seen[0, np.argsort(-scores[0])[:300]] = True
    seen[2, 5:] = True
    exclude = sp.csr_matrix(seen.astype(np.float32))
    idx, _, stats = retrieve_topk(r, q, v, 10, exclude=exclude, return_stats=True)
    ref_idx, _ = exact(q, v, 10, exclude=exclude)
    np.testing.assert_array_equal(idx[2], ref_idx[2])  # exact fallback: 5 items + padding
    assert (idx[2] >= 0).sum() == 5
    assert stats["exact"] >= 1
    for row in (0, 1):
        assert len(set(idx[row]) & set(ref_idx[row])) >= 9
        assert not seen[row, idx[row]].any()
    allow = [np.arange(0, 5000, 2)] * 4
    idx, _, stats = retrieve_topk(r, q, v, 10, allow=sp.csr_matrix(
        (np.ones(4 * 2500), np.concatenate(allow), np.arange(0, 4 * 2500 + 1, 2500)),
        shape=(4, 5000)), return_stats=True)
    assert stats["exact_allowed"] == 4 and (idx % 2 == 0).all()
    np.testing.assert_array_equal(idx, exact(q, v, 10, allow=np.arange(0, 5000, 2))[0])


def test_large_allow_list_scales_the_fetch(monkeypatch):
    import maasrec.rankers.retrieval as retrieval

    monkeypatch.setattr(retrieval, "ALLOW_EXACT_MAX", 10)
    rng = np.random.default_rng(1)
    v = rng.standard_normal((3000, 8)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    r = FaissRetriever("flat", n_candidates=10).fit(v)
    allow = np.arange(0, 3000, 10)  # 10% of the catalogue
    idx, _, stats = retrieve_topk(r, q, v, 10, allow=allow, return_stats=True)
    np.testing.assert_array_equal(idx, exact(q, v, 10, allow=allow)[0])
    assert stats["exact_allowed"] == 0 and stats["searched"] == 5 and stats["exact"] == 0


def test_rows_do_not_depend_on_their_batch():
    rng = np.random.default_rng(2)
    v = rng.standard_normal((2000, 8)).astype(np.float32)
    q = rng.standard_normal((12, 8)).astype(np.float32)
    seen = sp.random(12, 2000, density=0.05, random_state=0, format="csr")
    r = FaissRetriever("hnsw", n_candidates=16).fit(v)
    whole = retrieve_topk(r, q, v, 10, exclude=seen)
    for a in range(0, 12, 5):
        part = retrieve_topk(r, q[a:a + 5], v, 10, exclude=seen[a:a + 5])
        np.testing.assert_array_equal(part[0], whole[0][a:a + 5])
        np.testing.assert_array_equal(part[1], whole[1][a:a + 5])


def test_stale_retriever_and_bad_queries_are_rejected():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((100, 4)).astype(np.float32)
    r = FaissRetriever("flat").fit(v)
    with pytest.raises(DataError, match="sync"):
        retrieve_topk(r, v[:2], v[:50], 5)
    with pytest.raises(DataError, match="sync"):
        retrieve_topk(r, v[:2], v + 1, 5)
    with pytest.raises(DataError, match="dimension 3"):
        retrieve_topk(r, np.ones((2, 3)), v, 5)
    with pytest.raises(DataError, match="k must be a positive integer, got 0"):
        retrieve_topk(r, v[:2], v, 0)
    with pytest.raises(DataError, match="deny contains item index 100"):
        retrieve_topk(r, v[:2], v, 5, deny=[100])
