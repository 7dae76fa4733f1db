"""User-item interactions: the one data object every recommender fits on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import DataError
from .vocab import IdVocab, _as_id_array

__all__ = ["Interactions", "as_interactions"]

_USER_COLS = ("user", "user_id", "userId", "userID", "UserID", "uid", "u")
_ITEM_COLS = ("item", "item_id", "itemId", "itemID", "ItemID", "movieId", "movie_id", "MovieID", "iid", "i")
_RATING_COLS = ("rating", "ratings", "score", "weight", "value", "count", "Rating")
_TIME_COLS = ("timestamp", "time", "ts", "datetime", "Timestamp")
_DUPLICATES = ("last", "first", "sum", "mean", "max", "keep", "raise")


def _pick_column(df: pd.DataFrame, given: str | None, candidates: Sequence[str], what: str,
                 required: bool) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise DataError(
                f"{what} column {given!r} is not in the frame; its columns are {list(df.columns)}"
            )
        return given
    for c in candidates:
        if c in df.columns:
            return c
    if required:
        raise DataError(
            f"no {what} column found; pass {what}_col=... (columns are {list(df.columns)}, "
            f"looked for {list(candidates)})"
        )
    return None


def _check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{what} contain {int(bad.sum())} NaN/inf value(s), first {arr[pos].item()!r} at "
                f"row {pos}; drop or fill them before building Interactions"
            )


def _ids_1d(ids, what: str) -> np.ndarray:
    """Raw ids as a 1-d array, through :func:`maasrec.data.vocab._as_id_array`."""
    if isinstance(ids, np.ndarray) and ids.ndim != 1:
        raise DataError(f"users and items must be 1-d, got {what} of shape {ids.shape}")
    return _as_id_array(ids, what)


def _is_sorted(u: np.ndarray, t: np.ndarray | None) -> bool:
    """Whether rows are already ordered by user, then time (cheap check, skips a lexsort)."""
    du = np.diff(u)
    if (du < 0).any():
        return False
    if t is None:
        return True
    same = du == 0
    return not (same & (np.diff(t) < 0)).any()


class Interactions:
    """User-item interactions with optional values (ratings/weights) and timestamps.

    Rows are kept sorted by user, then timestamp (when given), then input order, so
    :meth:`sequences` is a slice per user. Build one with :meth:`from_pandas`,
    :meth:`from_arrays` or :meth:`from_csr`; every split of it shares its vocabularies.

    Parameters
    ----------
    user_idx, item_idx : np.ndarray of int
        Indices into ``user_vocab`` and ``item_vocab``.
    user_vocab, item_vocab : IdVocab
    values : np.ndarray of float, optional
        Ratings or weights; None means implicit feedback (every value is 1).
    timestamps : np.ndarray, optional
        One number per row (datetimes are stored as int64 nanoseconds).

    Attributes
    ----------
    user_vocab, item_vocab : IdVocab
    n_users, n_items, nnz : int
    """

    def __init__(self, user_idx, item_idx, user_vocab: IdVocab, item_vocab: IdVocab,
                 values=None, timestamps=None, *, _sorted: bool = False):
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if u.ndim != 1 or i.ndim != 1 or len(u) != len(i):
            raise DataError(
                f"user and item index arrays must be 1-d of equal length, got shapes "
                f"{u.shape} and {i.shape}"
            )
        n = len(u)
        if n and (u.min() < 0 or u.max() >= len(user_vocab)):
            raise DataError(f"user indices must lie in 0..{len(user_vocab) - 1}")
        if n and (i.min() < 0 or i.max() >= len(item_vocab)):
            raise DataError(f"item indices must lie in 0..{len(item_vocab) - 1}")
        v = None
        if values is not None:
            v = np.asarray(values, dtype=np.float32)
            if v.shape != (n,):
                raise DataError(f"values must have shape ({n},), got {v.shape}")
            _check_finite(np.asarray(values, dtype=np.float64), "values")
            _check_finite(v, "values (as float32)")
        t = None
        if timestamps is not None:
            t = np.asarray(timestamps)
            if t.dtype.kind == "M":
                nat = np.isnat(t)
                if nat.any():
                    pos = int(np.flatnonzero(nat)[0])
                    raise DataError(
                        f"timestamps contain {int(nat.sum())} NaT/NaN (missing) value(s), first at "
                        f"row {pos}; drop or fill them before building Interactions"
                    )
                t = t.astype("datetime64[ns]").astype(np.int64)
            elif t.dtype.kind not in "iuf":
                raise DataError(f"timestamps must be numbers or datetimes, got dtype {t.dtype}")
            if t.shape != (n,):
                raise DataError(f"timestamps must have shape ({n},), got {t.shape}")
            _check_finite(t, "timestamps")
        if not _sorted and n and not _is_sorted(u, t):
            keys = (np.arange(n), u) if t is None else (np.arange(n), t, u)
            order = np.lexsort(keys)
            u, i = u[order], i[order]
            v = v[order] if v is not None else None
            t = t[order] if t is not None else None
        self.user_vocab = user_vocab
        self.item_vocab = item_vocab
        self._u, self._i, self._v, self._t = u, i, v, t
        for a in (self._u, self._i, self._v, self._t):
            if a is not None:
                a.setflags(write=False)
        self._indptr = np.searchsorted(u, np.arange(len(user_vocab) + 1)).astype(np.int64)
        self._csr: sp.csr_matrix | None = None

    # -- constructors ---------------------------------------------------------
    @classmethod
    def from_arrays(cls, users, items, values=None, timestamps=None, *,
                    duplicates: str = "last", user_vocab: IdVocab | None = None,
                    item_vocab: IdVocab | None = None, unknown: str = "raise") -> Interactions:
        """Build interactions from parallel arrays of raw ids.

        Parameters
        ----------
        users, items : array-like
            Raw user and item ids, one per interaction.
        values : array-like of float, optional
            Ratings or weights; None for implicit feedback.
        timestamps : array-like, optional
            Numbers or datetimes, one per interaction.
        duplicates : {"last", "first", "sum", "mean", "max", "keep", "raise"}, default "last"
            What to do with repeated (user, item) pairs: keep the latest (by timestamp,
            then input order), the earliest, aggregate the values, keep every row (for
            sequences with repeats), or raise.
        user_vocab, item_vocab : IdVocab, optional
            Use these vocabularies (e.g. a fitted model's) instead of building new ones.
        unknown : {"raise", "ignore"}, default "raise"
            With given vocabularies: raise on ids they do not contain, or drop those rows.

        Returns
        -------
        Interactions

        Raises
        ------
        DataError
            On empty input, mismatched lengths, NaN/inf values or timestamps,
            duplicates with ``duplicates="raise"``, boolean ids (``True``/``False``
            would merge with ``1``/``0``), integer ids outside int64 (pass them as
            strings), or ids given as a set, dict or iterator (no order: pass a list).
        """
        if duplicates not in _DUPLICATES:
            raise DataError(f"duplicates={duplicates!r} is not one of {list(_DUPLICATES)}")
        # raw ids keep their Python types (np.asarray would turn [1, "1"] into two "1"s and
        # [True, 1] into two 1s); booleans, ints beyond int64 and sets are refused here
        users = _ids_1d(users, "user ids")
        items = _ids_1d(items, "item ids")
        n = len(users)
        lengths = {"users": n, "items": len(items)}
        if values is not None:
            values = np.asarray(values, dtype=np.float64)
            lengths["values"] = len(values)
        if timestamps is not None:
            timestamps = np.asarray(timestamps)
            if timestamps.dtype.kind in "OUS":  # datetime objects, date strings, tz-aware times
                try:
                    s = pd.to_datetime(pd.Series(timestamps))
                except (TypeError, ValueError, OverflowError) as exc:
                    first = timestamps[0] if len(timestamps) else None
                    first = first.item() if isinstance(first, np.generic) else first
                    raise DataError(f"timestamps are neither numbers nor dates (e.g. {first!r}): "
                                    f"{exc}") from exc
                if getattr(s.dt, "tz", None) is not None:
                    s = s.dt.tz_convert("UTC").dt.tz_localize(None)
                timestamps = s.to_numpy()
            lengths["timestamps"] = len(timestamps)
        if len(set(lengths.values())) > 1:
            raise DataError(f"arrays must have the same length, got {lengths}")
        if n == 0:
            raise DataError("interactions are empty: at least one (user, item) pair is needed")
        if values is not None:
            _check_finite(values, "values (ratings/weights)")
        uv = user_vocab if user_vocab is not None else IdVocab.from_values(users, name="user")
        iv = item_vocab if item_vocab is not None else IdVocab.from_values(items, name="item")
        u = uv.index(users, unknown=unknown)
        i = iv.index(items, unknown=unknown)
        keep = (u >= 0) & (i >= 0)
        if not keep.all():
            u, i = u[keep], i[keep]
            values = values[keep] if values is not None else None
            timestamps = timestamps[keep] if timestamps is not None else None
            if len(u) == 0:
                raise DataError("no interaction has a known user and item")
        out = cls(u, i, uv, iv, values, timestamps)
        return out._deduplicate(duplicates)

    @classmethod
    def from_pandas(cls, df: pd.DataFrame, user_col: str | None = None, item_col: str | None = None,
                    rating_col: str | None = None, timestamp_col: str | None = None, *,
                    duplicates: str = "last", user_vocab: IdVocab | None = None,
                    item_vocab: IdVocab | None = None, unknown: str = "raise") -> Interactions:
        """Build interactions from a data frame.

        Column names default to the first match among common spellings (``user``,
        ``user_id``, ``userId``...; ``item``, ``item_id``, ``movieId``...; ``rating``,
        ``weight``...; ``timestamp``, ``time``...). Ratings and timestamps are optional.

        Parameters
        ----------
        df : pandas.DataFrame
        user_col, item_col, rating_col, timestamp_col : str, optional
            Column names; None looks for a common name (rating and timestamp may be absent).
        duplicates, user_vocab, item_vocab, unknown
            As in :meth:`from_arrays`.

        Returns
        -------
        Interactions
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise DataError("the data frame is empty: at least one (user, item) pair is needed")
        uc = _pick_column(df, user_col, _USER_COLS, "user", True)
        ic = _pick_column(df, item_col, _ITEM_COLS, "item", True)
        rc = _pick_column(df, rating_col, _RATING_COLS, "rating", False)
        tc = _pick_column(df, timestamp_col, _TIME_COLS, "timestamp", False)
        values = None
        if rc is not None:
            try:
                values = df[rc].to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"rating column {rc!r} is not numeric: {exc}") from exc
        ts = df[tc].to_numpy() if tc is not None else None
        if ts is not None and ts.dtype.kind == "O":
            try:
                ts = pd.to_datetime(df[tc]).to_numpy()
            except (TypeError, ValueError) as exc:
                raise DataError(f"timestamp column {tc!r} is neither numeric nor dates") from exc
        return cls.from_arrays(df[uc].to_numpy(), df[ic].to_numpy(), values, ts,
                               duplicates=duplicates, user_vocab=user_vocab,
                               item_vocab=item_vocab, unknown=unknown)

    @classmethod
    def from_csr(cls, matrix, user_ids=None, item_ids=None) -> Interactions:
        """Build interactions from a users x items sparse (or dense) matrix.

        Parameters
        ----------
        matrix : scipy.sparse matrix or array-like, shape (n_users, n_items)
            Stored non-zeros become interactions with those values.
        user_ids, item_ids : array-like, optional
            Raw ids of the rows and columns; default ``0..n-1``.

        Returns
        -------
        Interactions
        """
        if sp.issparse(matrix):
            m = sp.csr_matrix(matrix, copy=True)  # sum_duplicates/eliminate_zeros work in place
        else:
            arr = np.asarray(matrix)
            if arr.ndim != 2:
                raise DataError(f"matrix must be 2-d, got shape {arr.shape}")
            m = sp.csr_matrix(arr)
        m.sum_duplicates()
        m.eliminate_zeros()
        if m.nnz == 0:
            raise DataError(f"the {m.shape[0]}x{m.shape[1]} matrix has no non-zero entry")
        data = np.asarray(m.data, dtype=np.float64)
        _check_finite(data, "matrix values")
        n_u, n_i = m.shape
        uv = IdVocab(np.arange(n_u) if user_ids is None else user_ids, name="user")
        iv = IdVocab(np.arange(n_i) if item_ids is None else item_ids, name="item")
        if len(uv) != n_u or len(iv) != n_i:
            raise DataError(
                f"matrix has shape {m.shape} but {len(uv)} user ids and {len(iv)} item ids"
            )
        rows = np.repeat(np.arange(n_u), np.diff(m.indptr))
        values = None if np.all(data == 1.0) else data
        return cls(rows, m.indices, uv, iv, values, None)

    def _deduplicate(self, policy: str) -> Interactions:
        if policy == "keep" or len(self._u) == 0:
            return self
        key = self._u * len(self.item_vocab) + self._i
        # rows are sorted by (user, time, order); stable sort by key keeps that order
        order = np.argsort(key, kind="stable")
        ks = key[order]
        first = np.ones(len(ks), dtype=bool)
        first[1:] = ks[1:] != ks[:-1]
        if first.all():
            return self
        if policy == "raise":
            dup = order[np.flatnonzero(~first)[0]]
            uid = self.user_vocab.ids[[self._u[dup]]].tolist()[0]  # plain python ids in the text
            iid = self.item_vocab.ids[[self._i[dup]]].tolist()[0]
            raise DataError(
                f"duplicate interaction for user {uid!r} and item {iid!r}; choose "
                f"duplicates='last', 'first', 'sum', 'mean', 'max' or 'keep'"
            )
        starts = np.flatnonzero(first)
        if policy in ("first", "last"):
            ends = np.r_[starts[1:], len(ks)] - 1
            pick = order[starts if policy == "first" else ends]
            pick.sort()
            return self._take(pick)
        group = np.cumsum(first) - 1
        vals = self.values[order].astype(np.float64)
        if policy == "sum":
            agg = np.bincount(group, weights=vals)
        elif policy == "mean":
            agg = np.bincount(group, weights=vals) / np.bincount(group)
        else:  # max
            agg = np.full(len(starts), -np.inf)
            np.maximum.at(agg, group, vals)
        ends = np.r_[starts[1:], len(ks)] - 1
        pick = order[ends]  # the latest row of each pair carries its timestamp
        new_vals = np.empty(len(self._u), dtype=np.float64)
        new_vals[pick] = agg
        keep = np.sort(pick)
        return Interactions(self._u[keep], self._i[keep], self.user_vocab, self.item_vocab,
                            new_vals[keep], None if self._t is None else self._t[keep],
                            _sorted=True)

    # -- views ----------------------------------------------------------------
    @property
    def n_users(self) -> int:
        """int: number of users in the vocabulary (not only those with rows)."""
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        """int: number of items in the vocabulary."""
        return len(self.item_vocab)

    @property
    def nnz(self) -> int:
        """int: number of interaction rows."""
        return len(self._u)

    def __len__(self) -> int:
        return len(self._u)

    @property
    def user_indices(self) -> np.ndarray:
        """np.ndarray: user index of each row (read-only)."""
        return self._u

    @property
    def item_indices(self) -> np.ndarray:
        """np.ndarray: item index of each row (read-only)."""
        return self._i

    @property
    def values(self) -> np.ndarray:
        """np.ndarray of float32: values of each row (ones for implicit feedback)."""
        return self._v if self._v is not None else np.ones(len(self._u), dtype=np.float32)

    @property
    def has_values(self) -> bool:
        """bool: whether explicit values (ratings/weights) were given."""
        return self._v is not None

    @property
    def timestamps(self) -> np.ndarray | None:
        """np.ndarray or None: timestamp of each row."""
        return self._t

    @property
    def has_timestamps(self) -> bool:
        """bool: whether timestamps were given."""
        return self._t is not None

    @property
    def user_indptr(self) -> np.ndarray:
        """np.ndarray: rows of user ``u`` are ``user_indptr[u]:user_indptr[u+1]``."""
        return self._indptr

    def users_with_interactions(self) -> np.ndarray:
        """Indices of users that have at least one row.

        Returns
        -------
        np.ndarray of int64
        """
        return np.flatnonzero(np.diff(self._indptr) > 0)

    def user_counts(self) -> np.ndarray:
        """Number of rows per user index.

        Returns
        -------
        np.ndarray of int64, shape (n_users,)
        """
        return np.diff(self._indptr)

    def item_counts(self) -> np.ndarray:
        """Number of rows per item index.

        Returns
        -------
        np.ndarray of int64, shape (n_items,)
        """
        return np.bincount(self._i, minlength=self.n_items)

    def to_csr(self, binary: bool = False, copy: bool = True) -> sp.csr_matrix:
        """Users x items sparse matrix of the values (repeated pairs are summed).

        Parameters
        ----------
        binary : bool, default False
            Put 1 for every pair instead of its value.
        copy : bool, default True
            Return a matrix the caller owns. ``False`` returns the matrix this object
            keeps (built once, canonical: sorted indices, no duplicates) whose arrays are
            read-only, without copying them: what a model that only reads the
            interactions needs (at 10 million interactions a copy is ~120 MB).

        Returns
        -------
        scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        """
        if self._csr is None:
            m = sp.csr_matrix((self.values, (self._u, self._i)),
                              shape=(self.n_users, self.n_items), dtype=np.float32)
            m.sum_duplicates()
            m.sort_indices()
            for a in (m.data, m.indices, m.indptr):
                a.flags.writeable = False
            self._csr = m
        m = self._csr
        if not copy:
            if binary and m.nnz and not (m.data == 1.0).all():
                ones = np.ones(m.nnz, dtype=np.float32)
                ones.flags.writeable = False
                m = sp.csr_matrix((ones, m.indices, m.indptr), shape=m.shape, copy=False)
                m.has_canonical_format = True
            return m
        if binary:
            b = m.copy()
            b.data[:] = 1.0
            return b
        return m.copy()

    def sequences(self, as_ids: bool = False) -> list[np.ndarray]:
        """Each user's items in time order (input order when there are no timestamps).

        Parameters
        ----------
        as_ids : bool, default False
            Return raw item ids instead of indices.

        Returns
        -------
        list of np.ndarray
            One array per user index (empty for users without rows).
        """
        items = self.item_vocab.ids[self._i] if as_ids else self._i
        return [items[a:b] for a, b in zip(self._indptr[:-1], self._indptr[1:])]

    def to_pandas(self) -> pd.DataFrame:
        """Rows as a frame with raw ids.

        Returns
        -------
        pandas.DataFrame
            Columns ``user``, ``item``, and ``rating``/``timestamp`` when present.
        """
        cols: dict[str, Any] = {
            "user": self.user_vocab.ids[self._u],
            "item": self.item_vocab.ids[self._i],
        }
        if self._v is not None:
            cols["rating"] = self._v
        if self._t is not None:
            cols["timestamp"] = self._t
        return pd.DataFrame(cols)

    # -- subsets ----------------------------------------------------------------
    def _take(self, rows: np.ndarray) -> Interactions:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = np.sort(rows)
        return Interactions(self._u[rows], self._i[rows], self.user_vocab, self.item_vocab,
                            None if self._v is None else self._v[rows],
                            None if self._t is None else self._t[rows], _sorted=True)

    def subset(self, rows) -> Interactions:
        """Interactions of the given rows, sharing this object's vocabularies.

        Parameters
        ----------
        rows : array-like of int or bool
            Row positions (in this object's order) or a boolean mask.

        Returns
        -------
        Interactions
        """
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (self.nnz,):
            raise DataError(f"boolean mask must have shape ({self.nnz},), got {rows.shape}")
        return self._take(rows)

    def with_vocab(self, user_vocab: IdVocab, item_vocab: IdVocab, unknown: str = "raise") -> Interactions:
        """Re-index these rows onto other vocabularies (e.g. a fitted model's).

        Parameters
        ----------
        user_vocab, item_vocab : IdVocab
        unknown : {"raise", "ignore"}, default "raise"
            Raise on ids missing from the new vocabularies, or drop those rows.

        Returns
        -------
        Interactions
        """
        if user_vocab == self.user_vocab and item_vocab == self.item_vocab:
            return self
        u = user_vocab.index(self.user_vocab.ids[self._u], unknown=unknown)
        i = item_vocab.index(self.item_vocab.ids[self._i], unknown=unknown)
        keep = (u >= 0) & (i >= 0)
        return Interactions(u[keep], i[keep], user_vocab, item_vocab,
                            None if self._v is None else self._v[keep],
                            None if self._t is None else self._t[keep])

    def __repr__(self) -> str:
        extra = []
        if self.has_values:
            extra.append("values")
        if self.has_timestamps:
            extra.append("timestamps")
        density = self.nnz / max(1, self.n_users * self.n_items)
        return (f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz}, "
                f"density={density:.4%}{', with ' + ' and '.join(extra) if extra else ''})")


def as_interactions(X: Any, *, user_vocab: IdVocab | None = None,
                    item_vocab: IdVocab | None = None) -> Interactions:
    """Coerce the inputs ``fit``/``evaluate`` accept into :class:`Interactions`.

    Parameters
    ----------
    X : Interactions, pandas.DataFrame or scipy.sparse matrix
    user_vocab, item_vocab : IdVocab, optional
        Vocabularies for a data frame (ignored for the other kinds).

    Returns
    -------
    Interactions

    Raises
    ------
    DataError
        For any other type, or empty data.
    """
    if isinstance(X, Interactions):
        if X.nnz == 0:
            raise DataError("interactions are empty: at least one (user, item) pair is needed")
        return X
    if isinstance(X, pd.DataFrame):
        return Interactions.from_pandas(X, user_vocab=user_vocab, item_vocab=item_vocab)
    if sp.issparse(X):
        return Interactions.from_csr(X)
    raise DataError(
        f"expected Interactions, a pandas DataFrame or a scipy.sparse matrix, got "
        f"{type(X).__name__}"
    )
