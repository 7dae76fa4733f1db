"""int8 Linear layers for the networks that run at scoring time: LMRanker, SequentialRecommender.

:func:`quantize_network` turns a fitted ``LMRanker`` (its cross-encoder) or
``SequentialRecommender`` (its transformer blocks) into an :class:`Int8Recommender`: every
``torch.nn.Linear`` layer of that network computes in int8 (per-channel weights,
per-token activations: :class:`~maasrec.compress.Int8Linear`) on the CPU; the rest of the
model (tokenization, candidates, the item table, ranking) is unchanged. Saved with its
codes and scales (``int8.safetensors``) and their description (``maasrec.json``), loaded
exactly, served by ``maasrec serve`` like any model.

``HybridRecommender``'s towers run at fit time only (it scores from stored user and item
vectors): :func:`~maasrec.compress.quantize` with ``tables="int8"`` is its compression.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import Recommender
from ..exceptions import DataError, ModelFormatError
from ._adapters import adapter_for, fingerprint, has_meta
from ._proxy import NetworkProxy
from .linear import Int8Linear, quantize_linear_layers
from .tables import dequantize_table, quantize_table

__all__ = ["Int8Recommender", "quantize_network"]

_FILE = "int8.safetensors"
#: Embedding tables with this many rows or more are stored as int8 codes + row scales.
_EMB_ROWS = 1024
_CODES, _SCALES = ".int8_codes", ".int8_scales"
_FORMAT = "maasrec-int8-network"
#: 2: the whole network state (1 held the int8 layers only, beside the float model)
_VERSION = "2"


def quantize_network(model: Recommender) -> Int8Recommender:
    """int8 Linear layers for a fitted LMRanker or SequentialRecommender (CPU inference).

    Parameters
    ----------
    model : LMRanker or SequentialRecommender
        Fitted; not modified (the result holds a shallow copy of it whose network pass
        runs a quantized copy of the network).

    Returns
    -------
    Int8Recommender
        Fitted: ``recommend``, ``score``, ``evaluate``, ``save``/``load`` and ``maasrec
        serve`` work as for the original model.

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    DataError
        A model whose network does not run at scoring time (the message names the
        method that applies), or an already compressed model.

    Examples
    --------
    >>> q = quantize_network(fitted_ranker)        # doctest: +SKIP
    >>> q.save("ranker-int8")                      # doctest: +SKIP
    """
    out = Int8Recommender(model=None)
    adapter = out._adopt_checked(model)
    import copy

    inner = copy.copy(model)
    out._compress(inner, adapter)
    out.fitted_at_ = getattr(model, "fitted_at_", None)
    return out


class Int8Recommender(NetworkProxy):
    """A fitted LMRanker or SequentialRecommender whose network runs int8 Linear layers.

    Usually made by :func:`quantize_network`; ``fit`` fits a clone of ``model`` and
    quantizes it.

    Parameters
    ----------
    model : LMRanker or SequentialRecommender, optional
        The (unfitted) model to fit and quantize (``None`` for a loaded one).

    Attributes
    ----------
    model_ : Recommender
        The inner fitted model, scoring through the int8 network.
    int8_layers_ : list of str
        Qualified names of the quantized Linear layers.
    float_fingerprint_ : str
        SHA-256 of the float network the codes were made from; ``int8.safetensors``
        carries it too, and must match on load.
    int8_embeddings_ : list of str
        Embedding tables of 1024 rows or more (an LMRanker's word embeddings) stored as
        int8 codes with one float32 scale per row (scored with their dequantized values).
    item_table_ : np.ndarray of float32, shape (n_items, dim)
        SequentialRecommender only: the item table (computed once from the float
        weights; scores are ``hidden @ item_table_.T``).

    Notes
    -----
    The directory holds the inner model without its network weights (``model/``:
    vocabularies, ``seen_``, histories, first stage, tokenizer) and the quantized network
    (``int8.safetensors``: the int8 codes and scales of the Linear layers and of the large
    embedding tables, and the layers left float; a SequentialRecommender's item table in
    ``arrays.safetensors``), so it is
    smaller on disk than the float model, not beside it. Runs on the CPU.
    """

    _what = "int8 network quantization"

    def _compress(self, inner: Recommender, adapter=None) -> None:
        adapter = adapter or adapter_for(inner, self._what)
        float_net = adapter.module(inner)
        table = adapter.table(inner)
        qnet, _ = quantize_linear_layers(float_net, skip=adapter.skip())
        qnet = adapter.int8_network(inner, qnet, table)
        self._emb_codes = _round_embeddings(qnet)
        self.int8_embeddings_ = sorted(self._emb_codes)
        self.float_fingerprint_ = fingerprint(float_net)
        self.float_bytes_ = _size(float_net)
        if table is not None:
            self.item_table_ = table
        self._attach(inner, adapter, qnet)

    def _attach(self, inner, adapter, qnet) -> None:
        layers = sorted(n for n, m in qnet.named_modules() if isinstance(m, Int8Linear))
        if not layers:
            raise DataError(f"the {adapter.name}'s network has no Linear layer to quantize")
        adapter.attach(inner, adapter.int8_runner(inner, qnet))
        self._qnet = qnet
        self.int8_layers_ = layers
        self._inner = inner
        self._pop_cache = None

    @property
    def network_bytes_(self) -> dict[str, int]:
        """dict: ``{"float32": bytes of the float network, "int8": bytes of the quantized
        network (codes, scales, biases, and the layers left float)}``."""
        self._check_fitted()
        return {"float32": int(self.float_bytes_),
                "int8": sum(t.numel() * t.element_size() for t in self._int8_state().values())}

    def _int8_state(self) -> dict[str, torch.Tensor]:
        skip = set(adapter_for(self.model_, self._what).not_saved) | set(self._emb_codes)
        state = {k: t.detach().cpu().contiguous() for k, t in self._qnet.state_dict().items()
                 if k not in skip}
        for key, enc in self._emb_codes.items():
            state[f"{key}{_CODES}"] = torch.from_numpy(enc["codes"])
            state[f"{key}{_SCALES}"] = torch.from_numpy(enc["scales"])
        return state

    def _save_runtime(self, tmp) -> None:
        from safetensors.torch import save_file

        save_file(self._int8_state(), os.path.join(tmp, _FILE),
                  metadata={"format": _FORMAT, "version": _VERSION,
                            "fingerprint": str(self.float_fingerprint_)})

    def _load_extra_files(self, path) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        inner, adapter, where = self._load_inner(path)
        file = os.path.join(path, _FILE)
        try:
            with safe_open(file, "pt") as f:
                info = f.metadata() or {}
            state = load_file(file)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"{where}: cannot read {_FILE}: {exc}") from exc
        if info.get("format") != _FORMAT or info.get("version") != _VERSION:
            raise ModelFormatError(f"{where}: {_FILE} is format {info.get('format')!r} version "
                                   f"{info.get('version')!r}, not {_FORMAT!r} {_VERSION!r}: "
                                   f"quantize the float model again")
        self._check_fingerprint(where, info.get("fingerprint"), f"{_FILE}")
        shell = adapter.shell(inner, getattr(self, "item_table_", None), where)
        qnet = _int8_skeleton(shell, adapter.skip())
        layers = sorted(n for n, m in qnet.named_modules() if isinstance(m, Int8Linear))
        if layers != getattr(self, "int8_layers_", None):
            raise ModelFormatError(f"{where}: int8_layers_ does not name the Linear layers "
                                   f"of the inner {adapter.name}")
        expected = {k: t for k, t in qnet.state_dict().items() if k not in adapter.not_saved}
        emb = _read_embeddings(where, qnet, state, getattr(self, "int8_embeddings_", None))
        state.update({k: torch.from_numpy(dequantize_table("int8", e["codes"], e["scales"]))
                      for k, e in emb.items()})
        if set(state) != set(expected):
            raise ModelFormatError(f"{where}: {_FILE} holds "
                                   f"{sorted(set(state) ^ set(expected))[:4]}... unlike the "
                                   f"quantized network")
        for key, t in state.items():
            ref = expected[key]
            if t.dtype != ref.dtype or t.shape != ref.shape:
                raise ModelFormatError(f"{where}: {_FILE}[{key!r}] is {t.dtype} "
                                       f"{tuple(t.shape)}, expected {ref.dtype} "
                                       f"{tuple(ref.shape)}")
            if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                raise ModelFormatError(f"{where}: {_FILE}[{key!r}] holds non-finite values")
        _load_state(qnet, state, where)
        adapter.adopt(inner, qnet)
        self._emb_codes = emb
        self._attach(inner, adapter, qnet)
        super()._load_extra_files(path)


def _int8_skeleton(shell: nn.Module, skip: tuple[str, ...]) -> nn.Module:
    """The quantized network's modules, ready for the saved state: a shell whose parameters
    are on the ``meta`` device (a language model, :func:`~._adapters.load_shell`) gets
    ``meta`` :class:`Int8Linear` layers too, so that nothing float-sized is allocated
    before the state arrives; a real shell (a small SequentialRecommender network) is
    quantized as at compression."""
    if not has_meta(shell):
        return quantize_linear_layers(shell, skip=skip)[0]
    out = copy.deepcopy(shell).eval()  # meta parameters: nothing to copy
    _swap_meta(out, skip)
    return out.requires_grad_(False)


def _swap_meta(module: nn.Module, skip: tuple[str, ...], prefix: str = "") -> None:
    for name, child in list(module.named_children()):
        full = f"{prefix}{name}"
        if isinstance(child, nn.Linear) and not any(s in full for s in skip):
            out_f, in_f = child.weight.shape
            meta = torch.device("meta")
            setattr(module, name, Int8Linear(
                torch.empty((out_f, in_f), dtype=torch.int8, device=meta),
                torch.empty(out_f, device=meta),
                None if child.bias is None else torch.empty(out_f, device=meta)))
        else:
            _swap_meta(child, skip, f"{full}.")


def _load_state(qnet: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load the checked ``state`` into ``qnet``: tensors whose place is on the ``meta``
    device are adopted (a fresh torch-owned copy each, see
    :func:`maasrec.lm_ranker.network.own_aligned_storage`), the others copied in."""
    current = qnet.state_dict(keep_vars=True)
    adopt = {k for k in state if current[k].is_meta}
    qnet.load_state_dict({k: t for k, t in state.items() if k not in adopt}, strict=False)
    for k in adopt:  # one tensor at a time: the read copy is freed as its clone is made
        state[k] = state[k].clone(memory_format=torch.contiguous_format)
    qnet.load_state_dict({k: state[k] for k in adopt}, strict=False, assign=True)
    qnet.requires_grad_(False)
    if has_meta(qnet):
        left = [n for n, t in (*qnet.named_parameters(), *qnet.named_buffers()) if t.is_meta]
        raise ModelFormatError(f"{where}: {_FILE} does not hold {left[:4]} of the network")


def _round_embeddings(qnet: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """int8 per-row codes of the large embedding tables (``_EMB_ROWS`` rows or more, e.g. a
    language model's word embeddings): saved as codes and scales, and used dequantized (in
    place here), so that a loaded model computes exactly what this one does."""
    out = {}
    for key, m in _large_embeddings(qnet):
        enc = quantize_table(m.weight.detach().cpu().numpy(), "int8")
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(dequantize_table("int8", enc["codes"],
                                                             enc["scales"])))
        out[key] = enc
    return out


def _read_embeddings(where: str, qnet: nn.Module, state: dict, names: Any
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Pop the codes and scales of ``names`` (``int8_embeddings_``) out of ``state``,
    checked against the embedding tables of ``qnet``."""
    want = sorted(key for key, _ in _large_embeddings(qnet))
    if names != want:
        raise ModelFormatError(f"{where}: int8_embeddings_ {names!r} does not name the large "
                               f"embedding tables of the network ({want})")
    shapes = {k: tuple(t.shape) for k, t in qnet.state_dict().items()}
    out = {}
    for key in want:
        codes, scales = state.pop(f"{key}{_CODES}", None), state.pop(f"{key}{_SCALES}", None)
        rows, dim = shapes[key]
        if codes is None or codes.dtype != torch.int8 or tuple(codes.shape) != (rows, dim):
            raise ModelFormatError(f"{where}: {_FILE} lacks the int8 codes [{rows}, {dim}] "
                                   f"of {key!r}")
        if (scales is None or scales.dtype != torch.float32 or tuple(scales.shape) != (rows,)
                or not bool(torch.isfinite(scales).all()) or bool((scales < 0).any())):
            raise ModelFormatError(f"{where}: {_FILE} lacks the finite non-negative float32 "
                                   f"scales [{rows}] of {key!r}")
        out[key] = {"codes": codes.numpy(), "scales": scales.numpy()}
    return out


def _large_embeddings(qnet: nn.Module) -> list[tuple[str, nn.Embedding]]:
    return [(f"{n}.weight" if n else "weight", m) for n, m in qnet.named_modules()
            if isinstance(m, nn.Embedding) and m.num_embeddings >= _EMB_ROWS]


def _size(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())
