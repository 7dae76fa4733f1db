"""What a training run records: per-epoch losses, metrics, timings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EpochLog", "TrainingHistory", "deprecated_log_alias"]


@dataclass
class EpochLog:
    """What :func:`run_epochs` records.

    Attributes
    ----------
    losses : list of float
        The value each epoch function returned (NaN when it returned None).
    seconds : list of float
        Wall time of each epoch.
    """

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        """float: median wall time of an epoch (NaN before the first)."""
        return float(np.median(self.seconds)) if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The fitted log of ALS/BPRMF: :meth:`TrainingHistory.to_dict` of these epochs.

        Returns
        -------
        dict
            ``losses`` and ``seconds`` per epoch (NaN as None), ``steps`` the epochs run,
            no validation metric.
        """
        return TrainingHistory(losses=list(self.losses), seconds=list(self.seconds),
                               metrics=[float("nan")] * len(self.losses),
                               learning_rates=[float("nan")] * len(self.losses),
                               steps=len(self.losses)).to_dict()

    @classmethod
    def from_dict(cls, log: dict[str, Any]) -> EpochLog:
        """Rebuild from a ``training_log_`` dict (None as NaN).

        Parameters
        ----------
        log : dict

        Returns
        -------
        EpochLog
        """
        def nan(xs):
            return [float("nan") if x is None else float(x) for x in xs or ()]

        return cls(losses=nan(log.get("losses")), seconds=nan(log.get("seconds")))


def deprecated_log_alias(old: str, convert: Any = None) -> property:
    """A deprecated name of ``training_log_``, the one fitted-log attribute.

    Reading it warns with :class:`FutureWarning` and returns ``training_log_`` (through
    ``convert`` when given); assigning it (as loading a model saved under the old name
    does) sets ``training_log_`` silently.

    Parameters
    ----------
    old : str
        The deprecated attribute name.
    convert : callable, optional
        ``convert(training_log_)`` -> what the old attribute held.

    Returns
    -------
    property
    """
    def fget(self):
        log = self.training_log_  # AttributeError (hasattr False) before fit
        warnings.warn(f"{type(self).__name__}.{old} is deprecated and will be removed in "
                      f"the next release; use training_log_ (the fitted log of every "
                      f"trained maasrec model)", FutureWarning, stacklevel=2)
        return convert(log) if convert is not None else log

    def fset(self, value):
        self.training_log_ = value.to_dict() if isinstance(value, EpochLog) else value

    def fdel(self):
        self.__dict__.pop("training_log_", None)

    return property(fget, fset, fdel,
                    doc=f"Deprecated alias of ``training_log_`` (reading ``{old}`` warns).")


@dataclass
class TrainingHistory:
    """What :func:`fit_loop` records.

    Attributes
    ----------
    losses : list of float
        Mean training loss of each epoch.
    metrics : list of float
        Validation metric after each epoch (NaN where not evaluated).
    seconds : list of float
        Wall time of each epoch (training and validation).
    learning_rates : list of float
        Learning rate at the end of each epoch.
    metric_name : str or None
    best_epoch : int or None
        1-based epoch whose weights the module holds at the end (the best validation
        epoch), or None without validation.
    best_metric : float or None
    stopped_early : bool
        Stopped by patience or a callback before ``epochs``.
    steps : int
        Optimiser steps taken.
    """

    losses: list[float] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    metric_name: str | None = None
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    steps: int = 0

    @property
    def epochs(self) -> int:
        """int: epochs run."""
        return len(self.losses)

    @property
    def seconds_per_epoch(self) -> float:
        """float: median wall time of an epoch (NaN before the first)."""
        return float(np.median(self.seconds)) if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible copy (NaN as None).

        Returns
        -------
        dict
        """
        def clean(xs):
            return [None if x != x else float(x) for x in xs]

        return {"losses": clean(self.losses), "metrics": clean(self.metrics),
                "seconds": clean(self.seconds), "learning_rates": clean(self.learning_rates),
                "metric_name": self.metric_name, "best_epoch": self.best_epoch,
                "best_metric": self.best_metric, "stopped_early": self.stopped_early,
                "steps": self.steps}
