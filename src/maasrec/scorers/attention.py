"""Target attention: the candidate item attends over the user's history (DIN-style)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from .._rng import manual_seeded
from ..encoders._utils import check_int, check_seed
from ..exceptions import DataError
from .base import Scorer, check_2d, check_dropout, chunk_rows

__all__ = ["AttentionScorer"]


def _unpack(user) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if not isinstance(user, (tuple, list)) or len(user) not in (2, 3):
        raise DataError("AttentionScorer takes the user as (history [b, L, d], mask [b, L]) or "
                        "(history, mask, static [b, d])")
    hist, mask = user[0], user[1]
    static = user[2] if len(user) == 3 else None
    if not isinstance(hist, torch.Tensor) or hist.dim() != 3:
        raise DataError(f"history must be a [b, L, d] tensor, got "
                        f"{tuple(hist.shape) if isinstance(hist, torch.Tensor) else hist!r}")
    mask = torch.as_tensor(mask, device=hist.device)
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(hist.shape[:2]):
        raise DataError(f"mask must be a bool tensor of shape {tuple(hist.shape[:2])}, got "
                        f"{mask.dtype} {tuple(mask.shape)}")
    if static is not None:
        check_2d("static user vector", static, hist.shape[2])
    return hist, mask, static


class AttentionScorer(Scorer):
    """Score a candidate by attending from it over the user's history (target attention).

    As in DIN (Zhou et al., 2018), the user's interest is not one fixed vector: for a
    candidate item ``v`` each history item ``h_l`` gets a weight from its relevance to
    ``v``, here scaled dot-product attention
    ``w_l = softmax_l((W_q v)ᵀ(W_k h_l) / √a)`` over the real history positions, and
    ``score = <Σ_l w_l W_o h_l + s_u, v> + b_i`` (``s_u`` an optional static user
    vector, e.g. a user id embedding). A user with an empty history scores
    ``<s_u, v> + b_i``.

    :meth:`score_all` works in item chunks so that the ``[b, L, chunk]`` attention
    tensors fit :data:`~maasrec.scorers.base.SCORE_CHUNK_BYTES`: full ranking costs
    ``O(b · L · n · a)``, much more than a dot product -- use it on moderate
    catalogues or as a re-ranker.

    Parameters
    ----------
    dim : int
        Size of the item representations.
    attention_dim : int, optional
        Size ``a`` of the query/key projections (default ``dim``).
    dropout : float, default 0.0
        Dropout on the attention weights (training only).
    n_items : int, optional
        Needed for ``item_bias``.
    item_bias : bool, default False
    random_state : int, optional

    Notes
    -----
    DIN's activation unit is an MLP over ``[h, v, h - v, h ⊙ v]`` without
    normalisation; the bilinear form here is what makes chunked full ranking over the
    catalogue affordable (``O(L · n · a)`` multiply-adds per user instead of an MLP per
    (history item, candidate) pair).

    References
    ----------
    G. Zhou et al. Deep Interest Network for Click-Through Rate Prediction. KDD 2018.
    """

    needs_history = True
    _param_attrs: ClassVar[dict[str, str]] = {"item_bias": "use_item_bias"}

    def __init__(self, dim: int, attention_dim: int | None = None, dropout: float = 0.0,
                 n_items: int | None = None, item_bias: bool = False,
                 random_state: int | None = None):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.attention_dim = None if attention_dim is None else check_int(
            "attention_dim", attention_dim)
        self._attention_dim = self.dim if attention_dim is None else self.attention_dim
        self.dropout = check_dropout(dropout)
        if item_bias and n_items is None:
            raise DataError("item_bias=True needs n_items (the number of item ids)")
        self.n_items = None if n_items is None else check_int("n_items", n_items)
        self.use_item_bias = bool(item_bias)
        self.random_state = check_seed(random_state)
        with manual_seeded(self.random_state):
            self.query = nn.Linear(self.dim, self._attention_dim, bias=False)
            self.key = nn.Linear(self.dim, self._attention_dim, bias=False)
            self.value = nn.Linear(self.dim, self.dim, bias=False)
            with torch.no_grad():  # start as plain mean pooling of the history
                self.value.weight.copy_(torch.eye(self.dim)
                                        + 0.01 * torch.randn(self.dim, self.dim))
        self.drop = nn.Dropout(self.dropout)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items)) if item_bias else None

    def _weights(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax over the history axis (dim 1 of [b, L, c]); empty rows get zeros."""
        m = mask.unsqueeze(2)
        logits = logits.masked_fill(~m, float("-inf"))
        anyv = m.any(dim=1, keepdim=True)
        logits = torch.where(anyv, logits, torch.zeros_like(logits))
        return self.drop(torch.softmax(logits, dim=1) * anyv.to(logits.dtype))

    def _bias(self, item_idx, n):
        if self.item_bias is None:
            return None
        if item_idx is None:
            if n != self.item_bias.shape[0]:
                raise DataError(f"{n} item rows but {self.item_bias.shape[0]} item biases; pass "
                                f"item_idx")
            return self.item_bias
        return self.item_bias[item_idx]

    def score_all(self, user, items, *, user_idx=None, item_idx=None, chunk_size=None):
        """Scores ``[b, n]`` (item chunks; see :meth:`Scorer.score_all`)."""
        hist, mask, static = _unpack(user)
        check_2d("items", items, self.dim)
        b, L, _ = hist.shape
        n = items.shape[0]
        keys = self.key(hist)                              # [b, L, a]
        values = self.value(hist)                          # [b, L, d]
        scale = 1.0 / math.sqrt(self._attention_dim)
        step = chunk_rows(4 * b * max(L, 1) * 3, n, chunk_size)
        parts = []
        for s in range(0, n, step):
            v = items[s:s + step]                          # [c, d]
            q = self.query(v) * scale                      # [c, a]
            w = self._weights(keys @ q.T, mask)            # [b, L, c]
            parts.append((w * (values @ v.T)).sum(dim=1))  # [b, c]
        out = torch.cat(parts, dim=1) if parts else items.new_zeros(b, 0)
        if static is not None:
            out = out + static @ items.T
        bias = self._bias(item_idx, n)
        return out if bias is None else out + bias

    def score_pairs(self, user, items, *, user_idx=None, item_idx=None):
        """Scores ``[b]`` or ``[b, k]`` (see :meth:`Scorer.score_pairs`)."""
        hist, mask, static = _unpack(user)
        single = items.dim() == 2
        if single:
            items = items.unsqueeze(1)
        elif items.dim() != 3:
            raise DataError(f"items must be [b, d] or [b, k, d], got {tuple(items.shape)}")
        if items.shape[-1] != self.dim or items.shape[0] != hist.shape[0]:
            raise DataError(f"items of shape {tuple(items.shape)} do not match {hist.shape[0]} "
                            f"users of dim {self.dim}")
        q = self.query(items) / math.sqrt(self._attention_dim)          # [b, k, a]
        logits = torch.einsum("bla,bka->blk", self.key(hist), q)        # [b, L, k]
        w = self._weights(logits, mask)
        s = torch.einsum("blk,blk->bk", w, torch.einsum("bld,bkd->blk", self.value(hist), items))
        if static is not None:
            s = s + torch.einsum("bd,bkd->bk", static, items)
        if self.item_bias is not None:
            if item_idx is None:
                raise DataError("this AttentionScorer has item biases: pass item_idx")
            ib = self.item_bias[item_idx]
            s = s + (ib.unsqueeze(1) if ib.dim() == 1 else ib)
        return s.squeeze(1) if single else s
