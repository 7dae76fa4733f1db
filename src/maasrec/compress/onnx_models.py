"""LMRanker and SequentialRecommender networks on ONNX Runtime.

``export_onnx(fitted_model)`` (:func:`export_model`) writes the network that runs at
scoring time as one ONNX graph with dynamic batch and sequence axes and returns an
:class:`OnnxRecommender`, a fitted model whose network pass runs in an ONNX Runtime
session; everything else (tokenization and pair building, candidates, histories, the item
table, ranking) is the original model's.

* ``LMRanker``: the cross-encoder; inputs ``input_ids``, ``attention_mask`` (and
  ``token_type_ids`` for BERT-family models), output ``logit`` ``[batch]``.
* ``SequentialRecommender``: the causal transformer; inputs ``items`` ``[batch,
  length]`` (int64) and ``item_table`` ``[n_items, dim]``, output ``hidden`` ``[batch,
  dim]`` (the state after the last item); scores are ``hidden @ item_table.T``.

The graph's JSON sidecar (as for :class:`~maasrec.compress.OnnxTextEncoder`) names the
model class, the SHA-256 fingerprint of the float weights it was exported from, the
inputs and outputs and the file's hash; it is checked before a session starts, so a graph
exported from another model, another version of the export or a changed file is refused.

Needs the ``onnx`` extra (onnx and onnxruntime).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import mmap
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..base import Recommender
from ..exceptions import DataError, ModelFormatError
from ._adapters import adapter_for, fingerprint
from ._proxy import NetworkProxy
from .onnx import DEFAULT_OPSET, FORMAT_NAME, FORMAT_VERSION, _onnxruntime, sidecar_path

__all__ = ["OnnxRecommender"]

logger = logging.getLogger(__name__)

_FILE = "network.onnx"
#: Positions (rows x length) per session run when scoring sequences.
_POSITIONS = 2**15


# -- graphs ---------------------------------------------------------------------------------
class _SeqGraph(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, items: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
        return self.net.hidden(items, item_table)[:, -1]


class _CrossGraph(nn.Module):
    def __init__(self, enc: nn.Module):
        super().__init__()
        self.enc = enc

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.enc(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids)


def _graph(adapter, inner) -> tuple[nn.Module, tuple, list[str], list[str], dict]:
    """The module to trace, example inputs, input/output names and dynamic axes."""
    if adapter.name == "SequentialRecommender":
        net = copy.deepcopy(inner.network_).cpu().eval()
        table = inner._table().detach().cpu().float()
        n = min(3, int(inner.max_len))
        items = torch.arange(2 * n, dtype=torch.int64).reshape(2, n) % max(1, table.shape[0])
        axes = {"items": {0: "batch", 1: "sequence"}, "item_table": {0: "items"},
                "hidden": {0: "batch"}}
        return _SeqGraph(net), (items, table), ["items", "item_table"], ["hidden"], axes
    inner._check_lm()
    enc = copy.deepcopy(inner._lm).cpu().eval()
    if enc.is_decoder:
        raise DataError("export_onnx supports BERT-style (encoder) LMRanker models; this "
                        "one is GPT-style (use maasrec.compress.quantize_network instead)")
    pairs = inner._pairs
    parts = inner._user_parts_known(np.arange(min(2, inner.n_users_)))
    seqs = [inner._builder.pair(parts[0], 0), inner._builder.pair(parts[-1], 1 % inner.n_items_)]
    if len(seqs[0][0]) == len(seqs[1][0]):  # trace with padding: keep the mask path
        seqs[1] = (seqs[1][0][:-1], seqs[1][1][:-1])
    batch = pairs.collate(seqs)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if pairs.types else [])
    args = tuple(batch[k].cpu() for k in names)
    axes = {k: {0: "batch", 1: "sequence"} for k in names}
    axes["logit"] = {0: "batch"}
    return _CrossGraph(enc), args, names, ["logit"], axes


def _export_bytes(adapter, inner, opset: int, optimize: bool = True
                  ) -> tuple[bytes, dict[str, Any]]:
    module, args, inputs, outputs, axes = _graph(adapter, inner)
    with tempfile.TemporaryDirectory(prefix="maasrec-onnx-") as tmp:
        path = Path(tmp) / _FILE
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs,
                              output_names=outputs, opset_version=int(opset),
                              dynamic_axes=axes)
            want = module(*args).float().numpy()
        data = path.read_bytes()
        fused = _fused_bert(path, inner, args, inputs, want) if (
            optimize and adapter.name == "LMRanker") else None
        data = data if fused is None else fused
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": adapter.name,
            "maasrec_version": __version__, "torch_version": torch.__version__,
            "opset": int(opset), "optimized": fused is not None,
            "fingerprint": fingerprint(adapter.module(inner)),
            "inputs": inputs, "outputs": outputs, "sha256": hashlib.sha256(data).hexdigest()}
    return data, meta


def _fused_bert(path: Path, inner, args, inputs: list[str], want: np.ndarray) -> bytes | None:
    """The graph with ONNX Runtime's BERT fusions (attention, skip-LayerNorm, GELU), kept
    only if it gives the torch outputs within 1e-5 on the trace batch; else None."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        cfg = inner._lm.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimize_model(str(path), model_type="bert",
                                 num_heads=int(getattr(cfg, "num_attention_heads", 0) or 0),
                                 hidden_size=int(getattr(cfg, "hidden_size", 0) or 0))
            out = path.with_name("fused.onnx")
            opt.save_model_to_file(str(out))
        data = out.read_bytes()
        got = _session(data, 1, "the fused graph").run(
            None, {k: a.numpy() for k, a in zip(inputs, args)})[0]
    except Exception as exc:  # the optimizer does not know every architecture
        logger.info("ONNX Runtime BERT fusions not applied: %s", exc)
        return None
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=1e-5):
        logger.info("ONNX Runtime BERT fusions not applied: outputs differ from torch by %.3g",
                    float(np.abs(got - want).max()) if got.shape == want.shape else np.inf)
        return None
    return data


def check_model_sidecar(side: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Types of the keys of a model export's sidecar (called by ``onnx._read_sidecar``)."""
    for key, kind in {"fingerprint": str, "inputs": list, "outputs": list,
                      "sha256": str}.items():
        if not isinstance(meta.get(key), kind):
            raise ModelFormatError(f"{str(side)!r}: {key} is {meta.get(key)!r}, not a "
                                   f"{kind.__name__}")
    return meta


# -- runners --------------------------------------------------------------------------------
def _map_file(file: Path) -> bytes | mmap.mmap:
    """A saved graph, mapped read-only: the model keeps it (to save it again, or to start
    a session with other threads) without holding its bytes in memory."""
    with open(file, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # an empty file, or a file system without mmap
            return f.read()


def _release(data) -> None:
    """Drop the pages of a mapped graph from this process's resident memory (they stay in
    the file, read again on the next use)."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if isinstance(data, mmap.mmap) and advice is not None and len(data):
        with contextlib.suppress(OSError, ValueError):
            data.madvise(advice)


def _session(data: bytes | mmap.mmap | Path, n_threads: int | None, where: str):
    """An onnxruntime CPU session of a graph. From a file, onnxruntime reads it itself and
    keeps nothing of it; given bytes it holds on to them for the session's life."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if n_threads is not None:
        options.intra_op_num_threads = int(n_threads)
        options.inter_op_num_threads = 1
    try:
        source = str(data) if isinstance(data, Path) else (
            data if isinstance(data, bytes) else bytes(data))
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise ModelFormatError(f"onnxruntime cannot read {where}: {exc}") from exc
    finally:
        if isinstance(data, mmap.mmap):
            _release(data)


class _OrtCrossEncoder(nn.Module):
    """The cross-encoder's place in :class:`~maasrec.lm_ranker._scoring.PairScorer`."""

    is_decoder = False

    def __init__(self, session, inputs: list[str], config):
        super().__init__()
        self.session, self.inputs, self.config = session, inputs, config

    def accepts_token_types(self) -> bool:
        return "token_type_ids" in self.inputs

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask,
                "token_type_ids": token_type_ids}
        out = self.session.run(None, {k: feed[k].cpu().numpy().astype(np.int64, copy=False)
                                      for k in self.inputs})[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _check_table_width(session, inner, where: str) -> None:
    """The graph's ``item_table`` input must be as wide as the model's item table."""
    shape = session.get_inputs()[1].shape
    dim = int(inner._table_numpy().shape[1])
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != dim):
        raise ModelFormatError(f"{where}: the graph takes item tables of shape {shape}, but "
                               f"the model's is {dim} wide")


def _sequence_runner(session, inner):
    """``_last_hidden(seqs)`` of a SequentialRecommender, on the session: sequences of
    one length run together, unpadded, as the torch network runs them."""
    max_len = int(inner.max_len)

    def run(seqs: list[np.ndarray]) -> torch.Tensor:
        table = inner._table().detach().cpu().float().numpy()
        seqs = [np.asarray(s, dtype=np.int64)[-max_len:] for s in seqs]
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        out = np.empty((len(seqs), table.shape[1]), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
            if not len(group):
                continue
            rows = max(1, _POSITIONS // max(1, int(lengths[group[0]])))
            for a in range(0, len(group), rows):
                g = group[a:a + rows]
                batch = np.stack([seqs[i] for i in g])
                out[g] = session.run(None, {"items": batch, "item_table": table})[0]
        return torch.from_numpy(out)
    return run


# -- the public entry point -----------------------------------------------------------------
def export_model(model: Recommender, path: str | os.PathLike | None = None, *,
                 opset: int = DEFAULT_OPSET, overwrite: bool = False,
                 n_threads: int | None = None, optimize: bool = True) -> OnnxRecommender:
    """Export the network of a fitted LMRanker or SequentialRecommender to ONNX.

    Called by :func:`maasrec.compress.export_onnx` for a recommender.

    Parameters
    ----------
    model : LMRanker or SequentialRecommender
        Fitted; not modified. An LMRanker must be BERT-style (an encoder).
    path : str or Path, optional
        Also write the graph there (and its sidecar to ``<path>.json``); the returned
        model holds the graph in memory and saves it in its own directory either way.
    opset : int, default 17
    overwrite : bool, default False
        Replace an existing ``path``.
    n_threads : int, optional
        ONNX Runtime intra-op threads (default: its own choice, all cores).
    optimize : bool, default True
        LMRanker: apply ONNX Runtime's BERT fusions (fused attention, skip-LayerNorm,
        GELU: ``onnxruntime.transformers.optimizer``), kept only if the fused graph gives
        the torch logits within 1e-5 on the trace batch (the sidecar's ``optimized``
        says whether they were).

    Returns
    -------
    OnnxRecommender

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    DataError
        A model this does not apply to (the message names what does), a GPT-style
        LMRanker, or an existing ``path`` without ``overwrite``.
    MaasrecError
        onnxruntime is not installed (the ``onnx`` extra).
    """
    out = OnnxRecommender(model=None, opset=opset, n_threads=n_threads, optimize=optimize)
    adapter = out._adopt_checked(model)
    if path is not None and Path(path).exists() and not overwrite:
        raise DataError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    _onnxruntime()
    data, meta = _export_bytes(adapter, model, opset, optimize)
    if path is not None:
        _write_export(Path(path), data, meta)
    out._attach(copy.copy(model), adapter, data, meta, "the exported graph",
                fingerprint(adapter.module(model)))
    out.fitted_at_ = getattr(model, "fitted_at_", None)
    return out


def _write_export(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        sidecar_path(tmp).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        os.replace(sidecar_path(tmp), sidecar_path(path))
    finally:
        for p in (tmp, sidecar_path(tmp)):
            if p.exists():
                p.unlink()


class OnnxRecommender(NetworkProxy):
    """A fitted LMRanker or SequentialRecommender whose network runs on ONNX Runtime.

    Made by :func:`maasrec.compress.export_onnx` from a fitted model, by
    :meth:`from_file` from a fitted model and a graph exported from it, or by ``fit``
    (fits a clone of ``model``, then exports it). Used, saved, loaded and served
    (``maasrec serve``) like any model; it runs on the CPU.

    Parameters
    ----------
    model : LMRanker or SequentialRecommender, optional
        The (unfitted) model to fit and export (``None`` for a loaded one).
    opset : int, default 17
    n_threads : int, optional
        ONNX Runtime intra-op threads (default: its own choice, all cores).
    optimize : bool, default True
        LMRanker: ONNX Runtime's BERT fusions, kept when exact (see ``export_onnx``).

    Attributes
    ----------
    model_ : Recommender
        The inner fitted model, scoring through the session.
    onnx_meta_ : dict
        The sidecar: model class, fingerprint of the float weights, inputs, outputs,
        SHA-256 of the graph, versions.
    float_fingerprint_ : str
        SHA-256 fingerprint of the float network the graph was exported from.
    item_table_ : np.ndarray of float32, shape (n_items, dim)
        SequentialRecommender only: the item table the graph scores against.

    Notes
    -----
    The directory holds the inner model without its network weights (``model/``), the
    graph (``network.onnx``: the weights live there), its sidecar (``network.onnx.json``)
    and, for a SequentialRecommender, the item table (``arrays.safetensors``). On load the
    graph is checked against its sidecar, and the sidecar's fingerprint against the one
    this model recorded when it was made: a graph exported from another model or another
    version of it is refused.
    """

    _what = "ONNX export"

    def __init__(self, model: Recommender | None = None, opset: int = DEFAULT_OPSET,
                 n_threads: int | None = None, optimize: bool = True):
        self.model = model
        self.opset = opset
        self.n_threads = n_threads
        self.optimize = optimize

    def _validate_params(self) -> None:
        from .._validation import check_int

        super()._validate_params()
        check_int("opset", self.opset, low=9)
        if self.n_threads is not None:
            check_int("n_threads", self.n_threads, low=1)

    def set_params(self, **params) -> OnnxRecommender:
        super().set_params(**params)
        if "n_threads" in params and self._inner_or_none() is not None:
            self._attach(self._inner, adapter_for(self._inner, self._what), self._onnx_bytes,
                         self.onnx_meta_, "the graph", self.float_fingerprint_)
        return self

    @classmethod
    def from_file(cls, model: Recommender, path: str | os.PathLike, *,
                  n_threads: int | None = None) -> OnnxRecommender:
        """An OnnxRecommender from a fitted model and a graph exported from it.

        Parameters
        ----------
        model : LMRanker or SequentialRecommender
            Fitted: the model the graph was exported from.
        path : str or Path
            A file written by ``export_onnx(model, path)``, its sidecar beside it.
        n_threads : int, optional

        Returns
        -------
        OnnxRecommender

        Raises
        ------
        ModelFormatError
            No or a malformed sidecar, a changed file, another export format or version,
            or a graph exported from another model class or other weights.
        """
        from .onnx import _read_sidecar

        out = cls(model=None, n_threads=n_threads)
        adapter = out._adopt_checked(model)
        path = Path(path)
        if not path.is_file():
            raise ModelFormatError(f"ONNX file {str(path)!r} does not exist")
        meta = _read_sidecar(path, kind=adapter.name)
        out.opset = int(meta.get("opset", DEFAULT_OPSET))
        out._attach(copy.copy(model), adapter, path.read_bytes(), meta, repr(str(path)),
                    fingerprint(adapter.module(model)))
        out.fitted_at_ = getattr(model, "fitted_at_", None)
        return out

    def _compress(self, inner: Recommender) -> None:
        adapter = adapter_for(inner, self._what)
        _onnxruntime()
        data, meta = _export_bytes(adapter, inner, int(self.opset), bool(self.optimize))
        self._attach(inner, adapter, data, meta, "the exported graph",
                     fingerprint(adapter.module(inner)))

    def _attach(self, inner, adapter, data: bytes | mmap.mmap, meta: dict[str, Any],
                where: str, weights: str, file: Path | None = None) -> None:
        """Check the graph ``data`` (``meta``: its sidecar) against ``weights`` (the
        fingerprint of the float network it must come from), start the session (from
        ``file``, the mapped file of ``data``, when given), attach."""
        if meta.get("kind") != adapter.name:
            raise ModelFormatError(f"{where} was exported from a {meta.get('kind')!r}, not a "
                                   f"{adapter.name}")
        digest = hashlib.sha256(data).hexdigest()
        _release(data)
        if digest != meta.get("sha256"):
            raise ModelFormatError(f"{where}: the graph's SHA-256 differs from its sidecar's "
                                   f"(changed after export, or another export)")
        if weights != meta.get("fingerprint"):
            raise ModelFormatError(f"{where} was exported from another {adapter.name} (other "
                                   f"weights): export this model again "
                                   f"(maasrec.compress.export_onnx)")
        session = _session(data if file is None else file, self.n_threads, where)
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if names != (meta.get("inputs"), meta.get("outputs")):
            raise ModelFormatError(f"{where} has inputs {names[0]} and outputs {names[1]}; "
                                   f"its sidecar says {meta.get('inputs')} and "
                                   f"{meta.get('outputs')}")
        if adapter.name == "LMRanker":
            runner = _OrtCrossEncoder(session, names[0], inner._lm.config)
        else:
            _check_table_width(session, inner, where)
            runner = _sequence_runner(session, inner)
        adapter.attach(inner, runner)
        self._onnx_bytes = data
        self.onnx_meta_ = dict(meta)
        self.float_fingerprint_ = weights
        table = adapter.table(inner)
        if table is not None:
            self.item_table_ = table
        self._inner = inner
        self._pop_cache = None

    @property
    def onnx_bytes_(self) -> int:
        """int: size of the graph file."""
        self._check_fitted()
        return len(self._onnx_bytes)

    def _save_runtime(self, tmp) -> None:
        Path(tmp, _FILE).write_bytes(self._onnx_bytes)
        _release(self._onnx_bytes)
        sidecar_path(Path(tmp, _FILE)).write_text(json.dumps(self.onnx_meta_, indent=1) + "\n",
                                                  encoding="utf-8")

    def _load_extra_files(self, path) -> None:
        from .onnx import _read_sidecar

        inner, adapter, where = self._load_inner(path)
        file = Path(path, _FILE)
        if not file.is_file():
            raise ModelFormatError(f"{where}: {_FILE} is missing")
        meta = _read_sidecar(file, kind=adapter.name)
        self._check_fingerprint(repr(str(file)), meta.get("fingerprint"), "the graph")
        adapter.adopt(inner, adapter.shell(inner, getattr(self, "item_table_", None), where))
        self._attach(inner, adapter, _map_file(file), meta, repr(str(file)),
                     self.float_fingerprint_, file=file)
        super()._load_extra_files(path)
