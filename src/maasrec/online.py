"""Online updates: the machinery behind :meth:`Recommender.partial_fit`.

:func:`partial_fit` maps new interactions (raw ids) onto a fitted model, grows the user
vocabulary for new users (and the item vocabulary for models that can take new items),
merges the events into ``seen_`` (an event for a pair already there replaces its value,
as ``fit``'s default ``duplicates="last"`` does) and hands the touched users to the
model's ``_partial_fit(user_idx, n_new_users, n_new_items)`` hook. A hook that also
declares ``previous_seen`` (the ``seen_`` before the update), ``event_items`` (the
distinct item indices of the events) or ``events`` (the events' user and item indices,
in time order within each user, repeats kept) as keyword parameters gets them too.

What each model does is said in its class docstring and in :doc:`/online`. Two kinds:

- functions of the touched users' *whole* histories (ItemKNN, PureSVD, Popularity, and
  the user side of every model): batching never changes them;
- updates of shared (item-side) parameters. EASE applies each call's change of the Gram
  matrix to its inverse exactly (Woodbury identity, float64), so the folded-in model is
  the refit up to rounding, whatever the batching (differences ~1e-12 of the inverse).
  ALS and BPRMF recompute their item-side update from the state they had when the first
  ``partial_fit`` ran (after ``fit`` or ``load``) over *all* the users and items touched
  since then: one call or many give the same model, exactly, and the cost of a call grows
  with what was folded in since (at most about one ALS sweep; BPRMF: a few epochs over
  the new events plus a replay sample of old ones). Refit (or save and load) from time
  to time to start over from a cheap state.

A service that replays its event log in one call therefore reaches the model it served
(see :doc:`/online`).

Deferred model-wide updates (the service's fast path): ``partial_fit(model, X,
defer=True)`` on a model whose user scores are a function of the user's history row
(EASE and TextEASE: ``x_u B``) merges the events into ``seen_`` and the vocabularies only,
so the touched users' next recommendations reflect them at once, and records the
model-wide update as pending (the ``seen_`` it was last exact for plus the touched users
of each deferred call). :func:`apply_deferred` later applies every pending call in one
batched low-rank update (EASE: one Woodbury step over the union of the touched users,
from the base ``seen_``): the result is the model ``partial_fit`` of the same events gives
(up to rounding), whatever the grouping. :func:`rebase_deferred` carries an update
computed on a snapshot over to a model that took more events meanwhile. Any
``partial_fit`` without ``defer`` applies the pending calls together with its own. Other
models ignore ``defer`` (their update is applied at once).
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data.interactions import Interactions, as_interactions
from .exceptions import DataError, NotFittedError, UnknownIdError

__all__ = [
    "apply_deferred",
    "deferred_calls",
    "partial_fit",
    "positive_rows",
    "rebase_deferred",
    "supports_deferred",
    "supports_partial_fit",
]


def supports_partial_fit(model) -> bool:
    """Whether ``model`` implements the ``_partial_fit`` hook."""
    return callable(getattr(type(model), "_partial_fit", None))


def supports_deferred(model) -> bool:
    """Whether ``partial_fit(model, X, defer=True)`` defers the model-wide update.

    True for the models whose user scores depend on the model-wide parameters and the
    user's history row only, and whose hook needs nothing but ``previous_seen`` (EASE,
    TextEASE): updating ``seen_`` is then enough for a user's next recommendation.
    """
    from .models.ease import EASE

    return isinstance(model, EASE) and _hook_extras(type(model)) <= {"previous_seen"}


@dataclass(frozen=True)
class _Deferred:
    """A model's pending model-wide update: the state it is exact for, the calls since."""

    seen: sp.csr_matrix  # the seen_ the model-wide parameters are exact for
    n_users: int  # the vocabulary sizes then
    n_items: int
    users: tuple  # the touched user indices of each deferred call, in order


def _pending(model) -> _Deferred | None:
    return getattr(model, "_deferred", None)


def deferred_calls(model) -> int:
    """Number of ``partial_fit(..., defer=True)`` calls whose model-wide update is pending."""
    d = _pending(model)
    return 0 if d is None else len(d.users)


def apply_deferred(model) -> np.ndarray:
    """Apply every pending model-wide update of ``model`` in one batched, exact step.

    The result is the model that ``partial_fit`` without ``defer`` of the same events
    gives (up to rounding). On an error the model is left as it was (still pending).

    Returns
    -------
    np.ndarray of int64
        The users whose update was applied (empty when nothing was pending).
    """
    d = _pending(model)
    if d is None:
        return np.empty(0, np.int64)
    users = np.unique(np.concatenate(d.users)).astype(np.int64)
    extra = {"previous_seen": d.seen} if "previous_seen" in _hook_extras(type(model)) else {}
    model._partial_fit(users, n_new_users=model.n_users_ - d.n_users,
                       n_new_items=model.n_items_ - d.n_items, **extra)
    model._deferred = None
    model._pop_cache = None
    return users


def rebase_deferred(current, applied, snapshot):
    """``applied``'s model-wide state with ``current``'s users and pending calls after it.

    ``applied`` is a copy of ``snapshot`` on which :func:`apply_deferred` ran; ``current``
    is the model served now, ``snapshot`` plus further deferred calls (the fast path
    changes only ``seen_``, the vocabularies and the pending record). The result has the
    model-wide parameters of ``applied``, the histories of ``current`` and, pending, the
    calls ``current`` took after ``snapshot`` (based on ``snapshot.seen_``).

    Returns
    -------
    Recommender or None
        A new (shallow-copied) model, or None when ``current`` does not descend from
        ``snapshot`` by deferred calls only (e.g. a reload or an exact ``partial_fit``
        came between): ``applied`` is then stale.
    """
    snap, cur = _pending(snapshot), _pending(current)
    if snap is None or cur is None or cur.seen is not snap.seen \
            or len(cur.users) < len(snap.users) \
            or any(a is not b for a, b in zip(cur.users, snap.users, strict=False)):
        return None
    out = copy.copy(applied)
    out.user_vocab_, out.item_vocab_ = current.user_vocab_, current.item_vocab_
    out.seen_ = current.seen_
    rest = cur.users[len(snap.users):]
    out._deferred = _Deferred(snapshot.seen_, len(snapshot.user_vocab_),
                              len(snapshot.item_vocab_), rest) if rest else None
    out._pop_cache = None
    return out


def positive_rows(model, m: sp.csr_matrix) -> sp.csr_matrix:
    """``m`` without its entries <= 0 for implicit-feedback models (what ``fit`` learns from)."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    if model._implicit_feedback() and m.nnz and (m.data <= 0).any():
        m.data[m.data <= 0] = 0
        m.eliminate_zeros()
    return m


@functools.lru_cache(maxsize=256)
def _hook_extras(cls) -> frozenset:
    """The optional keyword parameters the class's ``_partial_fit`` hook declares."""
    params = inspect.signature(cls._partial_fit).parameters
    return frozenset(n for n in ("previous_seen", "event_items", "events") if n in params)


def _as_new_interactions(new_interactions) -> Interactions:
    if isinstance(new_interactions, sp.spmatrix | sp.sparray):
        raise DataError("partial_fit takes raw ids (an Interactions or a pandas frame with user "
                        "and item columns), not a sparse matrix, whose indices are not ids")
    data = as_interactions(new_interactions)
    if data.nnz == 0:
        raise DataError("partial_fit got no interactions; pass at least one (user, item) row")
    return data


#: Up to this many touched rows, ``_merge_seen`` copies the untouched runs as slices.
_SLICED_MERGE_MAX_ROWS = 256


def _merge_seen(seen: sp.csr_matrix, rows, cols, vals, shape) -> sp.csr_matrix:
    """``seen`` grown to ``shape`` with (rows, cols) set to ``vals`` (replacing old values).

    Only the touched rows are re-sorted; the others are copied in place (O(nnz) copies,
    no global sort), so one event costs little more than copying the matrix.
    """
    n_rows = shape[0]
    old_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    old_ptr[:seen.shape[0] + 1] = seen.indptr
    old_ptr[seen.shape[0] + 1:] = seen.indptr[-1]
    old_len = np.diff(old_ptr)
    touched = np.unique(rows)
    # the touched rows: old entries + new events, the new event winning a repeated pair
    t_len = old_len[touched]
    t_src = np.concatenate([np.arange(old_ptr[r], old_ptr[r + 1]) for r in touched]) \
        if t_len.sum() else np.empty(0, np.int64)
    r = np.concatenate([np.repeat(touched, t_len), rows.astype(np.int64)])
    c = np.concatenate([seen.indices[t_src].astype(np.int64), cols.astype(np.int64)])
    v = np.concatenate([seen.data[t_src].astype(np.float32), vals.astype(np.float32)])
    pri = np.concatenate([np.zeros(len(t_src), np.int64), np.arange(1, len(rows) + 1)])
    order = np.lexsort((pri, c, r))
    r, c, v = r[order], c[order], v[order]
    last = np.ones(len(r), dtype=bool)
    last[:-1] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    r, c, v = r[last], c[last], v[last]
    new_len = old_len.copy()
    new_len[touched] = np.bincount(r, minlength=n_rows)[touched]
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(new_len, out=ptr[1:])
    nnz = int(ptr[-1])
    idx_dtype = np.int32 if max(nnz, shape[1]) < np.iinfo(np.int32).max else np.int64
    if len(touched) <= _SLICED_MERGE_MAX_ROWS:  # a few rows (a live event): memcpy slices
        lo = np.searchsorted(r, touched, side="left")
        hi = np.searchsorted(r, touched, side="right")
        cut = np.empty(2 * len(touched), dtype=np.int64)
        cut[0::2], cut[1::2] = old_ptr[touched], old_ptr[touched + 1]
        kept_i = np.split(seen.indices, cut)[::2]  # the untouched runs between them
        kept_d = np.split(seen.data, cut)[::2]
        c = c.astype(seen.indices.dtype, copy=False)
        new_i = [c[a:b] for a, b in zip(lo, hi, strict=True)]
        new_d = [v[a:b] for a, b in zip(lo, hi, strict=True)]
        order_i = [x for pair in zip(kept_i, new_i, strict=False) for x in pair] + [kept_i[-1]]
        order_d = [x for pair in zip(kept_d, new_d, strict=False) for x in pair] + [kept_d[-1]]
        indices = np.concatenate(order_i).astype(idx_dtype, copy=False)
        data = np.concatenate(order_d).astype(np.float32, copy=False)
    else:
        indices = np.empty(nnz, dtype=idx_dtype)
        data = np.empty(nnz, dtype=np.float32)
        # untouched rows keep their entries at the same offset within the row
        keep_rows = np.ones(n_rows, dtype=bool)
        keep_rows[touched] = False
        entry_row = np.repeat(np.arange(n_rows), old_len)
        keep = keep_rows[entry_row]
        src = np.flatnonzero(keep)
        dst = ptr[entry_row[src]] + (src - old_ptr[entry_row[src]])
        indices[dst] = seen.indices[src]
        data[dst] = seen.data[src]
        # touched rows: their merged, sorted entries
        first = np.searchsorted(r, r, side="left")
        dst = ptr[r] + (np.arange(len(r)) - first)
        indices[dst] = c
        data[dst] = v
    out = sp.csr_matrix((data, indices, ptr.astype(idx_dtype)), shape=shape)
    for a in (out.data, out.indices, out.indptr):
        a.setflags(write=False)
    return out


def partial_fit(model, new_interactions, *, defer: bool = False) -> np.ndarray:
    """Fold ``new_interactions`` into ``model`` (see :meth:`Recommender.partial_fit`).

    Parameters
    ----------
    model : Recommender
    new_interactions : Interactions or pandas.DataFrame
    defer : bool, default False
        For a model that :func:`supports_deferred`: update the histories only and leave
        the model-wide update pending (:func:`apply_deferred`). Ignored by other models.

    Returns
    -------
    np.ndarray of int64
        Indices of the touched users (after the update).
    """
    if not model.is_fitted:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit(X) "
                             f"before partial_fit")
    if not supports_partial_fit(model):
        raise DataError(f"{type(model).__name__} has no partial_fit; refit it on all the data")
    data = _as_new_interactions(new_interactions)
    m = data.to_csr()
    r_idx = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    raw_users = data.user_vocab.ids_of(r_idx)
    raw_items = data.item_vocab.ids_of(m.indices)
    vals = np.asarray(m.data, dtype=np.float32)
    if not np.isfinite(vals).all():
        raise DataError(f"partial_fit got a non-finite value {vals[~np.isfinite(vals)][0]!r}")

    items = model.item_vocab_.index(raw_items, unknown="ignore")
    new_item_ids = raw_items[items < 0]
    item_vocab = model.item_vocab_
    if len(new_item_ids):
        if not getattr(model, "_partial_fit_new_items", False):
            shown = ", ".join(repr(x) for x in list(dict.fromkeys(new_item_ids.tolist()))[:5])
            raise UnknownIdError(
                f"unknown item id(s) {shown} ({len(set(new_item_ids.tolist()))} new): "
                f"{type(model).__name__}.partial_fit folds in new users and new events on "
                f"known items only; refit the model on all the data to add items")
        item_vocab = item_vocab.extend(new_item_ids)
    user_vocab = model.user_vocab_.extend(raw_users)
    rows = user_vocab.index(raw_users)
    cols = item_vocab.index(raw_items)
    n_new_users = len(user_vocab) - len(model.user_vocab_)
    n_new_items = len(item_vocab) - len(model.item_vocab_)
    seen = _merge_seen(model.seen_, rows, cols, vals, (len(user_vocab), len(item_vocab)))
    touched = np.unique(rows).astype(np.int64)
    old = (model.user_vocab_, model.item_vocab_, model.seen_)
    pending = _pending(model)
    if defer and supports_deferred(model):
        base = pending or _Deferred(old[2], len(old[0]), len(old[1]), ())
        model.user_vocab_, model.item_vocab_, model.seen_ = user_vocab, item_vocab, seen
        model._deferred = _Deferred(base.seen, base.n_users, base.n_items,
                                    (*base.users, touched))
        model._pop_cache = None
        return touched
    model.user_vocab_, model.item_vocab_, model.seen_ = user_vocab, item_vocab, seen
    hook_users, previous_seen = touched, old[2]
    if pending is not None:  # the pending calls go with this one (from their base)
        previous_seen = pending.seen
        hook_users = np.unique(np.concatenate([*pending.users, touched])).astype(np.int64)
        n_new_users = len(user_vocab) - pending.n_users
        n_new_items = len(item_vocab) - pending.n_items
    extra = {}
    wanted = _hook_extras(type(model))
    if "previous_seen" in wanted:
        extra["previous_seen"] = previous_seen
    if "event_items" in wanted:
        extra["event_items"] = np.unique(cols).astype(np.int64)
    if "events" in wanted:  # (user, item) indices in time order within each user
        ev = data
        if isinstance(new_interactions, pd.DataFrame):  # repeats kept: a re-watch counts
            ev = Interactions.from_pandas(new_interactions, duplicates="keep")
        extra["events"] = (user_vocab.index(ev.user_vocab.ids_of(ev.user_indices)),
                           item_vocab.index(ev.item_vocab.ids_of(ev.item_indices)))
    try:
        model._partial_fit(hook_users, n_new_users=n_new_users, n_new_items=n_new_items,
                           **extra)
    except BaseException:
        model.user_vocab_, model.item_vocab_, model.seen_ = old
        raise
    model._deferred = None
    model._pop_cache = None
    return touched
