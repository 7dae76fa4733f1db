"""The causal sequence network of :class:`~maasrec.neural.SequentialRecommender` (SASRec).

Item embeddings (plus, when fused, a projection of frozen text vectors and the mean of
side-information label vectors) and learned positions feed ``n_layers`` pre-LayerNorm
transformer blocks with a causal mask; the hidden state at position ``t`` scores every
item by a dot product with the same item table (tied weights).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import DataError

__all__ = ["INIT_STD", "SASRecNetwork"]

#: Standard deviation of the initial item and position embeddings and weights.
INIT_STD = 0.02
#: Positions (sequences x length) per forward pass when scoring.
_INFER_POSITIONS = 2**15


class _CausalBlock(nn.Module):
    """Pre-LayerNorm transformer block with causal self-attention."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, dropout: float,
                 head_dim: int | None = None):
        super().__init__()
        self.n_heads = n_heads
        # head width stays dim // n_heads of the unpruned block when heads are pruned
        self.head_dim = int(head_dim) if head_dim is not None else dim // n_heads
        inner = n_heads * self.head_dim
        self.attn_dropout = dropout
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, hd = self.n_heads, self.head_dim
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=True)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, h * hd)))
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.ln2(x))))))


class SASRecNetwork(nn.Module):
    """The causal sequence network of :class:`SequentialRecommender`.

    Sequences are right-padded (real items first, padding after), so the causal mask
    alone keeps every real position from seeing padding; positions count from the
    first item of the (truncated) sequence.

    Parameters
    ----------
    n_items : int
    dim : int
    max_len : int
    n_layers, n_heads, ffn_dim : int
    dropout : float
    text_dim : int, default 0
        Width of the fused text vectors (``item_text="fuse"``); 0 for none.
    side_labels : int, default 0
        Number of side-information labels (``item_side="fuse"``): each item adds the
        mean of its labels' learned vectors (an ``EmbeddingBag``; the item-label lists
        are set with :meth:`set_side`); 0 for none.
    block_shapes : sequence of (int, int), optional
        Per block ``(heads, ffn width)`` of a structurally pruned network
        (:func:`maasrec.compress.prune`); heads keep the width ``dim // n_heads``.
        None: every block has ``n_heads`` heads and ``ffn_dim`` FFN units.
    """

    def __init__(self, n_items: int, dim: int, max_len: int, n_layers: int, n_heads: int,
                 ffn_dim: int, dropout: float, text_dim: int = 0, side_labels: int = 0,
                 block_shapes=None):
        super().__init__()
        self.item_emb = nn.Parameter(torch.empty(n_items, dim))
        self.pos_emb = nn.Parameter(torch.empty(max_len, dim))
        self.drop = nn.Dropout(dropout)
        shapes = ([(n_heads, ffn_dim)] * n_layers if block_shapes is None
                  else [(int(h), int(f)) for h, f in block_shapes])
        self.blocks = nn.ModuleList(_CausalBlock(dim, h, f, dropout, head_dim=dim // n_heads)
                                    for h, f in shapes)
        self.ln_f = nn.LayerNorm(dim)
        self.text_dim = int(text_dim)
        if self.text_dim:
            self.text_proj = nn.Linear(self.text_dim, dim, bias=False)
            self.register_buffer("text_vectors", torch.zeros(n_items, self.text_dim))
        else:
            self.text_proj = None
        self.side_labels = int(side_labels)
        if self.side_labels:
            self.side_emb = nn.EmbeddingBag(self.side_labels, dim, mode="mean")
            # the item-label lists come from the fitted model's attributes (set_side)
            self.register_buffer("side_indices", torch.zeros(0, dtype=torch.long),
                                 persistent=False)
            self.register_buffer("side_offsets", torch.zeros(n_items, dtype=torch.long),
                                 persistent=False)
        else:
            self.side_emb = None

    def set_side(self, item_labels: sp.csr_matrix) -> None:
        """Set each item's side-information labels: row ``i`` of ``item_labels``
        (``[n_items, side_labels]``, nonzero = has the label)."""
        m = sp.csr_matrix(item_labels)
        if m.shape != (self.n_items, self.side_labels):
            raise DataError(f"item_labels has shape {m.shape}, expected "
                            f"({self.n_items}, {self.side_labels})")
        dev = self.item_emb.device
        self.side_indices = torch.from_numpy(m.indices.astype(np.int64)).to(dev)
        self.side_offsets = torch.from_numpy(m.indptr[:-1].astype(np.int64)).to(dev)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Normal(0, 0.02) weights and embeddings, zero biases, unit LayerNorm gains."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln" in name or name.startswith("ln_f"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * INIT_STD)
            if self.text_proj is not None:  # fused text part about as large as an id vector
                w = torch.randn(self.text_proj.weight.shape, generator=generator)
                self.text_proj.weight.copy_(w * INIT_STD)

    @property
    def n_items(self) -> int:
        """int: rows of the item table."""
        return int(self.item_emb.shape[0])

    def item_table(self) -> torch.Tensor:
        """Item vectors ``[n_items, dim]`` (id embedding, plus projected text and the mean
        of the side-information label vectors when fused)."""
        table = self.item_emb
        if self.text_proj is not None:
            table = table + self.text_proj(self.text_vectors)
        if self.side_emb is not None:
            table = table + self.side_emb(self.side_indices, self.side_offsets)
        return table

    def hidden(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``[b, t, dim]`` of right-padded item sequences ``[b, t]``.

        The state at position ``j`` depends only on items ``0..j`` of its row.
        """
        table = self.item_table() if table is None else table
        t = seq.shape[1]
        x = self.drop(F.embedding(seq, table) + self.pos_emb[:t])
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def grow(self, rows: torch.Tensor, text: torch.Tensor | None = None) -> None:
        """Append item rows (and their text vectors when fused)."""
        with torch.no_grad():
            rows = rows.to(self.item_emb)
            self.item_emb = nn.Parameter(torch.cat([self.item_emb.detach(), rows], 0))
            if self.text_proj is not None:
                add = (torch.zeros(len(rows), self.text_dim) if text is None else text)
                self.text_vectors = torch.cat([self.text_vectors, add.to(self.text_vectors)], 0)

    def last_hidden(self, seqs: list[np.ndarray], table: torch.Tensor,
                    amp: torch.dtype | None = None) -> torch.Tensor:
        """Hidden state after the last item of each non-empty sequence, ``[b, dim]``.

        Sequences of mixed lengths run packed, in one pass per (at most) 64 sequences
        and ``_INFER_POSITIONS`` padded positions (:mod:`maasrec.neural._sasrec_infer`):
        per-item layers over the items laid end to end, attention right-padded, the last
        block only at each sequence's last item. A sequence's state depends on the others
        only through float rounding (about 1e-6). Inference mode (``eval``, no grad),
        under autocast to ``amp`` when given.
        """
        from ._sasrec_infer import packed_last_hidden

        return packed_last_hidden(self, seqs, table, amp, max_positions=_INFER_POSITIONS)
