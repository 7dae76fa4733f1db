"""The multinomial full-softmax loss of a dot-product model, computed a block of users
at a time (CPU).

``softmax_loss(u @ V.T / t + b, cols, rows=rows)`` materialises the ``[users, items]``
score matrix and walks it about six times (scores, bias, log-softmax, its backward, the
index-put of the targets, the two matrix products of the backward). At a few thousand
items that matrix (7.6 MB for 512 users x 3,706 items) falls out of the core's cache, and
two data-parallel ranks stepping in lockstep compete for memory bandwidth. This module
computes the loss *and its gradients* in one pass over blocks of users whose scores fit in
the cache: per block, the scores, their log-sum-exp, the softmax in place, the multinomial
gradient ``n_u softmax - y`` and its two matrix products; the backward only scales the
stored gradients. The result equals the unfused loss and gradients up to float rounding
(tested in float64 to 1e-12).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

#: floats of one block of scores: 2 MiB (the L2 of a current x86 core)
BLOCK_FLOATS = 1 << 19


def block_rows(n_items: int, n_rows: int) -> int:
    """Users per block: a block of scores holds about :data:`BLOCK_FLOATS` floats."""
    return max(1, min(n_rows, max(8, BLOCK_FLOATS // max(n_items, 1))))


def fused_applies(scorer, u: torch.Tensor, V: torch.Tensor) -> bool:
    """Whether :func:`fused_softmax_loss` computes this scorer's softmax loss: a plain
    :class:`~maasrec.scorers.DotScorer` (no global bias) on float32 CPU tensors outside
    autocast."""
    from ..scorers.dot import DotScorer

    return (type(scorer) is DotScorer and scorer.global_bias is None
            and u.device.type == "cpu" and V.device.type == "cpu"
            and u.dtype == torch.float32 and V.dtype == torch.float32
            and not torch.is_autocast_cpu_enabled())


def fused_softmax_loss(u: torch.Tensor, V: torch.Tensor, item_bias: torch.Tensor | None,
                       rows: torch.Tensor, cols: torch.Tensor, *, temperature: float = 1.0,
                       block: int | None = None) -> torch.Tensor:
    """``softmax_loss(u @ V.T / temperature + item_bias, cols, rows=rows)``, blocked.

    Parameters
    ----------
    u : torch.Tensor, shape (b, d)
    V : torch.Tensor, shape (n, d)
    item_bias : torch.Tensor, shape (n,), optional
    rows, cols : torch.Tensor of int64
        The target pairs; ``rows`` non-decreasing (as ``csr_pairs`` gives them).
    temperature : float, default 1.0
    block : int, optional
        Users per block (default :func:`block_rows`).

    Returns
    -------
    torch.Tensor
        Scalar: the summed negative log-likelihood of the targets over ``b``.
    """
    b = u.shape[0]
    if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
        order = torch.argsort(rows, stable=True)
        rows, cols = rows[order], cols[order]
    blk = block if block is not None else block_rows(V.shape[0], b)
    return _FusedSoftmaxNLL.apply(u, V, item_bias, rows, cols, float(temperature), int(blk))


class _FusedSoftmaxNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, V, item_bias, rows, cols, temperature, block):
        b, n = u.shape[0], V.shape[0]
        need_u, need_v, need_b = ctx.needs_input_grad[:3]
        grads = need_u or need_v or need_b
        u_, V_ = u.detach(), V.detach()
        ib = item_bias.detach() if item_bias is not None else None
        inv_t = 1.0 / temperature
        dU = torch.empty_like(u_) if need_u else None
        dV = torch.zeros_like(V_) if need_v else None
        dib = torch.zeros_like(ib) if need_b else None
        starts = torch.arange(0, b + block, block).clamp(max=b)
        bounds = torch.searchsorted(rows, starts).tolist()
        buf = torch.empty(min(block, max(b, 1)), n, dtype=u_.dtype)
        loss = torch.zeros((), dtype=torch.float64)
        for k, r0 in enumerate(range(0, b, block)):
            r1 = min(r0 + block, b)
            S, ub = buf[: r1 - r0], u_[r0:r1]
            if ib is not None:
                torch.addmm(ib, ub, V_.T, alpha=inv_t, out=S)
            else:
                torch.mm(ub, V_.T, out=S)
                if inv_t != 1.0:
                    S.mul_(inv_t)
            pr = rows[bounds[k]:bounds[k + 1]] - r0
            pc = cols[bounds[k]:bounds[k + 1]]
            picked = S[pr, pc]
            # the softmax in place: one exp per score (log-sum-exp = max + log(sum))
            top = S.amax(dim=1, keepdim=True)
            S.sub_(top).exp_()
            z = S.sum(dim=1)
            lse = top.squeeze(1) + z.log()
            loss += (lse[pr] - picked).sum(dtype=torch.float64)
            if not grads:
                continue
            # S <- n_u * softmax - y: the block's gradient of the summed NLL
            counts = torch.bincount(pr, minlength=r1 - r0).to(S.dtype)
            S.mul_((counts / z).unsqueeze(1))
            S.index_put_((pr, pc), torch.full((len(pc),), -1.0, dtype=S.dtype),
                         accumulate=True)
            if need_u:
                torch.mm(S, V_, out=dU[r0:r1])
            if need_v:
                dV.addmm_(S.T, ub)
            if need_b:
                dib.add_(S.sum(0))
        scale = 1.0 / max(b, 1)
        for g in (dU, dV):
            if g is not None:
                g.mul_(scale * inv_t)
        if dib is not None:
            dib.mul_(scale)
        ctx.grads = (dU, dV, dib)
        return (loss * scale).to(u_.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        dU, dV, dib = ctx.grads
        del ctx.grads
        out = tuple(None if t is None else t * g for t in (dU, dV, dib))
        return (*out, None, None, None, None)
