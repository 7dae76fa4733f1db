"""The shared shell of compressed network models: a fitted model behind a faster runner.

:class:`NetworkProxy` holds a fitted ``LMRanker`` or ``SequentialRecommender`` (the
*inner* model) whose network is run by something else (int8 layers, an ONNX Runtime
session). Every public call goes to the inner model, which keeps its vocabularies,
histories, first stage and candidate logic; only the network pass is replaced (the
adapters in :mod:`maasrec.compress._adapters` say where). Saved as a directory:
``model/`` (the inner model without its network weights) plus the files of the runtime
(int8 codes and scales, or the ONNX graph); the compressed model records the SHA-256
fingerprint of the float weights it was made from, and the runtime's files must carry the
same one.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..base import Recommender, clone
from ..exceptions import DataError, ModelFormatError, NotFittedError
from ._adapters import adapter_for, fingerprint, shells_allowed
from ._wrapped import SUBDIR, WrappedRecommender

__all__ = ["NetworkProxy", "adapter_for", "fingerprint"]


class NetworkProxy(WrappedRecommender):
    """Base of :class:`~maasrec.compress.Int8Recommender` and
    :class:`~maasrec.compress.OnnxRecommender` (see the module docstring)."""

    #: what the subclass does, for messages
    _what = "compression"

    def __init__(self, model: Recommender | None = None):
        self.model = model

    @property
    def scores_all_items(self) -> bool:
        inner = self._inner_or_none()
        return True if inner is None else bool(getattr(inner, "scores_all_items", True))

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

    # -- persistence ----------------------------------------------------------------------
    def _save_extra_files(self, tmp) -> None:
        inner = self.model_
        adapter = adapter_for(inner, self._what)
        adapter.skeleton(inner, type(self).__name__).save(os.path.join(tmp, SUBDIR))
        self._save_runtime(tmp)
        super()._save_extra_files(tmp)

    def _save_runtime(self, tmp) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_inner(self, path) -> tuple[Recommender, Any, str]:
        """The inner model (without its network weights), its adapter, and ``where``."""
        d, klass, folder, where = self._read_inner(path)
        try:
            adapter = adapter_for(klass, self._what)
        except DataError as exc:
            raise ModelFormatError(f"{where}: the inner model is a {d['meta'].get('class')}: "
                                   f"{exc}") from None
        adapter.before_load(d, where)
        with shells_allowed(type(self).__name__):
            inner = Recommender._load_checked(d, folder)
        return inner, adapter, where

    def _check_fingerprint(self, where: str, found: Any, what: str) -> None:
        """``found`` (the fingerprint a runtime file carries) must be this model's."""
        want = getattr(self, "float_fingerprint_", None)
        if want is None:
            raise ModelFormatError(f"{where}: this {type(self).__name__} records no "
                                   f"float_fingerprint_ (a directory of an earlier maasrec, "
                                   f"which kept the float model beside the compressed "
                                   f"network): compress the float model again")
        if not isinstance(want, str) or found != want:
            raise ModelFormatError(f"{where}: {what} was made from another network "
                                   f"(fingerprint {str(found)[:12]}...) than this "
                                   f"{type(self).__name__}'s ({str(want)[:12]}...): compress "
                                   f"the model again")
