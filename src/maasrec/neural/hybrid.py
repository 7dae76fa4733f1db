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
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..data.features import ItemFeatures, UserFeatures
from ..data.interactions import Interactions
from ..device import resolve_device
from ..encoders import FeatureEncoder, IdEmbedding, TextEncoder
from ..exceptions import DataError, MaasrecWarning, ModelFormatError, NotFittedError
from ..fusion import FUSIONS, make_fusion
from ..scorers import SCORERS, DotScorer, make_scorer
from ..training import (
    LOSSES,
    OPTIMIZERS,
    SAMPLERS,
    SCHEDULES,
    NonFiniteLossError,
    TrainingHistory,
    bce_loss,
    bpr_loss,
    checkpoint_fingerprint,
    fit_loop,
    make_sampler,
    mse_loss,
    ranking_validator,
    sampled_softmax_loss,
    seed_from,
    softmax_loss,
    threads_for,
    torch_generator,
)
from ..training.history import deprecated_log_alias
from ._holdout import auto_holdout, check_validation_fraction

__all__ = ["HybridRecommender", "NeuMF"]

logger = logging.getLogger(__name__)

ITEM_MODALITIES = ("id", "text", "features")
USER_MODALITIES = ("history", "id", "features")
POOLINGS = ("sqrt", "mean")
HISTORY_ACTIVATIONS = ("linear", "tanh")
_SCORE_BYTES = 64 * 2**20
FUSION_KINDS = (*FUSIONS, "residual")


# ======================================================================================
# towers
# ======================================================================================

def _sub_seed(random_state: int | None, k: int) -> int | None:
    return None if random_state is None else (random_state + 7919 * k) % (2**31)


class _Tower(nn.Module):
    """Modalities -> one ``[m, dim]`` vector per row (fusion of the present modalities).

    ``config`` (JSON) names the modalities: ``{"id": {}, "text": {"input_dim": 384},
    "features": <FeatureEncoder config without n/dim>, "history": {}}``. The "history"
    and "text" modalities arrive as vectors (pooled item vectors, frozen text vectors);
    "id" and "features" are looked up by row. One modality of the output size passes
    through a linear layer (id: as is), several are fused.
    """

    def __init__(self, n: int, dim: int, config: Mapping[str, Any], fusion: str,
                 fusion_options: Mapping[str, Any], random_state: int | None):
        super().__init__()
        self.n, self.dim = int(n), int(dim)
        self.config = {k: dict(v) for k, v in config.items()}
        self.fusion_kind = fusion
        self.fusion_options = dict(fusion_options)
        self.random_state = random_state
        self.encoders = nn.ModuleDict()
        dims: dict[str, int] = {}
        for k, (name, cfg) in enumerate(self.config.items()):
            seed = _sub_seed(random_state, k + 1)
            if name == "id":
                self.encoders["id"] = IdEmbedding(self.n, self.dim, random_state=seed,
                                                  init_std=cfg.get("init_std"))
                dims["id"] = self.dim
            elif name == "features":
                self.encoders["features"] = FeatureEncoder(self.n, self.dim, random_state=seed,
                                                           **cfg)
                dims["features"] = self.dim
            elif name in ("text", "history"):
                dims[name] = int(cfg.get("input_dim", self.dim))
            else:  # pragma: no cover - configs are built by HybridRecommender
                raise ModelFormatError(f"unknown modality {name!r} in a tower config")
        self.input_dims = dims
        self.fusion = None
        self.single = None
        self.residual = None
        if fusion == "residual" and len(dims) > 1:
            opts = dict(self.fusion_options)
            self.content_dropout = float(opts.pop("dropout", 0.0))
            init_scale = float(opts.pop("init_scale", 1.0))
            if opts:
                raise DataError(f"fusion 'residual' takes options 'dropout' and 'init_scale', "
                                f"got {sorted(opts)}")
            with torch.random.fork_rng(devices=[]):
                if random_state is not None:
                    torch.manual_seed(random_state)
                self.residual = nn.ModuleDict()
                for name, d in dims.items():
                    if name in ("text", "history"):
                        lin = nn.Linear(d, self.dim)
                        with torch.no_grad():
                            lin.weight.mul_(init_scale)
                            lin.bias.zero_()
                        self.residual[name] = lin
                    elif name == "features":
                        self.residual[name] = nn.Identity()
        elif len(dims) == 1:
            name, d = next(iter(dims.items()))
            if name != "id":
                with torch.random.fork_rng(devices=[]):
                    if random_state is not None:
                        torch.manual_seed(random_state)
                    self.single = nn.Linear(d, self.dim)
        else:
            self.fusion = make_fusion(fusion, dims, self.dim, random_state=random_state,
                                      **self.fusion_options)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fuse ``inputs`` (name -> [m, d_name]) with row masks (name -> [m] bool)."""
        if self.residual is not None:
            return self._residual(inputs, masks)
        if self.fusion is not None:
            return self.fusion(dict(inputs), dict(masks))
        name = next(iter(self.input_dims))
        x = inputs[name]
        if self.single is not None:
            x = self.single(x)
        m = masks.get(name)
        if m is not None:
            x = torch.where(m.unsqueeze(1), x, torch.zeros_like(x))
        return x

    def _residual(self, inputs, masks) -> torch.Tensor:
        """``id + sum_m W_m x_m`` over the present modalities (content dropout in training)."""
        out = None
        for name in self.input_dims:
            x = inputs[name]
            if name != "id":
                x = self.residual[name](x)
                if self.training and self.content_dropout > 0:
                    x = nn.functional.dropout(x, self.content_dropout, training=True)
            m = masks.get(name)
            if m is not None:
                x = torch.where(m.unsqueeze(1), x, torch.zeros_like(x))
            out = x if out is None else out + x
        return out

    def lookup(self, rows: torch.Tensor) -> tuple[dict, dict]:
        """Inputs and masks of the id/features modalities for table rows ``rows``."""
        inputs, masks = {}, {}
        if "id" in self.encoders:
            inputs["id"] = self.encoders["id"](rows)
        if "features" in self.encoders:
            enc = self.encoders["features"]
            inputs["features"] = enc(rows)
            masks["features"] = enc.mask(rows)
        return inputs, masks


# ======================================================================================
# the recommender
# ======================================================================================

def _spec_list(spec, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Normalise an encoders parameter to an ordered dict name -> option."""
    if isinstance(spec, str):
        spec = [spec]
    out: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        items = []
        for x in spec:
            if isinstance(x, TextEncoder):
                items.append(("text", x))
            elif isinstance(x, str):
                items.append((x, None))
            else:
                raise DataError(f"{what} entries must be names {list(allowed)} or a TextEncoder, "
                                f"got {x!r}")
    else:
        raise DataError(f"{what} must be 'auto', a list of {list(allowed)} or a dict, got "
                        f"{spec!r}")
    for name, opt in items:
        if name not in allowed:
            raise DataError(f"{what}: unknown modality {name!r}; expected some of {list(allowed)}")
        if name in out:
            raise DataError(f"{what}: modality {name!r} given twice")
        if name == "text" and opt is not None and not isinstance(opt, (TextEncoder, str)):
            raise DataError(f"{what}['text'] must be a TextEncoder or a model name, got {opt!r}")
        if name != "text" and opt is not None and not isinstance(opt, Mapping):
            raise DataError(f"{what}[{name!r}] must be None or a dict of options, got {opt!r}")
        out[name] = opt
    if not out:
        raise DataError(f"{what} is empty; give at least one of {list(allowed)}")
    return out


def _kind_and_options(spec, table: Mapping[str, Any], what: str) -> tuple[str, dict]:
    if isinstance(spec, str):
        kind, opts = spec, {}
    elif isinstance(spec, Mapping):
        opts = dict(spec)
        kind = opts.pop("kind", None)
        if kind is None:
            raise DataError(f"{what} given as a dict needs a 'kind' key (one of {sorted(table)})")
    else:
        raise DataError(f"{what} must be a name {sorted(table)} or a dict with 'kind', got "
                        f"{spec!r}")
    if kind not in table:
        raise DataError(f"{what} must be one of {sorted(table)}, got {kind!r}")
    return kind, opts


def _csr_pairs(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch row, column, position in ``indices``) of every entry of CSR rows ``rows``."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts
    flat = torch.repeat_interleave(starts - offsets, counts) + torch.arange(
        total, device=indptr.device)
    batch_rows = torch.repeat_interleave(torch.arange(len(rows), device=indptr.device), counts)
    return batch_rows, indices[flat], flat


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
        ``{"kind": "attention", "num_heads": 2}``. On MovieLens 1M validation the
        residual sum let the text help where the gated mix made it hurt (the convex gate
        halves the id embedding of every item).
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
        Size of the item and user vectors. With the untied tanh history, 128 served
        the users with few interactions better than 64 on MovieLens 1M validation
        (see ``tie_history``).
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
        The defaults (with ``epochs=30``) were chosen on MovieLens 1M validation
        NDCG@10: a constant rate left the validation metric jumping by +-0.005 between
        epochs and stopped early on noise.
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
        worse: on MovieLens 1M validation, 0.05 let id + text match or beat the id-only
        model, 0.1 and 0.2 did not.
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
        The defaults (untied, tanh, dim 128) maximised the mean of the validation
        NDCG@10 of all users and of the users with <= 20 training interactions on
        MovieLens 1M (``benchmarks/bench_neural.py tune --grid history``): 0.2208 and
        0.1846, against 0.2202 and 0.1512 for the previous tied, linear, dim-64 model.
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
        epoch (a second, shorter fit: on a validation split of MovieLens 100K it scored
        NDCG@10 0.2055 against 0.1991 for keeping the model trained without the holdout,
        for 1.7x the fit time). ``training_log_`` is the refit's;
        ``training_log_["holdout"]`` (and the log) says how many interactions were held out, the best epoch and the
        held-out fit's curve (``first_fit``). None or 0, and ``loss="mse"`` (the validation metric ranks; a rating
        fit stopped on it fit the ratings worse): train all ``epochs`` on everything.

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
    """

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
                 validation_fraction: float | None = 0.1):
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
        spec = self.user_encoders
        if isinstance(spec, str) and spec == "auto":
            return True
        try:
            return "history" in _spec_list(spec, USER_MODALITIES, "user_encoders")
        except DataError:
            return True

    def _implicit_feedback(self) -> bool:
        # loss="mse" regresses the values (ratings): every value is kept
        return self.loss != "mse"

    def _validate_params(self) -> None:
        if not (isinstance(self.item_encoders, str) and self.item_encoders == "auto"):
            _spec_list(self.item_encoders, ITEM_MODALITIES, "item_encoders")
        if not (isinstance(self.user_encoders, str) and self.user_encoders == "auto"):
            _spec_list(self.user_encoders, USER_MODALITIES, "user_encoders")
        _kind_and_options(self.fusion, FUSION_KINDS, "fusion")
        _kind_and_options(self.scorer, SCORERS, "scorer")
        check_choice("loss", self.loss, tuple(LOSSES))
        check_int("dim", self.dim, low=1)
        check_choice("negative_sampler", self.negative_sampler, SAMPLERS)
        check_int("n_negatives", self.n_negatives, low=1)
        check_int("epochs", self.epochs, low=0)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, low=1)
        check_number("learning_rate", self.learning_rate, low=0, low_inclusive=False)
        check_number("weight_decay", self.weight_decay, low=0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_number("warmup", self.warmup, low=0)
        if self.clip_grad_norm is not None:
            check_number("clip_grad_norm", self.clip_grad_norm, low=0, low_inclusive=False)
        check_number("history_dropout", self.history_dropout, low=0, high=1,
                     high_inclusive=False)
        check_number("id_dropout", self.id_dropout, low=0, high=1, high_inclusive=False)
        check_choice("history_pooling", self.history_pooling, POOLINGS)
        if self.patience is not None:
            check_int("patience", self.patience, low=1)
        check_validation_fraction(self.validation_fraction)
        check_int("eval_every", self.eval_every, low=1)
        if self.max_history is not None:
            check_int("max_history", self.max_history, low=1)
        if not isinstance(self.tie_history, (bool, np.bool_)):
            raise DataError(f"tie_history must be True or False, got {self.tie_history!r}")
        check_choice("history_activation", self.history_activation, HISTORY_ACTIVATIONS)
        if self.loss == "mse" and self.negative_sampler == "in_batch":
            pass  # mse uses no negatives; the sampler is ignored

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
        self._callbacks = list(callbacks or ())
        try:
            super().fit(X, item_features, user_features, validation=validation,
                        checkpoint_dir=checkpoint_dir)
            hold = self.training_log_.get("holdout")
            if hold and hold["rows"]:
                self._refit(X, item_features, user_features, checkpoint_dir, hold)
            return self
        finally:
            self._callbacks = []
            self.__dict__.pop("_skip_holdout", None)

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
        self._callbacks = [*self._callbacks, lambda epoch, logs: epoch >= best]
        self._skip_holdout = True
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
            else _spec_list(self.item_encoders, ITEM_MODALITIES, "item_encoders")
        given = spec.get("text")
        if isinstance(given, TextEncoder):
            enc = given
        elif isinstance(given, str):
            enc = TextEncoder(given)
        else:
            enc = TextEncoder()
        self._text_encoder_obj = enc
        return enc

    def _resolve_modalities(self, item_features, user_features) -> dict:
        if isinstance(self.item_encoders, str) and self.item_encoders == "auto":
            item_spec: dict[str, Any] = {"id": None}
            if item_features is not None and item_features.has_text:
                item_spec["text"] = None
        else:
            item_spec = _spec_list(self.item_encoders, ITEM_MODALITIES, "item_encoders")
        if isinstance(self.user_encoders, str) and self.user_encoders == "auto":
            user_spec: dict[str, Any] = {"history": None}
        else:
            user_spec = _spec_list(self.user_encoders, USER_MODALITIES, "user_encoders")
        if "text" in item_spec and (item_features is None or not item_features.has_text):
            raise DataError("item_encoders has 'text' but fit() got no item_features with a text "
                            "block; pass item_features=ItemFeatures(..., text=...)")
        if "features" in item_spec and (item_features is None or not (
                item_features.categorical or item_features.multi_hot or item_features.numeric)):
            raise DataError("item_encoders has 'features' but the item_features have no "
                            "categorical, multi-hot or numeric block")
        if "features" in user_spec and (user_features is None or not (
                user_features.categorical or user_features.multi_hot or user_features.numeric)):
            raise DataError("user_encoders has 'features' but fit() got no user_features with a "
                            "categorical, multi-hot or numeric block")
        kind, _ = _kind_and_options(self.scorer, SCORERS, "scorer")
        if kind == "attention" and "history" not in user_spec:
            raise DataError("scorer 'attention' attends over the user's history: user_encoders "
                            "must include 'history'")
        return {"item": item_spec, "user": user_spec}

    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        device = resolve_device(self.device)
        self._device = device
        seed = seed_from(self.random_state)
        rs = int(seed % (2**31))
        # early stopping follows a ranking metric: not a fit of rating values
        fraction = (None if self.loss == "mse" or getattr(self, "_skip_holdout", False)
                    else self.validation_fraction)
        data, validation, holdout = auto_holdout(type(self).__name__, data, validation,
                                                 fraction, ordered=False, seed=seed)
        spec = self._resolve_modalities(item_features, user_features)
        R = sp.csr_matrix(data.to_csr(binary=False), dtype=np.float32)
        R.sort_indices()
        n_users, n_items = R.shape
        d = int(self.dim)
        counts = np.asarray((R != 0).sum(axis=0)).ravel()
        self.item_has_id_ = counts > 0
        self.text_fingerprint_ = self.text_model_ = None
        for stale in ("history_order_", "history_indptr_", "user_repr_", "item_repr_",
                      "history_repr_"):
            self.__dict__.pop(stale, None)

        # -- item inputs -------------------------------------------------------------
        item_cfg: dict[str, dict] = {}
        text_vectors = text_mask = None
        feats = None
        if item_features is not None:
            if not isinstance(item_features, ItemFeatures):
                raise DataError(f"item_features must be an ItemFeatures, got "
                                f"{type(item_features).__name__}")
            feats = item_features.align(data.item_vocab)
        for name, opt in spec["item"].items():
            if name == "id":
                item_cfg["id"] = {}
            elif name == "text":
                self._text_encoder_obj = None
                enc = self._text_encoder()
                text_vectors, text_mask = self._encode_texts(enc, feats)
                self.text_fingerprint_ = enc.cache_key()["fingerprint"]
                self.text_model_ = str(enc.cache_key()["model"])
                item_cfg["text"] = {"input_dim": int(text_vectors.shape[1])}
            elif name == "features":
                fe = FeatureEncoder.from_features(feats, d, **(opt or {}))
                cfg = fe.get_config()
                for k in ("n", "dim", "random_state"):
                    cfg.pop(k)
                item_cfg["features"] = cfg
        user_cfg: dict[str, dict] = {}
        user_feats = None
        for name, opt in spec["user"].items():
            if name == "history":
                user_cfg["history"] = {"input_dim": d}
            elif name == "id":
                user_cfg["id"] = {}
            elif name == "features":
                if not isinstance(user_features, UserFeatures):
                    raise DataError(f"user_features must be a UserFeatures, got "
                                    f"{type(user_features).__name__}")
                user_feats = user_features.align(data.user_vocab)
                ufe = FeatureEncoder.from_features(user_feats, d, **(opt or {}))
                cfg = ufe.get_config()
                for k in ("n", "dim", "random_state"):
                    cfg.pop(k)
                user_cfg["features"] = cfg
        fusion_kind, fusion_opts = _kind_and_options(self.fusion, FUSION_KINDS, "fusion")
        scorer_kind, scorer_opts = _kind_and_options(self.scorer, SCORERS, "scorer")
        scorer_cfg = dict(scorer_opts)
        if scorer_kind in ("neumf", "attention"):
            scorer_cfg.setdefault("dim", d)
            scorer_cfg.setdefault("random_state", _sub_seed(rs, 50))
        if self.item_bias:
            scorer_cfg.setdefault("item_bias", True)
            scorer_cfg.setdefault("n_items", n_items)
        if self.loss == "mse" and scorer_kind == "dot":
            scorer_cfg.setdefault("global_bias", True)
        tower_user_cfg = dict(user_cfg)
        if scorer_kind == "attention":
            tower_user_cfg.pop("history")
        # an untied history: the pooled user input comes from a second item tower
        # (same modalities, own weights), not from the scored item vectors
        history_cfg = ({k: dict(v) for k, v in item_cfg.items()}
                       if not self.tie_history and "history" in tower_user_cfg else {})
        self.modalities_ = {"item": list(item_cfg), "user": list(user_cfg)}
        self.config_ = {
            "n_items": n_items, "n_users": n_users, "dim": d,
            "item_tower": item_cfg, "user_tower": tower_user_cfg,
            "history_tower": history_cfg,
            "fusion": fusion_kind, "fusion_options": fusion_opts,
            "scorer": scorer_kind, "scorer_options": scorer_cfg, "seed": rs,
        }
        built = self._build_modules()
        item_tower, user_tower, scorer = (built["item_tower_"], built.get("user_tower_"),
                                          built["scorer_"])
        history_tower = built.get("history_tower_")
        # the feature data (and numeric statistics), with the placeholders' seeds: the
        # same initial weights as a rebuilt model
        for tower, fts, opts in ((item_tower, feats, spec["item"].get("features")),
                                 (history_tower, feats, spec["item"].get("features")),
                                 (user_tower, user_feats, spec["user"].get("features"))):
            if tower is not None and "features" in tower.encoders:
                tower.encoders["features"] = FeatureEncoder.from_features(
                    fts, d, random_state=tower.encoders["features"].random_state,
                    **(opts or {}))
        modules = nn.ModuleDict({"item": item_tower, "scorer": scorer})
        if user_tower is not None:
            modules["user"] = user_tower
        if history_tower is not None:
            modules["history"] = history_tower
        modules.to(device)
        self.item_tower_, self.scorer_ = item_tower, scorer
        self.user_tower_ = user_tower
        self.history_tower_ = history_tower
        self._text_t = (None if text_vectors is None else
                        torch.from_numpy(text_vectors).to(device))
        self._text_mask_t = (None if text_mask is None else torch.from_numpy(text_mask).to(device))
        self._has_id_t = torch.from_numpy(self.item_has_id_).to(device)
        self._R = R
        self._indptr_t = torch.from_numpy(R.indptr.astype(np.int64)).to(device)
        self._indices_t = torch.from_numpy(R.indices.astype(np.int64)).to(device)
        self._order_t = self._ordered_history(data, device)
        self.training_log_ = {}
        try:
            hist = self._train(data, modules, validation, device, seed,
                               checkpoint_dir=checkpoint_dir)
            self.training_log_ = hist.to_dict()
            if holdout is not None:
                self.training_log_["holdout"] = holdout
            self._finalize(device)
        except NonFiniteLossError as exc:
            self.training_log_ = exc.history.to_dict() if exc.history is not None else {}
            try:
                self._finalize(device)
                ok = np.isfinite(self.item_repr_).all() and (
                    self.user_repr_ is None or np.isfinite(self.user_repr_).all())
            except Exception:  # pragma: no cover - a broken model cannot be finalised
                ok = False
            if not ok:
                self._forget_fit()
            raise
        finally:
            for name in ("_R", "_indptr_t", "_indices_t", "_order_t", "_text_t",
                         "_text_mask_t", "_has_id_t"):
                self.__dict__.pop(name, None)

    def _encode_texts(self, enc: TextEncoder, feats: ItemFeatures | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        mask = np.asarray(feats.text_mask, dtype=bool)
        texts = [str(t) for t in feats.text[mask]]
        width = enc.hidden_size
        out = np.zeros((feats.n, width), dtype=np.float32)
        if texts:
            logger.info("HybridRecommender: encoding %d item texts with %s (cached on disk)",
                        len(texts), enc.model if isinstance(enc.model, str) else "a model")
            out[mask] = enc.encode_base(texts, show_progress=bool(self.verbose))
        if not mask.all():
            logger.info("HybridRecommender: %d of %d items have no text (masked)",
                        int((~mask).sum()), len(mask))
        return out, mask

    def _ordered_history(self, data: Interactions, device):
        """Per user, training items in interaction order (attention scorer): indptr, items."""
        if self.config_["scorer"] != "attention":
            return None
        order = np.lexsort((np.arange(data.nnz), data.user_indices))
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.user_indices, minlength=data.n_users), out=indptr[1:])
        return (torch.from_numpy(indptr).to(device),
                torch.from_numpy(data.item_indices[order].astype(np.int64)).to(device))

    def _hist_csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indptr, indices) of the training histories (in interaction order for attention)."""
        if self._order_t is not None:
            return self._order_t
        return self._indptr_t, self._indices_t

    def _build_modules(self) -> dict:
        cfg = self.config_
        rs = cfg["seed"]
        d = cfg["dim"]
        item_tower = _Tower(cfg["n_items"], d, cfg["item_tower"], cfg["fusion"],
                            cfg["fusion_options"], _sub_seed(rs, 10))
        out: dict[str, nn.Module] = {"item_tower_": item_tower}
        if cfg["user_tower"]:
            out["user_tower_"] = _Tower(cfg["n_users"], d, cfg["user_tower"], cfg["fusion"],
                                        cfg["fusion_options"], _sub_seed(rs, 20))
        if cfg.get("history_tower"):
            out["history_tower_"] = _Tower(cfg["n_items"], d, cfg["history_tower"],
                                           cfg["fusion"], cfg["fusion_options"],
                                           _sub_seed(rs, 30))
        out["scorer_"] = make_scorer(cfg["scorer"], **cfg["scorer_options"])
        return out

    # -- representations ------------------------------------------------------------------
    def _item_inputs(self, rows: torch.Tensor | None, id_mask: torch.Tensor | None,
                     text=None, text_mask=None, tower: _Tower | None = None
                     ) -> tuple[dict, dict]:
        tower = self.item_tower_ if tower is None else tower
        if rows is None:
            rows = torch.arange(tower.n, device=self._dev())
        inputs, masks = tower.lookup(rows)
        if "id" in inputs and id_mask is not None:
            masks["id"] = id_mask
        if "text" in tower.input_dims:
            inputs["text"] = text
            masks["text"] = text_mask
        return inputs, masks

    def _dev(self) -> torch.device:
        return getattr(self, "_device", None) or torch.device("cpu")

    def _items(self, rows: torch.Tensor | None = None, *, drop: torch.Generator | None = None,
               tower: _Tower | None = None) -> torch.Tensor:
        """Item vectors of fit-time items (all, or ``rows``); ``drop`` applies id dropout.

        ``tower``: the item tower (default) or the history tower of an untied model.
        """
        tower = self.item_tower_ if tower is None else tower
        has_id = self._has_id_t if rows is None else self._has_id_t[rows]
        if drop is not None and self.id_dropout > 0 and "id" in tower.input_dims \
                and len(tower.input_dims) > 1:
            keep = torch.rand(has_id.shape, generator=drop, device=has_id.device) >= self.id_dropout
            has_id = has_id & keep
        text = tmask = None
        if self._text_t is not None:
            text = self._text_t if rows is None else self._text_t[rows]
            tmask = self._text_mask_t if rows is None else self._text_mask_t[rows]
        inputs, masks = self._item_inputs(rows, has_id, text, tmask, tower)
        return tower(inputs, masks)

    def _contexts(self, V: torch.Tensor, rows: torch.Tensor | None = None, *,
                  drop: torch.Generator | None = None) -> torch.Tensor:
        """The vectors pooled into user histories: ``V`` itself (tied), or the history
        tower's vectors of the same items (``tie_history=False``)."""
        tower = getattr(self, "history_tower_", None)
        if tower is None:
            return V
        return self._items(rows, drop=drop, tower=tower)

    def _pool(self, V: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, b: int,
              weights: torch.Tensor | None = None, counts: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled history vectors ``[b, d]`` and a has-history mask.

        ``rows`` must be grouped (non-decreasing), as :func:`_csr_pairs` makes them.
        """
        present = torch.bincount(rows, minlength=b)
        offsets = torch.cumsum(present, 0) - present
        pooled = torch.nn.functional.embedding_bag(
            cols, V, offsets, mode="sum", per_sample_weights=weights)
        if counts is None:
            counts = present.to(V.dtype)
        norm = counts.sqrt() if self.history_pooling == "sqrt" else counts
        pooled = pooled / norm.clamp(min=1.0).unsqueeze(1)
        return pooled, counts > 0

    def _user_static(self, pooled, has_hist, user_rows, id_keep):
        """The user tower over history/id/features; None when it has no modality."""
        tower = self.user_tower_
        if tower is None:
            return None
        b = len(user_rows)
        known = user_rows >= 0
        rows = user_rows.clamp(min=0)
        inputs, masks = tower.lookup(rows)
        if "id" in inputs:
            masks["id"] = known if id_keep is None else known & id_keep
        if "features" in inputs:
            masks["features"] = masks["features"] & known
        if "history" in tower.input_dims:
            if pooled is not None and self.history_activation == "tanh":
                pooled = torch.tanh(pooled)
            inputs["history"] = pooled if pooled is not None else torch.zeros(
                b, tower.input_dims["history"], device=rows.device)
            masks["history"] = has_hist if has_hist is not None else torch.zeros(
                b, dtype=torch.bool, device=rows.device)
        return tower(inputs, masks)

    def _attention_user(self, V, rows, cols, b, static):
        """(history [b, L, d], mask [b, L], static) with the last ``max_history`` items."""
        L_max = int(self.max_history or 200)
        counts = torch.bincount(rows, minlength=b)
        # position from the end within each row (cols arrive grouped by row, in order)
        starts = torch.cumsum(counts, 0) - counts
        pos_from_end = counts[rows] - 1 - (torch.arange(len(rows), device=rows.device)
                                           - starts[rows])
        keep = pos_from_end < L_max
        L = int(min(L_max, int(counts.max()) if len(counts) and b else 1)) or 1
        slot = (L - 1 - pos_from_end[keep])
        H = torch.zeros(b, L, V.shape[1], device=V.device, dtype=V.dtype)
        M = torch.zeros(b, L, dtype=torch.bool, device=V.device)
        H[rows[keep], slot] = V[cols[keep]]
        M[rows[keep], slot] = True
        return (H, M) if static is None else (H, M, static)

    def _user_repr(self, V, rows, cols, b, user_rows, *, weights=None, counts=None,
                   id_keep=None):
        """The scorer's user representation from history pairs (rows, cols) of ``b`` users."""
        if self.config_["scorer"] == "attention":
            static = self._user_static(None, None, user_rows, id_keep)
            return self._attention_user(V, rows, cols, b, static)
        pooled = has = None
        if "history" in self.config_["user_tower"]:
            pooled, has = self._pool(V, rows, cols, b, weights, counts)
        return self._user_static(pooled, has, user_rows, id_keep)

    # -- training -------------------------------------------------------------------------
    def _train(self, data: Interactions, modules: nn.Module, validation, device,
               seed: int, checkpoint_dir=None) -> TrainingHistory:
        g = torch_generator(seed, device=device)
        loss_name = self.loss
        n_users, n_items = self._R.shape
        indptr = self._indptr_t
        user_counts = indptr[1:] - indptr[:-1]
        active = torch.nonzero(user_counts > 0).squeeze(1)
        if len(active) == 0:
            raise DataError("no user has an interaction to train on")
        self._values_t = torch.from_numpy(self._R.data.astype(np.float32)).to(device)
        self._sampler = None
        if loss_name not in ("softmax", "mse"):
            self._sampler = make_sampler(self.negative_sampler, self._R, device=device)
            if self.negative_sampler == "in_batch":
                self._member = make_sampler("uniform", self._R, device=device)
        pooled_history = ("history" in self.config_["user_tower"]
                          and self.config_["scorer"] != "attention")
        nnz = self._R.nnz
        if loss_name == "softmax" or pooled_history:
            # batches of users: each user's history is pooled once per step
            if loss_name == "softmax":
                bs = int(self.batch_size) if self.batch_size is not None else int(
                    min(64, max(8, len(active) // 10)))
            else:  # about batch_size interactions per step, whole users
                bs = int(self.batch_size) if self.batch_size is not None else int(
                    min(4096, max(32, nnz // 100)))
            counts_active = user_counts[active]

            def batches(epoch: int):
                order = torch.randperm(len(active), generator=g, device=device)
                users = active[order]
                if loss_name == "softmax":
                    return [users[s:s + bs] for s in range(0, len(users), bs)]
                c = counts_active[order]
                group = (torch.cumsum(c, 0) - c) // bs
                sizes = torch.unique_consecutive(group, return_counts=True)[1].tolist()
                return list(torch.split(users, sizes))

            if loss_name == "softmax":
                n_batches = math.ceil(len(active) / bs)
            else:
                n_batches = len(batches(0))

            def step(users: torch.Tensor) -> torch.Tensor:
                if loss_name == "softmax":
                    return self._softmax_step(users, g)
                return self._grouped_pair_step(users, g)
            work = bs * (n_items if loss_name == "softmax" else int(self.dim) * 8)
        else:
            # batches of interactions (id-only users, or the attention scorer)
            bs = int(self.batch_size) if self.batch_size is not None else int(
                min(4096, max(32, nnz // 100)))
            inter_users = torch.repeat_interleave(torch.arange(n_users, device=device),
                                                  user_counts)
            n_batches = math.ceil(nnz / bs)

            def batches(epoch: int):
                order = torch.randperm(nnz, generator=g, device=device)
                return [order[s:s + bs] for s in range(0, nnz, bs)]

            def step(idx: torch.Tensor) -> torch.Tensor:
                return self._pair_step(idx, inter_users, g)
            work = bs * int(self.dim) * 8
        validate = None
        if validation is not None and validation.nnz:
            validate = self._validator(data, validation)
        logger.info("HybridRecommender: %d users x %d items, %d interactions; items %s, users "
                    "%s, scorer %s, loss %s, %d steps/epoch", n_users, n_items, nnz,
                    self.modalities_["item"], self.modalities_["user"], self.config_["scorer"],
                    loss_name, n_batches)
        try:
            with threads_for(work, device):
                hist = fit_loop(modules, step, batches, epochs=int(self.epochs),
                                optimizer=self.optimizer,
                                learning_rate=float(self.learning_rate),
                                weight_decay=float(self.weight_decay),
                                clip_grad_norm=self.clip_grad_norm,
                                lr_schedule=self.lr_schedule, warmup=float(self.warmup),
                                steps_per_epoch=n_batches, validate=validate,
                                eval_every=int(self.eval_every),
                                patience=self.patience if validate is not None else None,
                                callbacks=self._callbacks_list(), device=device,
                                random_state=seed, verbose=bool(self.verbose),
                                name="HybridRecommender", generators=[g],
                                checkpoint_dir=checkpoint_dir,
                                fingerprint=checkpoint_fingerprint(self, data))
        finally:
            for name in ("_values_t", "_sampler", "_member"):
                self.__dict__.pop(name, None)
        return hist

    def _callbacks_list(self) -> list:
        return list(getattr(self, "_callbacks", []) or [])

    def _softmax_step(self, users: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        V = self._items(drop=g)
        C = self._contexts(V, drop=g)
        rows, cols, _ = _csr_pairs(*self._hist_csr(), users)
        b = len(users)
        counts = torch.bincount(rows, minlength=b).to(V.dtype)
        p = float(self.history_dropout)
        weights = None
        hr, hc = rows, cols
        keep = None
        if p > 0:
            keep = torch.rand(len(cols), generator=g, device=cols.device) >= p
            hr, hc = rows[keep], cols[keep]
            weights = torch.full((len(hc),), 1.0 / (1.0 - p), device=V.device)
        id_keep = self._id_keep(b, g, users.device)
        if self.config_["scorer"] == "attention":
            # an item attending over itself would be trivial: predict the hidden items only
            u = self._user_repr(V, hr, hc, b, users, id_keep=id_keep)
            if keep is not None:
                rows, cols = rows[~keep], cols[~keep]
        else:
            u = self._user_repr(C, hr, hc, b, users, weights=weights, counts=counts,
                                id_keep=id_keep)
        scores = self.scorer_.score_all(u, V)
        return softmax_loss(scores, cols, rows=rows)

    def _id_keep(self, b: int, g: torch.Generator, device) -> torch.Tensor | None:
        if self.id_dropout <= 0 or self.user_tower_ is None or \
                "id" not in self.user_tower_.input_dims or len(self.user_tower_.input_dims) < 2:
            return None
        return torch.rand(b, generator=g, device=device) >= self.id_dropout

    def _negatives(self, u: torch.Tensor, g: torch.Generator):
        """Negatives of the rows' users: (items [P, k], log q [P, k] or None)."""
        return self._sampler.draw(u, int(self.n_negatives), g)

    def _pair_loss(self, user, u, pos, pos_v, neg, neg_v, log_q_neg, values) -> torch.Tensor:
        """The pairwise loss of positives ``pos`` (vectors ``pos_v``) of users ``u``."""
        sc = self.scorer_
        s_pos = sc.score_pairs(user, pos_v, user_idx=u, item_idx=pos)
        if self.loss == "mse":
            return mse_loss(s_pos, values)
        mask = None
        log_q_pos = None
        if self.negative_sampler == "in_batch":
            # every row against the batch's positives (one score matrix), minus the
            # row's own positives (its item, and the other items of its user)
            s_neg = sc.score_all(user, pos_v, user_idx=u, item_idx=pos)
            n = len(pos)
            mask = ~self._member.is_positive(u.repeat_interleave(n), pos.repeat(n)).view(n, n)
            log_q = self._sampler.log_q(pos)
            log_q_pos, log_q_neg = log_q, log_q.unsqueeze(0).expand(len(pos), -1)
        else:
            s_neg = sc.score_pairs(user, neg_v, user_idx=u, item_idx=neg)
            if log_q_neg is not None:
                log_q_pos = self._sampler.log_q(pos)
        if self.loss == "bpr":
            return bpr_loss(s_pos, s_neg, mask)
        if self.loss == "bce":
            return bce_loss(s_pos, s_neg, mask)
        return sampled_softmax_loss(s_pos, s_neg, log_q_pos=log_q_pos, log_q_neg=log_q_neg,
                                    mask=mask)

    def _grouped_pair_step(self, users: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Pairwise losses on every interaction of a batch of users; each user's history
        is pooled once, and each positive is removed from its own input."""
        rows, cols, flat = _csr_pairs(self._indptr_t, self._indices_t, users)
        b, P = len(users), len(cols)
        u = users[rows]
        neg = log_q_neg = None
        if self.loss != "mse" and self.negative_sampler != "in_batch":
            neg, log_q_neg = self._negatives(u, g)
        parts = [cols] + ([neg.reshape(-1)] if neg is not None else [])
        needed, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        Vn = self._items(needed, drop=g)
        Cn = self._contexts(Vn, needed, drop=g)
        local = inverse[:P]
        pos_v = Vn[local]
        neg_v = None if neg is None else Vn[inverse[P:]].view(P, -1, Vn.shape[1])
        p = float(self.history_dropout)
        w = torch.ones(P, device=Vn.device)
        if p > 0:
            w = (torch.rand(P, generator=g, device=Vn.device) >= p).to(Vn.dtype) / (1.0 - p)
        n_u = torch.bincount(rows, minlength=b)
        offsets = torch.cumsum(n_u, 0) - n_u
        S = torch.nn.functional.embedding_bag(local, Cn, offsets, mode="sum",
                                              per_sample_weights=w)
        S = S[rows] - w.unsqueeze(1) * Cn[local]           # the positive is not its own input
        cnt = (n_u[rows] - 1).to(Vn.dtype)
        norm = cnt.sqrt() if self.history_pooling == "sqrt" else cnt
        pooled = S / norm.clamp(min=1.0).unsqueeze(1)
        id_keep = self._id_keep(P, g, u.device)
        user = self._user_static(pooled, cnt > 0, u, id_keep)
        values = self._values_t[flat] if self.loss == "mse" else None
        return self._pair_loss(user, u, cols, pos_v, neg, neg_v, log_q_neg, values)

    def _pair_step(self, idx, inter_users, g) -> torch.Tensor:
        """Pairwise losses on a batch of interactions (id-only users, attention scorer)."""
        u = inter_users[idx]
        pos = self._indices_t[idx]
        b = len(idx)
        need_hist = self.config_["scorer"] == "attention"
        neg = log_q_neg = None
        if self.loss != "mse" and self.negative_sampler != "in_batch":
            neg, log_q_neg = self._negatives(u, g)
        parts = [pos] + ([neg.reshape(-1)] if neg is not None else [])
        if need_hist:
            rows, cols, _ = _csr_pairs(*self._hist_csr(), u)
            keep = cols != pos[rows]                       # the positive is not its own input
            p = float(self.history_dropout)
            if p > 0:
                keep = keep & (torch.rand(len(cols), generator=g, device=cols.device) >= p)
            rows, cols = rows[keep], cols[keep]
            parts.append(cols)
        needed, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        Vn = self._items(needed, drop=g)
        pos_v = Vn[inverse[:b]]
        off = b
        neg_v = None
        if neg is not None:
            k = neg.numel()
            neg_v = Vn[inverse[off:off + k]].view(b, -1, Vn.shape[1])
            off += k
        id_keep = self._id_keep(b, g, u.device)
        if need_hist:
            user = self._user_repr(Vn, rows, inverse[off:], b, u, id_keep=id_keep)
        else:
            user = self._user_repr(Vn, pos[:0], pos[:0], b, u, id_keep=id_keep)
        values = self._values_t[idx] if self.loss == "mse" else None
        return self._pair_loss(user, u, pos, pos_v, neg, neg_v, log_q_neg, values)

    def _validator(self, data: Interactions, validation: Interactions):
        cache: dict[str, Any] = {}
        R = self._R
        device = self._dev()

        def score(user_idx: np.ndarray):
            if "V" not in cache:
                cache["V"] = self._items()
                cache["C"] = self._contexts(cache["V"])
            return self._scores_for(cache["V"], R[user_idx], torch.from_numpy(
                np.asarray(user_idx, dtype=np.int64)).to(device), ordered=True, C=cache["C"])

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

    def _scores_for(self, V: torch.Tensor, H: sp.csr_matrix, user_rows: torch.Tensor, *,
                    ordered: bool = False, chunk: int | None = None,
                    C: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[b, n_items]`` of users given by history rows ``H`` (CSR) and ids
        (``C``: the history vectors pooled for the users, default ``V``)."""
        device = V.device
        C = V if C is None else C
        H = sp.csr_matrix(H)
        b = H.shape[0]
        if chunk is None:
            if self.config_["scorer"] == "attention":
                L = int(self.max_history or 200)
                chunk = max(1, _SCORE_BYTES // (4 * max(L, 1) * max(V.shape[1], 1) * 4))
            else:
                chunk = b
        outs = []
        for s in range(0, b, max(chunk, 1)):
            sub = H[s:s + chunk]
            indptr = torch.from_numpy(sub.indptr.astype(np.int64)).to(device)
            if ordered and getattr(self, "_order_t", None) is not None:
                # known users during training: their items in interaction order
                rows, cols, _ = _csr_pairs(*self._order_t, user_rows[s:s + chunk])
            else:
                indices = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
                rows, cols, _ = _csr_pairs(indptr, indices, torch.arange(sub.shape[0],
                                                                      device=device))
            user = self._user_repr(C, rows, cols, sub.shape[0], user_rows[s:s + chunk])
            outs.append(self.scorer_.score_all(user, V))
        return torch.cat(outs, dim=0) if outs else V.new_zeros(0, V.shape[0])

    def _finalize(self, device) -> None:
        """Item and user vectors in eval mode (what scoring and saving use)."""
        with threads_for(self._R.nnz * int(self.dim), device):
            self._finalize_vectors(device)

    def _finalize_vectors(self, device) -> None:
        self.item_tower_.eval()
        self.scorer_.eval()
        if self.user_tower_ is not None:
            self.user_tower_.eval()
        if getattr(self, "history_tower_", None) is not None:
            self.history_tower_.eval()
        with torch.no_grad():
            V = self._items()
            self.item_repr_ = V.float().cpu().numpy()
            C = self._contexts(V)
            if C is not V:
                self.history_repr_ = C.float().cpu().numpy()
            self.user_repr_ = None
            if self.config_["scorer"] != "attention":
                n_users = self._R.shape[0]
                out = np.empty((n_users, V.shape[1]), dtype=np.float32)
                step = 4096
                for s in range(0, n_users, step):
                    sub = self._R[s:s + step]
                    indptr = torch.from_numpy(sub.indptr.astype(np.int64)).to(device)
                    indices = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
                    rows, cols, _ = _csr_pairs(indptr, indices,
                                            torch.arange(sub.shape[0], device=device))
                    u = self._user_repr(C, rows, cols, sub.shape[0],
                                        torch.arange(s, s + sub.shape[0], device=device))
                    out[s:s + sub.shape[0]] = u.float().cpu().numpy()
                self.user_repr_ = out
            else:
                # the attention scorer reads histories in interaction order
                self.history_indptr_ = self._order_t[0].cpu().numpy()
                self.history_order_ = self._order_t[1].cpu().numpy()
        for m in (self.item_tower_, self.scorer_, self.user_tower_,
                  getattr(self, "history_tower_", None)):
            if m is not None:
                m.to("cpu")
        self._device = torch.device("cpu")
        self._vectors_cache = None

    # -- load checks ----------------------------------------------------------------------
    def _check_loaded(self) -> None:
        from .._loadcheck import check_dense, check_index_array, check_indptr, check_json_int

        where = self._load_where
        cfg = getattr(self, "config_", None)
        if not isinstance(cfg, dict):
            raise ModelFormatError(f"{where}: 'config_' is missing or not a JSON object")
        n_items, n_users = self.n_items_, self.n_users_
        # the modules are rebuilt from config_: its sizes must agree with the vocabularies
        # (items added after fit have no id row, so the towers may hold fewer items)
        check_json_int(where, "config_.n_items", cfg.get("n_items"), low=1, high=n_items)
        check_json_int(where, "config_.n_users", cfg.get("n_users"), low=n_users,
                       high=n_users)
        d = check_json_int(where, "config_.dim", cfg.get("dim"), low=1)
        if cfg.get("scorer") not in SCORERS:
            raise ModelFormatError(f"{where}: config_.scorer {cfg.get('scorer')!r} is not one "
                                   f"of {sorted(SCORERS)}")
        opts = cfg.get("scorer_options")
        if not isinstance(opts, dict):
            raise ModelFormatError(f"{where}: config_.scorer_options is not a JSON object")
        if opts.get("n_items") is not None:
            check_json_int(where, "config_.scorer_options.n_items", opts["n_items"],
                           low=n_items, high=n_items)
        for key in ("item_tower", "user_tower", "history_tower", "fusion_options"):
            if not isinstance(cfg.get(key, {}), dict):
                raise ModelFormatError(f"{where}: config_.{key} is not a JSON object")
        self._loaded_float("item_repr_", (n_items, d))
        if getattr(self, "history_repr_", None) is not None:
            self._loaded_float("history_repr_", (n_items, d))
        if cfg["scorer"] == "attention":
            ip = getattr(self, "history_indptr_", None)
            order = getattr(self, "history_order_", None)
            if ip is not None or order is not None:
                check_dense(where, "history_order_", order, ndim=1, kind="iu", finite=False)
                check_indptr(where, "history_indptr_", ip, n_users, len(order))
                check_index_array(where, "history_order_", order, n_items)
                self.history_order_ = np.asarray(order, dtype=np.int64)
                self.history_indptr_ = np.asarray(ip, dtype=np.int64)
        else:
            self._loaded_float("user_repr_", (n_users, d))
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
            if self.config_["scorer"] == "attention":
                return self._attention_scores(self.seen_[user_idx], user_idx, ordered=True)
            u = torch.from_numpy(self.user_repr_[user_idx])
            return self.scorer_.score_all(u, self._V(), user_idx=torch.from_numpy(user_idx)
                                          ).numpy()

    def _history_user(self, history: sp.csr_matrix) -> torch.Tensor:
        H = sp.csr_matrix(history)
        H.sort_indices()
        C = getattr(self, "history_repr_", None)
        V = self._V() if C is None else torch.from_numpy(C)
        indptr = torch.from_numpy(H.indptr.astype(np.int64))
        indices = torch.from_numpy(H.indices.astype(np.int64))
        rows, cols, _ = _csr_pairs(indptr, indices, torch.arange(H.shape[0]))
        cold = torch.full((H.shape[0],), -1, dtype=torch.long)
        return self._user_repr(V, rows, cols, H.shape[0], cold)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        if not self.supports_history:
            raise NotImplementedError(
                "this HybridRecommender has no 'history' user modality, so it cannot score "
                "users unseen at fit time; add 'history' to user_encoders")
        with torch.no_grad():
            if self.config_["scorer"] == "attention":
                return self._attention_scores(history, None, ordered=False)
            u = self._history_user(history)
            cold = torch.full((history.shape[0],), -1, dtype=torch.long)
            return self.scorer_.score_all(u, self._V(), user_idx=cold).numpy()

    def _attention_scores(self, H: sp.csr_matrix, user_idx: np.ndarray | None, *,
                          ordered: bool) -> np.ndarray:
        V = self._V()
        H = sp.csr_matrix(H)
        b = H.shape[0]
        L = int(self.max_history or 200)
        chunk = max(1, min(1024, _SCORE_BYTES // (4 * L * V.shape[1])))
        out = np.empty((b, V.shape[0]), dtype=np.float32)
        order = getattr(self, "history_order_", None)
        seen_indptr = getattr(self, "history_indptr_", None)
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
                sub = H[s:e]
                rows, cols, _ = _csr_pairs(torch.from_numpy(sub.indptr.astype(np.int64)),
                                        torch.from_numpy(sub.indices.astype(np.int64)),
                                        torch.arange(e - s))
                urows = torch.full((e - s,), -1, dtype=torch.long)
            user = self._user_repr(V, rows, cols, e - s, urows)
            out[s:e] = self.scorer_.score_all(user, V).numpy()
        return out

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        V = self.item_repr_
        norms = np.linalg.norm(V, axis=1)
        norms[norms == 0] = 1.0
        q = V[item_idx] / norms[item_idx, None]
        return (q @ (V / norms[:, None]).T).astype(np.float32)

    # -- vectors for approximate retrieval (dot scorer) -----------------------------------
    def _item_vectors(self) -> np.ndarray | None:
        if not isinstance(self.scorer_, DotScorer):
            return None
        cache = getattr(self, "_vectors_cache", None)
        if cache is None or cache[0] is not self.item_repr_:
            with torch.no_grad():
                v = self.scorer_.item_vectors(self._V(), self._item_idx_all()).numpy()
            cache = self._vectors_cache = (self.item_repr_, np.ascontiguousarray(
                v, dtype=np.float32))
        return cache[1]

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray | None:
        if not isinstance(self.scorer_, DotScorer):
            return None
        user_idx = np.asarray(user_idx, dtype=np.int64)
        with torch.no_grad():
            return self.scorer_.user_vectors(torch.from_numpy(self.user_repr_[user_idx]),
                                             torch.from_numpy(user_idx)).numpy()

    def _history_vectors(self, history: sp.csr_matrix) -> np.ndarray | None:
        if not isinstance(self.scorer_, DotScorer) or not self.supports_history:
            return None
        with torch.no_grad():
            u = self._history_user(history)
            cold = torch.full((u.shape[0],), -1, dtype=torch.long)
            return self.scorer_.user_vectors(u, cold).numpy()

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
        if not isinstance(item_features, ItemFeatures):
            raise DataError(f"item_features must be an ItemFeatures, got "
                            f"{type(item_features).__name__}")
        content = [m for m in self.modalities_["item"] if m != "id"]
        if not content:
            raise DataError("this HybridRecommender uses item ids only; new items need text or "
                            "features (fit with item_encoders including 'text' or 'features')")
        ids = item_features.vocab.ids
        new_mask = self.item_vocab_.index(ids, unknown="ignore") < 0
        new_ids = ids[new_mask]
        if len(new_ids) == 0:
            logger.info("add_items: every item is already known; nothing added")
            return self
        from ..data.vocab import IdVocab

        new_vocab = IdVocab(new_ids, name="item")
        feats = item_features.align(new_vocab)
        n_new = len(new_ids)
        inputs: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        tower = self.item_tower_
        if "id" in tower.input_dims:
            inputs["id"] = torch.zeros(n_new, tower.input_dims["id"])
            masks["id"] = torch.zeros(n_new, dtype=torch.bool)
        if "text" in tower.input_dims:
            if not feats.has_text:
                text = np.zeros((n_new, tower.input_dims["text"]), dtype=np.float32)
                tmask = np.zeros(n_new, dtype=bool)
            else:
                enc = self._text_encoder()
                fp = enc.cache_key()["fingerprint"]
                if self.text_fingerprint_ is not None and fp != self.text_fingerprint_:
                    raise ModelFormatError(
                        f"the text encoder ({getattr(self, 'text_model_', '?')}) now has "
                        f"fingerprint {fp[:12]}..., but the model was trained with "
                        f"{self.text_fingerprint_[:12]}...: new item vectors would not match")
                text, tmask = self._encode_texts(enc, feats)
            inputs["text"] = torch.from_numpy(text)
            masks["text"] = torch.from_numpy(tmask)
        feature_parts = {}
        towers = [("item", tower)]
        if getattr(self, "history_tower_", None) is not None:
            towers.append(("history", self.history_tower_))
        for key, tw in towers:
            if "features" in tw.encoders:
                feature_parts[key] = self._new_item_features(tw, feats, n_new)
        if "item" in feature_parts:
            inputs["features"], masks["features"] = feature_parts["item"]
        present = torch.zeros(n_new, dtype=torch.bool)
        for name in content:
            if name in masks:
                present |= masks[name]
        if not bool(present.all()):
            missing = new_ids[~present.numpy()][:5].tolist()
            warnings.warn(f"add_items: {int((~present).sum())} new item(s) have no text or "
                          f"features (e.g. {missing}); they are scored by their bias only",
                          MaasrecWarning, stacklevel=2)
        with torch.no_grad():
            tower.eval()
            V_new = tower(inputs, masks).float().numpy()
            if len(towers) > 1:
                htower = self.history_tower_
                htower.eval()
                if "history" in feature_parts:
                    inputs["features"], masks["features"] = feature_parts["history"]
                C_new = htower(inputs, masks).float().numpy()
                self.history_repr_ = np.vstack([self.history_repr_, C_new]).astype(np.float32)
        self.item_repr_ = np.vstack([self.item_repr_, V_new]).astype(np.float32)
        self.item_has_id_ = np.concatenate([self.item_has_id_, np.zeros(n_new, dtype=bool)])
        self.scorer_.extend_items(n_new)
        self.config_["scorer_options"]["n_items"] = self.config_["scorer_options"].get(
            "n_items") and len(self.item_repr_)
        self.item_vocab_ = self.item_vocab_.extend(new_ids)
        seen = sp.csr_matrix(self.seen_)
        self.seen_ = sp.csr_matrix((seen.data, seen.indices, seen.indptr),
                                   shape=(seen.shape[0], len(self.item_vocab_)))
        self._pop_cache = None
        self._vectors_cache = None
        logger.info("add_items: %d new items (catalogue now %d)", n_new, len(self.item_vocab_))
        return self

    @staticmethod
    def _new_item_features(tower: _Tower, feats: ItemFeatures, n_new: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature vectors and mask of new items through ``tower``'s trained encoder."""
        old = tower.encoders["features"]
        cfg = old.get_config()
        cfg["n"] = n_new
        tmp = FeatureEncoder(**cfg)
        state = {k: v for k, v in old.state_dict().items()
                 if not k.startswith(("cat_codes_", "bag_indptr_", "bag_indices_",
                                      "numeric_values"))}
        tmp.load_state_dict(state, strict=False)
        tmp.set_data(feats)
        tmp.eval()
        with torch.no_grad():
            return tmp(), tmp.mask()

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
                 validation_fraction: float | None = 0.1):
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
                         validation_fraction=validation_fraction)

    @property
    def scorer(self):  # type: ignore[override]
        """dict: the NeuMF scorer built from ``mlp_layers``."""
        return {"kind": "neumf", "mlp_layers": list(self.mlp_layers)}

    @scorer.setter
    def scorer(self, value) -> None:  # the base __init__ assigns it; NeuMF derives it
        pass
