"""Seeded train/validation/test splits of :class:`~maasrec.data.Interactions`.

Every split

* returns a :class:`SplitResult`: a tuple of 2 or 3 :class:`Interactions`
  (``train, test`` or ``train, valid, test``) that **share the input's vocabularies**
  (so indices mean the same thing in every part), are row-disjoint, and together hold
  exactly the input's rows;
* is deterministic: the same input and the same ``random_state`` give identical parts
  (randomness comes only from ``np.random.default_rng(random_state)``);
* reports, in ``result.report``, the rows, users and items of each part and how many
  users/items of the evaluation parts never occur in train ("cold"). The non-cold
  splits warn with :class:`~maasrec.exceptions.ColdStartWarning` when there are any:
  they are reported, never silently dropped.

Protocols
---------
============================  ==========================================  =====================
function                      holds out                                   needs timestamps
============================  ==========================================  =====================
:func:`random_split`          random rows, per user (default) or global   no
:func:`temporal_split`        rows after global time cutoff(s)            yes
:func:`leave_last_out`        each user's latest row(s)                   yes (or ordered rows)
:func:`cold_user_split`       whole users (all their rows)                no
:func:`cold_item_split`       whole items (all their rows)                no
:func:`holdout_validation`    a validation slice of a training set        ordered: yes
============================  ==========================================  =====================
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_int, check_random_state
from ..exceptions import ColdStartWarning, DataError, MaasrecWarning
from .interactions import Interactions, as_interactions

__all__ = [
    "SplitResult",
    "cold_item_split",
    "cold_user_split",
    "holdout_validation",
    "leave_last_out",
    "random_split",
    "temporal_split",
]

_EPS = 1e-9  # guards floor(ratio * n) against float error, e.g. 0.29 * 100 = 28.999...


class SplitResult(tuple):
    """The parts of a split: a tuple ``(train, test)`` or ``(train, valid, test)``.

    Unpack it like a tuple (``train, valid, test = random_split(X)``); the extra
    attributes describe what happened.

    Attributes
    ----------
    names : tuple of str
        ``("train", "test")`` or ``("train", "valid", "test")``.
    report : dict
        ``method`` and ``params`` (the call), ``parts`` (for each part name: ``rows``,
        ``users``, ``items`` with at least one row), ``cold_users`` / ``cold_items``
        (for each evaluation part: how many of its users/items have no train row),
        plus method-specific entries (e.g. ``cutoffs`` for :func:`temporal_split`,
        ``users_all_in_train`` for :func:`leave_last_out`).
    """

    def __new__(cls, parts: Sequence[Interactions], report: dict | None = None):
        self = super().__new__(cls, tuple(parts))
        self.names = ("train", "test") if len(parts) == 2 else ("train", "valid", "test")
        self.report = report if report is not None else {}
        return self

    def __reduce__(self):
        return (SplitResult, (tuple(self), self.report))

    @property
    def train(self) -> Interactions:
        """Interactions: the training part."""
        return self[0]

    @property
    def valid(self) -> Interactions | None:
        """Interactions or None: the validation part (None for a two-way split)."""
        return self[1] if len(self) == 3 else None

    @property
    def test(self) -> Interactions:
        """Interactions: the test part."""
        return self[-1]

    def __repr__(self) -> str:
        method = self.report.get("method", "split")
        params = self.report.get("params", {})
        head = ", ".join(f"{k}={v!r}" for k, v in params.items())
        lines = [f"SplitResult({method}{', ' if head else ''}{head})"]
        parts = self.report.get("parts", {})
        width = max((len(f"{p['rows']:,}") for p in parts.values()), default=1)
        for name, part in zip(self.names, self):
            info = parts.get(name, {"rows": part.nnz, "users": "?", "items": "?"})
            line = (f"  {name:<5}: {info['rows']:>{width},} rows, {info['users']:,} users, "
                    f"{info['items']:,} items")
            if name != "train":
                cu = self.report.get("cold_users", {}).get(name, 0)
                ci = self.report.get("cold_items", {}).get(name, 0)
                line += f" (not in train: {cu:,} users, {ci:,} items)"
            lines.append(line)
        return "\n".join(lines)


# -- helpers -------------------------------------------------------------------------
def _check_ratios(ratios: Any, name: str = "ratios") -> tuple[float, ...]:
    msg = (f"{name} must be 2 or 3 positive numbers summing to 1 (train, [valid,] test), "
           f"got {ratios!r}")
    if isinstance(ratios, (str, bytes)) or not isinstance(ratios, (Sequence, np.ndarray)):
        raise DataError(msg)
    vals = list(ratios)
    if len(vals) not in (2, 3):
        raise DataError(msg)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v <= 0:
            raise DataError(msg)
    total = float(sum(vals))
    if abs(total - 1.0) > 1e-6:
        raise DataError(f"{msg} (they sum to {total:g})")
    return tuple(float(v) for v in vals)


def _ratio_counts(n: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Rows per part for groups of ``n`` rows (the documented rounding rule).

    ``cnt[j] = floor(ratios[j] * n)`` for every part but the first, the first part
    (train) gets the rest; then, for test and then valid, a part whose share is below
    one row (``floor == 0``) takes one row from train as long as train keeps at least
    one. Same rule as RecBole's per-user ratio split.
    """
    n = np.asarray(n, dtype=np.int64)
    m = len(ratios)
    cnt = np.zeros((len(n), m), dtype=np.int64)
    for j in range(1, m):
        cnt[:, j] = np.floor(ratios[j] * n + _EPS).astype(np.int64)
    cnt[:, 0] = n - cnt[:, 1:].sum(axis=1)
    for j in range(m - 1, 0, -1):  # test first, then valid
        move = (cnt[:, 0] > 1) & (cnt[:, j] == 0)
        cnt[move, j] += 1
        cnt[move, 0] -= 1
    return cnt


def _parts_from_labels(X: Interactions, labels: np.ndarray, n_parts: int) -> list[Interactions]:
    return [X.subset(np.flatnonzero(labels == j)) for j in range(n_parts)]


def _report(X: Interactions, parts: Sequence[Interactions], method: str,
            params: dict, warn: bool, **extra: Any) -> dict:
    names = ("train", "test") if len(parts) == 2 else ("train", "valid", "test")
    uc = [np.bincount(p.user_indices, minlength=X.n_users) for p in parts]
    ic = [np.bincount(p.item_indices, minlength=X.n_items) for p in parts]
    rep: dict[str, Any] = {"method": method, "params": dict(params), "parts": {},
                           "cold_users": {}, "cold_items": {}}
    for name, p, u, i in zip(names, parts, uc, ic):
        rep["parts"][name] = {"rows": int(p.nnz), "users": int((u > 0).sum()),
                              "items": int((i > 0).sum())}
    for name, u, i in zip(names[1:], uc[1:], ic[1:]):
        rep["cold_users"][name] = int(((u > 0) & (uc[0] == 0)).sum())
        rep["cold_items"][name] = int(((i > 0) & (ic[0] == 0)).sum())
    rep.update(extra)
    if warn:
        bits = []
        for name in names[1:]:
            cu, ci = rep["cold_users"][name], rep["cold_items"][name]
            if cu or ci:
                bits.append(f"{name}: {cu} user(s) and {ci} item(s)")
        if bits:
            warnings.warn(
                f"{method}: evaluation parts hold users/items with no train row ("
                + "; ".join(bits) + "). They are kept (see result.report); models score "
                "them only via history=/side features, or filter them before evaluating.",
                ColdStartWarning, stacklevel=3)
    return rep


def _prepare(X: Any, method: str) -> Interactions:
    try:
        X = as_interactions(X)
    except DataError as exc:
        raise DataError(f"{method}: {exc}") from exc
    if X.nnz == 0:
        raise DataError(f"{method}: interactions are empty; nothing to split")
    return X


def _within_user_rank(X: Interactions, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random rank of each row among its user's rows (0 .. n_u - 1)."""
    u = X.user_indices
    # one sort on (user, random 32-bit key): a uniformly random order inside each user's
    # block (ties in the key keep row order, so the result is still deterministic)
    key = (u.astype(np.uint64) << np.uint64(32)) | rng.integers(
        0, 2**32, size=len(u), dtype=np.uint64)
    perm = np.argsort(key, kind="stable")
    rank = np.empty(len(u), dtype=np.int64)
    # rows are sorted by user, so u[perm] == u and a user's block starts at indptr[u]
    rank[perm] = np.arange(len(u), dtype=np.int64) - X.user_indptr[u]
    return rank


# -- splits --------------------------------------------------------------------------
def random_split(X: Any, ratios: Sequence[float] = (0.8, 0.1, 0.1), *, per_user: bool = True,
                 random_state: Any = None) -> SplitResult:
    """Random split of the rows, per user (default) or global.

    Parameters
    ----------
    X : Interactions or pandas.DataFrame or scipy.sparse matrix
    ratios : sequence of 2 or 3 floats, default (0.8, 0.1, 0.1)
        Shares of ``(train, test)`` or ``(train, valid, test)``: positive, summing to 1.
    per_user : bool, default True
        Split each user's rows by the ratios (every user with rows keeps at least one
        train row), or split all rows globally (users may end up only in valid/test).
    random_state : int, numpy Generator or None
        Seed of ``np.random.default_rng``.

    Returns
    -------
    SplitResult
        ``(train, test)`` or ``(train, valid, test)``.

    Notes
    -----
    Rounding (per user with ``n`` rows, or once over all rows when ``per_user=False``):
    every part but train gets ``floor(ratio * n)`` rows and train the rest; then the
    test part and then the valid part, if that left it empty, take one row from train as
    long as train keeps at least one (RecBole's rule). With (0.8, 0.1, 0.1): ``n=1`` ->
    1/0/0, ``n=2`` -> 1/0/1, ``n=3`` -> 1/1/1, ``n=5`` -> 3/1/1, ``n=10`` -> 8/1/1,
    ``n=25`` -> 21/2/2. So every user keeps >= 1 train row and every user with >= 3 rows
    is in all three parts when the valid/test ratios are below 1/3. Which rows go where
    is uniformly random within the user.

    Raises
    ------
    DataError
        On bad ratios or empty input.

    Warns
    -----
    ColdStartWarning
        When valid/test contain users or items without train rows (possible for items,
        and for users when ``per_user=False``).
    """
    r = _check_ratios(ratios)
    X = _prepare(X, "random_split")
    rng = np.random.default_rng(check_random_state("random_state", random_state))
    u = X.user_indices
    n = X.nnz
    if per_user:
        rank = _within_user_rank(X, rng)
        bounds = np.cumsum(_ratio_counts(X.user_counts(), r), axis=1)[:, :-1]
        b = bounds[u]
    else:
        rank = np.empty(n, dtype=np.int64)
        rank[rng.permutation(n)] = np.arange(n, dtype=np.int64)
        b = np.cumsum(_ratio_counts(np.array([n]), r), axis=1)[:, :-1]
    labels = (rank[:, None] >= b).sum(axis=1)
    parts = _parts_from_labels(X, labels, len(r))
    params = {"ratios": r, "per_user": bool(per_user), "random_state": _seed_repr(random_state)}
    return SplitResult(parts, _report(X, parts, "random_split", params, warn=True))


def _seed_repr(random_state: Any) -> Any:
    if random_state is None or isinstance(random_state, numbers.Integral):
        return random_state
    return type(random_state).__name__


def _timestamp_unit_ns(t: np.ndarray) -> int:
    """Nanoseconds per timestamp unit, guessed from the magnitude of the timestamps."""
    m = float(np.max(np.abs(t))) if len(t) else 0.0
    if m < 1e11:
        return 1_000_000_000  # seconds (unix time up to year 5138)
    if m < 1e14:
        return 1_000_000  # milliseconds
    if m < 1e17:
        return 1_000  # microseconds
    return 1  # nanoseconds (what Interactions stores for datetimes)


def _as_cutoff(c: Any, t: np.ndarray) -> float:
    if isinstance(c, bool):
        raise DataError(f"temporal_split: cutoff {c!r} is not a timestamp")
    if isinstance(c, numbers.Real):
        if not np.isfinite(c):
            raise DataError(f"temporal_split: cutoff {c!r} is not finite")
        return float(c)
    if isinstance(c, (str, np.datetime64, pd.Timestamp)) or hasattr(c, "isoformat"):
        try:
            ns = pd.Timestamp(c).value
        except (TypeError, ValueError) as exc:
            raise DataError(f"temporal_split: cutoff {c!r} is not a date or number") from exc
        return ns / _timestamp_unit_ns(t)
    raise DataError(f"temporal_split: cutoff {c!r} is not a number or a date")


def temporal_split(X: Any, cutoff: Any = None, *, ratios: Sequence[float] | None = None
                   ) -> SplitResult:
    """Global split by time: train before the cutoff(s), evaluation after.

    Parameters
    ----------
    X : Interactions or pandas.DataFrame
        Must have timestamps.
    cutoff : timestamp or pair of timestamps, optional
        One value ``c``: train ``t < c``, test ``t >= c``. Two values ``(c1, c2)``:
        train ``t < c1``, valid ``c1 <= t < c2``, test ``t >= c2``. Numbers are compared
        with the stored timestamps; dates (``str``, ``datetime``, ``np.datetime64``,
        ``pd.Timestamp``) are converted to the unit of the stored timestamps, guessed
        from their magnitude (seconds, milliseconds, microseconds or nanoseconds; data
        frames with datetime columns are stored in nanoseconds).
    ratios : sequence of 2 or 3 floats, optional
        Instead of cutoffs: shares of rows by time (e.g. ``(0.8, 0.1, 0.1)``). They are
        turned into cutoffs at the timestamps of the rows where the shares end (with the
        rounding of :func:`random_split`), so rows with equal timestamps never straddle
        parts and the shares hold up to ties. Default when neither is given:
        ``(0.8, 0.1, 0.1)``.

    Returns
    -------
    SplitResult
        The numeric cutoffs used are in ``result.report["cutoffs"]``.

    Raises
    ------
    DataError
        Without timestamps, with both or invalid ``cutoff``/``ratios``, on empty input.

    Warns
    -----
    ColdStartWarning
        When valid/test hold users or items that are not in train (usual for time splits).
    """
    X = _prepare(X, "temporal_split")
    if not X.has_timestamps:
        raise DataError(
            "temporal_split needs timestamps, but these interactions have no timestamps. "
            "Protocols that work without them: random_split (per user or global), "
            "cold_user_split, cold_item_split, and leave_last_out(assume_ordered=True) when "
            "each user's rows are in time order.")
    if cutoff is not None and ratios is not None:
        raise DataError("temporal_split: pass either cutoff= or ratios=, not both")
    t = X.timestamps
    if cutoff is not None:
        cut_in = list(cutoff) if isinstance(cutoff, (list, tuple, np.ndarray)) else [cutoff]
        if len(cut_in) not in (1, 2):
            raise DataError(f"temporal_split: cutoff must be one or two timestamps, got {cutoff!r}")
        cuts = [_as_cutoff(c, t) for c in cut_in]
        if len(cuts) == 2 and cuts[0] > cuts[1]:
            raise DataError(f"temporal_split: cutoffs must be increasing, got {cutoff!r}")
        params: dict[str, Any] = {"cutoff": cutoff}
    else:
        r = _check_ratios((0.8, 0.1, 0.1) if ratios is None else ratios)
        st = np.sort(t)
        bounds = np.cumsum(_ratio_counts(np.array([len(st)]), r)[0])[:-1]
        cuts = [float(st[b]) if b < len(st) else float("inf") for b in bounds]
        params = {"ratios": r}
    labels = np.searchsorted(np.asarray(cuts, dtype=np.float64), t.astype(np.float64),
                             side="right")
    parts = _parts_from_labels(X, labels, len(cuts) + 1)
    rep = _report(X, parts, "temporal_split", params, warn=True, cutoffs=cuts)
    return SplitResult(parts, rep)


def leave_last_out(X: Any, n_valid: int = 1, n_test: int = 1, *,
                   assume_ordered: bool = False) -> SplitResult:
    """Hold out each user's latest rows: the last ``n_test`` to test, the ``n_valid`` before to valid.

    Parameters
    ----------
    X : Interactions or pandas.DataFrame
    n_valid : int, default 1
        Rows per user in valid; 0 gives a two-way ``(train, test)`` split.
    n_test : int, default 1
        Rows per user in test (>= 1).
    assume_ordered : bool, default False
        Without timestamps, the input order of each user's rows is taken as the time
        order (true for :class:`Interactions` built from ordered sequences, such as
        :func:`~maasrec.datasets.load_amazon_sequences`, which carries positions as
        timestamps anyway). A :class:`~maasrec.exceptions.MaasrecWarning` says so unless
        ``assume_ordered=True``.

    Returns
    -------
    SplitResult
        ``report["users_all_in_train"]`` counts the users kept whole in train.

    Notes
    -----
    "Latest" follows the stored row order: by timestamp, and rows with equal timestamps
    by input order. Users with fewer than ``n_valid + n_test + 1`` rows keep all their
    rows in train (so every evaluated user has at least one train row).

    Warns
    -----
    MaasrecWarning
        No timestamps and ``assume_ordered`` is False.
    ColdStartWarning
        When held-out items never occur in train.
    """
    n_valid = check_int("n_valid", n_valid, low=0)
    n_test = check_int("n_test", n_test, low=1)
    X = _prepare(X, "leave_last_out")
    if not X.has_timestamps and not assume_ordered:
        warnings.warn(
            "leave_last_out: these interactions have no timestamps, so each user's rows are "
            "taken in input order (last rows = latest). Pass assume_ordered=True if that "
            "order is chronological, or give timestamps.", MaasrecWarning, stacklevel=2)
    u = X.user_indices
    indptr = X.user_indptr
    from_end = indptr[u + 1] - 1 - np.arange(X.nnz, dtype=np.int64)
    eligible = X.user_counts()[u] >= n_valid + n_test + 1
    labels = np.zeros(X.nnz, dtype=np.int64)
    n_parts = 3 if n_valid > 0 else 2
    labels[eligible & (from_end < n_test)] = n_parts - 1
    if n_valid > 0:
        labels[eligible & (from_end >= n_test) & (from_end < n_test + n_valid)] = 1
    parts = _parts_from_labels(X, labels, n_parts)
    counts = X.user_counts()
    short = int(((counts > 0) & (counts < n_valid + n_test + 1)).sum())
    params = {"n_valid": n_valid, "n_test": n_test}
    rep = _report(X, parts, "leave_last_out", params, warn=True, users_all_in_train=short)
    return SplitResult(parts, rep)


def _group_split(X: Interactions, group_of_row: np.ndarray, n_groups: int,
                 ratios: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    active = np.flatnonzero(np.bincount(group_of_row, minlength=n_groups) > 0)
    perm = rng.permutation(active)
    cnt = _ratio_counts(np.array([len(active)]), ratios)[0]
    part_of = np.full(n_groups, -1, dtype=np.int64)
    start = 0
    for j, c in enumerate(cnt):
        part_of[perm[start:start + c]] = j
        start += c
    return part_of[group_of_row]


def cold_user_split(X: Any, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                    random_state: Any = None) -> SplitResult:
    """Hold out whole users: each user's rows all go to one part.

    Parameters
    ----------
    X : Interactions or pandas.DataFrame or scipy.sparse matrix
    ratios : sequence of 2 or 3 floats, default (0.8, 0.1, 0.1)
        Shares of the users (with rows) in ``(train, [valid,] test)``, rounded as in
        :func:`random_split` over the number of users.
    random_state : int, numpy Generator or None

    Returns
    -------
    SplitResult
        Every valid/test user is cold by construction; items seen only by held-out users
        are counted in ``report["cold_items"]``. No warning is raised.
    """
    r = _check_ratios(ratios)
    X = _prepare(X, "cold_user_split")
    rng = np.random.default_rng(check_random_state("random_state", random_state))
    labels = _group_split(X, X.user_indices, X.n_users, r, rng)
    parts = _parts_from_labels(X, labels, len(r))
    params = {"ratios": r, "random_state": _seed_repr(random_state)}
    return SplitResult(parts, _report(X, parts, "cold_user_split", params, warn=False))


def cold_item_split(X: Any, test_size: float = 0.1, valid_size: float = 0.0,
                    random_state: Any = None) -> SplitResult:
    """Hold out whole items: each item's rows all go to one part.

    Parameters
    ----------
    X : Interactions or pandas.DataFrame or scipy.sparse matrix
    test_size : float, default 0.1
        Share of the items (with rows) held out for test, in (0, 1).
    valid_size : float, default 0.0
        Share held out for validation; 0 gives a two-way ``(train, test)`` split.
    random_state : int, numpy Generator or None

    Returns
    -------
    SplitResult
        Item counts are rounded as in :func:`random_split`. Users whose items were all
        held out are counted in ``report["cold_users"]``. No warning is raised.
    """
    for name, v, low in (("test_size", test_size, False), ("valid_size", valid_size, True)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) \
                or not (v >= 0 if low else v > 0) or v >= 1:
            raise DataError(f"cold_item_split: {name} must be a share in "
                            f"{'[0, 1)' if low else '(0, 1)'}, got {v!r}")
    if test_size + valid_size >= 1:
        raise DataError(f"cold_item_split: test_size + valid_size must be < 1, got "
                        f"{test_size} + {valid_size} = {test_size + valid_size:g}")
    r = ((1.0 - test_size - valid_size, float(valid_size), float(test_size)) if valid_size > 0
         else (1.0 - test_size, float(test_size)))
    X = _prepare(X, "cold_item_split")
    rng = np.random.default_rng(check_random_state("random_state", random_state))
    labels = _group_split(X, X.item_indices, X.n_items, r, rng)
    parts = _parts_from_labels(X, labels, len(r))
    params = {"test_size": test_size, "valid_size": valid_size,
              "random_state": _seed_repr(random_state)}
    return SplitResult(parts, _report(X, parts, "cold_item_split", params, warn=False))


def holdout_validation(X: Any, fraction: float = 0.1, *, ordered: bool = False,
                       min_history: int = 5, min_users: int = 1000,
                       random_state: Any = None) -> SplitResult:
    """Hold out a small validation slice of a training set (for early stopping).

    What the neural models do in ``fit`` when no ``validation=`` is given
    (``validation_fraction``): they train on the first part and stop early on the
    second.

    Parameters
    ----------
    X : Interactions or pandas.DataFrame or scipy.sparse matrix
        The training interactions.
    fraction : float, default 0.1
        In (0, 1). ``ordered=False``: the share of each eligible user's rows held out
        (``floor(fraction * n)``, at least 1). ``ordered=True``: the share of the
        eligible users whose **last** row is held out (at least ``min_users`` of them,
        or all when there are fewer).
    ordered : bool, default False
        True: leave-last-out style (the protocol sequential models are made for; the
        last row in the stored order -- by timestamp when there are timestamps).
        False: a per-user random sample of rows.
    min_history : int, default 5
        Users with fewer rows keep all of them in the first part.
    min_users : int, default 1000
        ``ordered=True`` only: the fewest users held out (when that many are eligible),
        so that the validation metric of a small data set is not a handful of users.
    random_state : int, numpy Generator or None
        Seed of ``np.random.default_rng``.

    Returns
    -------
    SplitResult
        ``(train, holdout)``, sharing the vocabularies of ``X``; every user keeps at least
        ``min_history - 1`` rows (``ordered``) or ``ceil((1 - fraction) * n)`` rows in
        train. ``report["users_held_out"]`` counts the users with a held-out row and
        ``report["users_all_in_train"]`` the eligible-by-count rule's exclusions. No
        warning is raised for held-out items without a train row.

    Raises
    ------
    DataError
        On a bad ``fraction``, ``min_history`` or ``min_users``, or empty input.

    Examples
    --------
    >>> from maasrec.data.datasets import make_synthetic
    >>> X = make_synthetic(n_users=50, n_items=40, seed=0).interactions
    >>> train, hold = holdout_validation(X, 0.1, random_state=0)
    >>> train.nnz + hold.nnz == X.nnz
    True
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
            or not np.isfinite(fraction) or not 0 < fraction < 1:
        raise DataError(f"holdout_validation: fraction must be a share in (0, 1), "
                        f"got {fraction!r}")
    min_history = check_int("min_history", min_history, low=2)
    min_users = check_int("min_users", min_users, low=1)
    X = _prepare(X, "holdout_validation")
    rng = np.random.default_rng(check_random_state("random_state", random_state))
    counts = X.user_counts()
    eligible_users = counts >= min_history
    u = X.user_indices
    labels = np.zeros(X.nnz, dtype=np.int64)
    if ordered:
        pool = np.flatnonzero(eligible_users)
        n_pick = min(len(pool), max(int(np.ceil(fraction * len(pool) - _EPS)), min_users))
        picked = np.zeros(X.n_users, dtype=bool)
        picked[rng.choice(pool, size=n_pick, replace=False) if n_pick else pool[:0]] = True
        last = np.arange(X.nnz, dtype=np.int64) == X.user_indptr[u + 1] - 1
        labels[picked[u] & last] = 1
    else:
        rank = _within_user_rank(X, rng)
        n_hold = np.where(eligible_users,
                          np.maximum(1, np.floor(fraction * counts + _EPS)), 0).astype(np.int64)
        labels[rank < n_hold[u]] = 1
    parts = _parts_from_labels(X, labels, 2)
    params = {"fraction": float(fraction), "ordered": bool(ordered),
              "min_history": min_history, "min_users": min_users,
              "random_state": _seed_repr(random_state)}
    held = np.bincount(parts[1].user_indices, minlength=X.n_users) > 0
    rep = _report(X, parts, "holdout_validation", params, warn=False,
                  users_held_out=int(held.sum()),
                  users_all_in_train=int(((counts > 0) & ~eligible_users).sum()))
    return SplitResult(parts, rep)
