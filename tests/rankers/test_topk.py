"""Tests of maasrec.rankers.topk (exact top-k with ties, padding and filters)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maasrec.exceptions import DataError
from maasrec.rankers import TopK, topk_indices

FAST = settings(max_examples=120, deadline=None)
VALUES = [-np.inf, -1.0, 0.0, 0.25, 1.0, 3.0, np.inf]  # few values: many ties


def reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full stable sort by (-score, index), -inf dropped, padded with (-1, -inf) to
    ``min(k, n_cols)`` columns (k is capped at the number of items)."""
    n = scores.shape[0]
    k = min(k, scores.shape[1])
    idx = np.full((n, k), -1, dtype=np.int64)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    for r in range(n):
        order = sorted(range(scores.shape[1]), key=lambda c: (-scores[r, c], c))
        order = [c for c in order if scores[r, c] != -np.inf][:k]
        idx[r, : len(order)] = order
        val[r, : len(order)] = scores[r, order]
    return idx, val


score_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
    elements=st.sampled_from(VALUES),
)


@FAST
@given(scores=score_arrays, k=st.integers(1, 15))
def test_topk_equals_stable_full_sort(scores, k):
    idx, val = topk_indices(scores, k)
    ref_idx, ref_val = reference(scores, k)
    assert idx.shape == val.shape == (scores.shape[0], min(k, scores.shape[1]))
    assert idx.dtype == np.int64 and val.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


@FAST
@given(
    scores=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 30)),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    ),
    k=st.integers(1, 35),
)
def test_topk_continuous_values(scores, k):
    idx, _ = topk_indices(scores, k)
    ref_idx, _ = reference(scores, k)
    np.testing.assert_array_equal(idx, ref_idx)


def test_topk_example_ties_and_padding():
    s = np.array([[1.0, 3.0, 3.0, -np.inf, 1.0], [-np.inf, -np.inf, 2.0, -np.inf, -np.inf]])
    idx, val = topk_indices(s, 4)
    np.testing.assert_array_equal(idx, [[1, 2, 0, 4], [2, -1, -1, -1]])
    np.testing.assert_array_equal(val, [[3, 3, 1, 1], [2, -np.inf, -np.inf, -np.inf]])


def test_topk_k_beyond_columns_and_empty():
    # k is capped at the number of columns: a huge k allocates nothing more
    idx, val = topk_indices(np.array([[0.5, 0.7]]), 5)
    np.testing.assert_array_equal(idx, [[1, 0]])
    idx, val = topk_indices(np.array([[0.5, -np.inf, 0.7]]), 10**12)
    np.testing.assert_array_equal(idx, [[2, 0, -1]])
    assert np.isneginf(val[0, 2])
    idx, val = topk_indices(np.zeros((0, 4)), 3)
    assert idx.shape == (0, 3) and val.shape == (0, 3)
    idx, val = topk_indices(np.zeros((2, 0)), 3)
    assert idx.shape == val.shape == (2, 0)


def test_topk_plus_inf_is_a_candidate():
    idx, val = topk_indices(np.array([[0.0, np.inf, -np.inf]]), 3)
    np.testing.assert_array_equal(idx, [[1, 0, -1]])
    assert val[0, 0] == np.inf


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint32, bool])
def test_topk_integer_and_bool_scores(dtype):
    s = np.array([[0, 1, 0, 2, 1]]).astype(dtype)
    idx, _ = topk_indices(s, 5)
    ref_idx, _ = reference(s.astype(np.float64), 5)
    np.testing.assert_array_equal(idx, ref_idx)


def test_topk_nan_rejected():
    with pytest.raises(DataError, match="NaN"):
        topk_indices(np.array([[1.0, np.nan]]), 1)
    with pytest.raises(DataError, match="NaN"):
        TopK(2).rank(np.array([[np.nan, 0.0]]))


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3", None, np.float64(2.0)])
def test_bad_k(k):
    with pytest.raises(DataError, match="k must be a positive integer"):
        topk_indices(np.zeros((1, 3)), k)
    with pytest.raises(DataError, match="k must be a positive integer"):
        TopK(k)


def test_numpy_integer_k():
    assert topk_indices(np.zeros((1, 3)), np.int64(2))[0].shape == (1, 2)
    assert TopK(np.int32(3)).k == 3 and type(TopK(np.int32(3)).k) is int


def test_scores_must_be_2d():
    with pytest.raises(DataError, match="2-d"):
        topk_indices(np.zeros(3), 1)


# -- TopK.rank filters -------------------------------------------------------------------------


@st.composite
def rank_case(draw):
    n_rows = draw(st.integers(1, 5))
    n_cols = draw(st.integers(1, 10))
    scores = draw(hnp.arrays(np.float32, (n_rows, n_cols), elements=st.sampled_from(VALUES[1:])))
    masks = {}
    for name in ("exclude", "allow", "deny"):
        kind = draw(
            st.sampled_from(["none", "global", "rows"] if name != "exclude" else ["none", "rows"])
        )
        if kind == "global":
            masks[name] = np.asarray(
                draw(st.lists(st.integers(0, n_cols - 1), unique=True, max_size=n_cols)),
                dtype=np.int64,
            )
        elif kind == "rows":
            dense = draw(hnp.arrays(bool, (n_rows, n_cols)))
            masks[name] = sp.csr_matrix(dense.astype(np.float32))
        else:
            masks[name] = None
    k = draw(st.integers(1, n_cols + 2))
    return scores, masks, k


def _dense(mask, n_rows, n_cols):
    if mask is None:
        return None
    if sp.issparse(mask):
        return mask.toarray() != 0
    out = np.zeros((n_rows, n_cols), dtype=bool)
    out[:, mask] = True
    return out


@FAST
@given(rank_case())
def test_rank_filters_never_violated(case):
    scores, masks, k = case
    n_rows, n_cols = scores.shape
    original = scores.copy()
    idx, val = TopK(k).rank(scores, **masks)
    allowed = np.ones((n_rows, n_cols), dtype=bool)
    ex = _dense(masks["exclude"], n_rows, n_cols)
    al = _dense(masks["allow"], n_rows, n_cols)
    de = _dense(masks["deny"], n_rows, n_cols)
    for m in (ex, de):
        if m is not None:
            allowed &= ~m
    if al is not None:
        allowed &= al
    masked = np.where(allowed, original, -np.inf)
    ref_idx, ref_val = reference(masked, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)
    for r in range(n_rows):
        real = idx[r][idx[r] >= 0]
        assert allowed[r, real].all()
        assert len(set(real.tolist())) == len(real)


def test_rank_examples():
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32))
    idx, _ = TopK(2).rank(scores.copy(), exclude=seen)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2]])
    idx, _ = TopK(3).rank(scores.copy(), allow=np.array([3, 1]))
    np.testing.assert_array_equal(idx, [[1, 3, -1], [1, 3, -1]])
    idx, _ = TopK(2).rank(scores.copy(), deny=np.array([0]))
    np.testing.assert_array_equal(idx, [[1, 2], [1, 2]])
    idx, _ = TopK(2).rank(scores.copy(), deny=np.array([], dtype=np.int64))
    np.testing.assert_array_equal(idx, [[0, 1], [0, 1]])
    idx, val = TopK(2).rank(scores.copy(), allow=np.array([], dtype=np.int64))
    assert (idx == -1).all() and np.isneginf(val).all()


def test_rank_modifies_float_scores_in_place_and_accepts_ints():
    s = np.array([[1.0, 2.0]])
    TopK(1).rank(s, deny=np.array([1]))
    assert np.isneginf(s[0, 1])
    idx, _ = TopK(1).rank(np.array([[1, 2]]), deny=np.array([1]))
    np.testing.assert_array_equal(idx, [[0]])


def test_repr_and_default():
    assert repr(TopK(3)) == "TopK(k=3)"
    assert TopK().k == 10
