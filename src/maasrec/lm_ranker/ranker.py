"""``LMRanker``: a fine-tuned BERT/GPT cross-encoder re-ranking a first stage's candidates."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import numpy as np
import torch

from ..base import Recommender, _is_scalar_id, clone
from ..data.interactions import Interactions
from ..device import resolve_device
from ..exceptions import DataError, ModelFormatError, NotFittedError
from ..models.ease import EASE
from ..training import seeded, threads_for
from ._inputs import item_texts, user_profiles
from ._params import IN_MEMORY as _IN_MEMORY
from ._params import LM_RANKER_LOSSES, validate_params
from ._scoring import PairScorer
from ._training import LEARNING_RATES, fine_tune
from .network import (
    CrossEncoder,
    apply_lora,
    build_cross_encoder,
    freeze_lower_layers,
    load_cross_encoder,
    lora_settings,
    merge_lora,
    own_aligned_storage,
    save_cross_encoder,
)
from .text import DEFAULT_TEMPLATE, PairBuilder, UserPart
from .two_stage import CandidateReranker

__all__ = ["LEARNING_RATES", "LM_RANKER_LOSSES", "LMRanker"]

logger = logging.getLogger(__name__)

_LM_DIR = "lm"


def __getattr__(name: str) -> Any:
    # DEFAULT_FIRST_STAGE was a shared module-level EASE() (the old default of
    # ``first_stage``); the default is now None, resolved to a fresh EASE() in ``fit``
    if name == "DEFAULT_FIRST_STAGE":
        warnings.warn("maasrec.lm_ranker.DEFAULT_FIRST_STAGE is deprecated and will be removed: "
                      "LMRanker(first_stage=None) (the default) fits a fresh EASE(); pass "
                      "first_stage=EASE(...) to choose its parameters", FutureWarning,
                      stacklevel=2)
        return EASE()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class LMRanker(CandidateReranker):
    """Fine-tuned language-model cross-encoder re-ranking a first stage's candidates.

    ``recommend`` runs in two stages: the first stage (any maasrec recommender, EASE by
    default) proposes its top ``n_candidates`` items per user, with every exclusion and
    filter of the call; the language model reads each (user, candidate) pair as text
    and scores it; the candidates are re-ranked by that score (optionally blended with
    the first stage's) and the top ``k`` returned. An item outside the first stage's
    candidates is never returned.

    **Pair text.** ``template`` (default :data:`~maasrec.lm_ranker.DEFAULT_TEMPLATE`,
    ``"{profile}History: {history}{sep}Candidate: {item}"``) is filled with the user's
    profile fields (when ``user_features`` are given), the texts of the user's
    ``history_len`` most recent training items (**most recent first**, joined by
    ``"; "``), and the candidate's text; ``{sep}`` is the boundary of a sentence pair
    (``[CLS] A [SEP] B [SEP]`` with token types for BERT, a newline for GPT). With
    MovieLens item texts a pair reads::

        [CLS] age: 24, gender: M, occupation: technician, zip: 85711. History: Heat
        (1995). Genres: Action; Toy Story (1995). Genres: Animation [SEP] Candidate:
        Star Wars (1977). Genres: Action, Sci-Fi [SEP]

    Each item text is tokenised once (cut to ``max_item_tokens``); when a pair would
    exceed ``max_length`` tokens the oldest history items are dropped. See
    :meth:`pair_text` to print the pairs of a fitted model.

    **Model.** Encoders (BERT, MiniLM, RoBERTa...) become
    ``AutoModelForSequenceClassification`` with one logit; decoders (GPT-2, Llama,
    SmolLM...) get a last-token head (the last real token's hidden state, left or right
    padding alike, through a linear layer). The logit is the ranking score;
    ``predict_proba`` is its sigmoid.

    **Training data** (``fit``). For every training user with at least two items, the
    last ``positives_per_user`` items of the time-ordered training sequence are
    positives, each with the items before it as history (leave-one-out within the
    training sequence, the situation of a next-item test). Each positive gets
    ``negatives_per_positive`` negatives: ``random_negatives`` drawn uniformly from the
    items the user never interacted with, and the rest drawn (fresh every epoch) from the
    first stage's top ``n_candidates`` unseen items for that user -- hard negatives, the
    very items the model must out-rank at test time. ``max_positives`` subsamples the
    positives (seeded) to bound training time. The loss is binary cross-entropy over
    pairs (``"bce"``, the default: it keeps ``predict_proba`` calibrated) or a softmax
    over each positive's group of 1 + ``negatives_per_positive`` candidates
    (``"listwise"``). AdamW decays the weight matrices only (the shared rule of
    :func:`maasrec.training.param_groups`); a NaN or infinite loss raises
    :class:`~maasrec.training.NonFiniteLossError` and leaves the model unfitted.
    ``fit(..., checkpoint_dir=...)`` writes a
    training checkpoint after every epoch (the weights, AdamW, the schedule, the dropout
    stream and the negatives' generator) and resumes from the one found there: a fit
    killed mid-way and rerun with the same directory ends with the same weights.

    **A recipe that works** for MiniLM, measured on MovieLens 100K against EASE:
    :doc:`/lm_ranking` ("A recipe that works").

    Parameters
    ----------
    first_stage : Recommender, optional
        Candidate generator; cloned and fitted on the same data in ``fit`` (the fitted
        copy is ``first_stage_``). None (the default) fits a fresh ``EASE()``, as
        scikit-learn resolves ``estimator=None`` in ``fit``; to set its parameters pass
        one, e.g. ``first_stage=EASE(l2=100.0)``. Tune it on validation first (on
        MovieLens 100K leave-last-out EASE's best ``l2`` is 100).
    model : str, path or (model, tokenizer) pair, default "sentence-transformers/all-MiniLM-L6-v2"
        A name resolved by :func:`maasrec.encoders.hub.resolve_model` (weights a package
        ships, e.g. ``maasrec[text]`` for MiniLM, load offline), a local
        ``save_pretrained`` directory or ``.gguf`` file, a hub name, or an in-memory
        ``(transformers model, tokenizer)`` pair (copied, never modified). The
        fine-tuned weights and the tokenizer are saved with the model either way.
    n_candidates : int, default 50
        Candidates re-ranked per user; ``recommend(k=...)`` needs ``k <= n_candidates``.
    history_len : int, default 10
        Most recent items shown in ``{history}``.
    max_length : int, default 256
        Tokens per pair, special tokens included.
    max_item_tokens : int, default 32
        Tokens kept of each item text.
    template : str, default DEFAULT_TEMPLATE
        See above; fields ``{profile}``, ``{history}``, ``{item}`` (required) and
        ``{sep}``.
    epochs : int, default 1
        Passes over the training positives (0 keeps the untrained head: for tests).
    learning_rate : float, optional
        AdamW learning rate; default 5e-5 for full fine-tuning, 5e-4 with LoRA. Linear
        warm-up over the first ``warmup`` fraction of steps, then linear decay to 0.
    batch_size : int, default 32
        Pairs per forward pass (training keeps each positive's group whole:
        ``max(1, batch_size // (1 + negatives_per_positive))`` groups per step).
    negatives_per_positive : int, default 4
    random_negatives : int, default 1
        How many of the negatives are uniform random items (the rest are hard).
    positives_per_user : int, default 1
    max_positives : int, optional
        Keep at most this many training positives (a seeded random subset).
    loss : {"bce", "listwise"}, default "bce"
    alpha : float in [0, 1], default 0.0
        Weight of the first stage in the final score: ``(1 - alpha) * z(LM) + alpha *
        z(first stage)`` with per-user z-scores over the candidates; 0 ranks by the LM
        logit alone.
    freeze_layers : int, optional
        Freeze the embeddings and this many lowest transformer layers (full fine-tuning
        only; faster training, less memory).
    grad_accum_steps : int, default 1
        Micro-batches per optimiser step (each micro-batch's loss is divided by it; a
        shorter last group of an epoch is weighed as a mean, as in the
        :class:`~maasrec.training.Trainer`).
    peft : None, "lora" or dict, default None
        Parameter-efficient fine-tuning with LoRA adapters (needs the ``lora`` extra,
        ``pip install 'maasrec[lora]'``); a dict sets ``r`` (8), ``alpha`` (16),
        ``dropout`` (0.05), ``target_modules``. The adapters are merged into the weights
        after training, so inference and the saved model are those of a plain model.
    head : {"auto", "mean", "first", "last"}, default "auto"
        The scoring head (see :func:`maasrec.lm_ranker.network.build_cross_encoder`):
        ``"auto"`` is the model's own sequence-classification head for BERT-style
        models (``[CLS]`` -> pooler -> classifier) and a last-token head for GPT-style
        ones; ``"mean"`` puts a fresh linear head on the mean of the real tokens' hidden
        states, which suits sentence-transformers checkpoints such as all-MiniLM-L6-v2
        (trained with mean pooling: its ``[CLS]`` state is not its sentence vector).
    weight_decay : float, default 0.01
    warmup : float in [0, 1), default 0.1
    missing_text : {"raise", "id"}, default "raise"
        Items without text: raise a DataError naming them, or use ``"item <id>"``.
    profile_fields : sequence of str, optional
        User feature names shown in ``{profile}``, in this order (default: all).
    device : str or torch.device, optional
        See :func:`maasrec.device.resolve_device`; on CUDA the forward passes run under
        autocast (:func:`maasrec.device.amp_dtype`).
    random_state : int, optional
        Seeds the head, the dropout, LoRA, the subsampling and the negatives.
    verbose : bool, default False
        A tqdm progress bar over the fine-tuning epochs (the one of every maasrec model,
        :class:`~maasrec.training.ProgressCallback`; also one over scoring passes of 50
        batches or more); nothing is printed, the epoch lines go to ``logging`` either
        way.
    clip_grad_norm : float or None, default 1.0
        Clip the global gradient norm to this value before every optimiser step (None:
        no clipping).

    Attributes
    ----------
    first_stage_ : Recommender
        The fitted first stage (saved in ``first_stage_/`` of the model directory).
    item_text_ : np.ndarray of str
        The text of every item.
    user_profile_ : np.ndarray of str or None
        The profile text of every user.
    history_items_, history_indptr_ : np.ndarray of int64
        Each user's last ``history_len`` training items (time order), CSR-style.
    training_log_ : dict
        :meth:`TrainingHistory.to_dict() <maasrec.training.TrainingHistory.to_dict>`
        (``losses``, ``seconds``, ``learning_rates``, ``steps``, ...) plus ``epoch_loss``,
        ``epoch_seconds``, ``step_loss`` (every micro-batch), ``pairs_per_epoch``,
        ``pairs_per_second``, ``optimizer_steps``, ``learning_rate``, ``n_positives``,
        ``trainable_parameters`` and ``total_parameters``.

    Notes
    -----
    The fine-tuned language model is saved as a ``transformers`` folder ``lm/`` of the
    model directory (``config.json``, ``model.safetensors``, the tokenizer's JSON/text
    files) and loads offline; no file is pickled. A model built from an in-memory
    ``(model, tokenizer)`` pair is saved too: its ``model`` parameter is then recorded
    as a placeholder (the instance itself is not changed by ``save``), and the loaded
    model must be given ``set_params(model=...)`` before it is fitted again.

    ``recommend``, ``rank_indices`` and ``score`` see only the first stage's
    candidates (``scores_all_items`` is False): :func:`~maasrec.metrics.evaluate` ranks
    those lists, so cut-offs above ``n_candidates`` and ``auc`` are not available.

    Examples
    --------
    >>> from maasrec.datasets import load_movielens
    >>> from maasrec.lm_ranker import LMRanker
    >>> ds = load_movielens("100k")                                # doctest: +SKIP
    >>> model = LMRanker(epochs=1, max_positives=2000, random_state=0)  # doctest: +SKIP
    >>> model.fit(ds.interactions, item_features=ds.item_features)  # doctest: +SKIP
    >>> ids, scores = model.recommend([1, 2], k=10)                 # doctest: +SKIP
    """

    def __init__(self, first_stage: Recommender | None = None,
                 model: Any = "sentence-transformers/all-MiniLM-L6-v2", n_candidates: int = 50,
                 history_len: int = 10, max_length: int = 256, max_item_tokens: int = 32,
                 template: str = DEFAULT_TEMPLATE, epochs: int = 1,
                 learning_rate: float | None = None, batch_size: int = 32,
                 negatives_per_positive: int = 4, random_negatives: int = 1,
                 positives_per_user: int = 1, max_positives: int | None = None,
                 loss: str = "bce", alpha: float = 0.0, freeze_layers: int | None = None,
                 grad_accum_steps: int = 1, peft: str | dict | None = None,
                 head: str = "auto", weight_decay: float = 0.01, warmup: float = 0.1, missing_text: str = "raise",
                 profile_fields: tuple | list | None = None, device: Any = None,
                 random_state: int | None = None, verbose: bool = False,
                 clip_grad_norm: float | None = 1.0):
        self.first_stage = first_stage
        self.model = model
        self.n_candidates = n_candidates
        self.history_len = history_len
        self.max_length = max_length
        self.max_item_tokens = max_item_tokens
        self.template = template
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.negatives_per_positive = negatives_per_positive
        self.random_negatives = random_negatives
        self.positives_per_user = positives_per_user
        self.max_positives = max_positives
        self.loss = loss
        self.alpha = alpha
        self.freeze_layers = freeze_layers
        self.grad_accum_steps = grad_accum_steps
        self.peft = peft
        self.head = head
        self.weight_decay = weight_decay
        self.warmup = warmup
        self.missing_text = missing_text
        self.profile_fields = profile_fields
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.clip_grad_norm = clip_grad_norm

    # -- parameters ---------------------------------------------------------------------------
    def set_params(self, **params) -> LMRanker:
        """Set parameters (``first_stage__l2=...`` for those of a given first stage).

        Parameters
        ----------
        **params

        Returns
        -------
        self

        Warns
        -----
        FutureWarning
            ``first_stage__...`` while ``first_stage`` is None (the default): the EASE()
            that ``fit`` would choose is made the first stage and given those parameters,
            as before; this will raise a DataError in a later release (pass
            ``first_stage=EASE(l2=...)``).
        """
        if self.first_stage is None and "first_stage" not in params and any(
                k.startswith("first_stage__") for k in params):
            warnings.warn(
                "LMRanker.set_params(first_stage__...) with first_stage=None is deprecated "
                "and will raise a DataError: pass the first stage itself, e.g. "
                "set_params(first_stage=EASE(l2=100.0)); an EASE() is set as first_stage now",
                FutureWarning, stacklevel=2)
            self.first_stage = EASE()
        super().set_params(**params)
        return self

    def _validate_saved_params(self) -> None:
        # a model saved from an in-memory pair records a placeholder (its weights are in lm/)
        saved = self.model
        if isinstance(saved, str) and saved.startswith(_IN_MEMORY):
            self.model = "lm/"
        try:
            super()._validate_saved_params()
        finally:
            self.model = saved

    def _validate_params(self) -> None:
        validate_params(self)  # maasrec/lm_ranker/_params.py

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        texts = item_texts(self.item_vocab_, item_features, self.missing_text)
        profiles = user_profiles(self.user_vocab_, user_features, self.profile_fields)
        device = resolve_device(self.device)
        lora = lora_settings(self.peft)
        with seeded(self.random_state, device) as seed:
            rng = np.random.default_rng(seed)
            enc, tok = build_cross_encoder(self.model, head=self.head)
            builder = PairBuilder(tok, self.template, max_length=self.max_length,
                                  max_item_tokens=self.max_item_tokens,
                                  is_decoder=enc.is_decoder)
            builder.set_items([str(t) for t in texts])
            first = EASE() if self.first_stage is None else clone(self.first_stage)
            self.first_stage_ = first.fit(
                data, item_features=item_features, user_features=user_features,
                validation=validation)
            seqs = data.sequences()
            self._set_histories(seqs)
            self.item_text_ = texts
            self.user_profile_ = profiles
            self._attach(enc, tok, builder, device)
            total = sum(p.numel() for p in enc.parameters())
            if lora is not None:
                apply_lora(enc, lora)
            elif self.freeze_layers is not None:
                freeze_lower_layers(enc, int(self.freeze_layers))
            trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
            enc.to(device)
            try:
                with threads_for(self._work(), device):
                    log = fine_tune(self, data, seqs, rng, device, lora is not None, seed,
                                    checkpoint_dir=checkpoint_dir)
            except BaseException:
                self._forget_fit()  # a half-trained language model is not a fitted model
                self._lm = None
                raise
            if lora is not None:
                merge_lora(enc)
            # the same memory layout as after load: bit-identical scores (see the function)
            own_aligned_storage(enc).eval()
        log.update({"trainable_parameters": int(trainable), "total_parameters": int(total)})
        self.training_log_ = log

    def refresh(self, X, *, item_features=None, user_features=None,
                validation=None) -> LMRanker:
        """Refit the first stage and the user histories on new interactions, keeping the LM.

        The fine-tuned language model is the expensive part; the first stage and the
        histories the LM reads are cheap to renew. Use this to serve with newer
        interactions (e.g. a daily first-stage refresh, the LM fine-tuned less often),
        or to evaluate on a test split with the model fine-tuned on the split before.

        Parameters
        ----------
        X : Interactions, pandas.DataFrame or scipy.sparse matrix
            All interactions to serve from now on. Users and items must be those known
            at fit time (same vocabularies: build ``X`` with them, e.g. a part of the
            same split).
        item_features : ItemFeatures, optional
            Passed to the first stage's ``fit`` (the item texts the LM reads stay those
            of ``fit``).
        user_features : UserFeatures, optional
            New profiles (default: keep the current ones); also passed to the first stage.
        validation : optional
            Passed to the first stage's ``fit``.

        Returns
        -------
        self

        Raises
        ------
        DataError
            Users or items differ from the fitted ones.
        """
        from ..data.interactions import as_interactions

        self._check_fitted()
        self._check_lm()
        data = as_interactions(X)
        if data.user_vocab != self.user_vocab_ or data.item_vocab != self.item_vocab_:
            raise DataError(
                f"refresh needs the users and items known at fit time ({self.n_users_} users, "
                f"{self.n_items_} items); got {data.n_users} users and {data.n_items} items "
                f"with other ids: fit again for a new catalogue")
        self.seen_ = data.to_csr()
        self._pop_cache = None
        self.first_stage_ = clone(self.first_stage_).fit(
            data, item_features=item_features, user_features=user_features,
            validation=validation)
        self._set_histories(data.sequences())
        if user_features is not None:
            self.user_profile_ = user_profiles(self.user_vocab_, user_features,
                                               self.profile_fields)
        return self

    def _set_histories(self, seqs: list[np.ndarray]) -> None:
        h = int(self.history_len)
        lasts = [s[max(0, len(s) - h):] if h else s[:0] for s in seqs]
        self.history_indptr_ = np.concatenate(
            [[0], np.cumsum([len(x) for x in lasts])]).astype(np.int64)
        self.history_items_ = (np.concatenate(lasts) if lasts else np.empty(0)).astype(np.int64)

    def _attach(self, enc: CrossEncoder, tok, builder: PairBuilder, device: torch.device) -> None:
        self._lm = enc
        self._tok = tok
        self._builder = builder
        self._device = device
        self._pairs = PairScorer(enc, tok, builder, device)

    def _work(self) -> int:
        """Elements per kernel of a batch (small ones run on one CPU thread)."""
        hidden = int(getattr(self._lm.config, "hidden_size", 0) or 0) or 768
        return int(self.batch_size) * int(self.max_length) * hidden

    # -- inference --------------------------------------------------------------------------
    def _logits(self, seqs: list[tuple[list[int], list[int]]]) -> np.ndarray:
        """LM logits of token sequences (see :meth:`PairScorer.logits`)."""
        return self._pairs.logits(seqs, int(self.batch_size), self._work(),
                                  verbose=bool(self.verbose))

    def _user_parts_known(self, user_idx: np.ndarray) -> list[UserPart]:
        ip, items = self.history_indptr_, self.history_items_
        prof = self.user_profile_
        return [self._builder.user_part(items[ip[u]:ip[u + 1]],
                                        "" if prof is None else str(prof[u]))
                for u in np.asarray(user_idx, dtype=np.int64)]

    def _user_parts_cold(self, sequences: list[np.ndarray]) -> list[UserPart]:
        h = int(self.history_len)
        return [self._builder.user_part(np.asarray(s)[max(0, len(s) - h):] if h else [], "")
                for s in sequences]

    def _second_scores(self, user_idx, sequences, candidates):
        self._check_lm()
        parts = (self._user_parts_known(user_idx) if user_idx is not None
                 else self._user_parts_cold(sequences))
        rows, cols = np.nonzero(candidates >= 0)
        seqs = [self._builder.pair(parts[r], int(candidates[r, c])) for r, c in zip(rows, cols)]
        out = np.full(candidates.shape, -np.inf, dtype=np.float32)
        out[rows, cols] = self._logits(seqs)
        return out

    def _nested_names(self) -> tuple[str, ...]:
        return ("first_stage_",)

    def _check_loaded(self) -> None:
        from .._loadcheck import check_stored_histories

        super()._check_loaded()
        where = self._load_where
        n_items, n_users = self.n_items_, self.n_users_
        check_stored_histories(self, where)
        for name, n in (("item_text_", n_items), ("user_profile_", n_users)):
            v = getattr(self, name, None)
            if v is None and name == "user_profile_":
                continue
            if not (isinstance(v, np.ndarray) and v.shape == (n,)
                    and all(isinstance(t, str) for t in v)):
                raise ModelFormatError(f"{where}: {name} must hold {n} strings, got "
                                       f"{type(v).__name__} of shape {np.shape(v)}")

    def _first_stage(self) -> Recommender:
        return self.first_stage_

    def _check_lm(self) -> None:
        if getattr(self, "_lm", None) is None:
            raise NotFittedError("this LMRanker has no language model loaded; fit or load it")

    def predict_proba(self, users, items) -> np.ndarray:
        """Click probability of (user, item) pairs: the sigmoid of the LM logit.

        Unlike ``score``, any item can be scored, not only the first stage's
        candidates. Calibrated by the BCE loss (``loss="bce"``); with the listwise loss
        only the order of the probabilities of one user is meaningful.

        Parameters
        ----------
        users : raw user id or sequence of raw user ids (known at fit time)
        items : raw item id or sequence of raw item ids, same length

        Returns
        -------
        np.ndarray of float32, shape (n_pairs,)

        Raises
        ------
        NotFittedError, UnknownIdError, DataError
        """
        logits = self.decision_function(users, items)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def decision_function(self, users, items) -> np.ndarray:
        """LM logits of (user, item) pairs (see :meth:`predict_proba`).

        Parameters
        ----------
        users : raw user id or sequence of raw user ids
        items : raw item id or sequence of raw item ids, same length

        Returns
        -------
        np.ndarray of float32, shape (n_pairs,)
        """
        self._check_fitted()
        self._check_lm()
        users = [users] if _is_scalar_id(users) else list(users)
        items = [items] if _is_scalar_id(items) else list(items)
        if len(users) != len(items):
            raise DataError(f"users and items must have the same length, got {len(users)} and "
                            f"{len(items)}")
        if not users:
            return np.empty(0, dtype=np.float32)
        u = self.user_vocab_.index(users)
        i = self.item_vocab_.index(items)
        uniq, inv = np.unique(u, return_inverse=True)
        parts = self._user_parts_known(uniq)
        return self._logits([self._builder.pair(parts[r], int(it))
                             for r, it in zip(np.asarray(inv).ravel(), i)])

    def pair_text(self, user, item) -> str:
        """The text the language model reads for one (user, item) pair (decoded tokens).

        Parameters
        ----------
        user : raw user id
        item : raw item id

        Returns
        -------
        str
        """
        self._check_fitted()
        self._check_lm()
        u = self.user_vocab_.index([user])
        i = self.item_vocab_.index([item])
        return self._builder.pair_text(self._user_parts_known(u)[0], int(i[0]))

    # -- explanations (maasrec/lm_ranker/_explain.py) --------------------------------------
    def explain(self, user=None, item=None, *, history=None, n: int = 5, item_titles=None,
                verb: str = "watched", tokens: bool = False):
        """Why the language model scores ``item`` as it does: the prompt's history items.

        Leave-one-out over the history positions in the prompt: each weight is the LM
        logit minus the logit with that history item left out of the prompt (positions
        older than ``history_len`` are not read and weigh 0). The score explained is the
        LM logit of the pair, whichever items the first stage proposes.

        Parameters
        ----------
        user, item, history, n, item_titles, verb
            As in :meth:`maasrec.base.Recommender.explain` (``history`` oldest first).
        tokens : bool, default False
            Also attribute the logit to the prompt's tokens with Captum's
            ``LayerIntegratedGradients`` (``details["tokens"]``: ``[token, attribution]``
            pairs); needs the ``captum`` extra.

        Returns
        -------
        maasrec.explain.Explanation

        Raises
        ------
        NotFittedError, UnknownIdError, DataError
            As :meth:`maasrec.base.Recommender.explain`; ``tokens`` not a bool.
        ImportError
            ``tokens=True`` without Captum installed (names the extra).
        """
        from ..explain import explain

        return explain(self, user, item, history=history, n=n, item_titles=item_titles,
                       verb=verb, options={"tokens": tokens} if tokens is not False else None)

    def _explain_sequence(self, seq: np.ndarray, item_idx: int, user_idx, tokens=False):
        from ._explain import lm_terms

        return lm_terms(self, seq, item_idx, user_idx, tokens=tokens)

    def _explain_candidates(self, seq: np.ndarray) -> np.ndarray:
        from ._explain import candidates

        return candidates(self, seq)

    def _explain_scores(self, seqs: list[np.ndarray], items: np.ndarray) -> np.ndarray:
        from ._explain import pair_scores

        return pair_scores(self, seqs, items)

    # -- persistence --------------------------------------------------------------------------
    def _params_for_save(self) -> dict[str, Any]:
        # an in-memory (model, tokenizer) pair is not JSON: its weights and tokenizer are
        # saved in lm/ and the parameter is recorded as a placeholder; self is not changed
        params = super()._params_for_save()
        if isinstance(self.model, (tuple, list)):
            params["model"] = f"{_IN_MEMORY}{type(self.model[0]).__name__} (weights in {_LM_DIR}/)>"
        return params

    def _save_extra_files(self, tmp) -> None:
        super()._save_extra_files(tmp)
        self._check_lm()
        save_cross_encoder(self._lm, self._tok, os.path.join(tmp, _LM_DIR))

    def _load_extra_files(self, path) -> None:
        super()._load_extra_files(path)
        device = resolve_device(self.device)
        enc, tok = load_cross_encoder(os.path.join(path, _LM_DIR), device)
        _check_loaded_lm(enc, tok, int(self.max_length), os.path.join(path, _LM_DIR))
        builder = PairBuilder(tok, self.template, max_length=self.max_length,
                              max_item_tokens=self.max_item_tokens, is_decoder=enc.is_decoder)
        builder.set_items([str(t) for t in self.item_text_])
        self._attach(enc, tok, builder, device)


def _check_loaded_lm(enc, tok, max_length: int, where: str) -> None:
    """Token ids must fit the embedding, positions the model; weights must be finite."""
    emb = enc.model.get_input_embeddings() if hasattr(enc, "model") else None
    n_emb = getattr(emb, "num_embeddings", None)
    ids = list(tok.get_vocab().values())
    top = max(ids) if ids else -1
    if n_emb is not None and (top >= n_emb or min(ids, default=0) < 0):
        raise ModelFormatError(f"{where!r}: the tokenizer has token id {top} but the model's "
                               f"embedding only {n_emb} rows")
    cfg = getattr(getattr(enc, "model", None), "config", None)
    n_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if isinstance(n_pos, int) and max_length > n_pos:
        raise ModelFormatError(f"{where!r}: max_length={max_length} exceeds the model's "
                               f"{n_pos} positions")
    for name, p in enc.named_parameters():
        if p.dtype.is_floating_point and not p.is_meta and not bool(torch.isfinite(p).all()):
            raise ModelFormatError(f"{where!r}: weight {name!r} holds non-finite values")
