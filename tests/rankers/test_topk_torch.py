"""TopK on torch score blocks, the fast numpy path, candidate lists and filter validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maasrec.exceptions import DataError
from maasrec.rankers import TopK, topk_indices

FAST = settings(max_examples=80, deadline=None)
VALUES = [-np.inf, -1.0, 0.0, 0.25, 1.0, 3.0]  # few values: many ties


def reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full stable sort by (-score, index); -inf dropped; padded with (-1, -inf) to
    ``min(k, n_cols)`` columns (k is capped at the number of items)."""
    s = np.asarray(scores, dtype=np.float64)
    k = min(k, s.shape[1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, order, axis=1)
    idx = np.where(np.isneginf(vals), -1, order)
    pad = k - idx.shape[1]
    if pad > 0:
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx.astype(np.int64), vals.astype(np.float32)


score_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
    elements=st.sampled_from(VALUES),
)


@FAST
@given(scores=score_arrays, k=st.integers(1, 15))
def test_torch_topk_equals_full_sort(scores, k):
    idx, val = topk_indices(torch.from_numpy(scores.copy()), k)
    assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64
    assert val.dtype == torch.float32
    assert idx.shape == (scores.shape[0], min(k, scores.shape[1]))  # k capped at n_items
    ref_idx, ref_val = reference(scores, k)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_array_equal(val.numpy(), ref_val)


@FAST
@given(n_rows=st.integers(1, 4), n_cols=st.integers(100, 3000), k=st.integers(1, 12),
       n_distinct=st.sampled_from([2, 5, 1000]), p_inf=st.sampled_from([0.0, 0.5, 0.999]),
       seed=st.integers(0, 2**16))
def test_wide_rows_fast_path_equals_full_sort(n_rows, n_cols, k, n_distinct, p_inf, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_distinct, (n_rows, n_cols)).astype(np.float32)
    s[rng.random(s.shape) < p_inf] = -np.inf
    ref = reference(s, k)
    for got in (topk_indices(s, k), [t.numpy() for t in topk_indices(torch.from_numpy(s), k)]):
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_torch_int_bool_half_and_errors():
    s = torch.tensor([[0, 1, 0, 2, 1]])
    np.testing.assert_array_equal(topk_indices(s, 3)[0].numpy(), [[3, 1, 4]])
    np.testing.assert_array_equal(topk_indices(s.bool(), 2)[0].numpy(), [[1, 3]])
    h = torch.tensor([[0.5, 1.0, 1.0, float("-inf")]], dtype=torch.float16)
    idx, val = topk_indices(h, 4)
    np.testing.assert_array_equal(idx.numpy(), [[1, 2, 0, -1]])
    assert val.dtype == torch.float32
    with pytest.raises(DataError, match="NaN"):
        topk_indices(torch.tensor([[1.0, float("nan")]]), 1)
    with pytest.raises(DataError, match="2-d"):
        topk_indices(torch.zeros(3), 1)
    with pytest.raises(DataError, match="k must be a positive integer, got 0"):
        topk_indices(torch.zeros((1, 3)), 0)
    idx, val = topk_indices(torch.zeros((0, 4)), 2)
    assert idx.shape == (0, 2)


@st.composite
def rank_case(draw):
    n_rows = draw(st.integers(1, 5))
    n_cols = draw(st.integers(1, 10))
    scores = draw(hnp.arrays(np.float32, (n_rows, n_cols), elements=st.sampled_from(VALUES[1:])))
    masks = {}
    for name in ("exclude", "allow", "deny"):
        kinds = ["none", "rows"] if name == "exclude" else ["none", "global", "rows", "lists"]
        kind = draw(st.sampled_from(kinds))
        dense = draw(hnp.arrays(bool, (n_rows, n_cols)))
        if kind == "global":
            masks[name] = np.flatnonzero(dense[0])
        elif kind == "rows":
            masks[name] = sp.csr_matrix(dense.astype(np.float32))
        elif kind == "lists":
            masks[name] = [np.flatnonzero(row) for row in dense]
        else:
            masks[name] = None
    k = draw(st.integers(1, n_cols + 2))
    return scores, masks, k


def _allowed(masks, n_rows, n_cols):
    ok = np.ones((n_rows, n_cols), dtype=bool)
    for name in ("exclude", "allow", "deny"):
        m = masks[name]
        if m is None:
            continue
        if sp.issparse(m):
            d = m.toarray() != 0
        elif isinstance(m, list):
            d = np.zeros((n_rows, n_cols), dtype=bool)
            for r, row in enumerate(m):
                d[r, row] = True
        else:
            d = np.zeros((n_rows, n_cols), dtype=bool)
            d[:, m] = True
        ok &= d if name == "allow" else ~d
    return ok


@FAST
@given(rank_case())
def test_torch_rank_filters_equal_numpy_and_are_never_violated(case):
    scores, masks, k = case
    n_rows, n_cols = scores.shape
    ok = _allowed(masks, n_rows, n_cols)
    ref_idx, ref_val = reference(np.where(ok, scores, -np.inf), k)
    i_np, v_np = TopK(k).rank(scores.copy(), **masks)
    i_t, v_t = TopK(k).rank(torch.from_numpy(scores.copy()), **masks)
    np.testing.assert_array_equal(i_np, ref_idx)
    np.testing.assert_array_equal(v_np, ref_val)
    np.testing.assert_array_equal(i_t.numpy(), ref_idx)
    np.testing.assert_array_equal(v_t.numpy(), ref_val)
    for r in range(n_rows):
        real = i_np[r][i_np[r] >= 0]
        assert ok[r, real].all()


@FAST
@given(rank_case(), st.integers(0, 2**16))
def test_rank_candidates_equals_rank_on_the_full_matrix(case, seed):
    scores, masks, k = case
    n_rows, n_cols = scores.shape
    rng = np.random.default_rng(seed)
    # random candidate lists (with repeats and empty slots); non-candidates score -inf
    width = int(rng.integers(1, 2 * n_cols + 1))
    cand = rng.integers(-1, n_cols, (n_rows, width))
    full = np.full((n_rows, n_cols), -np.inf, dtype=np.float32)
    for r in range(n_rows):
        c = cand[r][cand[r] >= 0]
        full[r, c] = scores[r, c]
    cand_scores = np.where(cand >= 0, scores[np.arange(n_rows)[:, None], np.maximum(cand, 0)],
                           -np.inf)
    got = TopK(k).rank_candidates(cand, cand_scores, n_items=n_cols, **masks)
    ref = TopK(k).rank(full, **masks)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_rank_candidates_keeps_best_score_of_a_repeat_and_validates():
    idx, val = TopK(3).rank_candidates([[4, 2, 4, -1]], [[1.0, 2.0, 5.0, 9.0]])
    np.testing.assert_array_equal(idx, [[4, 2, -1]])
    np.testing.assert_array_equal(val, [[5.0, 2.0, -np.inf]])
    with pytest.raises(DataError, match="same shape"):
        TopK(2).rank_candidates([[1, 2]], [[1.0]])
    with pytest.raises(DataError, match="-5"):
        TopK(2).rank_candidates([[1, -5]], [[1.0, 2.0]])
    with pytest.raises(DataError, match="integer"):
        TopK(2).rank_candidates([[1.5, 2.0]], [[1.0, 2.0]])
    with pytest.raises(DataError, match=r"outside 0\.\.2"):
        TopK(2).rank_candidates([[1, 7]], [[1.0, 2.0]], n_items=3)


def test_filter_errors_name_the_value():
    s = np.zeros((2, 5))
    with pytest.raises(DataError, match=r"deny contains item index 9, outside 0\.\.4"):
        TopK(2).rank(s.copy(), deny=np.array([1, 9]))
    with pytest.raises(DataError, match="allow contains item index -2"):
        TopK(2).rank(s.copy(), allow=[-2])
    with pytest.raises(DataError, match=r"exclude has shape \(1, 5\), expected \(2, 5\)"):
        TopK(2).rank(s.copy(), exclude=sp.csr_matrix((1, 5)))
    with pytest.raises(DataError, match="3 per-row lists for 2 rows"):
        TopK(2).rank(s.copy(), allow=[[1], [2], [3]])
    with pytest.raises(DataError, match="integer item indices"):
        TopK(2).rank(s.copy(), deny=np.array([0.5]))
    idx, _ = TopK(2).rank(s.copy(), allow=np.array([False, True, False, True, False]))
    np.testing.assert_array_equal(idx, [[1, 3], [1, 3]])


def test_torch_scores_are_masked_in_place_on_their_device():
    t = torch.tensor([[1.0, 2.0, 3.0]])
    idx, _ = TopK(2).rank(t, deny=np.array([2]))
    assert torch.isneginf(t[0, 2])
    assert idx.device == t.device
    np.testing.assert_array_equal(idx.numpy(), [[1, 0]])
