"""Exact top-k selection with exclusions and allow/deny lists.

Score blocks may be numpy arrays or torch tensors (on any device): a tensor is ranked
with torch on its own device and only the small ``[n, k]`` result is moved. The rule is
the same everywhere:

* the ``k`` largest scores of each row, best first;
* ties broken by the **lower item index**, exactly (no epsilon tricks);
* ``-inf`` marks a non-candidate; a row with fewer than ``k`` candidates is padded
  with index ``-1`` and score ``-inf``;
* NaN scores are an error.

Filters (``exclude``, ``allow``, ``deny``) are either one list for every row (a 1-d
array of item indices) or one list per row (a ``scipy.sparse`` matrix of shape
``(n_rows, n_items)`` whose stored entries -- whatever their value -- are the items, a
2-d boolean mask, or a sequence of index arrays).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..exceptions import DataError

__all__ = ["TopK", "topk_indices"]


def _check_k(k, n_items: int | None = None) -> int:
    """``k`` as a positive int, capped at ``n_items`` when given (a huge k costs nothing)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be a positive integer, got {k!r}")
    if k <= 0:
        raise DataError(f"k must be a positive integer, got {k}")
    k = int(k)
    return k if n_items is None else max(1, min(k, int(n_items)))


def _is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


# -- numpy kernels ---------------------------------------------------------------------------

def _select_partition(S: np.ndarray, kk: int) -> np.ndarray:
    """Columns of the ``kk`` best entries per row, ascending column order (full partition)."""
    n_rows, n_cols = S.shape
    if kk >= n_cols:
        return np.broadcast_to(np.arange(n_cols, dtype=np.int64), (n_rows, n_cols))
    kth = np.partition(S, n_cols - kk, axis=1)[:, n_cols - kk][:, None]
    take = S >= kth
    tied = np.flatnonzero(np.count_nonzero(take, axis=1) > kk)
    if tied.size:  # the k-th value repeats across the cut: keep its lowest-index copies
        sub, kt = S[tied], kth[tied]
        above = sub > kt
        need = kk - np.count_nonzero(above, axis=1)[:, None]
        eq = sub == kt
        take[tied] = above | (eq & (np.cumsum(eq, axis=1, dtype=np.int64) <= need))
    flat = np.flatnonzero(take)
    return (flat % n_cols).reshape(n_rows, kk)


def _select_numpy(S: np.ndarray, kk: int) -> np.ndarray:
    """Like :func:`_select_partition`, faster on wide float rows.

    The ``kk``-th largest of the maxima of about ``2 kk`` groups of consecutive columns
    is a lower bound of the ``kk``-th largest score; only the (few) entries above it
    are ranked exactly. Rows where the bound is weak (many ties, fewer than ``kk``
    finite scores) fall back to the full partition.
    """
    n_rows, n_cols = S.shape
    g = n_cols // (2 * kk)
    if S.dtype.kind != "f" or g < 8 or n_rows == 0:
        return _select_partition(S, kk)
    S = np.ascontiguousarray(S)
    m = n_cols // g
    gmax = S[:, : m * g].reshape(n_rows, m, g).max(axis=2)
    if m * g < n_cols:
        gmax = np.concatenate([gmax, S[:, m * g:].max(axis=1, keepdims=True)], axis=1)
    thr = np.partition(gmax, gmax.shape[1] - kk, axis=1)[:, gmax.shape[1] - kk]
    mask = S >= thr[:, None]
    cnt = np.count_nonzero(mask, axis=1)
    slow = np.isneginf(thr) | (cnt > 4 * kk + 64)
    out = np.empty((n_rows, kk), dtype=np.int64)
    fast = np.flatnonzero(~slow)
    if fast.size:
        all_fast = fast.size == n_rows
        sub = mask if all_fast else mask[fast]  # no copy in the common case
        flat = np.flatnonzero(sub)
        rows = flat // n_cols
        c = cnt[fast]
        starts = np.cumsum(c) - c
        pos = np.arange(flat.size) - starts[rows]
        width = int(c.max())
        cand = np.full((fast.size, width), n_cols, dtype=np.int64)  # ascending; pad last
        vals = np.full((fast.size, width), -np.inf, dtype=S.dtype)
        cand[rows, pos] = flat - rows * n_cols
        vals[rows, pos] = S.ravel()[flat] if all_fast else S[fast[rows], cand[rows, pos]]
        # every real candidate is >= thr > -inf, so the -inf padding never competes
        pick = _select_partition(vals, kk)
        out[fast] = np.take_along_axis(cand, pick, axis=1)
    if slow.any():
        out[slow] = _select_partition(S[slow], kk)
    return out


def _topk_numpy(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if scores.ndim != 2:
        raise DataError(f"scores must be 2-d (rows x items), got shape {scores.shape}")
    n_rows, n_cols = scores.shape
    kk = k = min(k, n_cols)  # never more columns than items: a huge k costs nothing
    if scores.dtype.kind in "fc" and np.isnan(scores).any():
        raise DataError("scores contain NaN; the model produced invalid scores")
    if n_rows == 0 or kk == 0:
        return (np.full((n_rows, k), -1, dtype=np.int64),
                np.full((n_rows, k), -np.inf, dtype=np.float32))
    cols = _select_numpy(scores, kk)
    vals = np.take_along_axis(scores, cols, axis=1)
    if vals.dtype.kind != "f":  # unsigned and bool values cannot be negated
        vals = vals.astype(np.float64)
    order = np.argsort(-vals, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    cols[np.isneginf(vals)] = -1
    if kk < k:
        cols = np.concatenate([cols, np.full((n_rows, k - kk), -1, dtype=np.int64)], axis=1)
        vals = np.concatenate([vals, np.full((n_rows, k - kk), -np.inf, dtype=np.float32)], axis=1)
    return cols, vals


# -- torch kernel ----------------------------------------------------------------------------

def _topk_torch(scores, k: int):
    import torch

    if scores.ndim != 2:
        raise DataError(f"scores must be 2-d (rows x items), got shape {tuple(scores.shape)}")
    n_rows, n_cols = scores.shape
    kk = k = min(k, n_cols)  # never more columns than items
    dev = scores.device
    if scores.dtype == torch.bool or not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if bool(torch.isnan(scores).any()):
        raise DataError("scores contain NaN; the model produced invalid scores")
    if n_rows == 0 or kk == 0:
        return (torch.full((n_rows, k), -1, dtype=torch.int64, device=dev),
                torch.full((n_rows, k), float("-inf"), dtype=torch.float32, device=dev))
    if kk < n_cols:
        # torch.topk returns exact values; its index order among ties is unspecified, so
        # only the k-th value is used and the tie rule is applied on the mask below.
        kth = torch.topk(scores, kk, dim=1, largest=True, sorted=False).values.amin(
            dim=1, keepdim=True)
        take = scores >= kth
        tied = torch.nonzero(take.sum(dim=1) > kk).flatten()
        if tied.numel():
            sub, kt = scores[tied], kth[tied]
            above = sub > kt
            need = kk - above.sum(dim=1, keepdim=True)
            eq = sub == kt
            take[tied] = above | (eq & (torch.cumsum(eq, dim=1) <= need))
        cols = torch.nonzero(take)[:, 1].reshape(n_rows, kk)  # row-major: ascending columns
    else:
        cols = torch.arange(n_cols, device=dev).expand(n_rows, n_cols)
    vals = torch.gather(scores, 1, cols)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    cols = torch.gather(cols, 1, order)
    vals = vals.to(torch.float32)
    cols = cols.masked_fill(torch.isneginf(vals), -1)
    if kk < k:
        cols = torch.cat([cols, torch.full((n_rows, k - kk), -1, dtype=torch.int64, device=dev)],
                         dim=1)
        vals = torch.cat([vals, torch.full((n_rows, k - kk), float("-inf"), dtype=torch.float32,
                                           device=dev)], dim=1)
    return cols, vals


def topk_indices(scores, k: int):
    """Indices and values of the ``k`` largest entries of each row, sorted.

    Ties are broken by the lower column index, so the result is fully deterministic.
    Entries equal to ``-inf`` are never candidates: where a row has fewer than ``k``
    finite entries, the tail is padded with index ``-1`` and score ``-inf``.

    Parameters
    ----------
    scores : np.ndarray or torch.Tensor, shape (n_rows, n_cols)
        A tensor is ranked with torch on its device (``torch.topk`` finds the k-th
        value; the tie rule is then applied exactly).
    k : int
        Number of entries per row. A ``k`` larger than ``n_cols`` is capped at
        ``n_cols``: the result never has more columns than there are items, so a huge
        ``k`` (e.g. ``10**9``) costs no more than ``k = n_cols``.

    Returns
    -------
    indices : np.ndarray of int64, shape (n_rows, min(k, n_cols))
        (a torch int64 tensor on the same device for tensor input)
    values : np.ndarray of float32, shape (n_rows, min(k, n_cols))
        (a torch float32 tensor for tensor input)

    Raises
    ------
    DataError
        ``k`` not a positive integer, scores not 2-d, or NaN scores.
    """
    k = _check_k(k)
    if _is_tensor(scores):
        return _topk_torch(scores, k)
    return _topk_numpy(np.asarray(scores), k)


# -- filters ---------------------------------------------------------------------------------

def _check_filter(spec, n_rows: int, n_items: int, name: str):
    """Normalise a filter to ``None``, a 1-d int64 index array (global) or a CSR (per row).

    Raises
    ------
    DataError
        Naming the filter, the bad index or the bad shape.
    """
    if spec is None:
        return None
    if sp.issparse(spec):
        m = sp.csr_matrix(spec)
        if m.shape != (n_rows, n_items):
            raise DataError(f"{name} has shape {m.shape}, expected ({n_rows}, {n_items}) "
                            f"(rows x items)")
        if m.nnz and not m.data.all():  # a stored entry counts whatever its value
            m = sp.csr_matrix((np.ones(m.nnz, dtype=np.float32), m.indices, m.indptr),
                              shape=m.shape)
        return m
    if isinstance(spec, (list, tuple)) and len(spec) and all(
            isinstance(x, (list, tuple, np.ndarray)) for x in spec):
        if len(spec) != n_rows:
            raise DataError(f"{name} has {len(spec)} per-row lists for {n_rows} rows")
        lists = [_check_filter(np.asarray(x), 1, n_items, f"{name}[{r}]")
                 for r, x in enumerate(spec)]
        indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
        indices = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
        m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                          shape=(n_rows, n_items))
        m.sum_duplicates()
        return m
    arr = np.asarray(spec)
    if arr.dtype == bool:
        if arr.ndim == 2:
            if arr.shape != (n_rows, n_items):
                raise DataError(f"{name} mask has shape {arr.shape}, expected "
                                f"({n_rows}, {n_items})")
            return sp.csr_matrix(arr)
        if arr.ndim == 1:
            if arr.shape != (n_items,):
                raise DataError(f"{name} mask has length {arr.size}, expected {n_items} items")
            return np.flatnonzero(arr).astype(np.int64)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-d array of item indices (one list for all rows) or "
                        f"a sparse matrix (one list per row), got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise DataError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_items)
    if bad.any():
        raise DataError(f"{name} contains item index {int(arr[bad][0])}, outside "
                        f"0..{n_items - 1}")
    return arr.astype(np.int64, copy=False)


def _csr_pairs(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows, m.indices.astype(np.int64)


def _mask_rows(scores: np.ndarray, mask: sp.csr_matrix) -> None:
    """Set ``scores[r, c] = -inf`` for every stored entry (r, c) of ``mask`` (in place)."""
    if mask.nnz:
        rows, cols = _csr_pairs(mask)
        scores[rows, cols] = -np.inf


def _apply_filters_numpy(scores: np.ndarray, exclude, allow, deny) -> None:
    if exclude is not None:
        _mask_rows(scores, exclude)
    if deny is not None:
        if sp.issparse(deny):
            _mask_rows(scores, deny)
        elif deny.size:
            scores[:, deny] = -np.inf
    if allow is not None:
        if sp.issparse(allow):
            keep = allow.astype(bool).toarray()
        else:
            keep = np.zeros(scores.shape[1], dtype=bool)
            keep[allow] = True
        np.copyto(scores, -np.inf, where=~np.broadcast_to(keep, scores.shape))


def _apply_filters_torch(scores, exclude, allow, deny) -> None:
    import torch

    dev = scores.device
    ninf = float("-inf")

    def mask_rows(m: sp.csr_matrix) -> None:
        if m.nnz:
            r, c = _csr_pairs(m)
            scores[torch.from_numpy(r).to(dev), torch.from_numpy(c).to(dev)] = ninf

    if exclude is not None:
        mask_rows(exclude)
    if deny is not None:
        if sp.issparse(deny):
            mask_rows(deny)
        elif deny.size:
            scores[:, torch.from_numpy(deny).to(dev)] = ninf
    if allow is not None:
        if sp.issparse(allow):
            keep = torch.from_numpy(allow.astype(bool).toarray()).to(dev)
        else:
            keep = torch.zeros(scores.shape[1], dtype=torch.bool, device=dev)
            keep[torch.from_numpy(allow).to(dev)] = True
        scores.masked_fill_(~keep, ninf)


def _member(cand: np.ndarray, spec) -> np.ndarray:
    """Boolean ``[n, C]``: whether ``cand[r, j]`` is in the filter ``spec`` (row ``r``)."""
    if sp.issparse(spec):
        rows, cols = _csr_pairs(spec)
        n_items = spec.shape[1]
        keys = rows * n_items + cols
        ckeys = np.arange(cand.shape[0], dtype=np.int64)[:, None] * n_items + np.maximum(cand, 0)
        return np.isin(ckeys, keys) & (cand >= 0)
    return np.isin(cand, spec) & (cand >= 0)


def mask_candidates(candidates: np.ndarray, scores: np.ndarray, exclude=None, allow=None,
                    deny=None) -> None:
    """Set to ``-inf`` (in place) the scores of candidates that break a filter.

    Parameters
    ----------
    candidates : np.ndarray of int64, shape (n_rows, n_candidates)
        Item indices (``-1`` = empty slot, always masked).
    scores : np.ndarray of float, same shape
    exclude, allow, deny
        As in :meth:`TopK.rank` (already normalised by ``_check_filter``).
    """
    drop = candidates < 0
    for spec in (exclude, deny):
        if spec is not None:
            drop |= _member(candidates, spec)
    if allow is not None:
        drop |= ~_member(candidates, allow)
    scores[drop] = -np.inf


# -- score blocks (numpy or torch) ------------------------------------------------------------

def _as_score_block(x):
    """A writable float32 copy of a model's score block: numpy array or torch tensor."""
    if _is_tensor(x):
        import torch

        return x.detach().to(torch.float32, copy=True)
    return np.array(x, dtype=np.float32, copy=True)


def _fill_rows(scores, rows: np.ndarray, values: np.ndarray) -> None:
    """``scores[rows] = values`` (broadcast over rows) for numpy or torch blocks."""
    if _is_tensor(scores):
        import torch

        scores[torch.from_numpy(np.asarray(rows)).to(scores.device)] = torch.as_tensor(
            np.asarray(values), dtype=scores.dtype, device=scores.device)
    else:
        scores[rows] = values


def _to_numpy(x) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class TopK:
    """Exact top-k ranker with exclusions, allow-lists and deny-lists.

    Used by every recommender's ``recommend``. Candidates whose score is ``-inf``
    after masking are not recommended; rows with fewer than ``k`` candidates are
    padded (index ``-1``, score ``-inf``). Ties go to the lower item index.

    Parameters
    ----------
    k : int
        Number of items per user (capped at the number of items of each score block).

    Examples
    --------
    >>> import numpy as np
    >>> TopK(2).rank(np.array([[0.1, 0.9, 0.5]]))
    (array([[1, 2]]), array([[0.9, 0.5]], dtype=float32))
    """

    def __init__(self, k: int = 10):
        self.k = _check_k(k)

    def rank(self, scores, exclude=None, allow=None, deny=None):
        """Rank the items of each row.

        Parameters
        ----------
        scores : np.ndarray or torch.Tensor, shape (n_rows, n_items)
            Scores; a float array/tensor is modified in place (masked entries set to
            ``-inf``). A tensor is ranked on its own device.
        exclude : scipy.sparse matrix, shape (n_rows, n_items), optional
            Per-row items to exclude (e.g. the items each user has seen): every stored
            entry, whatever its value.
        allow : item indices (1-d), or per-row lists (sparse matrix, 2-d bool mask or a
            sequence of index arrays), optional
            Only these items may be recommended (global list or one list per row).
        deny : same forms as ``allow``, optional
            These items may not be recommended.

        Returns
        -------
        indices : np.ndarray of int64, shape (n_rows, min(k, n_items))
            Item indices, best first; ``-1`` marks padding (only where the filters leave
            fewer candidates: a ``k`` above ``n_items`` is capped at ``n_items``). (A
            torch tensor on the scores' device for tensor input.)
        values : np.ndarray of float32, shape (n_rows, min(k, n_items))
            Their scores; ``-inf`` marks padding.

        Raises
        ------
        DataError
            NaN scores; a filter of the wrong shape or naming an item index out of range.
        """
        tensor = _is_tensor(scores)
        if not tensor:
            scores = np.asarray(scores)
            if scores.dtype.kind != "f":  # masking writes -inf, which needs a float array
                scores = scores.astype(np.float64)
        elif not scores.is_floating_point():
            scores = scores.double()
        if scores.ndim != 2:
            raise DataError(f"scores must be 2-d (rows x items), got shape {tuple(scores.shape)}")
        n_rows, n_items = scores.shape
        if exclude is not None:
            exclude = _check_filter(exclude, n_rows, n_items, "exclude")
            if not sp.issparse(exclude):
                raise DataError("exclude must be one list per row (a sparse matrix)")
        allow = _check_filter(allow, n_rows, n_items, "allow")
        deny = _check_filter(deny, n_rows, n_items, "deny")
        if tensor:
            _apply_filters_torch(scores, exclude, allow, deny)
        else:
            _apply_filters_numpy(scores, exclude, allow, deny)
        return topk_indices(scores, self.k)

    def rank_candidates(self, candidates, scores, exclude=None, allow=None, deny=None, *,
                        n_items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among per-row candidate lists (e.g. from approximate retrieval).

        The result is what :meth:`rank` would return on a full score matrix in which
        every non-candidate scores ``-inf``: best first, ties to the lower item index,
        filters applied, repeated candidates counted once, padding ``(-1, -inf)``.

        Parameters
        ----------
        candidates : array-like of int, shape (n_rows, n_candidates)
            Item indices, any order; ``-1`` marks an empty slot.
        scores : array-like of float, same shape
            The candidates' scores.
        exclude, allow, deny : optional
            As in :meth:`rank`, by item index (not by candidate position).
        n_items : int, optional
            Catalogue size, to check the filters' item indices (default: the widest of
            the sparse filters, or the largest index seen plus one). ``k`` is capped at
            it, as in :meth:`rank`.

        Returns
        -------
        indices : np.ndarray of int64, shape (n_rows, min(k, n_items))
        values : np.ndarray of float32, shape (n_rows, min(k, n_items))

        Raises
        ------
        DataError
            Mismatched shapes, non-integer candidates, NaN scores, bad filters.
        """
        idx, vals = _rank_candidates(candidates, scores, self.k, exclude, allow, deny, n_items)
        return idx, vals.astype(np.float32)

    def __repr__(self) -> str:
        return f"TopK(k={self.k})"


def _rank_candidates(candidates, scores, k: int, exclude=None, allow=None, deny=None,
                     n_items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`TopK.rank_candidates`, returning the values in the scores' float precision."""
    cand = np.asarray(candidates)
    s = np.array(scores, copy=True)
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    if cand.ndim != 2 or s.shape != cand.shape:
        raise DataError(f"candidates {cand.shape} and scores {s.shape} must be 2-d arrays "
                        f"of the same shape")
    if cand.size and cand.dtype.kind not in "iu":
        raise DataError(f"candidates must hold integer item indices, got dtype {cand.dtype}")
    if np.isnan(s).any():
        raise DataError("candidate scores contain NaN")
    cand = cand.astype(np.int64, copy=False)
    if cand.size and cand.min() < -1:
        raise DataError(f"candidates contain item index {int(cand.min())} (use -1 for "
                        f"an empty slot)")
    n_rows = cand.shape[0]
    if n_items is None:
        widths = [m.shape[1] for m in (exclude, allow, deny) if sp.issparse(m)]
        n_items = max(widths) if widths else max(
            [int(cand.max()) + 1 if cand.size else 1,
             *(_max_index(m) + 1 for m in (exclude, allow, deny))])
    if cand.size and cand.max() >= n_items:
        raise DataError(f"candidates contain item index {int(cand.max())}, outside "
                        f"0..{n_items - 1}")
    k = _check_k(k, n_items)
    exclude = _check_filter(exclude, n_rows, n_items, "exclude")
    allow = _check_filter(allow, n_rows, n_items, "allow")
    deny = _check_filter(deny, n_rows, n_items, "deny")
    mask_candidates(cand, s, exclude, allow, deny)
    # order each row by item index (a repeated item: its best score first), drop the
    # repeats, then rank by position: a tie in score goes to the lower item index
    key = np.where(cand < 0, np.iinfo(np.int64).max, cand)
    order = np.lexsort((-s, key), axis=1)
    cand = np.take_along_axis(cand, order, axis=1)
    s = np.take_along_axis(s, order, axis=1)
    if cand.shape[1] > 1:
        dup = np.zeros(cand.shape, dtype=bool)
        dup[:, 1:] = (cand[:, 1:] == cand[:, :-1]) & (cand[:, 1:] >= 0)
        s[dup] = -np.inf
    if cand.shape[1] == 0:
        return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), -np.inf, s.dtype)
    pos, _ = topk_indices(s, k)
    safe = np.maximum(pos, 0)
    idx = np.where(pos >= 0, np.take_along_axis(cand, safe, axis=1), -1).astype(np.int64)
    vals = np.where(pos >= 0, np.take_along_axis(s, safe, axis=1), -np.inf).astype(s.dtype)
    if idx.shape[1] < k:  # fewer candidate slots than min(k, n_items): pad
        extra = k - idx.shape[1]
        idx = np.concatenate([idx, np.full((n_rows, extra), -1, np.int64)], axis=1)
        vals = np.concatenate([vals, np.full((n_rows, extra), -np.inf, vals.dtype)], axis=1)
    return idx, vals


def _max_index(spec) -> int:
    """Largest item index named by a filter given as index lists (-1 if none)."""
    if spec is None or sp.issparse(spec):
        return -1
    if isinstance(spec, (list, tuple)) and spec and all(
            isinstance(x, (list, tuple, np.ndarray)) for x in spec):
        return max((_max_index(np.asarray(x)) for x in spec), default=-1)
    arr = np.asarray(spec)
    if arr.dtype == bool:
        return arr.shape[-1] - 1 if arr.ndim else -1
    if arr.size == 0 or arr.dtype.kind not in "iu":
        return -1
    return int(arr.max())
