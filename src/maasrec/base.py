"""The :class:`Recommender` base class: parameters, ``recommend`` (written once), persistence.

A model subclasses :class:`Recommender`, stores its ``__init__`` arguments unchanged,
and implements:

- ``_fit(data, item_features, user_features, validation)``: learn from
  :class:`~maasrec.data.Interactions` (already validated; ``self.user_vocab_``,
  ``self.item_vocab_`` and ``self.seen_`` are set by :meth:`Recommender.fit`);
- ``_score_users(user_idx) -> ndarray [len(user_idx), n_items]``: scores of known users;
- optionally ``_score_history(csr) -> ndarray``: scores of users given only their
  interactions (cold users; item-based models need only this one, since the default
  ``_score_users`` scores the users' training rows through it);
- optionally ``_similar_scores(item_idx)`` for :meth:`Recommender.similar_items`;
- sequential (order-aware) models set ``ordered_history = True`` and implement
  ``_score_sequences(list of index arrays) -> ndarray``: ``recommend(history=...)`` then
  passes each history as an array of item indices in the order given (oldest first,
  repeats kept) instead of a CSR matrix, which keeps neither.

``_score_users``/``_score_history`` may return numpy arrays or torch tensors (on any
device): tensors are ranked by :class:`~maasrec.rankers.TopK` on their device.

Approximate retrieval (``recommend(..., retriever=FaissRetriever(...))`` or
:meth:`Recommender.set_retriever`) works for models whose scores are inner products
of a user vector and an item vector (MF-style). Such a model implements three hooks;
the defaults return None, and ``retriever=`` then raises an error naming the model:

- ``_item_vectors() -> ndarray [n_items, d]``: one float32 vector per item index. It
  is called on every ``recommend``, so return the stored array (no copy);
- ``_user_vectors(user_idx) -> ndarray [len(user_idx), d]`` such that
  ``_score_users(u) == _user_vectors(u) @ _item_vectors().T``;
- ``_history_vectors(csr) -> ndarray [b, d]`` such that
  ``_score_history(h) == _history_vectors(h) @ _item_vectors().T`` (cold users;
  return None if the model cannot, then only known users can use a retriever).

Fold an item bias into the vectors as an extra coordinate (1 on the user side); a
per-user constant does not change the ranking but does change the scores, so fold it
in too (1 on the item side). The retriever re-scores its candidates exactly with these
vectors, so the returned scores are the model's scores. Items added to the model
(more rows from ``_item_vectors``) are added to the index on the next ``recommend``;
changed vectors (a refit) rebuild it.

Everything else -- batching, exclusions, filters, padding, raw ids, persistence -- is
shared, so every model behaves the same way. :class:`Recommender` keeps the public API
and the scoring hooks; the shared machinery behind it sits in four private mixins, one
responsibility each: input resolution (users, histories, allow/deny lists, padded ids;
``maasrec._recommender_inputs``), scoring and ranking in memory-bounded blocks
(``maasrec._recommender_ranking``), the save/load glue with its subclass hooks
(``_extra_state``, ``_check_loaded``, ``_build_modules``...; ``maasrec._recommender_io``),
and fit's parameter checks and hooks (``_check_standard_params``, ``_validate_params``,
``_fit``, ``_implicit_feedback``...; ``maasrec._recommender_fit``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import importlib
import inspect
import logging
import os
import sys
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ._recommender_fit import FitMixin
from ._recommender_inputs import (  # noqa: F401  (_is_seq_of_seqs: re-exported, used by lm_ranker)
    InputsMixin,
    _is_scalar_id,
    _is_seq_of_seqs,
)
from ._recommender_io import PersistenceMixin, fitted_state
from ._recommender_ranking import RankingMixin
from .data.interactions import Interactions, as_interactions
from .data.vocab import check_ordered_ids
from .exceptions import DataError, MaasrecError, MaasrecWarning, ModelFormatError, NotFittedError
from .persistence import (
    atomic_directory,
    is_encrypted,
    load_encrypted,
    read_model_dir,
    save_encrypted,
    write_model_dir,
)
from .rankers.ann import FaissRetriever
from .rankers.retrieval import resolve_retriever
from .rankers.topk import _check_k, _to_numpy

__all__ = ["Component", "Recommender", "clone"]

logger = logging.getLogger(__name__)

#: Memory budget (bytes) for one block of dense scores in ``recommend``/``evaluate``.
SCORE_BLOCK_BYTES = int(os.environ.get("MAASREC_SCORE_BLOCK_BYTES", 128 * 2**20))

_REGISTRY: dict[str, type] = {}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _public_name(cls: type) -> str:
    """The shortest importable name: ``maasrec.models.EASE`` rather than the defining module."""
    mod = cls.__module__
    parts = mod.split(".")
    for i in range(1, len(parts)):
        parent = sys.modules.get(".".join(parts[:i]))
        if parent is not None and getattr(parent, cls.__qualname__, None) is cls:
            return f"{'.'.join(parts[:i])}.{cls.__qualname__}"
    return _class_name(cls)


def resolve_class(name: str) -> type:
    """Find a registered maasrec class by its saved name, without running foreign code.

    Only classes already imported (registered when their module was imported) or defined
    inside the ``maasrec`` package are found; a model file can never make ``load`` import
    an arbitrary module.

    Parameters
    ----------
    name : str
        ``module.QualName`` as written by ``save``.

    Returns
    -------
    type

    Raises
    ------
    ModelFormatError
    """
    if not isinstance(name, str):
        raise ModelFormatError(f"class name {name!r} is not a string")
    if name in _REGISTRY:
        return _REGISTRY[name]
    module = name.rpartition(".")[0]
    if module == "maasrec" or module.startswith("maasrec."):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ModelFormatError(f"class {name!r} cannot be found: {exc}") from exc
        if name in _REGISTRY:
            return _REGISTRY[name]
    raise ModelFormatError(
        f"class {name!r} is not a known maasrec class; if it is your own subclass, import "
        f"the module that defines it before loading (load never imports code named by a "
        f"model file)"
    )


class Component:
    """Parameter handling shared by recommenders and their building blocks.

    Parameters are the arguments of ``__init__``, stored unchanged under the same
    names (the scikit-learn convention); ``__init__`` does no work.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[_class_name(cls)] = cls

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        sig = inspect.signature(init)
        names = []
        for p in sig.parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ may not take *args/**kwargs")
            names.append(p.name)
        return sorted(names)

    def _param_value(self, name: str) -> Any:
        """The stored value of constructor argument ``name`` (subclasses may map names)."""
        return getattr(self, name)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this object.

        Parameters
        ----------
        deep : bool, default True
            Also return the parameters of nested components as ``name__param``.

        Returns
        -------
        dict
        """
        out = {}
        for name in self._get_param_names():
            value = self._param_value(name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                for k, v in value.get_params(deep=True).items():
                    out[f"{name}__{k}"] = v
        return out

    def set_params(self, **params) -> Component:
        """Set parameters (``name`` or ``name__nested`` for nested components).

        Parameters
        ----------
        **params
            New values.

        Returns
        -------
        self

        Raises
        ------
        DataError
            For a name that is not a parameter.
        """
        valid = self._get_param_names()
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise DataError(
                    f"{name!r} is not a parameter of {type(self).__name__}; valid parameters: "
                    f"{valid}"
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            default = sig.parameters[name].default
            try:
                same = value is default or bool(value == default)
            except Exception:  # arrays and the like
                same = False
            if not same:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def clone(obj: Any) -> Any:
    """An unfitted copy with the same parameters (nested components cloned too).

    Parameters
    ----------
    obj : Component or any object

    Returns
    -------
    object
    """
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone(o) for o in obj)
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, Component):
        params = {k: clone(v) for k, v in obj.get_params(deep=False).items()}
        return type(obj)(**params)
    return copy.deepcopy(obj)


def _params_to_json(params: dict, where: str = "params") -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, Component):
            out[k] = {"__component__": _class_name(type(v)),
                      "params": _params_to_json(v.get_params(deep=False), f"{where}.{k}")}
        elif isinstance(v, (list, tuple)) and any(isinstance(x, Component) for x in v):
            encoded = [_params_to_json({"x": x}, f"{where}.{k}")["x"] for x in v]
            out[k] = {"__tuple__" if isinstance(v, tuple) else "__list__": encoded}
        elif isinstance(v, tuple):
            out[k] = {"__tuple__": list(v)}
        elif isinstance(v, dict) and any(isinstance(x, Component) for x in v.values()):
            out[k] = {"__dict__": _params_to_json(v, f"{where}.{k}")}
        else:
            out[k] = v
    return out


def _params_from_json(params: dict) -> dict:
    def dec(v):
        if isinstance(v, dict):
            if "__component__" in v:
                klass = resolve_class(v["__component__"])
                return klass(**_params_from_json(v.get("params", {})))
            if "__list__" in v:
                return [dec(x) for x in v["__list__"]]
            if "__tuple__" in v:
                return tuple(dec(x) for x in v["__tuple__"])
            if "__dict__" in v:
                return _params_from_json(v["__dict__"])
        return v

    if not isinstance(params, dict):
        raise ModelFormatError(f"params {params!r} is not a JSON object")
    return {k: dec(v) for k, v in params.items()}


def positive_interactions(data: Interactions, who: str) -> Interactions:
    """The interactions with a value > 0 (implicit feedback), warning about the others.

    The one place where maasrec's policy for non-positive values of implicit-feedback
    models lives (see :meth:`Recommender.fit`).

    Parameters
    ----------
    data : Interactions
    who : str
        The model's name, for the messages.

    Returns
    -------
    Interactions
        ``data`` itself when no value is <= 0 (no copy), else the rows with value > 0.

    Raises
    ------
    DataError
        Every value is <= 0: nothing is left to learn from.

    Warns
    -----
    MaasrecWarning
        Naming how many rows were left out.
    """
    if not data.has_values:
        return data
    v = data.values
    keep = v > 0
    if keep.all():
        return data
    n_drop = int(len(v) - np.count_nonzero(keep))
    first = float(v[np.flatnonzero(~keep)[0]])
    if not keep.any():
        raise DataError(
            f"every one of the {n_drop} interaction values is <= 0 (e.g. {first!r}): {who} "
            f"learns from implicit feedback, where only values > 0 are interactions; pass "
            f"positive values, or implicit=False where the model offers it"
        )
    warnings.warn(MaasrecWarning(
        f"{who}: left {n_drop} of {len(v)} interactions with a value <= 0 (e.g. {first!r}) "
        f"out of training: implicit-feedback models learn only from values > 0; they still "
        f"count as seen (never recommended with exclude_seen=True)"), stacklevel=3)
    return data._take(keep)


def _positive_validation(validation: Interactions, who: str) -> Interactions:
    """``validation`` without its rows of value <= 0 (implicit feedback: not interactions).

    Early stopping of an implicit-feedback model must not reward ranking a disliked item
    high, so those rows leave the validation part as they leave training.
    """
    if not validation.has_values:
        return validation
    keep = validation.values > 0
    if keep.all():
        return validation
    n_drop = int(len(keep) - np.count_nonzero(keep))
    if not keep.any():
        raise DataError(
            f"validation: every one of its {n_drop} interaction values is <= 0: {who} learns "
            f"from implicit feedback, where only values > 0 are interactions, so nothing is "
            f"left to validate on; pass positive values or validation=None")
    warnings.warn(MaasrecWarning(
        f"{who}: left {n_drop} of {len(keep)} validation interactions with a value <= 0 out "
        f"of validation (implicit feedback: only values > 0 are interactions)"), stacklevel=3)
    return validation._take(keep)


class Recommender(InputsMixin, RankingMixin, PersistenceMixin, FitMixin, Component):
    """Base class of every maasrec recommender.

    Subclasses implement ``_fit`` and ``_score_users`` (or ``_score_history``); the
    public API below is shared.

    Attributes
    ----------
    user_vocab_ : IdVocab
        Users known at fit time.
    item_vocab_ : IdVocab
        The catalogue.
    seen_ : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        The training interactions (values), used to exclude seen items. After ``fit``
        it is the training data's own matrix (``X.to_csr(copy=False)``: read-only arrays,
        no copy); copy it to modify it.
    fitted_at_ : str
        ISO time of the end of ``fit``.
    """

    #: Whether the model can score users from a history alone (``recommend(history=...)``).
    supports_history: ClassVar[bool] = True
    #: Whether the order of a history matters (sequential models): ``recommend(history=...)``
    #: then scores through :meth:`_score_sequences` (ordered item indices) rather than
    #: :meth:`_score_history` (a CSR matrix, which loses order and repeats).
    ordered_history: ClassVar[bool] = False
    #: Whether the model scores every item of the catalogue (:meth:`score_indices`). Two-stage
    #: models (:class:`~maasrec.lm_ranker.CandidateReranker`) rank only a first stage's
    #: candidates and set it to False: they answer :meth:`rank_indices` (and ``recommend``)
    #: but have no full-catalogue scores.
    scores_all_items: ClassVar[bool] = True
    #: Whether :meth:`predict` returns ratings (explicit-feedback rating models such as
    #: :class:`~maasrec.models.BiasedMF` set it).
    predicts_ratings: ClassVar[bool] = False

    # -- fitting ------------------------------------------------------------
    def fit(self, X, item_features=None, user_features=None, *, validation=None,
            checkpoint_dir=None) -> Recommender:
        """Fit the model.

        Parameters
        ----------
        X : Interactions, pandas.DataFrame or scipy.sparse matrix
            Training interactions. A frame needs user and item columns (ratings and
            timestamps optional, see :meth:`Interactions.from_pandas`).
        item_features : ItemFeatures, optional
            Item side information (used by models that can; others ignore it).
        user_features : UserFeatures, optional
            User side information.
        validation : Interactions, optional
            Held-out interactions for early stopping (neural models).
        checkpoint_dir : str or Path, optional
            Models trained by :class:`maasrec.training.Trainer` (``HybridRecommender``,
            ``NeuMF``, ``SequentialRecommender``, ``MultVAE``, ``LightGCN``; ``LMRanker``
            has the same option): write a training checkpoint there after
            every epoch, and resume from the one found there (a fit killed mid-way and
            rerun with the same directory ends with the same weights). Other models
            raise :class:`DataError`.

        Returns
        -------
        self

        Notes
        -----
        **Non-positive values.** A model learning from implicit feedback (every model
        unless it reads the values as ratings or weights, e.g. ``implicit=False``) treats
        only interactions with a value > 0 as interactions, as the ``implicit`` library
        does: rows with a value <= 0 (a negative rating, a zero weight) are left out of
        training, with a :class:`~maasrec.exceptions.MaasrecWarning` saying how many.
        They stay in ``seen_``: a disliked item is a known interaction, so
        ``recommend(exclude_seen=True)`` still never recommends it. Models reading the
        values (``EASE(implicit=False)``, ``ItemKNN(implicit=False)``,
        ``HybridRecommender(loss="mse")``...) keep every value.

        **Parameters** annotated ``bool`` must be real booleans (``implicit="no"`` is
        refused) and ``random_state`` must be None, an integer in ``[0, 2**64)`` or a
        ``numpy.random.Generator``; both raise :class:`DataError` naming the value.
        """
        fit_options = self._fit_options(checkpoint_dir)
        self._check_standard_params()
        self._validate_params()
        data = as_interactions(X)
        self.user_vocab_ = data.user_vocab
        self.item_vocab_ = data.item_vocab
        self.seen_ = data.to_csr(copy=False)  # read-only, shared with data; keeps every row
        if validation is not None:
            validation = as_interactions(validation).with_vocab(
                data.user_vocab, data.item_vocab, unknown="ignore")
        if self._implicit_feedback():
            data = positive_interactions(data, type(self).__name__)
            if validation is not None:
                validation = _positive_validation(validation, type(self).__name__)
        self._pop_cache = None
        self._fit(data, item_features=item_features, user_features=user_features,
                  validation=validation, **fit_options)
        self.fitted_at_ = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return self

    def partial_fit(self, new_interactions) -> Recommender:
        """Fold new interactions into the fitted model without a full refit.

        New users and new events of known users are folded in; what each model updates
        is listed in :doc:`/online` and its class docstring (EASE: the exact refit, by a
        low-rank update of its inverse Gram matrix; ALS: exact solves of the touched
        users, of the items that got events, then of those users again; BPRMF: new users
        folded in, then seeded epochs on the new events mixed with replayed old ones;
        ItemKNN, PureSVD: the users' histories, from which their scores are computed;
        Popularity: the counts). Folding events in one call or in many gives the same
        model (EASE: up to rounding); refit on all the data from time to time.

        Parameters
        ----------
        new_interactions : Interactions or pandas.DataFrame
            Raw user and item ids (and optional values/timestamps), as ``fit`` takes. An
            event for a (user, item) pair the model already has replaces its value.

        Returns
        -------
        self

        Raises
        ------
        NotFittedError
        UnknownIdError
            An item the model does not know, for a model that cannot add items (every
            classical model but :class:`~maasrec.models.Popularity`): refit to add items.
        DataError
            No interactions, a sparse matrix (no raw ids), a non-finite value, or a model
            without ``partial_fit`` support.
        """
        from .online import partial_fit

        partial_fit(self, new_interactions)
        return self

    # -- scoring hooks ------------------------------------------------------
    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores of known users (by index) for every item: ``[len(user_idx), n_items]``."""
        return self._score_history(self.seen_[user_idx])

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores of users described only by their interactions ``[b, n_items]``."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot score users from a history; it scores only users "
            f"seen at fit time"
        )

    def _score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Scores ``[len(sequences), n_items]`` of users given by ordered histories.

        Called by ``recommend(history=...)`` instead of :meth:`_score_history` when the
        class sets ``ordered_history = True``. Each entry is an int64 array of item
        indices in the order the caller gave (oldest first), repeats kept; empty
        histories are scored too (``recommend`` replaces their rows by popularity).
        """
        raise NotImplementedError(
            f"{type(self).__name__} sets ordered_history but does not implement "
            f"_score_sequences"
        )

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            f"{type(self).__name__} has no item vectors or item similarities, so "
            f"similar_items is not available"
        )

    def _item_vectors(self) -> np.ndarray | None:
        """Item vectors ``[n_items, d]`` with scores = user vector . item vector, or None."""
        return None

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray | None:
        """Vectors ``[len(user_idx), d]`` of known users (see :meth:`_item_vectors`), or None."""
        return None

    def _history_vectors(self, history: sp.csr_matrix) -> np.ndarray | None:
        """Vectors ``[b, d]`` of users given by their interactions, or None."""
        return None

    def set_retriever(self, retriever) -> Recommender:
        """Attach an approximate retriever that ``recommend`` then uses by default.

        The index is built now over the model's item vectors, saved with the model
        (``save``/``load``), and kept in sync when items are added or the model is refit.
        ``recommend(..., retriever="exact")`` still ranks exactly.

        Parameters
        ----------
        retriever : FaissRetriever or None
            None detaches the current retriever.

        Returns
        -------
        self

        Raises
        ------
        DataError
            The model has no user/item vectors (e.g. EASE), or ``retriever`` is not a
            :class:`~maasrec.rankers.FaissRetriever`.
        """
        self._check_fitted()
        if retriever is not None:
            if not isinstance(retriever, FaissRetriever):
                raise DataError(f"set_retriever takes a FaissRetriever or None, got "
                                f"{retriever!r}")
            resolve_retriever(self, retriever)  # checks the vectors; builds or syncs the index
        self._retriever = retriever
        return self

    # -- fitted state ---------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """bool: whether ``fit`` (or ``load``) has run."""
        return hasattr(self, "item_vocab_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X) before using it"
            )

    @property
    def n_users_(self) -> int:
        """int: number of users known at fit time."""
        self._check_fitted()
        return len(self.user_vocab_)

    @property
    def n_items_(self) -> int:
        """int: number of items in the catalogue."""
        self._check_fitted()
        return len(self.item_vocab_)

    def _block_size(self, batch_size: int | None) -> int:
        if batch_size is not None:
            return _check_k_named("batch_size", batch_size)
        return max(1, SCORE_BLOCK_BYTES // (4 * max(1, self.n_items_)))
    # -- public API -----------------------------------------------------------
    def recommend(self, users=None, k: int = 10, *, exclude_seen: bool = True, items=None,
                  exclude=None, history=None, batch_size: int | None = None, retriever=None):
        """Top-k items for users, by raw id.

        Parameters
        ----------
        users : raw user id or sequence of raw user ids, optional
            Users known at fit time. A single id returns 1-d arrays. May be None (or
            unknown ids) when ``history`` is given. Rows come back in the order given,
            so ``users`` (and ``history``) must be ordered: a set, dict or iterator
            raises :class:`DataError` (pass a list, e.g. ``sorted(the_set)``). Booleans
            are never ids (``True``/``False`` would merge with ``1``/``0``) and integer
            ids must fit in int64: both raise :class:`DataError` naming the value,
            wherever ids are given (``users``, ``items``, ``exclude``, ``history``).
        k : int, default 10
            Number of items per user. A ``k`` larger than the catalogue is capped at
            the number of items (``n_items_``): the result then ranks every item, and
            costs no more than ``k = n_items_`` (``k=10**9`` is safe). If fewer than
            ``min(k, n_items_)`` candidates remain after the exclusions, the row is
            padded: score ``-inf``, id ``-1`` (numeric ids) or ``None`` (other ids).
        exclude_seen : bool, default True
            Never recommend items the user interacted with in training (or in
            ``history``).
        items : sequence of raw item ids, or one sequence per user, optional
            Allow-list: recommend only among these items (order does not matter here,
            so a set is accepted).
        exclude : sequence of raw item ids, or one sequence per user, optional
            Deny-list: never recommend these items (a set is accepted).
        history : sequence of raw item ids, or one sequence per user, optional
            Score users from these interactions instead of their training data: this is
            how users unseen at fit time (cold users) are served. An empty history falls
            back to the most popular items.
        batch_size : int, optional
            Users scored at once (default: as many as fit in a 128 MB score block; 4096
            with a retriever).
        retriever : None, "exact" or FaissRetriever, optional
            Approximate candidate retrieval for models with user/item vectors: the
            candidates are re-scored exactly and filtered, fetching more when
            exclusions would leave fewer than ``k``. None uses the retriever attached
            with :meth:`set_retriever` (exact ranking if none); ``"exact"`` always
            ranks exactly. A retriever that is not fitted is built here, over this
            model's item vectors.

        Returns
        -------
        item_ids : np.ndarray, shape (n_users, min(k, n_items))
            Raw item ids, best first.
        scores : np.ndarray of float32, shape (n_users, min(k, n_items))

        Raises
        ------
        NotFittedError, UnknownIdError, DataError
        """
        self._check_fitted()
        k = _check_k(k, self.n_items_)  # a huge k: every item, never a huge allocation
        rows = self._recommend_rows(users, history)
        allow = self._item_filter(items, rows.n, "items")
        deny = self._item_filter(exclude, rows.n, "exclude")
        ret = resolve_retriever(self, retriever)
        out_idx, out_val = self._rank_rows(rows, k, exclude_seen=exclude_seen, allow=allow,
                                           deny=deny, retriever=ret, batch_size=batch_size)
        ids = self._ids_with_padding(out_idx)
        if rows.single:
            return ids[0], out_val[0]
        return ids, out_val

    def score(self, users, items) -> np.ndarray:
        """Scores of (user, item) pairs.

        Parameters
        ----------
        users : sequence of raw user ids
        items : sequence of raw item ids, same length as ``users``

        Returns
        -------
        np.ndarray of float32, shape (n_pairs,)
            Model scores (predicted ratings for rating models; otherwise only their
            order is meaningful).
        """
        self._check_fitted()
        check_ordered_ids(users, "users")
        check_ordered_ids(items, "items")
        if _is_scalar_id(users):
            users = [users]
        if _is_scalar_id(items):
            items = [items]
        users, items = list(users), list(items)
        if len(users) != len(items):
            raise DataError(f"users and items must have the same length, got {len(users)} and "
                            f"{len(items)}")
        if not users:
            return np.empty(0, dtype=np.float32)
        u = self.user_vocab_.index(users)
        i = self.item_vocab_.index(items)
        return self._score_pairs(u, i)

    def score_indices(self, user_idx) -> np.ndarray:
        """Scores of known users for every item, by index (what :func:`~maasrec.metrics.evaluate` ranks).

        The index-level counterpart of :meth:`score`: row ``r`` holds the scores of user
        ``user_vocab_.ids[user_idx[r]]`` for every item, column ``j`` being item
        ``item_vocab_.ids[j]``. Nothing is excluded (seen items keep their scores).

        Parameters
        ----------
        user_idx : array-like of int, shape (b,)
            Indices into ``user_vocab_``.

        Returns
        -------
        np.ndarray of float, shape (b, n_items)
            The model's own block (float32 for maasrec models); it may be an array the
            model keeps, so copy it before writing into it.

        Raises
        ------
        NotFittedError
        DataError
            Indices out of range; a model that ranks only candidates
            (``scores_all_items`` False) and so has no full-catalogue scores.
        """
        idx = self._check_user_indices(user_idx)
        return _to_numpy(self._score_users(idx))

    def rank_indices(self, user_idx, k: int, *, exclude=None, allow=None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices of known users, by index (the index-level ``recommend``).

        What :func:`~maasrec.metrics.evaluate` asks of models that rank only candidates
        (``scores_all_items`` False); every model answers it. Nothing is excluded unless
        given (pass ``exclude=seen_[user_idx]`` to leave out the training items).

        Parameters
        ----------
        user_idx : array-like of int, shape (b,)
            Indices into ``user_vocab_``.
        k : int
            Items per user, capped at ``n_items_``.
        exclude : scipy.sparse matrix, shape (b, n_items), optional
            Items never to rank, one row per user (every stored entry).
        allow : scipy.sparse matrix, shape (b, n_items), or 1-d item indices, optional
            Rank only these items (one row per user, or one list for all).

        Returns
        -------
        item_idx : np.ndarray of int64, shape (b, min(k, n_items))
            Best first, ties to the lower item index; ``-1`` pads rows with fewer items.
        scores : np.ndarray of float32, same shape
            ``-inf`` on padding.

        Raises
        ------
        NotFittedError, DataError
        """
        idx = self._check_user_indices(user_idx)
        k = _check_k(k, self.n_items_)
        return self._rank_user_indices(idx, k, exclude, allow)

    def similar_items(self, items, k: int = 10):
        """Items most similar to the given items (the item itself excluded).

        Parameters
        ----------
        items : raw item id or sequence of raw item ids
        k : int, default 10
            Capped at the number of items, as in :meth:`recommend` (the last column is
            then padding, since an item is never similar to itself).

        Returns
        -------
        item_ids : np.ndarray, shape (n_items_given, min(k, n_items))  (1-d for a single id)
        scores : np.ndarray of float32
        """
        self._check_fitted()
        k = _check_k(k, self.n_items_)
        check_ordered_ids(items, "items")
        single = _is_scalar_id(items)
        items = [items] if single else list(items)
        if not items:
            raise DataError("items is empty; give at least one item id")
        idx = self.item_vocab_.index(items)
        out_idx, out_val = self._rank_similar(idx, k)
        ids = self._ids_with_padding(out_idx)
        return (ids[0], out_val[0]) if single else (ids, out_val)

    def explain(self, user=None, item=None, *, history=None, n: int = 5, item_titles=None,
                verb: str = "watched"):
        """Why the model scores ``item`` as it does for a user: the history items behind it.

        Parameters
        ----------
        user : object, optional
            A raw user id known at fit time (their training interactions are the history).
        item : object
            Raw id of the item to explain; not one the user already has.
        history : sequence of raw item ids, optional
            The history of a user not known at fit time (instead of ``user``).
        n : int, default 5
            How many contributions to return (the largest ``|weight|`` first).
        item_titles : mapping, pandas.Series or ItemFeatures, optional
            Titles for the reason and the contributions: ``{item id: title}``, a Series
            indexed by item id (``Dataset.item_titles``), or item features with text
            (first line, at most 80 characters). Without, items are named by id.
        verb : str, default "watched"
            The verb of the reason ("Because you *watched* Alien and Blade Runner").

        Returns
        -------
        maasrec.explain.Explanation
            ``item``, ``score``, ``contributions`` (history item, signed weight, title),
            ``method`` (``"exact"``: the weights of all history items plus ``baseline``
            sum to ``score``; ``"approximation"``; ``"popularity"``), ``reason`` and
            ``to_dict()`` for JSON. See :doc:`/explain` for what each model returns.

        Raises
        ------
        NotFittedError
        UnknownIdError
            An unknown user or item id.
        DataError
            Neither or both of ``user`` and ``history``; ``item`` already in the history;
            a bad ``n`` or ``item_titles``.
        maasrec.explain.NotExplainableError
            The model cannot explain (or cannot score ``history=``); the message names it.
        """
        from .explain import explain

        return explain(self, user, item, history=history, n=n, item_titles=item_titles,
                       verb=verb)

    def predict(self, users, items, **kwargs) -> np.ndarray:
        """Predicted ratings of (user, item) pairs; rating models only.

        Models that learn a ranking (every model with ``predicts_ratings`` False) refuse:
        their :meth:`score` values are not on a rating scale.

        Parameters
        ----------
        users, items : array-like
            Raw ids, one pair per position.
        **kwargs
            Options of the rating model's own ``predict``.

        Returns
        -------
        numpy.ndarray
            Predicted ratings (rating models override this method).

        Raises
        ------
        NotFittedError
        DataError
            The model learns a ranking and cannot predict ratings.
        """
        self._check_fitted()
        raise DataError(
            f"{type(self).__name__} cannot predict ratings: it learns a ranking and its "
            f"score() values are not on a rating scale; fit a rating model (BiasedMF, SVDpp) "
            f"for predict(), or use score()/recommend() to rank")

    # -- persistence (the rest is in PersistenceMixin) -------------------------
    def save(self, path: str | os.PathLike, *, overwrite: bool = False,
             encryption_key: bytes | str | None = None) -> str:
        """Save the fitted model as a directory (JSON + safetensors, no pickle).

        The directory is written next to ``path`` and renamed into place, so a failure
        leaves any previous model at ``path`` intact.

        Parameters
        ----------
        path : str or Path
        overwrite : bool, default False
            Replace an existing model directory at ``path`` (atomically). Without it, an
            existing path raises ``FileExistsError``.
        encryption_key : bytes or str, optional
            Encrypt and authenticate the model with AES-256-GCM (extra ``privacy``): 32
            bytes, 64 hex digits or base64 (:func:`maasrec.privacy.generate_key`).

        Returns
        -------
        str
            The path written.
        """
        self._check_fitted()
        if encryption_key is not None:
            return save_encrypted(self, path, encryption_key, overwrite=overwrite)
        attrs, arrays, vocabs, weights, nested = fitted_state(self)
        class_name = _class_name(type(self))
        with atomic_directory(path, overwrite=overwrite) as tmp:
            for name, sub in nested.items():
                sub.save(tmp / name)
            self._save_extra_files(tmp)
            write_model_dir(tmp, class_name=class_name,
                            params=_params_to_json(self._params_for_save()),
                            attributes=attrs, vocabs=vocabs, arrays=arrays, weights=weights,
                            extra={"extra_state": self._extra_state()})
        return str(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *,
             encryption_key: bytes | str | None = None) -> Recommender:
        """Load a model saved with :meth:`save`.

        Reads only JSON and safetensors files; never executes code from the directory.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Recommender
            An instance of the saved class (which must be ``cls`` or a subclass).

        Raises
        ------
        ModelFormatError
            Not a model directory, corrupt, a newer format, or a class that is not ``cls``.
        """
        if encryption_key is not None or is_encrypted(path):
            return load_encrypted(path, encryption_key, cls=cls)
        d = read_model_dir(path)
        try:
            return cls._load_checked(d, path)
        except MaasrecError:
            raise
        except Exception as exc:  # a corrupt file must not escape as anything else
            # every check we know of runs before this point; anything a third-party
            # reader or constructor raises on crafted content still names the model
            raise ModelFormatError(
                f"cannot load the model in {str(path)!r}: {type(exc).__name__}: {exc}"
            ) from exc


def _check_k_named(name: str, value) -> int:
    try:
        return _check_k(value)
    except DataError:
        raise DataError(f"{name} must be a positive integer, got {value!r}") from None
