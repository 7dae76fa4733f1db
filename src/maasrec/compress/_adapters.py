"""Where a compressed network sits in its model, and what of the model is saved beside it.

One adapter per model class whose network runs at scoring time:

* ``SequentialRecommender``: the transformer pass ``_last_hidden(seqs) -> [b, dim]``; the
  item table ``[n_items, dim]`` (computed once from the float weights) is kept as it is,
  in float32, by the compressed model (``item_table_``). Saved, the inner model holds no
  network (an empty ``network_`` module without weights: loading ``model/`` on its own
  fails on the missing weights file); loaded, its ``network_`` is the scoring network
  (int8) or a shell (ONNX) holding the item table.
* ``LMRanker``: the cross-encoder pass of :class:`~maasrec.lm_ranker._scoring.PairScorer`.
  Saved, ``model/lm/`` holds the config, tokenizer and head but no model weights
  (``maasrec_lm.json`` ``"external_weights"``); loaded, the language model is rebuilt from
  its config with its parameters on the ``meta`` device, no memory (:func:`load_shell`,
  refused outside a compressed model's load), and then given the int8 state, or left as
  the config holder of the ONNX session.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import threading
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import DataError, ModelFormatError

__all__ = ["adapter_for", "fingerprint", "has_meta", "load_shell", "shells_allowed"]

#: Set while a compressed model loads its inner model (``load_shell`` refuses otherwise).
_SHELLS = contextvars.ContextVar("maasrec_compress_shells", default=None)
#: One patch of ``nn.Module.register_parameter`` at a time (see ``_meta_parameters``).
_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def shells_allowed(what: str):
    """Within: language-model folders whose weights are held outside load as shells."""
    token = _SHELLS.set(what)
    try:
        yield
    finally:
        _SHELLS.reset(token)


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes), hex."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _zero_(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module.requires_grad_(False).eval()


@contextlib.contextmanager
def _meta_parameters():
    """Within, on this thread: every ``nn.Parameter`` a module registers moves to the
    ``meta`` device (shapes and dtypes, no memory); buffers stay real (a model's
    non-persistent buffers, e.g. BERT's ``position_ids``, are not in any saved state).
    Other threads building modules meanwhile are not affected."""
    original = nn.Module.register_parameter
    me = threading.get_ident()

    def register(module, name, param):
        if param is not None and threading.get_ident() == me and not param.is_meta:
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    with _PATCH_LOCK:
        nn.Module.register_parameter = register
        try:
            yield
        finally:
            nn.Module.register_parameter = original


def load_shell(folder, meta: dict[str, Any]):
    """The transformers model of a cross-encoder folder saved without its weights: built
    from its config (and pruned sizes) with its parameters on the ``meta`` device (no
    memory: the int8 state or the ONNX session supplies the weights; buffers are real).
    Called by ``lm_ranker.network.load_cross_encoder`` for ``"external_weights"``."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    held = meta.get("external_weights")
    if _SHELLS.get() is None:
        raise ModelFormatError(f"{str(folder)!r}: this language model's weights are held by "
                               f"the compressed model around it ({held!r}); load that "
                               f"model's directory")
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    kind = meta.get("kind")
    klass = AutoModelForSequenceClassification if kind == "sequence_classification" else AutoModel
    with _meta_parameters():
        model = klass.from_config(config, dtype=torch.float32)
        if meta.get("pruned") is not None:
            from ._prune_lm import apply_structure

            backbone = model.base_model if kind == "sequence_classification" else model
            apply_structure(backbone, meta["pruned"], str(folder))
    return model.requires_grad_(False).eval()


def has_meta(module: nn.Module) -> bool:
    """Whether a parameter or buffer of ``module`` is still on the ``meta`` device."""
    return any(t.is_meta for t in module.parameters()) or any(
        t.is_meta for t in module.buffers())


# -- SequentialRecommender ------------------------------------------------------------------
#: Parts of SASRecNetwork used only to compute the item table.
_TABLE_PARTS = ("text_proj", "side_emb")
_TABLE_BUFFERS = ("text_vectors", "side_indices", "side_offsets")


def _scoring_network(net: nn.Module, table: np.ndarray) -> nn.Module:
    """``net`` (in place) with its item table fixed to ``table``: the parts that compute the
    table dropped, ``item_emb`` the table (``item_table()`` returns it)."""
    for name in _TABLE_PARTS:
        if getattr(net, name, None) is not None:
            setattr(net, name, None)
    for name in _TABLE_BUFFERS:
        net._buffers.pop(name, None)
        net.__dict__.pop(name, None)
    if not table.flags.writeable:
        table = table.copy()
    net.item_emb = nn.Parameter(torch.from_numpy(table), requires_grad=False)
    return net.eval()


class _Empty(nn.Module):
    """Saved as the skeleton's ``network_``: a module with no state (no weights file)."""


class _SequentialAdapter:
    name = "SequentialRecommender"
    #: keys of the saved int8 state left out (the table, saved as ``item_table_``)
    not_saved = ("item_emb",)

    @staticmethod
    def module(inner) -> nn.Module:
        return inner.network_

    @staticmethod
    def skip() -> tuple[str, ...]:
        return ("text_proj",)  # used once, for the item table

    @staticmethod
    def attach(inner, runner) -> None:
        # an instance attribute shadows the method: only this (private) copy changes
        inner._last_hidden = runner

    @staticmethod
    def table(inner) -> np.ndarray | None:
        return inner._table_numpy()

    @staticmethod
    def int8_network(inner, qnet: nn.Module, table) -> nn.Module:
        return _scoring_network(qnet, table)

    @staticmethod
    def int8_runner(inner, qnet: nn.Module):
        max_len = int(inner.max_len)

        def run(seqs: list[np.ndarray]) -> torch.Tensor:
            seqs = [np.asarray(s, dtype=np.int64)[-max_len:] for s in seqs]
            return qnet.last_hidden(seqs, inner._table().cpu(), None)
        return run

    @staticmethod
    def skeleton(inner, held: str = "maasrec.compress"):
        out = copy.copy(inner)
        for name in ("_last_hidden", "_table_cache"):
            out.__dict__.pop(name, None)
        out.network_ = _Empty()
        return out

    @staticmethod
    def before_load(d: dict, where: str) -> None:
        attrs = d["meta"].get("attributes")
        if not isinstance(attrs, dict) or not isinstance(attrs.get("network_"), dict) or (
                attrs["network_"].get("type") != "module"):
            raise ModelFormatError(f"{where}: the inner model does not describe its network "
                                   f"as held outside it")
        del attrs["network_"]

    @staticmethod
    def shell(inner, table: np.ndarray | None, where: str) -> nn.Module:
        """A zero network of the inner model's shapes whose item table is ``table``."""
        from .._loadcheck import check_dense

        want = (int(inner.n_items_), int(inner.dim))
        check_dense(where, "item_table_", table, shape=want, kind="f")
        if table.dtype != np.float32:
            raise ModelFormatError(f"{where}: item_table_ is {table.dtype}, not float32")
        net = _zero_(inner._build_modules()["network_"])
        return _scoring_network(net, np.ascontiguousarray(table))

    @staticmethod
    def adopt(inner, net: nn.Module) -> None:
        inner.network_ = net
        inner._invalidate()


# -- LMRanker -------------------------------------------------------------------------------
class _ConfigOnly:
    """Stands for the transformers model in ``save_cross_encoder``: writes its config."""

    def __init__(self, model):
        self.config = model.config

    def save_pretrained(self, folder: str) -> None:
        self.config.save_pretrained(folder)


class _WeightlessEncoder:
    """Stands for a CrossEncoder in ``save_cross_encoder``: no model weights written."""

    def __init__(self, enc, held: str):
        self.model = _ConfigOnly(enc.model)
        self.kind, self.is_decoder = enc.kind, enc.is_decoder
        self.pruned = getattr(enc, "pruned", None)
        self.head = getattr(enc, "head", None)
        self.dropout = getattr(enc, "dropout", None)
        self.external_weights = held


class _LMRankerAdapter:
    name = "LMRanker"
    not_saved = ()

    @staticmethod
    def module(inner) -> nn.Module:
        inner._check_lm()
        return inner._lm

    @staticmethod
    def skip() -> tuple[str, ...]:
        return ("head",)  # one output: int8 saves nothing there

    @staticmethod
    def attach(inner, runner) -> None:
        from ..lm_ranker._scoring import PairScorer

        inner._pairs = PairScorer(runner, inner._tok, inner._builder, torch.device("cpu"))

    @staticmethod
    def table(inner) -> None:
        return None

    @staticmethod
    def int8_network(inner, qnet: nn.Module, table) -> nn.Module:
        return qnet

    @staticmethod
    def int8_runner(inner, qnet: nn.Module):
        return qnet

    @staticmethod
    def skeleton(inner, held: str = "maasrec.compress"):
        out = copy.copy(inner)
        out._lm = _WeightlessEncoder(inner._lm, held)
        return out

    @staticmethod
    def before_load(d: dict, where: str) -> None:
        """Nothing: ``lm/maasrec_lm.json`` says the weights are held outside."""

    @staticmethod
    def shell(inner, table, where: str) -> nn.Module:
        return inner._lm  # parameters on the meta device (load_shell)

    @staticmethod
    def adopt(inner, net: nn.Module) -> None:
        inner._lm = net


_ADAPTERS = {"SequentialRecommender": _SequentialAdapter, "LMRanker": _LMRankerAdapter}


def adapter_for(model: Any, what: str):
    """The adapter of a model class (by its maasrec base class), or a DataError."""
    klass = model if isinstance(model, type) else type(model)
    for k in klass.__mro__:
        if k.__name__ in _ADAPTERS and k.__module__.startswith("maasrec."):
            return _ADAPTERS[k.__name__]
    raise DataError(f"{what} applies to {sorted(_ADAPTERS)} (networks that run at scoring "
                    f"time), not {klass.__name__}: for ALS, BPRMF, PureSVD, EASE and "
                    f"HybridRecommender (whose towers run at fit time; it scores from stored "
                    f"vectors) use maasrec.compress.quantize(model, 'int8')")
