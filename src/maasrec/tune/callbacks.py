"""What a trial adds to a neural model's training: pruning and the time budget.

:class:`TrialCallback` is a :class:`maasrec.training.Callback`: after every validated
epoch it reports the validation metric to the Optuna trial (``trial.report``) and raises
``optuna.TrialPruned`` when the pruner says so; it stops training at the end of the
epoch during which the budget ran out (the Trainer keeps the best epoch's weights, the
trial completes with that model), and aborts the epoch itself when even that overruns
the deadline by more than a grace period (the trial is then recorded as stopped, without
a model).

:func:`trainer_callbacks` (over :func:`maasrec.training.extra_callbacks`) hands callbacks to every :class:`~maasrec.training.Trainer`
built inside a ``with`` block, so that models whose ``fit`` takes no ``callbacks=``
(MultVAE, LightGCN, SequentialRecommender) report their epochs too.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from ..exceptions import MaasrecError
from ..training.callbacks import Callback, extra_callbacks

__all__ = ["BudgetExhausted", "TrialCallback", "trainer_callbacks"]


class BudgetExhausted(MaasrecError):
    """The time budget of :func:`~maasrec.tune.tune` ended in the middle of an epoch."""


class TrialCallback(Callback):
    """Report each epoch's validation metric to an Optuna trial; prune; hold the deadline.

    Parameters
    ----------
    trial : optuna.Trial or None
        None: only the deadline is held.
    deadline : float or None
        ``time.monotonic()`` at which the budget ends.
    grace : float, default 0.0
        Seconds past the deadline an epoch may still run before it is aborted.
    report : bool, default True
        Report intermediate values and ask the pruner (False when the tuned metric is
        minimised: the trainer's validation metric is always maximised).
    abort_deadline : float, optional
        ``time.monotonic()`` past which (plus ``grace``) an epoch is aborted; default
        ``deadline``. Later than ``deadline`` when ``deadline`` is a model family's share
        of the budget (``strategy="spread"``) rather than the end of the budget.

    Attributes
    ----------
    epochs : int
        Epochs ended.
    best : float
        Best validation value reported (NaN before any).
    stopped_by_budget : bool
        Training was stopped because the budget ended.
    """

    def __init__(self, trial: Any, deadline: float | None, *, grace: float = 0.0,
                 report: bool = True, abort_deadline: float | None = None):
        self.trial = trial
        self.deadline = deadline
        self.abort_deadline = deadline if abort_deadline is None else abort_deadline
        self.grace = float(grace)
        self.report = bool(report)
        self.epochs = 0
        self.best = float("nan")
        self.stopped_by_budget = False

    def on_step_end(self, trainer, step, logs):
        if self.abort_deadline is not None and \
                time.monotonic() > self.abort_deadline + self.grace:
            self.stopped_by_budget = True
            raise BudgetExhausted(
                f"the time budget ended during epoch {self.epochs + 1} (step {step}); the "
                f"trial is stopped")

    def on_epoch_end(self, trainer, epoch, logs):
        self.epochs = epoch
        name = trainer.history.metric_name
        value = logs.get(name) if name is not None else None
        if value is not None and math.isfinite(float(value)):
            value = float(value)
            if not value <= self.best:  # also when best is NaN
                self.best = value
            if self.trial is not None and self.report:
                self.trial.report(value, step=epoch)
                if self.trial.should_prune():
                    import optuna

                    raise optuna.TrialPruned(f"pruned at epoch {epoch} ({name} {value:.4f})")
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stopped_by_budget = True
            return True
        return None


@contextlib.contextmanager
def trainer_callbacks(*callbacks: Callback):
    """Add ``callbacks`` to every Trainer built in this context (this thread or task).

    Trainers built elsewhere at the same time (other threads) are unaffected: the
    callbacks travel in a context variable.

    Parameters
    ----------
    *callbacks : Callback
    """
    with extra_callbacks(*callbacks):
        yield
