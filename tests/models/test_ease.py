"""Tests of maasrec.models.EASE against a naive dense reference."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from maasrec.data import Interactions
from maasrec.exceptions import DataError, MaasrecError
from maasrec.models import EASE
from maasrec.models import ease as ease_module


def random_data(seed=0, n_users=30, n_items=12, density=0.3, ratings=True) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has a row
    u, i = np.nonzero(mask)
    values = rng.integers(1, 6, len(u)).astype(float) if ratings else None
    return Interactions.from_arrays([f"u{x}" for x in u], 1000 + i, values=values)


def reference_B(X: np.ndarray, l2: float) -> np.ndarray:
    G = X.T @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("seed, l2", [(0, 1.0), (1, 10.0), (2, 500.0), (3, 0.05)])
def test_matches_dense_reference_implicit(seed, l2):
    data = random_data(seed)
    X = data.to_csr(binary=True).toarray().astype(np.float64)
    m = EASE(l2=l2).fit(data)
    B = reference_B(X, l2)
    assert m.B_.dtype == np.float32 and m.B_.shape == (data.n_items, data.n_items)
    np.testing.assert_allclose(m.B_, B, rtol=1e-4, atol=1e-6)
    assert (np.diag(m.B_) == 0).all()
    # known users' scores are x_u B
    users = data.user_vocab.ids[:5]
    s = m._score_users(data.user_vocab.index(users))
    np.testing.assert_allclose(s, X[:5] @ B, rtol=1e-4, atol=1e-5)


def test_matches_dense_reference_explicit():
    data = random_data(4)
    R = data.to_csr().toarray().astype(np.float64)
    assert set(np.unique(R)) - {0.0} <= {1.0, 2.0, 3.0, 4.0, 5.0} and R.max() > 1
    m = EASE(l2=5.0, implicit=False).fit(data)
    np.testing.assert_allclose(m.B_, reference_B(R, 5.0), rtol=1e-4, atol=1e-6)
    implicit = EASE(l2=5.0).fit(data)
    assert not np.allclose(implicit.B_, m.B_)
    # known users score with their ratings
    np.testing.assert_allclose(
        m._score_users(np.arange(3)), R[:3] @ reference_B(R, 5.0), rtol=1e-4, atol=1e-4
    )


def test_recommend_agrees_with_reference():
    data = random_data(5)
    X = data.to_csr(binary=True).toarray()
    B = reference_B(X, 2.0)
    m = EASE(l2=2.0).fit(data)
    users = list(data.user_vocab.ids)
    ids, scores = m.recommend(users, k=4)
    for r in range(len(users)):
        s = X[r] @ B
        s[X[r] > 0] = -np.inf
        order = sorted(range(len(s)), key=lambda c: (-s[c], c))[:4]
        np.testing.assert_allclose(scores[r], s[order], rtol=1e-4, atol=1e-5)
        real = ids[r][np.isfinite(scores[r])]
        assert len(real) == min(4, int((X[r] == 0).sum()))
        got = set(data.item_vocab.index(real).tolist())
        assert not got & set(np.flatnonzero(X[r]).tolist())


def test_history_equals_known_user():
    data = random_data(6)
    m = EASE(l2=3.0).fit(data)
    u = data.user_vocab.ids[2]
    hist = data.sequences(as_ids=True)[2].tolist()
    ids_known, s_known = m.recommend(u, k=5)
    ids_cold, s_cold = m.recommend(history=hist, k=5)
    np.testing.assert_array_equal(ids_known, ids_cold)
    np.testing.assert_allclose(s_known, s_cold, rtol=1e-6)


def test_duplicates_are_binary_when_implicit():
    df = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [1, 1, 2, 2, 3]})
    a = EASE(l2=1.0).fit(Interactions.from_pandas(df, duplicates="keep"))
    b = EASE(l2=1.0).fit(Interactions.from_pandas(df, duplicates="first"))
    np.testing.assert_allclose(a.B_, b.B_)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), "10", None, True, [1.0]])
def test_bad_l2(bad):
    data = random_data(0)
    with pytest.raises(DataError, match="l2") as info:
        EASE(l2=bad).fit(data)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("good", [1, np.float32(2.5), np.int64(3), 1e-3])
def test_numeric_l2_types(good):
    EASE(l2=good).fit(random_data(0))


def test_params_unchanged_and_default():
    m = EASE()
    assert m.get_params() == {"l2": 500.0, "implicit": True}
    m = EASE(l2="oops")  # __init__ does no validation, fit does
    assert m.l2 == "oops"


def test_similar_items_excludes_itself():
    data = random_data(7, n_items=10)
    m = EASE(l2=1.0).fit(data)
    items = list(data.item_vocab.ids)
    ids, scores = m.similar_items(items, k=data.n_items)
    assert ids.shape == (10, 10)
    for r, it in enumerate(items):
        real = ids[r][np.isfinite(scores[r])]
        assert it not in real.tolist()
        assert len(real) == 9  # every other item
        assert ids[r][-1] == -1 and np.isneginf(scores[r][-1])
        row = m.B_[r].astype(np.float64).copy()
        row[r] = -np.inf
        order = sorted(range(10), key=lambda c: (-row[c], c))[:9]
        np.testing.assert_array_equal(data.item_vocab.index(real), order)
    one_ids, _ = m.similar_items(items[0], k=3)
    assert one_ids.shape == (3,)
    np.testing.assert_array_equal(one_ids, ids[0][:3])
    with pytest.raises(DataError, match="empty"):
        m.similar_items([], k=3)


def test_save_load_exact(tmp_path):
    data = random_data(8)
    m = EASE(l2=7.0, implicit=False).fit(data)
    m.save(tmp_path / "ease")
    back = EASE.load(tmp_path / "ease")
    assert back.get_params() == m.get_params()
    np.testing.assert_array_equal(back.B_, m.B_)


def test_fits_sparse_input():
    m = EASE(l2=1.0).fit(sp.csr_matrix(np.eye(4) + np.eye(4, k=1)))
    assert m.B_.shape == (4, 4)


# -- the inversion (torch's LAPACK, issue 17) ------------------------------------------------


def scipy_reference_B(X: np.ndarray, l2: float) -> np.ndarray:
    """The pre-0.2 path: scipy's Cholesky factor and LAPACK potri (OpenBLAS), float64."""
    import scipy.linalg
    import scipy.linalg.lapack

    G = X.T @ X + l2 * np.eye(X.shape[1])
    c, _ = scipy.linalg.cho_factor(G, lower=False, check_finite=False)
    P, info = scipy.linalg.lapack.dpotri(c, lower=0)
    assert info == 0
    P = np.triu(P) + np.triu(P, 1).T
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("n_items, block_cells", [(37, 2**22), (300, 2**22), (300, 1000), (513, 5000)])
def test_weights_equal_numpy_and_old_scipy_path(monkeypatch, n_items, block_cells):
    # small blocks make the Gram matrix and the solves run over several (uneven) blocks
    monkeypatch.setattr(ease_module, "GRAM_BLOCK_CELLS", block_cells)
    rng = np.random.default_rng(n_items)
    Xs = sp.random(4 * n_items, n_items, density=0.05, format="csr", random_state=rng,
                   data_rvs=lambda k: rng.integers(1, 6, k).astype(float))
    X = Xs.toarray()
    for l2 in (0.5, 50.0):
        B = ease_module._ease_weights(Xs, l2)
        assert B.dtype == np.float32 and B.flags.c_contiguous and B.shape == (n_items, n_items)
        ref = reference_B(X, l2)
        scale = np.abs(ref).max()
        # float64 all the way, rounded to float32 once: the float32 rounding is the error
        assert np.abs(B - ref).max() <= 1e-6 * scale
        assert np.abs(B - scipy_reference_B(X, l2)).max() <= 1e-6 * scale
        assert (np.diag(B) == 0).all()


def test_gram_blocks_equal_sparse_product(monkeypatch):
    monkeypatch.setattr(ease_module, "GRAM_BLOCK_CELLS", 70)  # 1 row per block at 70 items
    rng = np.random.default_rng(3)
    Xs = sp.random(90, 70, density=0.1, format="csr", random_state=rng)
    G = ease_module._gram(Xs).numpy()
    np.testing.assert_array_equal(G, (Xs.T @ Xs).toarray())
    monkeypatch.setattr(ease_module, "GRAM_BLOCK_CELLS", 1000)  # 14 rows, last block of 14
    np.testing.assert_array_equal(ease_module._gram(Xs).numpy(), (Xs.T @ Xs).toarray())


def test_float32_inversion_close_to_float64():
    # the internal float32 path (not a public option): same weights to ~1e-5 of the scale
    Xs = random_data(9, n_users=200, n_items=60, density=0.1).to_csr(binary=True)
    b64 = ease_module._ease_weights(Xs.astype(np.float64), 20.0)
    b32 = ease_module._ease_weights(Xs.astype(np.float64), 20.0, dtype=ease_module.torch.float32)
    assert np.abs(b32 - b64).max() <= 1e-5 * np.abs(b64).max()
    assert not np.array_equal(b32, b64)


def test_numerically_singular_names_l2():
    # two identical item columns: X^T X is singular, and l2=1e-300 vanishes beside it
    X = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(MaasrecError, match=r"l2=1e-300 is too small") as info:
        EASE(l2=1e-300).fit(X)
    assert "numerically singular" in str(info.value)
    # the trace bound (6 here) is what decides, whatever the matrix
    bound = 1e3 * np.finfo(np.float64).eps * 6
    with pytest.raises(MaasrecError, match="too small"):
        EASE(l2=bound * 0.99).fit(X)
    m = EASE(l2=1e-3).fit(X)  # a usable l2 fits
    np.testing.assert_allclose(m.B_, reference_B(X.toarray(), 1e-3), rtol=1e-5, atol=1e-5)


def test_overflowing_values_raise():
    # Interactions keeps float32 values (squares fit a float64), so only the helper sees this
    X = sp.csr_matrix(np.array([[1e200, 1.0], [0.0, 2.0]]))
    with pytest.raises(MaasrecError, match="overflows"):
        ease_module._ease_weights(X, 1.0)


def test_no_openblas_lapack_in_fit(monkeypatch):
    # the fit must not go through scipy's/numpy's LAPACK (OpenBLAS potrf crashes, issue 17)
    import scipy.linalg

    def boom(*a, **k):
        raise AssertionError("EASE called OpenBLAS LAPACK")

    for name in ("cho_factor", "cholesky", "inv", "solve", "cho_solve"):
        monkeypatch.setattr(scipy.linalg, name, boom)
    for name in ("cholesky", "inv", "solve"):
        monkeypatch.setattr(np.linalg, name, boom)
    EASE(l2=1.0).fit(random_data(10))


LARGE_FIT = textwrap.dedent("""
    import sys, resource, time
    import numpy as np, scipy.sparse as sp
    from maasrec.models import EASE
    n_items = int(sys.argv[1])
    rng = np.random.default_rng(0)
    n_users = 2 * n_items
    # about 8 items per user, Zipf-like popularity (the density of Amazon Sports 5-core)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p /= p.sum()
    nnz = 8 * n_users
    rows = rng.integers(0, n_users, nnz)
    cols = rng.choice(n_items, nnz, p=p)
    cols[:n_items] = np.arange(n_items)  # every item is seen
    X = sp.csr_matrix((np.ones(nnz), (rows, cols)), shape=(n_users, n_items))
    t0 = time.perf_counter()
    m = EASE(l2=200.0).fit(X)
    fit_s = time.perf_counter() - t0
    B = m.B_
    assert B.shape == (n_items, n_items) and B.dtype == np.float32
    assert np.isfinite(B).all() and (np.diag(B) == 0).all() and np.abs(B).max() > 0
    ids, scores = m.recommend([0, 1, 2], k=10)
    assert ids.shape == (3, 10) and np.isfinite(scores).all()
    assert ((ids >= 0) & (ids < n_items)).all()
    for u in range(3):
        assert not set(ids[u].tolist()) & set(X[u].indices.tolist())
        assert (np.diff(scores[u]) <= 0).all()
    print("OK", n_items, round(fit_s, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


@pytest.mark.slow
def test_fit_16384_items_in_subprocess_default_threads(tmp_path):
    # issue 17: scipy's cho_factor (OpenBLAS, 2 threads) died with SIGSEGV at 16,000 items.
    # A subprocess so that a crash fails this test instead of killing pytest; the
    # environment (thread counts, OPENBLAS_*) is inherited unchanged.
    n = 16_384
    proc = subprocess.run([sys.executable, "-c", LARGE_FIT, str(n)], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    out = proc.stdout.split()
    assert out[:2] == ["OK", str(n)], proc.stdout
    peak_gib = int(out[3]) / 2**20  # ru_maxrss in KiB
    # Gram matrix (float64) + B_ (float32) = 3 GiB, plus the interpreter and torch
    assert peak_gib < 4.0, peak_gib


def test_weights_are_c_contiguous_so_scoring_does_not_copy():
    # LAPACK returns Fortran-ordered arrays; a Fortran B_ made every scoring call copy it
    from maasrec.testing import tiny_interactions

    model = EASE(l2=10.0).fit(tiny_interactions())
    assert model.B_.flags.c_contiguous and model.B_.dtype == np.float32
