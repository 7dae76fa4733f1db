"""Inner-product scoring: matrix factorisation over any user and item representations."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..exceptions import DataError
from .base import Scorer, check_2d, check_int

__all__ = ["DotScorer"]


class DotScorer(Scorer):
    """``score(u, i) = <x_u, y_i> + b_i + b_u + b``: matrix factorisation.

    ``x_u`` and ``y_i`` are whatever the towers make -- id embeddings (plain MF), fused
    text and id vectors (the hybrid ``R̂ = (XΘ₁)(HΘ₂)ᵀ``), pooled histories -- so new
    items and users are scored from their content without retraining.

    Parameters
    ----------
    n_items : int, optional
        Number of item ids; needed for ``item_bias``.
    item_bias : bool, default False
        A learned bias per item id (popularity), initialised at 0. Items added later
        (:meth:`extend_items`) get the mean bias of the existing items.
    n_users : int, optional
        Number of user ids; needed for ``user_bias``.
    user_bias : bool, default False
        A learned bias per user id. It changes no user's ranking: use it for rating
        prediction (MSE). Users without an id (cold users) get 0.
    global_bias : bool, default False
        One learned offset (rating prediction).
    temperature : float, default 1.0
        Scores are divided by it (softmax losses over normalised vectors like a
        temperature below 1).

    Examples
    --------
    >>> import torch
    >>> s = DotScorer(n_items=5, item_bias=True)
    >>> s.score_all(torch.randn(2, 8), torch.randn(5, 8)).shape
    torch.Size([2, 5])
    """

    _param_attrs: ClassVar[dict[str, str]] = {"item_bias": "use_item_bias", "user_bias": "use_user_bias",
                    "global_bias": "use_global_bias"}

    def __init__(self, n_items: int | None = None, item_bias: bool = False,
                 n_users: int | None = None, user_bias: bool = False,
                 global_bias: bool = False, temperature: float = 1.0):
        super().__init__()
        if item_bias and n_items is None:
            raise DataError("item_bias=True needs n_items (the number of item ids)")
        if user_bias and n_users is None:
            raise DataError("user_bias=True needs n_users (the number of user ids)")
        self.n_items = None if n_items is None else check_int("n_items", n_items)
        self.n_users = None if n_users is None else check_int("n_users", n_users)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not temperature > 0:
            raise DataError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.use_item_bias, self.use_user_bias = bool(item_bias), bool(user_bias)
        self.use_global_bias = bool(global_bias)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items)) if item_bias else None
        self.user_bias = nn.Parameter(torch.zeros(self.n_users)) if user_bias else None
        self.global_bias = nn.Parameter(torch.zeros(())) if global_bias else None

    def _item_b(self, item_idx: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        if self.item_bias is None:
            return None
        if item_idx is None:
            if n != self.item_bias.shape[0]:
                raise DataError(f"{n} item rows but {self.item_bias.shape[0]} item biases; pass "
                                f"item_idx for a subset of the items")
            return self.item_bias
        return self.item_bias[item_idx]

    def _user_b(self, user_idx: torch.Tensor | None) -> torch.Tensor | None:
        if self.user_bias is None or user_idx is None:
            return None
        ub = self.user_bias[user_idx.clamp(min=0)]
        return torch.where(user_idx >= 0, ub, torch.zeros_like(ub))  # -1: a cold user

    def score_all(self, user, items, *, user_idx=None, item_idx=None, chunk_size=None):
        """Scores ``[b, n]`` (one matrix product; see :meth:`Scorer.score_all`)."""
        check_2d("user", user)
        check_2d("items", items, user.shape[1])
        s = user @ items.T
        if self.temperature != 1.0:
            s = s / self.temperature
        ib = self._item_b(item_idx, items.shape[0], items.device)
        if ib is not None:
            s = s + ib
        ub = self._user_b(user_idx)
        if ub is not None:
            s = s + ub.unsqueeze(1)
        if self.global_bias is not None:
            s = s + self.global_bias
        return s

    def score_pairs(self, user, items, *, user_idx=None, item_idx=None):
        """Scores ``[b]`` or ``[b, k]`` (see :meth:`Scorer.score_pairs`)."""
        check_2d("user", user)
        if items.dim() == 2:
            s = (user * items).sum(dim=-1)
        elif items.dim() == 3:
            s = torch.einsum("bd,bkd->bk", user, items)
        else:
            raise DataError(f"items must be [b, d] or [b, k, d], got {tuple(items.shape)}")
        if self.temperature != 1.0:
            s = s / self.temperature
        if self.item_bias is not None:
            if item_idx is None:
                raise DataError("this DotScorer has item biases: pass item_idx to score_pairs")
            s = s + self.item_bias[item_idx]
        ub = self._user_b(user_idx)
        if ub is not None:
            s = s + (ub if s.dim() == 1 else ub.unsqueeze(1))
        if self.global_bias is not None:
            s = s + self.global_bias
        return s

    def item_vectors(self, items, item_idx=None):
        """``[y_i / T, b_i]`` (the bias as an extra coordinate; 0 without biases)."""
        ib = self._item_b(item_idx, items.shape[0], items.device)
        if ib is None:
            ib = torch.zeros(items.shape[0], device=items.device, dtype=items.dtype)
        return torch.cat([items / self.temperature, ib.unsqueeze(1).to(items.dtype)], dim=1)

    def user_vectors(self, user, user_idx=None):
        """``[x_u, 1]``: inner products with :meth:`item_vectors` are the item-dependent
        part of the score (the user and global biases do not change rankings)."""
        return torch.cat([user, torch.ones(user.shape[0], 1, device=user.device,
                                           dtype=user.dtype)], dim=1)
