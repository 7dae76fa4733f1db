"""Sequence data of :class:`~maasrec.neural.SequentialRecommender`.

- the users' stored histories (the latest ``max_len`` items, CSR-style) and how new
  interactions are appended to them;
- the next-item training task handed to the :class:`~maasrec.training.Trainer`:
  windows of long sequences, length-bucketed right-padded batches, and the loss (full
  softmax or sampled softmax over the item table).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.interactions import as_interactions
from ..device import resolve_device
from ..training import sampled_softmax_loss, softmax_loss, torch_generator

__all__ = ["NextItemTask", "StoredSequences", "append_histories", "latest_items"]

#: Windows per chunk (in batches) inside which training windows are sorted by length.
_BUCKET_BATCHES = 64


# -- histories ------------------------------------------------------------------------------

def latest_items(items: np.ndarray, indptr: np.ndarray, max_len: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The latest ``max_len`` items of every sequence (oldest first), CSR-style.

    Parameters
    ----------
    items : np.ndarray of int
        Flat sequences.
    indptr : np.ndarray of int
        Sequence ``u`` is ``items[indptr[u]:indptr[u + 1]]``.
    max_len : int

    Returns
    -------
    items, indptr : np.ndarray of int64
    """
    lengths = np.diff(indptr)
    keep = np.minimum(lengths, int(max_len))
    new_indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    offs = np.arange(int(new_indptr[-1])) - np.repeat(new_indptr[:-1], keep)
    src = np.repeat(indptr[1:] - keep, keep) + offs
    return np.ascontiguousarray(items[src], dtype=np.int64), new_indptr


def append_histories(items: np.ndarray, indptr: np.ndarray, new_items: np.ndarray,
                     new_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append new rows (in order) after each user's history.

    Parameters
    ----------
    items, indptr : np.ndarray of int
        The current histories, CSR-style.
    new_items, new_users : np.ndarray of int
        The new interactions' item and user indices, in time order.

    Returns
    -------
    items, indptr : np.ndarray of int64
        The merged histories (not truncated).
    """
    old_n = np.diff(indptr)
    n_users = len(old_n)
    add_n = np.bincount(new_users, minlength=n_users)
    # merge per user: old history then the new rows, via a stable sort on the user
    merged = np.concatenate([items, new_items.astype(np.int64)])
    owner = np.concatenate([np.repeat(np.arange(n_users), old_n), new_users])
    order = np.argsort(owner, kind="stable")
    new_indptr = np.concatenate([[0], np.cumsum(old_n + add_n)]).astype(np.int64)
    return merged[order], new_indptr


# -- training windows and batches -----------------------------------------------------------

def _windows(indptr: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training windows over flat sequences: (start in the flat array, input length).

    A sequence of ``n`` items has ``n - 1`` next-item targets. They are cut, from the
    end, into windows of at most ``max_len`` targets; a window of length ``m`` starting
    at ``s`` reads items ``s .. s+m-1`` and predicts items ``s+1 .. s+m``. Every target
    is trained once per epoch, and the latest window has the longest context.
    """
    lengths = np.diff(indptr)
    n_targets = np.maximum(lengths - 1, 0)
    n_win = -(-n_targets // max_len)  # ceil
    total = int(n_win.sum())
    seq_of = np.repeat(np.arange(len(lengths)), n_win)
    first = np.cumsum(n_win) - n_win
    k = np.arange(total) - np.repeat(first, n_win)  # 0 = the latest window of the sequence
    end = n_targets[seq_of] - k * max_len  # targets of the window end (exclusive) here
    m = np.minimum(end, max_len)
    start = indptr[seq_of] + end - m
    return start.astype(np.int64), m.astype(np.int64)


def _window_batch(flat: torch.Tensor, start: torch.Tensor, length: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded inputs, targets and target mask of a batch of windows.

    Window ``w`` reads ``flat[start[w] : start[w] + length[w]]`` and predicts
    ``flat[start[w] + 1 : start[w] + length[w] + 1]``. Returns ``inputs`` and
    ``targets`` of shape ``[b, max(length)]`` (padding 0) and ``mask`` (True at the
    ``length[w]`` real targets of each row).
    """
    width = int(length.max())
    ar = torch.arange(width + 1, device=flat.device)
    idx = (start[:, None] + ar[None, :]).clamp_(max=max(len(flat) - 1, 0))
    inside = ar[None, :] <= length[:, None]  # the window's items and its last target
    seq = torch.where(inside, flat[idx], torch.zeros((), dtype=flat.dtype, device=flat.device))
    return seq[:, :-1], seq[:, 1:], inside[:, 1:]


def _bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator
                      ) -> list[torch.Tensor]:
    """Shuffled batches of window indices, each of similar lengths (less padding).

    Windows are shuffled, cut into chunks of ``_BUCKET_BATCHES`` batches, sorted by
    length inside each chunk, cut into batches, and the batches shuffled.
    """
    n = len(lengths)
    perm = torch.randperm(n, generator=generator)
    chunk = batch_size * _BUCKET_BATCHES
    key = (torch.arange(n) // chunk) * (int(lengths.max()) + 1) + lengths[perm]
    order = perm[torch.sort(key, stable=True).indices]
    batches = list(torch.split(order, batch_size))
    pick = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in pick]


# -- the training task ----------------------------------------------------------------------

class NextItemTask:
    """Batches and loss of next-item training over flat sequences.

    Every target of every sequence is predicted once per epoch (see :func:`_windows`);
    batches are length-bucketed windows in a seeded order; the loss is the mean
    next-item loss over the real positions of a batch.

    Parameters
    ----------
    net : SASRecNetwork
    items, indptr : np.ndarray of int64
        The training sequences, CSR-style (time order).
    max_len, batch_size : int
    loss : {"ce", "sampled_softmax"}
    n_negatives : int
        Uniform negatives per batch for ``"sampled_softmax"``.
    label_smoothing : float
        For ``"ce"``.
    step_amp : torch.dtype or None
        Autocast dtype of each loss step (``amp="bf16"``), on any device.
    seed : int
        Batch order from ``seed + 1``; negatives from the same generator on the CPU,
        from ``seed + 2`` on ``device`` otherwise.
    device : torch.device

    Attributes
    ----------
    n_windows : int
        Training windows per epoch (0: nothing to train).
    steps_per_epoch : int
    generators : list of torch.Generator
        The task's random generators (checkpointed by the trainer).
    """

    def __init__(self, net, items: np.ndarray, indptr: np.ndarray, *, max_len: int,
                 batch_size: int, loss: str, n_negatives: int, label_smoothing: float,
                 step_amp: torch.dtype | None, seed: int, device: torch.device):
        start_np, len_np = _windows(indptr, int(max_len))
        self.net = net
        self.n_windows = len(start_np)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = -(-self.n_windows // self.batch_size)
        self.loss_kind = loss
        self.n_negatives = int(n_negatives)
        self.label_smoothing = float(label_smoothing)
        self.step_amp = step_amp
        self._flat = torch.from_numpy(items)
        self._starts, self._lengths = torch.from_numpy(start_np), torch.from_numpy(len_np)
        self._order_gen = torch_generator(seed + 1)
        self._negative_gen = (self._order_gen if device.type == "cpu"
                              else torch_generator(seed + 2, device))
        self.generators = list(dict.fromkeys([self._order_gen, self._negative_gen]))

    def batches(self, epoch: int):
        """``(inputs, targets, mask)`` of the epoch's length-bucketed windows."""
        for idx in _bucketed_batches(self._lengths, self.batch_size, self._order_gen):
            yield _window_batch(self._flat, self._starts[idx], self._lengths[idx])

    def step(self, batch) -> torch.Tensor:
        """The loss of one batch, under bf16 autocast when ``step_amp`` is set."""
        if self.step_amp is not None:
            with torch.autocast(batch[0].device.type, dtype=self.step_amp):
                return self.loss(batch)
        return self.loss(batch)

    def loss(self, batch) -> torch.Tensor:
        """Mean next-item loss over the real positions of a batch of windows."""
        net = self.net
        inp, tgt, valid = batch
        table = net.item_table()
        h = net.hidden(inp, table)[valid]
        y = tgt[valid]
        if self.loss_kind == "ce":
            return softmax_loss(h @ table.T, y, label_smoothing=self.label_smoothing)
        neg = torch.randint(table.shape[0], (self.n_negatives,), device=h.device,
                            generator=self._negative_gen)
        pos = (h * table[y]).sum(-1)
        other = h @ table[neg].T
        return sampled_softmax_loss(pos.float(), other.float(),
                                    mask=neg[None, :] != y[:, None])


class StoredSequences:
    """The stored histories of the order-aware models (SequentialRecommender, BERT4Rec).

    A mixin placed before :class:`~maasrec.base.Recommender`: the model keeps each user's
    latest ``max_len - _history_trim`` items, oldest first, in ``history_items_`` /
    ``history_indptr_``, scores known users from them, scores ordered ``history=``
    sequences, extends them with new events (:meth:`extend_history`) and explains by
    leave-one-out over the positions it reads. The class provides ``network_``,
    ``max_len``, ``device`` and ``_scores_from(list of index arrays)``.
    """

    ordered_history = True
    #: items of ``max_len`` the history does not use (1 for BERT4Rec's appended [MASK])
    _history_trim = 0

    def _history_keep(self) -> int:
        return int(self.max_len) - int(self._history_trim)

    def _set_histories(self, items: np.ndarray, indptr: np.ndarray) -> None:
        """Keep the latest :meth:`_history_keep` items of every user (oldest first)."""
        self.history_items_, self.history_indptr_ = latest_items(
            np.asarray(items, dtype=np.int64), np.asarray(indptr, dtype=np.int64),
            self._history_keep())

    def extend_history(self, X):
        """Append new interactions of known users to the histories the model reads.

        Nothing is retrained: recommendations for these users now start from their
        latest items, and the new items count as seen (``exclude_seen``). This is how
        the validation item enters the history before testing (leave-last-out), and how
        a deployed model follows users between refits (:meth:`partial_fit` also
        fine-tunes where the model supports it).

        Parameters
        ----------
        X : Interactions, pandas.DataFrame or scipy.sparse matrix
            Interactions of users and items the model knows, in time order (by
            timestamp, then input order); appended after each user's current history.

        Returns
        -------
        self

        Raises
        ------
        UnknownIdError
            A user or item the model does not know.
        """
        self._check_fitted()
        X = as_interactions(X).with_vocab(self.user_vocab_, self.item_vocab_, unknown="raise")
        if X.nnz == 0:
            return self
        self._set_histories(*append_histories(self.history_items_, self.history_indptr_,
                                              X.item_indices, X.user_indices))
        self.seen_ = (self.seen_ + X.to_csr()).tocsr()
        self._pop_cache = None
        return self

    def _device(self) -> torch.device:
        return network_device(self)

    def _user_histories(self, user_idx: np.ndarray) -> list[np.ndarray]:
        ip, it = self.history_indptr_, self.history_items_
        return [it[ip[u]:ip[u + 1]] for u in np.asarray(user_idx, dtype=np.int64)]

    def _score_users(self, user_idx: np.ndarray):
        """Scores from each known user's latest items (popularity if none)."""
        return self._scores_from(self._user_histories(user_idx))

    def _score_sequences(self, sequences: list[np.ndarray]):
        """Scores from ordered histories (oldest first); see ``ordered_history``."""
        return self._scores_from(list(sequences))

    def _score_history(self, history):
        raise NotImplementedError(
            f"{type(self).__name__} needs the order of a history, which a sparse matrix "
            "does not keep: use recommend(history=[item ids, oldest first]) or "
            "_score_sequences")

    def _explain_sequence(self, seq: np.ndarray, item_idx: int, user_idx):
        # leave-one-out over the positions the model reads (maasrec/neural/_explain.py)
        from ._explain import sequence_terms

        return sequence_terms(self, seq, item_idx, self._history_keep())


def network_device(model) -> torch.device:
    """The device ``model.device`` resolves to (cached), with ``model.network_`` moved there."""
    dev = getattr(model, "_device_obj", None)
    if dev is None:
        dev = model._device_obj = resolve_device(model.device)
    if next(model.network_.parameters()).device != dev:
        model.network_.to(dev)
    return dev
