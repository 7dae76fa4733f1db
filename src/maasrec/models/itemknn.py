"""Item-based nearest neighbours (cosine / asymmetric cosine, top-k sparsified)."""

from __future__ import annotations

import logging
import os
import time
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..exceptions import DataError, ModelFormatError
from ..explain import ExplainTerms
from ._interrupt import check_deadline
from ._matrix import ImplicitMatrixMixin

__all__ = ["ItemKNN"]

logger = logging.getLogger(__name__)

#: Memory budget (bytes) of one dense block of item-item similarities during ``fit``.
SIM_BLOCK_BYTES = int(os.environ.get("MAASREC_SIM_BLOCK_BYTES", 64 * 2**20))


def _topk_per_row(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest positive entries of each row.

    Returns flat ``(row, col, value)`` triples of the kept entries; ties at the k-th
    value are broken by the lower column index (deterministic).
    """
    n_cols = block.shape[1]
    if k < n_cols:
        # stable order over (-value, column): argpartition alone is not deterministic on ties
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(block, part, axis=1).min(axis=1, keepdims=True)
        above = block > kth
        need = k - above.sum(axis=1, keepdims=True)
        equal = block == kth
        keep = above | (equal & (np.cumsum(equal, axis=1) <= need))
    else:
        keep = np.ones_like(block, dtype=bool)
    keep &= block > 0
    rows, cols = np.nonzero(keep)
    return rows, cols, block[rows, cols]


def _topk_sparse_rows(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                      k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_topk_per_row` of a sparse block given as (row, col, value) entries.

    The same triples in O(entries): entries not given are zeros, which are never kept;
    among the positive entries each row keeps its ``k`` largest, ties broken by the
    lower column index. Each (row, col) must appear once.
    """
    keep = vals > 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))  # by row, then value descending, then column
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - starts
    top = rank < k
    return rows[top], cols[top], vals[top]


#: Blocks of co-occurrences sparser than this share of their cells take the sparse path.
SPARSE_BLOCK_DENSITY = 0.05


class ItemKNN(ImplicitMatrixMixin, Recommender):
    """Item-based k-nearest-neighbours: scores are sums of similarities to the history.

    The similarity of a candidate item ``j`` to a history item ``i`` is computed from
    the item columns ``x_i, x_j`` of the (binary, or weighted) interaction matrix:

    - ``"cosine"``: ``<x_i, x_j> / (‖x_i‖ ‖x_j‖ + shrinkage)``;
    - ``"asymmetric"`` (Aiolli 2013): ``<x_i, x_j> / (‖x_i‖^{2(1-a)} ‖x_j‖^{2a} +
      shrinkage)`` with ``a = asymmetric_alpha``; ``a = 0.5`` is the cosine, larger
      ``a`` penalises popular candidates more.

    For each candidate ``j`` only its ``n_neighbors`` most similar items (with positive
    similarity) are kept. A user's score for ``j`` is the sum of ``j``'s kept
    similarities to the items in the user's history, so cold users (``history=``) are
    scored exactly like known ones.

    ``partial_fit`` folds new users and events into the histories (``seen_``) that the
    scores are computed from; the similarities are not refitted and new items are refused.

    Parameters
    ----------
    n_neighbors : int, default 50
        Neighbours kept per candidate item.
    shrinkage : float, default 10.0
        Added to the denominator (>= 0): damps similarities supported by few users
        (essential for small ``asymmetric_alpha``, where a rare history item would
        otherwise dominate).
    similarity : {"asymmetric", "cosine"}, default "asymmetric"
    asymmetric_alpha : float, default 0.2
        Exponent ``a`` of the asymmetric cosine, in [0, 1] (unused for ``"cosine"``).
        ``a -> 0`` approaches the conditional probability ``P(j | i)``.
    implicit : bool, default True
        Binary interactions (ignore ratings; values <= 0 are not interactions, see
        :meth:`~maasrec.base.Recommender.fit`); with False, the values are used.

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix of float32, shape (n_items, n_items)
        ``similarity_[i, j]``: weight of history item ``i`` for candidate ``j``; column
        ``j`` holds at most ``n_neighbors`` entries. Scores are ``history @ similarity_``.

    Notes
    -----
    **Defaults.** Chosen on the validation part of per-user random 8:1:1 splits of
    MovieLens 1M, 100K and latest-small (``benchmarks/bench_classical.py tune``,
    results in ``benchmarks/results/classical_tune.json``): the asymmetric cosine with
    ``a=0.2, n_neighbors=50, shrinkage=10`` was the best setting on 1M and within 0.006
    and 0.008 NDCG@10 of the best on 100K and latest-small (``a=0.1``, which collapses
    without shrinkage); it beat the best plain cosine by 0.015-0.02 on all three.
    Plain cosine was insensitive to ``shrinkage`` and best at 50-200 neighbours.

    The similarity matrix is computed in blocks of candidate items (sparse products,
    dense within a block of at most ``MAASREC_SIM_BLOCK_BYTES``, 64 MB by default), so
    memory stays ``O(n_items * n_neighbors)`` beyond one block. Time is
    ``O(n_items^2)`` for the top-k selection plus the sparse products.

    References
    ----------
    B. Sarwar, G. Karypis, J. Konstan, J. Riedl. Item-based collaborative filtering
    recommendation algorithms. WWW 2001.
    F. Aiolli. Efficient top-n recommendation for very large scale binary rated
    datasets. RecSys 2013.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "n_neighbors": ("int", 10, 1000, "log"),
        "shrinkage": ("float", 0.0, 200.0),
        "similarity": ("choice", ["asymmetric", "cosine"]),
        "asymmetric_alpha": ("float", 0.0, 1.0),
    }

    def __init__(self, n_neighbors: int = 50, shrinkage: float = 10.0,
                 similarity: str = "asymmetric", asymmetric_alpha: float = 0.2,
                 implicit: bool = True):
        self.n_neighbors = n_neighbors
        self.shrinkage = shrinkage
        self.similarity = similarity
        self.asymmetric_alpha = asymmetric_alpha
        self.implicit = implicit

    def _validate_params(self) -> None:
        check_int("n_neighbors", self.n_neighbors, low=1)
        check_number("shrinkage", self.shrinkage, low=0)
        check_choice("similarity", self.similarity, ("asymmetric", "cosine"))
        check_number("asymmetric_alpha", self.asymmetric_alpha, low=0, high=1)

    def _fit(self, data: Interactions, **_) -> None:
        t0 = time.perf_counter()
        X = self._matrix(data.to_csr())
        if not self.implicit:
            if (X.data < 0).any():
                raise DataError(
                    "ItemKNN with implicit=False needs non-negative interaction values, got "
                    f"{float(X.data[X.data < 0][0])!r}; use implicit=True"
                )
            X = self._signal_matrix(X)
        n = X.shape[1]
        Xt = X.T.tocsr()
        sq = np.asarray(X.multiply(X).sum(axis=0), dtype=np.float64).ravel()  # ‖x_i‖²
        a = 0.5 if self.similarity == "cosine" else float(self.asymmetric_alpha)
        cand_norm = (sq**a).astype(np.float32)  # candidate j: ‖x_j‖^{2a}
        hist_norm = (sq ** (1.0 - a)).astype(np.float32)  # history item i: ‖x_i‖^{2(1-a)}
        k = min(int(self.n_neighbors), max(n - 1, 1))
        # a block holds a few float32/bool/int64 temporaries per cell: ~24 bytes
        step = max(1, SIM_BLOCK_BYTES // (24 * max(n, 1)))
        rows, cols, vals = [], [], []
        for start in range(0, n, step):
            check_deadline("ItemKNN similarities")  # maasrec.tune's budget; nothing otherwise
            stop = min(n, start + step)
            co = Xt[start:stop] @ X  # co-occurrence, candidates x items (sparse)
            if co.nnz < SPARSE_BLOCK_DENSITY * (stop - start) * n:
                # sparse catalogue (e.g. Amazon): the same similarities on the stored
                # entries only, O(co-occurrences) instead of O(block x items)
                co = co.tocoo()
                r0, c0 = co.row.astype(np.int64), co.col.astype(np.int64)
                sim_v = co.data.copy()
                denom = cand_norm[start + r0] * hist_norm[c0] + self.shrinkage
                denom[denom == 0] = 1.0
                sim_v /= denom
                sim_v[r0 + start == c0] = 0.0  # no self-similarity
                r, c, v = _topk_sparse_rows(r0, c0, sim_v, k)
            else:
                sim = co.toarray()
                denom = cand_norm[start:stop, None] * hist_norm[None, :] + self.shrinkage
                denom[denom == 0] = 1.0  # only where the co-occurrence is 0 too
                sim /= denom
                sim[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-similarity
                r, c, v = _topk_per_row(sim, k)
            rows.append(r + start)
            cols.append(c)
            vals.append(v)
        r, c, v = (np.concatenate(x) for x in (rows, cols, vals))
        # rows of the candidate-major matrix are candidates j; transpose to history-major
        S = sp.csr_matrix((v.astype(np.float32), (c, r)), shape=(n, n))
        S.sort_indices()
        self.similarity_ = S
        logger.info("ItemKNN: %d items, %d similarities kept, %.2fs", n, S.nnz,
                    time.perf_counter() - t0)

    def _check_loaded(self) -> None:
        # the CSR parts were checked by load; its shape must be the catalogue's
        S, n = getattr(self, "similarity_", None), self.n_items_
        if not sp.issparse(S) or tuple(S.shape) != (n, n):
            raise ModelFormatError(
                f"{self._load_where}: 'similarity_' must be a sparse {n} x {n} matrix, got "
                f"{getattr(S, 'shape', type(S).__name__)}")
        if S.dtype != np.float32:
            self.similarity_ = S.astype(np.float32)

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int) -> None:
        # online update (Recommender.partial_fit): scores are computed from the user's
        # history, which partial_fit has already merged into seen_; the similarity matrix is not refitted
        # and new items are refused (refit to add items)
        return None

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return (self._matrix(history) @ self.similarity_).toarray()

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        # neighbours of item j as a candidate: column j of similarity_
        return self.similarity_[:, item_idx].T.toarray()

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
        # scores are history @ similarity_: each history item's similarity term (exact)
        x = self._matrix(row)
        sim = np.asarray(self.similarity_[x.indices, item_idx].toarray(), np.float64).ravel()
        w = x.data.astype(np.float64) * sim
        return ExplainTerms(float(w.sum()), x.indices, w, "exact", 0.0,
                            "x_uj * sim(j, item): the kept neighbour similarity of each "
                            "history item (0 when not among the item's neighbours)")
