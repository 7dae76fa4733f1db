"""Scoring and ranking for :class:`~maasrec.base.Recommender`: blocks of scores to top-k.

Users are scored a block at a time (``_block_size``, bounded by
``maasrec.base.SCORE_BLOCK_BYTES``) through the subclass's scoring hooks
(``_score_users``, ``_score_history``, ``_score_sequences``, ``_similar_scores``), or
through an approximate retriever, and each block is ranked by
:class:`~maasrec.rankers.TopK` with the exclusions and filters applied.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._recommender_inputs import RecommendRows
from .exceptions import MaasrecError
from .rankers.retrieval import retrieve_block
from .rankers.topk import TopK, _as_score_block, _fill_rows, _to_numpy


class RankingMixin:
    """Ranks the rows ``recommend``, ``rank_indices`` and ``similar_items`` are asked for."""

    def _popularity(self) -> np.ndarray:
        if getattr(self, "_pop_cache", None) is None:
            self._pop_cache = np.asarray(
                (self.seen_ > 0).sum(axis=0), dtype=np.float32).ravel()
        return self._pop_cache

    def _rank_rows(self, rows: RecommendRows, k: int, *, exclude_seen: bool, allow, deny,
                   retriever, batch_size: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores ``[rows.n, k]`` of ``recommend``'s rows."""
        n = rows.n
        ranker = TopK(k)
        out_idx = np.empty((n, k), dtype=np.int64)
        out_val = np.empty((n, k), dtype=np.float32)
        step = (self._block_size(batch_size) if retriever is None or batch_size is not None
                else 4096)
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            a = allow[sl] if sp.issparse(allow) else allow
            d = deny[sl] if sp.issparse(deny) else deny
            if retriever is not None:
                out_idx[sl], out_val[sl] = self._retrieve_rows(
                    rows, sl, k, retriever, exclude_seen=exclude_seen, allow=a, deny=d)
                continue
            scores, seen = self._score_rows(rows, sl, exclude_seen)
            idx, val = ranker.rank(scores, exclude=seen, allow=a, deny=d)
            out_idx[sl], out_val[sl] = _to_numpy(idx), _to_numpy(val)
        return out_idx, out_val

    def _retrieve_rows(self, rows: RecommendRows, sl: slice, k: int, retriever, *,
                       exclude_seen: bool, allow, deny) -> tuple[np.ndarray, np.ndarray]:
        """One block of ``recommend`` through an approximate retriever."""
        h = rows.history[sl] if rows.history is not None else None
        seen = (h if h is not None else self.seen_[rows.user_idx[sl]]) if exclude_seen else None
        return retrieve_block(
            self, retriever, k, user_idx=None if h is not None else rows.user_idx[sl],
            history=h, exclude=seen, allow=allow, deny=deny)

    def _score_rows(self, rows: RecommendRows, sl: slice, exclude_seen: bool):
        """Scores ``[block, n_items]`` of one block of rows, and the items to exclude."""
        if rows.history is not None:
            h = rows.history[sl]
            scores = _as_score_block(self._score_sequences(rows.sequences[sl])
                                     if self.ordered_history else self._score_history(h))
            empty = np.diff(h.indptr) == 0
            if empty.any():
                _fill_rows(scores, np.flatnonzero(empty), self._popularity())
            seen = h if exclude_seen else None
        else:
            users = rows.user_idx[sl]
            scores = _as_score_block(self._score_users(users))
            seen = self.seen_[users] if exclude_seen else None
        if tuple(scores.shape) != (sl.stop - sl.start, self.n_items_):
            raise MaasrecError(
                f"{type(self).__name__} returned scores of shape {tuple(scores.shape)}, "
                f"expected {(sl.stop - sl.start, self.n_items_)}"
            )
        return scores, seen

    def _rank_user_indices(self, idx: np.ndarray, k: int, exclude, allow
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of known users by index, a score block at a time (``rank_indices``)."""
        out_idx = np.empty((len(idx), k), dtype=np.int64)
        out_val = np.empty((len(idx), k), dtype=np.float32)
        ranker = TopK(k)
        step = self._block_size(None)
        for start in range(0, len(idx), step):
            sl = slice(start, min(len(idx), start + step))
            scores = _as_score_block(self._score_users(idx[sl]))
            a = allow[sl] if sp.issparse(allow) else allow
            e = exclude[sl] if exclude is not None else None
            i_, v_ = ranker.rank(scores, exclude=e, allow=a)
            out_idx[sl], out_val[sl] = _to_numpy(i_), _to_numpy(v_)
        return out_idx, out_val

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = np.empty(len(u), dtype=np.float32)
        uniq, inv = np.unique(u, return_inverse=True)
        step = self._block_size(None)
        for start in range(0, len(uniq), step):
            block = self._score_users(uniq[start:start + step])
            sel = (inv >= start) & (inv < start + step)
            out[sel] = block[inv[sel] - start, i[sel]]
        return out

    def _rank_similar(self, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items most similar to items ``idx``, each item excluded from its own row."""
        out_idx = np.empty((len(idx), k), dtype=np.int64)
        out_val = np.empty((len(idx), k), dtype=np.float32)
        step = self._block_size(None)
        ranker = TopK(k)
        for start in range(0, len(idx), step):
            rows = idx[start:start + step]
            scores = np.array(self._similar_scores(rows), dtype=np.float32, copy=True)
            scores[np.arange(len(rows)), rows] = -np.inf
            out_idx[start:start + step], out_val[start:start + step] = ranker.rank(scores)
        return out_idx, out_val
