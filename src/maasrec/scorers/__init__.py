"""Scorers: user and item representations -> scores.

Every scorer is a :class:`torch.nn.Module` with the same interface
(:class:`~maasrec.scorers.base.Scorer`): ``score_all(user, items) -> [b, n_items]``
for full ranking (chunked when it cannot factorise) and ``score_pairs(user, items)``
for training.

- :class:`DotScorer`: inner product (+ optional biases) -- matrix factorisation, and
  the only one whose scores approximate retrieval (FAISS) can index;
- :class:`NeuMFScorer`: GMF + MLP towers (He et al., 2017);
- :class:`AttentionScorer`: the candidate attends over the user's history (DIN-style).
"""

from __future__ import annotations

from typing import Any

from ..exceptions import DataError
from .attention import AttentionScorer
from .base import SCORE_CHUNK_BYTES, Scorer
from .dot import DotScorer
from .neumf import NeuMFScorer

__all__ = ["SCORERS", "SCORE_CHUNK_BYTES", "AttentionScorer", "DotScorer", "NeuMFScorer",
           "Scorer", "make_scorer"]

#: Scorer classes by short name.
SCORERS: dict[str, type[Scorer]] = {
    "dot": DotScorer,
    "neumf": NeuMFScorer,
    "attention": AttentionScorer,
}


def make_scorer(kind: str | type[Scorer], **kwargs: Any) -> Scorer:
    """Build a scorer by short name.

    Parameters
    ----------
    kind : {"dot", "neumf", "attention"} or a Scorer subclass
    **kwargs
        Constructor arguments.

    Returns
    -------
    Scorer

    Raises
    ------
    DataError
        For an unknown name or arguments the scorer does not take.
    """
    if isinstance(kind, type) and issubclass(kind, Scorer):
        cls = kind
    elif kind in SCORERS:
        cls = SCORERS[kind]
    else:
        raise DataError(f"scorer must be one of {sorted(SCORERS)}, got {kind!r}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DataError(f"cannot build scorer {kind!r} from {kwargs}: {exc}") from exc
