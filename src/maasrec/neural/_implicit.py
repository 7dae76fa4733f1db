"""What the implicit-feedback neural models (Mult-VAE, LightGCN) share: the validation
metric parameter, the binary interaction matrix, the early-stopping validator and one
:class:`~maasrec.training.Trainer` run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..data.interactions import Interactions
from ..exceptions import DataError
from ..training import (
    Trainer,
    TrainerConfig,
    TrainingHistory,
    TrainingTask,
    checkpoint_fingerprint,
    ranking_validator,
)

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
