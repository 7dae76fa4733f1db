"""Tests of maasrec.models.ItemKNN against a dense similarity reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec.data import Interactions
from maasrec.exceptions import DataError
from maasrec.models import ItemKNN
from maasrec.models import itemknn as itemknn_mod


def random_data(seed=0, n_users=40, n_items=25, density=0.25, ratings=True) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    values = rng.integers(1, 6, len(u)).astype(float) if ratings else None
    return Interactions.from_arrays([f"u{x}" for x in u], 1000 + i, values=values)


def reference(X: np.ndarray, k: int, shrink: float, a: float = 0.5) -> np.ndarray:
    """W[i, j]: similarity of history item i to candidate j, top-k (stable) per column j."""
    sq = (X**2).sum(0)
    co = X.T @ X  # co[j, i]
    sim = co / (sq[:, None] ** a * sq[None, :] ** (1 - a) + shrink)  # rows: candidates j
    np.fill_diagonal(sim, 0.0)
    n = X.shape[1]
    W = np.zeros((n, n))
    for j in range(n):
        order = sorted(range(n), key=lambda c: (-sim[j, c], c))[:k]
        keep = [c for c in order if sim[j, c] > 0]
        W[keep, j] = sim[j, keep]
    return W


@pytest.mark.parametrize("seed, k, shrink", [(0, 5, 0.0), (1, 3, 10.0), (2, 100, 2.0)])
def test_cosine_matches_dense_reference(seed, k, shrink):
    data = random_data(seed)
    X = data.to_csr(binary=True).toarray().astype(np.float64)
    m = ItemKNN(n_neighbors=k, shrinkage=shrink, similarity="cosine").fit(data)
    W = reference(X, k, shrink)
    np.testing.assert_allclose(m.similarity_.toarray(), W, rtol=1e-5, atol=1e-7)
    assert (np.diff(m.similarity_.tocsc().indptr) <= k).all()
    users = np.arange(6)
    np.testing.assert_allclose(m._score_users(users), X[users] @ W, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("a", [0.0, 0.3, 0.8, 1.0])
def test_asymmetric_cosine_and_weighted_values(a):
    data = random_data(3)
    R = data.to_csr().toarray().astype(np.float64)
    m = ItemKNN(n_neighbors=6, shrinkage=1.0, similarity="asymmetric", asymmetric_alpha=a,
                implicit=False).fit(data)
    np.testing.assert_allclose(m.similarity_.toarray(), reference(R, 6, 1.0, a),
                               rtol=1e-5, atol=1e-7)
    if a == 0.3:
        c = ItemKNN(n_neighbors=6, shrinkage=1.0, implicit=False, similarity="cosine").fit(data)
        np.testing.assert_allclose(c.similarity_.toarray(), reference(R, 6, 1.0), rtol=1e-5,
                                   atol=1e-7)


def test_ties_keep_the_lower_index_and_blocks_do_not_matter(monkeypatch):
    # identical item columns: many exactly tied similarities
    rows = [(u, i) for u in range(12) for i in range(10) if (u + i) % 3 == 0 or i < 2]
    data = Interactions.from_arrays([r[0] for r in rows], [r[1] for r in rows])
    X = data.to_csr(binary=True).toarray().astype(np.float64)
    full = ItemKNN(n_neighbors=3, shrinkage=0.0, similarity="cosine").fit(data)
    np.testing.assert_allclose(full.similarity_.toarray(), reference(X, 3, 0.0), rtol=1e-6)
    monkeypatch.setattr(itemknn_mod, "SIM_BLOCK_BYTES", 1)  # one candidate per block
    blocked = ItemKNN(n_neighbors=3, shrinkage=0.0, similarity="cosine").fit(data)
    assert (full.similarity_ != blocked.similarity_).nnz == 0


def test_history_equals_known_user_and_similar_items():
    data = random_data(4, ratings=False)
    m = ItemKNN(n_neighbors=5).fit(data)
    R = data.to_csr(binary=True)
    users = list(data.user_vocab.ids[:6])
    hist = [list(data.item_vocab.ids[R[r].indices]) for r in range(6)]
    a = m.recommend(users, k=5)
    b = m.recommend(history=hist, k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    W = m.similarity_.toarray()
    ids, scores = m.similar_items(data.item_vocab.ids[3], k=3)
    col = W[:, 3].copy()
    col[3] = -np.inf
    order = np.argsort(-col, kind="stable")[:3]
    np.testing.assert_array_equal(ids, data.item_vocab.ids[order])
    np.testing.assert_allclose(scores, col[order], rtol=1e-6)


@pytest.mark.parametrize("params, name", [
    ({"n_neighbors": 0}, "n_neighbors"), ({"shrinkage": -1.0}, "shrinkage"),
    ({"similarity": "pearson"}, "similarity"), ({"asymmetric_alpha": 1.5}, "asymmetric_alpha"),
])
def test_bad_params_name_the_value(params, name):
    with pytest.raises(DataError, match=name):
        ItemKNN(**params).fit(random_data(0))


def test_bad_values():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 2], "rating": [0.0, 0.0, 0.0]})
    with pytest.raises(DataError, match="zero"):
        ItemKNN(implicit=False).fit(df)
    with pytest.raises(DataError, match="non-negative"):
        ItemKNN(implicit=False).fit(df.assign(rating=[1.0, -1.0, 2.0]))
    with pytest.raises(DataError, match="<= 0"):  # implicit: values <= 0 are not interactions
        ItemKNN().fit(df)


def test_defaults_are_the_asymmetric_cosine():
    data = random_data(6, n_items=60, density=0.3)
    X = data.to_csr(binary=True).toarray().astype(np.float64)
    m = ItemKNN().fit(data)
    np.testing.assert_allclose(m.similarity_.toarray(), reference(X, 50, 10.0, 0.2),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("params", [
    dict(n_neighbors=3, shrinkage=0.0, similarity="cosine"),
    dict(n_neighbors=5, shrinkage=2.0, asymmetric_alpha=0.3, implicit=False),
    dict(n_neighbors=100, shrinkage=10.0),
])
@pytest.mark.parametrize("density", [0.03, 0.3])
def test_sparse_and_dense_block_paths_are_identical(monkeypatch, params, density):
    """Sparse catalogues take an O(co-occurrences) path: the very same similarities."""
    data = random_data(4, n_users=60, n_items=40, density=density)
    fits = {}
    for path, share in (("dense", 0.0), ("sparse", 1.0)):
        monkeypatch.setattr(itemknn_mod, "SPARSE_BLOCK_DENSITY", share)
        fits[path] = ItemKNN(**params).fit(data).similarity_
    a, b = fits["dense"], fits["sparse"]
    assert a.nnz > 0
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)
    # with ties (identical item columns) the lower index wins on both paths
    rows = [(u, i) for u in range(12) for i in range(10) if (u + i) % 3 == 0 or i < 2]
    tied = Interactions.from_arrays([r[0] for r in rows], [r[1] for r in rows])
    monkeypatch.setattr(itemknn_mod, "SPARSE_BLOCK_DENSITY", 1.0)
    X = tied.to_csr(binary=True).toarray().astype(np.float64)
    sparse = ItemKNN(n_neighbors=3, shrinkage=0.0, similarity="cosine").fit(tied)
    np.testing.assert_allclose(sparse.similarity_.toarray(), reference(X, 3, 0.0), rtol=1e-6)
