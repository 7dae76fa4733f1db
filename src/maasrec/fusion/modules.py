"""Concatenation, gated and attention fusion of modality vectors."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .._rng import manual_seeded
from ..exceptions import DataError
from .base import Fusion

__all__ = ["FUSIONS", "AttentionFusion", "ConcatFusion", "GatedFusion", "make_fusion"]


def _check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise DataError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def _normalise(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Non-negative scores -> weights summing to 1 over present modalities (0 if none)."""
    scores = scores * mask.to(scores.dtype)
    return scores / scores.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over present entries; rows with nothing present get all zeros."""
    logits = logits.masked_fill(~mask, float("-inf"))
    any_present = mask.any(dim=dim, keepdim=True)
    safe = torch.where(any_present, logits, torch.zeros_like(logits))
    return torch.softmax(safe, dim=dim) * any_present.to(logits.dtype)


class ConcatFusion(Fusion):
    """Concatenate the modality vectors and map them to ``dim`` with an MLP.

    A missing modality is replaced by a learned "missing" vector of its own, so the MLP
    can tell absence from a zero signal. The per-modality weights are the shares of
    each modality in the first layer's pre-activation (``|W_m x_m|`` normalised over the
    present modalities).

    Parameters
    ----------
    input_dims : dict of str -> int
    dim : int
    hidden : int, optional
        Hidden size of the MLP (default ``dim``); 0 for a single linear layer.
    dropout : float, default 0.0
    random_state : int, optional
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int, *, hidden: int | None = None,
                 dropout: float = 0.0, random_state: int | None = None):
        super().__init__(input_dims, dim, random_state=random_state)
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int)
                                   or hidden < 0):
            raise DataError(f"hidden must be a non-negative int or None, got {hidden!r}")
        self.hidden = None if hidden is None else int(hidden)
        width = self.dim if hidden is None else self.hidden
        self.dropout = _check_dropout(dropout)
        total = sum(self.input_dims.values())
        with manual_seeded(self.random_state):
            self.missing = nn.ParameterList(
                nn.Parameter(torch.zeros(d)) for d in self.input_dims.values())
            if width:
                self.first = nn.Linear(total, width)
                self.rest = nn.Sequential(nn.ReLU(), nn.Dropout(self.dropout),
                                          nn.Linear(width, self.dim))
            else:
                self.first = nn.Linear(total, self.dim)
                self.rest = nn.Identity()

    def _fuse(self, xs, mask):
        filled = [torch.where(mask[:, j:j + 1], x, self.missing[j].expand_as(x))
                  for j, x in enumerate(xs)]
        h = self.first(torch.cat(filled, dim=1))
        with torch.no_grad():
            shares, start = [], 0
            for x in filled:
                w = self.first.weight[:, start:start + x.shape[1]]
                shares.append((x @ w.T).norm(dim=1))
                start += x.shape[1]
            weights = _normalise(torch.stack(shares, dim=1), mask)
        return self.rest(h), weights

class GatedFusion(Fusion):
    """Project every modality to ``dim`` and mix them with learned, per-row gates.

    The gates are a softmax over the present modalities of scores computed from all
    projected modalities together (and which ones are present), so a row can lean on its
    text when its id embedding is weak (a cold item) and on the id otherwise::

        h_m = W_m x_m,   g = softmax_present(G [h_1; ...; h_M; mask]),   out = sum_m g_m h_m

    The gates are the per-modality weights.

    Parameters
    ----------
    input_dims : dict of str -> int
    dim : int
    dropout : float, default 0.0
        Dropout on the projected modalities.
    random_state : int, optional
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int, *, dropout: float = 0.0,
                 random_state: int | None = None):
        super().__init__(input_dims, dim, random_state=random_state)
        self.dropout = _check_dropout(dropout)
        m = len(self.modalities)
        with manual_seeded(self.random_state):
            self.projections = nn.ModuleList(nn.Linear(d, self.dim)
                                             for d in self.input_dims.values())
            self.gate = nn.Linear(m * self.dim + m, m)
        self.drop = nn.Dropout(self.dropout)

    def _fuse(self, xs, mask):
        hs = [self.drop(p(x)) for p, x in zip(self.projections, xs)]
        hs = [torch.where(mask[:, j:j + 1], h, torch.zeros_like(h)) for j, h in enumerate(hs)]
        context = torch.cat([*hs, mask.to(hs[0].dtype)], dim=1)
        gates = _masked_softmax(self.gate(context), mask, dim=1)
        out = (torch.stack(hs, dim=1) * gates.unsqueeze(-1)).sum(dim=1)
        return out, gates

class AttentionFusion(Fusion):
    """Multi-head attention of a learned query over the modality vectors.

    Each modality is projected to ``dim`` and tagged with a learned modality embedding;
    a learned query token attends over the present modalities
    (:class:`torch.nn.MultiheadAttention`, missing ones masked out) and the attended
    vector, through a residual feed-forward block, is the output. The attention weights
    (averaged over heads) are the per-modality weights.

    Parameters
    ----------
    input_dims : dict of str -> int
    dim : int
        Must be divisible by ``num_heads``.
    num_heads : int, default 4
    dropout : float, default 0.0
    random_state : int, optional
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int, *, num_heads: int = 4,
                 dropout: float = 0.0, random_state: int | None = None):
        super().__init__(input_dims, dim, random_state=random_state)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise DataError(f"num_heads must be a positive int, got {num_heads!r}")
        if self.dim % num_heads:
            raise DataError(f"dim={self.dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.dropout = _check_dropout(dropout)
        m = len(self.modalities)
        with manual_seeded(self.random_state):
            self.projections = nn.ModuleList(nn.Linear(d, self.dim)
                                             for d in self.input_dims.values())
            self.modality_embedding = nn.Parameter(torch.randn(m, self.dim) * 0.02)
            self.query = nn.Parameter(torch.randn(1, 1, self.dim) * 0.02)
            self.attention = nn.MultiheadAttention(self.dim, num_heads, dropout=self.dropout,
                                                   batch_first=True)
            self.norm = nn.LayerNorm(self.dim)
            self.feed_forward = nn.Sequential(nn.Linear(self.dim, 2 * self.dim), nn.GELU(),
                                              nn.Dropout(self.dropout),
                                              nn.Linear(2 * self.dim, self.dim))

    def _fuse(self, xs, mask):
        n = xs[0].shape[0]
        tokens = torch.stack([p(x) for p, x in zip(self.projections, xs)], dim=1)
        tokens = tokens + self.modality_embedding.unsqueeze(0)
        any_present = mask.any(dim=1)
        # rows with nothing present attend over everything (then are zeroed): no NaN
        ignore = ~mask & any_present.unsqueeze(1)
        query = self.query.expand(n, 1, self.dim)
        attended, weights = self.attention(query, tokens, tokens, key_padding_mask=ignore,
                                           need_weights=True, average_attn_weights=True)
        attended = attended.squeeze(1)
        out = attended + self.feed_forward(self.norm(attended))
        keep = any_present.unsqueeze(1)
        out = torch.where(keep, out, torch.zeros_like(out))
        weights = torch.where(keep, weights.squeeze(1), torch.zeros_like(weights.squeeze(1)))
        return out, weights

#: Fusion classes by short name (for ``make_fusion`` and recommender parameters).
FUSIONS: dict[str, type[Fusion]] = {
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "attention": AttentionFusion,
}


def make_fusion(kind: str | type[Fusion], input_dims: Mapping[str, int], dim: int,
                **kwargs) -> Fusion:
    """Build a fusion module by short name.

    Parameters
    ----------
    kind : {"concat", "gated", "attention"} or a Fusion subclass
    input_dims : dict of str -> int
    dim : int
    **kwargs
        Passed to the class (``random_state``, ``dropout``, ``num_heads``, ``hidden``).

    Returns
    -------
    Fusion

    Raises
    ------
    DataError
        For an unknown name.
    """
    if isinstance(kind, type) and issubclass(kind, Fusion):
        return kind(input_dims, dim, **kwargs)
    if kind not in FUSIONS:
        raise DataError(f"fusion must be one of {sorted(FUSIONS)}, got {kind!r}")
    return FUSIONS[kind](input_dims, dim, **kwargs)
