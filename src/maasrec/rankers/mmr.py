"""Maximal marginal relevance (MMR): re-rank candidate lists for diversity.

Carbonell & Goldstein (SIGIR 1998): pick items one at a time, each maximising::

    lambda_ * rel(i) - (1 - lambda_) * max_{j already picked} sim(i, j)

so that an item very similar to one already in the list must be much more relevant to
be picked next. ``lambda_ = 1`` is the relevance order; ``lambda_ = 0`` picks the most
relevant item first and then only avoids similarity.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._validation import check_choice, check_int, check_number
from ..exceptions import DataError
from .ann import check_vectors
from .topk import _check_k, _rank_candidates

__all__ = ["MMR"]

logger = logging.getLogger(__name__)

_SIMILARITIES = ("cosine", "dot")
#: Work-array budget (elements) of the candidate-vector block.
_BLOCK_ELEMENTS = 8 * 2**20


class MMR:
    """Maximal-marginal-relevance re-ranking of candidate lists, vectorised over users.

    Parameters
    ----------
    lambda_ : float, default 0.5
        Relevance weight in ``[0, 1]``; ``1 - lambda_`` weighs the redundancy penalty.
        With ``lambda_ = 1`` the output is exactly the relevance order (ties by lower
        item index).
    similarity : {"cosine", "dot"}, default "cosine"
        Item-item similarity of the item vectors (text embeddings, learned factors...).
    n_candidates : int, optional
        Re-rank only the ``n_candidates`` most relevant candidates of each list. In
        :meth:`recommend`, the number of candidates fetched from the model (default
        ``max(100, 5 k)``).

    Notes
    -----
    Relevance is min-max scaled to ``[0, 1]`` within each user's candidate list (so
    ``lambda_`` means the same for every model, whatever the scale of its scores);
    cosine similarity lies in ``[-1, 1]``. Equal objectives go to the more relevant
    candidate, then to the lower item index. Cost: ``O(k * n_candidates * dim)`` per
    user.

    Examples
    --------
    >>> import numpy as np
    >>> vecs = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    >>> idx, _ = MMR(lambda_=0.5).rerank([[0, 1, 2]], [[1.0, 0.9, 0.8]], vecs, k=2)
    >>> idx
    array([[0, 2]])
    """

    def __init__(self, lambda_: float = 0.5, similarity: str = "cosine",
                 n_candidates: int | None = None):
        self.lambda_ = lambda_
        self.similarity = similarity
        self.n_candidates = n_candidates

    def __repr__(self) -> str:
        return (f"MMR(lambda_={self.lambda_!r}, similarity={self.similarity!r}, "
                f"n_candidates={self.n_candidates!r})")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters.

        Parameters
        ----------
        deep : bool
            Ignored.

        Returns
        -------
        dict
        """
        return {"lambda_": self.lambda_, "similarity": self.similarity,
                "n_candidates": self.n_candidates}

    def _validate(self) -> None:
        check_number("lambda_", self.lambda_, low=0.0, high=1.0)
        check_choice("similarity", self.similarity, _SIMILARITIES)
        if self.n_candidates is not None:
            check_int("n_candidates", self.n_candidates, low=1)

    def rerank(self, candidates, scores, item_vectors, k: int = 10
               ) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank each row's candidates.

        Parameters
        ----------
        candidates : array-like of int, shape (n_users, n_candidates)
            Item indices (rows of ``item_vectors``), any order; ``-1`` = empty slot.
        scores : array-like of float, same shape
            Relevance of each candidate (higher is better; ``-inf`` = not a candidate).
        item_vectors : array-like of float, shape (n_items, dim)
        k : int, default 10
            Length of the output lists, capped at ``n_items`` (the rows of
            ``item_vectors``).

        Returns
        -------
        indices : np.ndarray of int64, shape (n_users, k)
            Item indices in MMR order; ``-1`` pads rows with fewer than ``k`` candidates.
        scores : np.ndarray of float32, shape (n_users, k)
            The candidates' original relevance scores, in the MMR order (so not
            necessarily decreasing); ``-inf`` for padding.

        Raises
        ------
        DataError
            Bad parameters, shapes, NaN scores or vectors, indices out of range.
        """
        self._validate()
        k = _check_k(k)
        vectors = check_vectors(item_vectors, "item_vectors")
        k = _check_k(k, len(vectors))  # never more columns than items
        cand = np.asarray(candidates)
        rel = np.asarray(scores, dtype=np.float64)
        if cand.ndim != 2 or rel.shape != cand.shape:
            raise DataError(f"candidates {cand.shape} and scores {rel.shape} must be 2-d arrays "
                            f"of the same shape")
        if np.isnan(rel).any():
            raise DataError("scores contain NaN")
        width = cand.shape[1] if self.n_candidates is None else min(cand.shape[1],
                                                                   int(self.n_candidates))
        # relevance order (ties: lower item index), repeats and -inf removed
        order_idx, order_rel = _rank_candidates(cand, rel, max(width, 1), n_items=len(vectors))
        if float(self.lambda_) == 1.0 or width == 0:
            return _pad(order_idx[:, :k], order_rel[:, :k].astype(np.float32), k)
        out_idx = np.full((len(cand), k), -1, dtype=np.int64)
        out_val = np.full((len(cand), k), -np.inf, dtype=np.float32)
        step = max(1, _BLOCK_ELEMENTS // max(1, width * vectors.shape[1]))
        for a in range(0, len(cand), step):
            b = min(len(cand), a + step)
            out_idx[a:b], out_val[a:b] = self._greedy(order_idx[a:b], order_rel[a:b], vectors, k)
        return out_idx, out_val

    def _greedy(self, idx: np.ndarray, rel: np.ndarray, vectors: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
        n, width = idx.shape
        lam = float(self.lambda_)
        valid = idx >= 0
        emb = vectors[np.maximum(idx, 0)].astype(np.float64)  # [n, width, d]
        if self.similarity == "cosine":
            norms = np.linalg.norm(emb, axis=2, keepdims=True)
            emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
        r = np.asarray(rel, dtype=np.float64)
        finite = valid & np.isfinite(r)
        lo = np.where(finite, r, np.inf).min(axis=1, keepdims=True)
        hi = np.where(finite, r, -np.inf).max(axis=1, keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        with np.errstate(invalid="ignore"):
            norm_rel = np.where(finite, (r - lo) / span, 0.0)
        norm_rel[valid & np.isposinf(r)] = 1.0  # +inf relevance: as relevant as it gets
        available = valid.copy()
        max_sim = np.full((n, width), -np.inf)
        rows = np.arange(n)
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_val = np.full((n, k), -np.inf, dtype=np.float32)
        for t in range(min(k, width)):
            penalty = max_sim if t else 0.0
            obj = lam * norm_rel - (1.0 - lam) * penalty
            obj = np.where(available, obj, -np.inf)
            pick = np.argmax(obj, axis=1)  # first maximum: the more relevant candidate
            ok = available[rows, pick]
            out_idx[ok, t] = idx[rows[ok], pick[ok]]
            out_val[ok, t] = rel[rows[ok], pick[ok]]
            available[rows, pick] = False
            sim = np.einsum("rcd,rd->rc", emb, emb[rows, pick])
            max_sim = np.maximum(max_sim, sim)
        return out_idx, out_val

    def recommend(self, model: Any, users=None, k: int = 10, *, item_vectors=None,
                  **recommend_kwargs) -> tuple[np.ndarray, np.ndarray]:
        """Diversified recommendations from a fitted model: its top candidates, re-ranked.

        Parameters
        ----------
        model : Recommender
            Fitted.
        users : raw user id(s), optional
            As in ``model.recommend``.
        k : int, default 10
        item_vectors : array-like, shape (n_items, dim), optional
            Item vectors aligned with ``model.item_vocab_`` (e.g. text embeddings).
            Default: the model's own item vectors (``model._item_vectors()``).
        **recommend_kwargs
            Passed to ``model.recommend`` (``exclude_seen``, ``items``, ``exclude``,
            ``history``, ``retriever``...).

        Returns
        -------
        item_ids : np.ndarray, shape (n_users, k) (1-d for a single user)
            Raw item ids in MMR order, padded like ``recommend``.
        scores : np.ndarray of float32
            The model's scores of those items.

        Raises
        ------
        DataError
            The model has no item vectors and none were given.
        """
        self._validate()
        k = _check_k(k, model.n_items_)  # as recommend: capped at the catalogue
        if item_vectors is None:
            hook = getattr(model, "_item_vectors", None)
            item_vectors = hook() if hook is not None else None
            if item_vectors is None:
                raise DataError(
                    f"MMR needs item vectors: {type(model).__name__} has none, so pass "
                    f"item_vectors=[n_items, dim] aligned with model.item_vocab_ (e.g. text "
                    f"embeddings)")
        fetch = int(self.n_candidates) if self.n_candidates is not None else max(100, 5 * k)
        ids, scores = model.recommend(users, k=max(fetch, k), **recommend_kwargs)
        single = ids.ndim == 1
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
        real = np.isfinite(scores)
        cand = np.full(ids.shape, -1, dtype=np.int64)
        if real.any():
            cand[real] = model.item_vocab_.index(list(ids[real]))
        vectors = as_item_vectors(item_vectors, model.n_items_)
        idx, val = self.rerank(cand, scores, vectors, k=k)
        out = model._ids_with_padding(idx)
        return (out[0], val[0]) if single else (out, val)


def as_item_vectors(x, n_items: int) -> np.ndarray:
    """Check that item vectors have one row per item."""
    v = check_vectors(x, "item_vectors")
    if len(v) != n_items:
        raise DataError(f"item_vectors has {len(v)} rows but the model has {n_items} items")
    return v


def _pad(idx: np.ndarray, val: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if idx.shape[1] < k:
        n = len(idx)
        idx = np.concatenate([idx, np.full((n, k - idx.shape[1]), -1, np.int64)], axis=1)
        val = np.concatenate([val, np.full((n, k - val.shape[1]), -np.inf, np.float32)], axis=1)
    return idx, val
