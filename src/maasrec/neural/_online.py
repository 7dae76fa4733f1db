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

:func:`hybrid_fold_in` (``HybridRecommender``): copies of the towers and scorer are
fine-tuned for ``HYB_FOLD_EPOCHS`` (2) seeded epochs of the model's own training task on
the known users touched since the anchor plus ``HYB_REPLAY`` (8) times as many replayed
known users, from the
anchor's weights (batching-invariant, as above); then the item vectors and every known
user's representation are recomputed on the merged data, and new users are represented
from their history with the trained towers (as ``history=`` users: no id row). A model
with a text modality is not trained (its fit-time text vectors are not kept): only the
touched users' representations are recomputed. Only the pooled scorers (dot, NeuMF)
store user representations; the attention scorer, models without a "history" user
modality, and new users of a model with per-user biases are refused (refit).
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


#: Fine-tuning epochs of a Hybrid fold-in, and replayed users per touched user. Chosen
#: on a validation slice of MovieLens 100K (fit 75%, stream 75-80%, test 80-95%; mean
#: NDCG@10 fold-in / refit over seeds 0-2: 2 epochs with replay 8: 1.00; the former 5
#: epochs with replay 2: 0.99; 5 with 8: 0.98; no fine-tuning: 0.93), see
#: ``benchmarks.bench_online.hybrid_fold_in``; fewer epochs over more replayed users
#: drift less from the users the stream does not touch.
HYB_FOLD_EPOCHS = 2
HYB_REPLAY = 8

_HYB_MODULES = (("item", "item_tower_"), ("scorer", "scorer_"), ("user", "user_tower_"),
                ("history", "history_tower_"))


def _hybrid_positive(model, H):
    from ..online import positive_rows

    H = positive_rows(model, H) if model._implicit_feedback() else H.astype(np.float32)
    H = H.tocsr()
    H.sort_indices()
    return H


def _hybrid_train(model, rec: dict, n_fit: int) -> None:
    """Seeded fine-tuning of copies of the towers and scorer, from the anchor's weights.

    Trained on the rows of the known users touched since the anchor plus ``HYB_REPLAY``
    times as many other known users (a seeded replay sample); then the item vectors and every known user's
    representation are recomputed (the fit's ``fitted_state``) on the merged data.
    """
    import dataclasses

    import scipy.sparse as sp
    from torch import nn

    from ._hybrid_config import TrainSettings
    from ._hybrid_task import HybridTraining

    R = _hybrid_positive(model, model.seen_[:n_fit])
    U = rec["users"][rec["users"] < n_fit]
    U = U[np.diff(R.indptr)[U] > 0]
    modules = nn.ModuleDict()
    for name, attr in _HYB_MODULES:
        m = getattr(model, attr, None)
        if m is not None:
            m = copy.deepcopy(m)
            m.load_state_dict(rec["state"][attr])
            setattr(model, attr, m)
            modules[name] = m
    if len(U):
        seed = seed_from(seed_from(model.random_state) if model.random_state is not None
                         else 0) ^ 0x4B1D
        rng = np.random.default_rng(seed)
        others = np.setdiff1d(np.flatnonzero(np.diff(R.indptr) > 0), U)
        k = min(len(others), HYB_REPLAY * len(U))
        rows = np.sort(np.r_[U, rng.choice(others, size=k, replace=False)
                             if k else np.empty(0, np.int64)])
        keep = sp.diags(np.isin(np.arange(n_fit), rows).astype(np.float32))
        R_train = (keep @ R).tocsr()
        R_train.eliminate_zeros()
        R_train.sort_indices()
        settings = dataclasses.replace(TrainSettings.of(model), epochs=HYB_FOLD_EPOCHS,
                                       patience=None, verbose=False, dp=None)
        training = HybridTraining(
            model.item_tower_, model.history_tower_, model._users(), model.scorer_,
            model._scoring, R_train, None, settings, torch.device("cpu"),
            modalities=model.modalities_, has_id=model.item_has_id_, text=None)
        training.fit(modules, seed=seed, data=None, validation=None, callbacks=[],
                     fingerprint={"model": "HybridRecommender.partial_fit"})
    modules.eval()
    full = HybridTraining(
        model.item_tower_, model.history_tower_, model._users(), model.scorer_,
        model._scoring, R, None, TrainSettings.of(model), torch.device("cpu"),
        modalities=model.modalities_, has_id=model.item_has_id_, text=None)
    for name, value in full.fitted_state().items():
        setattr(model, name, value)
    model._vectors_cache = None


def hybrid_fold_in(model, user_idx: np.ndarray, n_new_users: int) -> None:
    """Recompute the touched users' stored representations from their histories."""
    from ..exceptions import DataError
    from ._hybrid_towers import csr_rows

    rep = getattr(model, "user_repr_", None)
    if rep is None:
        raise DataError("partial_fit: this HybridRecommender's scorer "
                        f"({type(model.scorer_).__name__}) reads the fit-time history "
                        "order at scoring time; refit it on all the data")
    if not model.supports_history:
        raise DataError("partial_fit: this HybridRecommender has no 'history' user "
                        "modality, so events cannot change its users; add 'history' to "
                        "user_encoders, or refit")
    if n_new_users and getattr(model.scorer_, "user_bias", None) is not None:
        raise DataError("partial_fit: this HybridRecommender learned a bias per user "
                        "(user_bias=True), which new users do not have; refit to add users")
    rec = getattr(model, "_fold_anchor", None)
    if rec is None or rec["out"] is not model.item_repr_:
        rec = {"state": {attr: {k: v.detach().clone() for k, v in m.state_dict().items()}
                         for _, attr in _HYB_MODULES
                         if (m := getattr(model, attr, None)) is not None},
               "users": np.empty(0, np.int64), "n_fit": len(rep)}
    rec = dict(rec, users=np.union1d(rec["users"], user_idx).astype(np.int64))
    n_fit = rec["n_fit"]
    if HYB_FOLD_EPOCHS and "text" not in model.modalities_["item"]:
        _hybrid_train(model, rec, n_fit)  # item vectors and known users recomputed
        rep = model.user_repr_
        user_idx = rec["users"][rec["users"] >= n_fit]  # the new users, below
    rec["out"] = model.item_repr_
    model._fold_anchor = rec
    out = np.zeros((model.n_users_, rep.shape[1]), dtype=rep.dtype)
    out[:len(rep)] = rep
    if len(user_idx) == 0:
        model.user_repr_ = out
        return
    H = _hybrid_positive(model, model.seen_[user_idx])
    C = getattr(model, "history_repr_", None)
    V = model._V() if C is None else torch.from_numpy(C)
    rows, cols = csr_rows(H)
    # the learned id rows of known users are kept; new users are cold (-1)
    ids = torch.from_numpy(np.where(user_idx < n_fit, user_idx, -1).astype(np.int64))
    with torch.no_grad():
        u = model._scoring.user_repr(model._users(), V, rows, cols, H.shape[0], ids)
    out[user_idx] = u.float().cpu().numpy()
    model.user_repr_ = out
