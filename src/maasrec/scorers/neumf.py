"""Neural collaborative filtering: GMF and MLP towers fused (He et al., 2017)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from .._rng import manual_seeded
from ..encoders._utils import check_int, check_seed
from ..exceptions import DataError
from .base import Scorer, check_2d, check_dropout, chunk_rows

__all__ = ["NeuMFScorer"]


class NeuMFScorer(Scorer):
    """NeuMF: a generalised-MF tower and an MLP tower, fused by a final linear layer.

    The user and item representations (size ``dim``) are split: the first
    ``gmf_dim`` coordinates feed GMF (``u_g ⊙ v_g``), the rest feed the MLP
    (``relu`` layers over ``[u_m; v_m]``) -- NeuMF's separate GMF and MLP embeddings
    -- and ``score = h_gmfᵀ(u_g ⊙ v_g) + h_mlpᵀ MLP([u_m; v_m]) + b (+ b_i)``.

    Full ranking cannot factorise through the MLP, so :meth:`score_all` splits the
    first MLP layer into a user part and an item part (computed once) and evaluates the
    remaining layers over items in chunks whose intermediates fit
    :data:`~maasrec.scorers.base.SCORE_CHUNK_BYTES`.

    Parameters
    ----------
    dim : int
        Size of the user and item representations.
    gmf_dim : int, optional
        Coordinates given to GMF (default ``dim // 2``); 0 is an MLP-only scorer,
        ``dim`` a GMF-only one.
    mlp_layers : sequence of int, default (64, 32, 16)
        Hidden sizes of the MLP tower (the paper's tower shape).
    dropout : float, default 0.0
        Dropout after each hidden layer (training only).
    n_items : int, optional
        Needed for ``item_bias``.
    item_bias : bool, default False
    random_state : int, optional
        Seed of the initialisation.

    References
    ----------
    X. He, L. Liao, H. Zhang, L. Nie, X. Hu, T.-S. Chua. Neural Collaborative
    Filtering. WWW 2017.
    """

    _param_attrs: ClassVar[dict[str, str]] = {"item_bias": "use_item_bias"}

    def __init__(self, dim: int, gmf_dim: int | None = None,
                 mlp_layers: Sequence[int] = (64, 32, 16), dropout: float = 0.0,
                 n_items: int | None = None, item_bias: bool = False,
                 random_state: int | None = None):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.gmf_dim = None if gmf_dim is None else check_int("gmf_dim", gmf_dim, 0)
        self._gmf_dim = self.dim // 2 if gmf_dim is None else self.gmf_dim
        if self._gmf_dim > self.dim:
            raise DataError(f"gmf_dim={gmf_dim} exceeds dim={dim}")
        self.mlp_dim = self.dim - self._gmf_dim
        self.mlp_layers = [check_int("mlp_layers[i]", h) for h in mlp_layers]
        if self.mlp_dim and not self.mlp_layers:
            raise DataError("mlp_layers must name at least one hidden size when the MLP "
                            "tower is used (gmf_dim < dim)")
        self.dropout = check_dropout(dropout)
        if item_bias and n_items is None:
            raise DataError("item_bias=True needs n_items (the number of item ids)")
        self.n_items = None if n_items is None else check_int("n_items", n_items)
        self.use_item_bias = bool(item_bias)
        self.random_state = check_seed(random_state)
        seed = None
        if self.random_state is not None:  # the layers' seed: one draw from random_state
            gen = torch.Generator().manual_seed(self.random_state)
            seed = int(torch.randint(2**31, (1,), generator=gen))
        with manual_seeded(seed):
            if self.mlp_dim:
                h1 = self.mlp_layers[0]
                self.mlp_user = nn.Linear(self.mlp_dim, h1)
                self.mlp_item = nn.Linear(self.mlp_dim, h1, bias=False)
                self.mlp_rest = nn.ModuleList(nn.Linear(a, b) for a, b in
                                              zip(self.mlp_layers[:-1], self.mlp_layers[1:]))
            else:
                self.mlp_user = self.mlp_item = None
                self.mlp_rest = nn.ModuleList()
            width = self._gmf_dim + (self.mlp_layers[-1] if self.mlp_dim else 0)
            self.output = nn.Linear(width, 1)
        self.drop = nn.Dropout(self.dropout)
        self.item_bias = (nn.Parameter(torch.zeros(self.n_items)) if item_bias else None)

    # -- pieces --------------------------------------------------------------------------
    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., :self._gmf_dim], x[..., self._gmf_dim:]

    def _mlp_tail(self, h: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(h))
        for layer in self.mlp_rest:
            h = self.drop(torch.relu(layer(h)))
        return h

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.output.weight[0]
        return w[:self._gmf_dim], w[self._gmf_dim:]

    def _bias(self, item_idx, shape, device) -> torch.Tensor | None:
        if self.item_bias is None:
            return None
        if item_idx is None:
            if shape[-1] != self.item_bias.shape[0]:
                raise DataError(f"{shape[-1]} item rows but {self.item_bias.shape[0]} item "
                                f"biases; pass item_idx")
            return self.item_bias
        return self.item_bias[item_idx]

    # -- scoring -------------------------------------------------------------------------
    def score_all(self, user, items, *, user_idx=None, item_idx=None, chunk_size=None):
        """Scores ``[b, n]`` (MLP over item chunks; see :meth:`Scorer.score_all`)."""
        check_2d("user", user, self.dim)
        check_2d("items", items, self.dim)
        b, n = user.shape[0], items.shape[0]
        wg, wm = self._weights()
        ug, um = self._split(user)
        vg, vm = self._split(items)
        out = (ug * wg) @ vg.T + self.output.bias
        if self.mlp_dim:
            a = self.mlp_user(um)                    # [b, h1]
            c = self.mlp_item(vm)                    # [n, h1]
            per_item = 4 * b * (sum(self.mlp_layers) + self.mlp_layers[0]) * 2
            step = chunk_rows(per_item, n, chunk_size)
            parts = []
            for s in range(0, n, step):
                h = a.unsqueeze(1) + c[s:s + step].unsqueeze(0)   # [b, c, h1]
                parts.append(self._mlp_tail(h) @ wm)
            out = out + torch.cat(parts, dim=1)
        bias = self._bias(item_idx, (b, n), items.device)
        return out if bias is None else out + bias

    def score_pairs(self, user, items, *, user_idx=None, item_idx=None):
        """Scores ``[b]`` or ``[b, k]`` (see :meth:`Scorer.score_pairs`)."""
        check_2d("user", user, self.dim)
        if items.dim() == 3:
            u = user.unsqueeze(1).expand(-1, items.shape[1], -1)
        elif items.dim() == 2:
            u = user
        else:
            raise DataError(f"items must be [b, d] or [b, k, d], got {tuple(items.shape)}")
        if items.shape[-1] != self.dim:
            raise DataError(f"items have {items.shape[-1]} columns, expected {self.dim}")
        wg, wm = self._weights()
        ug, um = self._split(u)
        vg, vm = self._split(items)
        out = (ug * vg) @ wg + self.output.bias
        if self.mlp_dim:
            out = out + self._mlp_tail(self.mlp_user(um) + self.mlp_item(vm)) @ wm
        if self.item_bias is not None:
            if item_idx is None:
                raise DataError("this NeuMFScorer has item biases: pass item_idx to score_pairs")
            out = out + self.item_bias[item_idx]
        return out
