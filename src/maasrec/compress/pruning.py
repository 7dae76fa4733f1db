"""Pruning of the transformer networks of fitted models, then a short fine-tune.

:func:`prune` takes a fitted :class:`~maasrec.neural.SequentialRecommender` or
:class:`~maasrec.lm_ranker.LMRanker` and returns a pruned, fitted copy:

- ``method="magnitude"``: the weights of smallest magnitude of every ``nn.Linear`` of the
  transformer blocks are set to zero (:func:`torch.nn.utils.prune.l1_unstructured` per
  layer, or :func:`torch.nn.utils.prune.global_unstructured` across them); the masks
  stay on during the fine-tune and are then made permanent. The matrices keep their
  shapes: smaller only once compressed, no faster with dense kernels.
- ``method="structured"``: whole attention heads and feed-forward units are removed
  from every block (the least important by the norms of their weights, chosen with
  :mod:`torch.nn.utils.prune`), and the ``nn.Linear`` layers are rebuilt smaller: a
  smaller model on disk and in memory, and faster to score.

The fine-tune (``epochs``) runs the model's own training task through the
:class:`~maasrec.training.Trainer`. Models without a network (EASE, ALS, ...) are
refused: quantize them instead (:func:`maasrec.compress.quantize`).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .._validation import check_int, check_number
from ..exceptions import DataError, ModelFormatError
from ..training import seeded
from ._seqtrain import check_fitted, prepare_data, train_network

__all__ = ["PRUNE_METHODS", "prune", "sparsity"]

#: Accepted values of ``method``.
PRUNE_METHODS = ("magnitude", "structured")
_SCOPES = ("layer", "global")


# -- choosing what to keep ---------------------------------------------------------------
def _keep(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Sorted indices of the units kept when ``amount`` of them (the lowest ``scores``)
    go; at least one unit stays. The choice is :func:`torch.nn.utils.prune.l1_unstructured`
    over the scores."""
    n = int(scores.numel())
    drop = min(round(float(amount) * n), n - 1)
    holder = nn.Module()
    holder.register_parameter("s", nn.Parameter(scores.detach().abs().float().clone(),
                                                requires_grad=False))
    torch_prune.l1_unstructured(holder, "s", amount=drop)
    return torch.nonzero(holder.s_mask).flatten()


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out.to(weight.device)


def _shrink_block(block, heads: float, ffn: float) -> tuple[int, int]:
    """Remove ``heads`` of the heads and ``ffn`` of the FFN units of a SASRec block."""
    h, hd = block.n_heads, block.head_dim
    inner = h * hd
    w, b = block.qkv.weight.detach(), block.qkv.bias.detach()
    pw = block.proj.weight.detach()
    # a head's share of the output: |W_v,head| x |W_proj[:, head]|
    v = w[2 * inner:].reshape(h, hd, -1)
    score = v.flatten(1).norm(dim=1) * pw.reshape(pw.shape[0], h, hd).permute(1, 0, 2) \
        .flatten(1).norm(dim=1)
    keep_h = _keep(score, heads)
    cols = (keep_h[:, None] * hd + torch.arange(hd, device=w.device)).flatten()
    rows = torch.cat([part * inner + cols for part in range(3)])
    block.qkv = _linear(w[rows], b[rows])
    block.proj = _linear(pw[:, cols], block.proj.bias.detach())
    block.n_heads = len(keep_h)
    # an FFN unit's share: |fc1 row| x |fc2 column|
    w1, w2 = block.fc1.weight.detach(), block.fc2.weight.detach()
    keep_f = _keep(w1.norm(dim=1) * w2.norm(dim=0), ffn)
    block.fc1 = _linear(w1[keep_f], block.fc1.bias.detach()[keep_f])
    block.fc2 = _linear(w2[:, keep_f], block.fc2.bias.detach())
    return len(keep_h), len(keep_f)


def _block_linears(net: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for blk in net.blocks for m in (blk.qkv, blk.proj, blk.fc1, blk.fc2)]


def _mask(net: nn.Module, amount: float, scope: str) -> None:
    mask_weights(_block_linears(net), amount, scope)


def mask_weights(params: list[tuple[nn.Module, str]], amount: float, scope: str) -> None:
    """L1 magnitude masks (``torch.nn.utils.prune``) over ``params``, across all of them
    (``scope="global"``) or per layer."""
    if scope == "global":
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                        amount=float(amount))
    else:
        for m, name in params:
            torch_prune.l1_unstructured(m, name, amount=float(amount))


def _unmask(net: nn.Module) -> None:
    for m, name in _block_linears(net):
        if torch_prune.is_pruned(m):
            torch_prune.remove(m, name)


# -- reports -----------------------------------------------------------------------------
def _network(model) -> nn.Module:
    net = getattr(model, "network_", None)
    if net is None:
        lm = getattr(model, "_lm", None)
        net = getattr(lm, "model", None)
    if not isinstance(net, nn.Module):
        raise DataError(f"{type(model).__name__} has no network to measure")
    return net


def sparsity(model) -> dict[str, float]:
    """Share of zero weights of a fitted network model.

    Parameters
    ----------
    model : SequentialRecommender or LMRanker

    Returns
    -------
    dict
        ``"linear"``: zeros among the weights of the ``nn.Linear`` layers (what
        magnitude pruning sets to zero); ``"all"``: among every parameter;
        ``"parameters"``: the number of parameters.
    """
    check_fitted(model, "sparsity")
    net = _network(model)
    lin = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    params = list(net.parameters())
    zeros = sum(int((p == 0).sum()) for p in lin)
    n_lin = sum(p.numel() for p in lin)
    total = sum(p.numel() for p in params)
    return {"linear": zeros / max(n_lin, 1),
            "all": sum(int((p == 0).sum()) for p in params) / max(total, 1),
            "parameters": int(total)}


# -- the public function -----------------------------------------------------------------
def _check_args(method, amount, heads, ffn, scope, epochs):
    if method not in PRUNE_METHODS:
        raise DataError(f"method must be one of {list(PRUNE_METHODS)}, got {method!r}")
    check_number("amount", amount, low=0, high=1, high_inclusive=False)
    for name, v in (("heads", heads), ("ffn", ffn)):
        if v is not None:
            check_number(name, v, low=0, high=1, high_inclusive=False)
    if scope not in _SCOPES:
        raise DataError(f"scope must be one of {list(_SCOPES)}, got {scope!r}")
    if method == "structured" and scope != "layer":
        raise DataError("structured pruning removes the same share of every block: "
                        f"scope must be 'layer', got {scope!r}")
    check_int("epochs", epochs, low=0)


def _refuse(model) -> None:
    from ..lm_ranker import LMRanker
    from ..neural import SequentialRecommender

    if isinstance(model, (SequentialRecommender, LMRanker)):
        return
    name = type(model).__name__
    if getattr(model, "network_", None) is not None or any(
            isinstance(v, nn.Module) for v in vars(model).values()):
        raise DataError(f"pruning supports SequentialRecommender and LMRanker (transformer "
                        f"blocks with heads and FFN layers); {name} has another network: "
                        "distill it into a narrower model or quantize it")
    raise DataError(f"pruning applies to networks; {name} has none -- use "
                    "maasrec.compress.quantize")


def prune(model, X=None, *, method: str = "structured", amount: float = 0.5,
          heads: float | None = None, ffn: float | None = None, scope: str = "layer",
          epochs: int = 3, learning_rate: float | None = None, patience: int = 2,
          validation=None, random_state: Any = 0):
    """Prune a fitted transformer model and fine-tune it briefly.

    Parameters
    ----------
    model : SequentialRecommender or LMRanker
        Fitted; left unchanged (a pruned copy is returned).
    X : Interactions, pandas.DataFrame or scipy.sparse matrix, optional
        The training interactions (the data ``model`` was fitted on) for the fine-tune;
        needed when ``epochs > 0``.
    method : {"structured", "magnitude"}, default "structured"
        See the module description.
    amount : float in [0, 1), default 0.5
        Share removed: of the Linear weights (``"magnitude"``), or of the heads and FFN
        units of every block (``"structured"``; at least one of each stays).
    heads, ffn : float in [0, 1), optional
        ``"structured"``: the shares of heads and of FFN units (default ``amount``).
    scope : {"layer", "global"}, default "layer"
        ``"magnitude"``: ``amount`` of every layer, or of all of them together.
    epochs : int, default 3
        Fine-tune epochs after pruning (0: none). SequentialRecommender: its next-item
        task; LMRanker: its pair task.
    learning_rate : float, optional
        Of the fine-tune (default: the model's ``learning_rate``).
    patience : int, default 2
        Early stopping of the fine-tune on ``validation``.
    validation : Interactions or pandas.DataFrame, optional
        Held-out next items (SequentialRecommender): the fine-tune keeps its best epoch by
        the model's ``val_metric``, scored from the histories of ``X``.
    random_state : int, numpy.random.Generator or None, default 0
        Seeds the fine-tune.

    Returns
    -------
    SequentialRecommender or LMRanker
        Fitted, saveable; ``compression_`` records the method, the shares, the
        parameter counts before and after, the sparsity and the fine-tune log.

    Raises
    ------
    DataError
        A model without a network ("pruning applies to networks; EASE has none"), a
        model already pruned structurally (LMRanker), a bad ``method``, ``amount``,
        ``scope`` or ``epochs``, or no ``X`` with ``epochs > 0``.
    NotFittedError
        ``model`` is not fitted.
    """
    check_fitted(model, "pruning")
    _refuse(model)
    _check_args(method, amount, heads, ffn, scope, epochs)
    heads = float(amount if heads is None else heads)
    ffn = float(amount if ffn is None else ffn)
    if not hasattr(model, "network_"):
        from ._prune_lm import prune_lm

        return prune_lm(model, X, method=method, amount=float(amount), heads=heads, ffn=ffn,
                        scope=scope, epochs=int(epochs), learning_rate=learning_rate,
                        random_state=random_state)
    data = val = None
    if epochs:
        data, val = prepare_data(model, X, validation, "prune")
    retriever = getattr(model, "_retriever", None)
    model._retriever = None  # the original's index stays the original's, not copied
    try:
        out = copy.deepcopy(model)
    finally:
        model._retriever = retriever
    net = out.network_
    before = sum(p.numel() for p in net.parameters())
    log: dict = {}
    with seeded(random_state) as seed:
        if method == "structured":
            shapes = [_shrink_block(blk, heads, ffn) for blk in net.blocks]
            out.block_shapes_ = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        else:
            _mask(net, float(amount), scope)
        out._invalidate()
        try:
            if epochs:
                from ..neural._sequences import NextItemTask

                task = NextItemTask(
                    net, data.item_indices.astype(np.int64), data.user_indptr.astype(np.int64),
                    max_len=int(out.max_len), batch_size=int(out.batch_size), loss=out.loss,
                    n_negatives=int(out.n_negatives),
                    label_smoothing=float(getattr(out, "label_smoothing", 0.0)),
                    step_amp=out._amp_dtype(out._device()) if out.amp == "bf16" else None,
                    seed=seed, device=out._device())
                if task.n_windows:
                    lr = out.learning_rate if learning_rate is None else learning_rate
                    log = train_network(out, task, data, val, epochs=int(epochs),
                                        learning_rate=float(lr), patience=int(patience),
                                        seed=seed, name="prune")
        finally:
            _unmask(net)
    net.eval()
    out._invalidate()
    if retriever is not None:  # the same kind of index over the new item vectors
        out.set_retriever(type(retriever)(**retriever.get_params()))
    out.compression_ = {"method": "prune", "prune": method, "amount": float(amount),
                        "heads": heads, "ffn": ffn, "scope": scope,
                        "parameters_before": int(before),
                        "parameters_after": int(sum(p.numel() for p in net.parameters())),
                        "sparsity": sparsity(out)["linear"], "fine_tune": log}
    return out


def check_block_shapes(model, where: str) -> None:
    """Check a loaded ``block_shapes_`` (``[n_layers, 2]``: heads, FFN units per block)."""
    shapes = getattr(model, "block_shapes_", None)
    ffn = model._ffn()
    ok = (isinstance(shapes, np.ndarray) and shapes.dtype.kind in "iu"
          and shapes.shape == (int(model.n_layers), 2)
          and bool(((shapes[:, 0] >= 1) & (shapes[:, 0] <= int(model.n_heads))).all())
          and bool(((shapes[:, 1] >= 1) & (shapes[:, 1] <= ffn)).all()))
    if not ok:
        raise ModelFormatError(
            f"{where}: block_shapes_ must be {int(model.n_layers)} rows of (heads in "
            f"1..{model.n_heads}, FFN units in 1..{ffn}), got "
            f"{getattr(shapes, 'tolist', lambda: shapes)()!r}")
    model.block_shapes_ = shapes.astype(np.int64)
