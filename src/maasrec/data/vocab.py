"""Raw id <-> contiguous index mapping."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from ..exceptions import DataError, UnknownIdError

__all__ = ["IdVocab"]

_JSON_KINDS = {"i": "int", "u": "int", "f": "float", "b": "bool", "U": "str", "O": "object"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _short_repr(x: Any, limit: int = 80) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def check_ordered_ids(ids: Any, what: str = "ids") -> None:
    """Refuse containers of ids that have no reliable order.

    Results are returned in the order of the ids given, so the ids must come in a
    sequence: a set (or frozenset, dict keys) has no order -- ``recommend({...})`` would
    answer in set order -- and a dict or a one-shot iterator (generator) is almost
    always a mistake. Pass a list (``sorted(the_set)`` for a stable order).

    Raises
    ------
    DataError
        Naming the container and its contents.
    """
    if isinstance(ids, (AbstractSet, Mapping)):
        raise DataError(
            f"{what} is a {type(ids).__name__} ({_short_repr(ids)}), which has no order: "
            f"results come back in the order of the ids given; pass a list, e.g. sorted(...)"
        )
    if isinstance(ids, Iterator):
        raise DataError(
            f"{what} is a {type(ids).__name__} ({_short_repr(ids)}), a one-shot iterator; "
            f"pass a list of ids"
        )


def _bad_id_error(x: Any, what: str) -> DataError:
    if isinstance(x, (bool, np.bool_)):
        x = bool(x)
        return DataError(
            f"{what} contain the boolean {x!r}: booleans are not valid ids (True/False would "
            f"merge with 1/0); use integers or strings"
        )
    return DataError(
        f"{what} contain {x!r}, which does not fit in a 64-bit integer; pass ids that large "
        f"as strings"
    )


def _check_id_values(arr: np.ndarray, what: str) -> None:
    """Booleans and integers outside int64 are not valid ids (DataError naming one)."""
    if not len(arr):
        return
    if arr.dtype.kind == "b":
        raise _bad_id_error(arr[0].item(), what)
    if arr.dtype.kind == "u" and arr.max() > _INT64_MAX:
        raise _bad_id_error(int(arr.max()), what)
    if arr.dtype.kind != "O":
        return
    kind = infer_dtype(arr, skipna=True)
    if kind in ("string", "bytes", "floating", "decimal", "empty", "datetime", "date",
                "timedelta", "time", "period", "complex"):
        return  # neither booleans nor Python ints among them: no per-element scan
    for x in arr:
        if isinstance(x, (bool, np.bool_)) or (
                isinstance(x, int) and not _INT64_MIN <= x <= _INT64_MAX):
            raise _bad_id_error(x, what)
        if not isinstance(x, Hashable):  # a nested list or array: not a raw id
            raise DataError(f"{what} must be a 1-d sequence of raw (hashable) ids, got the "
                            f"{type(x).__name__} {_short_repr(x)} among them")


def _as_id_array(ids: Any, what: str = "ids") -> np.ndarray:
    """Turn a sequence of raw ids into a 1-d numpy array (object dtype for mixed/str).

    Raises DataError for unordered containers (sets, dicts, iterators), booleans (which
    would merge with 1/0) and integers outside int64, naming the value.
    """
    check_ordered_ids(ids, what)
    if isinstance(ids, np.ndarray):
        arr = ids
    elif isinstance(ids, (pd.Series, pd.Index)):
        arr = ids.to_numpy()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise DataError(f"{what} must be a sequence of raw ids, got {type(ids).__name__} "
                        f"{ids!r}")
    else:
        ids = list(ids)
        arr = np.empty(len(ids), dtype=object)
        arr[:] = ids
        # numeric ids get a numeric dtype; everything else stays object
        if len(ids) and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                            for x in ids):
            try:
                arr = np.asarray(ids, dtype=np.int64)
            except OverflowError:  # named below
                pass
        elif len(ids) and all(isinstance(x, str) for x in ids):
            arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise DataError(f"{what} must be one-dimensional, got an array of shape {arr.shape}")
    if arr.dtype.kind == "U" or arr.dtype.kind == "S":
        arr = arr.astype(object)
    if arr.dtype.kind == "f" and len(arr) and np.isnan(arr).any():
        raise DataError("ids contain NaN; every user and item needs a real id")
    if arr.dtype.kind == "O" and len(arr) and pd.isna(arr).any():
        bad = int(np.flatnonzero(pd.isna(arr))[0])
        raise DataError(f"ids contain a missing value ({arr[bad]!r}) at position {bad}")
    _check_id_values(arr, what)
    return arr


class IdVocab:
    """A bijection between raw ids (of any hashable type) and indices ``0..n-1``.

    Parameters
    ----------
    ids : sequence of hashable
        Distinct raw ids, in index order. Integers are kept as ``int64``; strings and
        other hashables as ``object``. Booleans are refused (``True``/``False`` would
        merge with ``1``/``0``), so are integers outside the int64 range (pass such ids
        as strings) and unordered containers (a set, dict or iterator: pass a list).
    name : str, default "item"
        What the ids are (``"user"`` or ``"item"``); used in error messages.

    Raises
    ------
    DataError
        If ``ids`` contains duplicates, missing values, booleans or integers outside
        int64, or is not an ordered sequence.

    Examples
    --------
    >>> v = IdVocab(["a", "b", "c"], name="item")
    >>> v.index(["c", "a"])
    array([2, 0])
    >>> v.ids_of([1])
    array(['b'], dtype=object)
    """

    def __init__(self, ids: Iterable[Hashable], name: str = "item"):
        # a private copy: never alias (and freeze) the caller's array or frame column
        arr = _as_id_array(ids, f"{name} ids").copy()
        self.name = name
        self._ids = arr
        self._ids.setflags(write=False)
        self._index = pd.Index(arr)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][:5].tolist()
            raise DataError(f"{name} ids must be distinct; duplicated: {dup}")

    # -- construction -------------------------------------------------------
    @classmethod
    def from_values(cls, values: Any, name: str = "item", sort: bool = True) -> IdVocab:
        """Build a vocabulary from (possibly repeated) raw ids.

        Parameters
        ----------
        values : array-like
            Raw ids, repeats allowed.
        name : str, default "item"
        sort : bool, default True
            Sort the distinct ids (numbers numerically, strings lexically) so that the
            same data always gives the same indices; ``False`` keeps first-seen order.

        Returns
        -------
        IdVocab
        """
        arr = _as_id_array(values, f"{name} ids")
        uniq = pd.unique(arr)
        if sort:
            try:
                uniq = np.sort(uniq)
            except TypeError:  # mixed types: order by (type name, str)
                uniq = np.asarray(
                    sorted(uniq, key=lambda x: (type(x).__name__, str(x))), dtype=object
                )
        return cls(uniq, name=name)

    # -- mapping ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: Hashable) -> bool:
        try:
            return raw_id in self._index
        except TypeError:
            return False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdVocab):
            return NotImplemented
        return len(self) == len(other) and bool(self._index.equals(other._index))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"IdVocab(name={self.name!r}, n={len(self)}, ids=[{head}{more}])"

    @property
    def ids(self) -> np.ndarray:
        """np.ndarray: the raw ids in index order (read-only)."""
        return self._ids

    def index(self, raw_ids: Any, unknown: str = "raise") -> np.ndarray:
        """Map raw ids to indices.

        Parameters
        ----------
        raw_ids : hashable or array-like of hashable
            One raw id or a sequence of them.
        unknown : {"raise", "ignore"}, default "raise"
            ``"raise"`` raises :class:`UnknownIdError` naming the unknown ids;
            ``"ignore"`` maps them to ``-1``.

        Returns
        -------
        np.ndarray of int64
            Indices, same length as ``raw_ids``.
        """
        if unknown not in ("raise", "ignore"):
            raise DataError(f"unknown={unknown!r} is not one of 'raise', 'ignore'")
        check_ordered_ids(raw_ids, f"{self.name} ids")
        # test the container types first: np.ndim raises on ragged lists like [[1], "2"]
        if not isinstance(raw_ids, (list, tuple, np.ndarray)) and np.ndim(raw_ids) == 0:
            raw_ids = [raw_ids]
        arr = _as_id_array(raw_ids, f"{self.name} ids")
        if len(arr) == 0:
            return np.empty(0, dtype=np.int64)
        try:
            idx = self._index.get_indexer(arr)
        except (TypeError, pd.errors.InvalidIndexError):  # pragma: no cover - unhashable ids
            idx = np.array([self._index.get_loc(x) if x in self else -1 for x in arr])
        idx = np.asarray(idx, dtype=np.int64)
        if unknown == "raise" and (idx < 0).any():
            bad = arr[idx < 0]
            shown = ", ".join(repr(x.item() if hasattr(x, "item") else x) for x in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise UnknownIdError(
                f"unknown {self.name} id(s): {shown}{more}; the model knows {len(self)} "
                f"{self.name}s (ids like {self._ids[:3].tolist()})",
                ids=bad[:100].tolist(),
                kind=self.name,
            )
        return idx

    def ids_of(self, indices: Any) -> np.ndarray:
        """Map indices back to raw ids.

        Parameters
        ----------
        indices : array-like of int
            Indices in ``0..n-1``.

        Returns
        -------
        np.ndarray
            Raw ids with the vocabulary's dtype.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][:5].tolist()
            raise DataError(f"{self.name} indices out of range 0..{len(self) - 1}: {bad}")
        return self._ids[idx]

    # -- growth and persistence ---------------------------------------------
    def extend(self, raw_ids: Iterable[Hashable]) -> IdVocab:
        """Return a new vocabulary with ``raw_ids`` appended (known ids are skipped).

        Existing indices are unchanged, so fitted arrays stay aligned.

        Parameters
        ----------
        raw_ids : iterable of hashable

        Returns
        -------
        IdVocab
        """
        check_ordered_ids(raw_ids, f"new {self.name} ids")
        new = _as_id_array(list(raw_ids), f"new {self.name} ids")
        new = pd.unique(new)
        new = new[self.index(new, unknown="ignore") < 0]
        if len(new) == 0:
            return self
        if self._ids.dtype.kind in "iu" and new.dtype.kind in "iu":
            merged = np.concatenate([self._ids, new.astype(np.int64)])
        else:
            merged = np.empty(len(self) + len(new), dtype=object)
            merged[: len(self)] = self._ids
            merged[len(self):] = new
        return IdVocab(merged, name=self.name)

    @property
    def id_kind(self) -> str:
        """str: ``"int"``, ``"float"``, ``"bool"``, ``"str"`` or ``"object"``."""
        kind = _JSON_KINDS.get(self._ids.dtype.kind, "object")
        if kind == "object" and len(self) and all(isinstance(x, str) for x in self._ids):
            kind = "str"
        return kind

    def to_dict(self) -> dict:
        """Serialise to a JSON-compatible dict.

        Returns
        -------
        dict
            ``{"name", "kind", "ids"}``.

        Raises
        ------
        DataError
            If the ids are not ints, floats, bools or strings (e.g. tuples), which JSON
            cannot represent faithfully.
        """
        kind = self.id_kind
        if kind == "object":
            bad = next((x for x in self._ids if not isinstance(x, (str, int, float, bool))), None)
            if bad is not None:
                raise DataError(
                    f"{self.name} id {bad!r} of type {type(bad).__name__} cannot be saved; "
                    f"saved models need int, float, bool or str ids"
                )
        return {"name": self.name, "kind": kind, "ids": self._ids.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> IdVocab:
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        d : dict

        Returns
        -------
        IdVocab
        """
        kind = d.get("kind", "object")
        ids = d["ids"]
        if kind == "int":
            arr = np.asarray(ids, dtype=np.int64)
        elif kind == "float":
            arr = np.asarray(ids, dtype=np.float64)
        elif kind == "bool":
            arr = np.asarray(ids, dtype=bool)
        else:
            arr = np.empty(len(ids), dtype=object)
            arr[:] = ids
        return cls(arr, name=d.get("name", "item"))
