"""The validation slice the neural models hold out of their training data by themselves.

``fit(X)`` without ``validation=`` on a model with ``validation_fraction`` > 0 trains on
most of ``X`` and stops early on a small held-out slice of it
(:func:`maasrec.data.split.holdout_validation`); the held-out interactions return to the
users' histories once training is over.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._validation import check_number
from ..data.interactions import Interactions
from ..data.split import holdout_validation

logger = logging.getLogger(__name__)

#: Users with fewer training rows keep them all (see ``holdout_validation``).
MIN_HISTORY = 5


def check_validation_fraction(value: Any) -> None:
    """``validation_fraction`` is None or a share in [0, 1) (DataError naming it)."""
    if value is not None:
        check_number("validation_fraction", value, low=0.0, high=1.0, high_inclusive=False)


def auto_holdout(name: str, data: Interactions, validation: Interactions | None,
                 fraction: float | None, *, ordered: bool, seed: int
                 ) -> tuple[Interactions, Interactions | None, dict | None]:
    """``(train part, validation, holdout info)`` for a fit.

    With ``validation`` given, or ``fraction`` None/0, ``data`` and ``validation`` come
    back unchanged and the info is None. Otherwise a ``fraction`` slice of ``data`` is
    held out (seeded from ``seed``; last rows of a sample of users when ``ordered``, a
    random sample of each user's rows otherwise) and logged; the info dict (``rows``,
    ``users``, ``fraction``, ``ordered``, ``train_rows``) goes into the training log.
    """
    if validation is not None or fraction is None or float(fraction) == 0.0:
        return data, validation, None
    if not (data.user_counts() >= MIN_HISTORY).any():
        logger.info("%s: no validation given and no user has %d or more interactions to "
                    "hold one out; training all epochs without early stopping", name,
                    MIN_HISTORY)
        return data, None, {"rows": 0, "users": 0, "fraction": float(fraction),
                            "ordered": bool(ordered), "train_rows": int(data.nnz)}
    rng = np.random.default_rng([int(seed) % 2**63, 22])
    train, hold = holdout_validation(data, float(fraction), ordered=ordered,
                                     min_history=MIN_HISTORY, random_state=rng)
    info = {"rows": int(hold.nnz), "users": len(np.unique(hold.user_indices)),
            "fraction": float(fraction), "ordered": bool(ordered),
            "train_rows": int(train.nnz)}
    logger.info("%s: no validation given: holding out %d of %d interactions (%s of %d "
                "users; validation_fraction=%g) for early stopping, training on the other "
                "%d", name, info["rows"], data.nnz,
                "the last item" if ordered else "a random sample", info["users"],
                float(fraction), info["train_rows"])
    return train, hold, info
