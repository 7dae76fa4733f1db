"""``SequentialRecommender``: a GPT-style causal transformer over each user's item sequence.

The model reads a user's interactions in time order and predicts the next item
(SASRec, Kang & McAuley 2018, trained the GPT way):

- item embeddings (optionally initialised from, or fused with, language-model vectors of
  the item text) plus learned positional embeddings;
- ``n_layers`` pre-LayerNorm transformer blocks with a causal mask
  (:func:`torch.nn.functional.scaled_dot_product_attention`), dropout, a final LayerNorm;
- the output at position ``t`` scores every item by a dot product with the same item
  embeddings (tied weights); training maximises the probability of item ``t + 1`` at
  every position of every sequence at once (full softmax cross-entropy over the
  catalogue, or a sampled softmax).

The pieces live next to this module: the network in :mod:`maasrec.neural.sasrec`; the
histories, training windows, length-bucketed batches and the next-item loss in
``_sequences``; item text and side labels in ``_item_content``. The loop itself --
optimiser steps, early stopping on validation NDCG@10 with best-checkpoint restore,
NaN/inf checks, AMP on CUDA, seeding, checkpoints, progress -- is the
:class:`maasrec.training.Trainer` (through :func:`maasrec.training.fit_loop`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..data.features import ItemFeatures
from ..data.interactions import Interactions
from ..device import amp_dtype, resolve_device
from ..exceptions import DataError, MaasrecWarning
from ..training import (
    NonFiniteLossError,
    TrainingHistory,
    checkpoint_fingerprint,
    fit_loop,
    param_groups,
    ranking_validator,
    seeded,
    threads_for,
    torch_generator,
)
from ._holdout import auto_holdout, check_validation_fraction
from ._item_content import (
    add_item_content,
    check_loaded_content,
    embed_cold_from_text,
    fit_content,
    init_item_rows,
    text_encoder,
)
from ._sequences import NextItemTask, StoredSequences
from .sasrec import SASRecNetwork

__all__ = ["AMP_MODES", "ITEM_SIDE_MODES", "ITEM_TEXT_MODES", "SEQUENTIAL_LOSSES", "NonFiniteLossError", "SASRecNetwork",
           "SequentialRecommender"]

logger = logging.getLogger(__name__)

#: Accepted values of ``item_text``.
ITEM_TEXT_MODES = ("none", "init", "fuse")
#: Accepted values of ``item_side``.
ITEM_SIDE_MODES = ("none", "fuse")
#: Accepted values of ``amp``.
AMP_MODES = ("auto", "bf16", "none")
#: Accepted values of ``loss``.
SEQUENTIAL_LOSSES = ("ce", "sampled_softmax")

_VAL_METRICS = ("ndcg", "hit", "recall", "precision", "map", "mrr")


def _parse_val_metric(spec: Any) -> tuple[str, int]:
    """``"ndcg@10"`` -> ("ndcg", 10); a clear error for anything else."""
    if isinstance(spec, str) and spec.count("@") == 1:
        name, _, k = spec.partition("@")
        if name in _VAL_METRICS and k.isdigit() and int(k) >= 1:
            return name, int(k)
    raise DataError(f"val_metric must be '<name>@<k>' with a name among {list(_VAL_METRICS)} "
                    f"and k >= 1 (e.g. 'ndcg@10', 'hit@10'), got {spec!r}")


class SequentialRecommender(StoredSequences, Recommender):
    """Next-item recommendation with a GPT-style causal transformer (SASRec).

    Each user is the time-ordered sequence of items they interacted with; the model
    reads it left to right and scores every item as the next one. Recommendations for a
    user come from the hidden state after their latest item.

    ``partial_fit`` appends new events to the histories (new users too; items must be
    known: announce new ones with :meth:`add_items` first), then fine-tunes the network
    for two seeded epochs of its next-item task on the sequences of the users touched
    since its first ``partial_fit`` plus as many replayed other users, starting each time
    from the weights of that first call (batching does not change the result); the
    validation hold-out, early stopping and ``dp`` are not applied (refit for those).

    Parameters
    ----------
    max_len : int, default 50
        Longest history the model reads. **Truncation:** only the latest ``max_len``
        items of a history are used to recommend (older ones are dropped; they are
        still excluded as seen). For training, sequences longer than ``max_len`` are cut
        into consecutive windows of ``max_len`` next-item targets, so every interaction
        is trained on. Positions are counted from the first item of the window.
    dim : int, default 64
        Width of item vectors and hidden states.
    n_layers : int, default 2
        Transformer blocks.
    n_heads : int, default 2
        Attention heads (must divide ``dim``).
    ffn_dim : int, optional
        Width of the feed-forward layer of each block (default ``4 * dim``).
    dropout : float, default 0.3
        Dropout on embeddings, attention weights, residual branches and the feed-forward
        layer.
    loss : {"ce", "sampled_softmax"}, default "ce"
        ``"ce"``: softmax cross-entropy over the whole catalogue at every position (the
        best ranking quality; memory ``~ 3 x batch_size x max_len x n_items`` floats at
        most). ``"sampled_softmax"``: the target against ``n_negatives`` items drawn
        uniformly per batch (shared by all positions; a draw equal to the target is
        masked), for catalogues too large for the full softmax.
    n_negatives : int, default 256
        Negatives per batch for ``loss="sampled_softmax"``.
    item_text : {"none", "init", "fuse"}, default "none"
        Use language-model vectors of the item text (``item_features.text`` given to
        :meth:`fit`, encoded once with ``text_encoder``; cached on disk).
        ``"init"``: the item embeddings start from the text vectors (their principal
        components, scaled to the initial embedding size) and are then trained freely;
        after training a ridge map from text vectors to trained embeddings is fitted,
        which embeds items added later. ``"fuse"``: item vector = learned id vector +
        a learned linear projection of the (frozen) text vector; items added later have
        a zero id vector. Items with text but no training interaction are embedded
        from their text the same way. Items without text get a random id vector
        (``"init"``) or only their id vector (``"fuse"``).
    text_encoder : TextEncoder or str, optional
        A :class:`~maasrec.encoders.TextEncoder`, or a model name for one. Default
        ``"sentence-transformers/all-MiniLM-L6-v2"`` (used only when ``item_text`` is
        not ``"none"``).
    item_side : {"none", "fuse"}, default "none"
        ``"fuse"``: the categorical and multi-hot fields of ``item_features`` (e.g.
        brand, categories, genres) join the item vector: item vector = id vector (+ text
        part) + the mean of the learned vectors of the item's labels (one vector per
        ``"<field>=<value>"``). Items share what they learn through common labels, and
        items added later (:meth:`add_items`) or never interacted with get their labels'
        vector on a zero id vector. Numeric and vector fields are not used.
    epochs : int, default 200
        Most passes over the training windows.
    batch_size : int, default 128
        Training windows (sequences) per step.
    learning_rate : float, default 0.001
        Adam(W) step size.
    weight_decay : float, default 0.0
        Decoupled weight decay (AdamW) on all weights except biases and LayerNorm gains.
    patience : int, default 10
        Stop after this many evaluations without a better validation metric
        (``val_metric``) on ``validation`` (given to :meth:`fit`, or held out by
        ``validation_fraction``), and restore the best weights.
    eval_every : int, default 1
        Epochs between validation evaluations.
    device : str or torch.device, optional
        See :func:`maasrec.resolve_device`.
    amp : {"auto", "bf16", "none"}, default "auto"
        Mixed precision. ``"auto"``: bf16/fp16 autocast on CUDA
        (:func:`maasrec.device.amp_dtype`) for training and scoring, float32 on the CPU.
        ``"bf16"``: bfloat16 autocast of the training steps on any device -- on CPUs
        with native bf16 matrix units (AVX512-BF16/AMX) an epoch is about 1.1-1.3x
        faster here (see ``benchmarks/bench_sequential.py``); the loss, softmax and
        optimiser state stay in float32; scoring (validation, ``recommend``) is bf16 on
        CUDA and float32 on the CPU, where autocast would make it slower.
        ``"none"``: float32 everywhere.
    random_state : int, numpy.random.Generator or None, default None
        Seeds initialisation, batching, dropout and negatives (torch's global RNG is
        left as it was).
    verbose : bool, default False
        A tqdm progress bar over the training epochs with the loss and the validation
        metric (:class:`~maasrec.training.ProgressCallback`); nothing is printed, the
        epoch lines go to ``logging`` either way.
    val_metric : str, default "ndcg@10"
        The full-ranking validation metric early stopping follows, ``"<name>@<k>"`` with
        a name among ``"ndcg"``, ``"hit"``, ``"recall"``, ``"precision"``, ``"map"``,
        ``"mrr"`` (e.g. ``"hit@10"``).
    label_smoothing : float, default 0.0
        ``loss="ce"`` only: the training target puts ``1 - label_smoothing`` on the next
        item and spreads ``label_smoothing`` evenly over the catalogue (a softer, less
        confident softmax).
    validation_fraction : float or None, default 0.1
        When :meth:`fit` gets no ``validation``: the last item of a ``validation_fraction``
        share of the users with 5 or more interactions (at least 1,000 users, or all of
        them) is held out (leave-last-out, :func:`maasrec.data.split.holdout_validation`,
        seeded from ``random_state``), the model trains on the rest and stops early on it
        (``patience``); the held-out items then rejoin the histories the model reads.
        ``training_log_["holdout"]`` and the log say how many were held out. None or 0:
        train all ``epochs`` on everything, without early stopping. Ignored under ``dp``.
    dp : dict, optional
        Train with user-level differential privacy (DP-SGD through Opacus, extra
        ``privacy``): ``{"epsilon": 8}`` or ``{"noise_multiplier": 1.0}``, optional
        ``"delta"`` (default ``1 / n_users``), ``"max_grad_norm"`` (default 1.0),
        ``"batch_size"`` (expected users per step; ``batch_size`` above is then unused) and
        ``"accountant"``. All of one user's windows form one unit; no validation slice is
        held out; ``training_log_["privacy"]`` has the spent epsilon per epoch and is
        saved with the model. See :mod:`maasrec.privacy.dp`.

    Attributes
    ----------
    network_ : SASRecNetwork
        The trained network (saved in ``weights.safetensors``).
    history_items_, history_indptr_ : np.ndarray of int64
        The latest ``max_len`` item indices of every known user, oldest first (user
        ``u`` is ``history_items_[history_indptr_[u]:history_indptr_[u + 1]]``).
    text_dim_ : int
        Width of the language-model item vectors (0 without item text).
    side_labels_ : list of str
        ``item_side="fuse"``: the ``"<field>=<value>"`` labels, in the order of the rows
        of ``network_.side_emb`` ([] otherwise).
    side_items_ : scipy.sparse.csr_matrix or None
        ``item_side="fuse"``: which labels each item has, ``[n_items, len(side_labels_)]``.
    text_map_ : np.ndarray or None
        ``item_text="init"``: the ridge map ``[text_dim_ + 1, dim]`` from text vectors
        (plus a constant) to trained item embeddings, used by :meth:`add_items`.
    training_log_ : dict
        :meth:`maasrec.training.TrainingHistory.to_dict` of the run (per-epoch
        ``losses``, ``seconds``, validation ``metrics`` -- NDCG@10, None where not
        evaluated --, ``best_epoch``, ``stopped_early``...) plus ``epochs_run`` and
        ``n_windows`` (training windows per epoch).

    Notes
    -----
    **Ordered histories.** ``recommend(history=[...])`` keeps the given order (oldest
    first) and repeats: the base class passes such models the ordered item indices
    (``ordered_history = True``, :meth:`_score_sequences`). Known users are scored from
    their training sequence, extended by :meth:`extend_history`.

    **Protocol for leave-last-out evaluation** (as in SASRec and S3Rec): fit on
    ``train`` with ``validation=valid`` (early stopping), then
    ``model.extend_history(valid)`` so that each user's history at test time ends
    with the validation item, and ``evaluate(model, train, test, exclude=valid)``.

    **Bad input.** A history (``recommend(history=...)``, :meth:`extend_history`) holding
    an item the model does not know raises :class:`~maasrec.exceptions.UnknownIdError`
    naming it -- nothing is skipped silently; make new items known with
    :meth:`add_items` (from their text) first. An empty history is served the most
    popular training items. A history longer than ``max_len`` is truncated to its
    latest ``max_len`` items (see ``max_len``). A NaN/inf training loss stops ``fit``
    with :class:`~maasrec.training.NonFiniteLossError` naming the epoch and step; the
    network then holds the best validated checkpoint (or the last good step without
    validation).

    **Settings and measurements.** Where the defaults come from (SASRec, gSASRec, the
    Amazon Beauty and MovieLens runs), what fitting without validation scores, and why
    random splits are not this model's protocol: :doc:`/neural` ("Sequential model:
    defaults and measured results").

    **Approximate retrieval.** Scores are inner products of the last hidden state and
    the item vectors, so ``_user_vectors``/``_item_vectors`` serve a
    :class:`~maasrec.rankers.FaissRetriever` for known users. Cold users
    (``history=``) are ranked exactly: a CSR history (what retrieval passes) has no
    order.

    **Determinism.** Same seed, data, device and thread count give the same model on the
    CPU.

    References
    ----------
    W.-C. Kang, J. McAuley. Self-Attentive Sequential Recommendation. ICDM 2018.
    """


    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "max_len": ("choice", [50, 100, 200]),
        "dim": ("choice", [32, 64, 128]),
        "n_layers": ("int", 1, 3),
        "dropout": ("float", 0.0, 0.6),
        "learning_rate": ("float", 1e-4, 1e-2, "log"),
        "weight_decay": ("float", 1e-6, 1e-2, "log"),
    }

    def __init__(self, max_len: int = 50, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 ffn_dim: int | None = None, dropout: float = 0.3, loss: str = "ce",
                 n_negatives: int = 256, item_text: str = "none", text_encoder: Any = None,
                 epochs: int = 200, batch_size: int = 128, learning_rate: float = 0.001,
                 weight_decay: float = 0.0, patience: int = 10, eval_every: int = 1,
                 device: Any = None, amp: str = "auto", random_state: Any = None,
                 verbose: bool = False, val_metric: str = "ndcg@10",
                 label_smoothing: float = 0.0, item_side: str = "none",
                 validation_fraction: float | None = 0.1, dp: dict | None = None):
        self.dp = dp
        self.validation_fraction = validation_fraction
        self.val_metric = val_metric
        self.item_side = item_side
        self.label_smoothing = label_smoothing
        self.max_len = max_len
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.item_text = item_text
        self.text_encoder = text_encoder
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.device = device
        self.amp = amp
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        check_int("max_len", self.max_len, low=1)
        check_int("dim", self.dim, low=1)
        check_int("n_layers", self.n_layers, low=0)
        check_int("n_heads", self.n_heads, low=1)
        if self.dim % self.n_heads:
            raise DataError(f"n_heads={self.n_heads!r} must divide dim={self.dim!r}")
        if self.ffn_dim is not None:
            check_int("ffn_dim", self.ffn_dim, low=1)
        check_number("dropout", self.dropout, low=0, high=1, high_inclusive=False)
        check_choice("loss", self.loss, SEQUENTIAL_LOSSES)
        check_int("n_negatives", self.n_negatives, low=1)
        check_choice("item_text", self.item_text, ITEM_TEXT_MODES)
        check_choice("item_side", self.item_side, ITEM_SIDE_MODES)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_number("learning_rate", self.learning_rate, low=0, low_inclusive=False)
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("label_smoothing", self.label_smoothing, low=0, high=1,
                     high_inclusive=False)
        if self.label_smoothing and self.loss != "ce":
            raise DataError(f"label_smoothing={self.label_smoothing!r} needs loss='ce', got "
                            f"loss={self.loss!r}")
        check_int("patience", self.patience, low=1)
        _parse_val_metric(self.val_metric)
        check_validation_fraction(self.validation_fraction)
        check_int("eval_every", self.eval_every, low=1)
        check_choice("amp", self.amp, AMP_MODES)
        if self.dp is not None:
            from ..privacy.dp import dp_model_check

            dp_model_check(self)

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """Autocast dtype of training and scoring on ``device`` (None: float32)."""
        mode = getattr(self, "amp", "auto")
        if mode == "none":
            return None
        if mode == "bf16":
            return torch.bfloat16
        return amp_dtype(device)

    def _score_amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """Autocast dtype of scoring (None: float32): as training on CUDA, float32 on the CPU.

        bf16 autocast makes CPU inference slower, not faster (casts around small
        matrix products: top-10 for all Amazon Beauty users 9.2 s against 3.9 s in
        float32, ``benchmarks/bench_sequential.py speed``), so ``amp="bf16"`` covers only
        the training steps there.
        """
        return None if device.type == "cpu" else self._amp_dtype(device)

    def _ffn(self) -> int:
        return int(self.ffn_dim) if self.ffn_dim is not None else 4 * int(self.dim)

    def _build_modules(self) -> dict:
        net = SASRecNetwork(self.n_items_, int(self.dim), int(self.max_len), int(self.n_layers),
                            int(self.n_heads), self._ffn(), float(self.dropout),
                            text_dim=int(self.text_dim_) if self.item_text == "fuse" else 0,
                            side_labels=len(self._side_labels()),
                            block_shapes=getattr(self, "block_shapes_", None))
        if net.side_emb is not None:
            net.set_side(self.side_items_)
        return {"network_": net}

    def _side_labels(self) -> list:
        """The side-information labels of ``item_side="fuse"`` ([] otherwise)."""
        if getattr(self, "item_side", "none") != "fuse":
            return []
        return list(getattr(self, "side_labels_", None) or [])

    def _encoder(self):
        enc = getattr(self, "_text_encoder_obj", None)
        if enc is None:
            enc = self._text_encoder_obj = text_encoder(self.text_encoder)
        return enc

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        if not data.has_timestamps:
            warnings.warn(
                "SequentialRecommender: the interactions have no timestamps, so each user's "
                "rows are taken in their stored order (input order; column order for a "
                "sparse matrix) as time order", MaasrecWarning, stacklevel=3)
        device = resolve_device(self.device)
        self._device_obj = device
        self.__dict__.pop("block_shapes_", None)  # set by maasrec.compress.prune only
        untrained = data.item_counts() == 0
        text, mask = self._fit_item_content(data, item_features)
        with seeded(self.random_state, device) as seed:
            net = self._build_modules()["network_"]
            net.reset_parameters(torch_generator(seed))
            init_item_rows(net, item_text=self.item_text, text=text, mask=mask,
                           untrained=untrained,
                           side_items=self.side_items_ if self.item_side == "fuse" else None)
            net.to(device)
            self.network_ = net
            self._invalidate()
            # under dp no slice is held out (early stopping on it would not be accounted)
            fit_data, validation, holdout = auto_holdout(
                "SequentialRecommender", data, validation,
                self.validation_fraction if self.dp is None else None, ordered=True,
                seed=seed)
            # validation reads the train part only
            self._set_histories(fit_data.item_indices.astype(np.int64),
                                fit_data.user_indptr.astype(np.int64))
            self._train(net, fit_data, validation, device, seed, checkpoint_dir=checkpoint_dir)
            if holdout is not None:
                self.training_log_["holdout"] = holdout
                # the held-out items are history again
                self._set_histories(data.item_indices.astype(np.int64),
                                    data.user_indptr.astype(np.int64))
        net.eval()
        self._invalidate()
        if self.item_text == "init":
            self.text_map_ = embed_cold_from_text(net, self._table_numpy(), text, mask,
                                                  untrained)
            self._invalidate()

    def _fit_item_content(self, data: Interactions, item_features
                          ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Set ``text_dim_``, ``side_labels_``, ``side_items_`` (:func:`_item_content.fit_content`)."""
        return fit_content(self, data, item_features, stacklevel=5)

    def _train(self, net: SASRecNetwork, data: Interactions, validation, device: torch.device,
               seed: int, checkpoint_dir=None) -> None:
        """Hand the next-item task (:class:`_sequences.NextItemTask`) to the trainer."""
        max_len, bs = int(self.max_len), int(self.batch_size)
        # "auto" leaves mixed precision to the trainer (CUDA only, with a gradient scaler
        # for fp16); "bf16" autocasts each step in the task, on the CPU too (no scaler)
        task = NextItemTask(net, data.item_indices.astype(np.int64),
                            data.user_indptr.astype(np.int64), max_len=max_len, batch_size=bs,
                            loss=self.loss, n_negatives=int(self.n_negatives),
                            label_smoothing=float(getattr(self, "label_smoothing", 0.0)),
                            step_amp=self._amp_dtype(device) if self.amp == "bf16" else None,
                            seed=seed, device=device)
        self.training_log_ = {**TrainingHistory().to_dict(), "n_windows": task.n_windows,
                              "epochs_run": 0}
        if task.n_windows == 0:
            logger.warning("SequentialRecommender: no user has 2 or more interactions; "
                           "nothing to train (scores come from the initial weights)")
            return
        groups = param_groups(net, float(self.weight_decay))  # none on biases, LayerNorms
        try:  # one fused kernel: much faster than the default on the CPU
            opt = torch.optim.AdamW(groups, lr=float(self.learning_rate), fused=True)
        except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch
            opt = torch.optim.AdamW(groups, lr=float(self.learning_rate))
        logger.info("SequentialRecommender: %d users, %d items, %d windows (max_len %d), "
                    "loss=%s", data.n_users, data.n_items, task.n_windows, max_len, self.loss)
        private = None
        if self.dp is not None:  # DP-SGD: Poisson-sampled users, one clipped gradient each
            from ..privacy.dp import SequentialPrivacy, dp_model_check

            private = SequentialPrivacy(dp_model_check(self), data.item_indices,
                                        data.user_indptr, max_len=max_len, seed=seed,
                                        epochs=int(self.epochs))
        try:
            with threads_for(bs * max_len * int(self.dim), device):
                hist = fit_loop(net, task.step, task.batches, epochs=int(self.epochs),
                                optimizer=opt, learning_rate=float(self.learning_rate),
                                steps_per_epoch=task.steps_per_epoch,
                                validate=self._validator(data, validation),
                                eval_every=int(self.eval_every), patience=int(self.patience),
                                device=device, amp=self.amp == "auto",
                                random_state=seed, verbose=bool(self.verbose),
                                name="SequentialRecommender", generators=task.generators,
                                checkpoint_dir=checkpoint_dir, wrap_task=private,
                                fingerprint=checkpoint_fingerprint(self, data))
        finally:
            self._invalidate()
        log = hist.to_dict()
        log.update(n_windows=task.n_windows, epochs_run=hist.epochs)
        if private is not None and private.engine is not None:
            log["privacy"] = private.engine.record()
        self.training_log_ = log

    def _validator(self, data: Interactions, validation):
        """Full-ranking ``val_metric`` on ``validation`` (None without one)."""
        if validation is None or validation.nnz == 0:
            return None

        def score(user_idx: np.ndarray):
            self._invalidate()  # the weights changed since the last validation
            return self._score_users(user_idx)

        metric, k = _parse_val_metric(self.val_metric)
        return ranking_validator(score, data.user_vocab, data.item_vocab, data, validation,
                                 k=k, metric=metric)

    # -- histories ----------------------------------------------------------------------
    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int,
                     events) -> None:
        # online update (Recommender.partial_fit): histories + seeded fine-tuning from the
        # anchor (maasrec.neural._online.sequential_fold_in)
        from ._online import sequential_fold_in

        sequential_fold_in(self, user_idx, n_new_users, events)

    # -- scoring ------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._table_cache = None

    def _table(self) -> torch.Tensor:
        """Item vectors on the device, computed once per set of weights."""
        cache = getattr(self, "_table_cache", None)
        if cache is None:
            self.network_.eval()
            with torch.no_grad():
                t = self.network_.item_table().detach().float()
            cache = self._table_cache = (t, np.ascontiguousarray(t.cpu().numpy()))
        return cache[0]

    def _table_numpy(self) -> np.ndarray:
        self._table()
        return self._table_cache[1]

    def _last_hidden(self, seqs: list[np.ndarray]) -> torch.Tensor:
        """Hidden state after the last item of each (non-empty) sequence ``[b, dim]``,
        from its latest ``max_len`` items."""
        dev = self._device()
        L = int(self.max_len)
        seqs = [np.asarray(s, dtype=np.int64)[-L:] for s in seqs]
        return self.network_.last_hidden(seqs, self._table(), self._score_amp_dtype(dev))

    def _scores_from(self, seqs: list[np.ndarray]) -> np.ndarray | torch.Tensor:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        table = self._table()
        nonempty = np.flatnonzero(lengths > 0)
        if len(nonempty) == len(seqs):
            out = self._last_hidden(seqs) @ table.T
            return out.cpu().numpy() if out.device.type == "cpu" else out
        out = np.broadcast_to(self._popularity(), (len(seqs), self.n_items_)).copy()
        if len(nonempty):
            s = self._last_hidden([seqs[i] for i in nonempty]) @ table.T
            out[nonempty] = s.cpu().numpy()
        return out

    def _check_loaded(self) -> None:
        from .._loadcheck import check_stored_histories

        check_stored_histories(self, self._load_where)
        check_loaded_content(self, self._load_where)
        if getattr(self, "block_shapes_", None) is not None:
            from ..compress.pruning import check_block_shapes

            check_block_shapes(self, self._load_where)

    # -- vectors ------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self._table_numpy()

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        seqs = self._user_histories(user_idx)
        lengths = np.array([len(s) for s in seqs])
        out = np.zeros((len(seqs), int(self.dim)), dtype=np.float32)
        nonempty = np.flatnonzero(lengths > 0)
        if len(nonempty):
            out[nonempty] = self._last_hidden([seqs[i] for i in nonempty]).cpu().numpy()
        return out

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        v = self._table_numpy()
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        return (v[item_idx] / norms[item_idx, None]) @ (v / norms[:, None]).T

    # -- new items ----------------------------------------------------------------------
    def add_items(self, item_features: ItemFeatures) -> SequentialRecommender:
        """Make new items recommendable from their text or side labels, without retraining.

        Items of ``item_features`` that the model does not know are appended to the
        catalogue. Their vectors come from their text: the fitted ridge map from text
        vectors to trained embeddings (``item_text="init"``), or the learned text
        projection with a zero id vector (``item_text="fuse"``); with
        ``item_side="fuse"`` the mean of their labels' learned vectors is added (labels
        unseen at fit time are ignored). Items without text get a zero text part (a
        :class:`~maasrec.exceptions.ColdStartWarning` says how many). Known items are
        left unchanged.

        Parameters
        ----------
        item_features : ItemFeatures
            With ``text`` (``item_text`` not ``"none"``) and/or categorical or multi-hot
            fields (``item_side="fuse"``) for the new items.

        Returns
        -------
        self

        Raises
        ------
        DataError
            ``item_text="none"`` and ``item_side="none"`` (no way to embed an unseen
            item), or the features the modes need are missing.
        """
        self._check_fitted()
        side = getattr(self, "item_side", "none") == "fuse"
        if self.item_text == "none" and not side:
            raise DataError("add_items needs item_text='init' or 'fuse', or item_side='fuse': "
                            "with neither an unseen item has no vector")
        if not isinstance(item_features, ItemFeatures):
            raise DataError(f"add_items takes ItemFeatures, got {type(item_features).__name__}")
        new_ids = item_features.vocab.ids[self.item_vocab_.index(item_features.vocab.ids,
                                                                 unknown="ignore") < 0]
        if len(new_ids) == 0:
            return self
        vocab = self.item_vocab_.extend(new_ids.tolist())
        new_vocab = type(vocab)(vocab.ids[self.n_items_:], name=vocab.name)
        net = self.network_
        new_side, n_text = add_item_content(
            net, item_features, new_vocab, item_text=self.item_text, encoder=self._encoder,
            side_labels=self.side_labels_ if side else None,
            text_map=getattr(self, "text_map_", None))
        if side:
            self.side_items_ = sp.vstack([self.side_items_, new_side]).tocsr()
            net.set_side(self.side_items_)
        self.item_vocab_ = vocab
        self.seen_ = sp.csr_matrix((self.seen_.data, self.seen_.indices, self.seen_.indptr),
                                   shape=(self.seen_.shape[0], len(vocab)))
        self._pop_cache = None
        self._invalidate()
        logger.info("SequentialRecommender: added %d items (%d with text, %d with side "
                    "labels)", len(new_ids), n_text,
                    int((np.diff(new_side.indptr) > 0).sum()) if side else 0)
        return self

    # -- persistence ----------------------------------------------------------------------
    def _load_modules(self, names, weights_path) -> None:
        super()._load_modules(names, weights_path)
        self._invalidate()

    def __getstate__(self):  # copies/pickles do not carry caches or the text model
        state = self.__dict__.copy()
        for k in ("_table_cache", "_text_encoder_obj", "_device_obj"):
            state.pop(k, None)
        return state

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__getstate__().items():
            setattr(new, k, copy.deepcopy(v, memo))
        return new
