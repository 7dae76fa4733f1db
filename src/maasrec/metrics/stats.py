"""Uncertainty for evaluation results: bootstrap confidence intervals and paired tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..exceptions import DataError

__all__ = ["PairedTestResult", "bootstrap_ci", "paired_test"]

_BLOCK_ELEMENTS = 1_000_000  # bootstrap weights held at once (rows x users)


def _check_bootstrap(n_bootstrap: Any, confidence: Any) -> tuple[int, float]:
    if isinstance(n_bootstrap, (bool, np.bool_)) or not isinstance(n_bootstrap, (int, np.integer)):
        raise DataError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if n_bootstrap < 0:
        raise DataError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not isinstance(confidence, (float, int, np.floating)) or not 0 < confidence < 1:
        raise DataError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return int(n_bootstrap), float(confidence)


def bootstrap_means(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_bootstrap`` resamples (users drawn with replacement), NaN-aware.

    Parameters
    ----------
    values : np.ndarray, shape (n_users, n_metrics)
        Per-user values; NaN entries are left out of each mean.
    n_bootstrap : int
    rng : numpy.random.Generator

    Returns
    -------
    np.ndarray, shape (n_bootstrap, n_metrics)
    """
    x = np.asarray(values, dtype=np.float64)
    n, n_metrics = x.shape
    ok = ~np.isnan(x)
    has_nan = not ok.all()
    x0 = np.where(ok, x, 0.0) if has_nan else x
    okf = ok.astype(np.float64)
    out = np.empty((n_bootstrap, n_metrics))
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    dtype = np.int32 if n < 2**31 // max(block, 1) else np.int64
    for a in range(0, n_bootstrap, block):
        b = min(n_bootstrap, a + block)
        draws = rng.integers(0, n, size=(b - a, n), dtype=dtype)
        draws += (np.arange(b - a, dtype=dtype) * n)[:, None]
        w = np.bincount(draws.ravel(), minlength=(b - a) * n).reshape(b - a, n).astype(np.float64)
        if has_nan:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[a:b] = (w @ x0) / (w @ okf)
        else:
            out[a:b] = (w @ x0) / n
    return out


def percentile_interval(means: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap means, column-wise (NaN columns give NaN)."""
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(means, [alpha, 1.0 - alpha], axis=0)
    return np.asarray(lo), np.asarray(hi)


def bootstrap_ci(values: Any, n_bootstrap: int = 1000, confidence: float = 0.95,
                 random_state: Any = 0) -> tuple[Any, Any]:
    """Percentile bootstrap confidence interval of a mean over users.

    Users are resampled with replacement ``n_bootstrap`` times; the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled
    means. NaN values are left out of every mean.

    Parameters
    ----------
    values : array-like of float, shape (n_users,) or (n_users, n_metrics)
        Per-user values.
    n_bootstrap : int, default 1000
        Number of resamples (>= 1).
    confidence : float, default 0.95
    random_state : int, numpy.random.Generator or None, default 0

    Returns
    -------
    (low, high)
        Floats for 1-d input, arrays (one per column) for 2-d input.

    Examples
    --------
    >>> lo, hi = bootstrap_ci([0.0, 1.0, 0.5, 0.25], n_bootstrap=200)
    >>> lo <= 0.4375 <= hi
    True
    """
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, confidence)
    if n_bootstrap < 1:
        raise DataError("n_bootstrap must be >= 1 to compute an interval")
    x = np.asarray(values, dtype=np.float64)
    single = x.ndim == 1
    if single:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"values must be a non-empty 1-d or 2-d array, got shape {x.shape}")
    rng = np.random.default_rng(random_state)
    lo, hi = percentile_interval(bootstrap_means(x, n_bootstrap, rng), confidence)
    return (float(lo[0]), float(hi[0])) if single else (lo, hi)


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of :func:`paired_test` (``a - b`` over the users both results scored).

    Attributes
    ----------
    metric : str
    n_users : int
        Users in both results with a value for the metric in both.
    n_only_a, n_only_b : int
        Users scored by only one of the results (left out of the comparison).
    mean_a, mean_b : float
        Means over the common users.
    mean_diff : float
        ``mean(a - b)``.
    ci : tuple of float
        Percentile bootstrap interval of ``mean_diff``.
    confidence : float
    t_statistic, t_pvalue : float
        Paired t-test (``scipy.stats.ttest_rel``), two-sided.
    wilcoxon_statistic, wilcoxon_pvalue : float
        Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped),
        two-sided.
    """

    metric: str
    n_users: int
    n_only_a: int
    n_only_b: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci: tuple[float, float]
    confidence: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float

    def __repr__(self) -> str:
        return (
            f"PairedTestResult({self.metric}: a={self.mean_a:.4f} b={self.mean_b:.4f} "
            f"diff={self.mean_diff:+.4f} [{self.ci[0]:+.4f}, {self.ci[1]:+.4f}] "
            f"({self.confidence:.0%} CI), t-test p={self.t_pvalue:.3g}, "
            f"Wilcoxon p={self.wilcoxon_pvalue:.3g}, n_users={self.n_users})"
        )


def paired_test(result_a: Any, result_b: Any, metric: str, *, n_bootstrap: int = 1000,
                confidence: float = 0.95, random_state: Any = 0) -> PairedTestResult:
    """Compare two evaluation results on one per-user metric, user by user.

    The per-user arrays are aligned by raw user id (users scored by only one result are
    left out and counted), then a paired t-test and a Wilcoxon signed-rank test are run
    on the differences ``a - b``, and the mean difference gets a bootstrap interval.

    Parameters
    ----------
    result_a, result_b : EvaluationResult
        From :func:`evaluate` / :func:`evaluate_lists`, with the same protocol.
    metric : str
        A per-user metric both results hold, e.g. ``"ndcg@10"`` (not coverage or Gini,
        which are not per user).
    n_bootstrap : int, default 1000
    confidence : float, default 0.95
    random_state : int, numpy.random.Generator or None, default 0

    Returns
    -------
    PairedTestResult

    Raises
    ------
    DataError
        If the metric is missing or not per user, the protocols differ, or fewer than
        two users are common to both results.
    """
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, confidence)
    for name, r in (("result_a", result_a), ("result_b", result_b)):
        if not hasattr(r, "per_user") or not hasattr(r, "users"):
            raise DataError(f"{name} must be an EvaluationResult, got {type(r).__name__}")
        if metric not in r.per_user:
            raise DataError(
                f"{name} has no per-user values for {metric!r}; per-user metrics are "
                f"{sorted(r.per_user)}"
            )
    pa, pb = getattr(result_a, "protocol", None), getattr(result_b, "protocol", None)
    na, nb = getattr(result_a, "n_negatives", None), getattr(result_b, "n_negatives", None)
    if pa != pb or (pa == "sampled" and na != nb):
        raise DataError(
            f"cannot compare a {pa!r} evaluation with a {pb!r} one "
            f"(n_negatives {na} vs {nb}); evaluate both models the same way"
        )
    ia, ib = pd.Index(result_a.users), pd.Index(result_b.users)
    common = ia.intersection(ib, sort=False)
    xa = np.asarray(result_a.per_user[metric], dtype=np.float64)[ia.get_indexer(common)]
    xb = np.asarray(result_b.per_user[metric], dtype=np.float64)[ib.get_indexer(common)]
    ok = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[ok], xb[ok]
    if len(xa) < 2:
        raise DataError(
            f"paired_test needs at least 2 users scored by both results, got {len(xa)}"
        )
    d = xa - xb
    if np.all(d == d[0]):
        t_stat = 0.0 if d[0] == 0 else float(np.sign(d[0]) * np.inf)
        t_p = 1.0 if d[0] == 0 else 0.0
    else:
        t = _st.ttest_rel(xa, xb)
        t_stat, t_p = float(t.statistic), float(t.pvalue)
    if np.count_nonzero(d) == 0:
        w_stat, w_p = 0.0, 1.0
    else:
        w = _st.wilcoxon(d[d != 0])
        w_stat, w_p = float(w.statistic), float(w.pvalue)
    if n_bootstrap > 0:
        rng = np.random.default_rng(random_state)
        lo, hi = percentile_interval(bootstrap_means(d[:, None], n_bootstrap, rng), confidence)
        ci = (float(lo[0]), float(hi[0]))
    else:
        ci = (float("nan"), float("nan"))
    return PairedTestResult(
        metric=metric, n_users=len(d), n_only_a=len(ia) - len(common),
        n_only_b=len(ib) - len(common), mean_a=float(xa.mean()), mean_b=float(xb.mean()),
        mean_diff=float(d.mean()), ci=ci, confidence=confidence, t_statistic=t_stat,
        t_pvalue=t_p, wilcoxon_statistic=w_stat, wilcoxon_pvalue=w_p,
    )
