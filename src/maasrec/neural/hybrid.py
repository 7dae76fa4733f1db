"""HybridRecommender: item text, ids and features + user histories -> fusion -> scorer -> top-k.

The model is two towers and a scorer:

- the **item tower** turns each item's modalities -- a learned id embedding, the frozen
  vector of its text from a pretrained language model (:class:`~maasrec.encoders.TextEncoder`,
  computed once through its on-disk cache), its categorical/multi-hot/numeric features --
  into one vector with a fusion module (:mod:`maasrec.fusion`);
- the **user tower** turns a user's history (the pooled vectors of the items they
  interacted with, from a second "history" item tower by default, through a tanh
  layer), and optionally a user id embedding and user features, into one vector; cold
  users are served from their history alone;
- a **scorer** (:mod:`maasrec.scorers`) scores users against items: a dot product (MF,
  the default; approximate retrieval works), NeuMF, or target attention over the history.

Only these light parts train (the language model stays frozen), with one loop
(:func:`maasrec.training.fit_loop`) whatever the loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..base import Recommender
from ..data.features import ItemFeatures, UserFeatures
from ..data.interactions import Interactions
from ..device import resolve_device
from ..encoders import TextEncoder
from ..exceptions import DataError, NotFittedError
from ..training import NonFiniteLossError, checkpoint_fingerprint, seed_from
from ..training.history import deprecated_log_alias
from ._holdout import auto_holdout
from ._hybrid_config import (
    ITEM_MODALITIES,
    TrainSettings,
    UserOptions,
    check_loaded_config,
    fit_config,
    has_history_modality,
    parse_spec,
    spec_list,
    validate_params,
)
from ._hybrid_items import add_items as add_new_items
from ._hybrid_scorers import scoring_for
from ._hybrid_task import HybridTraining
from ._hybrid_towers import (
    UserEncoder,
    build_modules,
    csr_rows,
    encode_texts,
    item_config,
    user_config,
    with_feature_data,
)

__all__ = ["HybridRecommender", "NeuMF"]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class _FitRun:
    """The arguments of one :meth:`HybridRecommender.fit` call that ``_fit`` reads."""

    callbacks: tuple = ()
    refit: bool = False


class HybridRecommender(Recommender):
    """A neural recommender that fuses pretrained text vectors, ids and features.

    ``HybridRecommender()`` with no arguments is an id + text model when the items
    have text (``fit(X, item_features=...)`` with a text block: each item's text is
    encoded once by all-MiniLM-L6-v2 through the embedding cache), and an id-only model
    otherwise. Users are represented by their history (so users unseen at fit time are
    served by ``recommend(history=...)``), items by their fused modalities (so items
    added after fit with :meth:`add_items` are recommended from their text and
    features, without retraining).

    Parameters
    ----------
    item_encoders : "auto", list or dict, default "auto"
        Item modalities: ``"id"`` (a learned embedding per item), ``"text"`` (the frozen
        language-model vector of the item text; the entry may be a
        :class:`~maasrec.encoders.TextEncoder` to choose the model, e.g.
        ``["id", TextEncoder("my/model")]`` or ``{"id": None, "text": TextEncoder(...)}``),
        ``"features"`` (categorical, multi-hot and numeric item features; a dict of
        options selects fields: ``{"features": {"multi_hot": ["genres"]}}``).
        ``"auto"``: ``["id", "text"]`` when the item features have text, else ``["id"]``.
    user_encoders : "auto", list or dict, default "auto"
        User modalities: ``"history"`` (pooled item vectors of the user's items),
        ``"id"`` (a learned embedding per user), ``"features"`` (user features).
        ``"auto"``: ``["history"]``. Without "history", users unseen at fit time cannot
        be served (``recommend(history=...)`` raises).
    fusion : {"residual", "gated", "concat", "attention"} or dict, default "residual"
        How several modalities become one vector. ``"residual"``: the id embedding plus
        a linear projection of each other modality (``v = e_id + W_text x_text + ...``;
        options ``dropout`` on the projected content, ``init_scale`` of ``W``); an item
        without a training interaction (or added later) is its content part alone. The
        others are :mod:`maasrec.fusion` modules; a dict adds options:
        ``{"kind": "attention", "num_heads": 2}``.
    scorer : {"dot", "neumf", "attention"} or dict, default "dot"
        :class:`~maasrec.scorers.DotScorer` (MF; approximate retrieval with
        :class:`~maasrec.rankers.FaissRetriever` works), :class:`~maasrec.scorers.NeuMFScorer`
        (``{"kind": "neumf", "mlp_layers": [64, 32, 16]}``) or
        :class:`~maasrec.scorers.AttentionScorer` (the candidate attends over the
        user's history items; user "history" is then not pooled).
    loss : {"softmax", "sampled_softmax", "bpr", "bce", "mse"}, default "softmax"
        ``"softmax"``: full cross-entropy over the catalogue of every item of a user
        given the (partly hidden) rest of their history -- the multinomial likelihood of
        Mult-DAE, batches of users. The others train on batches of interactions, each
        positive against negatives from ``negative_sampler`` with the positive itself
        removed from the user's history; ``"mse"`` fits the interaction values (ratings).
    dim : int, default 128
        Size of the item and user vectors.
    negative_sampler : {"uniform", "popularity", "in_batch"}, default "uniform"
        For the pairwise losses. Popularity and in-batch negatives get the logQ
        correction under ``"sampled_softmax"``.
    n_negatives : int, default 4
        Negatives per positive (uniform and popularity sampling).
    epochs : int, default 30
        Maximum number of epochs (passes over the users for ``"softmax"``, over the
        interactions otherwise); the cosine schedule decays over all of them.
    batch_size : int, optional
        Users (``"softmax"``) or interactions per step. Default: 64 users, or
        ``nnz // 200`` interactions clipped to [256, 4096].
    learning_rate : float, default 3e-3
    weight_decay : float, default 1e-5
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
    lr_schedule : {"constant", "cosine", "linear"}, default "cosine"
    warmup : float, default 0.0
        Warm-up steps (a fraction of all steps when < 1).
    clip_grad_norm : float, optional
    history_dropout : float, default 0.5
        Share of a user's history hidden from the user tower at each step (denoising:
        the model learns to predict items from the rest; Mult-DAE uses 0.5).
    id_dropout : float, default 0.05
        Share of items (and users) whose id embedding is hidden at each step, so the
        text/feature path learns to stand alone -- what cold items and cold users get
        (the DropoutNet idea). More dropout serves new items better and known items
        worse.
    history_pooling : {"sqrt", "mean"}, default "sqrt"
        Sum of the history item vectors divided by ``sqrt(n)`` (Mult-DAE's
        normalisation) or by ``n``.
    item_bias : bool, default True
        A learned bias per item (popularity) in the scorer; cold items get the mean.
    patience : int, optional, default 10
        Stop after this many validations without a better NDCG@10 on ``validation``
        (given to :meth:`fit`, or held out by ``validation_fraction``) and restore the
        best epoch. None never stops early.
    eval_every : int, default 1
        Epochs between validations.
    max_history : int, optional
        Attention scorer: the most recent items attended to (default 200).
    tie_history : bool, default False
        Whether the pooled user history uses the scored item vectors themselves (tied:
        scores are ``pool(history) W V^T`` with the same ``V`` on both sides). False
        gives the history its own item tower -- the same modalities (id, text,
        features) with separate weights -- whose vectors (``history_repr_``) are pooled
        instead (the encoder/decoder split of FISM and Mult-DAE); items added with
        :meth:`add_items` get a history vector from their text/features too. Ignored
        without a pooled "history" user modality (and by the attention scorer).
    history_activation : {"linear", "tanh"}, default "tanh"
        Applied to the pooled history before the user tower's linear layer; "tanh" makes
        the user tower a one-hidden-layer encoder as in Mult-DAE. An empty history pools
        to zero either way.
    random_state : int, optional
    device : str or torch.device, optional
        See :func:`maasrec.resolve_device`; mixed precision on CUDA.
    verbose : bool, default False
        A tqdm progress bar over the training epochs with the loss and the validation
        metric (:class:`~maasrec.training.ProgressCallback`; also one over the item-text
        encoding); nothing is printed, the epoch lines go to ``logging`` either way.
    validation_fraction : float or None, default 0.1
        When :meth:`fit` gets no ``validation``: a random ``validation_fraction`` of the
        interactions of every user with 5 or more (at least one each;
        :func:`maasrec.data.split.holdout_validation`, seeded from ``random_state``) is
        held out, the model trains on the rest and stops early on it (``patience``),
        then is refitted on all the data with the same schedule, stopped at that best
        epoch (a second, shorter fit). ``training_log_`` is the refit's;
        ``training_log_["holdout"]`` (and the log) says how many interactions were held
        out, the best epoch and the held-out fit's curve (``first_fit``). None or 0, and
        ``loss="mse"`` (the validation metric ranks; a rating fit stopped on it fit the
        ratings worse): train all ``epochs`` on everything. Ignored under ``dp``.
    dp : dict, optional
        Train with user-level differential privacy (DP-SGD through Opacus, extra
        ``privacy``): ``{"epsilon": 8}`` (the noise is calibrated for ``epochs``) or
        ``{"noise_multiplier": 1.0}``, plus optional ``"delta"`` (default
        ``1 / n_users``), ``"max_grad_norm"`` (per-user clipping, default 1.0),
        ``"batch_size"`` (expected users per step) and ``"accountant"`` (``"rdp"`` or
        ``"prv"``). All of one user's interactions are one unit; no validation slice is
        held out; the spent epsilon per epoch is in ``training_log_["privacy"]`` and is
        saved with the model. What this protects and what it does not:
        :mod:`maasrec.privacy.dp`.

    Attributes
    ----------
    item_repr_ : np.ndarray of float32, shape (n_items, dim)
        Item vectors (eval mode), the input of the scorer; rows of items added with
        :meth:`add_items` come from their text/features only.
    user_repr_ : np.ndarray of float32, shape (n_users, dim)
        Vectors of the users known at fit time (not for the attention scorer).
    history_repr_ : np.ndarray of float32, shape (n_items, dim)
        With ``tie_history=False`` only: the vectors of the history tower, pooled into
        the user vectors (cold users and items added later included).
    item_has_id_ : np.ndarray of bool, shape (n_items,)
        Items whose id embedding is used (False: no training interaction, or added
        later).
    modalities_ : dict
        The item and user modalities in use.
    training_log_ : dict
        The fitted log: :meth:`TrainingHistory.to_dict()
        <maasrec.training.TrainingHistory.to_dict>` (losses, validation metric,
        seconds and learning rate per epoch, best epoch, steps) plus ``holdout`` when a
        validation slice was held out. ``history_`` is its deprecated alias (reading it
        warns; removed in the next release).
    item_tower_, user_tower_, scorer_ : torch.nn.Module
    history_tower_ : torch.nn.Module or None
        The item tower of the user histories (``tie_history=False``), else None.

    Notes
    -----
    **Text.** Item texts are encoded once with the frozen language model (through the
    :class:`~maasrec.encoders.TextEncoder` disk cache) and only the fusion layers on top
    train, so a MovieLens-1M model trains in minutes on a CPU. Items without text are
    masked (their text modality is missing; the fusion gates ignore it).

    **Saving.** ``save`` writes the trained weights and the item/user vectors; the
    language model is referenced by name and fingerprint (``text_fingerprint_``), not
    copied, and the per-item text vectors are not stored either (only the fused item
    vectors are). A loaded model therefore recommends offline even when the language
    model is not available; :meth:`add_items` with text needs it again (and checks the
    fingerprint).

    **Unknown items in a history** raise :class:`~maasrec.exceptions.UnknownIdError`
    (as every maasrec model does); add them first with :meth:`add_items`. An empty
    history gets the most popular items.

    **Determinism.** On the CPU the same seed, data and thread count give the same model.

    **Defaults.** How the defaults were chosen (MovieLens 1M and 100K validation runs):
    :doc:`/neural` ("Hybrid model: how the defaults were chosen").

    **Online updates.** ``partial_fit`` fine-tunes the towers and scorer for five seeded
    epochs on the known users touched since its first call plus twice as many replayed
    users (from the weights of that first call, so batching does not change the result;
    not for models with item text, whose fit-time text vectors are not kept), then
    recomputes the item vectors and the users' representations from the merged
    histories; new users are represented like ``history=`` users, new items come in
    through :meth:`add_items`. Dot and NeuMF scorers with a "history" user modality only
    (the attention scorer, and new users of a model with ``user_bias``, are refused).
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "dim": ("choice", [64, 128, 256]),
        "learning_rate": ("float", 3e-4, 1e-2, "log"),
        "weight_decay": ("float", 1e-7, 1e-3, "log"),
        "id_dropout": ("float", 0.0, 0.5),
        "history_dropout": ("float", 0.0, 0.7),
        "n_negatives": ("int", 1, 16, "log"),
    }

    def __init__(self, item_encoders: Any = "auto", user_encoders: Any = "auto",
                 fusion: Any = "residual", scorer: Any = "dot", loss: str = "softmax",
                 dim: int = 128, negative_sampler: str = "uniform", n_negatives: int = 4,
                 epochs: int = 30, batch_size: int | None = None,
                 learning_rate: float = 3e-3, weight_decay: float = 1e-5,
                 optimizer: str = "adam", lr_schedule: str = "cosine", warmup: float = 0.0,
                 clip_grad_norm: float | None = None, history_dropout: float = 0.5,
                 id_dropout: float = 0.05, history_pooling: str = "sqrt",
                 item_bias: bool = True, patience: int | None = 10, eval_every: int = 1,
                 max_history: int | None = None, tie_history: bool = False,
                 history_activation: str = "tanh", random_state: int | None = None, device: Any = None, verbose: bool = False,
                 validation_fraction: float | None = 0.1, dp: dict | None = None):
        self.dp = dp
        self.validation_fraction = validation_fraction
        self.item_encoders = item_encoders
        self.user_encoders = user_encoders
        self.fusion = fusion
        self.scorer = scorer
        self.loss = loss
        self.dim = dim
        self.negative_sampler = negative_sampler
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.clip_grad_norm = clip_grad_norm
        self.history_dropout = history_dropout
        self.id_dropout = id_dropout
        self.history_pooling = history_pooling
        self.item_bias = item_bias
        self.patience = patience
        self.eval_every = eval_every
        self.max_history = max_history
        self.tie_history = tie_history
        self.history_activation = history_activation
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __getstate__(self) -> dict:
        # the text encoder holds a disk cache (with locks): rebuilt from params on demand
        state = self.__dict__.copy()
        state.pop("_text_encoder_obj", None)
        return state

    # -- parameters -------------------------------------------------------------------------
    @property
    def supports_history(self) -> bool:  # type: ignore[override]
        """bool: whether users unseen at fit time can be served (a "history" user modality)."""
        return has_history_modality(self)

    def _implicit_feedback(self) -> bool:
        # loss="mse" regresses the values (ratings): every value is kept
        return self.loss != "mse"

    def _validate_params(self) -> None:
        validate_params(self)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X, item_features: ItemFeatures | None = None,
            user_features: UserFeatures | None = None, *, validation=None,
            callbacks: Sequence | None = None, checkpoint_dir=None) -> HybridRecommender:
        """Fit the model.

        Parameters
        ----------
        X : Interactions, pandas.DataFrame or scipy.sparse matrix
        item_features : ItemFeatures, optional
            Item text and features (aligned to the items by id; items without text are
            masked).
        user_features : UserFeatures, optional
            Used when ``user_encoders`` has "features".
        validation : Interactions, optional
            Held-out interactions: NDCG@10 (full ranking) after every ``eval_every``
            epochs drives early stopping, and the best epoch is kept.
        callbacks : list of callables, optional
            ``fn(epoch, logs) -> bool`` after each epoch (``logs``: loss, lr, seconds,
            ``ndcg@10`` when validated); True stops training. Not saved with the model.
        checkpoint_dir : str or Path, optional
            Write a training checkpoint there after every epoch and resume from the one
            found there (:class:`maasrec.training.Trainer`): a fit killed mid-way and
            rerun with the same directory ends with the same weights (bit-identical on
            the CPU). A checkpoint of another model, other parameters or other data is
            refused with :class:`~maasrec.exceptions.DataError`.

        Returns
        -------
        self

        Raises
        ------
        NonFiniteLossError
            The loss became NaN/inf; the message names the epoch and step. The model is
            left fitted with the best checkpoint when its vectors are finite.
        """
        self._run = _FitRun(tuple(callbacks or ()))
        try:
            super().fit(X, item_features, user_features, validation=validation,
                        checkpoint_dir=checkpoint_dir)
            hold = self.training_log_.get("holdout")
            if hold and hold["rows"]:
                self._refit(X, item_features, user_features, checkpoint_dir, hold)
            return self
        finally:
            self.__dict__.pop("_run", None)

    def _refit(self, X, item_features, user_features, checkpoint_dir, hold: dict) -> None:
        """After the held-out fit: all the data, the same schedule, stopped at its best epoch.

        On a validation split of MovieLens 100K (per-user random) this scored NDCG@10
        0.2055 against 0.1991 for keeping the model trained without the holdout (see
        ``benchmarks/bench_defaults.py``), for 1.7x the fit time.
        """
        first = self.training_log_
        best = int(first.get("best_epoch") or len(first.get("losses", [])) or 1)
        logger.info("%s: refitting on all %d interactions for the best %d epoch(s) of the "
                    "held-out fit", type(self).__name__, hold["rows"] + hold["train_rows"], best)
        self._run = _FitRun((*self._run.callbacks, lambda epoch, logs: epoch >= best),
                            refit=True)
        super().fit(X, item_features, user_features, checkpoint_dir=None
                    if checkpoint_dir is None else Path(checkpoint_dir) / "refit")
        self.training_log_["holdout"] = dict(hold, best_epoch=best, refit=True, first_fit={
            k: first.get(k) for k in ("losses", "metrics", "best_epoch", "stopped_early")})

    def _text_encoder(self) -> TextEncoder:
        """The text encoder named by ``item_encoders`` (default all-MiniLM-L6-v2)."""
        enc = getattr(self, "_text_encoder_obj", None)
        if enc is not None:
            return enc
        spec = {} if (isinstance(self.item_encoders, str) and self.item_encoders == "auto") \
            else spec_list(self.item_encoders, ITEM_MODALITIES, "item_encoders")
        given = spec.get("text")
        if isinstance(given, TextEncoder):
            enc = given
        elif isinstance(given, str):
            enc = TextEncoder(given)
        else:
            enc = TextEncoder()
        self._text_encoder_obj = enc
        return enc

    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        device = resolve_device(self.device)
        seed = seed_from(self.random_state)
        run = getattr(self, "_run", None) or _FitRun()
        # early stopping follows a ranking metric: not a fit of rating values
        # under dp no slice is held out (early stopping on it would not be accounted)
        fraction = (None if self.loss == "mse" or run.refit or self.dp is not None
                    else self.validation_fraction)
        data, validation, holdout = auto_holdout(type(self).__name__, data, validation,
                                                 fraction, ordered=False, seed=seed)
        spec = parse_spec(self)
        item_spec, user_spec = spec.resolve(item_features, user_features)
        scoring = scoring_for(spec.scorer.kind)
        scoring.check_user_modalities(user_spec)
        R = sp.csr_matrix(data.to_csr(binary=False), dtype=np.float32)
        R.sort_indices()
        self.item_has_id_ = np.asarray((R != 0).sum(axis=0)).ravel() > 0
        self.text_fingerprint_ = self.text_model_ = None
        for stale in ("history_order_", "history_indptr_", "user_repr_", "item_repr_",
                      "history_repr_"):
            self.__dict__.pop(stale, None)
        feats = None
        if item_features is not None:
            if not isinstance(item_features, ItemFeatures):
                raise DataError(f"item_features must be an ItemFeatures, got "
                                f"{type(item_features).__name__}")
            feats = item_features.align(data.item_vocab)
        item_cfg, text = item_config(item_spec, feats, int(self.dim),
                                     lambda: self._fit_texts(feats))
        user_cfg, user_feats = user_config(user_spec, user_features, data.user_vocab,
                                           int(self.dim))
        self._scoring = scoring
        self.modalities_ = {"item": list(item_cfg), "user": list(user_cfg)}
        self.config_ = fit_config(spec, scoring, item_cfg, user_cfg, shape=R.shape,
                                  dim=int(self.dim), seed=int(seed % (2**31)),
                                  tie_history=bool(self.tie_history),
                                  item_bias=bool(self.item_bias), loss=self.loss)
        modules = self._install_modules(device, {"item": (feats, item_spec.get("features")),
                                                 "user": (user_feats, user_spec.get("features"))})
        training = HybridTraining(
            self.item_tower_, self.history_tower_, self._users(), self.scorer_, scoring, R,
            scoring.ordered_history(data, device), TrainSettings.of(self), device,
            modalities=self.modalities_, has_id=self.item_has_id_, text=text)
        self.training_log_ = {}
        try:
            hist = training.fit(modules, seed=seed, data=data, validation=validation,
                                callbacks=list(run.callbacks),
                                fingerprint=checkpoint_fingerprint(self, data),
                                checkpoint_dir=checkpoint_dir)
            self.training_log_ = hist.to_dict()
            if holdout is not None:
                self.training_log_["holdout"] = holdout
            if training.privacy is not None:
                self.training_log_["privacy"] = training.privacy.record()
            self._finalize(training)
        except NonFiniteLossError as exc:
            self.training_log_ = exc.history.to_dict() if exc.history is not None else {}
            try:
                self._finalize(training)
                ok = np.isfinite(self.item_repr_).all() and (
                    self.user_repr_ is None or np.isfinite(self.user_repr_).all())
            except Exception:  # pragma: no cover - a broken model cannot be finalised
                ok = False
            if not ok:
                self._forget_fit()
            raise

    def _fit_texts(self, feats: ItemFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Encode the fit's item texts with a fresh text encoder; record its fingerprint."""
        self._text_encoder_obj = None
        enc = self._text_encoder()
        text = encode_texts(enc, feats, verbose=bool(self.verbose))
        self.text_fingerprint_ = enc.cache_key()["fingerprint"]
        self.text_model_ = str(enc.cache_key()["model"])
        return text

    def _install_modules(self, device, features: dict) -> nn.ModuleDict:
        """Build the towers and scorer of ``config_`` with the fit's feature data (side ->
        (aligned features, options)) on ``device``, as the fitted modules."""
        built = with_feature_data(self._build_modules(), features, int(self.dim))
        self.item_tower_, self.scorer_ = built["item_tower_"], built["scorer_"]
        self.user_tower_ = built.get("user_tower_")
        self.history_tower_ = built.get("history_tower_")
        modules = nn.ModuleDict({"item": self.item_tower_, "scorer": self.scorer_})
        if self.user_tower_ is not None:
            modules["user"] = self.user_tower_
        if self.history_tower_ is not None:
            modules["history"] = self.history_tower_
        return modules.to(device)

    def _build_modules(self) -> dict:
        return build_modules(self.config_)

    def _users(self) -> UserEncoder:
        """The user side: the user tower read with the current pooling options."""
        return UserEncoder(getattr(self, "user_tower_", None), UserOptions.of(self))

    def _dev(self) -> torch.device:
        return getattr(self, "_device", None) or torch.device("cpu")

    def _finalize(self, training: HybridTraining) -> None:
        """Item and user vectors in eval mode (what scoring and saving use); modules on
        the CPU."""
        modules = [m for m in (self.item_tower_, self.scorer_, self.user_tower_,
                               self.history_tower_) if m is not None]
        for m in modules:
            m.eval()
        for name, value in training.fitted_state().items():
            setattr(self, name, value)
        for m in modules:
            m.to("cpu")
        self._device = torch.device("cpu")
        self._vectors_cache = None

    # -- load checks ----------------------------------------------------------------------
    def _check_loaded(self) -> None:
        from .._loadcheck import check_dense

        where = self._load_where
        n_items, n_users = self.n_items_, self.n_users_
        cfg, d = check_loaded_config(where, getattr(self, "config_", None), n_items, n_users)
        self._scoring = scoring_for(cfg["scorer"], f"{where}: config_.scorer")
        self._loaded_float("item_repr_", (n_items, d))
        if getattr(self, "history_repr_", None) is not None:
            self._loaded_float("history_repr_", (n_items, d))
        self._scoring.check_loaded(self, n_users, n_items, d)
        has_id = getattr(self, "item_has_id_", None)
        check_dense(where, "item_has_id_", has_id, shape=(n_items,), kind="b")

    # -- scoring --------------------------------------------------------------------------
    def _V(self) -> torch.Tensor:
        return torch.from_numpy(self.item_repr_)

    def _item_idx_all(self) -> torch.Tensor:
        return torch.arange(len(self.item_repr_))

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx, dtype=np.int64)
        with torch.no_grad():
            return self._scoring.score_users(self, user_idx)

    def _history_user(self, history: sp.csr_matrix) -> torch.Tensor:
        """The pooled user representation of users given by their history (CSR)."""
        H = sp.csr_matrix(history)
        H.sort_indices()
        C = getattr(self, "history_repr_", None)
        V = self._V() if C is None else torch.from_numpy(C)
        rows, cols = csr_rows(H)
        cold = torch.full((H.shape[0],), -1, dtype=torch.long)
        return self._scoring.user_repr(self._users(), V, rows, cols, H.shape[0], cold)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        if not self.supports_history:
            raise NotImplementedError(
                "this HybridRecommender has no 'history' user modality, so it cannot score "
                "users unseen at fit time; add 'history' to user_encoders")
        with torch.no_grad():
            return self._scoring.score_history(self, history)

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        V = self.item_repr_
        norms = np.linalg.norm(V, axis=1)
        norms[norms == 0] = 1.0
        q = V[item_idx] / norms[item_idx, None]
        return (q @ (V / norms[:, None]).T).astype(np.float32)

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx):
        # leave-one-out history contributions, text similarity, modality split (maasrec/neural/_explain.py)
        from ._explain import hybrid_terms

        return hybrid_terms(self, row, item_idx, user_idx)

    # -- vectors for approximate retrieval (dot scorer) -----------------------------------
    def _item_vectors(self) -> np.ndarray | None:
        return self._scoring.item_vectors(self)

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray | None:
        return self._scoring.user_vectors(self, np.asarray(user_idx, dtype=np.int64))

    def _history_vectors(self, history: sp.csr_matrix) -> np.ndarray | None:
        if not self.supports_history:
            return None
        return self._scoring.history_vectors(self, history)

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int) -> None:
        # online update (Recommender.partial_fit): users re-represented from their
        # histories (maasrec.neural._online.hybrid_fold_in)
        from ._online import hybrid_fold_in

        hybrid_fold_in(self, user_idx, n_new_users)

    # -- cold items ---------------------------------------------------------------------
    def add_items(self, item_features: ItemFeatures) -> HybridRecommender:
        """Make new items recommendable from their text and features, without retraining.

        The new items' vectors come from the item tower with their id modality missing
        (the path that ``id_dropout`` trained): their text vector (encoded now with the
        same language model, checked by fingerprint) and their features. Their scorer
        bias is the mean bias. Ids already known are left unchanged.

        Parameters
        ----------
        item_features : ItemFeatures
            Rows for the new items (other rows are ignored). Needs the modalities the
            model uses besides "id" (text and/or features); a new item with none of them
            gets the zero vector (scored by its bias only) and a warning.

        Returns
        -------
        self

        Raises
        ------
        NotFittedError, DataError
            Not fitted; the model has only the "id" item modality (nothing to build new
            items from); wrong input.
        ModelFormatError
            The text encoder now resolves to a different model than at fit time.
        """
        self._check_fitted()
        add_new_items(self, item_features)  # maasrec/neural/_hybrid_items.py
        return self

    @property
    def training_history(self) -> dict:
        """dict: losses and validation metric per epoch, best epoch (see ``training_log_``)."""
        if not self.is_fitted:
            raise NotFittedError("this HybridRecommender is not fitted yet")
        return dict(self.training_log_)

    history_ = deprecated_log_alias("history_")


class NeuMF(HybridRecommender):
    """Neural collaborative filtering (He et al., 2017) on the hybrid machinery.

    :class:`HybridRecommender` with a :class:`~maasrec.scorers.NeuMFScorer` and, by
    default, the paper's setup: learned user and item id embeddings (GMF and MLP
    halves), pointwise log loss with 4 uniform negatives per positive. Every
    :class:`HybridRecommender` parameter applies; item text or features can be added
    with ``item_encoders``.

    Parameters
    ----------
    mlp_layers : sequence of int, default (64, 32, 16)
        Hidden sizes of the MLP tower.
    item_encoders : default ("id",)
    user_encoders : default ("id", "history")
        The paper's model has user ids only; the history modality is added so that
        users unseen at fit time can be served (id dropout trains that path). Use
        ``("id",)`` for the plain paper model. The history pools the item vectors
        themselves, without an activation (``tie_history=True``,
        ``history_activation="linear"``: how NeuMF was measured).
    loss : default "bce"
    learning_rate : default 3e-3
        With the default batches of about ``nnz / 100`` interactions (16x the paper's 256
        on MovieLens 1M), 1e-3 learned too slowly (validation NDCG@10 0.108 vs 0.138
        after two epochs on MovieLens 1M).
    patience : int, optional, default 10
        Its constant learning rate makes the validation NDCG@10 jump between epochs
        (+-0.005 to 0.01): with the earlier 5, the held-out fits of
        ``benchmarks/bench_defaults.py`` stopped at epoch 19 (MovieLens 100K) and 17
        (latest-small) while their validation curves were still rising.
    dim, n_negatives, epochs, ... :
        As :class:`HybridRecommender` (``dim`` 64 = 32 GMF + 32 MLP coordinates).
    dp : dict, optional
        User-level DP-SGD, as :class:`HybridRecommender`'s ``dp``.
    verbose : bool, default False
        A tqdm progress bar over the training epochs with the loss and the validation
        metric (:class:`~maasrec.training.ProgressCallback`); nothing is printed, the
        epoch lines go to ``logging`` either way.

    Attributes
    ----------
    training_log_ : dict
        The fitted log, as :class:`HybridRecommender`'s (``history_`` is its
        deprecated alias).

    See Also
    --------
    HybridRecommender : ``HybridRecommender(scorer="neumf")`` is the same model with the
        hybrid defaults.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "dim": ("choice", [16, 32, 64, 128]),
        "learning_rate": ("float", 3e-4, 1e-2, "log"),
        "weight_decay": ("float", 1e-7, 1e-3, "log"),
        "id_dropout": ("float", 0.0, 0.5),
        "n_negatives": ("int", 1, 16, "log"),
    }

    def __init__(self, mlp_layers: Sequence[int] = (64, 32, 16), item_encoders: Any = ("id",),
                 user_encoders: Any = ("id", "history"), fusion: Any = "gated",
                 loss: str = "bce", dim: int = 64, negative_sampler: str = "uniform",
                 n_negatives: int = 4, epochs: int = 30, batch_size: int | None = None,
                 learning_rate: float = 3e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", lr_schedule: str = "constant", warmup: float = 0.0,
                 clip_grad_norm: float | None = None, history_dropout: float = 0.0,
                 id_dropout: float = 0.2, history_pooling: str = "sqrt",
                 item_bias: bool = False, patience: int | None = 10, eval_every: int = 1,
                 random_state: int | None = None, device: Any = None, verbose: bool = False,
                 validation_fraction: float | None = 0.1, dp: dict | None = None):
        self.mlp_layers = mlp_layers
        super().__init__(item_encoders=item_encoders, user_encoders=user_encoders,
                         fusion=fusion, scorer="neumf", loss=loss, dim=dim,
                         negative_sampler=negative_sampler, n_negatives=n_negatives,
                         epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         weight_decay=weight_decay, optimizer=optimizer,
                         lr_schedule=lr_schedule, warmup=warmup, clip_grad_norm=clip_grad_norm,
                         history_dropout=history_dropout, id_dropout=id_dropout,
                         history_pooling=history_pooling, item_bias=item_bias,
                         patience=patience, eval_every=eval_every, tie_history=True,
                         history_activation="linear", random_state=random_state,
                         device=device, verbose=verbose,
                         validation_fraction=validation_fraction, dp=dp)

    @property
    def scorer(self):  # type: ignore[override]
        """dict: the NeuMF scorer built from ``mlp_layers``."""
        return {"kind": "neumf", "mlp_layers": list(self.mlp_layers)}

    @scorer.setter
    def scorer(self, value) -> None:  # the base __init__ assigns it; NeuMF derives it
        pass
