"""The shared shell of compressed network models: a fitted model behind a faster runner.

:class:`NetworkProxy` holds a fitted ``LMRanker`` or ``SequentialRecommender`` (the
*inner* model) whose network is run by something else (int8 layers, an ONNX Runtime
session). Every public call goes to the inner model, which keeps its vocabularies,
histories, first stage and candidate logic; only the network pass is replaced (the
adapters below say where). Saved as a directory: ``model/`` (the inner model, float
weights included: the compressed network is checked against their fingerprint when it is
loaded) plus the files of the runtime.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import Recommender, clone, resolve_class
from ..exceptions import DataError, ModelFormatError, NotFittedError
from ..persistence import read_model_dir

__all__ = ["NetworkProxy", "adapter_for", "fingerprint"]

_SUBDIR = "model"


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes), hex."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# -- where each model runs its network ------------------------------------------------------
class _SequentialAdapter:
    """SequentialRecommender: the transformer pass ``_last_hidden(seqs) -> [b, dim]``; the
    item table stays the float model's (computed once)."""

    name = "SequentialRecommender"

    @staticmethod
    def module(inner) -> nn.Module:
        return inner.network_

    @staticmethod
    def skip() -> tuple[str, ...]:
        return ("text_proj",)  # used once, for the item table

    @staticmethod
    def attach(inner, runner) -> None:
        # an instance attribute shadows the method: only this (private) copy changes
        inner._last_hidden = runner

    @staticmethod
    def int8_runner(inner, qnet: nn.Module):
        max_len = int(inner.max_len)

        def run(seqs: list[np.ndarray]) -> torch.Tensor:
            seqs = [np.asarray(s, dtype=np.int64)[-max_len:] for s in seqs]
            return qnet.last_hidden(seqs, inner._table().cpu(), None)
        return run


class _LMRankerAdapter:
    """LMRanker: the cross-encoder pass of :class:`~maasrec.lm_ranker._scoring.PairScorer`
    (tokenization, pair building and candidates stay the inner model's)."""

    name = "LMRanker"

    @staticmethod
    def module(inner) -> nn.Module:
        inner._check_lm()
        return inner._lm

    @staticmethod
    def skip() -> tuple[str, ...]:
        return ("head",)  # one output: int8 saves nothing there

    @staticmethod
    def attach(inner, runner) -> None:
        from ..lm_ranker._scoring import PairScorer

        inner._pairs = PairScorer(runner, inner._tok, inner._builder, torch.device("cpu"))

    @staticmethod
    def int8_runner(inner, qnet: nn.Module):
        return qnet


_ADAPTERS = {"SequentialRecommender": _SequentialAdapter, "LMRanker": _LMRankerAdapter}


def adapter_for(model: Any, what: str):
    """The adapter of a model class (by its maasrec base class), or a DataError."""
    if isinstance(model, type):
        klass = model
    else:
        klass = type(model)
    for k in klass.__mro__:
        if k.__name__ in _ADAPTERS and k.__module__.startswith("maasrec."):
            return _ADAPTERS[k.__name__]
    raise DataError(f"{what} applies to {sorted(_ADAPTERS)} (networks that run at scoring "
                    f"time), not {klass.__name__}: for ALS, BPRMF, PureSVD, EASE and "
                    f"HybridRecommender (whose towers run at fit time; it scores from stored "
                    f"vectors) use maasrec.compress.quantize(model, 'int8')")


class NetworkProxy(Recommender):
    """Base of :class:`~maasrec.compress.Int8Recommender` and
    :class:`~maasrec.compress.OnnxRecommender` (see the module docstring)."""

    #: what the subclass does, for messages
    _what = "compression"

    def __init__(self, model: Recommender | None = None):
        self.model = model

    # -- the inner model ------------------------------------------------------------------
    def _inner_or_none(self) -> Recommender | None:
        return self.__dict__.get("_inner")

    @property
    def model_(self) -> Recommender:
        """Recommender: the inner fitted model (its network pass replaced)."""
        inner = self._inner_or_none()
        if inner is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) "
                                 f"or build it from a fitted model")
        return inner

    @property
    def is_fitted(self) -> bool:
        return self._inner_or_none() is not None

    @property
    def user_vocab_(self):
        return self.model_.user_vocab_

    @property
    def item_vocab_(self):
        return self.model_.item_vocab_

    @property
    def seen_(self):
        return self.model_.seen_

    @property
    def supports_history(self) -> bool:
        inner = self._inner_or_none()
        return True if inner is None else inner.supports_history

    @property
    def ordered_history(self) -> bool:
        inner = self._inner_or_none()
        return False if inner is None else inner.ordered_history

    @property
    def scores_all_items(self) -> bool:
        inner = self._inner_or_none()
        return True if inner is None else bool(getattr(inner, "scores_all_items", True))

    def _implicit_feedback(self) -> bool:
        return False  # the inner model applies its own policy in its fit

    def _validate_params(self) -> None:
        if self.model is None:
            return  # a loaded model: its inner model comes from model/
        if not isinstance(self.model, Recommender) or isinstance(self.model, NetworkProxy):
            raise DataError(f"model must be a maasrec LMRanker or SequentialRecommender, got "
                            f"{self.model!r}")
        adapter_for(self.model, self._what)

    def _params_for_save(self) -> dict[str, Any]:
        # the inner model is saved in model/ (its own parameters included)
        return {**super()._params_for_save(), "model": None}

    # -- building -------------------------------------------------------------------------
    def fit(self, X, item_features=None, user_features=None, *, validation=None,
            checkpoint_dir=None):
        """Fit a clone of ``model`` on ``X``, then compress its network.

        Parameters
        ----------
        X, item_features, user_features, validation, checkpoint_dir
            As for the inner model's ``fit``.

        Returns
        -------
        self
        """
        self._check_standard_params()
        self._validate_params()
        if self.model is None:
            raise DataError(f"this {type(self).__name__} has no model to fit (model=None: it "
                            f"was loaded); pass model=")
        kwargs = {} if checkpoint_dir is None else {"checkpoint_dir": checkpoint_dir}
        inner = clone(self.model).fit(X, item_features, user_features, validation=validation,
                                      **kwargs)
        self.__dict__.pop("_inner", None)
        self._compress(inner)
        return self

    def _adopt_checked(self, model: Recommender):
        """Common checks of the ``build from a fitted model`` path; the adapter."""
        if isinstance(model, NetworkProxy):
            raise DataError(f"the model is already compressed ({type(model).__name__}); "
                            f"compress the original model")
        if not isinstance(model, Recommender):
            raise DataError(f"{self._what} takes a fitted maasrec LMRanker or "
                            f"SequentialRecommender, got {type(model).__name__}")
        adapter = adapter_for(model, self._what)
        if not model.is_fitted:
            raise NotFittedError(f"this {type(model).__name__} is not fitted yet; fit it "
                                 f"before {self._what}")
        return adapter

    def _compress(self, inner: Recommender) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the public calls: the inner model's ----------------------------------------------
    def recommend(self, users=None, k: int = 10, *, exclude_seen: bool = True, items=None,
                  exclude=None, history=None, batch_size: int | None = None, retriever=None):
        """As :meth:`maasrec.base.Recommender.recommend` (the inner model's)."""
        kwargs = {} if retriever is None else {"retriever": retriever}
        return self.model_.recommend(users, k, exclude_seen=exclude_seen, items=items,
                                     exclude=exclude, history=history, batch_size=batch_size,
                                     **kwargs)

    def score(self, users, items) -> np.ndarray:
        """As :meth:`maasrec.base.Recommender.score` (the inner model's)."""
        return self.model_.score(users, items)

    def score_indices(self, user_idx) -> np.ndarray:
        """As :meth:`maasrec.base.Recommender.score_indices` (the inner model's)."""
        return self.model_.score_indices(user_idx)

    def rank_indices(self, user_idx, k: int, *, exclude=None, allow=None):
        """As :meth:`maasrec.base.Recommender.rank_indices` (the inner model's)."""
        return self.model_.rank_indices(user_idx, k, exclude=exclude, allow=allow)

    def predict_proba(self, users, items) -> np.ndarray:
        """Click probabilities of an ``LMRanker`` (see ``LMRanker.predict_proba``)."""
        inner = self.model_
        if not hasattr(inner, "predict_proba"):
            raise DataError(f"a {type(inner).__name__} has no predict_proba")
        return inner.predict_proba(users, items)

    def _score_users(self, user_idx):
        return self.model_._score_users(user_idx)

    def _score_sequences(self, sequences):
        return self.model_._score_sequences(sequences)

    def _score_history(self, history):
        return self.model_._score_history(history)

    def _score_pairs(self, u, i):
        return self.model_._score_pairs(u, i)

    # -- persistence ----------------------------------------------------------------------
    def _save_extra_files(self, tmp) -> None:
        self.model_.save(os.path.join(tmp, _SUBDIR))
        self._save_runtime(tmp)
        super()._save_extra_files(tmp)

    def _save_runtime(self, tmp) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_base_attributes(self, where: str) -> None:
        """Deferred: the vocabularies and ``seen_`` are the inner model's."""

    def _load_inner(self, path) -> tuple[Recommender, Any, str]:
        where = getattr(self, "_load_where", repr(str(path)))
        folder = os.path.join(path, _SUBDIR)
        if not os.path.isdir(folder):
            raise ModelFormatError(f"{where}: the inner model's directory {_SUBDIR!r} is "
                                   f"missing")
        d = read_model_dir(folder)
        klass = resolve_class(d["meta"].get("class"))
        try:
            adapter = adapter_for(klass, self._what)
        except DataError as exc:
            raise ModelFormatError(f"{where}: the inner model is a {d['meta'].get('class')}: "
                                   f"{exc}") from None
        return Recommender._load_checked(d, folder), adapter, where
