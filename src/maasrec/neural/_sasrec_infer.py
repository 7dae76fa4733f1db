"""Packed inference of :class:`~maasrec.neural.sasrec.SASRecNetwork`: the hidden state after
the last item of many sequences of mixed lengths in one pass.

Scoring needs one vector per sequence, the state after its last item. Running sequences
of each length as their own forward pass wastes nothing on padding but costs one pass (a
few dozen small tensor operations) per distinct length -- most of the time of a batch of
a dozen users. Padding every sequence to the longest instead wastes most positions (the
histories of a batch are short on average but its longest is often ``max_len``).

Here the sequences are *packed*: their items are laid end to end, ``[N, dim]`` with ``N``
the sum of the lengths, and every per-item operation (embeddings, LayerNorms, the Q/K/V,
output and FFN projections) runs once over the packed items. Only attention needs the
sequences apart: the packed Q/K/V are scattered into right-padded ``[b, heads, T, width]``
tensors for a causal attention and gathered back. In the last block only the state after
each sequence's last item is needed, so its attention takes that one query per sequence
(with a key mask for the sequence's length) and its output projection, FFN and the final
LayerNorm run on ``b`` rows instead of ``N``.

The result equals the per-length passes up to float rounding (matrix products of other
shapes: about 1e-6 on a fitted model's hidden states), as a batched call already differs
from a one-user call.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MAX_ROWS", "packed_last_hidden"]

#: Sequences per packed pass at most (a micro-batch of a server runs in one pass).
MAX_ROWS = 64


def _chunks(lengths: np.ndarray, max_positions: int, max_rows: int) -> list[np.ndarray]:
    """Indices of the sequences per pass: all at once when there are at most ``max_rows``
    and ``b * max(length)`` fits in ``max_positions``, else consecutive runs of the
    sequences sorted by length (little padding), each of at most ``max_rows`` sequences and
    ``max_positions`` padded positions (at least one sequence per run)."""
    n = len(lengths)
    if n <= max_rows and n * int(lengths.max()) <= max_positions:
        return [np.arange(n)]
    order = np.argsort(lengths, kind="stable")
    sl = lengths[order]
    out, a = [], 0
    while a < n:
        # padded size of the run a..i is (i - a + 1) * sl[i], increasing in i
        size = (np.arange(1, min(n - a, max_rows) + 1)) * sl[a:a + max_rows]
        stop = a + max(1, int(np.searchsorted(size, max_positions, side="right")))
        out.append(order[a:stop])
        a = stop
    return out


def _attention_inputs(block, x: torch.Tensor, row: torch.Tensor, pos: torch.Tensor, b: int,
                      t: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The packed Q/K/V ``[N, 3 * heads * width]`` and their right-padded form
    ``q, k, v: [b, heads, t, width]``."""
    h, hd = block.n_heads, block.head_dim
    qkv = block.qkv(block.ln1(x))
    if b == 1:  # one sequence: packed is padded
        padded = qkv.view(1, t, 3, h, hd)
    else:
        padded = qkv.new_zeros((b, t, qkv.shape[1]))
        padded[row, pos] = qkv
        padded = padded.view(b, t, 3, h, hd)
    return qkv, tuple(padded.permute(2, 0, 3, 1, 4))


def _inner_block(block, x: torch.Tensor, row: torch.Tensor, pos: torch.Tensor, b: int,
                 t: int) -> torch.Tensor:
    """One block (eval mode) over the packed items ``x: [N, dim]``."""
    _, (q, k, v) = _attention_inputs(block, x, row, pos, b, t)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [b, h, t, hd]
    a = a.transpose(1, 2)
    a = (a.reshape(t, -1) if b == 1 else a[row, pos].reshape(len(row), -1))
    x = x + block.proj(a)
    return x + block.fc2(F.gelu(block.fc1(block.ln2(x))))


def _last_block(block, x: torch.Tensor, row: torch.Tensor, pos: torch.Tensor,
                last: torch.Tensor, lengths: torch.Tensor, b: int, t: int) -> torch.Tensor:
    """The last block (eval mode), only at each sequence's last item: ``[b, dim]``."""
    h, hd = block.n_heads, block.head_dim
    qkv, (_, k, v) = _attention_inputs(block, x, row, pos, b, t)
    q = qkv[last, : h * hd].view(b, h, 1, hd)
    if b == 1:
        a = F.scaled_dot_product_attention(q, k, v)  # the last item sees every item
    else:
        keys = torch.arange(t, device=x.device)[None, :] < lengths[:, None]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :])
    y = x[last] + block.proj(a.reshape(b, h * hd))
    return y + block.fc2(F.gelu(block.fc1(block.ln2(y))))


def _packed_pass(net, seqs: list[np.ndarray], lengths: np.ndarray, table: torch.Tensor
                 ) -> torch.Tensor:
    dev = table.device
    b, n = len(seqs), int(lengths.sum())
    ends = np.cumsum(lengths)
    starts = ends - lengths
    flat = torch.from_numpy(np.concatenate(seqs) if b > 1 else seqs[0]).to(dev)
    pos_np = np.arange(n) - np.repeat(starts, lengths)
    pos = torch.from_numpy(pos_np).to(dev)
    row = torch.from_numpy(np.repeat(np.arange(b), lengths)).to(dev)
    last = torch.from_numpy(ends - 1).to(dev)
    lens = torch.from_numpy(lengths).to(dev)
    t = int(lengths.max())
    x = F.embedding(flat, table) + net.pos_emb[pos]
    blocks = list(net.blocks)
    for block in blocks[:-1]:
        x = _inner_block(block, x, row, pos, b, t)
    if blocks:
        x = _last_block(blocks[-1], x, row, pos, last, lens, b, t)
    else:
        x = x[last]
    return net.ln_f(x)


def packed_last_hidden(net, seqs: list[np.ndarray], table: torch.Tensor,
                       amp: torch.dtype | None = None, max_positions: int = 2**15,
                       max_rows: int = MAX_ROWS) -> torch.Tensor:
    """Hidden state after the last item of each non-empty sequence, ``[b, dim]`` float32.

    Parameters
    ----------
    net : SASRecNetwork
        Put in eval mode here.
    seqs : list of np.ndarray of int64
        Non-empty item-index sequences, oldest first, at most ``max_len`` long.
    table : torch.Tensor
        The item table ``[n_items, dim]`` (on the network's device).
    amp : torch.dtype, optional
        Autocast dtype of the pass.
    max_positions : int, default 2**15
        Padded positions (sequences x longest length) of one attention pass at most.
    max_rows : int, default MAX_ROWS
        Sequences per pass at most; more are sorted by length and run in passes of
        similar lengths (less padding in the attention).

    Returns
    -------
    torch.Tensor, shape (len(seqs), dim)
    """
    dev = table.device
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if any(m.training for m in net.modules()):  # eval() walks and sets every module
        net.eval()
    chunks = _chunks(lengths, int(max_positions), int(max_rows))
    with torch.no_grad(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
        if len(chunks) == 1:
            return _packed_pass(net, seqs, lengths, table).float()
        out = torch.empty((len(seqs), int(table.shape[1])), device=dev)
        for idx in chunks:
            h = _packed_pass(net, [seqs[i] for i in idx], lengths[idx], table)
            out[torch.from_numpy(idx).to(dev)] = h.float()
    return out
