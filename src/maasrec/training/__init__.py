"""maasrec's training engine: one :class:`Trainer` and the pieces it is built from.

Modules, by responsibility:

- :mod:`~maasrec.training.trainer`: :class:`Trainer` (the one loop of every neural
  model: parameter groups, optimisers, schedules, AMP, clipping, accumulation, early
  stopping on a validation metric with best-weights restore, non-finite loss
  handling, callbacks, seeds, checkpoint/resume), :class:`TrainerConfig`,
  :class:`TrainingTask` (what a model hands it: module, batches, loss) and
  :func:`fit_loop`, its one-call form;
- :mod:`~maasrec.training.callbacks`: :class:`Callback`, :class:`ProgressCallback`,
  :class:`TensorBoardCallback`;
- :mod:`~maasrec.training.checkpoint`: atomic checkpoints (safetensors + JSON, no pickle);
- :mod:`~maasrec.training.rng`: :func:`seed_from`, :func:`torch_generator`,
  :func:`seeded`, :func:`manual_seeded` -- seeded generators and seeded blocks without
  touching the caller's RNG;
- :mod:`~maasrec.training.samplers`: :func:`minibatches` and the negative samplers;
- :mod:`~maasrec.training.losses`, :mod:`~maasrec.training.optim` (optimisers, the
  no-decay :func:`param_groups` rule, schedules), :mod:`~maasrec.training.validation`
  (:func:`ranking_validator`), :mod:`~maasrec.training.history`;
- :mod:`~maasrec.training.progress`: tqdm bars and :func:`run_epochs`, the epoch driver
  of ALS and BPRMF (tqdm progress, silent with ``verbose=False``, timing and a
  ``logging`` line per epoch -- never ``print``);
- :mod:`~maasrec.training.runtime`: :func:`to_device`, :func:`threads_for`.
"""

from __future__ import annotations

from .callbacks import (
    Callback,
    FunctionCallback,
    ProgressCallback,
    TensorBoardCallback,
    active_extra_callbacks,
    extra_callbacks,
)
from .checkpoint import checkpoint_fingerprint
from .history import EpochLog, TrainingHistory
from .losses import (
    LOSSES,
    bce_loss,
    bpr_loss,
    get_loss,
    mse_loss,
    sampled_softmax_loss,
    softmax_loss,
)
from .optim import OPTIMIZERS, SCHEDULES, lr_factor, make_optimizer, no_decay, param_groups
from .progress import progress, run_epochs
from .rng import fork_rng, manual_seeded, seed_from, seeded, torch_generator
from .runtime import SMALL_WORK, threads_for, to_device
from .samplers import (
    BITMAP_BYTES,
    BITMAP_BYTES_PER_POSITIVE,
    SAMPLERS,
    InBatchNegativeSampler,
    PopularityNegativeSampler,
    UniformNegativeSampler,
    make_sampler,
    minibatches,
)
from .trainer import NonFiniteLossError, Trainer, TrainerConfig, TrainingTask, fit_loop
from .validation import ranking_validator

__all__ = [
    "BITMAP_BYTES",
    "BITMAP_BYTES_PER_POSITIVE",
    "LOSSES",
    "OPTIMIZERS",
    "SAMPLERS",
    "SCHEDULES",
    "SMALL_WORK",
    "Callback",
    "EpochLog",
    "FunctionCallback",
    "InBatchNegativeSampler",
    "NonFiniteLossError",
    "PopularityNegativeSampler",
    "ProgressCallback",
    "TensorBoardCallback",
    "Trainer",
    "TrainerConfig",
    "TrainingHistory",
    "TrainingTask",
    "UniformNegativeSampler",
    "active_extra_callbacks",
    "bce_loss",
    "bpr_loss",
    "checkpoint_fingerprint",
    "extra_callbacks",
    "fit_loop",
    "fork_rng",
    "get_loss",
    "lr_factor",
    "make_optimizer",
    "make_sampler",
    "manual_seeded",
    "minibatches",
    "mse_loss",
    "no_decay",
    "param_groups",
    "progress",
    "ranking_validator",
    "run_epochs",
    "sampled_softmax_loss",
    "seed_from",
    "seeded",
    "softmax_loss",
    "threads_for",
    "to_device",
    "torch_generator",
]
