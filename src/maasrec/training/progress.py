"""Progress bars and the epoch driver of the closed-form/iterative models (ALS, BPRMF)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .history import EpochLog

__all__ = ["progress", "run_epochs"]

logger = logging.getLogger(__name__)


def progress(iterable=None, *, total: int | None = None, desc: str | None = None,
             verbose: bool = True, unit: str = "it"):
    """A tqdm progress bar that is silent (and free) when ``verbose`` is False.

    Parameters
    ----------
    iterable : iterable, optional
    total : int, optional
    desc : str, optional
    verbose : bool, default True
    unit : str, default "it"

    Returns
    -------
    tqdm.tqdm
    """
    tqdm = tqdm_class()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not verbose, leave=False,
                dynamic_ncols=True)


def tqdm_class():
    """tqdm's notebook bar where Jupyter widgets are installed, its text bar otherwise.

    ``tqdm.auto`` picks the widget bar in any notebook and, without ``ipywidgets``, prints
    a ``TqdmWarning`` ("IProgress not found") into the notebook before falling back.
    """
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


def run_epochs(epoch_fn: Callable[[int], float | None], n_epochs: int, *, verbose: bool = True,
               desc: str = "epochs", name: str = "model", unit: str = "epoch") -> EpochLog:
    """Run ``epoch_fn(epoch)`` ``n_epochs`` times with progress, timing and logging.

    Parameters
    ----------
    epoch_fn : callable
        Does one epoch (or iteration) and returns its loss (or None).
    n_epochs : int
    verbose : bool, default True
        Show a tqdm bar (with the last loss); False is silent.
    desc : str, default "epochs"
        Label of the progress bar.
    name : str, default "model"
        Prefix of the log lines (``logging`` at DEBUG per epoch, INFO at the end).
    unit : str, default "epoch"

    Returns
    -------
    EpochLog
    """
    log = EpochLog()
    bar = progress(range(n_epochs), desc=desc, verbose=verbose, unit=unit)
    for epoch in bar:
        t0 = time.perf_counter()
        loss = epoch_fn(epoch)
        dt = time.perf_counter() - t0
        loss = float("nan") if loss is None else float(loss)
        log.losses.append(loss)
        log.seconds.append(dt)
        if loss == loss:
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        logger.debug("%s: %s %d/%d in %.3fs, loss %.6g", name, unit, epoch + 1, n_epochs, dt, loss)
    bar.close()
    if n_epochs:
        logger.info("%s: %d %ss, %.3fs per %s", name, n_epochs, unit, log.seconds_per_epoch, unit)
    return log
