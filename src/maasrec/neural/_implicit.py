"""What the implicit-feedback neural models (MultVAE, RecVAE, LightGCN, BERT4Rec) share:
the check of their training parameters, the validation metric parameter, the start of a
fit (device, seed, held-out validation slice, a seeded network), the binary interaction
matrix, the early-stopping validator and one :class:`~maasrec.training.Trainer` run (with
what a non-finite loss leaves behind)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_int, check_number
from ..data.interactions import Interactions
from ..device import resolve_device
from ..exceptions import DataError
from ..training import (
    NonFiniteLossError,
    Trainer,
    TrainerConfig,
    TrainingHistory,
    TrainingTask,
    checkpoint_fingerprint,
    ranking_validator,
    seed_from,
    threads_for,
    torch_generator,
)
from ._holdout import auto_holdout, check_validation_fraction

#: Metric names accepted by ``val_metric``.
VAL_METRICS = ("ndcg", "hit", "recall", "precision", "map", "mrr")


def parse_val_metric(spec: Any) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; :class:`DataError` naming anything else."""
    if isinstance(spec, str) and spec.count("@") == 1:
        name, _, k = spec.partition("@")
        if name in VAL_METRICS and k.isdigit() and int(k) >= 1:
            return name, int(k)
    raise DataError(f"val_metric must be '<name>@<k>' with a name among {list(VAL_METRICS)} "
                    f"and k >= 1 (e.g. 'ndcg@10', 'hit@10'), got {spec!r}")


def check_training_params(model: Any, *, weight_decay: bool = False) -> None:
    """Check ``epochs``, ``batch_size``, ``learning_rate`` (and ``weight_decay`` when the
    model has it), ``patience``, ``eval_every``, ``val_metric`` and
    ``validation_fraction`` of ``model``, in that order: a :class:`DataError` naming the
    first bad one and its value."""
    check_int("epochs", model.epochs, low=1)
    check_int("batch_size", model.batch_size, low=1)
    check_number("learning_rate", model.learning_rate, low=0, low_inclusive=False,
                 high=float("inf"), high_inclusive=False)
    if weight_decay:
        check_number("weight_decay", model.weight_decay, low=0, high=float("inf"),
                     high_inclusive=False)
    check_int("patience", model.patience, low=1)
    check_int("eval_every", model.eval_every, low=1)
    parse_val_metric(model.val_metric)
    check_validation_fraction(model.validation_fraction)


def begin_fit(model: Any, data: Interactions, validation: Interactions | None, *,
              ordered: bool) -> tuple[torch.device, int, Interactions,
                                      Interactions | None, dict | None]:
    """``(device, seed, train part, validation, holdout info)`` at the start of a fit:
    ``model.device`` resolved, ``model.random_state`` as a seed, and the validation slice
    held out by :func:`~maasrec.neural._holdout.auto_holdout` (``ordered``: the latest
    items of each user, else a seeded random share)."""
    device = resolve_device(model.device)
    seed = seed_from(model.random_state)
    fit_data, validation, holdout = auto_holdout(
        type(model).__name__, data, validation, model.validation_fraction,
        ordered=ordered, seed=seed)
    return device, seed, fit_data, validation, holdout


def seeded_network(net: torch.nn.Module, seed: int, device: torch.device) -> torch.nn.Module:
    """``net`` with weights drawn from ``seed`` (its ``reset_parameters``), on ``device``."""
    net.reset_parameters(torch_generator(seed))
    return net.to(device)


def run_training(model: Any, name: str, module: torch.nn.Module, batches: Callable,
                 loss: Callable, *, work: int, device: torch.device,
                 on_finite_failure: Callable[[], None] | None = None,
                 **kwargs: Any) -> TrainingHistory:
    """:func:`train_task` with the threads ``work`` calls for (``threads_for``).

    On a :class:`~maasrec.training.NonFiniteLossError` the model keeps the run's log as
    ``training_log_``; its fit is forgotten when a weight is no longer finite, else
    ``on_finite_failure()`` runs (e.g. to keep the last good state usable); then the
    error is raised again. ``kwargs`` go to :func:`train_task`.
    """
    try:
        with threads_for(work, device):
            return train_task(model, name, module, batches, loss, device=device, **kwargs)
    except NonFiniteLossError as exc:
        module.eval()
        model.training_log_ = exc.history.to_dict() if exc.history is not None else {}
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            model._forget_fit()
        elif on_finite_failure is not None:
            on_finite_failure()
        raise


def binary_csr(m: sp.spmatrix) -> sp.csr_matrix:
    """float32 CSR with 1 where ``m`` is > 0 (other entries dropped), indices sorted."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    if m.nnz:
        m.data = (m.data > 0).astype(np.float32)
        m.eliminate_zeros()
    m.sort_indices()
    return m


def train_task(model: Any, name: str, module: torch.nn.Module, batches: Callable,
               loss: Callable, *, data: Interactions, validation: Interactions | None,
               score: Callable[[np.ndarray], Any], device: torch.device, seed: int,
               steps_per_epoch: int, generators: Sequence[torch.Generator] = (),
               state_dict: Callable | None = None, load_state_dict: Callable | None = None,
               checkpoint_dir=None, weight_decay: float = 0.0) -> TrainingHistory:
    """Train ``module`` with one :class:`Trainer` (Adam, early stopping on ``validation``).

    ``model`` supplies ``epochs``, ``learning_rate``, ``patience``, ``eval_every``,
    ``val_metric`` and ``verbose``; ``score(user_idx)`` scores users of ``data`` for the
    full-ranking validator (``data``'s items excluded).
    """
    validate = None
    if validation is not None and validation.nnz > 0:
        metric, k = parse_val_metric(model.val_metric)
        validate = ranking_validator(score, data.user_vocab, data.item_vocab, data,
                                     validation, k=k, metric=metric)
    task = TrainingTask(module, batches, loss, validate=validate,
                        steps_per_epoch=steps_per_epoch, generators=list(generators),
                        state_dict=state_dict, load_state_dict=load_state_dict,
                        fingerprint=checkpoint_fingerprint(model, data))
    config = TrainerConfig(
        epochs=int(model.epochs), optimizer="adam", learning_rate=float(model.learning_rate),
        weight_decay=float(weight_decay), eval_every=int(model.eval_every),
        patience=int(model.patience) if validate is not None else None,
        random_state=seed, verbose=bool(model.verbose), name=name,
        checkpoint_dir=checkpoint_dir)
    return Trainer(task, config, device=device).fit()
