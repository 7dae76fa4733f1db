"""Tests of maasrec.models.ALS against naive dense least-squares references."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from maasrec.data import Interactions
from maasrec.exceptions import DataError, MaasrecWarning
from maasrec.models import ALS
from maasrec.models.als import _als_loss, _cg_solve, _Side


def random_data(seed=0, n_users=40, n_items=25, density=0.25, ratings=True) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    values = rng.integers(1, 6, len(u)).astype(float) if ratings else None
    return Interactions.from_arrays([f"u{x}" for x in u], 1000 + i, values=values)


def exact_rows(R: np.ndarray, Y: np.ndarray, conf: np.ndarray, reg: float) -> np.ndarray:
    """argmin_x Σ_i c_ui (p_ui - x·y_i)² + reg ‖x‖² for every row, by dense solves."""
    out = np.zeros((R.shape[0], Y.shape[1]))
    for u in range(R.shape[0]):
        c = np.where(R[u] > 0, conf[u], 1.0)
        p = (R[u] > 0).astype(float)
        A = Y.T @ (c[:, None] * Y) + reg * np.eye(Y.shape[1])
        out[u] = np.linalg.solve(A, Y.T @ (c * p))
    return out


def dense_loss(R, X, Y, conf, reg):
    c = np.where(R > 0, conf, 1.0)
    p = (R > 0).astype(float)
    return ((c * (p - X @ Y.T) ** 2).sum() + reg * ((X**2).sum() + (Y**2).sum())) / R.size


@pytest.mark.parametrize("seed, reg, alpha", [(0, 0.1, 1.0), (1, 2.0, 10.0), (2, 0.0, 3.0)])
def test_cg_converges_to_exact_least_squares(seed, reg, alpha):
    rng = np.random.default_rng(seed)
    R = sp.random(30, 20, density=0.3, random_state=seed, format="csr", dtype=np.float32)
    R.data[:] = 1.0
    f = 6
    Y = rng.standard_normal((20, f)).astype(np.float32)
    conf = 1.0 + alpha * R.data
    side = _Side(R, conf, f, torch.device("cpu"))
    X = torch.zeros(30, f)
    _cg_solve(side, X, torch.from_numpy(Y), reg + 1e-3, steps=60, tol=1e-14)
    Cd = np.full((30, 20), 1.0 + alpha)
    ref = exact_rows(R.toarray(), Y.astype(np.float64), Cd, reg + 1e-3)
    np.testing.assert_allclose(X.numpy(), ref, rtol=1e-3, atol=1e-4)


def test_three_warm_cg_steps_reduce_the_row_objective():
    rng = np.random.default_rng(3)
    R = sp.random(25, 15, density=0.3, random_state=3, format="csr", dtype=np.float32)
    R.data[:] = 1.0
    Y = torch.from_numpy(rng.standard_normal((15, 4)).astype(np.float32))
    side = _Side(R, 1.0 + 2.0 * R.data, 4, torch.device("cpu"))
    X0 = torch.from_numpy(rng.standard_normal((25, 4)).astype(np.float32))
    Rd, Yd = R.toarray(), Y.double().numpy()
    before = dense_loss(Rd, X0.double().numpy(), Yd, 3.0, 0.5)
    X = X0.clone()
    _cg_solve(side, X, Y, 0.5, steps=3)
    after = dense_loss(Rd, X.double().numpy(), Yd, 3.0, 0.5)
    exact = dense_loss(Rd, exact_rows(Rd, Yd, np.full(Rd.shape, 3.0), 0.5), Yd, 3.0, 0.5)
    assert exact <= after + 1e-9 < before


def test_loss_matches_dense_and_decreases_every_iteration():
    data = random_data(1, ratings=False)
    R = data.to_csr(binary=True)
    Rd = R.toarray()
    side = _Side(R, 1.0 + 4.0 * R.data, 5, torch.device("cpu"))
    losses = []
    for it in range(1, 7):
        m = ALS(factors=5, iterations=it, regularization=0.5, alpha=4.0, random_state=0).fit(data)
        X, Y = m.user_factors_, m.item_factors_
        loss = _als_loss(side, torch.from_numpy(X), torch.from_numpy(Y), 0.5)
        np.testing.assert_allclose(loss, dense_loss(Rd, X.astype(float), Y.astype(float), 5.0, 0.5),
                                   rtol=1e-4)
        losses.append(loss)
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


def test_fitted_factors_are_a_fixed_point_and_cold_users_match():
    data = random_data(2, ratings=False)
    # the alternation converges slowly: many cheap iterations on tiny data
    m = ALS(factors=4, iterations=200, cg_steps=8, regularization=1.0, alpha=3.0,
            random_state=0).fit(data)
    R = data.to_csr(binary=True)
    # recalculated factors (exact solve against the item factors) ≈ fitted factors
    X = m.recalculate_users(R)
    ref = exact_rows(R.toarray(), m.item_factors_.astype(np.float64),
                     np.full(R.shape, 4.0), 1.0)
    np.testing.assert_allclose(X, ref, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(X, m.user_factors_, rtol=1e-3, atol=5e-4)
    # so recommending from the train row as a history equals recommending for the user
    users = list(data.user_vocab.ids[:8])
    hist = [list(data.item_vocab.ids[R[r].indices]) for r in range(8)]
    ids, scores = m.recommend(users, k=5)
    ids_h, scores_h = m.recommend(history=hist, k=5)
    np.testing.assert_array_equal(ids_h, ids)
    np.testing.assert_allclose(scores_h, scores, rtol=1e-3, atol=1e-4)


def test_explicit_values_and_log_confidence():
    data = random_data(4)
    R = data.to_csr()
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((R.shape[1], 3))
    for confidence, conf in (("linear", 1.0 + 0.5 * R.toarray()),
                             ("log", 1.0 + 0.5 * np.log1p(R.toarray()))):
        m = ALS(factors=3, alpha=0.5, regularization=0.3, implicit=False, confidence=confidence,
                iterations=1, random_state=0).fit(data)
        m.item_factors_ = Y.astype(np.float32)
        got = m.recalculate_users(R)
        np.testing.assert_allclose(got, exact_rows(R.toarray(), Y, conf, 0.3),
                                   rtol=1e-3, atol=1e-4)
    a = ALS(factors=3, implicit=False, random_state=0, iterations=3).fit(data)
    b = ALS(factors=3, implicit=True, random_state=0, iterations=3).fit(data)
    assert not np.allclose(a.user_factors_, b.user_factors_)


def test_similar_items_are_cosine_of_item_factors():
    data = random_data(5, ratings=False)
    m = ALS(factors=4, iterations=3, random_state=0).fit(data)
    V = m.item_factors_.astype(np.float64)
    Vn = V / np.linalg.norm(V, axis=1, keepdims=True)
    item = data.item_vocab.ids[2]
    ids, scores = m.similar_items(item, k=4)
    sims = Vn @ Vn[2]
    sims[2] = -np.inf
    order = np.argsort(-sims, kind="stable")[:4]
    np.testing.assert_array_equal(ids, data.item_vocab.ids[order])
    np.testing.assert_allclose(scores, sims[order], rtol=1e-5, atol=1e-6)


def test_seeded_and_silent(capsys, caplog):
    data = random_data(6, ratings=False)
    with caplog.at_level(logging.DEBUG, logger="maasrec"):
        a = ALS(factors=4, iterations=3, random_state=7).fit(data)
    b = ALS(factors=4, iterations=3, random_state=7).fit(data)
    c = ALS(factors=4, iterations=3, random_state=8).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.array_equal(a.user_factors_, c.user_factors_)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # verbose=False: no progress bar, no print
    assert any("ALS" in r.getMessage() for r in caplog.records)  # but it logs
    ALS(factors=4, iterations=3, random_state=7, verbose=True).fit(data)
    assert "ALS" in capsys.readouterr().err  # tqdm on stderr


@pytest.mark.parametrize("params, name", [
    ({"factors": 0}, "factors"), ({"factors": -3}, "factors"), ({"factors": 2.5}, "factors"),
    ({"regularization": -0.1}, "regularization"), ({"alpha": 0.0}, "alpha"),
    ({"alpha": -1.0}, "alpha"), ({"iterations": 0}, "iterations"), ({"cg_steps": 0}, "cg_steps"),
    ({"confidence": "sqrt"}, "confidence"), ({"regularization": float("nan")}, "regularization"),
])
def test_bad_params_name_the_value(params, name):
    with pytest.raises(DataError, match=name):
        ALS(**params).fit(random_data(0))


def test_bad_data():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 2], "rating": [0.0, 0.0, 0.0]})
    with pytest.raises(DataError, match="zero"):
        ALS(implicit=False).fit(df)
    # implicit: only values > 0 are interactions, so all-zero values leave nothing
    with pytest.raises(DataError, match=r"<= 0 \(e\.g\. 0\.0\)"):
        ALS(factors=2, iterations=1, random_state=0).fit(df)
    with pytest.warns(MaasrecWarning, match="left 2 of 3 interactions"):
        ALS(factors=2, iterations=1, random_state=0).fit(df.assign(rating=[0.0, 1.0, -1.0]))
    neg = df.assign(rating=[1.0, -2.0, 1.0])
    with pytest.raises(DataError, match=r"-2\.0"):
        ALS(implicit=False).fit(neg)
    with pytest.raises(DataError, match="no non-zero"):
        ALS().fit(sp.csr_matrix((4, 5)))


def test_empty_history_falls_back_to_popular_items():
    data = random_data(7, ratings=False)
    m = ALS(factors=3, iterations=2, random_state=0).fit(data)
    ids, scores = m.recommend(history=[[], [data.item_vocab.ids[0]]], k=3)
    pop = np.asarray(data.to_csr(binary=True).sum(axis=0)).ravel()
    top = data.item_vocab.ids[np.argsort(-pop, kind="stable")[:3]]
    np.testing.assert_array_equal(ids[0], top)
    assert np.isfinite(scores).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    data = random_data(8, ratings=False)
    a = ALS(factors=8, iterations=5, random_state=0, device="cpu").fit(data)
    b = ALS(factors=8, iterations=5, random_state=0, device="cuda").fit(data)
    np.testing.assert_allclose(a.item_factors_, b.item_factors_, rtol=1e-3, atol=1e-4)


def test_vectors_for_retrieval_reproduce_the_scores():
    from maasrec.rankers import FaissRetriever

    data = random_data(9, ratings=False)
    m = ALS(factors=6, iterations=4, random_state=0).fit(data)
    u = np.arange(10)
    np.testing.assert_allclose(m._user_vectors(u) @ m._item_vectors().T, m._score_users(u),
                               rtol=1e-5, atol=1e-6)
    H = data.to_csr(binary=True)[:5]
    np.testing.assert_allclose(m._history_vectors(H) @ m._item_vectors().T,
                               m._score_history(H), rtol=1e-5, atol=1e-6)
    users = list(data.user_vocab.ids[:8])
    exact = m.recommend(users, k=5)
    approx = m.recommend(users, k=5, retriever=FaissRetriever("flat", n_candidates=20))
    np.testing.assert_array_equal(approx[0], exact[0])
    np.testing.assert_allclose(approx[1], exact[1], rtol=1e-5, atol=1e-6)


def test_cpu_item_side_in_user_order_matches_the_item_major_products():
    # the CPU item side walks the user rows (cache-friendly); same numbers as the CSR of Rᵀ
    from maasrec.models.als import _Side, _TransposedSide

    R = sp.random(300, 40, density=0.1, random_state=0, format="csr", dtype=np.float32)
    R.sort_indices()
    conf = 1.0 + 2.0 * R.data
    users = _Side(R, conf, 8, torch.device("cpu"))
    fast = _TransposedSide(users)
    Rt = R.T.tocsr()
    Rt.sort_indices()
    ref = _Side(Rt, 1.0 + 2.0 * Rt.data, 8, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(300, 8, generator=g), torch.randn(40, 8, generator=g)
    # position of each item-major entry in user-major order
    order = sp.csr_matrix((np.arange(R.nnz, dtype=np.float64), R.indices, R.indptr), shape=R.shape)
    perm = torch.from_numpy(order.T.tocsr().data.astype(np.int64))
    assert torch.equal(fast.c[perm], ref.c)
    assert torch.allclose(fast.sddmm(Y, X)[perm], ref.sddmm(Y, X), atol=1e-6)
    w = torch.rand(R.nnz, generator=g)
    fast.w.copy_(w)
    ref.w.copy_(w[perm])
    assert torch.allclose(fast.spmm(X), ref.spmm(X), atol=1e-5)
