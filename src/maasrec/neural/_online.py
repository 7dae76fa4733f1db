"""``partial_fit`` of the neural recommenders (the code behind their ``_partial_fit`` hooks).

:func:`sequential_fold_in` (``SequentialRecommender``): the new events are appended to
the users' histories in time order (new users get a history), then the network is
fine-tuned for ``SEQ_FOLD_EPOCHS`` seeded epochs of its own next-item task through the
Trainer on the sequences of every user touched since the *anchor* (the weights at the
first ``partial_fit`` after ``fit`` or ``load``), mixed with an equal number of other
users' sequences drawn with a fixed seed (replay, against forgetting). Each call starts
again from the anchor's weights, so folding events in one call or in many gives the same
network; the cost of a call grows with the users touched since the anchor. The weights
are trained on a copy of the network (a served model is never changed in place).

:func:`hybrid_fold_in` (``HybridRecommender``): users are represented from their
history, so the touched users' representations are recomputed from their merged
histories with the trained towers (their learned id rows kept; new users have none, as
cold users). Nothing is trained: item vectors and towers stay as fitted. Only the
pooled scorers (dot, NeuMF) store user representations; the attention scorer, models
without a "history" user modality, and new users of a model with per-user biases are
refused (refit).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .._rng import seed_from

__all__ = ["SEQ_FOLD_EPOCHS", "SEQ_REPLAY", "hybrid_fold_in", "sequential_fold_in"]

#: Fine-tuning epochs of a Sequential fold-in, and replayed users per touched user.
SEQ_FOLD_EPOCHS = 2
SEQ_REPLAY = 1


def _append(model, n_new_users: int, events) -> None:
    from ._sequences import append_histories

    ev_users, ev_items = (np.asarray(a, dtype=np.int64) for a in events)
    indptr = model.history_indptr_
    if n_new_users:
        indptr = np.r_[indptr, np.full(n_new_users, indptr[-1])]
    model._set_histories(*append_histories(model.history_items_, indptr, ev_items, ev_users))


def sequential_fold_in(model, user_idx: np.ndarray, n_new_users: int, events) -> None:
    """Append the events to the histories, then fine-tune from the anchor (see module)."""
    from ..training import fit_loop, param_groups, threads_for
    from ._sequences import NextItemTask

    _append(model, n_new_users, events)
    rec = getattr(model, "_fold_anchor", None)
    if rec is None or rec["net"] is not model.network_:
        state = {k: v.detach().clone() for k, v in model.network_.state_dict().items()}
        rec = {"state": state, "users": np.empty(0, np.int64)}
    rec = dict(rec, users=np.union1d(rec["users"], user_idx).astype(np.int64))
    U = rec["users"]
    ip, it = model.history_indptr_, model.history_items_
    trainable = U[np.diff(ip)[U] >= 2]  # a window needs an input and a target
    net = copy.deepcopy(model.network_)
    net.load_state_dict(rec["state"])
    if len(trainable):
        seed = seed_from(seed_from(model.random_state) if model.random_state is not None
                         else 0) ^ 0x5EF0
        rng = np.random.default_rng(seed)
        others = np.setdiff1d(np.flatnonzero(np.diff(ip) >= 2), U)
        k = min(len(others), SEQ_REPLAY * len(trainable))
        users = np.sort(np.r_[trainable, rng.choice(others, size=k, replace=False)
                              if k else np.empty(0, np.int64)])
        lengths = np.diff(ip)[users]
        items = np.concatenate([it[ip[u]:ip[u + 1]] for u in users])
        indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        device = model._device()
        net.to(device)
        task = NextItemTask(net, items, indptr, max_len=int(model.max_len),
                            batch_size=int(model.batch_size), loss=model.loss,
                            n_negatives=int(model.n_negatives),
                            label_smoothing=float(getattr(model, "label_smoothing", 0.0)),
                            step_amp=model._amp_dtype(device) if model.amp == "bf16" else None,
                            seed=seed, device=device)
        groups = param_groups(net, float(model.weight_decay))
        opt = torch.optim.AdamW(groups, lr=float(model.learning_rate))
        with threads_for(int(model.batch_size) * int(model.max_len) * int(model.dim), device):
            fit_loop(net, task.step, task.batches, epochs=SEQ_FOLD_EPOCHS, optimizer=opt,
                     learning_rate=float(model.learning_rate),
                     steps_per_epoch=task.steps_per_epoch, device=device,
                     amp=model.amp == "auto", random_state=seed, verbose=False,
                     name="SequentialRecommender.partial_fit", generators=task.generators)
    net.eval()
    model.network_ = net
    model._invalidate()
    rec["net"] = net
    model._fold_anchor = rec


def hybrid_fold_in(model, user_idx: np.ndarray, n_new_users: int) -> None:
    """Recompute the touched users' stored representations from their histories."""
    from ..exceptions import DataError
    from ..online import positive_rows
    from ._hybrid_towers import csr_rows

    rep = getattr(model, "user_repr_", None)
    if rep is None:
        raise DataError("partial_fit: this HybridRecommender's scorer "
                        f"({model.config_['scorer'].get('kind', '?')!r}) reads the "
                        "fit-time history order at scoring time; refit it on all the data")
    if not model.supports_history:
        raise DataError("partial_fit: this HybridRecommender has no 'history' user "
                        "modality, so events cannot change its users; add 'history' to "
                        "user_encoders, or refit")
    if n_new_users and getattr(model.scorer_, "user_bias", None) is not None:
        raise DataError("partial_fit: this HybridRecommender learned a bias per user "
                        "(user_bias=True), which new users do not have; refit to add users")
    n_fit = len(rep)
    H = model.seen_[user_idx]
    if model._implicit_feedback():
        H = positive_rows(model, H)
    H = H.tocsr()
    H.sort_indices()
    C = getattr(model, "history_repr_", None)
    V = model._V() if C is None else torch.from_numpy(C)
    rows, cols = csr_rows(H)
    # the learned id rows of known users are kept; new users are cold (-1)
    ids = torch.from_numpy(np.where(user_idx < n_fit, user_idx, -1).astype(np.int64))
    with torch.no_grad():
        u = model._scoring.user_repr(model._users(), V, rows, cols, H.shape[0], ids)
    out = np.zeros((model.n_users_, rep.shape[1]), dtype=rep.dtype)
    out[:n_fit] = rep
    out[user_idx] = u.float().cpu().numpy()
    model.user_repr_ = out
