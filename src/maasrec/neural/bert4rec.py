"""``BERT4Rec``: a bidirectional transformer over each user's item sequence, trained as a cloze.

BERT applied to behaviour (Sun et al. 2019): random items of a user's time-ordered
sequence are replaced by a ``[MASK]`` token, and a transformer whose every position
attends to the whole sequence (no causal mask) predicts the hidden items from both
sides -- softmax cross-entropy over the catalogue at the masked positions only (or a
sampled softmax). To recommend, ``[MASK]`` is appended after the latest items and the
hidden state there scores every item.

Sequences are left-padded with positions counted back from the end, so the appended
``[MASK]`` always sits at the last position, as in training windows that end with the
latest item. The loop (Adam, early stopping on a full-ranking validation metric with
best-weights restore, NaN/inf checks, seeds, checkpoints) is
:class:`maasrec.training.Trainer`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..exceptions import DataError, MaasrecWarning
from ..training import (
    sampled_softmax_loss,
    softmax_loss,
    torch_generator,
)
from ._implicit import begin_fit, check_training_params, run_training, seeded_network
from ._sequences import StoredSequences
from .sasrec import INIT_STD

__all__ = ["BERT4REC_LOSSES", "BERT4Rec", "BERT4RecNetwork", "cloze_windows"]

logger = logging.getLogger(__name__)

#: Accepted values of ``loss``.
BERT4REC_LOSSES = ("ce", "sampled_softmax")
#: Accepted values of ``window_sampling``.
_WINDOW_SAMPLING = ("tile", "random")
#: Positions (sequences x length) per forward pass when scoring.
_INFER_POSITIONS = 2**15


class _BidirectionalBlock(nn.Module):
    """Pre-LayerNorm transformer block; every position attends to every real one."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = dropout
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keys, dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.ln2(x))))))


class BERT4RecNetwork(nn.Module):
    """The bidirectional network of :class:`BERT4Rec`.

    Input index ``n_items`` is ``[MASK]`` and ``n_items + 1`` padding (a zero vector,
    never attended to). Sequences are left-padded: the position of column ``j`` of a
    ``[b, t]`` batch is ``max_len - t + j``, so the last column is always position
    ``max_len - 1``. The output head (dense, GELU, LayerNorm) feeds a dot product with
    the item embeddings (tied weights) plus a per-item bias.

    Parameters
    ----------
    n_items, dim, max_len, n_layers, n_heads, ffn_dim : int
    dropout : float
    """

    def __init__(self, n_items: int, dim: int, max_len: int, n_layers: int, n_heads: int,
                 ffn_dim: int, dropout: float):
        super().__init__()
        self.item_emb = nn.Parameter(torch.empty(n_items, dim))
        self.mask_emb = nn.Parameter(torch.empty(1, dim))
        self.pos_emb = nn.Parameter(torch.empty(max_len, dim))
        self.ln_in = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_BidirectionalBlock(dim, n_heads, ffn_dim, dropout)
                                    for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, dim)
        self.ln_head = nn.LayerNorm(dim)
        self.out_bias = nn.Parameter(torch.zeros(n_items))

    @property
    def n_items(self) -> int:
        """int: items in the catalogue (``[MASK]`` and padding not counted)."""
        return int(self.item_emb.shape[0])

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Normal(0, 0.02) weights and embeddings, zero biases, unit LayerNorm gains."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln" in name or name.startswith("ln_"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * INIT_STD)

    def input_table(self) -> torch.Tensor:
        """Input vectors ``[n_items + 2, dim]``: the items, ``[MASK]``, zero padding."""
        pad = torch.zeros_like(self.mask_emb)
        return torch.cat([self.item_emb, self.mask_emb, pad], 0)

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """Output states ``[b, t, dim]`` (after the head) of left-padded sequences ``[b, t]``."""
        t = seq.shape[1]
        pad = seq == self.n_items + 1
        keys = (~pad)[:, None, None, :] if bool(pad.any()) else None
        x = F.embedding(seq, self.input_table()) + self.pos_emb[self.pos_emb.shape[0] - t:]
        x = self.drop(self.ln_in(x))
        for block in self.blocks:
            x = block(x, keys)
        x = self.ln_f(x)
        return self.ln_head(F.gelu(self.head(x)))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item ``[..., n_items]`` from output states ``[..., dim]``."""
        return h @ self.item_emb.T + self.out_bias

    def next_states(self, seqs: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """Output state at a ``[MASK]`` appended to each sequence, ``[b, dim]``.

        Each sequence must hold at most ``max_len - 1`` items. Sequences of one length
        run together, unpadded, so a sequence's state does not depend on the others.
        Inference mode (``eval``, no grad).
        """
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        self.eval()
        out = torch.empty((len(seqs), int(self.item_emb.shape[1])), device=device)
        order = np.argsort(lengths, kind="stable")
        bounds = np.flatnonzero(np.diff(lengths[order])) + 1
        mask_col = np.full(1, self.n_items, dtype=np.int64)
        with torch.no_grad():
            for group in np.split(order, bounds):
                if len(group) == 0:
                    continue
                n = int(lengths[group[0]]) + 1
                rows = max(1, _INFER_POSITIONS // n)
                for a in range(0, len(group), rows):
                    g = group[a:a + rows]
                    batch = np.stack([np.concatenate([seqs[i], mask_col]) for i in g])
                    h = self.hidden(torch.from_numpy(batch).to(device))[:, -1]
                    out[torch.from_numpy(g).to(device)] = h.float()
        return out


def cloze_windows(indptr: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training windows over flat sequences: (start in the flat array, length).

    Each sequence of 2 or more items is cut, from its end, into windows of at most
    ``max_len`` consecutive items, so every item is in one window per epoch and the
    latest window holds the latest items; a leftover window of one item is dropped.
    """
    lengths = np.diff(indptr).astype(np.int64)
    lengths = np.where(lengths >= 2, lengths, 0)
    n_win = -(-lengths // max_len)
    total = int(n_win.sum())
    seq_of = np.repeat(np.arange(len(lengths)), n_win)
    first = np.cumsum(n_win) - n_win
    k = np.arange(total) - np.repeat(first, n_win)
    end = lengths[seq_of] - k * max_len
    m = np.minimum(end, max_len)
    start = indptr[seq_of] + end - m
    keep = m >= 2
    return start[keep].astype(np.int64), m[keep].astype(np.int64)


def random_cloze_windows(indptr: np.ndarray, max_len: int, generator: torch.Generator
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """As many windows per sequence as :func:`cloze_windows` cuts, each ending at a random item.

    A window ends at an item drawn uniformly from the second to the last of its sequence
    and holds the (at most ``max_len``) items up to it, so over the epochs every prefix of
    a sequence can be a window and every item can be a window's last (the form of a
    recommendation query). Returns ``(start in the flat array, length)`` as tensors.
    """
    lengths = np.diff(indptr).astype(np.int64)
    lengths = np.where(lengths >= 2, lengths, 0)
    n_win = torch.from_numpy(-(-lengths // max_len))
    seq_of = torch.repeat_interleave(torch.arange(len(lengths)), n_win)
    seq_len = torch.from_numpy(lengths)[seq_of]
    # end in [2, length]: floor(u * (length - 1)) + 2
    u = torch.rand(len(seq_of), generator=generator, dtype=torch.float64)
    end = torch.minimum((u * (seq_len - 1)).long() + 2, seq_len)
    m = torch.clamp(end, max=max_len)
    start = torch.from_numpy(indptr[:-1].astype(np.int64))[seq_of] + end - m
    return start, m


class ClozeTask:
    """Batches and loss of cloze (masked-item) training over flat sequences.

    A batch is ``(inputs, targets)``: left-padded windows ``[b, t]`` with the masked
    items replaced by ``[MASK]``, and ``targets`` holding the hidden item at masked
    positions and -1 elsewhere (only masked positions enter the loss). Each real item is
    masked with probability ``mask_prob``; with probability ``mask_last_prob`` a window
    instead masks only its last item (the recommendation query); a window with nothing
    masked gets its last item masked.

    Parameters
    ----------
    net : BERT4RecNetwork
    items, indptr : np.ndarray of int64
    max_len, batch_size : int
    mask_prob, mask_last_prob : float
    loss : {"ce", "sampled_softmax"}
    n_negatives : int
    seed : int
        All randomness (windows, their order, masks, negatives) from one CPU generator.
    window_sampling : {"tile", "random"}, default "tile"
        ``"tile"``: the fixed windows of :func:`cloze_windows`, shuffled each epoch;
        ``"random"``: as many windows drawn afresh each epoch by
        :func:`random_cloze_windows`.
    """

    def __init__(self, net: BERT4RecNetwork, items: np.ndarray, indptr: np.ndarray, *,
                 max_len: int, batch_size: int, mask_prob: float, mask_last_prob: float,
                 loss: str, n_negatives: int, seed: int, window_sampling: str = "tile"):
        start, length = cloze_windows(indptr, int(max_len))
        self.window_sampling = window_sampling
        self._indptr = np.asarray(indptr, dtype=np.int64)
        self._max_len = int(max_len)
        self.net = net
        self.n_items = net.n_items
        self.n_windows = len(start)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = -(-self.n_windows // self.batch_size)
        self.mask_prob = float(mask_prob)
        self.mask_last_prob = float(mask_last_prob)
        self.loss_kind = loss
        self.n_negatives = int(n_negatives)
        self._flat = torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64))
        self._start = torch.from_numpy(start)
        self._length = torch.from_numpy(length)
        self._gen = torch_generator(seed + 1)
        self.generators = [self._gen]

    def batches(self, epoch: int):
        """``(inputs, targets)`` of the epoch's windows, in a seeded order."""
        start, length = self._start, self._length
        if self.window_sampling == "random":
            start, length = random_cloze_windows(self._indptr, self._max_len, self._gen)
        perm = torch.randperm(self.n_windows, generator=self._gen)
        for a in range(0, self.n_windows, self.batch_size):
            idx = perm[a:a + self.batch_size]
            yield self.make_batch(start[idx], length[idx])

    def make_batch(self, start: torch.Tensor, length: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked, left-padded inputs and targets of the windows ``(start, length)``."""
        width = int(length.max())
        col = torch.arange(width)
        offset = col[None, :] - (width - length)[:, None]  # index inside the window
        real = offset >= 0
        idx = (start[:, None] + offset.clamp(min=0)).clamp(max=len(self._flat) - 1)
        seq = torch.where(real, self._flat[idx], torch.full((), self.n_items + 1))
        b = len(start)
        masked = (torch.rand((b, width), generator=self._gen) < self.mask_prob) & real
        last_only = torch.rand(b, generator=self._gen) < self.mask_last_prob
        masked[last_only] = False
        none = ~masked.any(1)
        masked[:, -1] |= none  # last-only windows and windows with nothing masked
        targets = torch.where(masked, seq, torch.full((), -1))
        inputs = torch.where(masked, torch.full((), self.n_items), seq)
        return inputs, targets

    def loss(self, batch) -> torch.Tensor:
        """Mean loss over the masked positions of a batch."""
        inputs, targets = batch
        net = self.net
        where = targets >= 0
        h = net.hidden(inputs)[where]
        y = targets[where]
        if self.loss_kind == "ce":
            return softmax_loss(net.logits(h), y)
        neg = torch.randint(self.n_items, (self.n_negatives,), generator=self._gen)
        neg = neg.to(h.device)
        pos = (h * net.item_emb[y]).sum(-1) + net.out_bias[y]
        other = h @ net.item_emb[neg].T + net.out_bias[neg]
        return sampled_softmax_loss(pos.float(), other.float(),
                                    mask=neg[None, :] != y[:, None])


class BERT4Rec(StoredSequences, Recommender):
    """Next-item recommendation with a bidirectional transformer trained as a cloze (BERT4Rec).

    Each user is the time-ordered sequence of items they interacted with. Training hides
    random items behind a ``[MASK]`` token and predicts them from both sides; a user's
    recommendations are the scores at a ``[MASK]`` appended after their latest items.

    Parameters
    ----------
    max_len : int, default 20
        Longest window the network reads, the appended ``[MASK]`` included: the latest
        ``max_len - 1`` items of a history are used to recommend (older ones are still
        excluded as seen). Training windows hold at most ``max_len`` items (see
        ``window_sampling``).
    dim : int, default 64
        Width of item vectors and hidden states.
    n_layers : int, default 2
        Transformer blocks.
    n_heads : int, default 2
        Attention heads (must divide ``dim``).
    ffn_dim : int, optional
        Width of the feed-forward layer (default ``4 * dim``).
    dropout : float, default 0.2
        Dropout on embeddings, attention weights, residual branches and the feed-forward
        layer.
    mask_prob : float, default 0.2
        Probability that each item of a training window is masked (the cloze rate).
    mask_last_prob : float, default 0.5
        Probability that a training window masks only its last item (the form of a
        recommendation query) instead of random ones.
    window_sampling : {"tile", "random"}, default "random"
        Training windows of an epoch. ``"tile"``: each sequence cut from its end into
        consecutive windows of ``max_len`` items, the same every epoch (every item once
        per epoch). ``"random"``: as many windows per sequence, drawn afresh each epoch,
        each ending at a random item of the sequence (the items up to it, at most
        ``max_len``), so every prefix of a history takes its turn as a window and its last
        item as the query.
    loss : {"ce", "sampled_softmax"}, default "ce"
        ``"ce"``: softmax cross-entropy over the whole catalogue at masked positions.
        ``"sampled_softmax"``: the hidden item against ``n_negatives`` items drawn
        uniformly per batch (a draw equal to the target is masked), for large catalogues.
    n_negatives : int, default 256
        Negatives per batch for ``loss="sampled_softmax"``.
    epochs : int, default 200
        Most passes over the training windows.
    batch_size : int, default 128
        Windows per step.
    learning_rate : float, default 0.003
        Adam step size.
    weight_decay : float, default 0.0
        L2 penalty (Adam's coupled form).
    patience : int, default 10
        Stop after this many validations without a better ``val_metric`` and restore the
        best weights.
    eval_every : int, default 1
        Epochs between validations.
    val_metric : str, default "ndcg@10"
        The full-ranking validation metric, ``"<name>@<k>"`` (``ndcg``, ``hit``,
        ``recall``, ``precision``, ``map``, ``mrr``).
    validation_fraction : float or None, default 0.1
        When :meth:`fit` gets no ``validation``: the last item of a
        ``validation_fraction`` share of the users with 5 or more interactions (at least
        1,000 users, or all of them) is held out (leave-last-out,
        :func:`maasrec.data.split.holdout_validation`, seeded from ``random_state``) for
        early stopping; the model is kept as trained and the held-out items rejoin the
        histories it reads. None or 0: train all ``epochs``, without early stopping.
    device : str or torch.device, optional
        See :func:`maasrec.resolve_device`.
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial weights, window order, masks, negatives and dropout (torch's
        global RNG is left as it was).
    verbose : bool, default False
        A progress bar over the epochs (:class:`~maasrec.training.ProgressCallback`).

    Attributes
    ----------
    network_ : BERT4RecNetwork
        The trained network (saved in ``weights.safetensors``).
    history_items_, history_indptr_ : np.ndarray of int64
        The latest ``max_len - 1`` item indices of every known user, oldest first.
    training_log_ : dict
        :meth:`maasrec.training.TrainingHistory.to_dict` of the run plus ``n_windows``
        (training windows per epoch) and ``holdout`` when a validation slice was held out.

    Notes
    -----
    **Ordered histories.** ``recommend(history=[...])`` keeps the given order (oldest
    first) and repeats (``ordered_history = True``). A history holding an unknown item
    raises :class:`~maasrec.exceptions.UnknownIdError`; an empty one gets the popular
    items. :meth:`extend_history` appends new events of known users without retraining
    (e.g. the validation item before a leave-last-out test).

    **Defaults** (chosen on a validation split: leave-last-out of the MovieLens 100K
    leave-last-out training part, seed 0, ``benchmarks/bench_bert4rec.py``, one thread):
    2 blocks, 2 heads, width 64 and cloze rate 0.2 follow the paper at CPU size, Adam at
    0.003. Windows of 20 items drawn afresh each epoch (``window_sampling="random"``),
    half of them masking only their last item, batches of 128: the last-item queries
    then move over every prefix of a history, as in RecBole's training on every prefix
    (its ``MAX_ITEM_LIST_LENGTH`` 20, last-item share 0.5), at a fraction of its cost per
    epoch. Validation NDCG@10 after 30 epochs (72 CPU-seconds on one thread): 0.1016,
    against 0.0926 with the same windows tiled (``window_sampling="tile"``) and 0.0869
    for the earlier defaults (``max_len`` 100 tiled, ``mask_last_prob`` 0.1, batches of
    64), whose epochs cost about 1.4 times as much; Popularity 0.0399. Left to early
    stopping (``epochs`` 200, ``patience`` 10) the defaults stopped at epoch 72, best 62:
    0.1281 in 173 CPU-seconds (``mask_last_prob`` 0.7: 0.0998; ``max_len`` 30: 0.0966).
    On the test part (the standard suite's ``ml100k-llo``, seed 0): NDCG@10 / HR@10
    0.0777 / 0.1585 (RecBole 1.2.1's BERT4Rec: 0.0783 / 0.1532), 0.0887 / 0.1809 when the
    validation item joins the histories (:meth:`extend_history`), as RecBole's test
    sequences hold it. Only masked positions enter the loss: a cloze epoch teaches fewer targets
    than a causal model's (:class:`~maasrec.neural.SequentialRecommender`), so expect
    more epochs.

    **Determinism.** Same seed, data, device and thread count give the same model on the
    CPU.

    References
    ----------
    F. Sun, J. Liu, J. Wu, C. Pei, X. Lin, W. Ou, P. Jiang. BERT4Rec: Sequential
    Recommendation with Bidirectional Encoder Representations from Transformer. CIKM 2019.
    """

    _history_trim = 1  # the last position is the appended [MASK]

    def __init__(self, max_len: int = 20, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 ffn_dim: int | None = None, dropout: float = 0.2, mask_prob: float = 0.2,
                 mask_last_prob: float = 0.5, window_sampling: str = "random",
                 loss: str = "ce", n_negatives: int = 256,
                 epochs: int = 200, batch_size: int = 128, learning_rate: float = 0.003,
                 weight_decay: float = 0.0, patience: int = 10, eval_every: int = 1,
                 val_metric: str = "ndcg@10", validation_fraction: float | None = 0.1,
                 device: Any = None, random_state: Any = None, verbose: bool = False):
        self.max_len = max_len
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.mask_prob = mask_prob
        self.mask_last_prob = mask_last_prob
        self.window_sampling = window_sampling
        self.loss = loss
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.val_metric = val_metric
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        check_int("max_len", self.max_len, low=2)
        check_int("dim", self.dim, low=1)
        check_int("n_layers", self.n_layers, low=0)
        check_int("n_heads", self.n_heads, low=1)
        if self.dim % self.n_heads:
            raise DataError(f"n_heads={self.n_heads!r} must divide dim={self.dim!r}")
        if self.ffn_dim is not None:
            check_int("ffn_dim", self.ffn_dim, low=1)
        check_number("dropout", self.dropout, low=0, high=1, high_inclusive=False)
        check_number("mask_prob", self.mask_prob, low=0, high=1, low_inclusive=False)
        check_number("mask_last_prob", self.mask_last_prob, low=0, high=1)
        check_choice("window_sampling", self.window_sampling, _WINDOW_SAMPLING)
        check_choice("loss", self.loss, BERT4REC_LOSSES)
        check_int("n_negatives", self.n_negatives, low=1)
        check_training_params(self, weight_decay=True)

    def _build_modules(self) -> dict:
        ffn = int(self.ffn_dim) if self.ffn_dim is not None else 4 * int(self.dim)
        # nn.Linear initialises from torch's global RNG: leave the caller's alone
        with torch.random.fork_rng(devices=[]):
            return {"network_": BERT4RecNetwork(self.n_items_, int(self.dim), int(self.max_len),
                                                 int(self.n_layers), int(self.n_heads), ffn,
                                                 float(self.dropout))}

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        if not data.has_timestamps:
            import warnings

            warnings.warn(
                "BERT4Rec: the interactions have no timestamps, so each user's rows are "
                "taken in their stored order (input order; column order for a sparse "
                "matrix) as time order", MaasrecWarning, stacklevel=3)
        device, seed, fit_data, validation, holdout = begin_fit(self, data, validation,
                                                                ordered=True)
        self._device_obj = device
        net = seeded_network(self._build_modules()["network_"], seed, device)
        self.network_ = net
        # validation reads the train part only
        self._set_histories(fit_data.item_indices, fit_data.user_indptr)
        task = ClozeTask(net, fit_data.item_indices.astype(np.int64),
                         fit_data.user_indptr.astype(np.int64), max_len=int(self.max_len),
                         batch_size=int(self.batch_size), mask_prob=float(self.mask_prob),
                         mask_last_prob=float(self.mask_last_prob), loss=self.loss,
                         n_negatives=int(self.n_negatives), seed=seed,
                         window_sampling=self.window_sampling)
        self.training_log_ = {"n_windows": task.n_windows}
        if task.n_windows == 0:
            logger.warning("BERT4Rec: no user has 2 or more interactions; nothing to train "
                           "(scores come from the initial weights)")
        else:
            logger.info("BERT4Rec: %d users, %d items, %d windows (max_len %d), loss=%s, "
                        "device %s", data.n_users, data.n_items, task.n_windows,
                        int(self.max_len), self.loss, device)
            hist = run_training(
                self, "BERT4Rec", net, task.batches, task.loss,
                work=int(self.batch_size) * int(self.max_len) * int(self.dim), device=device,
                data=fit_data, validation=validation, score=self._score_users, seed=seed,
                steps_per_epoch=task.steps_per_epoch, generators=task.generators,
                checkpoint_dir=checkpoint_dir, weight_decay=float(self.weight_decay))
            self.training_log_ = {**hist.to_dict(), "n_windows": task.n_windows}
        if holdout is not None:
            self.training_log_["holdout"] = holdout
        # the held-out items are history again
        self._set_histories(data.item_indices, data.user_indptr)
        net.eval()

    # -- histories ----------------------------------------------------------------------
    # -- scoring ------------------------------------------------------------------------
    def _states(self, seqs: list[np.ndarray]) -> torch.Tensor:
        """Output states at ``[MASK]`` after the latest ``max_len - 1`` items ``[b, dim]``."""
        dev = self._device()
        keep = int(self.max_len) - 1
        net = self.network_
        was_training = net.training
        try:
            return net.next_states([np.asarray(s, dtype=np.int64)[-keep:] for s in seqs], dev)
        finally:
            net.train(was_training)

    def _scores_from(self, seqs: list[np.ndarray]):
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        nonempty = np.flatnonzero(lengths > 0)
        net = self.network_
        if len(nonempty) == len(seqs):
            with torch.no_grad():
                out = net.logits(self._states(seqs)).float()
            return out.cpu().numpy() if out.device.type == "cpu" else out
        out = np.broadcast_to(self._popularity().astype(np.float32),
                              (len(seqs), self.n_items_)).copy()
        if len(nonempty):
            with torch.no_grad():
                s = net.logits(self._states([seqs[i] for i in nonempty])).float()
            out[nonempty] = s.cpu().numpy()
        return out

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """Cosine similarity of the item embeddings."""
        v = self.network_.item_emb.detach().float().cpu().numpy()
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        return (v[item_idx] / norms[item_idx, None]) @ (v / norms[:, None]).T

    # -- persistence --------------------------------------------------------------------
    def _check_loaded(self) -> None:
        from .._loadcheck import check_stored_histories

        check_stored_histories(self, self._load_where)

    def __getstate__(self):  # copies and pickles carry no device cache
        state = dict(self.__dict__)
        state.pop("_device_obj", None)
        return state
