"""Matching JSON ids to the id kind of the served model.

JSON has integers and strings; a model may have been fitted on integer, string, float or
mixed ids. :func:`coerce_ids` converts request ids to the model's kind (see
:mod:`maasrec.serving.schemas` for the rules) and reports ids that cannot be of that kind
as unknown, with the original values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from ..data.vocab import IdVocab
from ..exceptions import UnknownIdError

__all__ = ["check_known", "coerce_ids", "to_json_ids"]

_INT_RE = re.compile(r"[+-]?[0-9]{1,19}")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_BAD = object()


def _to_int(v: Any) -> Any:
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int):
        return v if _I64_MIN <= v <= _I64_MAX else _BAD
    if isinstance(v, str) and _INT_RE.fullmatch(v):
        i = int(v)
        return i if _I64_MIN <= i <= _I64_MAX else _BAD
    return _BAD


def _to_float(v: Any) -> Any:
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int):
        return float(v)
    if isinstance(v, str) and len(v) <= 64:
        try:
            f = float(v)
        except ValueError:
            return _BAD
        return f if math.isfinite(f) else _BAD
    return _BAD


def _to_str(v: Any) -> Any:
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, (int, str)):
        return str(v)
    return _BAD


def _to_bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if v in (0, 1) and isinstance(v, int):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return _BAD


_CONVERTERS = {"int": _to_int, "float": _to_float, "str": _to_str, "bool": _to_bool}


def coerce_ids(values: Sequence[Any], vocab: IdVocab) -> list:
    """Convert JSON ids to the id kind of ``vocab``.

    Parameters
    ----------
    values : sequence of int or str
        Ids as they arrived in the request.
    vocab : IdVocab
        The model's user or item vocabulary.

    Returns
    -------
    list
        The ids, converted (ints for an integer vocabulary, and so on). Ids are not
        looked up here: an id of the right kind that the model does not know is found by
        the model itself (``UnknownIdError``).

    Raises
    ------
    UnknownIdError
        For ids that cannot be of the vocabulary's kind (e.g. ``"abc"`` for integer ids,
        or an integer outside the int64 range); ``.ids`` holds them as given.
    """
    convert = _CONVERTERS.get(vocab.id_kind)
    if convert is None:  # mixed ids: match the JSON value unchanged
        return list(values)
    out, bad = [], []
    for v in values:
        c = convert(v)
        if c is _BAD:
            bad.append(v)
        else:
            out.append(c)
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UnknownIdError(
            f"unknown {vocab.name} id(s): {shown}{more}; this model has {vocab.id_kind} "
            f"{vocab.name} ids (like {vocab.ids[:3].tolist()})",
            ids=bad[:100], kind=vocab.name)
    return out


def check_known(ids: Sequence[Any], vocab: IdVocab) -> None:
    """Raise :class:`UnknownIdError` (naming them) if any of ``ids`` is not in ``vocab``.

    A hash lookup per id for short lists (much cheaper than a vectorised lookup of a
    handful of ids), the vectorised :meth:`IdVocab.index` for long ones.

    Parameters
    ----------
    ids : sequence
        Ids already converted with :func:`coerce_ids`.
    vocab : IdVocab
    """
    if len(ids) > 64:
        vocab.index(list(ids))
        return
    unknown = [x for x in ids if x not in vocab]
    if unknown:
        vocab.index(unknown)  # raises with the library's message
        raise UnknownIdError(f"unknown {vocab.name} id(s): {unknown[:5]}", ids=unknown[:100],
                             kind=vocab.name)  # pragma: no cover - index always raises


def to_json_ids(values: Sequence[Any]) -> list:
    """Raw ids as JSON-native Python values (numpy scalars unwrapped).

    Parameters
    ----------
    values : sequence or np.ndarray

    Returns
    -------
    list
    """
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [v.item() if hasattr(v, "item") else v for v in values]
