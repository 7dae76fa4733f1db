"""Filtered top-k through approximate retrieval: fetch, re-score exactly, filter, grow.

:func:`retrieve_topk` is what ``Recommender.recommend(..., retriever=...)`` runs for
models whose scores are inner products ``<user vector, item vector>``:

1. **fetch** candidates per query from the retriever. The fetch size starts at
   ``max(n_candidates, k + excluded)`` for each row (seen items and deny-lists
   counted), scaled up by ``2 n_items / len(allow)`` for allow-lists, rounded up to
   ``n_candidates * 2**j`` (so a row's result never depends on the other rows of its
   batch);
2. **re-score** every candidate exactly with the model's scorer (the inner product in
   float32), so approximate index distances never reach the output;
3. **filter** (seen items, allow- and deny-lists, global or per row) and take the
   exact top-k of what is left, ties to the lower item index;
4. **grow**: rows left with fewer than ``k`` items (or, for an exact ``flat``/``ip``
   index, whose k-th score ties the last fetched one) fetch 4x more; rows still short
   after that, or whose fetch would cover a fifth of a catalogue of more than
   :data:`SMALL_CATALOGUE` items, are scored
   **exactly** over the whole catalogue. Rows whose allow-list is small (at most
   :data:`ALLOW_EXACT_MAX` items) are scored exactly over their allowed items directly.

So filters are never violated and ``k`` is never starved by them: a row is padded only
when fewer than ``k`` items pass its filters at all.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..exceptions import DataError, MaasrecError
from .ann import FaissRetriever, as_matrix, check_vectors, fingerprint
from .topk import TopK, _check_filter, _check_k

__all__ = ["ALLOW_EXACT_MAX", "retrieve_topk"]

logger = logging.getLogger(__name__)

#: Rows whose allow-list has at most this many items are scored exactly on those items.
ALLOW_EXACT_MAX = 16384
#: A fetch covering more than this share of the catalogue is replaced by exact scoring.
EXACT_FRACTION = 0.2
#: Below this many items a fetch may cover the whole catalogue (all is cheap there).
SMALL_CATALOGUE = 1024
#: Growth rounds (each fetches 4x more) before the exact fallback.
MAX_GROW_ROUNDS = 2
#: Work-array budget (float32 elements) for re-scoring and exact scoring.
_BLOCK_ELEMENTS = 8 * 2**20


def _rows(spec, rows: np.ndarray):
    return spec[rows] if sp.issparse(spec) else spec


def _rescore(q: np.ndarray, v: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``scores[r, j] = <q[r], v[cand[r, j]]>`` in float32 (``-inf`` for ``cand < 0``).

    One matrix-vector product per row, so a row's scores do not depend on the other
    rows of the batch.
    """
    n, c = cand.shape
    out = np.empty((n, c), dtype=np.float32)
    step = max(1, _BLOCK_ELEMENTS // max(1, c * v.shape[1]))
    for a in range(0, n, step):
        b = min(n, a + step)
        gathered = np.asarray(v[np.maximum(cand[a:b], 0)], dtype=np.float32)
        out[a:b] = np.matmul(gathered, q[a:b, :, None])[:, :, 0]
    out[cand < 0] = -np.inf
    return out


def _exact_rows(q: np.ndarray, v: np.ndarray, k: int, exclude, allow, deny
                ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the whole catalogue for a few rows (blocked matmul + TopK)."""
    n = len(q)
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    ranker = TopK(k)
    step = max(1, _BLOCK_ELEMENTS // max(1, len(v)))
    for a in range(0, n, step):
        r = np.arange(a, min(n, a + step))
        scores = q[r] @ v.T
        out_idx[r], out_val[r] = ranker.rank(scores, exclude=_rows(exclude, r),
                                             allow=_rows(allow, r), deny=_rows(deny, r))
    return out_idx, out_val


def _allowed_rows(q: np.ndarray, v: np.ndarray, k: int, exclude, allow, deny
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over each row's (small) allow-list."""
    ranker = TopK(k)
    n_items = len(v)
    if not sp.issparse(allow):  # one list for every row
        cand = np.broadcast_to(allow, (len(q), len(allow)))
        return ranker.rank_candidates(cand, _rescore(q, v, cand), exclude=exclude, deny=deny,
                                      n_items=n_items)
    counts = np.diff(allow.indptr)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    cand = np.full((len(q), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(q)), counts)
    pos = np.arange(allow.nnz) - np.repeat(allow.indptr[:-1], counts)
    cand[rows, pos] = allow.indices
    return ranker.rank_candidates(cand, _rescore(q, v, cand), exclude=exclude, deny=deny,
                                  n_items=n_items)


def retrieve_topk(retriever: FaissRetriever, query_vectors, item_vectors, k: int, *,
                  exclude=None, allow=None, deny=None, return_stats: bool = False,
                  _synced: bool = False):
    """Exact-scored, filtered top-k items for query vectors, with ANN candidates.

    Parameters
    ----------
    retriever : FaissRetriever
        Fitted on ``item_vectors`` (see :meth:`FaissRetriever.sync`).
    query_vectors : array-like, shape (n_rows, dim)
        One vector per user: scores are ``query_vectors @ item_vectors.T``.
    item_vectors : array-like, shape (n_items, dim)
    k : int
    exclude : scipy.sparse matrix (n_rows, n_items), optional
        Per-row items never to return (seen items).
    allow, deny : optional
        Allow-/deny-lists as in :meth:`TopK.rank` (global index array or per row).
    return_stats : bool, default False
        Also return a dict of counters (rows searched, grown, scored exactly).

    Returns
    -------
    indices : np.ndarray of int64, shape (n_rows, min(k, n_items))
        Best first, ties by lower item index; ``-1`` = padding (a ``k`` above the
        catalogue is capped at ``n_items``).
    scores : np.ndarray of float32, shape (n_rows, min(k, n_items))
        Exact scores; ``-inf`` = padding.
    stats : dict
        Only with ``return_stats``.
    """
    k = _check_k(k)
    v = as_matrix(item_vectors, "item_vectors")
    q = check_vectors(query_vectors, "query_vectors", v.shape[1])
    n, n_items = len(q), len(v)
    k = _check_k(k, n_items)  # never more columns than items
    if not retriever.is_fitted or retriever.dim_ != v.shape[1] or (
            retriever.n_items_ != n_items) or (
            not _synced and retriever.fingerprint_ != fingerprint(v)):
        raise DataError(
            f"the retriever does not index these item_vectors ({n_items} x {v.shape[1]}; it "
            f"holds {getattr(retriever, 'n_items_', 0)} x {getattr(retriever, 'dim_', 0)}); "
            f"call retriever.sync(item_vectors) first")
    exclude = _check_filter(exclude, n, n_items, "exclude")
    allow = _check_filter(allow, n, n_items, "allow")
    deny = _check_filter(deny, n, n_items, "deny")
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    stats = {"rows": n, "searched": 0, "grown": 0, "exact": 0, "exact_allowed": 0}

    n_excl = np.zeros(n, dtype=np.int64)
    if exclude is not None:
        n_excl += np.diff(exclude.indptr)
    if deny is not None:
        n_excl += np.diff(deny.indptr) if sp.issparse(deny) else len(deny)
    if allow is None:
        n_allow = np.full(n, n_items, dtype=np.int64)
    else:
        n_allow = np.diff(allow.indptr) if sp.issparse(allow) else np.full(n, len(allow))
    ranker = TopK(k)

    # rows with small allow-lists: exact scores on the allowed items
    small = (n_allow <= ALLOW_EXACT_MAX) if allow is not None else np.zeros(n, dtype=bool)
    if small.any():
        r = np.flatnonzero(small)
        out_idx[r], out_val[r] = _allowed_rows(q[r], v, k, _rows(exclude, r), _rows(allow, r),
                                               _rows(deny, r))
        stats["exact_allowed"] = len(r)

    base = max(int(retriever.n_candidates), k)
    target = np.maximum(base, k + n_excl).astype(np.float64)
    if allow is not None:  # about 2k allowed items expected in the fetch
        target *= 2.0 * n_items / np.maximum(n_allow, 1)
    level = np.ceil(np.log2(np.maximum(target / base, 1.0))).astype(np.int64)
    pending = np.flatnonzero(~small)
    fallback: list[np.ndarray] = []
    for round_ in range(MAX_GROW_ROUNDS + 1):
        if not pending.size:
            break
        fetch_of = np.minimum(base * 2.0 ** level[pending], n_items)
        too_big = fetch_of > max(EXACT_FRACTION * n_items, min(n_items, SMALL_CATALOGUE))
        if too_big.any():
            fallback.append(pending[too_big])
            pending = pending[~too_big]
            fetch_of = fetch_of[~too_big]
        still: list[np.ndarray] = []
        for fetch in np.unique(fetch_of):
            rows = pending[fetch_of == fetch]
            fetch = int(fetch)
            cand, _ = retriever.search(q[rows], fetch)
            s = _rescore(q[rows], v, cand)
            idx, val = ranker.rank_candidates(cand, s, exclude=_rows(exclude, rows),
                                              allow=_rows(allow, rows), deny=_rows(deny, rows),
                                              n_items=n_items)
            stats["searched"] += len(rows)
            if round_:
                stats["grown"] += len(rows)
            returned = (cand >= 0).sum(axis=1)
            ok = ~np.isneginf(val[:, -1])
            if retriever.exact:
                # an exact index returned everything above its last candidate; the k-th
                # score must beat that last one, or unfetched items could tie it
                complete = (returned < fetch) | (returned >= n_items)
                last = np.where(cand >= 0, s, np.inf).min(axis=1)
                ok = complete | (ok & (val[:, -1] > last))
            out_idx[rows[ok]], out_val[rows[ok]] = idx[ok], val[ok]
            still.append(rows[~ok])
        pending = np.concatenate(still) if still else pending[:0]
        level[pending] += 2
    if pending.size:
        fallback.append(pending)
    if fallback:
        r = np.sort(np.concatenate(fallback))
        out_idx[r], out_val[r] = _exact_rows(q[r], v, k, _rows(exclude, r), _rows(allow, r),
                                             _rows(deny, r))
        stats["exact"] = len(r)
        logger.debug("retrieve_topk: %d of %d rows scored exactly", len(r), n)
    if return_stats:
        return out_idx, out_val, stats
    return out_idx, out_val


# -- glue for Recommender.recommend ----------------------------------------------------------

def _vectors(model: Any, hook: str, *args) -> np.ndarray:
    out = getattr(model, hook)(*args)
    if out is None:
        raise DataError(
            f"{type(model).__name__} does not expose {hook}() (it returned None), so it cannot "
            f"use approximate retrieval (retriever=...): only models whose scores are inner "
            f"products of user and item vectors can; use retriever='exact'")
    return out


def resolve_retriever(model: Any, retriever: Any) -> FaissRetriever | None:
    """The retriever ``recommend`` should use (None = exact ranking), synced to the model.

    Parameters
    ----------
    model : Recommender
    retriever : None, "exact" or FaissRetriever
        None uses the retriever attached with ``model.set_retriever`` (if any).

    Returns
    -------
    FaissRetriever or None

    Raises
    ------
    DataError
        An unknown ``retriever`` value, or a model without vectors (named).
    """
    if retriever is None:
        retriever = getattr(model, "_retriever", None)
        if retriever is None:
            return None
    elif isinstance(retriever, str) and retriever == "exact":
        return None
    elif not isinstance(retriever, FaissRetriever):
        raise DataError(f"retriever must be None, 'exact' or a FaissRetriever, got {retriever!r}")
    v = as_matrix(_vectors(model, "_item_vectors"), f"{type(model).__name__}._item_vectors()")
    if len(v) != model.n_items_:
        raise MaasrecError(f"{type(model).__name__}._item_vectors() returned {len(v)} rows for "
                           f"{model.n_items_} items")
    retriever.sync(v)
    return retriever


def retrieve_block(model: Any, retriever: FaissRetriever, k: int, *, user_idx=None,
                   history=None, exclude=None, allow=None, deny=None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One block of ``recommend`` through the retriever (item indices and exact scores).

    Parameters
    ----------
    model : Recommender
        Fitted, with the vector hooks (``_item_vectors``, ``_user_vectors``,
        ``_history_vectors``).
    retriever : FaissRetriever
        Synced to the model (:func:`resolve_retriever`).
    k : int
    user_idx : np.ndarray of int64, optional
        Known users (by index); or
    history : scipy.sparse.csr_matrix, optional
        Cold users' interactions. Rows with an empty history get the most popular
        items, as in exact ranking.
    exclude, allow, deny : optional
        As in :meth:`TopK.rank`.

    Returns
    -------
    indices : np.ndarray of int64, shape (n, k)
    scores : np.ndarray of float32, shape (n, k)
    """
    v = as_matrix(_vectors(model, "_item_vectors"), f"{type(model).__name__}._item_vectors()")
    if history is not None:
        n = history.shape[0]
        empty = np.diff(history.indptr) == 0
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_val = np.full((n, k), -np.inf, dtype=np.float32)
        if empty.any():
            r = np.flatnonzero(empty)
            pop = np.broadcast_to(np.asarray(model._popularity(), dtype=np.float32),
                                  (len(r), model.n_items_)).copy()
            out_idx[r], out_val[r] = TopK(k).rank(pop, exclude=_rows(exclude, r),
                                                  allow=_rows(allow, r), deny=_rows(deny, r))
        r = np.flatnonzero(~empty)
        if r.size:
            q = _vectors(model, "_history_vectors", history[r])
            q = _check_queries(model, q, len(r), v.shape[1], "_history_vectors")
            out_idx[r], out_val[r] = retrieve_topk(
                retriever, q, v, k, exclude=_rows(exclude, r), allow=_rows(allow, r),
                deny=_rows(deny, r), _synced=True)
        return out_idx, out_val
    q = _vectors(model, "_user_vectors", np.asarray(user_idx, dtype=np.int64))
    q = _check_queries(model, q, len(user_idx), v.shape[1], "_user_vectors")
    return retrieve_topk(retriever, q, v, k, exclude=exclude, allow=allow, deny=deny,
                         _synced=True)


def _check_queries(model: Any, q, n: int, dim: int, hook: str) -> np.ndarray:
    q = check_vectors(q, f"{type(model).__name__}.{hook}()")
    if q.shape != (n, dim):
        raise MaasrecError(f"{type(model).__name__}.{hook}() returned shape {q.shape}, "
                           f"expected {(n, dim)}")
    return q

