"""HybridRecommender's scorer variants: how users meet items, one class per scorer kind.

The scorer *module* (:mod:`maasrec.scorers`) turns a user representation and item
vectors into scores. What differs around it between the kinds -- what the user
representation is, which options the module gets, what a fitted model keeps to score
users, how a loaded model is checked -- is a :class:`Scoring`, chosen once from the
scorer kind when the model is fitted or loaded (:func:`scoring_for`):

- :class:`DotScoring` (``"dot"``) and :class:`NeuMFScoring` (``"neumf"``) pool the
  user's history into the user tower (:class:`PooledScoring`); a fitted model keeps one
  vector per user (``user_repr_``);
- :class:`AttentionScoring` (``"attention"``): the candidate attends over the user's
  history items in interaction order; a fitted model keeps those histories
  (``history_indptr_``, ``history_order_``) instead of user vectors.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from ..exceptions import DataError, ModelFormatError
from ._hybrid_towers import UserEncoder, csr_pairs, csr_rows, sub_seed

_SCORE_BYTES = 64 * 2**20


class Scoring:
    """The behaviour of one scorer kind around the scorer module (stateless)."""

    kind: ClassVar[str]

    # -- configuration --------------------------------------------------------------------
    def scorer_options(self, options: dict, *, dim: int, seed: int, item_bias: bool,
                       n_items: int, loss: str) -> dict:
        """The scorer module's options (``config_["scorer_options"]``)."""
        cfg = dict(options)
        self._size_options(cfg, dim, seed)
        if item_bias:
            cfg.setdefault("item_bias", True)
            cfg.setdefault("n_items", n_items)
        self._loss_options(cfg, loss)
        return cfg

    def _size_options(self, cfg: dict, dim: int, seed: int) -> None:
        cfg.setdefault("dim", dim)
        cfg.setdefault("random_state", sub_seed(seed, 50))

    def _loss_options(self, cfg: dict, loss: str) -> None:
        pass

    def check_user_modalities(self, user_spec: dict) -> None:
        """Refuse user modalities the scorer cannot work with."""

    def user_tower_config(self, user_cfg: dict) -> dict:
        """The user tower's modalities (``config_["user_tower"]``)."""
        return dict(user_cfg)

    def ordered_history(self, data, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(indptr, items) of the training histories in interaction order, if read."""
        return None

    # -- user representations -------------------------------------------------------------
    def user_repr(self, users: UserEncoder, V, rows, cols, b, user_rows, *, weights=None,
                  counts=None, id_keep=None):
        """The scorer's representation of ``b`` users from history pairs (rows, cols)."""
        raise NotImplementedError

    def softmax_user(self, users: UserEncoder, V, C, hist, targets, keep, user_rows, *,
                     weights, counts, id_keep):
        """(user representation, target rows, target items) of a full-softmax step.

        ``hist``: the (rows, cols) pairs left after history dropout (``keep``, or None
        without dropout); ``targets``: every (rows, cols) pair of the batch users.
        """
        raise NotImplementedError

    def pair_history(self, hist_csr, u, pos, g, p):
        """History pairs of a batch of interactions for the user representation, or None."""
        return None

    def score_chunk(self, b: int, V: torch.Tensor, users: UserEncoder) -> int:
        """Users per scoring chunk during validation."""
        return b

    # -- fitted state -----------------------------------------------------------------------
    def fitted_state(self, users: UserEncoder, C, R, order, device) -> dict[str, Any]:
        """The fitted attributes that describe the known users."""
        raise NotImplementedError

    def check_loaded(self, model, n_users: int, n_items: int, d: int) -> None:
        """Check those attributes after ``load``."""
        raise NotImplementedError

    def score_users(self, model, user_idx: np.ndarray) -> np.ndarray:
        """Scores of known users for every item (a fitted model, no grad)."""
        raise NotImplementedError

    def score_history(self, model, history: sp.csr_matrix) -> np.ndarray:
        """Scores of users given by their history only."""
        raise NotImplementedError

    # -- vectors for approximate retrieval (None: the scores do not factorise) ------------
    def item_vectors(self, model) -> np.ndarray | None:
        """``[n_items, d]`` item vectors whose inner products with the user vectors are
        the scores."""
        return None

    def user_vectors(self, model, user_idx: np.ndarray) -> np.ndarray | None:
        """The vectors of known users (see :meth:`item_vectors`)."""
        return None

    def history_vectors(self, model, history: sp.csr_matrix) -> np.ndarray | None:
        """The vectors of users given by their history."""
        return None


class PooledScoring(Scoring):
    """Users as one vector: the user tower over the pooled history, id and features."""

    def user_repr(self, users, V, rows, cols, b, user_rows, *, weights=None, counts=None,
                  id_keep=None):
        pooled = has = None
        if users.pools_history():
            pooled, has = users.pool(V, rows, cols, b, weights, counts)
        return users.static(pooled, has, user_rows, id_keep)

    def softmax_user(self, users, V, C, hist, targets, keep, user_rows, *, weights, counts,
                     id_keep):
        u = self.user_repr(users, C, *hist, len(user_rows), user_rows, weights=weights,
                           counts=counts, id_keep=id_keep)
        return (u, *targets)

    def fitted_state(self, users, C, R, order, device):
        n_users = R.shape[0]
        out = np.empty((n_users, C.shape[1]), dtype=np.float32)
        step = 4096
        for s in range(0, n_users, step):
            sub = R[s:s + step]
            indptr = torch.from_numpy(sub.indptr.astype(np.int64)).to(device)
            indices = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
            rows, cols, _ = csr_pairs(indptr, indices,
                                      torch.arange(sub.shape[0], device=device))
            u = self.user_repr(users, C, rows, cols, sub.shape[0],
                               torch.arange(s, s + sub.shape[0], device=device))
            out[s:s + sub.shape[0]] = u.float().cpu().numpy()
        return {"user_repr_": out}

    def check_loaded(self, model, n_users, n_items, d):
        model._loaded_float("user_repr_", (n_users, d))

    def score_users(self, model, user_idx):
        u = torch.from_numpy(model.user_repr_[user_idx])
        return model.scorer_.score_all(u, model._V(), user_idx=torch.from_numpy(user_idx)
                                       ).numpy()

    def score_history(self, model, history):
        u = model._history_user(history)
        cold = torch.full((history.shape[0],), -1, dtype=torch.long)
        return model.scorer_.score_all(u, model._V(), user_idx=cold).numpy()


class DotScoring(PooledScoring):
    """:class:`~maasrec.scorers.DotScorer`: MF, approximate retrieval works."""

    kind = "dot"

    def _size_options(self, cfg, dim, seed):
        pass  # a dot product has no size of its own

    def _loss_options(self, cfg, loss):
        if loss == "mse":  # ratings: a global mean
            cfg.setdefault("global_bias", True)

    def item_vectors(self, model):
        cache = getattr(model, "_vectors_cache", None)
        if cache is None or cache[0] is not model.item_repr_:
            with torch.no_grad():
                v = model.scorer_.item_vectors(model._V(), model._item_idx_all()).numpy()
            cache = model._vectors_cache = (model.item_repr_, np.ascontiguousarray(
                v, dtype=np.float32))
        return cache[1]

    def user_vectors(self, model, user_idx):
        with torch.no_grad():
            return model.scorer_.user_vectors(torch.from_numpy(model.user_repr_[user_idx]),
                                              torch.from_numpy(user_idx)).numpy()

    def history_vectors(self, model, history):
        with torch.no_grad():
            u = model._history_user(history)
            cold = torch.full((u.shape[0],), -1, dtype=torch.long)
            return model.scorer_.user_vectors(u, cold).numpy()


class NeuMFScoring(PooledScoring):
    """:class:`~maasrec.scorers.NeuMFScorer`: GMF and MLP halves."""

    kind = "neumf"


class AttentionScoring(Scoring):
    """:class:`~maasrec.scorers.AttentionScorer`: the candidate attends over the history."""

    kind = "attention"

    def check_user_modalities(self, user_spec):
        if "history" not in user_spec:
            raise DataError("scorer 'attention' attends over the user's history: user_encoders "
                            "must include 'history'")

    def user_tower_config(self, user_cfg):
        cfg = dict(user_cfg)
        cfg.pop("history")  # attended, not pooled into the tower
        return cfg

    def ordered_history(self, data, device):
        order = np.lexsort((np.arange(data.nnz), data.user_indices))
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.user_indices, minlength=data.n_users), out=indptr[1:])
        return (torch.from_numpy(indptr).to(device),
                torch.from_numpy(data.item_indices[order].astype(np.int64)).to(device))

    def user_repr(self, users, V, rows, cols, b, user_rows, *, weights=None, counts=None,
                  id_keep=None):
        static = users.static(None, None, user_rows, id_keep)
        return users.attended(V, rows, cols, b, static)

    def softmax_user(self, users, V, C, hist, targets, keep, user_rows, *, weights, counts,
                     id_keep):
        # an item attending over itself would be trivial: predict the hidden items only
        u = self.user_repr(users, V, *hist, len(user_rows), user_rows, id_keep=id_keep)
        rows, cols = targets
        if keep is not None:
            rows, cols = rows[~keep], cols[~keep]
        return u, rows, cols

    def pair_history(self, hist_csr, u, pos, g, p):
        rows, cols, _ = csr_pairs(*hist_csr, u)
        keep = cols != pos[rows]                       # the positive is not its own input
        if p > 0:
            keep = keep & (torch.rand(len(cols), generator=g, device=cols.device) >= p)
        return rows[keep], cols[keep]

    def score_chunk(self, b, V, users):
        L = users.options.max_history
        return max(1, _SCORE_BYTES // (4 * max(L, 1) * max(V.shape[1], 1) * 4))

    def fitted_state(self, users, C, R, order, device):
        # the attention scorer reads histories in interaction order
        return {"user_repr_": None, "history_indptr_": order[0].cpu().numpy(),
                "history_order_": order[1].cpu().numpy()}

    def check_loaded(self, model, n_users, n_items, d):
        from .._loadcheck import check_dense, check_index_array, check_indptr

        where = model._load_where
        ip = getattr(model, "history_indptr_", None)
        order = getattr(model, "history_order_", None)
        if ip is not None or order is not None:
            check_dense(where, "history_order_", order, ndim=1, kind="iu", finite=False)
            check_indptr(where, "history_indptr_", ip, n_users, len(order))
            check_index_array(where, "history_order_", order, n_items)
            model.history_order_ = np.asarray(order, dtype=np.int64)
            model.history_indptr_ = np.asarray(ip, dtype=np.int64)

    def score_users(self, model, user_idx):
        return self._scores(model, model.seen_[user_idx], user_idx, ordered=True)

    def score_history(self, model, history):
        return self._scores(model, history, None, ordered=False)

    def _scores(self, model, H, user_idx, *, ordered: bool) -> np.ndarray:
        V = model._V()
        users = model._users()
        H = sp.csr_matrix(H)
        b = H.shape[0]
        L = users.options.max_history
        chunk = max(1, min(1024, _SCORE_BYTES // (4 * L * V.shape[1])))
        out = np.empty((b, V.shape[0]), dtype=np.float32)
        order = getattr(model, "history_order_", None)
        seen_indptr = getattr(model, "history_indptr_", None)
        for s in range(0, b, chunk):
            e = min(b, s + chunk)
            if ordered and user_idx is not None and order is not None and seen_indptr is not None:
                rows_l, cols_l = [], []
                for r, uu in enumerate(user_idx[s:e]):
                    seq = order[seen_indptr[uu]:seen_indptr[uu + 1]]
                    rows_l.append(np.full(len(seq), r))
                    cols_l.append(seq)
                rows = torch.from_numpy(np.concatenate(rows_l).astype(np.int64))
                cols = torch.from_numpy(np.concatenate(cols_l).astype(np.int64))
                urows = torch.from_numpy(user_idx[s:e])
            else:
                rows, cols = csr_rows(H[s:e])
                urows = torch.full((e - s,), -1, dtype=torch.long)
            user = self.user_repr(users, V, rows, cols, e - s, urows)
            out[s:e] = model.scorer_.score_all(user, V).numpy()
        return out


SCORINGS: dict[str, type[Scoring]] = {c.kind: c for c in (DotScoring, NeuMFScoring,
                                                            AttentionScoring)}


def scoring_for(kind: Any, where: str = "scorer") -> Scoring:
    """The :class:`Scoring` of a scorer kind (``config_["scorer"]``)."""
    cls = SCORINGS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ModelFormatError(f"{where} {kind!r} is not one of {sorted(SCORINGS)}")
    return cls()
