"""Beyond-accuracy metrics of recommendation lists: coverage, novelty, diversity, Gini.

Every function takes the lists as a 2-d integer array ``recommended[n_users, k]`` of
item *indices* (``0..n_items-1``), with ``-1`` marking an empty (padding) slot. To score
lists of raw ids, use :func:`maasrec.metrics.evaluate_lists`, which maps them first.

Definitions:

=============  =========================================================================
coverage       distinct recommended items / ``n_items`` (catalogue coverage)
novelty        per list, the mean self-information ``-log2(p_i)`` of its items, where
               ``p_i`` is the share of training users who interacted with item ``i``
diversity      per list, intra-list diversity: mean over item pairs of
               ``1 - cos(v_i, v_j)``
gini           Gini index of how often each catalogue item is recommended (0 = every
               item equally often, towards 1 = a few items get all recommendations)
=============  =========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..exceptions import DataError

__all__ = [
    "catalog_coverage",
    "gini_index",
    "intra_list_diversity",
    "item_popularity",
    "novelty",
]


def _check_lists(recommended: Any, n_items: int | None = None) -> np.ndarray:
    top = np.asarray(recommended)
    if top.ndim == 1:
        top = top[None, :]
    if top.ndim != 2:
        raise DataError(
            f"recommended must be a 2-d [n_users, k] array of item indices, got shape {top.shape}"
        )
    if top.size and top.dtype.kind not in "iu":
        raise DataError(
            f"recommended must hold integer item indices (-1 for padding), got dtype {top.dtype}; "
            f"use evaluate_lists() for raw ids"
        )
    top = top.astype(np.int64, copy=False)
    if top.size and top.min() < -1:
        raise DataError(f"item indices must be >= 0 (or -1 for padding), got {int(top.min())}")
    if n_items is not None and top.size and top.max() >= n_items:
        raise DataError(f"item index {int(top.max())} is out of range for n_items={n_items}")
    return top


def _check_n_items(n_items: Any) -> int:
    if isinstance(n_items, (bool, np.bool_)) or not isinstance(n_items, (int, np.integer)):
        raise DataError(f"n_items must be a positive integer, got {n_items!r}")
    if n_items <= 0:
        raise DataError(f"n_items must be a positive integer, got {n_items}")
    return int(n_items)


def catalog_coverage(recommended: Any, n_items: int) -> float:
    """Catalogue coverage: distinct recommended items divided by ``n_items``.

    Parameters
    ----------
    recommended : array-like of int, shape (n_users, k)
        Item indices, ``-1`` for empty slots.
    n_items : int
        Catalogue size.

    Returns
    -------
    float
        In ``[0, 1]``.

    Examples
    --------
    >>> catalog_coverage([[0, 1], [1, 2]], n_items=10)
    0.3
    """
    n_items = _check_n_items(n_items)
    top = _check_lists(recommended, n_items)
    return float(np.unique(top[top >= 0]).size / n_items)


def gini_index(recommended: Any, n_items: int) -> float:
    """Gini index of recommendation counts over the whole catalogue.

    With ``c_(1) <= ... <= c_(n)`` the number of lists containing each of the ``n``
    catalogue items (items never recommended count 0),
    ``G = sum_i (2 i - n - 1) c_(i) / (n sum_i c_(i))``. 0 means every item is
    recommended equally often; the maximum ``(n - 1) / n`` means one item takes every
    slot. NaN when nothing is recommended.

    Parameters
    ----------
    recommended : array-like of int, shape (n_users, k)
        Item indices, ``-1`` for empty slots.
    n_items : int
        Catalogue size.

    Returns
    -------
    float

    Notes
    -----
    RecBole's ``GiniIndex`` uses the same formula over all items.

    Examples
    --------
    >>> gini_index([[0, 1], [0, 1]], n_items=2)
    0.0
    >>> gini_index([[0], [0]], n_items=2)
    0.5
    """
    n_items = _check_n_items(n_items)
    top = _check_lists(recommended, n_items)
    counts = np.sort(np.bincount(top[top >= 0], minlength=n_items)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    i = np.arange(1, n_items + 1, dtype=np.float64)
    return float(np.sum((2.0 * i - n_items - 1.0) * counts) / (n_items * total))


def item_popularity(interactions: Any, n_items: int | None = None) -> np.ndarray:
    """Share of (training) users who interacted with each item, for :func:`novelty`.

    ``p_i = max(c_i, 1) / U``, where ``c_i`` is the number of distinct users with item
    ``i`` and ``U`` the number of users with at least one interaction. Items nobody
    interacted with are treated as seen by one user (so their self-information is the
    finite maximum ``log2(U)`` rather than infinity).

    Parameters
    ----------
    interactions : Interactions or scipy.sparse matrix, shape (n_users, n_items)
    n_items : int, optional
        Catalogue size (default: the matrix's number of columns).

    Returns
    -------
    np.ndarray of float64, shape (n_items,)
    """
    m = interactions.to_csr(binary=True) if hasattr(interactions, "to_csr") else interactions
    if not sp.issparse(m):
        m = sp.csr_matrix(np.asarray(m))
    m = sp.csr_matrix(m, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    n = m.shape[1] if n_items is None else _check_n_items(n_items)
    if n < m.shape[1]:
        raise DataError(f"n_items={n} is smaller than the matrix's {m.shape[1]} columns")
    counts = np.bincount(m.indices, minlength=n).astype(np.float64)
    n_users = int(np.count_nonzero(np.diff(m.indptr)))
    if n_users == 0:
        raise DataError("item popularity needs at least one interaction")
    return np.maximum(counts, 1.0) / n_users


def novelty(recommended: Any, item_popularity: Any) -> np.ndarray:
    """Per-list novelty: mean self-information ``-log2(p_i)`` of the listed items.

    Parameters
    ----------
    recommended : array-like of int, shape (n_users, k)
        Item indices, ``-1`` for empty slots (skipped).
    item_popularity : array-like of float, shape (n_items,)
        ``p_i`` in ``(0, 1]``, e.g. from :func:`item_popularity`.

    Returns
    -------
    np.ndarray of float64, shape (n_users,)
        In bits; NaN for an empty list.

    Notes
    -----
    :func:`evaluate` reports the mean over users of these per-list values. Microsoft
    Recommenders' ``novelty`` pools all recommended items instead (the same when every
    list has k items).

    Examples
    --------
    >>> novelty([[0, 1]], [0.5, 0.25])
    array([1.5])
    """
    p = np.asarray(item_popularity, dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"item_popularity must be 1-d, got shape {p.shape}")
    if p.size and (not np.isfinite(p).all() or p.min() <= 0 or p.max() > 1):
        raise DataError("item_popularity values must lie in (0, 1]")
    top = _check_lists(recommended, len(p))
    valid = top >= 0
    info = np.where(valid, -np.log2(p[np.where(valid, top, 0)]) if p.size else 0.0, 0.0)
    n = valid.sum(axis=1)
    out = np.full(top.shape[0], np.nan)
    np.divide(info.sum(axis=1), n, out=out, where=n > 0)
    return out


def _normalise_rows(vectors: Any) -> tuple[Any, np.ndarray]:
    if sp.issparse(vectors):
        v = sp.csr_matrix(vectors, dtype=np.float64)
        if v.nnz and not np.isfinite(v.data).all():
            raise DataError("item_vectors contain NaN or inf")
        norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(inv) @ v), norms
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise DataError(f"item_vectors must be a 2-d [n_items, d] array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise DataError("item_vectors contain NaN or inf")
    norms = np.linalg.norm(v, axis=1)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return v * inv[:, None], norms


def intra_list_diversity(recommended: Any, item_vectors: Any,
                         max_elements: int = 4_000_000) -> np.ndarray:
    """Per-list intra-list diversity: mean over item pairs of ``1 - cos(v_i, v_j)``.

    Computed without forming pairs: with unit vectors ``u_i`` and ``s = sum_i u_i``,
    ``sum_{i<j} cos(v_i, v_j) = (|s|^2 - z) / 2`` where ``z`` counts items with a
    non-zero vector; a zero vector has cosine 0 with everything (distance 1).

    Parameters
    ----------
    recommended : array-like of int, shape (n_users, k)
        Item indices, ``-1`` for empty slots (skipped).
    item_vectors : array-like or scipy.sparse matrix, shape (n_items, d)
        One vector per item. :func:`evaluate` defaults to the item columns of the
        binary training matrix (sparse), i.e. co-occurrence cosine.
    max_elements : int, default 4_000_000
        Work-array size bounding memory (users are processed in chunks).

    Returns
    -------
    np.ndarray of float64, shape (n_users,)
        In ``[0, 2]`` (``[0, 1]`` for non-negative vectors); NaN for lists with fewer
        than two items.

    Examples
    --------
    >>> intra_list_diversity([[0, 1, 2]], [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    array([0.66666667])
    """
    vn, norms = _normalise_rows(item_vectors)
    top = _check_lists(recommended, vn.shape[0])
    return _ild_multi(top, (top.shape[1],), vn, norms, max_elements)[top.shape[1]]


def _ild_multi(top: np.ndarray, ks: Any, vn: Any, norms: np.ndarray,
               max_elements: int = 4_000_000) -> dict[int, np.ndarray]:
    """Intra-list diversity of ``top[:, :k]`` for every k in ``ks`` (unit vectors ``vn``).

    The per-user vector sum is accumulated densely over list positions, so larger cut-offs
    reuse the work of smaller ones.
    """
    ks = sorted(set(int(k) for k in ks))
    n_users, width = top.shape
    d = vn.shape[1]
    valid = top >= 0
    safe = np.where(valid, top, 0)
    nonzero = valid & (norms[safe] > 0)
    sq = {k: np.zeros(n_users) for k in ks}
    sparse = sp.issparse(vn)
    if sparse:
        vn = sp.csr_matrix(vn)
        vn.sort_indices()
        row_nnz = np.diff(vn.indptr)
        cost = np.where(valid, row_nnz[safe], 0).sum(axis=1)
    else:
        cost = np.full(n_users, width * d)
    per_user_acc = max(d, 1)
    bounds = _chunks_by_cost(np.maximum(cost, per_user_acc), max_elements)
    for a, b in bounds:
        nb = b - a
        acc = np.zeros((nb, d))
        prev = 0
        for k in ks:
            kk = min(k, width)
            if kk > prev:
                blk = top[a:b, prev:kk]
                vb = blk >= 0
                if sparse:
                    it = np.int32 if max(vn.nnz, nb * d) < 2**31 - 1 else np.int64
                    rows = np.nonzero(vb)[0].astype(it)
                    items = blk[vb]
                    lens = row_nnz[items]
                    total = int(lens.sum())
                    if total:
                        first = (vn.indptr[items] - (np.cumsum(lens) - lens)).astype(it)
                        offs = np.repeat(first, lens)
                        offs += np.arange(total, dtype=it)
                        keys = np.repeat(rows * it(d), lens)
                        keys += vn.indices[offs]
                        acc += np.bincount(keys, weights=vn.data[offs],
                                           minlength=nb * d).reshape(nb, d)
                else:
                    acc += (vn[np.where(vb, blk, 0)] * vb[:, :, None]).sum(axis=1)
                prev = kk
            sq[k][a:b] = np.einsum("ij,ij->i", acc, acc)
    out: dict[int, np.ndarray] = {}
    for k in ks:
        m = valid[:, :k].sum(axis=1).astype(np.float64)
        z = nonzero[:, :k].sum(axis=1).astype(np.float64)
        res = np.full(n_users, np.nan)
        np.divide(sq[k] - z, m * (m - 1.0), out=res, where=m >= 2)
        res = 1.0 - res
        out[k] = np.clip(res, 0.0, 2.0, out=res)
    return out


def _chunks_by_cost(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split ``0..len(cost)`` into consecutive ranges whose summed cost is about ``budget``."""
    n = len(cost)
    if n == 0:
        return []
    csum = np.cumsum(np.maximum(cost, 1))
    bounds = []
    a = 0
    while a < n:
        base = csum[a - 1] if a else 0
        b = int(np.searchsorted(csum, base + budget, side="right"))
        b = max(b, a + 1)
        bounds.append((a, min(b, n)))
        a = b
    return bounds
