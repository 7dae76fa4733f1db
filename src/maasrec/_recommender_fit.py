"""What :meth:`Recommender.fit <maasrec.base.Recommender.fit>` checks, and the hooks it calls.

``fit`` itself (in :mod:`maasrec.base`) turns the input into
:class:`~maasrec.data.Interactions`, sets the vocabularies and ``seen_``, applies the
implicit-feedback policy and calls ``_fit``. :class:`FitMixin` holds the rest of that
contract: the ``checkpoint_dir`` option (only for models with a training loop), the
parameter checks every model gets from its ``__init__`` signature
(:meth:`~FitMixin._check_standard_params`) before the class's own
(:meth:`~FitMixin._validate_params`), and the hooks a subclass overrides
(``_fit``, ``_implicit_feedback``) or calls (``_forget_fit``).
"""

from __future__ import annotations

import inspect

from ._validation import check_bool, check_random_state
from .data.interactions import Interactions
from .exceptions import DataError

__all__ = ["FitMixin"]


class FitMixin:
    """Fit-time checks and hooks of :class:`~maasrec.base.Recommender`."""

    def _fit_options(self, checkpoint_dir) -> dict:
        """The keyword options ``fit`` passes to ``_fit`` (``checkpoint_dir``, when given).

        A ``checkpoint_dir`` for a model whose ``_fit`` takes none (no training loop)
        raises :class:`~maasrec.exceptions.DataError` naming it.
        """
        if checkpoint_dir is None:
            return {}
        if "checkpoint_dir" not in inspect.signature(self._fit).parameters:
            raise DataError(f"{type(self).__name__} has no training loop to checkpoint; "
                            f"checkpoint_dir={str(checkpoint_dir)!r} is for the models "
                            "trained by maasrec.training.Trainer (HybridRecommender, "
                            "NeuMF, SequentialRecommender, MultVAE, LightGCN, LMRanker)")
        return {"checkpoint_dir": checkpoint_dir}

    def _implicit_feedback(self) -> bool:
        """Whether ``fit`` trains on the interactions with a value > 0 only (hook).

        True unless the model has a parameter ``implicit`` set to False; a model that
        reads values in another way (a rating loss, nested models with their own
        policy) overrides it.
        """
        return getattr(self, "implicit", True) is not False

    def _check_standard_params(self) -> None:
        """Parameters annotated ``bool`` must be booleans; ``random_state``/``seed`` seeds.

        Run by :meth:`fit` before :meth:`_validate_params`, for every model, from the
        ``__init__`` signature (so a new model's parameters are checked too).
        """
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self" or not hasattr(self, p.name):
                continue
            value = getattr(self, p.name)
            if p.annotation in (bool, "bool"):
                check_bool(p.name, value)
            elif p.name in ("random_state", "seed"):
                check_random_state(p.name, value)

    def _forget_fit(self) -> None:
        """Leave the model unfitted (a fit that failed half-way has nothing usable)."""
        for name in ("item_vocab_", "user_vocab_", "seen_"):
            self.__dict__.pop(name, None)

    def _validate_params(self) -> None:
        """Check parameter values (subclasses raise DataError naming the bad one)."""

    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None) -> None:
        raise NotImplementedError
