"""Beyond-accuracy metrics: coverage, novelty, intra-list diversity, Gini."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maasrec.exceptions import DataError
from maasrec.metrics import (
    catalog_coverage,
    gini_index,
    intra_list_diversity,
    item_popularity,
    novelty,
)


def test_coverage():
    assert catalog_coverage([[0, 1], [1, 2]], n_items=10) == pytest.approx(0.3)
    assert catalog_coverage([[0, -1], [-1, -1]], n_items=4) == pytest.approx(0.25)
    with pytest.raises(DataError, match="out of range"):
        catalog_coverage([[5]], n_items=3)
    with pytest.raises(DataError, match="n_items"):
        catalog_coverage([[0]], n_items=0)
    with pytest.raises(DataError, match="integer item indices"):
        catalog_coverage([["a"]], n_items=3)


def naive_gini(counts):
    c = np.sort(np.asarray(counts, dtype=float))
    n = len(c)
    if c.sum() == 0:
        return math.nan
    # mean absolute difference form: G = sum_ij |c_i - c_j| / (2 n^2 mean)
    return np.abs(c[:, None] - c[None, :]).sum() / (2 * n * n * c.mean())


def test_gini_known_answers():
    assert gini_index([[0, 1], [0, 1]], n_items=2) == 0.0
    assert gini_index([[0], [0]], n_items=2) == pytest.approx(0.5)
    # 4 items, one takes everything: (n - 1) / n
    assert gini_index([[2], [2], [2]], n_items=4) == pytest.approx(0.75)
    assert math.isnan(gini_index([[-1]], n_items=3))


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 8), st.integers(1, 6)),
                  elements=st.integers(-1, 9)))
def test_gini_matches_mean_absolute_difference(top):
    n_items = 10
    got = gini_index(top, n_items)
    want = naive_gini(np.bincount(top[top >= 0], minlength=n_items))
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want)
        assert 0.0 <= got <= 1.0
    assert 0.0 <= catalog_coverage(top, n_items) <= 1.0


def test_item_popularity_and_novelty():
    # user 0 has items {0, 1}, user 1 has {0}, user 2 has nothing; item 2 is never seen
    train = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float))
    p = item_popularity(train)
    np.testing.assert_allclose(p, [1.0, 0.5, 0.5])  # U = 2 users with rows; max(c, 1) / U
    np.testing.assert_allclose(novelty([[0, 1], [1, -1], [-1, -1]], p), [0.5, 1.0, np.nan])
    with pytest.raises(DataError, match=r"\(0, 1\]"):
        novelty([[0]], [0.0])


def naive_ild(lists, vectors):
    v = np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(v, axis=1)
    out = []
    for row in lists:
        items = [i for i in row if i >= 0]
        if len(items) < 2:
            out.append(math.nan)
            continue
        d = []
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                i, j = items[a], items[b]
                cos = 0.0 if norms[i] == 0 or norms[j] == 0 else v[i] @ v[j] / (norms[i] * norms[j])
                d.append(1.0 - cos)
        out.append(np.mean(d))
    return np.array(out)


def test_diversity_known_answers():
    v = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    # pairs (0,1)=1, (0,2)=0, (1,2)=1 -> 2/3
    np.testing.assert_allclose(intra_list_diversity([[0, 1, 2]], v), [2 / 3])
    np.testing.assert_allclose(intra_list_diversity([[0, 2]], v), [0.0])  # identical items
    np.testing.assert_allclose(intra_list_diversity([[0, 3]], v), [1.0])  # zero vector
    assert np.isnan(intra_list_diversity([[1, -1]], v)[0])  # one item: undefined
    np.testing.assert_allclose(intra_list_diversity([[0, 1]], [[1.0, 1.0], [-1.0, -1.0]]), [2.0])
    with pytest.raises(DataError, match="NaN"):
        intra_list_diversity([[0, 1]], [[np.nan, 0.0], [1.0, 0.0]])


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_diversity_matches_pairwise_dense_and_sparse(data):
    n_items = data.draw(st.integers(2, 12))
    d = data.draw(st.integers(1, 6))
    vec = data.draw(hnp.arrays(np.int64, (n_items, d), elements=st.integers(0, 2))).astype(float)
    n_users = data.draw(st.integers(1, 6))
    width = data.draw(st.integers(1, n_items))
    lists = np.array([data.draw(st.permutations(range(n_items)))[:width]
                      for _ in range(n_users)])
    lists[lists >= n_items - 1] = -1  # some padding
    want = naive_ild(lists, vec)
    np.testing.assert_allclose(intra_list_diversity(lists, vec), want, atol=1e-12)
    np.testing.assert_allclose(intra_list_diversity(lists, sp.csr_matrix(vec)), want, atol=1e-12)
    # tiny work arrays force many chunks and give the same answer
    np.testing.assert_allclose(
        intra_list_diversity(lists, sp.csr_matrix(vec), max_elements=3), want, atol=1e-12)
