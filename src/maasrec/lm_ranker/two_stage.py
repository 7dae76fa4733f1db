"""Two-stage recommendation: a fast first stage retrieves, a second stage re-ranks.

:class:`CandidateReranker` holds what every two-stage model shares:

- ``recommend`` asks the first stage for its top ``n_candidates`` (with every exclusion
  and filter of the call: ``exclude_seen``, ``items``, ``exclude``, ``history``,
  ``retriever``), scores only those candidates with the second stage, optionally blends
  the two scores, and returns the top ``k`` -- never an item outside the first stage's
  candidates, so never an excluded one;
- ``rank_indices`` (used by :func:`maasrec.metrics.evaluate`) does the same by user
  index with index-level exclusions and allow-lists; ``score`` gives the final score of
  a candidate and ``-inf`` for any other item. A two-stage model has no score for items
  outside its candidates (``scores_all_items = False``): ``score_indices`` raises, and
  ``evaluate`` ranks its lists instead of a score matrix.

:class:`TwoStage` re-ranks any recommender's candidates by any other recommender;
:class:`~maasrec.lm_ranker.LMRanker` re-ranks them by a fine-tuned language model. The
LM ranker is not itself a :class:`~maasrec.base.Recommender` (scoring the whole
catalogue with a cross-encoder is what the first stage is there to avoid), which is why
both share this base instead of ``LMRanker`` being a ``TwoStage`` of two recommenders.
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import check_int, check_number
from ..base import Recommender, _is_scalar_id, _is_seq_of_seqs, clone
from ..data.interactions import Interactions
from ..exceptions import DataError
from ..rankers.topk import TopK, _check_k, _fill_rows, _to_numpy

__all__ = ["CandidateReranker", "TwoStage", "blend_scores"]

logger = logging.getLogger(__name__)


def _standardise(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row z-scores over the valid entries (0 where a row is constant)."""
    n = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    xv = np.where(valid, x, 0.0)
    mean = xv.sum(axis=1, keepdims=True) / n
    var = (np.where(valid, (x - mean) ** 2, 0.0)).sum(axis=1, keepdims=True) / n
    std = np.sqrt(var)
    return np.where(std > 0, (np.where(valid, x, mean) - mean) / np.where(std > 0, std, 1.0), 0.0)


def blend_scores(second: np.ndarray, first: np.ndarray, valid: np.ndarray,
                 alpha: float) -> np.ndarray:
    """Blend second- and first-stage candidate scores.

    Parameters
    ----------
    second, first : np.ndarray, shape (n, C)
        Scores of each row's candidates.
    valid : np.ndarray of bool, shape (n, C)
        Real candidates (False for padding slots).
    alpha : float in [0, 1]
        Weight of the first stage. 0 returns ``second`` unchanged; otherwise both are
        standardised per row over the valid candidates (z-scores) and mixed as
        ``(1 - alpha) * z(second) + alpha * z(first)``.

    Returns
    -------
    np.ndarray of float32, shape (n, C)
        ``-inf`` on invalid slots.
    """
    second = np.asarray(second, dtype=np.float64)
    if alpha == 0:
        out = second
    else:
        first = np.asarray(first, dtype=np.float64)
        out = (1.0 - alpha) * _standardise(second, valid) + alpha * _standardise(first, valid)
    return np.where(valid, out, -np.inf).astype(np.float32)


def _check_nested(model: Recommender, name: str) -> None:
    """A loaded nested model must exist and share ``model``'s vocabularies (load check)."""
    from ..exceptions import ModelFormatError

    where = getattr(model, "_load_where", "the model directory")
    sub = getattr(model, name, None)
    if not isinstance(sub, Recommender) or not sub.is_fitted:
        raise ModelFormatError(f"{where}: the nested model {name!r} is missing")
    for vocab in ("user_vocab_", "item_vocab_"):
        a, b = getattr(model, vocab), getattr(sub, vocab)
        if len(a) != len(b) or not np.array_equal(a.ids, b.ids):
            raise ModelFormatError(f"{where}: the nested model {name!r} has another "
                                   f"{vocab} ({len(b)} ids) than the model ({len(a)} ids)")


class CandidateReranker(Recommender):
    """Base of two-stage recommenders (see the module docstring).

    Subclasses set ``n_candidates`` and ``alpha`` parameters and implement
    :meth:`_first_stage` (the fitted first stage) and :meth:`_second_scores`.
    """

    supports_history = True
    scores_all_items = False

    def _check_loaded(self) -> None:
        # the nested models index the same catalogue and users as this one
        for name in self._nested_names():
            _check_nested(self, name)

    def _nested_names(self) -> tuple[str, ...]:
        return ()

    def _first_stage(self) -> Recommender:
        raise NotImplementedError

    def _second_scores(self, user_idx: np.ndarray | None, sequences: list[np.ndarray] | None,
                       candidates: np.ndarray) -> np.ndarray:
        """Second-stage scores ``[n, C]`` of each row's candidates (item indices, -1 = none).

        Rows are known users (``user_idx``) or users given by ordered histories
        (``sequences``, item indices oldest first). Values at -1 slots are ignored.
        """
        raise NotImplementedError

    def _validate_reranker_params(self) -> None:
        check_int("n_candidates", self.n_candidates, low=1)
        check_number("alpha", self.alpha, low=0.0, high=1.0)

    # -- shared scoring ---------------------------------------------------------------------
    def _check_k_candidates(self, k: int) -> None:
        if k > self.n_candidates:
            raise DataError(
                f"k={k} is larger than n_candidates={self.n_candidates}: the second stage only "
                f"re-ranks the first stage's top n_candidates items; ask for k <= "
                f"{self.n_candidates} or set n_candidates >= {k}"
            )

    def _final(self, user_idx, sequences, cand: np.ndarray, first: np.ndarray) -> np.ndarray:
        valid = cand >= 0
        second = np.full(cand.shape, -np.inf, dtype=np.float32)
        if valid.any():
            second = np.asarray(self._second_scores(user_idx, sequences, cand), dtype=np.float32)
        return blend_scores(second, first, valid, float(self.alpha))

    def _candidates(self, user_idx: np.ndarray, exclude=None, allow=None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The first stage's top ``n_candidates`` items of known users and their scores.

        ``exclude``/``allow`` as in :meth:`~maasrec.base.Recommender.rank_indices`
        (``-1``/``-inf`` pad rows with fewer candidates).
        """
        width = min(int(self.n_candidates), self.n_items_)
        cand, first = self._first_stage().rank_indices(user_idx, width, exclude=exclude,
                                                       allow=allow)
        return np.asarray(cand, dtype=np.int64), np.asarray(first, dtype=np.float32)

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        raise DataError(
            f"{type(self).__name__} scores only its first stage's top n_candidates="
            f"{self.n_candidates} items per user, not the whole catalogue: use recommend(), "
            f"rank_indices() or score() (-inf outside the candidates)")

    def rank_indices(self, user_idx, k: int, *, exclude=None, allow=None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of known users by index: the first stage's candidates, re-ranked.

        The first stage picks its top ``n_candidates`` items with ``exclude``/``allow``
        applied (as ``recommend`` does with its filters); the second stage re-ranks
        them. See :meth:`maasrec.base.Recommender.rank_indices`.

        Parameters
        ----------
        user_idx : array-like of int, shape (b,)
        k : int
            At most ``n_candidates`` (after capping at ``n_items_``).
        exclude, allow : optional
            As in :meth:`maasrec.base.Recommender.rank_indices`.

        Returns
        -------
        item_idx : np.ndarray of int64, shape (b, min(k, n_items))
        scores : np.ndarray of float32

        Raises
        ------
        DataError
            ``k > n_candidates``; bad indices or filters.
        """
        idx = self._check_user_indices(user_idx)
        k = _check_k(k, self.n_items_)
        self._check_k_candidates(k)
        cand, first = self._candidates(idx, exclude=exclude, allow=allow)
        final = self._final(idx, None, cand, first)
        return TopK(k).rank_candidates(cand, final, n_items=self.n_items_)

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Final scores of (user, item) pairs; ``-inf`` where the item is not a candidate
        (seen, or outside the first stage's top ``n_candidates``)."""
        out = np.full(len(u), -np.inf, dtype=np.float32)
        uniq, inv = np.unique(u, return_inverse=True)
        inv = np.asarray(inv).ravel()
        step = self._block_size(None)
        for start in range(0, len(uniq), step):
            block = uniq[start:start + step]
            cand, first = self._candidates(block, exclude=self.seen_[block])
            final = self._final(block, None, cand, first)
            sel = np.flatnonzero((inv >= start) & (inv < start + len(block)))
            rows = inv[sel] - start
            match = (cand[rows] == i[sel, None]) & (cand[rows] >= 0)
            has = match.any(axis=1)
            col = match.argmax(axis=1)
            out[sel[has]] = final[rows[has], col[has]]
        return out

    # -- recommend ------------------------------------------------------------------------
    def recommend(self, users=None, k: int = 10, *, exclude_seen: bool = True, items=None,
                  exclude=None, history=None, batch_size: int | None = None, retriever=None):
        """Top-k items: the first stage's candidates re-ranked by the second stage.

        Parameters are those of :meth:`maasrec.base.Recommender.recommend`; every
        exclusion and filter (and ``history``, ``retriever``, ``batch_size``) is applied
        by the first stage when it picks the ``n_candidates`` candidates, so the result
        never holds an item outside them.

        Parameters
        ----------
        users : raw user id or sequence of raw user ids, optional
        k : int, default 10
            Capped at the number of items first (as in ``Recommender.recommend``); then
            at most ``n_candidates``.
        exclude_seen : bool, default True
        items, exclude : optional
            Allow-/deny-lists (one list, or one list per user).
        history : sequence of raw item ids, or one sequence per user, optional
            Cold users, given by their items **oldest first** (the order matters to the
            second stage when it reads histories, as the LM ranker does).
        batch_size : int, optional
            Users per block in the first stage.
        retriever : optional
            Passed to the first stage.

        Returns
        -------
        item_ids : np.ndarray, shape (n_users, min(k, n_items)) (1-d for a single user)
        scores : np.ndarray of float32
            Final scores; ``-inf`` (id ``-1``/None) pads rows with fewer than
            ``min(k, n_items_)`` candidates.

        Raises
        ------
        DataError
            ``k > n_candidates``, and everything the first stage raises.
        """
        self._check_fitted()
        k = _check_k(k, self.n_items_)  # capped at the catalogue, as in Recommender.recommend
        self._check_k_candidates(k)
        fs = self._first_stage()
        ids, first = fs.recommend(users, k=int(self.n_candidates), exclude_seen=exclude_seen,
                                  items=items, exclude=exclude, history=history,
                                  batch_size=batch_size, retriever=retriever)
        single = np.ndim(first) == 1
        if single:
            ids, first = ids[None, :], first[None, :]
        first = np.asarray(first, dtype=np.float32)
        valid = np.isfinite(first)
        cand = np.full(first.shape, -1, dtype=np.int64)
        if valid.any():
            cand[valid] = self.item_vocab_.index(list(np.asarray(ids, dtype=object)[valid]))
        user_idx, sequences = None, None
        if history is not None:
            if _is_seq_of_seqs(history):
                hist = list(history)
            elif isinstance(history, (list, tuple)) and len(history) == 0:
                hist = []
            else:
                hist = [list(history)]
            sequences = self._history_indices(hist)
        else:
            users = [users] if _is_scalar_id(users) else list(users)
            user_idx = self.user_vocab_.index(users)
        final = self._final(user_idx, sequences, cand, first)
        idx, vals = TopK(k).rank_candidates(cand, final, n_items=self.n_items_)
        out = self._ids_with_padding(idx)
        if single:
            return out[0], vals[0]
        return out, vals


class TwoStage(CandidateReranker):
    """Any recommender re-ranking another's candidates.

    Parameters
    ----------
    retriever : Recommender
        First stage (cloned and fitted in ``fit``): proposes the ``n_candidates`` best
        items per user, with the exclusions and filters of each call.
    ranker : Recommender
        Second stage (cloned and fitted on the same data): scores the candidates.
    n_candidates : int, default 100
    alpha : float in [0, 1], default 0.0
        Weight of the retriever's score in the final score (per-user z-scores of both,
        see :func:`blend_scores`); 0 ranks by the ranker alone.

    Attributes
    ----------
    retriever_ : Recommender
    ranker_ : Recommender
        The fitted stages (saved in sub-directories of the model directory).

    Examples
    --------
    >>> from maasrec.models import ALS, EASE
    >>> model = TwoStage(EASE(), ALS(factors=32), n_candidates=50)   # doctest: +SKIP
    """

    def __init__(self, retriever: Recommender | None = None, ranker: Recommender | None = None,
                 n_candidates: int = 100, alpha: float = 0.0):
        self.retriever = retriever
        self.ranker = ranker
        self.n_candidates = n_candidates
        self.alpha = alpha

    def _validate_params(self) -> None:
        for name in ("retriever", "ranker"):
            value = getattr(self, name)
            if not isinstance(value, Recommender):
                raise DataError(f"TwoStage needs a {name} (a maasrec Recommender such as "
                                f"EASE()), got {value!r}")
        if not self.ranker.scores_all_items:
            raise DataError(f"TwoStage's ranker must score every item it is given; "
                            f"{type(self.ranker).__name__} ranks only its own candidates "
                            f"(use it as the retriever, or nest the stages the other way)")
        self._validate_reranker_params()

    def _implicit_feedback(self) -> bool:
        # the nested models apply their own policy for values <= 0 (an explicit
        # ranker keeps them)
        return False

    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None) -> None:
        self.retriever_ = clone(self.retriever).fit(
            data, item_features=item_features, user_features=user_features, validation=validation)
        self.ranker_ = clone(self.ranker).fit(
            data, item_features=item_features, user_features=user_features, validation=validation)

    def _nested_names(self) -> tuple[str, ...]:
        return ("retriever_", "ranker_")

    def _first_stage(self) -> Recommender:
        return self.retriever_

    def _second_scores(self, user_idx, sequences, candidates):
        r = self.ranker_
        if user_idx is not None:
            S = r.score_indices(np.asarray(user_idx))
        else:
            H = self._history_matrix([None] * len(sequences), sequences)
            S = np.array(_to_numpy(r._score_sequences(sequences) if r.ordered_history
                                   else r._score_history(H)), dtype=np.float32)
            empty = np.diff(H.indptr) == 0
            if empty.any():
                _fill_rows(S, np.flatnonzero(empty), self._popularity())
        S = np.asarray(S, dtype=np.float32)
        return np.take_along_axis(S, np.maximum(candidates, 0), axis=1)
