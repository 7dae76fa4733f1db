"""Rating-prediction error metrics: RMSE and MAE."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import DataError

__all__ = ["mae", "rmse"]


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        try:
            a = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name} must be numeric, got {type(y).__name__}: {exc}") from exc
        if a.ndim != 1:
            a = a.ravel() if a.ndim == 2 and 1 in a.shape else a
        if a.ndim != 1:
            raise DataError(f"{name} must be 1-d, got shape {np.shape(y)}")
        arrays.append(a)
    t, p = arrays
    if len(t) != len(p):
        raise DataError(f"y_true and y_pred must have the same length, got {len(t)} and {len(p)}")
    if len(t) == 0:
        raise DataError("y_true and y_pred are empty: at least one rating is needed")
    for name, a in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name} has {int(bad.sum())} NaN/inf value(s), first {a[i]!r} at position {i}"
            )
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, ``sqrt(mean((y_true - y_pred)^2))``, over all ratings.

    Parameters
    ----------
    y_true, y_pred : array-like of float, shape (n,)
        True and predicted ratings, aligned.

    Returns
    -------
    float

    Raises
    ------
    DataError
        On different lengths, empty input or NaN/inf values.

    Notes
    -----
    Pooled over ratings (LensKit's ``RMSE.ByRating``), not averaged per user.

    Examples
    --------
    >>> rmse([1, 2, 3], [1, 2, 5])
    1.1547005383792515
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error, ``mean(|y_true - y_pred|)``, over all ratings.

    Parameters
    ----------
    y_true, y_pred : array-like of float, shape (n,)
        True and predicted ratings, aligned.

    Returns
    -------
    float

    Raises
    ------
    DataError
        On different lengths, empty input or NaN/inf values.

    Examples
    --------
    >>> mae([1, 2, 3], [1, 2, 5])
    0.6666666666666666
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))
