"""Fold-in updates of the classical models' item-side parameters (``partial_fit``).

- :func:`ease_fold_in`: EASE's inverse Gram matrix updated by the Woodbury identity
  (exact up to rounding), ``B_`` recomputed from it.
- :func:`als_fold_in`: ALS users solved exactly, then the factors of the items that got
  events, then those users again, from the state of the first ``partial_fit``.
- :func:`bpr_fold_in`: new BPR users folded in, then seeded lazy-Adam epochs over the
  new positives mixed with a replay sample of old ones, from the state of the first
  ``partial_fit``.

ALS and BPRMF keep that starting state (the *anchor*: the factors when the first
``partial_fit`` ran after ``fit`` or ``load``, plus the users and items touched since) in
a private attribute that is not saved, and recompute their update from it on each call,
so folding events in one call or in many gives the same model exactly (what the
service's event-log replay relies on). The anchor is used only while the model's
factors are still the arrays the last fold-in produced; anything else (a refit, a
load) starts a new anchor.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..exceptions import MaasrecError
from ..online import positive_rows
from ..training import threads_for

__all__ = ["als_fold_in", "bpr_fold_in", "ease_fold_in"]


# -- EASE -------------------------------------------------------------------------------
def _ease_inverse(model, previous_seen: sp.csr_matrix) -> np.ndarray:
    """The float64 ``(X^T X + l2 I)^-1`` of the model as it is before this update."""
    from .ease import _ease_weights

    cache = getattr(model, "_inverse", None)
    if cache is not None and cache[0] is model.B_:
        return cache[1]
    X = model._matrix(previous_seen).astype(np.float64)
    n = X.shape[1]
    P = np.empty((n, n))
    _ease_weights(X, model.l2, inverse=P, side=model._ease_side())
    return P


def _weights_from_inverse(P: np.ndarray) -> np.ndarray:
    d = np.diagonal(P).copy()
    if not (np.isfinite(d).all() and (d > 0).all()):
        raise MaasrecError("EASE: the updated inverse of X^T X + l2 I is not positive "
                           "definite (rounding); refit the model")
    B = np.empty(P.shape, dtype=np.float32)
    np.divide(P, -d, out=B, casting="unsafe")  # one pass, straight into float32
    np.fill_diagonal(B, 0.0)
    return B


def ease_fold_in(model, user_idx: np.ndarray, previous_seen: sp.csr_matrix) -> None:
    """Update ``model.B_`` to the EASE solution of the merged ``seen_`` (exactly).

    The Gram matrix changes by ``Σ_u (x_u' x_u'^T - x_u x_u^T)`` over the touched users
    (old row ``x_u``, new row ``x_u'``): ``ΔG = Uᵀ C U`` with ``U`` the stacked rows and
    ``C = diag(+1, -1)``. Woodbury: ``(G + UᵀCU)^-1 = P - P Uᵀ (C + U P Uᵀ)^-1 U P``
    (``C^-1 = C``), ``O(n² r)`` for ``r`` rows instead of the ``O(n³)`` inversion, which
    is used instead when ``r`` exceeds the number of items.
    """
    from .ease import _ease_weights

    n = model.n_items_
    # user_idx is sorted and new users come after the known ones: known is a prefix
    known = user_idx[user_idx < previous_seen.shape[0]]
    new_rows = model._matrix(model.seen_[user_idx]).astype(np.float64)
    old_rows = sp.vstack([model._matrix(previous_seen[known]).astype(np.float64),
                          sp.csr_matrix((len(user_idx) - len(known), n))]).tocsr()
    diff = (new_rows - old_rows).tocsr()
    diff.eliminate_zeros()
    changed = np.flatnonzero(np.diff(diff.indptr) > 0)
    if len(changed) == 0:
        return
    U = sp.vstack([new_rows[changed], old_rows[changed]]).tocsr()
    c = np.r_[np.ones(len(changed)), -np.ones(len(changed))]
    keep = np.diff(U.indptr) > 0  # an empty row (new user, or a history emptied) adds 0
    U, c = U[keep], c[keep]
    r = U.shape[0]
    if r > n:  # the inversion from scratch is cheaper
        P = np.empty((n, n))
        model.B_ = _ease_weights(model._matrix(model.seen_).astype(np.float64), model.l2,
                                 inverse=P, side=model._ease_side())
        model._inverse = (model.B_, P)
        return
    P = _ease_inverse(model, previous_seen)
    W = np.asarray(U @ P)  # r x n: U P (P symmetric, so P Uᵀ = Wᵀ)
    K = np.asarray(U @ W.T)
    K[np.diag_indices_from(K)] += c  # C + U P Uᵀ
    with threads_for(n * n * r):
        M = np.linalg.solve(K, W)
        P = P - W.T @ M  # symmetric up to rounding (Wᵀ K⁻¹ W with K symmetric)
    model.B_ = _weights_from_inverse(P)
    model._inverse = (model.B_, P)


# -- shared: the anchor of ALS and BPRMF --------------------------------------------------
def _anchor(model, user_idx, event_items, previous_seen) -> dict:
    """The model's anchor with ``user_idx`` and ``event_items`` added (a new dict)."""
    rec = getattr(model, "_fold_anchor", None)
    if rec is None or rec["out"][0] is not model.user_factors_ \
            or rec["out"][1] is not model.item_factors_:
        rec = {"X": model.user_factors_, "Y": model.item_factors_,
               "b": getattr(model, "item_bias_", None), "seen": previous_seen,
               "users": np.empty(0, np.int64), "items": np.empty(0, np.int64)}
    return dict(rec, users=np.union1d(rec["users"], user_idx).astype(np.int64),
                items=np.union1d(rec["items"], event_items).astype(np.int64))


def _grown(X: np.ndarray, n_rows: int) -> np.ndarray:
    """A copy of ``X`` with zero rows appended up to ``n_rows``."""
    out = np.zeros((n_rows, X.shape[1]), dtype=X.dtype)
    out[:len(X)] = X
    return out


# -- ALS ----------------------------------------------------------------------------------
def _als_solve(model, R: sp.csr_matrix, Y: np.ndarray, warm: np.ndarray | None) -> np.ndarray:
    """The exact least-squares rows of ``R`` (weights) against fixed factors ``Y``."""
    from .als import _cg_solve, _Side

    f = Y.shape[1]
    X = torch.zeros(R.shape[0], f) if warm is None else torch.from_numpy(warm.copy())
    if R.nnz:
        side = _Side(R, model._conf(R.data), f, torch.device("cpu"))
        with threads_for(R.nnz * f):
            _cg_solve(side, X, torch.from_numpy(np.ascontiguousarray(Y)),
                      float(model.regularization), steps=2 * f + 10, tol=1e-10)
    return X.numpy()


def als_fold_in(model, user_idx: np.ndarray, event_items: np.ndarray,
                previous_seen: sp.csr_matrix) -> None:
    """One restricted ALS sweep from the anchor: touched users, their items, the users.

    From the anchor's factors ``(X0, Y0)``, with ``U`` every user and ``T`` every item
    that got an event since the anchor: ``X[U]`` solved exactly against ``Y0``; ``Y[T]``
    solved exactly against all of ``X``; ``X[U]`` solved again against the new ``Y``.
    Users outside ``U`` and items outside ``T`` keep their factors.
    """
    rec = _anchor(model, user_idx, event_items, previous_seen)
    R = model._weights(positive_rows(model, model.seen_), fitting=False)
    U, T = rec["users"], rec["items"]
    X = _grown(rec["X"], model.n_users_)
    Y = np.array(rec["Y"], copy=True)
    RU = R[U]
    X[U] = _als_solve(model, RU, Y, None)
    Rt = R.T.tocsr()
    Rt.sort_indices()
    Y[T] = _als_solve(model, Rt[T], X, Y[T])
    X[U] = _als_solve(model, RU, Y, None)
    model.user_factors_, model.item_factors_ = X, Y
    rec["out"] = (X, Y)
    model._fold_anchor = rec


# -- BPRMF --------------------------------------------------------------------------------
#: Fold-in epochs over the new positives (plus the replay sample), and old positives
#: replayed per new one.
BPR_FOLD_EPOCHS = 10
BPR_REPLAY = 4
#: Whether touched known users are re-learned from their history first (else they start
#: the joint epochs from their anchor factors; new users are always folded in first).
BPR_FOLD_KNOWN_USERS = False


def bpr_fold_in(model, user_idx: np.ndarray, event_items: np.ndarray,
                previous_seen: sp.csr_matrix) -> None:
    """BPR fold-in from the anchor: users re-learned, then joint seeded epochs.

    1. Every new user (not in the anchor) gets the per-user fold-in against the anchor's
       item factors (:func:`maasrec.models.bpr._fold_in_bpr`), cached in the anchor per
       history; known users start from their anchor factors (with
       ``BPR_FOLD_KNOWN_USERS`` they are folded in too: no better on MovieLens 100K).
    2. ``BPR_FOLD_EPOCHS`` epochs of the model's BPR step (lazy Adam, its learning rate
       and regularisation) over the positives added since the anchor, each mixed with
       ``BPR_REPLAY`` positives drawn from the anchor's data (seeded), updating the
       factors of the users and items in those triples and the item biases.

    Every draw comes from ``random_state`` and the anchor's data, so the result is a
    function of the anchor and the final histories only.
    """
    from .bpr import _BPRStep, _fold_in_bpr

    rec = _anchor(model, user_idx, event_items, previous_seen)
    U = rec["users"]
    Y0 = rec["Y"]
    b0 = rec["b"] if rec["b"] is not None else np.zeros(len(Y0), np.float32)
    X = _grown(rec["X"], model.n_users_)
    # 1. users against the anchor's items (the per-user fold-in): computed for the users
    # whose history changed in this call or who have no cached row, the other rows come
    # from the anchor's cache (each row depends on its own history only)
    cache_u, cache_x = rec.get("bpr_rows", (np.empty(0, np.int64), np.empty((0, X.shape[1]),
                                                                           np.float32)))
    fresh = np.union1d(np.intersect1d(user_idx, U), np.setdiff1d(U, cache_u))
    if not BPR_FOLD_KNOWN_USERS:  # known users start from their anchor factors
        fresh = fresh[fresh >= len(rec["X"])]
    saved = model.item_factors_, model.item_bias_
    model.item_factors_, model.item_bias_ = Y0, b0
    try:
        rows = _fold_in_bpr(model, fresh)
    finally:
        model.item_factors_, model.item_bias_ = saved
    keep = ~np.isin(cache_u, fresh)
    cache_u = np.r_[cache_u[keep], fresh]
    cache_x = np.vstack([cache_x[keep], rows])
    order = np.argsort(cache_u)
    cache_u, cache_x = cache_u[order], cache_x[order]
    rec["bpr_rows"] = (cache_u, cache_x)
    X[cache_u] = cache_x
    # 2. joint epochs over the new positives and a replay sample of the anchor's data
    now = positive_rows(model, model.seen_)
    old = positive_rows(model, rec["seen"])
    old = sp.csr_matrix((old.data, old.indices, np.r_[old.indptr, np.full(
        now.shape[0] - old.shape[0], old.indptr[-1])]), shape=now.shape) \
        if old.shape[0] < now.shape[0] else old
    new = (now[U] - now[U].multiply(old[U].astype(bool))).tocsr()
    new.eliminate_zeros()
    Y = np.array(Y0, copy=True)
    b = np.array(b0, copy=True)
    if new.nnz:
        nu = U[np.repeat(np.arange(len(U)), np.diff(new.indptr))]
        ni = new.indices.astype(np.int64)
        X, Y, b = _bpr_epochs(model, now, old, X, Y, b, nu, ni, _BPRStep)
    model.user_factors_, model.item_factors_ = X, Y
    if model.item_bias:
        model.item_bias_ = b
    rec["out"] = (X, Y)
    model._fold_anchor = rec


def _bpr_epochs(model, now, old, X, Y, b, nu, ni, step_cls):
    rs = model.random_state
    base = int(rs) if isinstance(rs, int | np.integer) else 0
    rng = np.random.default_rng([base, 0x0B9F, len(nu)])
    n_items = Y.shape[0]
    keys = _positive_keys(now)
    o_users = np.repeat(np.arange(old.shape[0]), np.diff(old.indptr))
    o_items = old.indices.astype(np.int64)
    P_t, Q_t = torch.from_numpy(X), torch.from_numpy(Y)
    b_t = torch.from_numpy(b) if model.item_bias else None
    step = step_cls(P_t, Q_t, b_t, float(model.learning_rate), float(model.regularization),
                    "sparse_adam")
    bs = 1024
    with torch.no_grad(), threads_for(bs * Y.shape[1]):
        for _ in range(BPR_FOLD_EPOCHS):
            pick = rng.integers(0, len(o_users), size=BPR_REPLAY * len(nu)) \
                if len(o_users) else np.empty(0, np.int64)
            u = np.r_[nu, o_users[pick]]
            i = np.r_[ni, o_items[pick]]
            j = rng.integers(0, n_items, size=len(u))
            bad = np.flatnonzero(_is_positive(keys, n_items, u, j))
            while len(bad):  # redraw the negatives that are positives
                j[bad] = rng.integers(0, n_items, size=len(bad))
                bad = bad[_is_positive(keys, n_items, u[bad], j[bad])]
            order = rng.permutation(len(u))
            u, i, j = (torch.from_numpy(a[order]) for a in (u, i, j))
            for s in range(0, len(u), bs):
                step(u[s:s + bs], i[s:s + bs], j[s:s + bs])
    return P_t.numpy(), Q_t.numpy(), b if b_t is None else b_t.numpy()


def _positive_keys(m: sp.csr_matrix) -> np.ndarray:
    """``row * n_cols + col`` of every stored entry, sorted (``m`` has sorted indices)."""
    m.sort_indices()
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * m.shape[1] \
        + m.indices


def _is_positive(keys: np.ndarray, n_cols: int, u: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Whether each ``(u, j)`` is among ``keys`` (:func:`_positive_keys`)."""
    if not len(keys):
        return np.zeros(len(u), dtype=bool)
    q = u.astype(np.int64) * n_cols + j
    p = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[p] == q
