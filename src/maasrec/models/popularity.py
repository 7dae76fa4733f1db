"""Most-popular baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from ..base import Recommender
from ..data.interactions import Interactions
from ..explain import ExplainTerms

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Recommend the items with the most users in training (same list for everyone).

    The baseline every model must beat. Scores are the number of distinct training
    users of each item; ties go to the lower item index.

    ``partial_fit`` updates the counts and adds new items with theirs.

    Attributes
    ----------
    item_scores_ : np.ndarray of float32, shape (n_items,)
        Number of distinct users per item.

    Examples
    --------
    >>> from maasrec import datasets
    >>> from maasrec.models import Popularity
    >>> ds = datasets.load_movielens()
    >>> ids, scores = Popularity().fit(ds.interactions).recommend(1, k=3)
    """

    #: Nothing to search: :func:`maasrec.tune.tune` fits it once (the floor to beat).
    search_space: ClassVar[dict] = {}

    def __init__(self):
        pass

    def _fit(self, data: Interactions, **_) -> None:
        self.item_scores_ = np.asarray(
            np.bincount(data.to_csr(copy=False).indices, minlength=data.n_items),
            dtype=np.float32)

    #: partial_fit may add items (they start from their new counts)
    _partial_fit_new_items: ClassVar[bool] = True

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int) -> None:
        # online update (Recommender.partial_fit): the counts of distinct users per item,
        # recomputed from seen_ (its values > 0, as fit counts them)
        seen = self.seen_
        cols = seen.indices[seen.data > 0]
        self.item_scores_ = np.asarray(np.bincount(cols, minlength=seen.shape[1]),
                                       dtype=np.float32)

    def _check_loaded(self) -> None:
        self._loaded_float("item_scores_", (self.n_items_,))

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(user_idx), len(self.item_scores_)))

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (history.shape[0], len(self.item_scores_)))

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
        # the same list for everyone: no history item contributes
        s = float(self.item_scores_[item_idx])
        return ExplainTerms(s, np.empty(0, np.int64), np.empty(0), "popularity", s,
                            f"{int(s)} users interacted with it in training; the history "
                            f"plays no part")
