"""HybridRecommender's training: batches and losses handed to the one Trainer.

:class:`HybridTraining` holds everything one fit needs and nothing outlives it: the
training matrix as tensors, the towers with the fit-time item inputs, the negative
sampler and the generator of the batch order, negatives and dropout masks. Its
:meth:`~HybridTraining.task` is the :class:`~maasrec.training.TrainingTask` that
:class:`~maasrec.training.Trainer` runs; :meth:`~HybridTraining.fitted_state` then
computes the vectors a fitted model keeps. Three batch plans:

- ``loss="softmax"``: batches of users, the full softmax over the catalogue of each
  user's items given the (partly hidden) rest of their history;
- pairwise losses with a pooled user history: batches of whole users, every
  interaction of a batch scored against negatives with the user's history pooled once
  and the positive removed from its own input;
- pairwise losses otherwise (id-only users, the attention scorer): batches of
  interactions.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..exceptions import DataError
from ..training import (
    Trainer,
    TrainerConfig,
    TrainingHistory,
    TrainingTask,
    bce_loss,
    bpr_loss,
    make_sampler,
    mse_loss,
    ranking_validator,
    sampled_softmax_loss,
    softmax_loss,
    threads_for,
    torch_generator,
)
from ..training._fused_softmax import fused_applies, fused_softmax_loss
from ..training.distributed import balanced_order, world_size
from ._hybrid_config import TrainSettings
from ._hybrid_scorers import Scoring
from ._hybrid_towers import ItemEncoder, Tower, UserEncoder, csr_pairs

logger = logging.getLogger("maasrec.neural.hybrid")


class HybridTraining:
    """The state of one HybridRecommender fit (see the module docstring).

    Parameters
    ----------
    item_tower : Tower
    history_tower : Tower or None
        The history item tower (untied histories), else None (the item vectors are pooled).
    users : UserEncoder
    scorer : torch.nn.Module
    scoring : Scoring
    R : scipy.sparse.csr_matrix
        The training interactions (float32 values, sorted indices).
    order : (indptr, items) tensors or None
        The histories in interaction order (attention scorer).
    settings : TrainSettings
    device : torch.device
    modalities : dict
        The item and user modalities (for the log).
    has_id : numpy.ndarray of bool
        Items whose id embedding is used.
    text : (vectors, mask) numpy arrays, optional
        The frozen text vectors of the items.
    """

    def __init__(self, item_tower: Tower, history_tower: Tower | None, users: UserEncoder,
                 scorer: torch.nn.Module, scoring: Scoring, R: sp.csr_matrix,
                 order: tuple[torch.Tensor, torch.Tensor] | None, settings: TrainSettings,
                 device: torch.device, *, modalities: dict, has_id: np.ndarray,
                 text: tuple[np.ndarray, np.ndarray] | None = None):
        has_id_t = torch.from_numpy(has_id).to(device)
        text_t = mask_t = None
        if text is not None:
            text_t, mask_t = (torch.from_numpy(a).to(device) for a in text)
        self.items = ItemEncoder(item_tower, has_id_t, text_t, mask_t, settings.id_dropout)
        self.history = None if history_tower is None else ItemEncoder(
            history_tower, has_id_t, text_t, mask_t, settings.id_dropout)
        self.users, self.modalities = users, modalities
        self.scorer, self.scoring, self.settings = scorer, scoring, settings
        self.R, self.order, self.device = R, order, device
        self.indptr = torch.from_numpy(R.indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(R.indices.astype(np.int64)).to(device)
        self.values: torch.Tensor | None = None
        self.sampler = self.member = None
        self.privacy = None  # the DP-SGD engine of a dp=... fit

    # -- vectors ------------------------------------------------------------------------
    def contexts(self, V: torch.Tensor, rows: torch.Tensor | None = None, *,
                 drop: torch.Generator | None = None) -> torch.Tensor:
        """The vectors pooled into user histories: ``V`` itself (tied), or the history
        tower's vectors of the same items (untied)."""
        return V if self.history is None else self.history(rows, drop=drop)

    def hist_csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indptr, indices) of the training histories (in interaction order if read so)."""
        return self.order if self.order is not None else (self.indptr, self.indices)

    # -- the task -----------------------------------------------------------------------
    def fit(self, modules: torch.nn.Module, *, seed: int, data, validation, callbacks,
            fingerprint: dict, checkpoint_dir=None) -> TrainingHistory:
        """Train ``modules`` with :class:`~maasrec.training.Trainer` (early stopping on
        ``validation`` when given); the training history."""
        s = self.settings
        task, work = self.task(modules, seed, data, validation, fingerprint)
        validate = task.validate
        config = TrainerConfig(
            epochs=s.epochs, optimizer=s.optimizer, learning_rate=s.learning_rate,
            weight_decay=s.weight_decay, clip_grad_norm=s.clip_grad_norm,
            lr_schedule=s.lr_schedule, warmup=s.warmup, eval_every=s.eval_every,
            patience=s.patience if validate is not None else None, random_state=seed,
            verbose=s.verbose, name="HybridRecommender", checkpoint_dir=checkpoint_dir)
        with threads_for(work, self.device):
            return Trainer(task, config, callbacks=callbacks, device=self.device).fit()

    def task(self, modules: torch.nn.Module, seed: int, data, validation, fingerprint: dict
             ) -> tuple[TrainingTask, int]:
        """The :class:`TrainingTask` of this fit and the work per step (for the threads)."""
        s = self.settings
        g = torch_generator(seed, device=self.device)
        user_counts = self.indptr[1:] - self.indptr[:-1]
        active = torch.nonzero(user_counts > 0).squeeze(1)
        if len(active) == 0:
            raise DataError("no user has an interaction to train on")
        self.values = torch.from_numpy(self.R.data.astype(np.float32)).to(self.device)
        if s.loss not in ("softmax", "mse"):
            self.sampler = make_sampler(s.negative_sampler, self.R, device=self.device)
            if s.negative_sampler == "in_batch":
                self.member = make_sampler("uniform", self.R, device=self.device)
        if s.loss == "softmax":
            batches, n_batches, step, work = self._user_plan(g, active)
        elif self.users.pools_history():
            batches, n_batches, step, work = self._grouped_plan(g, active, user_counts)
        else:
            batches, n_batches, step, work = self._interaction_plan(g, user_counts)
        validate = None
        if validation is not None and validation.nnz:
            validate = self.validator(data, validation)
        n_users, n_items = self.R.shape
        logger.info("HybridRecommender: %d users x %d items, %d interactions; items %s, users "
                    "%s, scorer %s, loss %s, %d steps/epoch", n_users, n_items, self.R.nnz,
                    self.modalities["item"], self.modalities["user"], self.scoring.kind, s.loss, n_batches)
        task = TrainingTask(modules, batches, step, validate=validate,
                            steps_per_epoch=n_batches, generators=[g], fingerprint=fingerprint)
        if s.dp is not None:  # DP-SGD: Poisson-sampled users, one clipped gradient each
            from ..privacy.dp import hybrid_private_task

            name = str(fingerprint.get("model", "HybridRecommender")).rpartition(".")[2]
            task, self.privacy = hybrid_private_task(
                self, task, active, seed, name=name,
                by_interaction=s.loss != "softmax" and not self.users.pools_history())
        return task, work

    def _user_plan(self, g, active):
        """Full softmax: batches of users."""
        bs = (self.settings.batch_size if self.settings.batch_size is not None
              else int(min(64, max(8, len(active) // 10))))

        def batches(epoch: int):
            users = active[torch.randperm(len(active), generator=g, device=self.device)]
            return [self._for_ranks(users[s:s + bs]) for s in range(0, len(users), bs)]

        return (batches, math.ceil(len(active) / bs), lambda users: self.softmax_step(users, g),
                bs * self.R.shape[1])

    def _grouped_plan(self, g, active, user_counts):
        """Pairwise losses with a pooled history: about ``batch_size`` interactions of
        whole users per step."""
        bs = (self.settings.batch_size if self.settings.batch_size is not None
              else int(min(4096, max(32, self.R.nnz // 100))))
        counts_active = user_counts[active]

        def batches(epoch: int):
            order = torch.randperm(len(active), generator=g, device=self.device)
            c = counts_active[order]
            group = (torch.cumsum(c, 0) - c) // bs
            sizes = torch.unique_consecutive(group, return_counts=True)[1].tolist()
            return [self._for_ranks(b) for b in torch.split(active[order], sizes)]

        return (batches, len(batches(0)), lambda users: self.grouped_pair_step(users, g),
                bs * self.settings.dim * 8)

    def _for_ranks(self, users: torch.Tensor) -> torch.Tensor:
        """A batch of users as it is; under DDP in an order whose strided shards hold
        about as many interactions each (the ranks wait less for each other)."""
        W = world_size()
        if W <= 1:
            return users
        return users[balanced_order(self.indptr[users + 1] - self.indptr[users], W)]

    def _interaction_plan(self, g, user_counts):
        """Pairwise losses on batches of interactions (id-only users, attention)."""
        nnz = self.R.nnz
        bs = (self.settings.batch_size if self.settings.batch_size is not None
              else int(min(4096, max(32, nnz // 100))))
        inter_users = torch.repeat_interleave(
            torch.arange(self.R.shape[0], device=self.device), user_counts)

        def batches(epoch: int):
            order = torch.randperm(nnz, generator=g, device=self.device)
            return [order[s:s + bs] for s in range(0, nnz, bs)]

        return (batches, math.ceil(nnz / bs),
                lambda idx: self.pair_step(idx, inter_users, g), bs * self.settings.dim * 8)

    # -- losses -------------------------------------------------------------------------
    def softmax_step(self, users: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The multinomial likelihood of the batch users' items (history dropout)."""
        V = self.items(drop=g)
        C = self.contexts(V, drop=g)
        rows, cols, _ = csr_pairs(*self.hist_csr(), users)
        b = len(users)
        counts = torch.bincount(rows, minlength=b).to(V.dtype)
        p = self.settings.history_dropout
        weights = keep = None
        hr, hc = rows, cols
        if p > 0:
            keep = torch.rand(len(cols), generator=g, device=cols.device) >= p
            hr, hc = rows[keep], cols[keep]
            weights = torch.full((len(hc),), 1.0 / (1.0 - p), device=V.device)
        id_keep = self.users.id_keep(b, g, users.device, self.settings.id_dropout)
        u, rows, cols = self.scoring.softmax_user(self.users, V, C, (hr, hc), (rows, cols),
                                                  keep, users, weights=weights,
                                                  counts=counts, id_keep=id_keep)
        if fused_applies(self.scorer, u, V):  # the same loss, a cache-sized block at a time
            ib = self.scorer._item_b(None, V.shape[0], V.device)
            return fused_softmax_loss(u, V, ib, rows, cols, temperature=self.scorer.temperature)
        scores = self.scorer.score_all(u, V)
        return softmax_loss(scores, cols, rows=rows)

    def _negatives(self, u: torch.Tensor, g: torch.Generator):
        """Negatives of the rows' users: (items [P, k], log q [P, k] or None)."""
        s = self.settings
        if s.loss == "mse" or s.negative_sampler == "in_batch":
            return None, None
        return self.sampler.draw(u, s.n_negatives, g)

    def pair_loss(self, user, u, pos, pos_v, neg, neg_v, log_q_neg, values) -> torch.Tensor:
        """The pairwise loss of positives ``pos`` (vectors ``pos_v``) of users ``u``."""
        sc, loss = self.scorer, self.settings.loss
        s_pos = sc.score_pairs(user, pos_v, user_idx=u, item_idx=pos)
        if loss == "mse":
            return mse_loss(s_pos, values)
        mask = None
        log_q_pos = None
        if self.settings.negative_sampler == "in_batch":
            # every row against the batch's positives (one score matrix), minus the
            # row's own positives (its item, and the other items of its user)
            s_neg = sc.score_all(user, pos_v, user_idx=u, item_idx=pos)
            n = len(pos)
            mask = ~self.member.is_positive(u.repeat_interleave(n), pos.repeat(n)).view(n, n)
            log_q = self.sampler.log_q(pos)
            log_q_pos, log_q_neg = log_q, log_q.unsqueeze(0).expand(len(pos), -1)
        else:
            s_neg = sc.score_pairs(user, neg_v, user_idx=u, item_idx=neg)
            if log_q_neg is not None:
                log_q_pos = self.sampler.log_q(pos)
        if loss == "bpr":
            return bpr_loss(s_pos, s_neg, mask)
        if loss == "bce":
            return bce_loss(s_pos, s_neg, mask)
        return sampled_softmax_loss(s_pos, s_neg, log_q_pos=log_q_pos, log_q_neg=log_q_neg,
                                    mask=mask)

    def grouped_pair_step(self, users: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Pairwise losses on every interaction of a batch of users; each user's history
        is pooled once, and each positive is removed from its own input."""
        rows, cols, flat = csr_pairs(self.indptr, self.indices, users)
        b, P = len(users), len(cols)
        u = users[rows]
        neg, log_q_neg = self._negatives(u, g)
        parts = [cols] + ([neg.reshape(-1)] if neg is not None else [])
        needed, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        Vn = self.items(needed, drop=g)
        Cn = self.contexts(Vn, needed, drop=g)
        local = inverse[:P]
        pos_v = Vn[local]
        neg_v = None if neg is None else Vn[inverse[P:]].view(P, -1, Vn.shape[1])
        p = self.settings.history_dropout
        w = torch.ones(P, device=Vn.device)
        if p > 0:
            w = (torch.rand(P, generator=g, device=Vn.device) >= p).to(Vn.dtype) / (1.0 - p)
        n_u = torch.bincount(rows, minlength=b)
        offsets = torch.cumsum(n_u, 0) - n_u
        S = torch.nn.functional.embedding_bag(local, Cn, offsets, mode="sum",
                                              per_sample_weights=w)
        S = S[rows] - w.unsqueeze(1) * Cn[local]           # the positive is not its own input
        cnt = (n_u[rows] - 1).to(Vn.dtype)
        pooled = self.users.normalise(S, cnt)
        id_keep = self.users.id_keep(P, g, u.device, self.settings.id_dropout)
        user = self.users.static(pooled, cnt > 0, u, id_keep)
        values = self.values[flat] if self.settings.loss == "mse" else None
        return self.pair_loss(user, u, cols, pos_v, neg, neg_v, log_q_neg, values)

    def pair_step(self, idx, inter_users, g) -> torch.Tensor:
        """Pairwise losses on a batch of interactions (id-only users, attention scorer)."""
        u = inter_users[idx]
        pos = self.indices[idx]
        b = len(idx)
        neg, log_q_neg = self._negatives(u, g)
        parts = [pos] + ([neg.reshape(-1)] if neg is not None else [])
        hist = self.scoring.pair_history(self.hist_csr(), u, pos, g,
                                         self.settings.history_dropout)
        if hist is not None:
            parts.append(hist[1])
        needed, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        Vn = self.items(needed, drop=g)
        pos_v = Vn[inverse[:b]]
        off = b
        neg_v = None
        if neg is not None:
            k = neg.numel()
            neg_v = Vn[inverse[off:off + k]].view(b, -1, Vn.shape[1])
            off += k
        id_keep = self.users.id_keep(b, g, u.device, self.settings.id_dropout)
        rows, cols = (hist[0], inverse[off:]) if hist is not None else (pos[:0], pos[:0])
        user = self.scoring.user_repr(self.users, Vn, rows, cols, b, u, id_keep=id_keep)
        values = self.values[idx] if self.settings.loss == "mse" else None
        return self.pair_loss(user, u, pos, pos_v, neg, neg_v, log_q_neg, values)

    # -- validation and fitted vectors -------------------------------------------------
    def validator(self, data, validation):
        """NDCG@10 of ``validation`` with full ranking (the item vectors computed once)."""
        cache: dict[str, Any] = {}
        R = self.R

        def score(user_idx: np.ndarray):
            if "V" not in cache:
                cache["V"] = self.items()
                cache["C"] = self.contexts(cache["V"])
            return self.scores_for(cache["V"], R[user_idx], torch.from_numpy(
                np.asarray(user_idx, dtype=np.int64)).to(self.device), C=cache["C"])

        inner = ranking_validator(score, data.user_vocab, data.item_vocab, data, validation,
                                  k=10, max_users=20000, random_state=0)

        def validate() -> float:
            cache.clear()
            try:
                return inner()
            finally:
                cache.clear()

        validate.name = inner.name  # type: ignore[attr-defined]
        return validate

    def scores_for(self, V: torch.Tensor, H: sp.csr_matrix, user_rows: torch.Tensor, *,
                   C: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[b, n_items]`` of known users given by history rows ``H`` (CSR) and
        ids (``C``: the history vectors pooled for the users, default ``V``)."""
        device = V.device
        C = V if C is None else C
        H = sp.csr_matrix(H)
        b = H.shape[0]
        chunk = self.scoring.score_chunk(b, V, self.users)
        outs = []
        for s in range(0, b, max(chunk, 1)):
            sub = H[s:s + chunk]
            if self.order is not None:
                # known users during training: their items in interaction order
                rows, cols, _ = csr_pairs(*self.order, user_rows[s:s + chunk])
            else:
                indptr = torch.from_numpy(sub.indptr.astype(np.int64)).to(device)
                indices = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
                rows, cols, _ = csr_pairs(indptr, indices, torch.arange(sub.shape[0],
                                                                     device=device))
            user = self.scoring.user_repr(self.users, C, rows, cols, sub.shape[0],
                                          user_rows[s:s + chunk])
            outs.append(self.scorer.score_all(user, V))
        return torch.cat(outs, dim=0) if outs else V.new_zeros(0, V.shape[0])

    def fitted_state(self) -> dict[str, Any]:
        """Item (and history) vectors and the known users' state, in eval mode."""
        with threads_for(self.R.nnz * self.settings.dim, self.device), torch.no_grad():
            V = self.items()
            out: dict[str, Any] = {"item_repr_": V.float().cpu().numpy()}
            C = self.contexts(V)
            if C is not V:
                out["history_repr_"] = C.float().cpu().numpy()
            out.update(self.scoring.fitted_state(self.users, C, self.R, self.order,
                                                 self.device))
        return out
