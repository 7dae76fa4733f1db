"""Tests of maasrec.models.PureSVD against numpy's SVD."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from maasrec.data import Interactions
from maasrec.exceptions import DataError, MaasrecWarning
from maasrec.models import PureSVD
from maasrec.models.puresvd import randomized_svd


def random_data(seed=0, n_users=40, n_items=25, density=0.25, ratings=True) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    values = rng.integers(1, 6, len(u)).astype(float) if ratings else None
    return Interactions.from_arrays([f"u{x}" for x in u], 1000 + i, values=values)


@pytest.mark.parametrize("implicit", [True, False])
def test_arpack_equals_numpy_reconstruction(implicit):
    data = random_data(0)
    X = data.to_csr(binary=implicit).toarray().astype(np.float64)
    m = PureSVD(factors=6, solver="arpack", implicit=implicit, random_state=0).fit(data)
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    V = Vt[:6].T
    np.testing.assert_allclose(m.singular_values_, s[:6], rtol=1e-5)
    np.testing.assert_allclose(m._score_users(np.arange(data.n_users)), X @ V @ V.T,
                               rtol=1e-4, atol=1e-5)


def test_randomized_is_close_and_exact_on_low_rank():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 40))
    U, s, Vt = randomized_svd(sp.csr_matrix(A), 5, random_state=0)
    np.testing.assert_allclose(U * s @ Vt, A, atol=1e-8)
    np.testing.assert_allclose(s, np.linalg.svd(A, compute_uv=False)[:5], rtol=1e-10)
    # a noisy spectrum: the default power iterations give the top subspace closely
    data = random_data(2)
    X = data.to_csr(binary=True).toarray().astype(np.float64)
    m = PureSVD(factors=4, random_state=0).fit(data)
    _, s_ref, Vt_ref = np.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(m.singular_values_, s_ref[:4], rtol=1e-2)
    P_ref = Vt_ref[:4].T @ Vt_ref[:4]
    V = m.item_factors_.astype(np.float64)
    assert np.abs(V @ V.T - P_ref).max() < 0.05


def test_seeded_history_and_similar_items():
    data = random_data(3, ratings=False)
    a = PureSVD(factors=5, random_state=1).fit(data)
    b = PureSVD(factors=5, random_state=1).fit(data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    R = data.to_csr(binary=True)
    users = list(data.user_vocab.ids[:5])
    hist = [list(data.item_vocab.ids[R[r].indices]) for r in range(5)]
    np.testing.assert_array_equal(a.recommend(users, k=4)[0], a.recommend(history=hist, k=4)[0])
    E = a.item_factors_.astype(np.float64) * a.singular_values_
    En = E / np.linalg.norm(E, axis=1, keepdims=True)
    sims = En @ En[0]
    sims[0] = -np.inf
    order = np.argsort(-sims, kind="stable")[:3]
    ids, scores = a.similar_items(data.item_vocab.ids[0], k=3)
    np.testing.assert_array_equal(ids, data.item_vocab.ids[order])
    np.testing.assert_allclose(scores, sims[order], rtol=1e-5, atol=1e-6)


def test_too_many_factors_warns_and_clips():
    data = random_data(4, n_users=10, n_items=8, density=0.6)
    assert data.n_items == 8
    with pytest.warns(MaasrecWarning, match="factors=64"):
        m = PureSVD(factors=64, random_state=0).fit(data)
    assert m.item_factors_.shape == (8, 8)
    with pytest.warns(MaasrecWarning, match="using 7"):
        PureSVD(factors=64, solver="arpack", random_state=0).fit(data)


@pytest.mark.parametrize("params, name", [
    ({"factors": 0}, "factors"), ({"solver": "lanczos"}, "solver"), ({"n_iter": -1}, "n_iter"),
])
def test_bad_params_name_the_value(params, name):
    with pytest.raises(DataError, match=name):
        PureSVD(**params).fit(random_data(0))


def test_all_zero_values():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 2], "rating": [0.0, 0.0, 0.0]})
    with pytest.raises(DataError, match="zero"):
        PureSVD(implicit=False).fit(df)


def test_vectors_for_retrieval_reproduce_the_scores():
    from maasrec.rankers import FaissRetriever

    data = random_data(5, ratings=False)
    m = PureSVD(factors=5, random_state=0).fit(data)
    u = np.arange(10)
    np.testing.assert_allclose(m._user_vectors(u) @ m._item_vectors().T, m._score_users(u),
                               rtol=1e-5, atol=1e-6)
    users = list(data.user_vocab.ids[:8])
    exact = m.recommend(users, k=5)
    approx = m.recommend(users, k=5, retriever=FaissRetriever("flat", n_candidates=20))
    np.testing.assert_array_equal(approx[0], exact[0])
    np.testing.assert_allclose(approx[1], exact[1], rtol=1e-5, atol=1e-6)
    R = data.to_csr(binary=True)
    hist = [list(data.item_vocab.ids[R[r].indices]) for r in range(4)]
    np.testing.assert_array_equal(
        m.recommend(history=hist, k=4, retriever=FaissRetriever("flat", n_candidates=20))[0],
        m.recommend(history=hist, k=4)[0])
