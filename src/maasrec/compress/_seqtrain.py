"""Short training runs of a fitted ``SequentialRecommender``'s network (pruning, distillation).

Both the fine-tune after pruning and the distillation of a student run the model's own
next-item task (:class:`maasrec.neural._sequences.NextItemTask`, or a subclass with another
loss) through :func:`maasrec.training.fit_loop`, with early stopping on ``validation``
when it is given. While such a run validates, the model reads its histories from the
training data (what validation must see), and its own histories come back afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from ..base import Recommender, _positive_validation, positive_interactions
from ..data.interactions import as_interactions
from ..exceptions import DataError, NotFittedError
from ..training import checkpoint_fingerprint, fit_loop, param_groups, threads_for

__all__ = ["check_fitted", "prepare_data", "train_network"]


def check_fitted(model, what: str) -> None:
    """A fitted maasrec Recommender, or a clear error naming ``what`` needs it."""
    if not isinstance(model, Recommender):
        raise DataError(f"{what} takes a fitted maasrec Recommender, got "
                        f"{type(model).__name__}")
    if not hasattr(model, "item_vocab_"):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; fit it before "
                             f"{what}")


def prepare_data(model, X, validation, who: str):
    """``X`` and ``validation`` on the model's vocabularies, positive rows only."""
    if X is None:
        raise DataError(f"{who} needs the training interactions X (the data the model was "
                        "fitted on) to train; pass X, or epochs=0 for no training")
    data = as_interactions(X).with_vocab(model.user_vocab_, model.item_vocab_, unknown="raise")
    if data.nnz == 0:
        raise DataError(f"{who}: X holds no interactions")
    data = positive_interactions(data, who)
    if validation is not None:
        validation = as_interactions(validation).with_vocab(
            model.user_vocab_, model.item_vocab_, unknown="ignore")
        validation = _positive_validation(validation, who)
    return data, validation


def train_network(model, task, data, validation, *, epochs: int, learning_rate: float,
                  patience: int, seed: int, name: str) -> dict:
    """Run ``task`` on ``model.network_`` through the trainer; return the training log.

    ``validation`` (or None) stops early on the model's ``val_metric`` with the best
    weights restored; meanwhile the model reads its histories from ``data``.
    """
    net = model.network_
    device = model._device()
    hist_items, hist_indptr = model.history_items_, model.history_indptr_
    model._set_histories(data.item_indices.astype(np.int64), data.user_indptr.astype(np.int64))
    groups = param_groups(net, float(model.weight_decay))
    opt = torch.optim.AdamW(groups, lr=float(learning_rate))
    try:
        with threads_for(int(model.batch_size) * int(model.max_len) * int(model.dim), device):
            hist = fit_loop(net, task.step, task.batches, epochs=int(epochs), optimizer=opt,
                            learning_rate=float(learning_rate),
                            steps_per_epoch=task.steps_per_epoch,
                            validate=model._validator(data, validation),
                            eval_every=1, patience=int(patience), device=device,
                            amp=model.amp == "auto", random_state=seed, name=name,
                            generators=task.generators,
                            fingerprint=checkpoint_fingerprint(model, data))
    finally:
        model.history_items_, model.history_indptr_ = hist_items, hist_indptr
        model._invalidate()
    net.eval()
    log = hist.to_dict()
    log.update(epochs_run=hist.epochs, n_windows=task.n_windows)
    return log
