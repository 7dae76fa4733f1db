"""Top-k ranking metrics: precision, recall, F1, NDCG, MAP, MRR, hit rate and AUC.

Two layers, one implementation:

* ``*_from_hits(hits, n_relevant, k)`` work on a boolean hit matrix ``hits[n_users, K]``
  (``hits[u, j]`` is True when the item at rank ``j + 1`` of user ``u``'s list is relevant)
  and the number of relevant items per user, vectorised over users. :func:`evaluate`
  uses these.
* ``*_at_k(recommended, relevant, k)`` score arbitrary top-k lists of raw ids (any
  hashable) for one user (returns a float) or many users (returns an array), e.g. lists
  produced by another library. They build the hit matrix with :func:`hits_from_lists`
  and call the functions above.

Definitions (binary relevance; ``hits@k`` = number of relevant items among the first
``k`` positions; ``R`` = number of relevant items of the user):

============  ==========================================================================
precision@k   ``hits@k / k`` (also when the list is shorter than k: empty slots are misses)
recall@k      ``hits@k / R``
f1@k          ``2 P R / (P + R)``, 0 when both are 0
ndcg@k        ``DCG@k / IDCG@k``, ``DCG@k = sum_{j<=k, rel_j} 1 / log2(j + 1)``,
              ``IDCG@k = sum_{j=1}^{min(R, k)} 1 / log2(j + 1)``
map@k         ``sum_{j<=k, rel_j} precision@j / min(R, k)``
mrr@k         ``1 / j`` for the rank ``j`` of the first relevant item within k, else 0
hit@k         ``1`` if ``hits@k > 0`` else 0
auc           per user, over its candidate set: the fraction of (positive, negative)
              pairs with the positive scored higher, ties counting 1/2
============  ==========================================================================

Recall, NDCG and MAP are undefined (NaN) when ``R == 0``; :func:`evaluate` never scores
such users. These are the RecBole / Microsoft Recommenders definitions; other libraries
differ (see the notes on each function).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError

__all__ = [
    "RANKING_METRICS",
    "auc_from_scores",
    "f1_at_k",
    "f1_from_hits",
    "hit_rate_at_k",
    "hit_rate_from_hits",
    "hits_from_lists",
    "map_at_k",
    "map_from_hits",
    "mrr_at_k",
    "mrr_from_hits",
    "ndcg_at_k",
    "ndcg_from_hits",
    "precision_at_k",
    "precision_from_hits",
    "ranking_metrics_from_hits",
    "recall_at_k",
    "recall_from_hits",
]

#: Names of the per-user ranking metrics computed from a hit matrix.
RANKING_METRICS = ("precision", "recall", "f1", "ndcg", "map", "mrr", "hit")


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def check_k(k: Any, name: str = "k") -> int:
    """Validate one cut-off: a positive integer (not a bool)."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise DataError(f"{name} must be a positive integer, got {k!r} ({type(k).__name__})")
    if k <= 0:
        raise DataError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def check_ks(k: Any) -> tuple[int, ...]:
    """Validate ``k``: one positive int or a non-empty sequence of them; sorted, unique."""
    if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
        return (check_k(k),)
    if isinstance(k, (str, bytes)) or not isinstance(k, Iterable):
        raise DataError(f"k must be a positive integer or a sequence of them, got {k!r}")
    ks = [check_k(x) for x in k]
    if not ks:
        raise DataError("k must not be empty; give at least one cut-off such as k=10")
    return tuple(sorted(set(ks)))


def _as_hits(hits: Any, n_relevant: Any) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(hits)
    if h.ndim == 1:
        h = h[None, :]
    if h.ndim != 2:
        raise DataError(f"hits must be a 2-d [n_users, K] array, got shape {h.shape}")
    if h.dtype != bool:
        if h.size and not np.isin(h, (0, 1)).all():
            raise DataError("hits must be boolean (or 0/1): hits[u, j] marks a relevant item")
        h = h.astype(bool)
    n = np.asarray(n_relevant)
    if n.ndim == 0:
        n = n[None]
    if n.shape != (h.shape[0],):
        raise DataError(
            f"n_relevant must have one entry per row of hits ({h.shape[0]}), got shape {n.shape}"
        )
    if n.size and (n.dtype.kind not in "iu" and not np.all(np.mod(n, 1) == 0)):
        raise DataError("n_relevant must hold whole numbers (counts of relevant items)")
    n = n.astype(np.int64)
    if n.size and n.min() < 0:
        raise DataError(f"n_relevant must be >= 0, got {int(n.min())}")
    n_hits = h.sum(axis=1)
    bad = n_hits > n
    if bad.any():
        u = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"row {u} has {int(n_hits[u])} hits but n_relevant={int(n[u])}; a list cannot hit "
            f"more relevant items than exist (duplicated items in a list?)"
        )
    return h, n


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, NaN where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


# ---------------------------------------------------------------------------
# hit-matrix layer
# ---------------------------------------------------------------------------
def ranking_metrics_from_hits(hits: Any, n_relevant: Any, k: int | Sequence[int] | None = None,
                              metrics: Sequence[str] = RANKING_METRICS) -> dict[str, np.ndarray]:
    """Several ranking metrics at several cut-offs from one hit matrix.

    Shares the cumulative sums between metrics, so asking for all of them costs about
    as much as asking for one.

    Parameters
    ----------
    hits : array-like of bool, shape (n_users, K)
        ``hits[u, j]`` is True when the item at rank ``j + 1`` of user ``u`` is relevant.
        Padding slots (lists shorter than K) are False.
    n_relevant : array-like of int, shape (n_users,)
        Number of relevant items of each user (``R``), at least the number of hits.
    k : int or sequence of int, optional
        Cut-offs; default ``K``. A cut-off above ``K`` treats the missing ranks as misses.
    metrics : sequence of str, default all of :data:`RANKING_METRICS`
        Any of ``"precision", "recall", "f1", "ndcg", "map", "mrr", "hit"``.

    Returns
    -------
    dict of str -> np.ndarray of float64
        Keys ``"<metric>@<k>"``, one value per user.

    Raises
    ------
    DataError
        On a bad shape, a non-positive ``k``, an unknown metric, or more hits than
        relevant items in a row.

    Examples
    --------
    >>> out = ranking_metrics_from_hits([[True, False, True]], [2], k=3, metrics=["ndcg"])
    >>> round(float(out["ndcg@3"][0]), 4)
    0.9197
    """
    h, n_rel = _as_hits(hits, n_relevant)
    ks = check_ks(h.shape[1] if k is None else k)
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise DataError(
            f"unknown ranking metric(s) {unknown}; valid names are {list(RANKING_METRICS)}"
        )
    kmax = max(ks)
    n_users, width = h.shape
    # ranks beyond the list are misses: keep min(kmax, width) columns (at least one)
    cols = max(1, min(kmax, width))
    if width < cols:
        h = np.concatenate([h, np.zeros((n_users, cols - width), dtype=bool)], axis=1)
    else:
        h = h[:, :cols]
    ranks = np.arange(1, cols + 1, dtype=np.float64)
    cum = np.cumsum(h, axis=1, dtype=np.int64)  # hits within the first j ranks
    need = set(metrics)
    out: dict[str, np.ndarray] = {}
    if "ndcg" in need:
        disc = 1.0 / np.log2(ranks + 1.0)
        dcg = np.cumsum(h * disc, axis=1)
        ideal = 1.0 / np.log2(np.arange(1, min(kmax, int(n_rel.max(initial=0))) + 1) + 1.0)
        idcg_table = np.concatenate([[0.0], np.cumsum(ideal)])
    if "map" in need:
        ap = np.cumsum(h * (cum / ranks), axis=1)
    if "mrr" in need:
        first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, 0)
    for kk in ks:
        c = min(kk, cols) - 1  # last stored rank within the cut-off
        n_hits = cum[:, c]
        m = np.minimum(n_rel, kk)
        prec = n_hits / float(kk)
        rec = _div(n_hits, n_rel)
        for name in metrics:
            key = f"{name}@{kk}"
            if name == "precision":
                out[key] = prec.astype(np.float64)
            elif name == "recall":
                out[key] = rec
            elif name == "f1":
                s = prec + rec
                f1 = np.where(s > 0, 2.0 * prec * rec / np.where(s > 0, s, 1.0), 0.0)
                out[key] = np.where(np.isnan(rec), np.nan, f1)
            elif name == "ndcg":
                out[key] = _div(dcg[:, c], idcg_table[m])
            elif name == "map":
                out[key] = _div(ap[:, c], m)
            elif name == "mrr":
                ok = (first > 0) & (first <= kk)
                out[key] = np.where(ok, 1.0 / np.where(ok, first, 1), 0.0)
            elif name == "hit":
                out[key] = (n_hits > 0).astype(np.float64)
    return out


def _one(name: str, hits: Any, n_relevant: Any, k: int | None) -> np.ndarray:
    h = np.asarray(hits)
    kk = check_k(k) if k is not None else (h.shape[-1] if h.ndim else 0)
    if kk == 0:
        raise DataError("hits has no columns; pass k explicitly")
    return ranking_metrics_from_hits(hits, n_relevant, kk, [name])[f"{name}@{kk}"]


def precision_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """Precision@k per user: ``hits@k / k``.

    Parameters
    ----------
    hits : array-like of bool, shape (n_users, K)
    n_relevant : array-like of int, shape (n_users,)
        Only validated (precision does not use it).
    k : int, optional
        Cut-off; default ``K``. Empty slots (short lists) count as misses, so the
        denominator is always ``k``.

    Returns
    -------
    np.ndarray of float64, shape (n_users,)

    Notes
    -----
    LensKit and Cornac divide by the list length when the list is shorter than ``k``;
    implicit's ``precision`` is ``sum(hits) / sum(min(k, R))`` pooled over users.
    """
    return _one("precision", hits, n_relevant, k)


def recall_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """Recall@k per user: ``hits@k / R`` (NaN when ``R == 0``).

    Parameters
    ----------
    hits, n_relevant, k
        As in :func:`precision_from_hits`.

    Returns
    -------
    np.ndarray of float64

    Notes
    -----
    RecBole, Cornac and Microsoft Recommenders divide by ``R``, so recall@k < 1 whenever
    ``R > k``. LensKit divides by ``min(R, k)`` (closer to "R-precision"), which gives a
    perfect list recall 1 at any k; numbers from the two are not comparable.
    """
    return _one("recall", hits, n_relevant, k)


def f1_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """F1@k per user: harmonic mean of precision@k and recall@k (0 when both are 0).

    Parameters
    ----------
    hits, n_relevant, k
        As in :func:`precision_from_hits`.

    Returns
    -------
    np.ndarray of float64
        NaN where ``R == 0``.
    """
    return _one("f1", hits, n_relevant, k)


def ndcg_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """NDCG@k per user with binary gains.

    ``DCG@k = sum over relevant ranks j <= k of 1 / log2(j + 1)``;
    ``IDCG@k = sum_{j=1}^{min(R, k)} 1 / log2(j + 1)``; NDCG = DCG / IDCG (NaN if R = 0).

    Parameters
    ----------
    hits, n_relevant, k
        As in :func:`precision_from_hits`.

    Returns
    -------
    np.ndarray of float64

    Notes
    -----
    Same as RecBole, Microsoft Recommenders and implicit. LensKit's default discount is
    ``1 / max(1, log2(j))`` (ranks 1 and 2 both weigh 1), and Cornac's ideal list is
    truncated at ``k`` from the full ground truth (the same as here for binary gains).
    """
    return _one("ndcg", hits, n_relevant, k)


def map_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """Average precision@k per user (its mean over users is MAP@k).

    ``AP@k = sum over relevant ranks j <= k of precision@j, divided by min(R, k)``
    (NaN when ``R == 0``).

    Parameters
    ----------
    hits, n_relevant, k
        As in :func:`precision_from_hits`.

    Returns
    -------
    np.ndarray of float64

    Notes
    -----
    RecBole's and implicit's definition. Others divide by ``R`` (Microsoft Recommenders'
    ``map``), by ``min(R, len(list))`` (LensKit), or use the full ranking with no cut-off
    (Cornac's ``MAP``).
    """
    return _one("map", hits, n_relevant, k)


def mrr_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """Reciprocal rank@k per user: ``1 / j`` for the first relevant rank ``j <= k``, else 0.

    Parameters
    ----------
    hits, n_relevant, k
        As in :func:`precision_from_hits`.

    Returns
    -------
    np.ndarray of float64

    Notes
    -----
    Cornac's ``MRR`` has no cut-off (it uses the full ranking).
    """
    return _one("mrr", hits, n_relevant, k)


def hit_rate_from_hits(hits: Any, n_relevant: Any, k: int | None = None) -> np.ndarray:
    """Hit@k per user: 1 if any of the first ``k`` items is relevant, else 0.

    Parameters
    ----------
    hits, n_relevant, k
        As in :func:`precision_from_hits`.

    Returns
    -------
    np.ndarray of float64
    """
    return _one("hit", hits, n_relevant, k)


# ---------------------------------------------------------------------------
# AUC from scores
# ---------------------------------------------------------------------------
_SORT_THRESHOLD = 10  # rows with more positives than this are ranked by sorting
_BLOCK_ELEMENTS = 1 << 20  # scores per work block (small blocks are recycled by malloc)


def _key_inplace(bits: np.ndarray) -> np.ndarray:
    """Turn float32 bit patterns (viewed as int32, no NaN) into order-preserving int32.

    ``-0.0`` is mapped to ``+0.0`` so equal scores get equal keys.
    """
    bits[bits == np.int32(-(2**31))] = 0
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)
    return bits


def _auc_rows(S: np.ndarray, pos_rows: np.ndarray, pos_vals: np.ndarray, n_pos: np.ndarray,
              n_excluded: np.ndarray) -> np.ndarray:
    """Per-row AUC (Mann-Whitney U with mid-ranks) of positives against the other candidates.

    ``S`` is float32 ``[b, m]`` (not modified); non-candidates hold ``-inf``
    (``n_excluded`` of them per row) and every candidate is finite. ``pos_rows``
    (ascending) and ``pos_vals`` give the row and score of each positive. Rows with few
    positives count lower/equal scores with one comparison pass per positive; the others
    sort the row and binary-search it. Returns NaN for rows without a positive or a
    negative.
    """
    b, m = S.shape
    pos_rows = np.asarray(pos_rows, dtype=np.int64)
    pos_vals = np.asarray(pos_vals, dtype=np.float32)
    n_pos = np.asarray(n_pos, dtype=np.int64)
    less = np.zeros(len(pos_rows), dtype=np.int64)  # entries strictly below (incl. excluded)
    equal = np.zeros(len(pos_rows), dtype=np.int64)  # entries equal (incl. itself)
    if len(pos_rows):
        starts = np.searchsorted(pos_rows, np.arange(b + 1))
        slot = np.arange(len(pos_rows)) - starts[pos_rows]
        step = max(1, _BLOCK_ELEMENTS // max(m, 1))
        for r0 in range(0, b, step):
            r1 = min(b, r0 + step)
            p0, p1 = int(starts[r0]), int(starts[r1])
            if p0 == p1:
                continue
            prow, pslot, pval = pos_rows[p0:p1] - r0, slot[p0:p1], pos_vals[p0:p1]
            npb = n_pos[r0:r1]
            few = np.flatnonzero((npb > 0) & (npb <= _SORT_THRESHOLD))
            many = np.flatnonzero(npb > _SORT_THRESHOLD)
            if len(few):
                sub = S[r0 + few]
                loc = np.full(r1 - r0, -1, dtype=np.int64)
                loc[few] = np.arange(len(few))
                lrow = loc[prow]
                for j in range(int(npb[few].max())):
                    sel = np.flatnonzero((lrow >= 0) & (pslot == j))
                    v = np.full(len(few), np.nan, dtype=np.float32)
                    v[lrow[sel]] = pval[sel]
                    col = v[:, None]
                    less[p0 + sel] = np.count_nonzero(sub < col, axis=1)[lrow[sel]]
                    equal[p0 + sel] = np.count_nonzero(sub == col, axis=1)[lrow[sel]]
                del sub
            if len(many):
                buf = S[r0 + many]
                buf.sort(axis=1)
                keys = _key_inplace(buf.view(np.int32)).astype(np.int64)
                del buf
                keys += (np.arange(len(many), dtype=np.int64) << 32)[:, None]
                flat = keys.ravel()
                loc = np.full(r1 - r0, -1, dtype=np.int64)
                loc[many] = np.arange(len(many))
                sel = np.flatnonzero(loc[prow] >= 0)
                lr = loc[prow[sel]]
                q = (lr << 32) + _key_inplace(pval[sel].view(np.int32).copy())
                left = np.searchsorted(flat, q, side="left")
                right = np.searchsorted(flat, q, side="right")
                less[p0 + sel] = left - lr * m
                equal[p0 + sel] = right - left
                del keys, flat
    n_posf = n_pos.astype(np.float64)
    n_neg = m - np.asarray(n_excluded, dtype=np.float64) - n_posf
    below = less - np.asarray(n_excluded, dtype=np.int64)[pos_rows]  # excluded are -inf
    mid = below + (equal + 1) / 2.0  # 1-based mid-rank among candidates, ascending
    rank_sum = np.bincount(pos_rows, weights=mid, minlength=b) if len(pos_rows) else np.zeros(b)
    u_stat = rank_sum - n_posf * (n_posf + 1) / 2.0
    return _div(u_stat, n_posf * n_neg)


def auc_from_scores(scores: Any, positive: Any, candidates: Any | None = None) -> float | np.ndarray:
    """Per-user AUC: fraction of (positive, negative) candidate pairs ranked correctly.

    A pair counts 1 when the positive has the higher score, 1/2 when the scores tie.
    Negatives are the candidates that are not positive.

    Parameters
    ----------
    scores : array-like of float, shape (n_items,) or (n_users, n_items)
        Model scores (higher is better); must be finite on candidates.
    positive : array-like of bool, same shape
        Relevant (positive) items.
    candidates : array-like of bool, same shape, optional
        Items taking part in the ranking (e.g. all items the user has not seen);
        default every item. Positives outside the candidates are ignored.

    Returns
    -------
    float or np.ndarray of float64
        One value per user (a float for 1-d input); NaN when a user has no positive or
        no negative candidate.

    Notes
    -----
    This is the full (untruncated) AUC over the candidate set. implicit's ``AUC_at_k``
    only looks at the top k and treats the rest as tied; Cornac's ``AUC`` counts ties
    as 0 and uses all non-positive items as negatives.

    Examples
    --------
    >>> auc_from_scores([0.9, 0.5, 0.5, 0.1], [False, True, False, False])
    0.5
    """
    s = np.asarray(scores, dtype=np.float64)
    single = s.ndim == 1
    if single:
        s = s[None, :]
    if s.ndim != 2:
        raise DataError(f"scores must be 1-d or 2-d, got shape {s.shape}")
    p = np.asarray(positive)
    if p.ndim == 1 and single:
        p = p[None, :]
    if p.shape != s.shape:
        raise DataError(f"positive must have the shape of scores {s.shape}, got {p.shape}")
    p = p.astype(bool)
    if candidates is None:
        c = np.ones(s.shape, dtype=bool)
    else:
        c = np.asarray(candidates)
        if c.ndim == 1 and single:
            c = c[None, :]
        if c.shape != s.shape:
            raise DataError(f"candidates must have the shape of scores {s.shape}, got {c.shape}")
        c = c.astype(bool)
    if not np.isfinite(s[c]).all():
        raise DataError("scores must be finite on candidate items (found NaN or inf)")
    S = np.where(c, s, -np.inf).astype(np.float32)
    pos = p & c
    rows, cols = np.nonzero(pos)
    out = _auc_rows(S, rows, S[rows, cols], pos.sum(axis=1), (~c).sum(axis=1))
    return float(out[0]) if single else out


# ---------------------------------------------------------------------------
# raw-id list layer
# ---------------------------------------------------------------------------
def is_pad(values: np.ndarray) -> np.ndarray:
    """Padding mask for raw ids: None, NaN, ``""`` and ``-1`` are padding."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr == -1
    if arr.dtype.kind == "f":
        return np.isnan(arr) | (arr == -1)
    if arr.dtype.kind in "US":
        return arr == arr.dtype.type("")
    if arr.dtype.kind == "b":
        return np.zeros(arr.shape, dtype=bool)
    flat = arr.ravel()
    out = np.fromiter(
        (x is None or (isinstance(x, str) and x == "")
         or (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
             and (x != x or x == -1))
         for x in flat),
        dtype=bool, count=len(flat),
    )
    return out.reshape(arr.shape)


def _is_many(recommended: Any) -> bool:
    if isinstance(recommended, np.ndarray):
        return recommended.ndim == 2
    if isinstance(recommended, (pd.Series, pd.Index)):
        return False
    if isinstance(recommended, Sequence) and not isinstance(recommended, (str, bytes)):
        return len(recommended) > 0 and all(
            isinstance(r, (list, tuple, np.ndarray, pd.Series)) for r in recommended
        )
    return False


def _to_object_matrix(rows: Sequence[Any]) -> np.ndarray:
    """Ragged rows of ids -> 2-d object array padded with None."""
    lens = [len(r) for r in rows]
    width = max(lens) if lens else 0
    out = np.full((len(rows), width), None, dtype=object)
    for i, r in enumerate(rows):
        if lens[i]:
            vals = np.empty(lens[i], dtype=object)
            vals[:] = list(r)
            out[i, : lens[i]] = vals
    return out


def dedupe_rows(top: np.ndarray) -> np.ndarray:
    """Replace repeated items in each row (after their first occurrence) by ``-1``."""
    if top.size == 0:
        return top
    order = np.argsort(top, axis=1, kind="stable")
    srt = np.take_along_axis(top, order, axis=1)
    dup = np.zeros(top.shape, dtype=bool)
    dup[:, 1:] = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    out = top.copy()
    rows = np.nonzero(dup)[0]
    out[rows, order[dup]] = -1
    return out


def hits_from_lists(recommended: Any, relevant: Any, k: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Hit matrix and relevant counts from top-k lists of raw ids.

    Parameters
    ----------
    recommended : sequence of ids, or sequence of sequences / 2-d array of ids
        One ranked list (best first) or one list per user. Padding entries (None, NaN,
        ``""``, ``-1``) are empty slots; a repeated id counts only at its first rank.
    relevant : collection of ids, or sequence of collections
        The relevant items of the user(s), aligned with ``recommended``.
    k : int, optional
        Keep the first ``k`` positions (padding short lists with misses).

    Returns
    -------
    hits : np.ndarray of bool, shape (n_users, K)
    n_relevant : np.ndarray of int64, shape (n_users,)
        Number of distinct, non-padding relevant ids.
    """
    many = _is_many(recommended)
    if many:
        if isinstance(recommended, np.ndarray):
            rec = recommended
        else:
            rec = _to_object_matrix(list(recommended))
        if isinstance(relevant, (str, bytes)) or not isinstance(relevant, Iterable):
            raise DataError("relevant must be a sequence of collections, one per user")
        rel_rows = list(relevant)
        if len(rel_rows) != rec.shape[0]:
            raise DataError(
                f"recommended has {rec.shape[0]} lists but relevant has {len(rel_rows)} sets"
            )
    else:
        if isinstance(recommended, (str, bytes)) or not isinstance(recommended, Iterable):
            raise DataError(f"recommended must be a sequence of ids, got {recommended!r}")
        rec = _to_object_matrix([list(recommended)])
        if isinstance(relevant, (str, bytes)) or not isinstance(relevant, (Collection, Iterable)):
            raise DataError(f"relevant must be a collection of ids, got {relevant!r}")
        rel_rows = [relevant]
    if k is not None:
        k = check_k(k)
        if rec.shape[1] >= k:
            rec = rec[:, :k]
        else:
            pad = np.full((rec.shape[0], k - rec.shape[1]), None, dtype=object)
            rec = np.concatenate([rec.astype(object), pad], axis=1)
    n_users, width = rec.shape
    rel_flat_list: list[Any] = []
    rel_user_list: list[int] = []
    for u, r in enumerate(rel_rows):
        if isinstance(r, (str, bytes)) or not isinstance(r, Iterable):
            raise DataError(f"relevant items of user {u} must be a collection, got {r!r}")
        items = list(r)
        rel_flat_list.extend(items)
        rel_user_list.extend([u] * len(items))
    rec_flat = rec.ravel()
    rel_flat = np.empty(len(rel_flat_list), dtype=object)
    rel_flat[:] = rel_flat_list
    rec_obj = np.empty(len(rec_flat), dtype=object)
    rec_obj[:] = list(rec_flat)
    both = np.concatenate([rec_obj, rel_flat])
    pad = is_pad(both)
    codes = np.full(len(both), -1, dtype=np.int64)
    if (~pad).any():
        codes[~pad] = pd.factorize(pd.Series(both[~pad], dtype=object))[0]
    n_codes = int(codes.max()) + 1 if len(codes) else 0
    top = codes[: len(rec_flat)].reshape(n_users, width)
    top = dedupe_rows(top)
    rel_codes = codes[len(rec_flat):]
    rel_users = np.asarray(rel_user_list, dtype=np.int64)
    keep = rel_codes >= 0
    rel_keys = np.unique(rel_users[keep] * max(n_codes, 1) + rel_codes[keep])
    n_relevant = np.bincount(rel_keys // max(n_codes, 1), minlength=n_users).astype(np.int64)
    hits = lookup_hits(np.arange(n_users), top, rel_keys, max(n_codes, 1))
    return hits, n_relevant


def lookup_hits(user_idx: np.ndarray, top: np.ndarray, rel_keys: np.ndarray,
                n_items: int) -> np.ndarray:
    """``hits[r, j] = (user_idx[r], top[r, j])`` is in the sorted key set ``rel_keys``.

    Keys are ``user * n_items + item``; ``top`` entries ``< 0`` are padding (never hits).
    """
    if top.size == 0 or len(rel_keys) == 0:
        return np.zeros(top.shape, dtype=bool)
    keys = np.asarray(user_idx, dtype=np.int64)[:, None] * n_items + top
    pos = np.searchsorted(rel_keys, keys)
    np.minimum(pos, len(rel_keys) - 1, out=pos)
    return (rel_keys[pos] == keys) & (top >= 0)


def _list_metric(name: str, recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    k = check_k(k)
    hits, n_rel = hits_from_lists(recommended, relevant, k)
    out = ranking_metrics_from_hits(hits, n_rel, k, [name])[f"{name}@{k}"]
    return out if _is_many(recommended) else float(out[0])


def precision_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """Precision@k of ranked lists of raw ids: ``hits@k / k``.

    Parameters
    ----------
    recommended : sequence of ids, or sequence of sequences
        One ranked list (best first), or one per user. Padding (None, NaN, ``""``, -1)
        and repeated ids are empty slots.
    relevant : collection of ids, or sequence of collections
        Relevant items, aligned with ``recommended``.
    k : int
        Cut-off (positive).

    Returns
    -------
    float or np.ndarray
        A float for one list, an array (one value per user) for many.

    See Also
    --------
    precision_from_hits : the definition and how peers differ.

    Examples
    --------
    >>> precision_at_k([3, 2, 1], {1, 3}, k=3)
    0.6666666666666666
    """
    return _list_metric("precision", recommended, relevant, k)


def recall_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """Recall@k of ranked lists of raw ids: ``hits@k / R`` (NaN when ``R == 0``).

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`precision_at_k`.

    Returns
    -------
    float or np.ndarray

    See Also
    --------
    recall_from_hits : the definition and how peers differ.

    Examples
    --------
    >>> recall_at_k([3, 2, 1], {1, 3, 7}, k=2)
    0.3333333333333333
    """
    return _list_metric("recall", recommended, relevant, k)


def f1_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """F1@k of ranked lists of raw ids (harmonic mean of precision@k and recall@k).

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`precision_at_k`.

    Returns
    -------
    float or np.ndarray
    """
    return _list_metric("f1", recommended, relevant, k)


def ndcg_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """NDCG@k of ranked lists of raw ids, binary gains.

    ``DCG@k = sum over relevant ranks j <= k of 1/log2(j + 1)``, normalised by the DCG of
    ``min(R, k)`` relevant items at the top.

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`precision_at_k`.

    Returns
    -------
    float or np.ndarray

    See Also
    --------
    ndcg_from_hits : the definition and how peers differ.

    Examples
    --------
    >>> round(ndcg_at_k([3, 2, 1], {1, 3}, k=3), 4)  # (1/log2(2) + 1/log2(4)) / (1 + 1/log2(3))
    0.9197
    """
    return _list_metric("ndcg", recommended, relevant, k)


def map_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """Average precision@k of ranked lists of raw ids (its mean is MAP@k).

    Sum of precision@j over relevant ranks ``j <= k``, divided by ``min(R, k)``.

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`precision_at_k`.

    Returns
    -------
    float or np.ndarray

    See Also
    --------
    map_from_hits : the definition and how peers differ.

    Examples
    --------
    >>> map_at_k([3, 2, 1], {1, 3}, k=3)  # (1/1 + 2/3) / 2
    0.8333333333333333
    """
    return _list_metric("map", recommended, relevant, k)


def mrr_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """Reciprocal rank@k of ranked lists of raw ids (1/rank of the first hit, else 0).

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`precision_at_k`.

    Returns
    -------
    float or np.ndarray

    Examples
    --------
    >>> mrr_at_k([5, 2, 1], {1, 3}, k=3)
    0.3333333333333333
    """
    return _list_metric("mrr", recommended, relevant, k)


def hit_rate_at_k(recommended: Any, relevant: Any, k: int) -> float | np.ndarray:
    """Hit@k of ranked lists of raw ids: 1 if any of the first k is relevant, else 0.

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`precision_at_k`.

    Returns
    -------
    float or np.ndarray
    """
    return _list_metric("hit", recommended, relevant, k)
