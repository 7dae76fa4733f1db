"""Callbacks of the :class:`~maasrec.training.Trainer`: progress bar, TensorBoard, plain functions.

A callback subclasses :class:`Callback` and overrides the hooks it needs. The trainer
calls, in this order: ``on_fit_start`` once, ``on_step_end`` after every optimiser step,
``on_epoch_end`` after every epoch (after validation; returning True stops training),
``on_fit_end`` once (also when training fails). Callbacks are called in the order given.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..exceptions import DataError, MaasrecError

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = [
    "Callback",
    "FunctionCallback",
    "ProgressCallback",
    "TensorBoardCallback",
    "active_extra_callbacks",
    "as_callback",
    "extra_callbacks",
]


class Callback:
    """Base class of trainer callbacks; every hook does nothing by default.

    Attributes
    ----------
    needs_grad_norm : bool
        Set True to have the trainer compute the global gradient norm of every step
        (``logs["grad_norm"]`` in :meth:`on_step_end`) even without clipping.
    """

    needs_grad_norm = False

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (of this run: after a resume, the next one).

        Parameters
        ----------
        trainer : Trainer
        """

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        """Called after every optimiser step.

        Parameters
        ----------
        trainer : Trainer
        step : int
            1-based optimiser step over the whole fit.
        logs : dict
            ``loss`` (a 0-d tensor: ``float()`` it only when needed, it synchronises
            the device), ``lr``, ``samples`` (examples in the step, when the batch has
            a length), ``seconds`` (wall time of the step) and ``grad_norm`` (a 0-d
            tensor, when clipping or a callback asked for it).
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> bool | None:
        """Called after every epoch; return True to stop training.

        Parameters
        ----------
        trainer : Trainer
        epoch : int
            1-based epoch.
        logs : dict
            ``loss``, ``lr``, ``seconds``, ``samples_per_second``, and the validation
            metric under its name (e.g. ``"ndcg@10"``) when validated.

        Returns
        -------
        bool or None
        """
        return None

    def on_fit_end(self, trainer: Trainer) -> None:
        """Called once at the end of the fit, also when it raised.

        Parameters
        ----------
        trainer : Trainer
        """


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs) -> bool`` called at the end of each epoch.

    The callback form of :func:`~maasrec.training.fit_loop` and of the models'
    ``fit(callbacks=...)``.

    Parameters
    ----------
    fn : callable
        Gets the 1-based epoch and a copy of the epoch's logs; a true result stops
        training.
    """

    def __init__(self, fn: Callable[[int, dict], Any]):
        self.fn = fn

    def on_epoch_end(self, trainer, epoch, logs):
        return bool(self.fn(epoch, dict(logs)))


def as_callback(cb: Any) -> Callback:
    """A :class:`Callback` as is, a callable wrapped in :class:`FunctionCallback`.

    Parameters
    ----------
    cb : Callback or callable

    Returns
    -------
    Callback

    Raises
    ------
    DataError
        For anything else.
    """
    if isinstance(cb, Callback):
        return cb
    if callable(cb):
        return FunctionCallback(cb)
    raise DataError(f"callbacks must be Callback instances or callables fn(epoch, logs), "
                    f"got {cb!r}")


class ProgressCallback(Callback):
    """A tqdm bar over the epochs with the last loss and validation metric.

    What ``verbose=True`` shows, for every model trained by the
    :class:`~maasrec.training.Trainer`.

    Parameters
    ----------
    desc : str, optional
        Label (default: the trainer's name).
    """

    def __init__(self, desc: str | None = None):
        self.desc = desc
        self.bar = None

    def on_fit_start(self, trainer):
        from .progress import progress

        self.bar = progress(total=trainer.config.epochs, desc=self.desc or trainer.config.name,
                            verbose=True, unit="epoch")
        if trainer.epoch:
            self.bar.update(trainer.epoch)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.bar is None:
            return None
        post = {"loss": f"{logs['loss']:.4g}"}
        name = trainer.history.metric_name
        if name in logs and logs[name] == logs[name]:
            post[name] = f"{logs[name]:.4f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)
        return None

    def on_fit_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoardCallback(Callback):
    """Write training curves for TensorBoard (``torch.utils.tensorboard``).

    Per optimiser step (every ``log_every_steps``): ``train/loss``, ``train/lr``,
    ``train/grad_norm`` and ``train/samples_per_second``; per epoch: ``epoch/loss``,
    ``epoch/lr``, ``epoch/seconds``, ``epoch/samples_per_second`` and
    ``validation/<metric>`` (e.g. ``validation/ndcg@10``). Steps are the global
    optimiser step (epoch scalars use the epoch number), so a resumed fit continues the
    same curves.

    Parameters
    ----------
    log_dir : str or Path
        Where the event files go (``tensorboard --logdir LOG_DIR``).
    log_every_steps : int, default 1
        Step scalars every this many optimiser steps (each costs a device
        synchronisation for the loss).
    grad_norm : bool, default True
        Compute and log the global gradient norm (one extra reduction per step when
        the trainer does not clip).

    Raises
    ------
    MaasrecError
        When the ``tensorboard`` package is missing: ``pip install "maasrec[tensorboard]"``.
    """

    def __init__(self, log_dir, *, log_every_steps: int = 1, grad_norm: bool = True):
        if isinstance(log_every_steps, bool) or not isinstance(log_every_steps, int) \
                or log_every_steps < 1:
            raise DataError(f"log_every_steps must be a positive integer, got {log_every_steps!r}")
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise MaasrecError(
                "TensorBoardCallback needs the tensorboard package: pip install "
                "\"maasrec[tensorboard]\"") from None
        self.log_dir = str(log_dir)
        self.log_every_steps = log_every_steps
        self.needs_grad_norm = bool(grad_norm)
        self.writer = None
        self._t = None

    def on_fit_start(self, trainer):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=self.log_dir)
        self._t = time.perf_counter()

    def on_step_end(self, trainer, step, logs):
        if self.writer is None or step % self.log_every_steps:
            return
        w = self.writer
        w.add_scalar("train/loss", float(logs["loss"]), step)
        w.add_scalar("train/lr", float(logs["lr"]), step)
        if logs.get("grad_norm") is not None:
            w.add_scalar("train/grad_norm", float(logs["grad_norm"]), step)
        if logs.get("samples") and logs.get("seconds"):
            w.add_scalar("train/samples_per_second", logs["samples"] / logs["seconds"], step)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.writer is None:
            return None
        w = self.writer
        for key in ("loss", "lr", "seconds", "samples_per_second"):
            if logs.get(key) is not None:
                w.add_scalar(f"epoch/{key}", float(logs[key]), epoch)
        name = trainer.history.metric_name
        if name is not None and name in logs and logs[name] == logs[name]:
            w.add_scalar(f"validation/{name}", float(logs[name]), epoch)
        w.flush()
        return None

    def on_fit_end(self, trainer):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_EXTRA: contextvars.ContextVar[tuple] = contextvars.ContextVar("maasrec_extra_callbacks",
                                                                default=())


@contextlib.contextmanager
def extra_callbacks(*callbacks: Any) -> Iterator[None]:
    """Add ``callbacks`` to every :class:`~maasrec.training.Trainer` built inside the block.

    For code that drives a model's ``fit`` and needs its training loop's events without a
    ``callbacks=`` argument on that model (:func:`maasrec.tune.tune` prunes trials this
    way). The callbacks travel in a context variable: Trainers built in other threads or
    tasks at the same time are unaffected, and nesting adds to the outer block's list.

    Parameters
    ----------
    *callbacks : Callback or callable ``fn(epoch, logs) -> bool``

    Examples
    --------
    >>> from maasrec.training import extra_callbacks, FunctionCallback
    >>> seen = []
    >>> with extra_callbacks(FunctionCallback(lambda epoch, logs: seen.append(epoch))):
    ...     pass  # model.fit(...) here reports every epoch to the callback
    """
    token = _EXTRA.set(tuple(_EXTRA.get()) + tuple(callbacks))
    try:
        yield
    finally:
        _EXTRA.reset(token)


def active_extra_callbacks() -> tuple:
    """The callbacks added by the enclosing :func:`extra_callbacks` blocks (outermost first).

    Returns
    -------
    tuple
    """
    return tuple(_EXTRA.get())
