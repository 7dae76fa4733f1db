"""Fine-tuning data of an :class:`~maasrec.lm_ranker.LMRanker`, handed to the Trainer.

- training groups: for every user, the last ``positives_per_user`` items of the
  training sequence, each with the items before it as history;
- every epoch, each positive's negatives (uniform random and the first stage's hard
  candidates) and a length-bucketed order of the groups, from the model's seeded
  generator;
- the loss over each group (BCE over pairs, or a softmax over the group);
- :func:`fine_tune`: the :class:`~maasrec.training.Trainer` run (AdamW with the no-decay
  groups, linear warm-up/decay, accumulation, AMP, clipping, the NaN check,
  checkpoints) and the training log.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import DataError
from ..training import (
    Trainer,
    TrainerConfig,
    TrainingHistory,
    TrainingTask,
    checkpoint_fingerprint,
)
from .text import PairBuilder, UserPart

__all__ = ["LEARNING_RATES", "PairTask", "fine_tune", "group_loss", "sample_negatives",
           "training_groups"]

logger = logging.getLogger(__name__)

#: Default learning rates: full fine-tuning, LoRA.
LEARNING_RATES = {"full": 5e-5, "lora": 5e-4}
_BUCKET_BATCHES = 32


def training_groups(seqs: list[np.ndarray], builder: PairBuilder, profiles, *,
                    positives_per_user: int, max_positives: int | None, history_len: int,
                    rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, list[UserPart]]:
    """The training positives: (users, positive items, user parts with their history).

    The last ``positives_per_user`` items of each sequence are positives, each with the
    ``history_len`` items before it; ``max_positives`` keeps a seeded random subset.
    """
    users, targets = [], []
    for u, s in enumerate(seqs):
        for t in range(len(s) - 1, max(0, len(s) - 1 - int(positives_per_user)), -1):
            users.append(u)
            targets.append(t)
    users = np.asarray(users, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if max_positives is not None and len(users) > max_positives:
        keep = np.sort(rng.choice(len(users), size=int(max_positives), replace=False))
        users, targets = users[keep], targets[keep]
    h = int(history_len)
    parts = []
    for u, t in zip(users, targets):
        s = seqs[u]
        parts.append(builder.user_part(s[max(0, t - h):t] if h else s[:0],
                                       "" if profiles is None else profiles[u]))
    positives = np.array([seqs[u][t] for u, t in zip(users, targets)], dtype=np.int64)
    return users, positives, parts


def sample_negatives(users: np.ndarray, positives: np.ndarray, pools: np.ndarray, seen,
                     n_items: int, m: int, n_rand: int, rng: np.random.Generator
                     ) -> np.ndarray:
    """Groups ``[positive, m negatives]`` per positive (-1 where too few are left).

    ``m - n_rand`` hard negatives are drawn from the user's candidate pool (row of
    ``pools``), the rest uniformly from the items the user never interacted with.
    """
    out = np.full((len(users), 1 + m), -1, dtype=np.int64)
    out[:, 0] = positives
    for g, u in enumerate(users):
        row_seen = seen.indices[seen.indptr[u]:seen.indptr[u + 1]]
        pool = pools[u][pools[u] >= 0]
        n_hard = min(m - n_rand, len(pool))
        chosen = list(rng.choice(pool, size=n_hard, replace=False)) if n_hard else []
        forbid = set(row_seen.tolist()) | set(chosen) | {int(positives[g])}
        want = m - n_hard
        free = n_items - len(forbid)
        tries = 0
        while want > 0 and free > 0 and tries < 20 * m:
            cand = int(rng.integers(n_items))
            tries += 1
            if cand not in forbid:
                chosen.append(cand)
                forbid.add(cand)
                want -= 1
                free -= 1
        out[g, 1:1 + len(chosen)] = chosen
    return out


def group_loss(kind: str, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Loss of groups ``[n, 1 + m]`` (column 0 the positive; invalid slots ``-inf``)."""
    if kind == "listwise":
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits[valid], labels[valid])


def _bucketed(lengths: np.ndarray, per_batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: sort within random chunks, shuffle batch order."""
    order = rng.permutation(len(lengths))
    chunk = per_batch * _BUCKET_BATCHES
    batches = []
    for s in range(0, len(order), chunk):
        block = order[s:s + chunk]
        block = block[np.argsort(-lengths[block], kind="stable")]
        batches.extend(block[i:i + per_batch] for i in range(0, len(block), per_batch))
    return [batches[i] for i in rng.permutation(len(batches))]


class PairTask:
    """Batches and loss of LMRanker fine-tuning, with the state a checkpoint needs.

    Every epoch draws the groups' negatives and their bucketed order from ``rng`` (a
    NumPy generator shared with the rest of the fit). For an exact resume the
    generator's state at the start of the last epoch begun and after its draws are
    checkpointed (:meth:`state_dict`): a resume inside that epoch redraws it from the
    first, a resume after it continues from the second.

    Parameters
    ----------
    model : LMRanker
        Its pair builder, scorer (collation) and parameters.
    users, positives : np.ndarray of int64
    parts : list of UserPart
    pools : np.ndarray of int64
        Each user's hard-negative candidates (-1 padded).
    per_step : int
        Groups per micro-batch.
    rng : np.random.Generator
    """

    def __init__(self, model, users: np.ndarray, positives: np.ndarray,
                 parts: list[UserPart], pools: np.ndarray, per_step: int,
                 rng: np.random.Generator):
        self.model = model
        self.users, self.positives, self.parts, self.pools = users, positives, parts, pools
        self.per_step = per_step
        self.rng = rng
        self.lengths = np.array([len(p) for p in parts], dtype=np.int64)
        self.step_losses: list[torch.Tensor] = []
        self.earlier_losses: list[float] = []  # of the fit a checkpoint resumed
        self.pairs = 0
        self._epoch = -1
        self._epoch_start: dict | None = None
        self._loaded: dict | None = None

    def batches(self, epoch: int):
        """The epoch's micro-batches of whole groups (token inputs and group slots)."""
        m = self.model
        if self._loaded is not None:  # resume: this epoch again, or the one after
            key = "start" if self._loaded["epoch"] == epoch else "now"
            self.rng.bit_generator.state = json.loads(self._loaded[key])
            self._loaded = None
        self._epoch, self._epoch_start = epoch, self.rng.bit_generator.state
        groups = sample_negatives(self.users, self.positives, self.pools, m.seen_, m.n_items_,
                                  int(m.negatives_per_positive), int(m.random_negatives),
                                  self.rng)
        device = m._pairs.device
        for sel in _bucketed(self.lengths, self.per_step, self.rng):
            items = groups[sel]
            valid = items >= 0
            rows, cols = np.nonzero(valid)
            pair_seqs = [m._builder.pair(self.parts[sel[r]], int(items[r, c]))
                         for r, c in zip(rows, cols)]
            yield {"inputs": m._pairs.collate(pair_seqs),
                   "rows": torch.from_numpy(rows).to(device),
                   "cols": torch.from_numpy(cols).to(device),
                   "valid": torch.from_numpy(valid).to(device)}

    def loss(self, batch: dict) -> torch.Tensor:
        """The group loss of a micro-batch (every pair's logit in its group slot)."""
        logits = self.model._lm(**batch["inputs"])
        full = torch.full(tuple(batch["valid"].shape), float("-inf"), device=logits.device)
        full[batch["rows"], batch["cols"]] = logits
        value = group_loss(self.model.loss, full, batch["valid"])
        self.step_losses.append(value.detach())
        self.pairs += int(batch["rows"].shape[0])
        return value

    def step_loss(self) -> list[float]:
        """The loss of every micro-batch so far."""
        now = ([float(x) for x in torch.stack(self.step_losses).float().cpu()]
               if self.step_losses else [])
        return self.earlier_losses + now

    def state_dict(self) -> dict[str, Any]:
        """The generator around the last epoch begun, the step losses and pair count."""
        now = self.rng.bit_generator.state
        return {"epoch": self._epoch,
                "start": json.dumps(self._epoch_start if self._epoch >= 0 else now),
                "now": json.dumps(now), "pairs": self.pairs,
                "step_loss": self.step_loss()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the generator is set by :meth:`batches`)."""
        try:
            self._loaded = {"epoch": int(state["epoch"]), "start": str(state["start"]),
                            "now": str(state["now"])}
            self.pairs = int(state["pairs"])
            self.earlier_losses = [float(x) for x in state["step_loss"]]
            self.step_losses = []
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"the checkpoint's LMRanker state is incomplete ({exc!r})") from None


def fine_tune(model, data, seqs: list[np.ndarray], rng: np.random.Generator,
              device: torch.device, lora: bool, seed: int, checkpoint_dir=None
              ) -> dict[str, Any]:
    """Fine-tune ``model._lm`` through the one :class:`~maasrec.training.Trainer`.

    The model contributes its module, the :class:`PairTask` batches (the epoch's
    negatives and length-bucketed order, drawn from ``rng``) and the loss; the Trainer
    owns AdamW with the no-decay groups, the linear warm-up/decay schedule,
    accumulation, AMP, clipping, the NaN check and the checkpoints in
    ``checkpoint_dir``.

    Returns
    -------
    dict
        The training log (see ``LMRanker.training_log_``).
    """
    log: dict[str, Any] = {**TrainingHistory().to_dict(), "epoch_loss": [], "epoch_seconds": [],
                           "step_loss": [], "pairs_per_second": None, "n_positives": 0,
                           "pairs_per_epoch": 0}
    users, positives, parts = training_groups(
        seqs, model._builder, model.user_profile_,
        positives_per_user=int(model.positives_per_user), max_positives=model.max_positives,
        history_len=int(model.history_len), rng=rng)
    log["n_positives"] = len(users)
    epochs = int(model.epochs)
    if epochs == 0 or len(users) == 0:
        if len(users) == 0 and epochs:
            logger.warning("LMRanker: no user has two training items; the language model "
                           "is not fine-tuned")
        return log
    uniq = np.unique(users)
    pools = np.full((model.n_users_, min(int(model.n_candidates), model.n_items_)), -1,
                    dtype=np.int64)
    for start in range(0, len(uniq), 1024):
        block = uniq[start:start + 1024]
        pools[block], _ = model._candidates(block, exclude=model.seen_[block])
    per_step = max(1, int(model.batch_size) // (1 + int(model.negatives_per_positive)))
    n_micro = math.ceil(len(users) / per_step)
    accum = int(model.grad_accum_steps)
    lr = float(model.learning_rate) if model.learning_rate is not None else (
        LEARNING_RATES["lora" if lora else "full"])
    # warm-up in whole optimiser steps, rounded down as LMRanker always did
    warm = int(float(model.warmup) * max(1, epochs * math.ceil(n_micro / accum)))
    pairs = PairTask(model, users, positives, parts, pools, per_step, rng)
    clip = model.clip_grad_norm
    config = TrainerConfig(
        epochs=epochs, optimizer="adamw", learning_rate=lr,
        weight_decay=float(model.weight_decay), param_groups="no_decay",
        lr_schedule="linear", warmup=float(warm), grad_accumulation=accum,
        clip_grad_norm=None if clip is None else float(clip), amp=True, random_state=seed,
        verbose=bool(model.verbose), name="LMRanker", checkpoint_dir=checkpoint_dir)
    task = TrainingTask(model._lm, pairs.batches, pairs.loss, steps_per_epoch=n_micro,
                        state_dict=pairs.state_dict, load_state_dict=pairs.load_state_dict,
                        fingerprint=checkpoint_fingerprint(model, data))
    trainer = Trainer(task, config, device=device)
    # dropout continues the stream seeded before the network was built, as before
    # the port: the same random_state gives the same weights, bit for bit
    trainer.continue_global_rng()
    hist = trainer.fit()
    train_seconds = float(np.sum(hist.seconds))
    log["epoch_loss"] = [float(x) for x in hist.losses]
    log["epoch_seconds"] = [float(x) for x in hist.seconds]
    log["pairs_per_epoch"] = int(pairs.pairs // epochs)
    log["pairs_per_second"] = float(pairs.pairs / max(train_seconds, 1e-9))
    log["step_loss"] = pairs.step_loss()
    log["optimizer_steps"] = int(hist.steps)
    log["learning_rate"] = lr
    log.update(hist.to_dict())
    return log
