"""Telling a running classical fit to stop: a deadline and the check its loops call.

:func:`maasrec.tune.tune` fits each trial inside :func:`fit_deadline`; the classical fits
(EASE's and TextEASE's factorisation and inverse, ALS's iterations, BPRMF's epochs and
batches, ItemKNN's similarity blocks) call :func:`check_deadline` between blocks of
work, which raises :class:`FitInterrupted` once the deadline has passed. The deadline
travels in a context variable, so a fit in another thread or outside such a block never
sees it: there :func:`check_deadline` is one context-variable read (tens of
nanoseconds) and nothing changes.

Private: the models do not promise to stop at any particular point; only tune sets a
deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from ..exceptions import MaasrecError

__all__ = ["FitInterrupted", "check_deadline", "fit_deadline"]

#: (deadline as time.monotonic(), time.monotonic() at which the block started)
_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "maasrec_fit_deadline", default=None)


class FitInterrupted(MaasrecError):
    """A fit was stopped because the deadline set by :func:`fit_deadline` passed.

    The model is left as it was before the fit's end (not usable).

    Attributes
    ----------
    seconds : float
        Seconds from the start of the :func:`fit_deadline` block to the stop.
    where : str
        The loop that stopped (e.g. ``"EASE inverse, columns 2048 of 12101"``).
    """

    def __init__(self, message: str, seconds: float = 0.0, where: str = ""):
        super().__init__(message)
        self.seconds = float(seconds)
        self.where = where


@contextlib.contextmanager
def fit_deadline(deadline: float | None) -> Iterator[None]:
    """Fits run inside this block stop (:class:`FitInterrupted`) once ``deadline`` passes.

    Parameters
    ----------
    deadline : float or None
        ``time.monotonic()`` after which :func:`check_deadline` raises. None: no
        deadline (also inside an outer block: the inner block lifts it).
    """
    token = _DEADLINE.set(None if deadline is None else (float(deadline), time.monotonic()))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_deadline(where: str = "") -> None:
    """Raise :class:`FitInterrupted` when the deadline of the enclosing
    :func:`fit_deadline` block has passed; nothing without one.

    Parameters
    ----------
    where : str, optional
        What was running, for the message.
    """
    d = _DEADLINE.get()
    if d is None:
        return
    now = time.monotonic()
    if now > d[0]:
        seconds = now - d[1]
        raise FitInterrupted(
            f"the fit was stopped by its deadline after {seconds:.1f} s"
            + (f" ({where})" if where else ""), seconds=seconds, where=where)
