"""Binary classification metrics for pointwise click prediction.

``y_true`` is always a 1-d array of 0/1 (or bool) labels. Functions that judge hard
decisions (:func:`accuracy`, :func:`precision`, :func:`recall`, :func:`f1`) take either
0/1 predictions or probabilities together with a ``threshold`` (a prediction is
positive when ``y_pred >= threshold``); :func:`roc_auc` takes any real-valued scores and
:func:`log_loss` probabilities. :func:`classification_report` computes all of them at
once.

Examples
--------
>>> y = [0, 0, 1, 1]
>>> p = [0.1, 0.6, 0.4, 0.9]
>>> roc_auc(y, p)
0.75
>>> f1(y, p)
0.5
>>> round(log_loss(y, p), 4)
0.5108
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ..exceptions import DataError

__all__ = [
    "ClassificationReport",
    "accuracy",
    "classification_report",
    "confusion_counts",
    "f1",
    "log_loss",
    "precision",
    "recall",
    "roc_auc",
]


def _vector(y: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric, got {type(y).__name__}: {exc}") from exc
    if a.ndim == 2 and 1 in a.shape:
        a = a.ravel()
    if a.ndim != 1:
        raise DataError(f"{name} must be 1-d, got shape {np.shape(y)}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name} has {int(bad.sum())} NaN/inf value(s), first {a[i]!r} at "
                        f"position {i}")
    return a


def _labels(y_true: Any, y_other: Any, other: str) -> tuple[np.ndarray, np.ndarray]:
    t = _vector(y_true, "y_true")
    o = _vector(y_other, other)
    if len(t) != len(o):
        raise DataError(f"y_true and {other} must have the same length, got {len(t)} and "
                        f"{len(o)}")
    if len(t) == 0:
        raise DataError(f"y_true and {other} are empty: at least one example is needed")
    bad = (t != 0) & (t != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"y_true must hold binary labels 0/1, got {t[i]!r} at position {i}")
    return t.astype(bool), o


def _decisions(y_pred: np.ndarray, threshold: float) -> np.ndarray:
    if isinstance(threshold, bool) or not np.isscalar(threshold) or not np.isfinite(threshold):
        raise DataError(f"threshold must be a finite number, got {threshold!r}")
    return y_pred >= threshold


def confusion_counts(y_true: Any, y_pred: Any, *, threshold: float = 0.5) -> dict[str, int]:
    """True/false positives/negatives.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_pred : array-like, shape (n,)
        0/1 predictions, or probabilities/scores compared with ``threshold``.
    threshold : float, default 0.5
        ``y_pred >= threshold`` is a positive prediction (0/1 predictions are unchanged
        by any threshold in (0, 1]).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``tn``, ``fn``.
    """
    t, p = _labels(y_true, y_pred, "y_pred")
    d = _decisions(p, threshold)
    return {"tp": int(np.sum(t & d)), "fp": int(np.sum(~t & d)), "tn": int(np.sum(~t & ~d)),
            "fn": int(np.sum(t & ~d))}


def _ratio(num: int, den: int, zero_division: float) -> float:
    return float(num / den) if den else float(zero_division)


def accuracy(y_true: Any, y_pred: Any, *, threshold: float = 0.5) -> float:
    """Fraction of correct decisions.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_pred : array-like, shape (n,)
        0/1 predictions or probabilities (positive when ``>= threshold``).
    threshold : float, default 0.5

    Returns
    -------
    float

    Raises
    ------
    DataError
        Non-binary labels, different lengths, empty input, NaN.
    """
    c = confusion_counts(y_true, y_pred, threshold=threshold)
    return (c["tp"] + c["tn"]) / sum(c.values())


def precision(y_true: Any, y_pred: Any, *, threshold: float = 0.5,
              zero_division: float = 0.0) -> float:
    """Precision ``tp / (tp + fp)`` of the positive class.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_pred : array-like, shape (n,)
        0/1 predictions or probabilities (positive when ``>= threshold``).
    threshold : float, default 0.5
    zero_division : float, default 0.0
        Value returned when nothing is predicted positive.

    Returns
    -------
    float
    """
    c = confusion_counts(y_true, y_pred, threshold=threshold)
    return _ratio(c["tp"], c["tp"] + c["fp"], zero_division)


def recall(y_true: Any, y_pred: Any, *, threshold: float = 0.5,
           zero_division: float = 0.0) -> float:
    """Recall ``tp / (tp + fn)`` of the positive class.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_pred : array-like, shape (n,)
        0/1 predictions or probabilities (positive when ``>= threshold``).
    threshold : float, default 0.5
    zero_division : float, default 0.0
        Value returned when there is no positive example.

    Returns
    -------
    float
    """
    c = confusion_counts(y_true, y_pred, threshold=threshold)
    return _ratio(c["tp"], c["tp"] + c["fn"], zero_division)


def f1(y_true: Any, y_pred: Any, *, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """F1 score ``2 tp / (2 tp + fp + fn)`` of the positive class.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_pred : array-like, shape (n,)
        0/1 predictions or probabilities (positive when ``>= threshold``).
    threshold : float, default 0.5
    zero_division : float, default 0.0
        Value returned when there are neither positive examples nor positive predictions.

    Returns
    -------
    float
    """
    c = confusion_counts(y_true, y_pred, threshold=threshold)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"], zero_division)


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve (probability that a positive outscores a negative).

    Ties count one half (Mann-Whitney U with average ranks), so constant scores give 0.5.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_score : array-like of float, shape (n,)
        Any real-valued scores, higher = more likely positive.

    Returns
    -------
    float

    Raises
    ------
    DataError
        When ``y_true`` holds a single class (the AUC is undefined), and as
        :func:`accuracy`.
    """
    t, s = _labels(y_true, y_score, "y_score")
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"roc_auc needs both classes in y_true, got {n_pos} positive(s) and "
                        f"{n_neg} negative(s)")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(y_true: Any, y_prob: Any, *, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))`` (natural log).

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_prob : array-like of float in [0, 1], shape (n,)
        Predicted probabilities of the positive class.
    eps : float, default 1e-15
        Probabilities are clipped to ``[eps, 1 - eps]`` (a confident mistake costs
        ``-log(eps)``, not infinity).

    Returns
    -------
    float

    Raises
    ------
    DataError
        Probabilities outside [0, 1], and as :func:`accuracy`.
    """
    t, p = _labels(y_true, y_prob, "y_prob")
    bad = (p < 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"y_prob must hold probabilities in [0, 1], got {p[i]!r} at position "
                        f"{i}")
    if not (isinstance(eps, float) and 0 < eps < 0.5):
        raise DataError(f"eps must be a float in (0, 0.5), got {eps!r}")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.where(t, np.log(p), np.log1p(-p))))


@dataclass(frozen=True)
class ClassificationReport:
    """All binary classification metrics of one set of predictions.

    Attributes
    ----------
    accuracy, precision, recall, f1 : float
        At ``threshold``.
    roc_auc : float
        NaN when ``y_true`` has a single class.
    log_loss : float
        NaN when the predictions are not probabilities.
    threshold : float
    support : dict
        ``{"positive": n, "negative": n}``.
    confusion : dict
        ``tp``, ``fp``, ``tn``, ``fn``.
    """

    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    log_loss: float
    threshold: float
    support: dict
    confusion: dict

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (NaN becomes None).

        Returns
        -------
        dict
        """
        def num(x: float) -> float | None:
            return None if x != x else float(x)

        return {"accuracy": num(self.accuracy), "precision": num(self.precision),
                "recall": num(self.recall), "f1": num(self.f1), "roc_auc": num(self.roc_auc),
                "log_loss": num(self.log_loss), "threshold": float(self.threshold),
                "support": dict(self.support), "confusion": dict(self.confusion)}

    def __str__(self) -> str:
        c, s = self.confusion, self.support
        lines = [
            f"{'':>10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
            f"{'positive':>10} {self.precision:9.4f} {self.recall:7.4f} {self.f1:7.4f} "
            f"{s['positive']:8d}",
            f"{'negative':>10} {_ratio(c['tn'], c['tn'] + c['fn'], 0.0):9.4f} "
            f"{_ratio(c['tn'], c['tn'] + c['fp'], 0.0):7.4f} "
            f"{_ratio(2 * c['tn'], 2 * c['tn'] + c['fn'] + c['fp'], 0.0):7.4f} "
            f"{s['negative']:8d}",
            "",
            f"accuracy {self.accuracy:.4f}   roc_auc {self.roc_auc:.4f}   log_loss "
            f"{self.log_loss:.4f}   (threshold {self.threshold:g})",
            f"confusion: tp {c['tp']}  fp {c['fp']}  tn {c['tn']}  fn {c['fn']}",
        ]
        return "\n".join(lines)


def classification_report(y_true: Any, y_prob: Any, *, threshold: float = 0.5
                          ) -> ClassificationReport:
    """Every binary classification metric at once (like scikit-learn's report).

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    y_prob : array-like of float, shape (n,)
        Probabilities (or scores: then ``log_loss`` is NaN) of the positive class.
    threshold : float, default 0.5
        Decision threshold of accuracy, precision, recall and F1.

    Returns
    -------
    ClassificationReport
        ``print(report)`` shows a table; ``report.to_dict()`` is JSON-ready.

    Examples
    --------
    >>> r = classification_report([0, 1, 1, 0], [0.2, 0.8, 0.4, 0.3])
    >>> r.f1, r.roc_auc
    (0.6666666666666666, 1.0)
    """
    t, p = _labels(y_true, y_prob, "y_prob")
    c = confusion_counts(t, p, threshold=threshold)
    try:
        auc = roc_auc(t, p)
    except DataError:
        auc = float("nan")
    ll = log_loss(t, p) if bool(np.all((p >= 0) & (p <= 1))) else float("nan")
    n = len(t)
    return ClassificationReport(
        accuracy=(c["tp"] + c["tn"]) / n,
        precision=_ratio(c["tp"], c["tp"] + c["fp"], 0.0),
        recall=_ratio(c["tp"], c["tp"] + c["fn"], 0.0),
        f1=_ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"], 0.0),
        roc_auc=auc, log_loss=ll, threshold=float(threshold),
        support={"positive": int(t.sum()), "negative": int(n - t.sum())}, confusion=c)
