"""Full-ranking validation metrics for early stopping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["ranking_validator"]


class _ScoreView:
    """The minimum ``evaluate`` needs: vocabularies and ``_score_users``."""

    def __init__(self, score_fn, user_vocab, item_vocab):
        self.user_vocab_ = user_vocab
        self.item_vocab_ = item_vocab
        self._fn = score_fn

    def _score_users(self, user_idx: np.ndarray):
        out = self._fn(user_idx)
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        return out


def ranking_validator(score_fn: Callable[[np.ndarray], Any], user_vocab, item_vocab, train,
                      valid, *, k: int = 10, metric: str = "ndcg", max_users: int | None = None,
                      random_state: Any = 0, batch_size: int | None = None
                      ) -> Callable[[], float]:
    """A function computing a full-ranking validation metric with :func:`maasrec.metrics.evaluate`.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(user_idx) -> [len(user_idx), n_items]`` scores (numpy or torch) of
        the model being trained; it is called under ``torch.no_grad``.
    user_vocab, item_vocab : IdVocab
    train : Interactions
        Excluded from the rankings (the training items).
    valid : Interactions
        The relevant items.
    k : int, default 10
    metric : str, default "ndcg"
        Any per-user ranking metric :func:`~maasrec.metrics.evaluate` knows.
    max_users : int, optional
        Evaluate a fixed random subset of this many validation users (faster epochs on
        big data; the subset is drawn once, seeded).
    random_state : int, default 0
    batch_size : int, optional
        Users per scoring chunk.

    Returns
    -------
    callable
        ``validate() -> float``; its ``name`` attribute is e.g. ``"ndcg@10"``.
    """
    from ..metrics.evaluation import evaluate

    users = None
    if max_users is not None:
        uniq = np.unique(valid.user_indices)
        if len(uniq) > max_users:
            rng = np.random.default_rng(random_state)
            users = user_vocab.ids[np.sort(rng.choice(uniq, size=int(max_users), replace=False))]
    view = _ScoreView(score_fn, user_vocab, item_vocab)
    name = f"{metric}@{int(k)}"

    def validate() -> float:
        import warnings

        from ..exceptions import ColdStartWarning

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ColdStartWarning)
            res = evaluate(view, train, valid, k=int(k), metrics=[name], users=users,
                           n_bootstrap=0, batch_size=batch_size, random_state=random_state)
        return float(res[name])

    validate.name = name  # type: ignore[attr-defined]
    return validate
