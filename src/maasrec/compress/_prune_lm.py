"""Pruning of an :class:`~maasrec.lm_ranker.LMRanker`'s cross-encoder (BERT-family layers).

Structured: attention heads (the rows of ``query``/``key``/``value`` and the columns of
``attention.output.dense``) and FFN units (rows of ``intermediate.dense``, columns of
``output.dense``) are removed per layer and the ``nn.Linear`` layers rebuilt smaller.
``transformers`` rebuilds a model from its config, which has one head count and one FFN
width for all layers, so the kept sizes are recorded in the cross-encoder's
``maasrec_lm.json`` (``"pruned"``) and :func:`load_pruned` rebuilds those
shapes before the weights are read. Magnitude: every ``nn.Linear`` of the layers.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..exceptions import DataError, ModelFormatError
from ..training import seeded

__all__ = ["apply_structure", "load_pruned", "prune_lm"]


def _layers(backbone: nn.Module) -> list[nn.Module]:
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    ok = layers is not None and all(
        hasattr(lay, "attention") and hasattr(lay.attention, "self")
        and hasattr(lay, "intermediate") and hasattr(lay, "output") for lay in layers)
    if not ok:
        raise DataError(f"structured pruning of an LMRanker needs BERT-family layers "
                        f"(encoder.layer[i].attention.self / intermediate / output); "
                        f"{type(backbone).__name__} has another layout: use "
                        "method='magnitude'")
    return list(layers)


def _head_size(attn) -> int:
    return int(getattr(attn, "attention_head_size", None)
               or attn.query.out_features // attn.num_attention_heads)


def _sub_linear(lin: nn.Linear, rows=None, cols=None) -> nn.Linear:
    w = lin.weight.detach()
    b = None if lin.bias is None else lin.bias.detach()
    if rows is not None:
        w = w[rows]
        b = None if b is None else b[rows]
    if cols is not None:
        w = w[:, cols]
    out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).to(w.device, w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        if b is not None:
            out.bias.copy_(b)
    return out


def _shrink_layer(layer, keep_heads: torch.Tensor, keep_ffn: torch.Tensor) -> None:
    attn, out = layer.attention.self, layer.attention.output
    hd = _head_size(attn)
    cols = (keep_heads[:, None] * hd + torch.arange(hd)).flatten()
    for name in ("query", "key", "value"):
        setattr(attn, name, _sub_linear(getattr(attn, name), rows=cols))
    out.dense = _sub_linear(out.dense, cols=cols)
    attn.num_attention_heads = len(keep_heads)
    attn.all_head_size = len(keep_heads) * hd
    layer.intermediate.dense = _sub_linear(layer.intermediate.dense, rows=keep_ffn)
    layer.output.dense = _sub_linear(layer.output.dense, cols=keep_ffn)


def apply_structure(backbone: nn.Module, pruned: Any, where: str = "pruned") -> None:
    """Shrink the layers of a freshly built model to the recorded sizes (weights follow).

    ``pruned`` is ``{"heads": [per layer], "intermediate": [per layer]}``.
    """
    layers = _layers(backbone)
    try:
        heads = [int(h) for h in pruned["heads"]]
        ffn = [int(f) for f in pruned["intermediate"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: 'pruned' must hold per-layer 'heads' and "
                               f"'intermediate' counts, got {pruned!r}") from exc
    if len(heads) != len(layers) or len(ffn) != len(layers):
        raise ModelFormatError(f"{where}: 'pruned' names {len(heads)}/{len(ffn)} layers, the "
                               f"model has {len(layers)}")
    for lay, h, f in zip(layers, heads, ffn):
        n_h = lay.attention.self.num_attention_heads
        n_f = lay.intermediate.dense.out_features
        if not (1 <= h <= n_h and 1 <= f <= n_f):
            raise ModelFormatError(f"{where}: pruned sizes (heads {h}, FFN {f}) outside "
                                   f"1..{n_h} and 1..{n_f}")
        _shrink_layer(lay, torch.arange(h), torch.arange(f))


def load_pruned(folder, kind: str, pruned: Any):
    """The model of a pruned cross-encoder folder: built from its config, shrunk to the
    recorded sizes ``pruned``, then given the saved weights (every one must fit)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    folder = str(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    klass = AutoModelForSequenceClassification if kind == "sequence_classification" else AutoModel
    model = klass.from_config(config, dtype=torch.float32)
    backbone = model.base_model if kind == "sequence_classification" else model
    apply_structure(backbone, pruned, folder)
    state = load_file(os.path.join(folder, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = set(model.state_dict())
    missing = [k for k in missing if k in own and not k.endswith("position_ids")]
    if unexpected or missing:
        raise ModelFormatError(f"{folder!r}: the pruned weights do not fit the model "
                               f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval()


def _head_scores(layer) -> torch.Tensor:
    attn = layer.attention.self
    hd, h = _head_size(attn), attn.num_attention_heads
    v = attn.value.weight.detach().reshape(h, hd, -1).flatten(1).norm(dim=1)
    o = layer.attention.output.dense.weight.detach()
    return v * o.reshape(o.shape[0], h, hd).permute(1, 0, 2).flatten(1).norm(dim=1)


def _ffn_scores(layer) -> torch.Tensor:
    return (layer.intermediate.dense.weight.detach().norm(dim=1)
            * layer.output.dense.weight.detach().norm(dim=0))


def _linears(backbone: nn.Module) -> list[tuple[nn.Module, str]]:
    layers = getattr(getattr(backbone, "encoder", None), "layer", None) or getattr(
        backbone, "h", None) or getattr(backbone, "layers", None)
    if layers is None:
        raise DataError(f"no transformer layers found in {type(backbone).__name__}")
    return [(m, "weight") for lay in layers for m in lay.modules()
            if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]


def prune_lm(model, X, *, method: str, amount: float, heads: float, ffn: float, scope: str,
             epochs: int, learning_rate, random_state) -> Any:
    """:func:`maasrec.compress.prune` for an LMRanker (checked arguments)."""
    from ..lm_ranker._training import fine_tune
    from ..lm_ranker.network import own_aligned_storage
    from ._seqtrain import prepare_data
    from .pruning import _keep, mask_weights, sparsity

    model._check_lm()
    if getattr(model._lm, "pruned", None) is not None and method == "structured":
        raise DataError("this LMRanker is already pruned structurally; prune the unpruned "
                        "model with a larger amount instead")
    data = None
    if epochs:
        data, _ = prepare_data(model, X, None, "prune")
    out = copy.deepcopy(model)
    enc = out._lm
    backbone = enc.backbone
    before = sum(p.numel() for p in enc.parameters())
    if method == "structured":
        layers = _layers(backbone)
        kept_h, kept_f = [], []
        for lay in layers:
            kh, kf = _keep(_head_scores(lay), heads), _keep(_ffn_scores(lay), ffn)
            _shrink_layer(lay, kh.cpu(), kf.cpu())
            kept_h.append(len(kh))
            kept_f.append(len(kf))
        enc.pruned = {"heads": kept_h, "intermediate": kept_f}
    else:
        mask_weights(_linears(backbone), amount, scope)
    log: dict = {}
    try:
        if epochs:
            saved = out.epochs, out.learning_rate
            out.epochs = int(epochs)
            if learning_rate is not None:
                out.learning_rate = float(learning_rate)
            try:
                with seeded(random_state, out._device) as seed:
                    rng = np.random.default_rng(seed)
                    log = fine_tune(out, data, data.sequences(), rng, out._device, False, seed)
            finally:
                out.epochs, out.learning_rate = saved
    finally:
        if method == "magnitude":
            for m, name in _linears(backbone):
                if torch_prune.is_pruned(m):
                    torch_prune.remove(m, name)
    own_aligned_storage(enc).eval()
    out.compression_ = {"method": "prune", "prune": method, "amount": float(amount),
                        "heads": heads, "ffn": ffn, "scope": scope,
                        "parameters_before": int(before),
                        "parameters_after": int(sum(p.numel() for p in enc.parameters())),
                        "sparsity": sparsity(out)["linear"],
                        "fine_tune": {k: v for k, v in log.items() if k != "step_loss"}}
    return out
