"""Small parameter checks shared by models and components (errors name the value)."""

from __future__ import annotations

import numbers

import numpy as np

from .exceptions import DataError

__all__ = ["check_bool", "check_choice", "check_int", "check_number", "check_random_state"]


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Check that a parameter is a real number within bounds.

    Parameters
    ----------
    name : str
        Parameter name, used in the message.
    value : object
    low, high : float, optional
        Bounds.
    low_inclusive, high_inclusive : bool, default True

    Returns
    -------
    float

    Raises
    ------
    DataError
        Naming the parameter, the value and the expected range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise DataError(f"{name} must be a real number, got {value!r}")
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "" if low is None else (f">= {low}" if low_inclusive else f"> {low}")
        hi = "" if high is None else (f"<= {high}" if high_inclusive else f"< {high}")
        rng = " and ".join(x for x in (lo, hi) if x)
        raise DataError(f"{name} must be {rng}, got {value!r}")
    return float(value)


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Check that a parameter is an integer within bounds (inclusive).

    Parameters
    ----------
    name : str
    value : object
    low, high : int, optional

    Returns
    -------
    int

    Raises
    ------
    DataError
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DataError(f"{name} must be an integer, got {value!r}")
    check_number(name, int(value), low=low, high=high)
    return int(value)


def check_choice(name: str, value, choices) -> object:
    """Check that a parameter is one of ``choices``.

    Parameters
    ----------
    name : str
    value : object
    choices : iterable

    Returns
    -------
    object
        ``value``.

    Raises
    ------
    DataError
    """
    choices = tuple(choices)
    if value not in choices:
        raise DataError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    """Check that a parameter is a real boolean (``True``/``False``, or a numpy bool).

    Strings such as ``"no"`` or ``"False"`` are truthy, and ``0``/``1`` hide typos, so
    neither is accepted.

    Parameters
    ----------
    name : str
    value : object

    Returns
    -------
    bool

    Raises
    ------
    DataError
        Naming the parameter and the value.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise DataError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_random_state(name: str, value) -> object:
    """Check a seed parameter: None, an integer in ``[0, 2**64)`` or a ``numpy.random.Generator``.

    These are the forms of :func:`numpy.random.default_rng` (which every model seeds
    from) that maasrec supports; ``numpy.random.RandomState``, floats and strings are
    refused.

    Parameters
    ----------
    name : str
    value : object

    Returns
    -------
    object
        ``value``.

    Raises
    ------
    DataError
        Naming the parameter and the value.
    """
    if value is None or isinstance(value, np.random.Generator):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise DataError(f"{name} must be None, an integer >= 0 or a numpy.random.Generator, "
                        f"got {type(value).__name__} {value!r}")
    if not 0 <= int(value) < 2**64:
        raise DataError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return value
