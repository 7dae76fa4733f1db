"""Knowledge distillation: a small ``SequentialRecommender`` learns a large model's rankings.

:func:`distill` fits a student :class:`~maasrec.neural.SequentialRecommender` (its own
parameters: width, blocks, epochs, learning rate...) on the training interactions with a
loss that mixes the ground truth and the teacher's scores:

``loss = (1 - alpha) * next-item cross-entropy + alpha * T^2 * KL(teacher || student)``

with both softmaxes at temperature ``T``. Two kinds of teacher:

- ``mode="positions"`` (a fitted ``SequentialRecommender`` teacher, e.g. a wider one):
  at every position of every training window the teacher's scores over the whole
  catalogue are the soft target of the student's scores at that position.
- ``mode="lists"`` (any fitted recommender, e.g. an ``LMRanker`` two-stage whose
  cross-encoder re-ranks a first stage): the teacher ranks its top ``n_candidates``
  unseen items for every training user once, from the user's whole training history;
  each step the student scores those candidates from the same history (the state after
  the user's latest item) and matches the teacher's softmax over the list, beside the
  next-item loss of the step's windows. The student then ranks the whole catalogue
  with one transformer pass and a dot product: no cross-encoder at serving time.

Training runs the student's next-item task with this loss through the
:class:`~maasrec.training.Trainer` (early stopping on ``validation``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_int, check_number
from ..base import Recommender, clone
from ..device import resolve_device
from ..exceptions import DataError
from ..neural._sequences import NextItemTask, latest_items
from ..training import seeded, softmax_loss, torch_generator
from ._seqtrain import check_fitted, prepare_data, train_network

__all__ = ["DISTILL_MODES", "candidate_lists", "distill"]

#: Accepted values of ``mode``.
DISTILL_MODES = ("auto", "positions", "lists")
#: Users per call when the teacher ranks its lists.
_LIST_CHUNK = 256


def kl_to_teacher(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    ``mask`` (bool, same shape) marks the real entries of padded lists.
    """
    t = float(temperature)
    s, q = student.float() / t, teacher.float() / t
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
        q = q.masked_fill(~mask, float("-inf"))
    p = torch.softmax(q, dim=-1)
    log_ratio = torch.log_softmax(q, dim=-1) - torch.log_softmax(s, dim=-1)
    kl = torch.where(p > 0, p * log_ratio, torch.zeros((), device=p.device)).sum(-1)
    return kl.mean() * (t * t)


class DistillTask(NextItemTask):
    """The next-item task of a student with the distillation term added to its loss.

    Parameters
    ----------
    net : SASRecNetwork
        The student's network.
    items, indptr, max_len, batch_size, seed, device
        As :class:`~maasrec.neural._sequences.NextItemTask` (full-softmax next-item loss).
    alpha, temperature : float
        Weight of the distillation term and softmax temperature.
    teacher : SequentialRecommender, optional
        ``mode="positions"``: scores the same windows.
    lists : tuple of (users' sequences [u, L], lengths [u], candidates [u, c], scores [u, c]),
        optional. ``mode="lists"``: the teacher's candidate lists of ``u`` users and the
        right-padded latest ``L`` items each list was made from.
    """

    def __init__(self, net, items: np.ndarray, indptr: np.ndarray, *, max_len: int,
                 batch_size: int, seed: int, device: torch.device, alpha: float,
                 temperature: float, teacher=None, lists=None):
        super().__init__(net, items, indptr, max_len=max_len, batch_size=batch_size,
                         loss="ce", n_negatives=1, label_smoothing=0.0, step_amp=None,
                         seed=seed, device=device)
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.teacher = teacher
        self._lists = None
        if lists is not None:
            seqs, lengths, cands, scores = lists
            self._lists = (torch.from_numpy(seqs), torch.from_numpy(lengths),
                           torch.from_numpy(cands), torch.from_numpy(scores))
            self._user_gen = torch_generator(seed + 3)
            self.generators.append(self._user_gen)

    def batches(self, epoch: int):
        """The windows of :class:`NextItemTask`, each batch with a share of the listed users."""
        windows = super().batches(epoch)
        if self._lists is None:
            yield from windows
            return
        n = len(self._lists[0])
        chunks = torch.tensor_split(torch.randperm(n, generator=self._user_gen),
                                    self.steps_per_epoch)
        for batch, users in zip(windows, chunks):
            yield (*batch, users)

    def loss(self, batch) -> torch.Tensor:
        net = self.net
        inp, tgt, valid = batch[:3]
        table = net.item_table()
        h = net.hidden(inp, table)[valid]
        scores = h @ table.T
        truth = softmax_loss(scores, tgt[valid])
        if self.alpha == 0:
            return truth
        if self.teacher is not None:
            with torch.no_grad():
                t_table = self.teacher._table()
                t_scores = self.teacher.network_.hidden(inp, t_table)[valid] @ t_table.T
            soft = kl_to_teacher(scores, t_scores, self.temperature)
        else:
            users = batch[3]
            if len(users) == 0:
                return (1 - self.alpha) * truth
            seqs, lengths, cands, t_scores = (x[users] for x in self._lists)
            dev = inp.device
            seqs, lengths = seqs[:, :int(lengths.max())].to(dev), lengths.to(dev)
            cands, t_scores = cands.to(dev), t_scores.to(dev)
            hu = net.hidden(seqs, table)[torch.arange(len(seqs), device=dev), lengths - 1]
            ok = cands >= 0
            s = (hu[:, None, :] * table[cands.clamp(min=0)]).sum(-1)
            soft = kl_to_teacher(s, t_scores.masked_fill(~ok, 0.0), self.temperature, mask=ok)
        return (1 - self.alpha) * truth + self.alpha * soft


def _rank_lists(teacher: Recommender, users: np.ndarray, seen: sp.csr_matrix,
                n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's top ``n_candidates`` unseen items (and scores, 0 on padding) of ``users``."""
    width = int(n_candidates)
    cands, scores = [np.zeros((0, width), np.int64)], [np.zeros((0, width), np.float32)]
    for a in range(0, len(users), _LIST_CHUNK):
        u = users[a:a + _LIST_CHUNK]
        c, s = teacher.rank_indices(u, k=width, exclude=seen[u])
        cands.append(np.asarray(c, dtype=np.int64))
        scores.append(np.where(np.isfinite(s), s, 0.0).astype(np.float32))
    return np.concatenate(cands), np.concatenate(scores)


def _padded_histories(seqs_items: np.ndarray, seqs_indptr: np.ndarray, users: np.ndarray,
                      max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The right-padded latest ``max_len`` items of ``users`` and their lengths."""
    items, indptr = latest_items(seqs_items, seqs_indptr, int(max_len))
    lengths = np.diff(indptr)[users]
    padded = np.zeros((len(users), int(max(lengths.max(), 1)) if len(users) else 1),
                      dtype=np.int64)
    for r, u in enumerate(users):
        padded[r, :lengths[r]] = items[indptr[u]:indptr[u + 1]]
    return padded, lengths.astype(np.int64)


def teacher_lists(teacher: Recommender, seqs_items: np.ndarray, seqs_indptr: np.ndarray,
                  seen: sp.csr_matrix, n_candidates: int, max_len: int, ranked=None):
    """The teacher's top ``n_candidates`` unseen items of every user with a history.

    Returns the arrays of :class:`DistillTask`'s ``lists`` (users in index order).
    ``ranked``: the ``(item_idx, scores)`` of :func:`candidate_lists` (one row per
    user of the teacher), used instead of asking the teacher.
    """
    users = np.flatnonzero(np.diff(seqs_indptr) > 0)
    if ranked is None:
        cands, scores = _rank_lists(teacher, users, seen, n_candidates)
    else:
        cands = np.asarray(ranked[0], dtype=np.int64)[users]
        scores = np.asarray(ranked[1], dtype=np.float32)[users]
    padded, lengths = _padded_histories(seqs_items, seqs_indptr, users, max_len)
    return padded, lengths, cands, scores


def candidate_lists(teacher: Recommender, X, *, n_candidates: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's ranked lists of every user, computed once for several :func:`distill` runs.

    Ranking the lists is the costly part of ``mode="lists"`` when the teacher is a
    cross-encoder; pass the result as ``distill(..., lists=...)`` to train several
    students (seeds, ``alpha``, ``temperature``) from one pass of the teacher.

    Parameters
    ----------
    teacher : Recommender
        Fitted on ``X``.
    X : Interactions, pandas.DataFrame or scipy.sparse matrix
        The training interactions the students will be distilled on (their items are
        left out of each user's list).
    n_candidates : int, optional
        List length (default: the teacher's ``n_candidates`` when it has one, else 50).

    Returns
    -------
    item_idx : np.ndarray of int64, shape (teacher.n_users_, n_candidates)
        Each user's top unseen items by index, best first; ``-1`` pads (users without
        interactions in ``X`` get an all ``-1`` row).
    scores : np.ndarray of float32, same shape
        The teacher's scores (0 on padding).

    Raises
    ------
    NotFittedError
        The teacher is not fitted.
    DataError
        A bad ``n_candidates``; ``X`` holds no interactions or unknown ids.
    """
    check_fitted(teacher, "candidate_lists")
    if n_candidates is not None:
        check_int("n_candidates", n_candidates, low=2)
    n_c = _list_length(teacher, n_candidates)
    data, _ = prepare_data(teacher, X, None, "candidate_lists")
    users = np.flatnonzero(np.diff(data.user_indptr) > 0)
    n_users = len(teacher.user_vocab_)
    item_idx = np.full((n_users, n_c), -1, dtype=np.int64)
    scores = np.zeros((n_users, n_c), dtype=np.float32)
    c, s = _rank_lists(teacher, users, data.to_csr(copy=False), n_c)
    item_idx[users, :c.shape[1]], scores[users, :s.shape[1]] = c, s
    return item_idx, scores


def _list_length(teacher, n_candidates) -> int:
    return int(n_candidates or int(getattr(teacher, "n_candidates", 50) or 50))


def _check_lists(lists, teacher, n_candidates) -> tuple[np.ndarray, np.ndarray]:
    """``lists`` as given to :func:`distill`: the pair of :func:`candidate_lists`."""
    if not (isinstance(lists, tuple | list) and len(lists) == 2):
        raise DataError("lists must be the (item_idx, scores) pair of candidate_lists(), got "
                        f"{type(lists).__name__}")
    c, s = np.asarray(lists[0]), np.asarray(lists[1])
    n_users, n_items = len(teacher.user_vocab_), len(teacher.item_vocab_)
    if c.ndim != 2 or c.shape != s.shape or c.shape[0] != n_users or c.shape[1] < 2:
        raise DataError(f"lists must be two arrays of shape (n_users={n_users}, >= 2) "
                        f"(candidate_lists() of this teacher), got {c.shape} and {s.shape}")
    if not np.issubdtype(c.dtype, np.integer) or c.min() < -1 or c.max() >= n_items:
        raise DataError(f"lists[0] must hold item indices in [0, {n_items}) or -1 padding")
    if n_candidates is not None and int(n_candidates) != c.shape[1]:
        raise DataError(f"n_candidates={n_candidates} but the lists given hold "
                        f"{c.shape[1]} items per user")
    if not np.isfinite(s).all():
        raise DataError("lists[1] (the teacher's scores) must be finite (0 on padding)")
    return c.astype(np.int64), s.astype(np.float32)


def _check(teacher, student, mode, alpha, temperature, n_candidates) -> str:
    from ..neural import SequentialRecommender

    check_fitted(teacher, "distillation")
    if not isinstance(student, SequentialRecommender):
        raise DataError(f"the student must be a SequentialRecommender (unfitted: its "
                        f"parameters set the size and training), got {type(student).__name__}")
    if mode not in DISTILL_MODES:
        raise DataError(f"mode must be one of {list(DISTILL_MODES)}, got {mode!r}")
    check_number("alpha", alpha, low=0, high=1)
    check_number("temperature", temperature, low=0, low_inclusive=False)
    if n_candidates is not None:
        check_int("n_candidates", n_candidates, low=2)
    seq_teacher = isinstance(teacher, SequentialRecommender)
    if mode == "auto":
        mode = "positions" if seq_teacher else "lists"
    if mode == "positions" and not seq_teacher:
        raise DataError(f"mode='positions' needs a SequentialRecommender teacher (its scores "
                        f"at every position); a {type(teacher).__name__} gives ranked lists: "
                        "use mode='lists'")
    if student.loss != "ce" or student.label_smoothing:
        raise DataError("distillation trains the student with the full-softmax loss: "
                        f"student loss={student.loss!r}, label_smoothing="
                        f"{student.label_smoothing!r} (use loss='ce', label_smoothing=0)")
    if mode == "positions" and int(student.max_len) > int(teacher.max_len):
        raise DataError(f"the student's max_len={student.max_len} exceeds the teacher's "
                        f"{teacher.max_len}: the teacher cannot score those positions")
    return mode


def distill(teacher: Recommender, student, X, *, validation=None, item_features=None,
            mode: str = "auto", alpha: float = 0.5, temperature: float = 1.0,
            n_candidates: int | None = None, lists=None) -> Any:
    """Fit a student ``SequentialRecommender`` on a teacher's scores and the ground truth.

    Parameters
    ----------
    teacher : Recommender
        Fitted on ``X`` (its vocabularies are the student's).
    student : SequentialRecommender
        Sets the student's size and training (``dim``, ``n_layers``, ``epochs``,
        ``learning_rate``, ``patience``, ``random_state``...); a fitted copy is returned,
        ``student`` itself is left unchanged. Must use ``loss="ce"``.
    X : Interactions, pandas.DataFrame or scipy.sparse matrix
        The training interactions (time-ordered sequences).
    validation : Interactions or pandas.DataFrame, optional
        Held-out next items: early stopping on the student's ``val_metric``.
    item_features : ItemFeatures, optional
        For a student with ``item_text`` or ``item_side``.
    mode : {"auto", "positions", "lists"}, default "auto"
        See the module description; ``"auto"``: ``"positions"`` for a
        ``SequentialRecommender`` teacher, ``"lists"`` for any other.
    alpha : float in [0, 1], default 0.5
        Weight of the teacher term (0: plain next-item training).
    temperature : float > 0, default 1.0
        Softmax temperature of both sides of the KL term.
    n_candidates : int, optional
        ``mode="lists"``: list length (default: the teacher's ``n_candidates`` when it
        has one, else 50).
    lists : tuple of (item_idx, scores), optional
        ``mode="lists"``: the teacher's lists computed beforehand by
        :func:`candidate_lists` on the same ``X`` (the teacher is then not asked again).

    Returns
    -------
    SequentialRecommender
        Fitted; ``training_log_`` holds the run and ``compression_`` the settings.

    Raises
    ------
    NotFittedError
        The teacher is not fitted.
    DataError
        A student that is not a ``SequentialRecommender`` or does not use ``loss="ce"``,
        ``mode="positions"`` with a teacher that is not sequential, a bad ``alpha``,
        ``temperature`` or ``n_candidates``, no interactions in ``X``; ``lists`` of
        another shape than ``candidate_lists()`` returns for this teacher, or given with
        ``mode="positions"``.
    """
    mode = _check(teacher, student, mode, alpha, temperature, n_candidates)
    if lists is not None:
        if mode != "lists":
            raise DataError(f"lists are the teacher's ranked lists of mode='lists', got "
                            f"mode={mode!r}")
        lists = _check_lists(lists, teacher, n_candidates)
    data, val = prepare_data(teacher, X, validation, "distill")
    s = clone(student)
    s._check_standard_params()
    s._validate_params()
    s.user_vocab_, s.item_vocab_ = teacher.user_vocab_, teacher.item_vocab_
    s.seen_ = data.to_csr(copy=False)
    s._pop_cache = None
    device = resolve_device(s.device)
    s._device_obj = device
    items = data.item_indices.astype(np.int64)
    indptr = data.user_indptr.astype(np.int64)
    ranked, lists = lists, None
    if mode == "lists" and alpha > 0:  # alpha 0: plain next-item training, no teacher
        n_c = _list_length(teacher, n_candidates) if ranked is None else ranked[0].shape[1]
        lists = teacher_lists(teacher, items, indptr, s.seen_, n_c, int(s.max_len),
                              ranked=ranked)
    elif mode == "positions":
        teacher.network_.eval()
    from ..neural._item_content import embed_cold_from_text, init_item_rows

    untrained = data.item_counts() == 0
    text, mask = s._fit_item_content(data, item_features)
    with seeded(s.random_state, device) as seed:
        net = s._build_modules()["network_"]
        net.reset_parameters(torch_generator(seed))
        init_item_rows(net, item_text=s.item_text, text=text, mask=mask, untrained=untrained,
                       side_items=s.side_items_ if s.item_side == "fuse" else None)
        s.network_ = net.to(device)
        s._set_histories(items, indptr)
        s._invalidate()
        task = DistillTask(net, items, indptr, max_len=int(s.max_len),
                           batch_size=int(s.batch_size), seed=seed, device=device,
                           alpha=float(alpha), temperature=float(temperature),
                           teacher=teacher if mode == "positions" and alpha > 0 else None,
                           lists=lists)
        if task.n_windows == 0:
            raise DataError("distill: no user of X has 2 or more interactions; nothing to "
                            "train")
        s.training_log_ = train_network(s, task, data, val, epochs=int(s.epochs),
                                        learning_rate=float(s.learning_rate),
                                        patience=int(s.patience), seed=seed, name="distill")
    net.eval()
    s._invalidate()
    if s.item_text == "init":
        s.text_map_ = embed_cold_from_text(net, s._table_numpy(), text, mask, untrained)
        s._invalidate()
    s.compression_ = {"method": "distill", "mode": mode, "teacher": type(teacher).__name__,
                      "alpha": float(alpha), "temperature": float(temperature),
                      "n_candidates": None if lists is None else int(lists[2].shape[1])}
    import datetime as _dt

    s.fitted_at_ = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return s
