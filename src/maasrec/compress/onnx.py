"""TextEncoder on ONNX Runtime: export once with torch, encode without the torch model.

:func:`export_onnx` writes the language model, its pooling and the L2 normalisation as
one ONNX graph (inputs ``input_ids`` and ``attention_mask``, dynamic batch and sequence
axes; output ``embedding``) plus a JSON sidecar (``<file>.json``) naming the model, its
weights' fingerprint, the encoder settings, the maasrec version, the graph's input and
output names and the file's SHA-256. :class:`OnnxTextEncoder` is a
:class:`~maasrec.encoders.TextEncoder` that tokenizes as the original does and runs the
graph with ONNX Runtime; it checks the sidecar first, so a file exported from another
model, other settings or an unknown export format is refused with a clear error.

Needs the ``onnx`` extra (``pip install "maasrec[onnx]"``: onnx and onnxruntime).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..encoders.hub import ModelSource, resolve_model
from ..encoders.text import _DEFAULT_MODEL, TextEncoder, _Unregistered, pool_hidden_states
from ..exceptions import DataError, MaasrecError, ModelFormatError

__all__ = ["OnnxTextEncoder", "export_onnx"]

FORMAT_NAME = "maasrec-onnx"
#: Version of the exported graph's contract (inputs, outputs, pooling inside the graph).
FORMAT_VERSION = 1
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("embedding",)
DEFAULT_OPSET = 17


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MaasrecError("OnnxTextEncoder needs onnxruntime: pip install "
                           "\"maasrec[onnx]\"") from None
    return onnxruntime


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON description written next to an exported file (``<file>.json``)."""
    return Path(str(path) + ".json")


class _Pooled(nn.Module):
    """Backbone + pooling + normalisation, as one traceable module."""

    def __init__(self, backbone: nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.backbone, self.pooling, self.normalize = backbone, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        pooled = pool_hidden_states(hidden.float(), attention_mask, self.pooling)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


def _describe(encoder: TextEncoder) -> dict[str, Any]:
    key = TextEncoder.cache_key(encoder)
    return {"model": key["model"], "fingerprint": key["fingerprint"],
            "pooling": key["pooling"], "max_length": key["max_length"],
            "normalize": key["normalize"]}


def export_onnx(encoder, path: str | os.PathLike | None = None, *, opset: int = DEFAULT_OPSET,
                overwrite: bool = False, n_threads: int | None = None):
    """Export a frozen BERT-style TextEncoder, or a fitted model's network, to ONNX.

    Parameters
    ----------
    encoder : TextEncoder, LMRanker or SequentialRecommender
        A TextEncoder: frozen (``trainable=False``), without a projection head, named by
        a model name or path (an in-memory pair cannot be found again by the ONNX
        encoder). A fitted ``LMRanker`` (BERT-style; its cross-encoder is exported) or
        ``SequentialRecommender`` (its transformer): see :class:`OnnxRecommender`.
    path : str or Path
        The ``.onnx`` file to write; the sidecar goes to ``<path>.json``. Required for a
        TextEncoder; optional for a model (which keeps the graph and saves it in its own
        directory).
    opset : int, default 17
        ONNX opset.
    overwrite : bool, default False
        Replace an existing file.
    n_threads : int, optional
        ONNX Runtime intra-op threads of the returned model (models only; an
        OnnxTextEncoder takes ``n_threads`` through ``set_params``).

    Returns
    -------
    OnnxTextEncoder or OnnxRecommender
        Reading ``path``, with the encoder's settings; or the fitted model running its
        network on ONNX Runtime.

    Raises
    ------
    DataError
        An encoder that cannot be exported (trainable, projection head, in-memory model,
        GPT-style), a model it does not apply to, or an existing file without
        ``overwrite``.
    NotFittedError
        An unfitted model.
    """
    from ..base import Recommender
    from .encoders import QuantizedTextEncoder

    if isinstance(encoder, Recommender):
        from .onnx_models import export_model

        return export_model(encoder, path, opset=opset, overwrite=overwrite,
                            n_threads=n_threads)
    if path is None:
        raise DataError("export_onnx of a TextEncoder needs path=, the .onnx file to write")

    if not isinstance(encoder, TextEncoder) or isinstance(encoder, (OnnxTextEncoder,
                                                                    QuantizedTextEncoder)):
        raise DataError(f"export_onnx takes a float TextEncoder or a fitted LMRanker or "
                        f"SequentialRecommender, got {type(encoder).__name__}")
    if encoder.trainable or encoder.projection_dim is not None:
        raise DataError("export_onnx exports frozen encoders without a projection head "
                        f"(got trainable={encoder.trainable!r}, "
                        f"projection_dim={encoder.projection_dim!r})")
    if isinstance(encoder.model, (tuple, list)):
        raise DataError("export_onnx needs an encoder named by a model name or path (the "
                        "ONNX encoder loads the tokenizer by that name), not an in-memory "
                        "(model, tokenizer) pair")
    if encoder.is_decoder:
        raise DataError(f"export_onnx supports BERT-style (encoder) models; {encoder.model!r} "
                        f"is GPT-style")
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    encoder.load_model()
    desc = _describe(encoder)
    module = _Pooled(encoder.backbone, encoder.resolved_pooling, bool(encoder.normalize)).eval()
    module = module.cpu()
    tok = encoder.tokenizer
    # trace with padding, so that the graph keeps the attention-mask path
    enc = tok(["an example text to trace", "short"], padding=True, return_tensors="pt")
    args = (enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, args, str(tmp), dynamo=False, input_names=list(INPUTS),
                output_names=list(OUTPUTS), opset_version=int(opset),
                dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                              "attention_mask": {0: "batch", 1: "sequence"},
                              "embedding": {0: "batch"}})
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "kind": "TextEncoder", "maasrec_version": __version__,
                "torch_version": torch.__version__, "opset": int(opset), **desc,
                "hidden_size": int(encoder.hidden_size), "inputs": list(INPUTS),
                "outputs": list(OUTPUTS), "sha256": _sha256(tmp)}
        side_tmp = sidecar_path(tmp)
        side_tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        os.replace(side_tmp, sidecar_path(path))
    finally:
        for p in (tmp, sidecar_path(tmp)):
            if p.exists():
                p.unlink()
    return OnnxTextEncoder(str(path), model=encoder.model, pooling=encoder.pooling,
                           max_length=encoder.max_length, batch_size=encoder.batch_size,
                           normalize=encoder.normalize, cache_dir=encoder.cache_dir,
                           revision=encoder.revision,
                           local_files_only=encoder.local_files_only)


class _Session(nn.Module):
    """An ONNX Runtime session in the place of the torch language model."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.session.run(list(OUTPUTS), {
            "input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False)})[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


class OnnxTextEncoder(TextEncoder):
    """A frozen BERT-style :class:`~maasrec.encoders.TextEncoder` run by ONNX Runtime.

    Made by :func:`export_onnx`, or built on a file it wrote. The tokenizer is loaded from
    ``model`` (the torch weights are not); the graph computes the pooled, normalised
    vectors. Use it wherever a TextEncoder is used; it is saved by its parameters (the
    file must then be found at ``path`` again).

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file; its sidecar ``<path>.json`` must be beside it. Give a ``str``
        for an encoder that is saved inside a model (parameters are saved as JSON).
    model, pooling, max_length, normalize, revision, local_files_only
        As for :class:`~maasrec.encoders.TextEncoder`: they must be those the file was
        exported with (checked against the sidecar).
    batch_size, cache_dir
        As for :class:`~maasrec.encoders.TextEncoder`.
    n_threads : int, optional
        ONNX Runtime intra-op threads (default: its own choice, all cores).

    Raises
    ------
    ModelFormatError
        (on first use) A missing or malformed sidecar, a file whose SHA-256 differs from
        the sidecar's (changed after export), an unknown export format, or a file
        exported from another model, other weights or other settings.
    MaasrecError
        onnxruntime is not installed (the ``onnx`` extra).
    """

    def __init__(self, path: str | os.PathLike, model: Any = _DEFAULT_MODEL,
                 pooling: str = "auto", max_length: int = 128, batch_size: int = 64,
                 normalize: bool = True, cache_dir: str | os.PathLike | bool | None = None,
                 revision: str | None = None, local_files_only: bool | None = None,
                 n_threads: int | None = None):
        self.path = path
        self.n_threads = n_threads
        super().__init__(model=model, pooling=pooling, max_length=max_length,
                         batch_size=batch_size, normalize=normalize, cache_dir=cache_dir,
                         revision=revision, local_files_only=local_files_only, amp=False)

    @classmethod
    def from_export(cls, path: str | os.PathLike, **kwargs) -> OnnxTextEncoder:
        """Build the encoder with the settings recorded in the sidecar of ``path``.

        Parameters
        ----------
        path : str or Path
        **kwargs
            ``batch_size``, ``cache_dir``, ``n_threads``, ``local_files_only``...

        Returns
        -------
        OnnxTextEncoder
        """
        meta = _read_sidecar(Path(path))
        return cls(path, model=meta["model"], pooling=meta["pooling"],
                   max_length=meta["max_length"], normalize=meta["normalize"], **kwargs)

    def _validate(self) -> None:
        super()._validate()
        if not isinstance(self.path, (str, os.PathLike)):
            raise DataError(f"path must be the path of an .onnx file, got {self.path!r}")
        if self.n_threads is not None:
            from .._validation import check_int

            check_int("n_threads", self.n_threads, low=1)
        if isinstance(self.model, (tuple, list)):
            raise DataError("OnnxTextEncoder loads its tokenizer by model name or path, not "
                            "from an in-memory (model, tokenizer) pair")

    def _compute_device(self) -> torch.device:
        return torch.device("cpu")

    def _load_weights(self, source: ModelSource | None = None) -> None:
        if self.is_loaded:
            return
        self._validate()
        meta = self._check_export()
        ort = _onnxruntime()
        from transformers import AutoTokenizer

        source = source or resolve_model(self.model)
        kwargs = {} if source.local else {"revision": self.revision}
        if self.local_files_only is not None:
            kwargs["local_files_only"] = self.local_files_only
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        options = ort.SessionOptions()
        if self.n_threads is not None:
            options.intra_op_num_threads = int(self.n_threads)
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.path), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types
            raise ModelFormatError(f"onnxruntime cannot read {str(self.path)!r}: {exc}") from exc
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if names != (meta["inputs"], meta["outputs"]):
            raise ModelFormatError(f"{str(self.path)!r} has inputs {names[0]} and outputs "
                                   f"{names[1]}; its sidecar says {meta['inputs']} and "
                                   f"{meta['outputs']}")
        self._tokenizer = tokenizer
        self._frozen = _Unregistered(_Session(session))
        self._forward_kwargs = set(INPUTS)
        self._export = meta

    def _check_export(self) -> dict[str, Any]:
        """The sidecar, checked against the file and this encoder's settings."""
        path = Path(self.path)
        if not path.is_file():
            raise ModelFormatError(f"ONNX file {str(path)!r} does not exist")
        meta = _read_sidecar(path)
        if not resolve_model(self.model).local:
            raise DataError(f"OnnxTextEncoder reads its tokenizer and config from a local model "
                            f"folder or a packaged model; {self.model!r} is neither")
        digest = _sha256(path)
        if digest != meta["sha256"]:
            raise ModelFormatError(f"{str(path)!r} has SHA-256 {digest[:12]}..., its sidecar "
                                   f"says {meta['sha256'][:12]}...: the file was changed after "
                                   f"export or belongs to another export")
        mine = _describe(self)
        for key in ("model", "pooling", "max_length", "normalize", "fingerprint"):
            if meta[key] != mine[key]:
                what = "other weights" if key == "fingerprint" else f"{key}={meta[key]!r}"
                raise ModelFormatError(
                    f"{str(path)!r} was exported from {meta['model']!r} with {what}; this "
                    f"encoder has model={mine['model']!r}, {key}={mine[key]!r}: export "
                    f"this encoder again (maasrec.compress.export_onnx)")
        if meta["hidden_size"] != self._ensure_meta()["hidden_size"]:
            raise ModelFormatError(f"{str(path)!r} outputs {meta['hidden_size']}-d vectors; the "
                                   f"model has {self._meta['hidden_size']}")
        return meta

    def cache_key(self) -> dict[str, Any]:
        """The TextEncoder key, in a namespace of its own (keyed by the file's hash).

        Returns
        -------
        dict
        """
        key = TextEncoder.cache_key(self)
        key["encoder"] = "maasrec.OnnxTextEncoder/1"
        key["onnx_sha256"] = _read_sidecar(Path(self.path))["sha256"]
        return key

    def _forward_batch(self, seqs: list[list[int]], device: torch.device) -> torch.Tensor:
        ids, mask, _ = self._pad(seqs, torch.device("cpu"))
        return self._frozen.module(ids, mask)


def _read_sidecar(path: Path, kind: str = "TextEncoder") -> dict[str, Any]:
    """The checked sidecar of an export of ``kind`` (a TextEncoder or a model class)."""
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelFormatError(f"{str(path)!r} has no sidecar {side.name!r}: only files "
                               f"written by maasrec.compress.export_onnx can be run")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{str(side)!r} is not readable JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{str(side)!r} does not describe a maasrec ONNX export")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{str(side)!r} describes export format {version!r} (maasrec "
            f"{meta.get('maasrec_version')}); this maasrec ({__version__}) runs format "
            f"{FORMAT_VERSION}: export the encoder again with this version")
    if meta.get("kind") != kind:
        raise ModelFormatError(f"{str(side)!r} describes a {meta.get('kind')!r} export, not "
                               f"a {kind}")
    if kind != "TextEncoder":
        from .onnx_models import check_model_sidecar

        return check_model_sidecar(side, meta)
    want = {"model": str, "fingerprint": str, "pooling": str, "max_length": int,
            "normalize": bool, "hidden_size": int, "inputs": list, "outputs": list,
            "sha256": str}
    for key, kind in want.items():
        if not isinstance(meta.get(key), kind) or (kind is int and isinstance(meta[key], bool)):
            raise ModelFormatError(f"{str(side)!r}: {key} is {meta.get(key)!r}, not a "
                                   f"{kind.__name__}")
    return meta
