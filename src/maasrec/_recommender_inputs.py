"""Input resolution for :class:`~maasrec.base.Recommender`: raw ids in, indices out.

What ``recommend`` (and ``score_indices``/``rank_indices``) are given -- users, ordered
histories, allow/deny lists, user indices -- is checked here and turned into item and
user indices; ranked indices are turned back into raw ids (with padding). The mixin
holds no state of its own: it reads ``user_vocab_``, ``item_vocab_`` and ``n_items_``
of the fitted model.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .data.vocab import check_ordered_ids
from .exceptions import DataError


def _is_seq_of_seqs(x: Any) -> bool:
    return (isinstance(x, (list, tuple)) and len(x) > 0
            and all(isinstance(e, (list, tuple, np.ndarray, set, frozenset)) for e in x))


def _is_scalar_id(x: Any) -> bool:
    if isinstance(x, (str, bytes, int, float, np.generic)):
        return True
    if isinstance(x, Iterable) or not isinstance(x, Hashable):  # generators, sets, arrays...
        return False
    return np.ndim(x) == 0


@dataclass
class RecommendRows:
    """The rows ``recommend`` ranks: known users by index, or users given by histories."""

    n: int  #: number of rows
    single: bool  #: one user id / one history given: the result is 1-d
    user_idx: np.ndarray | None = None  #: known users (when no history is given)
    sequences: list[np.ndarray] | None = None  #: ordered item indices of each history
    history: sp.csr_matrix | None = None  #: the same histories as a binary matrix


class InputsMixin:
    """Checks and converts the users, histories and item filters a recommender is given."""

    def _recommend_rows(self, users, history) -> RecommendRows:
        """Resolve ``recommend``'s ``users``/``history`` into the rows to rank."""
        if history is not None:
            return self._history_rows(users, history)
        if users is None:
            raise DataError("give users=... (known user ids) or history=... (cold users)")
        check_ordered_ids(users, "users")
        single = False
        if _is_scalar_id(users):
            users, single = [users], True
        elif not isinstance(users, Iterable):
            raise DataError(f"users must be an id or a sequence of ids, got {users!r}")
        users = list(users) if not isinstance(users, np.ndarray) else users
        if len(users) == 0:
            raise DataError("users is empty; give at least one user id")
        uidx = self.user_vocab_.index(users)
        return RecommendRows(n=len(uidx), single=single, user_idx=uidx)

    def _history_rows(self, users, history) -> RecommendRows:
        """Rows of users given by ``history=`` (one sequence, or one per user)."""
        single = False
        check_ordered_ids(history, "history")
        if _is_seq_of_seqs(history):
            hist = list(history)
        elif isinstance(history, (list, tuple, np.ndarray)) and (users is None or _is_scalar_id(users)):
            hist, single = [list(history)], True
        elif isinstance(history, (list, tuple)) and len(history) == 0:
            hist = []
        else:
            raise DataError(
                "history= must be a sequence of item ids (one user) or one sequence per user"
            )
        if users is not None and not _is_scalar_id(users) and len(users) != len(hist):
            raise DataError(f"{len(users)} users but {len(hist)} histories; give one per user")
        if not self.supports_history:
            raise NotImplementedError(
                f"{type(self).__name__} cannot score users from a history"
            )
        seqs = self._history_indices(hist)
        return RecommendRows(n=len(hist), single=single, sequences=seqs,
                             history=self._history_matrix(hist, seqs))

    def _history_indices(self, history: Sequence) -> list[np.ndarray]:
        """Item indices of each history, in the given order (repeats kept)."""
        out = []
        for r, h in enumerate(history):
            if h is None:
                out.append(np.empty(0, dtype=np.int64))
                continue
            if isinstance(h, (str, bytes)) or not isinstance(h, Iterable):
                raise DataError(
                    f"history[{r}] must be a sequence of item ids, got {type(h).__name__} {h!r}"
                )
            check_ordered_ids(h, f"history[{r}]")
            h = list(h)
            out.append(self.item_vocab_.index(h) if h else np.empty(0, dtype=np.int64))
        return out

    def _history_matrix(self, history: Sequence, indices: list[np.ndarray] | None = None
                        ) -> sp.csr_matrix:
        if indices is None:
            indices = self._history_indices(history)
        rows = [np.full(len(idx), r) for r, idx in enumerate(indices) if len(idx)]
        cols = [idx for idx in indices if len(idx)]
        n = len(history)
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
        else:
            r = c = np.empty(0, dtype=np.int64)
        m = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)),
                          shape=(n, self.n_items_))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def _item_filter(self, spec, n_rows: int, what: str):
        if spec is None:
            return None
        if sp.issparse(spec):
            raise DataError(f"{what}= takes raw item ids (a list, or one list per user)")
        if _is_seq_of_seqs(spec):
            if len(spec) != n_rows:
                raise DataError(
                    f"{what}= has {len(spec)} per-user lists for {n_rows} users; give one list per "
                    f"user or a single list for all"
                )
            return self._history_matrix([list(s) for s in spec])
        if _is_scalar_id(spec):
            spec = [spec]
        return self.item_vocab_.index(list(spec))

    def _ids_with_padding(self, idx: np.ndarray) -> np.ndarray:
        ids = self.item_vocab_.ids[np.maximum(idx, 0)]
        pad = idx < 0
        if pad.any():
            if ids.dtype.kind in "iuf":
                ids = ids.copy()
                ids[pad] = -1
            else:
                ids = ids.astype(object)
                ids[pad] = None
        return ids

    def _check_user_indices(self, user_idx) -> np.ndarray:
        """``user_idx`` as a 1-d int64 array of indices of known users (DataError otherwise)."""
        self._check_fitted()
        idx = np.asarray(user_idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DataError(f"user_idx must be a 1-d array of integer user indices, got "
                            f"{idx.dtype} of shape {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        bad = (idx < 0) | (idx >= self.n_users_)
        if bad.any():
            raise DataError(f"user_idx contains user index {int(idx[bad][0])}, outside "
                            f"0..{self.n_users_ - 1} (the users known at fit time)")
        return idx
