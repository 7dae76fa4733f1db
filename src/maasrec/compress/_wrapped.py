"""The shell shared by the compressed recommenders: a fitted inner model behind an outer one.

:class:`~maasrec.compress.QuantizedRecommender` (quantized tables) and
:class:`~maasrec.compress._proxy.NetworkProxy` (int8 or ONNX Runtime networks) both hold a
fitted *inner* model whose vocabularies, ``seen_``, histories and scoring they expose;
they differ in what of it they replace and in what they write themselves. The inner
model is saved in ``model/`` of the outer directory, without the parts the outer model
writes (quantized tables; the network).
"""

from __future__ import annotations

import os
from typing import Any

from ..base import Recommender, resolve_class
from ..exceptions import ModelFormatError, NotFittedError
from ..persistence import read_model_dir

__all__ = ["SUBDIR", "WrappedRecommender"]

#: The inner model's directory inside the outer one.
SUBDIR = "model"


class WrappedRecommender(Recommender):
    """Base of the compressed recommenders: delegation to ``model_`` and its loading."""

    #: how ``model_`` reports an unfitted object (a format string given the class name)
    _not_fitted = "this {} is not fitted yet; call fit(X) or build it from a fitted model"

    def _inner_or_none(self) -> Recommender | None:
        return self.__dict__.get("_inner")

    @property
    def model_(self) -> Recommender:
        """Recommender: the inner fitted model."""
        inner = self._inner_or_none()
        if inner is None:
            raise NotFittedError(self._not_fitted.format(type(self).__name__))
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

    def _implicit_feedback(self) -> bool:
        return False  # the inner model applies its own policy in its fit

    # -- scoring: the inner model's --------------------------------------------------------
    def _score_users(self, user_idx):
        return self.model_._score_users(user_idx)

    def _score_history(self, history):
        return self.model_._score_history(history)

    def _score_sequences(self, sequences):
        return self.model_._score_sequences(sequences)

    def _score_pairs(self, u, i):
        return self.model_._score_pairs(u, i)

    # -- loading ---------------------------------------------------------------------------
    def _check_base_attributes(self, where: str) -> None:
        """Deferred: the vocabularies and ``seen_`` are the inner model's (checked when
        :meth:`_load_extra_files` loads it)."""

    def _read_inner(self, path) -> tuple[dict, Any, str, str]:
        """The inner model's directory read (not yet loaded): ``(d, class, folder, where)``."""
        where = getattr(self, "_load_where", repr(str(path)))
        folder = os.path.join(path, SUBDIR)
        if not os.path.isdir(folder):
            raise ModelFormatError(f"{where}: the inner model's directory {SUBDIR!r} is "
                                   f"missing")
        d = read_model_dir(folder)
        return d, resolve_class(d["meta"].get("class")), folder, where
