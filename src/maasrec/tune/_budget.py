"""The time budget of :func:`maasrec.tune.tune`: parsing, the deadline, what fits in it.

Neural models are stopped by :class:`~maasrec.tune.callbacks.TrialCallback` at an epoch
end (or mid-epoch past a grace period). A classical trial starts only when it is
expected to end in time: expected from the shortest earlier trial of the same model in
this process, and for a model not yet tried whose cost is known in advance (EASE:
O(n_items^3)) from a Cholesky factorisation and inverse timed once on this machine. The
estimate can be wrong (the load changes), so a classical fit still running past the
deadline plus the grace is stopped between two of its blocks of work
(:mod:`maasrec.models._interrupt`); its time then counts only as a lower bound on the
model's duration. The result reports how far the last trial ran past the deadline
(``overrun_seconds``).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from ..exceptions import DataError

__all__ = ["Budget", "parse_budget"]

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
          "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
          "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0}


def parse_budget(budget: Any) -> float | None:
    """Seconds of a budget: a number of seconds or a text such as ``"90s"``, ``"10min"``,
    ``"1.5h"``, ``"1h30min"``; None stays None.

    Raises
    ------
    DataError
        Anything else, or a budget that is not positive.
    """
    if budget is None:
        return None
    if isinstance(budget, bool):
        raise DataError(f"budget must be seconds or a text like '10min', got {budget!r}")
    if isinstance(budget, (int, float)):
        seconds = float(budget)
    elif isinstance(budget, str):
        text = budget.strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)([a-z]*)", text)
        if not parts or "".join(a + b for a, b in parts) != text \
                or any(u not in _UNITS for _, u in parts):
            raise DataError(f"budget {budget!r} is not a duration; write seconds or e.g. "
                            f"'90s', '10min', '1.5h', '1h30min'")
        seconds = sum(float(v) * _UNITS[u] for v, u in parts)
    else:
        raise DataError(f"budget must be seconds or a text like '10min', got {budget!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise DataError(f"budget must be a positive duration, got {budget!r}")
    return seconds


_FACTOR_SECONDS: dict[int, float] = {}
#: Size of the matrix whose Cholesky factorisation and inverse calibrate EASE's cost.
_CALIBRATION_N = 1024


def factor_inverse_seconds(n: int = _CALIBRATION_N) -> float:
    """Seconds this process takes to factor and invert an n x n float64 SPD matrix.

    Measured once (~0.3 s at n = 1024 on one core) with the LAPACK routines EASE uses
    (torch's Cholesky and ``cholesky_inverse``): a matrix product's rate would
    overstate them several times at the catalogue sizes that matter.
    """
    if n not in _FACTOR_SECONDS:
        import torch

        g = torch.Generator().manual_seed(0)
        a = torch.rand(n, n, dtype=torch.float64, generator=g)
        a = a @ a.T + n * torch.eye(n, dtype=torch.float64)
        t = time.perf_counter()
        torch.cholesky_inverse(torch.linalg.cholesky(a))
        _FACTOR_SECONDS[n] = time.perf_counter() - t
    return _FACTOR_SECONDS[n]


def predicted_seconds(model: str, n_users: int, n_items: int, nnz: int) -> float | None:
    """Expected fit time of a model never tried here, where it is known in advance.

    EASE: the factorisation and inverse of its n_items x n_items Gram matrix, scaled by
    n_items^3 from :func:`factor_inverse_seconds`, times 0.6: large factorisations run
    faster per flop than the 1,024 calibration (on the shared 2-core test machine at
    load 8: 0.29 s at 1,024, 1.63 s at 2,048; EASE fitted latest-small's 9,742 items in
    152 s, the cubic extrapolation said 258 s).
    """
    if model == "EASE":
        return 0.6 * factor_inverse_seconds() * (float(n_items) / _CALIBRATION_N) ** 3
    return None


class Budget:
    """The deadline of one :func:`tune` call and the durations seen so far.

    Parameters
    ----------
    seconds : float or None
        None: no time limit.
    shape : tuple of (n_users, n_items, nnz)
        The training data (for :func:`predicted_seconds`).
    """

    def __init__(self, seconds: float | None, shape: tuple[int, int, int]):
        self.seconds = seconds
        self.start = time.monotonic()
        self.deadline = None if seconds is None else self.start + seconds
        #: seconds an epoch may run past the deadline before it is aborted
        self.grace = 0.0 if seconds is None else max(1.0, 0.02 * seconds)
        self.shape = shape
        self.durations: dict[str, list[float]] = {}
        #: seconds after which a fit of the model was stopped unfinished (a lower bound)
        self.floors: dict[str, float] = {}
        self.last_end = self.start

    def remaining(self) -> float:
        """Seconds left (inf without a budget)."""
        if self.deadline is None:
            return math.inf
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def record(self, model: str, seconds: float, complete: bool = True) -> None:
        """A trial of ``model`` took ``seconds`` (fit and evaluation); with
        ``complete=False`` its fit was stopped unfinished: a full one takes longer."""
        if complete:
            self.durations.setdefault(model, []).append(float(seconds))
        else:
            self.floors[model] = max(self.floors.get(model, 0.0), float(seconds))
        self.last_end = time.monotonic()

    def expected(self, model: str, classical: bool) -> float | None:
        """Shortest earlier trial of ``model``, else the advance estimate (classical
        only); at least as long as a fit of it that was stopped unfinished."""
        seen = self.durations.get(model)
        if seen:
            expected = min(seen)
        elif classical:
            expected = predicted_seconds(model, *self.shape)
        else:
            expected = None
        floor = self.floors.get(model)
        if floor is not None and (expected is None or expected < floor):
            expected = floor
        return expected

    def fits(self, model: str, classical: bool) -> tuple[bool, float | None]:
        """Whether a trial of ``model`` may start now, and the time it is expected to take.

        Neural trials may always start (they are stopped at the deadline); a classical
        one only when its expected time is within what is left.
        """
        left = self.remaining()
        if left <= 0:
            return False, None
        expected = self.expected(model, classical)
        if classical and expected is not None and expected > left:
            return False, expected
        return True, expected

    def overrun(self) -> float:
        """Seconds the last trial ended after the deadline (0 when in time or unlimited)."""
        if self.deadline is None:
            return 0.0
        return max(0.0, self.last_end - self.deadline)
