"""The one training loop of maasrec's neural models: :class:`Trainer`.

A model describes *what* to train as a :class:`TrainingTask` (its module, a batch
source, a loss, optionally a validation metric); the :class:`Trainer` owns *how*: the
optimiser and its parameter groups, the learning-rate schedule, AMP, clipping,
gradient accumulation, early stopping with best-checkpoint restore, non-finite loss
handling, callbacks, seeds, and checkpoint/resume. :func:`fit_loop` is the functional
form the models call.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..exceptions import DataError, MaasrecError
from .callbacks import Callback, ProgressCallback, active_extra_callbacks, as_callback
from .checkpoint import _plain, has_checkpoint, read_checkpoint, write_checkpoint
from .distributed import attach_allreduce, broadcast_float, is_distributed, release_allreduce, shard
from .history import TrainingHistory
from .optim import OPTIMIZERS, SCHEDULES, lr_factor, make_optimizer, param_groups
from .rng import fork_rng, manual_seeded, seed_from
from .runtime import to_device

__all__ = ["NonFiniteLossError", "Trainer", "TrainerConfig", "TrainingTask", "fit_loop"]

logger = logging.getLogger("maasrec.training")


class NonFiniteLossError(MaasrecError, FloatingPointError):
    """Training produced a NaN or infinite loss.

    Raised by the :class:`Trainer` *before* the bad step is applied; the module then
    holds the best checkpoint (the best validation epoch, or the weights of the last
    good step when there is no validation).

    Parameters
    ----------
    message : str
    epoch : int
        1-based epoch of the bad step.
    step : int
        1-based batch within that epoch.
    best_epoch : int or None
        Epoch whose weights the module holds (None: no epoch finished).
    history : TrainingHistory, optional
        What was recorded up to the failure.
    """

    def __init__(self, message: str, *, epoch: int, step: int, best_epoch: int | None = None,
                 history: TrainingHistory | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.best_epoch = best_epoch
        self.history = history


def _positive_int(name: str, value: Any, *, none: bool = False, zero: bool = False) -> None:
    if none and value is None:
        return
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        what = "an integer >= 0" if zero else "a positive integer"
        raise DataError(f"{name} must be {what}{' or None' if none else ''}, got {value!r}")


@dataclass
class TrainerConfig:
    """How to train: every knob of the :class:`Trainer`, typed, in one object.

    Attributes
    ----------
    epochs : int, default 10
        Maximum number of epochs.
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
        Ignored when the task brings its own optimiser.
    learning_rate : float, default 1e-3
    weight_decay : float, default 0.0
    param_groups : {"all", "no_decay"}, default "all"
        ``"no_decay"``: biases, norms and 1-d parameters get no weight decay
        (:func:`~maasrec.training.param_groups`).
    lr_schedule : {"constant", "cosine", "linear"}, default "constant"
    warmup : float, default 0.0
        Linear warm-up: a fraction of all optimiser steps if < 1, else a number of steps.
    clip_grad_norm : float, optional
        Clip the global gradient norm to this value.
    grad_accumulation : int, default 1
        Batches per optimiser step; each batch's loss is divided by it, so ``k``
        batches of ``B/k`` examples step like one batch of ``B`` (with a mean loss).
    eval_every : int, default 1
        Validate every this many epochs (and after the last).
    patience : int, optional
        Stop after this many validations without an improvement above ``min_delta``.
    min_delta : float, default 0.0
    restore_best : bool, default True
        Load the best validated weights at the end.
    amp : bool, default True
        Mixed precision on CUDA (bf16 where supported, else fp16 with a gradient
        scaler); ignored on the CPU.
    random_state : int, numpy.random.Generator or None
        Seeds torch's global RNG (dropout) inside the trainer only.
    verbose : bool, default False
        A progress bar over the epochs (:class:`~maasrec.training.ProgressCallback`).
    name : str, default "model"
        Prefix of the log lines.
    checkpoint_dir : str or Path, optional
        Write a checkpoint there (see ``checkpoint_every``) and resume from the one
        found there.
    checkpoint_every : int or str, default 1
        An int: every this many epochs; ``"N steps"``: also every N optimiser steps
        (mid-epoch; a resumed fit replays the epoch's batch order and skips the done
        batches).
    """

    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    param_groups: str = "all"
    lr_schedule: str = "constant"
    warmup: float = 0.0
    clip_grad_norm: float | None = None
    grad_accumulation: int = 1
    eval_every: int = 1
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    amp: bool = True
    random_state: Any = None
    verbose: bool = False
    name: str = "model"
    checkpoint_dir: str | os.PathLike | None = None
    checkpoint_every: int | str = 1

    def check(self) -> None:
        """Raise :class:`DataError` naming the first invalid field."""
        _positive_int("epochs", self.epochs, zero=True)
        _positive_int("eval_every", self.eval_every)
        _positive_int("patience", self.patience, none=True)
        _positive_int("grad_accumulation", self.grad_accumulation)
        if self.clip_grad_norm is not None and not (self.clip_grad_norm > 0):
            raise DataError(f"clip_grad_norm must be > 0 or None, got {self.clip_grad_norm!r}")
        if self.optimizer not in OPTIMIZERS:
            raise DataError(f"optimizer must be one of {list(OPTIMIZERS)}, got "
                            f"{self.optimizer!r}")
        if self.lr_schedule not in SCHEDULES:
            raise DataError(f"lr_schedule must be one of {list(SCHEDULES)}, got "
                            f"{self.lr_schedule!r}")
        if self.param_groups not in ("all", "no_decay"):
            raise DataError(f"param_groups must be 'all' or 'no_decay', got "
                            f"{self.param_groups!r}")
        self.checkpoint_steps()

    def checkpoint_steps(self) -> tuple[int, int | None]:
        """``checkpoint_every`` as (every N epochs, every M steps or None)."""
        ce = self.checkpoint_every
        if isinstance(ce, str):
            parts = ce.split()
            if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) > 0 \
                    and parts[1] in ("step", "steps", "epoch", "epochs"):
                n = int(parts[0])
                return (1, n) if parts[1].startswith("step") else (n, None)
        elif not isinstance(ce, bool) and isinstance(ce, (int, np.integer)) and ce > 0:
            return int(ce), None
        raise DataError(f"checkpoint_every must be a positive number of epochs or 'N steps', "
                        f"got {ce!r}")


@dataclass
class TrainingTask:
    """What a model hands the :class:`Trainer`: its module, batches and loss.

    Attributes
    ----------
    module : torch.nn.Module
        Holds every trainable parameter (a ``ModuleDict`` for several towers).
    batches : callable
        ``batches(epoch) -> iterable of batches`` (0-based epoch); a batch is a tensor,
        a dict/list/tuple of tensors (moved to the device) or anything else. For an
        exact resume it must draw its randomness from ``generators`` (or torch's global
        RNG) only.
    loss : callable
        ``loss(batch) -> scalar tensor``.
    validate : callable, optional
        ``validate() -> float``, higher is better (e.g. :func:`ranking_validator`); its
        ``name`` attribute names the metric.
    on_step : callable, optional
        Called after every optimiser step (e.g. to re-normalise embeddings).
    optimizer : torch.optim.Optimizer, optional
        A ready optimiser (else built from the config).
    steps_per_epoch : int, optional
        Batches per epoch (for the schedules); default ``len(batches(0))``.
    generators : sequence of torch.Generator
        The task's own random generators (batch order, negatives, dropout masks):
        checkpointed and restored with the rest.
    state_dict, load_state_dict : callable, optional
        Any further state of the task to checkpoint (tensors, numbers, strings, lists,
        dicts).
    fingerprint : dict, optional
        What a checkpoint must match to be resumed (model class, parameters, data
        shape: :func:`~maasrec.training.checkpoint_fingerprint`).
    privacy : maasrec.privacy.dp.PrivateSGD, optional
        Train with DP-SGD: each batch is a tensor of Poisson-sampled users and the
        engine sets the parameters' gradients (per-user clipping plus noise) instead of
        one ``loss(batch).backward()``; the spent epsilon goes into every epoch's logs.
    """

    module: torch.nn.Module
    batches: Callable[[int], Iterable]
    loss: Callable[[Any], torch.Tensor]
    validate: Callable[[], float] | None = None
    on_step: Callable[[], None] | None = None
    optimizer: torch.optim.Optimizer | None = None
    steps_per_epoch: int | None = None
    generators: Sequence[torch.Generator] = ()
    state_dict: Callable[[], dict] | None = None
    load_state_dict: Callable[[dict], None] | None = None
    fingerprint: dict | None = None
    privacy: Any = None


def _shifted(f: Callable[[int], float], offset: int) -> Callable[[int], float]:
    """``f(step + offset)``: a schedule started after a measured first epoch (a plain
    function, so :class:`~torch.optim.lr_scheduler.LambdaLR` checkpoints no closure)."""
    def g(step: int) -> float:
        return f(step + offset)

    return g


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _batch_len(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_len(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_len(next(iter(batch.values())))
    return None


def world_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when not initialised)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def _no_buffer_sync(ddp_class) -> dict:
    """DDP's switch that stops syncing buffers before every forward (they are constant):
    ``forward_sync_buffers`` where torch has it (its ``broadcast_buffers`` warns as
    deprecated there), ``broadcast_buffers`` before."""
    import inspect

    params = inspect.signature(ddp_class.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {key: False}


class _LossModule(torch.nn.Module):
    """``forward(batch) = loss(batch)``: the task's loss behind one ``forward``, so
    :class:`~torch.nn.parallel.DistributedDataParallel` can wrap a model whose loss
    calls its sub-modules directly."""

    def __init__(self, module: torch.nn.Module, loss: Callable[[Any], torch.Tensor]):
        super().__init__()
        self.module = module
        self._loss = loss

    def forward(self, batch: Any) -> torch.Tensor:
        return self._loss(batch)


def _rank() -> int:
    dist = torch.distributed
    return int(dist.get_rank()) if dist.is_available() and dist.is_initialized() else 0


class Trainer:
    """Train a :class:`TrainingTask`: the one loop of every maasrec neural model.

    Per step: move the batch to the device (pinned, non-blocking on CUDA), compute the
    loss under autocast (CUDA with ``amp``), stop with :class:`NonFiniteLossError` if it
    is NaN/inf (before applying it), backward (scaled for fp16), and every
    ``grad_accumulation`` batches clip the gradient norm, step the optimiser and the
    schedule, and call ``on_step``. After every ``eval_every`` epochs ``validate()``
    drives early stopping; the best weights are copied in memory and restored at the
    end. The trainer owns every piece of state (optimiser, schedule, scaler, RNG,
    counters, best weights, history), so :meth:`train_epoch` can be called one epoch at
    a time, and a checkpoint holds all of it.

    Parameters
    ----------
    task : TrainingTask
    config : TrainerConfig, optional
    callbacks : sequence of Callback or callables ``fn(epoch, logs) -> bool``
    device : torch.device or str, optional
        Where batches go (the module must already be there). Default: the device of
        the module's first parameter.
    **overrides
        Fields of :class:`TrainerConfig` replacing those of ``config``.

    Attributes
    ----------
    epoch : int
        Epochs finished.
    step : int
        Optimiser steps taken.
    history : TrainingHistory
    optimizer, scheduler, scaler
    stopped : bool
        Early stopping or a callback ended training.

    Notes
    -----
    On the CPU the same ``random_state``, data and thread count give the same weights,
    with or without an interruption and resume from a checkpoint (all randomness comes
    from seeded generators, which are checkpointed; torch's CPU kernels are
    deterministic). On CUDA, atomics in some backward kernels may change the last bits.
    """

    def __init__(self, task: TrainingTask, config: TrainerConfig | None = None, *,
                 callbacks: Sequence[Any] = (), device: torch.device | str | None = None,
                 **overrides: Any):
        from ..device import amp_dtype, resolve_device

        try:
            config = dataclasses.replace(config or TrainerConfig(), **overrides)
        except TypeError as exc:
            raise DataError(f"unknown Trainer option: {exc}") from None
        config.check()
        self.task, self.config = task, config
        module = task.module
        if device is None:
            first = next(iter(module.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.params = [p for p in module.parameters() if p.requires_grad]
        if task.optimizer is not None:
            self.optimizer = task.optimizer
        else:
            groups = (param_groups(module, config.weight_decay)
                      if config.param_groups == "no_decay" else self.params)
            self.optimizer = make_optimizer(groups, config.optimizer,
                                            learning_rate=config.learning_rate,
                                            weight_decay=config.weight_decay)
        spe = task.steps_per_epoch
        if spe is None:
            try:
                spe = len(task.batches(0))  # type: ignore[arg-type]
            except TypeError:
                spe = None
        self.steps_per_epoch = spe
        self.scheduler = None
        self._lazy_offset: int | None = None  # schedule built after a measured epoch
        if spe is not None:
            self._build_scheduler(spe)
        self.amp_type = (amp_dtype(self.device) if config.amp and self.device.type == "cuda"
                         else None)
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp_type == torch.float16
                       else None)
        self.privacy = task.privacy
        if self.privacy is not None:  # refuses DDP, accumulation, global clipping
            self.privacy.attach(self)
        validate = task.validate
        self.metric_name = getattr(validate, "name", "metric") if validate is not None else None
        self.history = TrainingHistory(metric_name=self.metric_name)
        self.callbacks: list[Callback] = [as_callback(cb) for cb in
                                          (*(callbacks or ()), *active_extra_callbacks())]
        if config.verbose:
            self.callbacks.insert(0, ProgressCallback())
        if _rank() != 0:  # rank 0 alone logs, shows progress and runs the callbacks
            self.callbacks = []
        self._ddp: torch.nn.Module | None = None
        self._allreduce: Any = None  # the shared-memory all-reduce of the DDP buckets
        self._grad_norm_wanted = any(cb.needs_grad_norm for cb in self.callbacks)
        self.epoch = 0
        self.step = 0
        self.stopped = False
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best = -math.inf
        self.bad_rounds = 0
        self._resume_at: dict | None = None
        self.seed = seed_from(config.random_state)
        with manual_seeded(self.seed, self.device):
            self._rng = self._global_rng()

    # -- schedule -------------------------------------------------------------------------
    def _optimizer_steps(self, batches: int) -> int:
        return -(-int(batches) // int(self.config.grad_accumulation))

    def _build_scheduler(self, batches_per_epoch: int, offset: int = 0) -> None:
        c = self.config
        total = int(c.epochs) * int(self._optimizer_steps(batches_per_epoch) or 1)
        warm = round(c.warmup * total) if c.warmup < 1 else int(c.warmup)
        if c.lr_schedule == "constant" and not warm:
            return
        f = lr_factor(c.lr_schedule, total, warm)
        if offset:
            self._lazy_offset = offset
            f = _shifted(f, offset)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, f)

    # -- RNG ------------------------------------------------------------------------------
    def _global_rng(self) -> dict[str, torch.Tensor]:
        out = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            out["cuda"] = torch.cuda.get_rng_state(self.device)
        return out

    def continue_global_rng(self) -> None:
        """Start the trainer's torch stream (dropout) from torch's global RNG as it is now.

        Instead of ``torch.manual_seed(seed_from(random_state))``: for a model whose
        earlier loop drew its dropout from the global stream after building the network
        (LMRanker), so that the same ``random_state`` keeps giving the same weights. The
        stream is then the trainer's own (checkpointed, the caller's left as it was).
        """
        self._rng = self._global_rng()

    def _set_global_rng(self, state: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["cpu"])
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)

    @contextmanager
    def _rng_scope(self):
        """Torch's global RNG continues the trainer's own stream; the caller's is kept."""
        with fork_rng(self.device):
            self._set_global_rng(self._rng)
            try:
                yield
            finally:
                self._rng = self._global_rng()

    def _rng_snapshot(self) -> dict[str, Any]:
        return {"global": self._global_rng(),
                "generators": [g.get_state() for g in self.task.generators]}

    def _rng_restore(self, snap: dict[str, Any]) -> None:
        self._set_global_rng(snap["global"])
        gens = list(self.task.generators)
        if len(gens) != len(snap["generators"]):
            raise DataError(f"checkpoint has {len(snap['generators'])} generator states, the "
                            f"task has {len(gens)} generators")
        for g, s in zip(gens, snap["generators"]):
            g.set_state(s)

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainingHistory:
        """Train up to ``config.epochs`` epochs (resuming from ``checkpoint_dir``).

        Returns
        -------
        TrainingHistory

        Raises
        ------
        NonFiniteLossError
            A NaN/inf loss, naming the epoch and step; the module holds the best
            checkpoint.
        DataError, ModelFormatError
            ``checkpoint_dir`` holds a checkpoint of another model, parameters, data or
            world size, or a corrupt one.
        """
        c = self.config
        if c.checkpoint_dir is not None and has_checkpoint(c.checkpoint_dir):
            self.load_checkpoint(c.checkpoint_dir)
        if is_distributed() and self._ddp is None:
            self._sync_rng()
            self._wrap_ddp()
        logger.info("%s: training up to %d epochs on %s (%s, lr %.3g, %s schedule%s)%s",
                    c.name, c.epochs, self.device, self.optimizer.__class__.__name__,
                    c.learning_rate, c.lr_schedule,
                    f", AMP {self.amp_type}" if self.amp_type else "",
                    f", resumed at epoch {self.epoch + 1}" if self.epoch or self._resume_at
                    else "")
        for cb in self.callbacks:
            cb.on_fit_start(self)
        try:
            while self.epoch < int(c.epochs) and not self.stopped:
                self.train_epoch()
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
            self.task.module.eval()
            # DDP's reducer must not outlive the process group (an abort at exit): drop it
            # and collect the reference cycles that may still hold it, now
            if self._ddp is not None:
                self._ddp = None
                gc.collect()
                release_allreduce(self._allreduce)
                self._allreduce = None
        if self.best_state is not None and c.restore_best:
            self.task.module.load_state_dict(self.best_state)
            logger.info("%s: restored the best epoch %d (%s %.4f)", c.name,
                        self.history.best_epoch, self.metric_name, self.history.best_metric)
        return self.history

    def train_epoch(self) -> dict[str, Any]:
        """Run one epoch: training, validation, early stopping, callbacks, checkpoint.

        Returns
        -------
        dict
            The epoch's logs (``loss``, ``lr``, ``seconds``, ``samples_per_second``, the
            metric when validated).
        """
        with self._rng_scope():
            return self._epoch()

    def _epoch(self) -> dict[str, Any]:
        c, task, module, device = self.config, self.task, self.task.module, self.device
        epoch = self.epoch
        k = int(c.grad_accumulation)
        t0 = time.perf_counter()
        module.train()
        resume, self._resume_at = self._resume_at, None
        if resume is not None:
            self._rng_restore(resume["epoch_start"])
        start = self._rng_snapshot()
        it = iter(task.batches(epoch))
        ddp, common, n_batches = self._ddp, None, -1
        if ddp is not None:  # the same global batches on every rank, then its own randomness
            it = iter(batch_list := list(it))
            n_batches, common = len(batch_list), self._rng_snapshot()
        total_loss = torch.zeros((), device=device, dtype=torch.float64)
        done = steps_in_epoch = samples = 0
        if resume is not None:
            for _ in range(int(resume["batches"])):
                next(it)
            if ddp is None:
                self._rng_restore(resume["now"])
            # under DDP each batch reseeds the rank's own streams (below): nothing to restore
            done, steps_in_epoch = int(resume["batches"]), int(resume["steps"])
            if ddp is None or _rank() == 0:  # DDP: rank 0 saved the sums over the ranks
                samples = int(resume["samples"])
                total_loss += resume["total_loss"].to(device)
        _, every_steps = c.checkpoint_steps()
        pending, t_step, step_samples = 0, time.perf_counter(), 0
        forward = task.loss if ddp is None else ddp
        for batch in it:
            if ddp is not None:
                # this rank's draws for this batch (negatives, dropout) are a function of
                # (seed, epoch, rank, batch): a resume at any batch continues them exactly
                self._rank_seed(epoch, done)
                batch = shard(batch, _rank(), world_size())
            done += 1
            batch = to_device(batch, device)
            if self.privacy is not None:  # DP-SGD: per-user clipped, noised gradients
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.privacy.backward(batch, self.params)
                if not bool(torch.isfinite(loss.detach())):
                    self._non_finite(loss, epoch, done)
            else:
                # DDP all-reduces the gradients on the last batch of an accumulation only
                with (ddp.no_sync() if ddp is not None and pending + 1 < k and done < n_batches
                      else nullcontext()):
                    if self.amp_type is not None:
                        with torch.autocast(device_type="cuda", dtype=self.amp_type):
                            loss = forward(batch)
                    else:
                        loss = forward(batch)
                    if not bool(torch.isfinite(loss.detach())):
                        self._non_finite(loss, epoch, done)
                    if pending == 0:
                        self.optimizer.zero_grad(set_to_none=True)
                    scaled = loss / k if k > 1 else loss
                    (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            pending += 1
            n = _batch_len(batch)
            step_samples += n or 0
            total_loss += loss.detach().double()
            if pending == k:
                self._optimizer_step(loss, 1.0, step_samples, time.perf_counter() - t_step)
                steps_in_epoch += 1
                samples += step_samples
                pending, t_step, step_samples = 0, time.perf_counter(), 0
                if every_steps and c.checkpoint_dir is not None and \
                        self.step % every_steps == 0:
                    saved_loss, saved_samples = self._sum_over_ranks(total_loss, samples)
                    self._save(resume={"epoch_start": start, "now": self._rng_snapshot(),
                                       "batches": done, "steps": steps_in_epoch,
                                       "samples": saved_samples, "total_loss": saved_loss})
        if pending:  # a last, shorter accumulation: weigh its batches as a mean
            self._optimizer_step(loss, k / pending, step_samples, time.perf_counter() - t_step)
            steps_in_epoch += 1
            samples += step_samples
        if self.steps_per_epoch is None and done and self.scheduler is None and (
                c.lr_schedule != "constant" or c.warmup):
            self.steps_per_epoch = done
            self._build_scheduler(done, offset=self._optimizer_steps(done))
        if ddp is None:
            return self._end_epoch(epoch, float(total_loss) / max(done, 1), t0, samples)
        self._rng_restore(common)  # the next epoch's batches: the same on every rank
        sums = torch.stack([total_loss, torch.tensor(float(samples), dtype=torch.float64,
                                                     device=device)])
        torch.distributed.all_reduce(sums)
        return self._end_epoch(epoch, float(sums[0]) / max(done * world_size(), 1), t0,
                               int(sums[1]))

    def _sum_over_ranks(self, total_loss: torch.Tensor, samples: int
                        ) -> tuple[torch.Tensor, int]:
        """The epoch's loss sum and sample count so far over every rank (a mid-epoch
        checkpoint, written by rank 0, holds them all); one process: as they are."""
        if self._ddp is None:
            return total_loss.clone(), samples
        sums = torch.stack([total_loss, torch.tensor(float(samples), dtype=torch.float64,
                                                     device=total_loss.device)])
        torch.distributed.all_reduce(sums)
        return sums[0].clone(), int(sums[1])

    def _wrap_ddp(self) -> None:
        """Wrap the task's loss in DistributedDataParallel (a group of > 1 processes)."""
        from torch.nn.parallel import DistributedDataParallel

        dev = self.device
        self._ddp = DistributedDataParallel(
            _LossModule(self.task.module, self.task.loss),
            device_ids=[dev.index if dev.index is not None else torch.cuda.current_device()]
            if dev.type == "cuda" else None,
            # grads in the buckets; constant buffers; unused parameters found in the first
            # step only (find_unused_parameters: a graph search + all-reduce every step)
            find_unused_parameters=False, static_graph=True, gradient_as_bucket_view=True,
            **_no_buffer_sync(DistributedDataParallel))
        # CPU ranks of one machine: the buckets go through shared memory, not sockets
        self._allreduce = attach_allreduce(self._ddp, dev)
        logger.debug("%s: DistributedDataParallel over %d ranks", self.config.name,
                     world_size())

    def _sync_rng(self) -> None:
        """Rank 0's seed, global RNG and task generators on every rank (so each rank
        draws the same global batches even without a fixed ``random_state``)."""
        dist, dev = torch.distributed, self.device
        seed = torch.tensor([self.seed], dtype=torch.int64, device=dev)
        dist.broadcast(seed, src=0)
        self.seed = int(seed.item())
        for key, state in list(self._rng.items()):
            t = state.to(dev)
            dist.broadcast(t, src=0)
            self._rng[key] = t.cpu()
        for g in self.task.generators:
            t = g.get_state().to(dev)
            dist.broadcast(t, src=0)
            g.set_state(t.cpu())

    def _rank_seed(self, epoch: int, offset: int) -> None:
        """Seed torch's global RNG and the task's generators for this rank's own draws
        (negatives, dropout) from (seed, epoch, rank, offset): distinct on every rank,
        deterministic."""
        for i, gen in enumerate([None, *self.task.generators]):
            seq = np.random.SeedSequence([self.seed, epoch, _rank(), offset, i])
            value = int(seq.generate_state(1, dtype=np.uint64)[0] >> 1)
            if gen is None:
                torch.manual_seed(value)
            else:
                gen.manual_seed(value)

    def _non_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        c, hist = self.config, self.history
        where = (f"{c.name}: the training loss became {float(loss.detach())} at "
                 f"epoch {epoch + 1}, step {step}")
        if self.best_state is not None and c.restore_best:
            self.task.module.load_state_dict(self.best_state)
            kept = f"the best checkpoint (epoch {hist.best_epoch}) was restored"
        else:
            kept = "the weights of the last good step are kept"
        raise NonFiniteLossError(
            f"{where}; {kept}. Lower the learning rate, set clip_grad_norm, or check the "
            "inputs for NaN/inf", epoch=epoch + 1, step=step,
            best_epoch=hist.best_epoch if self.best_state is not None else None, history=hist)

    def _optimizer_step(self, loss: torch.Tensor, rescale: float, samples: int,
                        seconds: float) -> None:
        c, opt, scaler = self.config, self.optimizer, self.scaler
        if scaler is not None and (c.clip_grad_norm is not None or rescale != 1.0
                                   or self._grad_norm_wanted):
            scaler.unscale_(opt)
        if rescale != 1.0:
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(rescale)
        norm = None
        if c.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, c.clip_grad_norm)
        elif self._grad_norm_wanted:
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.task.on_step is not None:
            self.task.on_step()
        self.step += 1
        self.history.steps = self.step
        if self.callbacks:
            logs = {"loss": loss.detach(), "lr": float(opt.param_groups[0]["lr"]),
                    "samples": samples or None, "seconds": seconds, "grad_norm": norm}
            for cb in self.callbacks:
                cb.on_step_end(self, self.step, logs)

    def _end_epoch(self, epoch: int, mean_loss: float, t0: float, samples: int
                   ) -> dict[str, Any]:
        c, hist, module, validate = self.config, self.history, self.task.module, \
            self.task.validate
        hist.losses.append(mean_loss)
        lr = float(self.optimizer.param_groups[0]["lr"])
        hist.learning_rates.append(lr)
        logs: dict[str, Any] = {"loss": mean_loss, "lr": lr}
        value = float("nan")
        name = self.metric_name
        if validate is not None and ((epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs):
            module.eval()
            if _rank() == 0:  # rank 0 validates; the others follow its decision
                with torch.no_grad():
                    value = float(validate())
            if self._ddp is not None:
                value = broadcast_float([value], self.device)[0]
            if self.best_state is None or value > self.best + c.min_delta:
                self.best = value
                hist.best_epoch, hist.best_metric = epoch + 1, value
                self.best_state = _state_copy(module)
                self.bad_rounds = 0
            else:
                self.bad_rounds += 1
            logs[name] = value
        hist.metrics.append(value)
        if self.privacy is not None:  # the epsilon spent so far
            logs.update(self.privacy.end_epoch(self.step))
        dt = time.perf_counter() - t0
        hist.seconds.append(dt)
        logs["seconds"] = dt
        if samples:
            logs["samples_per_second"] = samples / dt if dt > 0 else float("nan")
        logger.info("%s: epoch %d/%d loss %.5g%s lr %.3g (%.2fs)", c.name, epoch + 1,
                    c.epochs, mean_loss, f" {name} {value:.4f}" if value == value else "", lr, dt)
        stop = False
        for cb in self.callbacks:
            if cb.on_epoch_end(self, epoch + 1, dict(logs)):
                stop = True
        if self._ddp is not None:  # the callbacks ran on rank 0: stop in lock-step
            stop = bool(broadcast_float([float(stop)], self.device)[0])
        if c.patience is not None and self.bad_rounds >= c.patience:
            logger.info("%s: no improvement of %s in %d validations; stopping at epoch %d "
                        "(best %.4f at epoch %s)", c.name, name, c.patience, epoch + 1,
                        self.best, hist.best_epoch)
            stop = True
        if stop:
            hist.stopped_early = epoch + 1 < c.epochs
            self.stopped = True
        self.epoch = epoch + 1
        every_epochs, _ = c.checkpoint_steps()
        if c.checkpoint_dir is not None and (self.epoch % every_epochs == 0 or self.stopped
                                             or self.epoch == c.epochs):
            self._save()
        return logs

    # -- checkpoints ----------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match: the task's fingerprint, parameter shapes, config.

        Returns
        -------
        dict
        """
        c = self.config
        cfg = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)
               if f.name not in ("verbose", "checkpoint_dir", "checkpoint_every", "name")}
        out = dict(self.task.fingerprint or {})
        out.setdefault("model", f"{type(self.task.module).__module__}."
                                f"{type(self.task.module).__qualname__}")
        if self.privacy is not None:
            out["privacy"] = self.privacy.fingerprint()
        out.update(trainer=_plain(cfg), steps_per_epoch=self.task.steps_per_epoch,
                   parameters={k: list(v.shape)
                               for k, v in self.task.module.state_dict().items()})
        return out

    def state_dict(self, resume: dict | None = None) -> dict[str, Any]:
        """Everything needed to continue this fit (tensors, numbers, strings, containers).

        Parameters
        ----------
        resume : dict, optional
            The position inside an epoch (for a mid-epoch checkpoint).

        Returns
        -------
        dict
        """
        task = self.task
        return {
            "fingerprint": self.fingerprint(), "world_size": world_size(),
            "epoch": self.epoch, "step": self.step, "stopped": self.stopped,
            "module": task.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "lazy_offset": self._lazy_offset, "steps_per_epoch": self.steps_per_epoch,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": self._global_rng() if resume is None else None,
            "generators": ([g.get_state() for g in task.generators] if resume is None
                           else None),
            "resume": resume,
            "best_state": self.best_state, "best": self.best, "bad_rounds": self.bad_rounds,
            "history": self.history.to_dict(),
            "task": task.state_dict() if task.state_dict is not None else None,
        }

    def _save(self, resume: dict | None = None) -> None:
        if _rank() != 0:
            return
        write_checkpoint(self.config.checkpoint_dir, self.state_dict(resume))

    def load_checkpoint(self, checkpoint_dir: str | os.PathLike) -> None:
        """Continue from the checkpoint in ``checkpoint_dir`` after checking it fits.

        Parameters
        ----------
        checkpoint_dir : str or Path

        Raises
        ------
        DataError
            Written by another model, other parameters or data, or another world size:
            the message names the differing values.
        ModelFormatError
            Corrupt or unreadable files.
        """
        state = read_checkpoint(checkpoint_dir)
        where = repr(str(checkpoint_dir))
        ws = world_size()
        if state.get("world_size") != ws:
            raise DataError(f"the checkpoint in {where} was written with world size "
                            f"{state.get('world_size')!r}, this run has world size {ws}: "
                            "resume with the same number of processes or use another "
                            "checkpoint_dir")
        _check_fingerprint(state.get("fingerprint"), self.fingerprint(), where)
        task = self.task
        task.module.load_state_dict(state["module"])
        try:
            if state["lazy_offset"]:
                self.steps_per_epoch = state["steps_per_epoch"]
                self._build_scheduler(self.steps_per_epoch, offset=state["lazy_offset"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state["scaler"] is not None:
                self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise DataError(f"the checkpoint in {where} does not fit this trainer: {exc}"
                            ) from None
        self.epoch, self.step, self.stopped = int(state["epoch"]), int(state["step"]), \
            bool(state["stopped"])
        h = state["history"]
        self.history = TrainingHistory(
            losses=[math.nan if x is None else x for x in h["losses"]],
            metrics=[math.nan if x is None else x for x in h["metrics"]],
            seconds=[math.nan if x is None else x for x in h["seconds"]],
            learning_rates=[math.nan if x is None else x for x in h["learning_rates"]],
            metric_name=h["metric_name"], best_epoch=h["best_epoch"],
            best_metric=h["best_metric"], stopped_early=h["stopped_early"], steps=h["steps"])
        self.best_state, self.best = state["best_state"], float(state["best"])
        self.bad_rounds = int(state["bad_rounds"])
        if state["resume"] is not None:
            self._resume_at = state["resume"]
            self._rng = dict(state["resume"]["epoch_start"]["global"])
        else:
            self._rng = dict(state["rng"])
            for g, s in zip(task.generators, state["generators"]):
                g.set_state(s)
        if task.load_state_dict is not None and state["task"] is not None:
            task.load_state_dict(state["task"])
        logger.info("%s: resuming from %s at epoch %d, step %d", self.config.name, where,
                    self.epoch + 1, self.step)


def _check_fingerprint(saved: Any, now: dict, where: str) -> None:
    if saved == now:
        return
    if not isinstance(saved, dict):
        raise DataError(f"the checkpoint in {where} has no fingerprint; it cannot be resumed")
    diffs = []

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}.{key}" if path
                     else key)
        elif a != b:
            diffs.append(f"{path}: checkpoint {a!r}, this fit {b!r}")

    walk(saved, now, "")
    shown = "; ".join(d if len(d) < 200 else d[:200] + "..." for d in diffs[:4])
    more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
    raise DataError(f"the checkpoint in {where} belongs to another training run: {shown}{more}. "
                    "Use another checkpoint_dir, or delete it to start afresh")


def fit_loop(module: torch.nn.Module, step_fn: Callable[[Any], torch.Tensor],
             batches: Callable[[int], Any], *, epochs: int,
             optimizer: str | torch.optim.Optimizer = "adam", learning_rate: float = 1e-3,
             weight_decay: float = 0.0, clip_grad_norm: float | None = None,
             lr_schedule: str = "constant", warmup: float = 0.0,
             steps_per_epoch: int | None = None,
             validate: Callable[[], float] | None = None, eval_every: int = 1,
             patience: int | None = None, min_delta: float = 0.0, restore_best: bool = True,
             callbacks: Sequence[Any] = (),
             device: torch.device | str | None = None, amp: bool = True,
             random_state: Any = None, verbose: bool = False, name: str = "model",
             on_step: Callable[[], None] | None = None,
             generators: Sequence[torch.Generator] = (), fingerprint: dict | None = None,
             checkpoint_dir: str | os.PathLike | None = None,
             checkpoint_every: int | str = 1, grad_accumulation: int = 1,
             wrap_task: Callable[[TrainingTask], TrainingTask] | None = None
             ) -> TrainingHistory:
    """Train ``module`` by mini-batches: a :class:`Trainer` in one call.

    Parameters
    ----------
    module : torch.nn.Module
        Holds every trainable parameter (and is put in train/eval mode).
    step_fn : callable
        ``step_fn(batch) -> scalar loss tensor``.
    batches : callable
        ``batches(epoch) -> iterable of batches`` (0-based epoch).
    epochs : int
    optimizer : {"adam", "adamw", "sgd"} or torch.optim.Optimizer, default "adam"
    learning_rate, weight_decay, clip_grad_norm, lr_schedule, warmup
        See :class:`TrainerConfig`.
    steps_per_epoch : int, optional
        Needed by the schedules; default ``len(batches(0))`` when it has a length,
        else measured on the first epoch (warm-up/decay then start from epoch 2).
    validate : callable, optional
        ``validate() -> float``, higher is better; called in eval mode without grad.
    eval_every, patience, min_delta, restore_best
        See :class:`TrainerConfig`.
    callbacks : sequence of Callback or callables
        ``fn(epoch, logs) -> bool`` after each epoch (1-based ``epoch``; ``logs`` has
        ``loss``, ``lr``, ``seconds`` and the metric when validated); True stops.
    device : torch.device or str, optional
        Where batches go (the module must already be there).
    amp : bool, default True
        Mixed precision on CUDA (ignored on the CPU).
    random_state : int, numpy.random.Generator or None
        Seeds torch's global RNG (dropout) inside the loop only.
    verbose : bool, default False
    name : str, default "model"
    on_step : callable, optional
        Called after every optimiser step.
    generators, fingerprint
        See :class:`TrainingTask` (needed for an exact resume).
    checkpoint_dir, checkpoint_every, grad_accumulation
        See :class:`TrainerConfig`.
    wrap_task : callable, optional
        ``wrap_task(task) -> task`` applied to the task before training (e.g. DP-SGD:
        :mod:`maasrec.privacy.dp`).

    Returns
    -------
    TrainingHistory

    Raises
    ------
    NonFiniteLossError
        A NaN/inf loss, naming the epoch and step.
    """
    from ..device import resolve_device

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise DataError(f"epochs must be an integer >= 0, got {epochs!r}")
    task = TrainingTask(module, batches, step_fn, validate=validate, on_step=on_step,
                        optimizer=optimizer if isinstance(optimizer, torch.optim.Optimizer)
                        else None, steps_per_epoch=steps_per_epoch, generators=generators,
                        fingerprint=fingerprint)
    if wrap_task is not None:
        task = wrap_task(task)
    config = TrainerConfig(
        epochs=int(epochs),
        optimizer=optimizer if isinstance(optimizer, str) else "adam",
        learning_rate=learning_rate, weight_decay=weight_decay, clip_grad_norm=clip_grad_norm,
        lr_schedule=lr_schedule, warmup=warmup, eval_every=eval_every, patience=patience,
        min_delta=min_delta, restore_best=restore_best, amp=amp, random_state=random_state,
        verbose=verbose, name=name, checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every, grad_accumulation=grad_accumulation)
    return Trainer(task, config, callbacks=callbacks, device=device).fit()
