"""Tests of maasrec.models.EASE against a naive dense reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.data import Interactions
from maasrec.exceptions import DataError
from maasrec.models import EASE
from maasrec.models.ease import _symmetrize_upper


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


# -- _symmetrize_upper -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), block=st.integers(1, 17), seed=st.integers(0, 2**31))
def test_symmetrize_upper(n, block, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    sym = np.triu(a) + np.triu(a, 1).T
    work = a.copy()
    work[np.tril_indices(n, -1)] = 12345.0  # garbage below the diagonal must be overwritten
    _symmetrize_upper(work, block=block)
    np.testing.assert_array_equal(work, sym)


@pytest.mark.parametrize("n", [1, 511, 512, 513, 1030])
def test_symmetrize_upper_default_block(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)).astype(np.float32)
    expected = np.triu(a) + np.triu(a, 1).T
    _symmetrize_upper(a)
    np.testing.assert_array_equal(a, expected)


def test_weights_are_c_contiguous_so_scoring_does_not_copy():
    # LAPACK returns Fortran-ordered arrays; a Fortran B_ made every scoring call copy it
    from maasrec.testing import tiny_interactions

    model = EASE(l2=10.0).fit(tiny_interactions())
    assert model.B_.flags.c_contiguous and model.B_.dtype == np.float32
