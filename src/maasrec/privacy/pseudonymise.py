"""Keyed pseudonyms for raw user and item ids (HMAC-SHA256).

>>> from maasrec.privacy import Pseudonymiser, generate_key
>>> p = Pseudonymiser(generate_key())
>>> frame = p.transform(frame, users=True, items=False)         # doctest: +SKIP
>>> p.mapping.save("ids-map.json")                              # doctest: +SKIP

A pseudonym is ``prefix + hex(HMAC-SHA256(k, kind, id))[:length]``, where ``k`` is derived
from the owner's secret key. The same key gives the same pseudonym for the same id in every
run and every data set (so data prepared on different days joins); without the key, ids
cannot be re-computed from guesses (unlike a plain hash of a small id space). Reversal
needs the :class:`PseudonymMap`, which the owner stores as a file apart from data and
models; a model fitted on pseudonymised data holds only pseudonyms.

What it does not do: pseudonymised data is still personal data under the GDPR (the key
and the map re-identify it), and the behaviour itself (which items, when) can identify a
person. It removes raw ids from training sets, models, logs and serving requests.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.features import Features
from ..data.interactions import _ITEM_COLS, _USER_COLS, Interactions, _pick_column
from ..data.vocab import IdVocab
from ..exceptions import DataError, UnknownIdError
from .crypto import key_id, parse_key

__all__ = ["PseudonymMap", "Pseudonymiser"]

_KINDS = ("user", "item")
_MAP_FORMAT = "maasrec-pseudonym-map"
_LABEL = b"maasrec pseudonym v1"


def _kind(kind: str) -> str:
    if kind not in _KINDS:
        raise DataError(f"kind must be 'user' or 'item', got {kind!r}")
    return kind


def _canonical(x: Any, kind: str) -> tuple[bytes, Any]:
    """The bytes hashed for one raw id, and its JSON-storable form."""
    if isinstance(x, (bool, np.bool_)) or x is None:
        raise DataError(f"{kind} id {x!r} cannot be pseudonymised: use integers or strings")
    if isinstance(x, (int, np.integer)):
        v = int(x)
        return b"i:" + str(v).encode(), v
    if isinstance(x, str):
        return b"s:" + x.encode("utf-8"), x
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            raise DataError(f"{kind} id {x!r} is missing or not finite")
        return b"f:" + repr(v).encode(), v
    raise DataError(f"{kind} id {x!r} (type {type(x).__name__}) cannot be pseudonymised: use "
                    f"integers or strings")


class PseudonymMap:
    """The owner's table from pseudonyms back to raw ids. Keep it apart from models.

    Parameters
    ----------
    key_id : str
        Fingerprint of the key the pseudonyms were made with (:func:`maasrec.privacy.key_id`).
    entries : dict, optional
        ``{"user": {pseudonym: raw id}, "item": {...}}``.
    """

    def __init__(self, key_id: str, entries: dict | None = None):
        self.key_id = key_id
        self._entries: dict[str, dict[str, Any]] = {k: {} for k in _KINDS}
        for kind, table in (entries or {}).items():
            self._entries[_kind(kind)].update(table)

    def __len__(self) -> int:
        return sum(len(t) for t in self._entries.values())

    def __repr__(self) -> str:
        return (f"PseudonymMap(key_id={self.key_id!r}, users={len(self._entries['user'])}, "
                f"items={len(self._entries['item'])})")

    def _add(self, kind: str, pseudonym: str, raw: Any) -> None:
        table = self._entries[kind]
        old = table.setdefault(pseudonym, raw)
        if old != raw or type(old) is not type(raw):
            raise DataError(f"{kind} ids {old!r} and {raw!r} share the pseudonym "
                            f"{pseudonym!r}: use a longer pseudonym length")

    def reverse(self, pseudonyms, kind: str = "user") -> np.ndarray:
        """Raw ids of pseudonyms.

        Parameters
        ----------
        pseudonyms : str or sequence of str
        kind : {"user", "item"}, default "user"

        Returns
        -------
        np.ndarray
            Object array of the raw ids (a scalar for a single pseudonym).

        Raises
        ------
        UnknownIdError
            A pseudonym this map does not hold.
        """
        table = self._entries[_kind(kind)]
        single = isinstance(pseudonyms, str)
        items = [pseudonyms] if single else list(pseudonyms)
        missing = [p for p in items if p not in table]
        if missing:
            raise UnknownIdError(f"{len(missing)} {kind} pseudonym(s) not in this map, e.g. "
                                 f"{missing[:3]}", ids=missing[:10], kind=kind)
        out = np.empty(len(items), dtype=object)
        out[:] = [table[p] for p in items]
        return out[0] if single else out

    def to_dict(self) -> dict:
        """JSON-compatible form (what :meth:`save` writes)."""
        return {"format": _MAP_FORMAT, "version": 1, "key_id": self.key_id,
                "entries": {k: dict(v) for k, v in self._entries.items()}}

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> str:
        """Write the map as JSON, readable by the owner only (mode 0600), atomically.

        Parameters
        ----------
        path : str or Path
        overwrite : bool, default False

        Returns
        -------
        str
        """
        p = Path(path)
        if p.exists() and not overwrite:
            raise FileExistsError(f"{str(p)!r} already exists; pass overwrite=True")
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return str(p)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PseudonymMap:
        """Read a map written by :meth:`save`.

        Raises
        ------
        DataError
            Not a pseudonym map, or a corrupt one.
        """
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the pseudonym map {str(path)!r}: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != _MAP_FORMAT \
                or not isinstance(d.get("entries"), dict) or not isinstance(d.get("key_id"), str):
            raise DataError(f"{str(path)!r} is not a maasrec pseudonym map")
        if not all(k in _KINDS and isinstance(v, dict) for k, v in d["entries"].items()):
            raise DataError(f"{str(path)!r}: entries must be 'user'/'item' tables")
        return cls(d["key_id"], d["entries"])


class Pseudonymiser:
    """Replace raw user/item ids by keyed HMAC-SHA256 pseudonyms, keeping the map.

    Parameters
    ----------
    key : bytes or str
        A secret 256-bit key, as for encrypted models (:func:`maasrec.privacy.generate_key`;
        use a different key from the model key). The pseudonym key is derived from it.
    length : int, default 32
        Hex digits kept (32 = 128 bits; at least 16).
    user_prefix, item_prefix : str, default ``"u_"``, ``"i_"``
    mapping : PseudonymMap, optional
        A map to extend (loaded from an earlier run with the same key).

    Attributes
    ----------
    mapping : PseudonymMap
        Every id pseudonymised so far, for the owner to :meth:`~PseudonymMap.save`.
    """

    def __init__(self, key, *, length: int = 32, user_prefix: str = "u_",
                 item_prefix: str = "i_", mapping: PseudonymMap | None = None):
        raw = parse_key(key, what="key")
        if isinstance(length, bool) or not isinstance(length, int) or not 16 <= length <= 64:
            raise DataError(f"length must be an integer in 16..64 hex digits, got {length!r}")
        self._key = hmac.new(raw, _LABEL, hashlib.sha256).digest()
        self.length = length
        self.prefixes = {"user": str(user_prefix), "item": str(item_prefix)}
        kid = key_id(raw)
        if mapping is not None and mapping.key_id != kid:
            raise DataError(f"the pseudonym map was made with the key {mapping.key_id}, not "
                            f"with this key ({kid})")
        self.mapping = mapping if mapping is not None else PseudonymMap(kid)

    def pseudonym(self, raw_id: Any, kind: str = "user") -> str:
        """The pseudonym of one raw id (recorded in :attr:`mapping`).

        Parameters
        ----------
        raw_id : int or str
        kind : {"user", "item"}, default "user"

        Returns
        -------
        str
        """
        return str(self.pseudonymise_ids([raw_id], kind)[0])

    def pseudonymise_ids(self, ids: Iterable, kind: str = "user") -> np.ndarray:
        """Pseudonyms of raw ids, in order (repeats allowed); recorded in :attr:`mapping`.

        Parameters
        ----------
        ids : sequence of int or str
        kind : {"user", "item"}, default "user"

        Returns
        -------
        np.ndarray of object (str)
        """
        kind = _kind(kind)
        arr = pd.Series(list(ids) if not isinstance(ids, (pd.Series, np.ndarray)) else ids)
        if arr.dtype == bool or (arr.dtype == object and any(
                isinstance(x, (bool, np.bool_)) for x in arr)):  # True would merge with 1
            raise DataError(f"{kind} ids contain booleans, which cannot be pseudonymised: use "
                            f"integers or strings")
        codes, uniq = pd.factorize(arr, use_na_sentinel=True)
        if (codes < 0).any():
            pos = int(np.flatnonzero(codes < 0)[0])
            raise DataError(f"{kind} ids contain a missing value at position {pos}")
        tag = kind.encode() + b"\0"
        prefix = self.prefixes[kind]
        names = np.empty(len(uniq), dtype=object)
        for j, x in enumerate(uniq):
            msg, storable = _canonical(x, kind)
            name = prefix + hmac.new(self._key, tag + msg, hashlib.sha256).hexdigest()[
                :self.length]
            self.mapping._add(kind, name, storable)
            names[j] = name
        return names[codes]

    def transform(self, data, *, users: bool = True, items: bool = False,
                  user_col: str | None = None, item_col: str | None = None):
        """Pseudonymise the user and/or item ids of a frame, Interactions or features.

        Parameters
        ----------
        data : pandas.DataFrame, Interactions, ItemFeatures or UserFeatures
            A frame is copied with the id columns replaced; Interactions and features get
            new vocabularies (same order, same rows); features are keyed by their own kind.
        users, items : bool, default True, False
            Which ids to replace (a features object ignores these).
        user_col, item_col : str, optional
            Frame columns (found by the names ``Interactions.from_pandas`` looks for).

        Returns
        -------
        Same type as ``data``.
        """
        if isinstance(data, pd.DataFrame):
            out = data.copy()
            if users:
                c = _pick_column(data, user_col, _USER_COLS, "user", True)
                out[c] = self.pseudonymise_ids(data[c].to_numpy(), "user")
            if items:
                c = _pick_column(data, item_col, _ITEM_COLS, "item", True)
                out[c] = self.pseudonymise_ids(data[c].to_numpy(), "item")
            return out
        if isinstance(data, Interactions):
            uv, iv = data.user_vocab, data.item_vocab
            if users:
                uv = IdVocab(self.pseudonymise_ids(uv.ids, "user"), name="user")
            if items:
                iv = IdVocab(self.pseudonymise_ids(iv.ids, "item"), name="item")
            return Interactions(data.user_indices, data.item_indices, uv, iv,
                                data.values if data.has_values else None, data.timestamps,
                                _sorted=True)
        if isinstance(data, Features):
            out = copy.copy(data)
            out.vocab = IdVocab(self.pseudonymise_ids(data.vocab.ids, data.kind), name=data.kind)
            return out
        raise DataError(f"cannot pseudonymise a {type(data).__name__}: pass a DataFrame, "
                        f"Interactions, ItemFeatures or UserFeatures")
