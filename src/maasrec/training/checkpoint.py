"""Atomic training checkpoints: safetensors for tensors, JSON for the rest (no pickle).

A checkpoint is the directory ``CHECKPOINT_DIR/last/``:

- ``tensors.safetensors``: every tensor of the state (module weights, optimiser moments,
  RNG states, the best weights so far), flat, under a path-like key;
- ``state.json``: the structure around them (counters, history, hyper-parameters of
  the optimiser and schedule, the fingerprint of the run), a tensor appearing as
  ``{"__tensor__": key}``;
- ``maasrec.json``: the manifest (size and SHA-256 of both files), checked on load, so
  a truncated or altered file is refused instead of resumed from.

It is written with :class:`maasrec.persistence.atomic_directory` (a temporary sibling,
fsynced, swapped into place): a process killed at any instant leaves the previous
complete checkpoint or the new one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import DataError, ModelFormatError

__all__ = ["CHECKPOINT_FORMAT", "checkpoint_fingerprint", "decode", "encode",
           "has_checkpoint", "read_checkpoint", "write_checkpoint"]

#: ``format`` field of a checkpoint's ``state.json``.
CHECKPOINT_FORMAT = "maasrec-training-checkpoint"
CHECKPOINT_VERSION = 1
_SUBDIR = "last"
_TENSORS = "tensors.safetensors"
_STATE = "state.json"
_MANIFEST = "maasrec.json"


def encode(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-compatible copy of ``obj`` whose tensors are moved into ``tensors``.

    Parameters
    ----------
    obj : nested dicts, lists, tuples, tensors, numbers, strings, None
        E.g. ``optimizer.state_dict()``.
    prefix : str
        Key prefix of the tensors (``prefix/path/to/tensor``).
    tensors : dict
        Receives CPU, contiguous, non-shared copies of the tensors.

    Returns
    -------
    Any
        Tuples become ``{"__tuple__": [...]}``, dicts with non-string keys
        ``{"__items__": [[key, value], ...]}``, non-finite floats ``{"__float__": "nan"}``.

    Raises
    ------
    DataError
        For a value that is none of the above (it would need pickle).
    """
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        return {"__tensor__": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[encode(k, f"{prefix}/k{i}", tensors),
                               encode(v, f"{prefix}/{i}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    raise DataError(f"cannot checkpoint a value of type {type(obj).__name__} at {prefix!r}: "
                    "only tensors, numbers, strings, None, lists, tuples and dicts are saved "
                    "(no pickle)")


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode`.

    Parameters
    ----------
    obj : Any
        What :func:`encode` returned (after a JSON round trip).
    tensors : dict
        The tensors it refers to.

    Returns
    -------
    Any

    Raises
    ------
    ModelFormatError
        A tensor reference missing from ``tensors``.
    """
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if key not in tensors:
                raise ModelFormatError(f"checkpoint: tensor {key!r} is missing from {_TENSORS}")
            return tensors[key]
        if "__tuple__" in obj:
            return tuple(decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {decode(k, tensors): decode(v, tensors) for k, v in obj["__items__"]}
        if "__float__" in obj:
            return float(obj["__float__"])
        return {k: decode(v, tensors) for k, v in obj.items()}
    return obj


def _plain(value: Any) -> Any:
    """A JSON-stable description of a model parameter value (for fingerprints)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    get = getattr(value, "get_params", None)
    if callable(get):
        try:
            return {"class": type(value).__qualname__,
                    "params": _plain(get(deep=False))}
        except TypeError:
            pass
    return {"class": f"{type(value).__module__}.{type(value).__qualname__}"}


def checkpoint_fingerprint(model: Any, data: Any = None, **extra: Any) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed by ``model``: class, parameters, data.

    Parameters
    ----------
    model : Component
        Its class and ``get_params(deep=False)`` are recorded (``verbose`` left out:
        it changes nothing trained).
    data : Interactions, optional
        Its shape (users, items, interactions) is recorded.
    **extra
        More JSON-compatible facts (e.g. steps per epoch).

    Returns
    -------
    dict
    """
    params = {}
    get = getattr(model, "get_params", None)
    if callable(get):
        params = {k: v for k, v in get(deep=False).items() if k != "verbose"}
    out: dict[str, Any] = {"model": f"{type(model).__module__}.{type(model).__qualname__}",
                           "params": _plain(params)}
    if data is not None:
        out["data"] = {"n_users": int(data.n_users), "n_items": int(data.n_items),
                       "nnz": int(data.nnz)}
    out.update({k: _plain(v) for k, v in extra.items()})
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def has_checkpoint(checkpoint_dir: str | os.PathLike) -> bool:
    """Whether ``checkpoint_dir`` holds a checkpoint (complete or not).

    Parameters
    ----------
    checkpoint_dir : str or Path

    Returns
    -------
    bool
    """
    return (Path(checkpoint_dir) / _SUBDIR).is_dir()


def write_checkpoint(checkpoint_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically as ``checkpoint_dir/last/``.

    Parameters
    ----------
    checkpoint_dir : str or Path
        Created if missing; other files in it are left alone.
    state : dict
        Nested values :func:`encode` accepts.

    Returns
    -------
    Path
        The checkpoint directory.
    """
    from safetensors.torch import save_file

    from ..persistence import atomic_directory

    root = Path(checkpoint_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"checkpoint_dir {str(root)!r} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
           "state": encode(state, "", tensors)}
    target = root / _SUBDIR
    with atomic_directory(target, overwrite=True) as tmp:
        save_file(tensors, str(tmp / _TENSORS))
        with open(tmp / _STATE, "w", encoding="utf-8") as f:
            json.dump(doc, f, allow_nan=False)
        files = {name: {"size": os.path.getsize(tmp / name), "sha256": _sha256(tmp / name)}
                 for name in (_TENSORS, _STATE)}
        with open(tmp / _MANIFEST, "w", encoding="utf-8") as f:
            json.dump({"format": CHECKPOINT_FORMAT, "files": files}, f)
    return target


def read_checkpoint(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and verify the checkpoint in ``checkpoint_dir`` (see :func:`write_checkpoint`).

    Parameters
    ----------
    checkpoint_dir : str or Path

    Returns
    -------
    dict
        The ``state`` given to :func:`write_checkpoint` (tensors on the CPU).

    Raises
    ------
    ModelFormatError
        A missing, truncated or altered file (the manifest's size and SHA-256 do not
        match), or a file that is not a maasrec training checkpoint.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = Path(checkpoint_dir) / _SUBDIR
    try:
        with open(where / _MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"checkpoint {str(where)!r}: cannot read {_MANIFEST} "
                               f"({exc}); delete the directory to start afresh") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT \
            or not isinstance(manifest.get("files"), dict):
        raise ModelFormatError(f"{str(where)!r} is not a maasrec training checkpoint "
                               f"(format {manifest.get('format') if isinstance(manifest, dict) else manifest!r})")
    for name in (_TENSORS, _STATE):
        want = manifest["files"].get(name)
        path = where / name
        if not isinstance(want, dict) or not path.is_file():
            raise ModelFormatError(f"checkpoint {str(where)!r}: {name} is missing")
        size = path.stat().st_size
        if size != want.get("size") or _sha256(path) != want.get("sha256"):
            raise ModelFormatError(
                f"checkpoint {str(where)!r}: {name} is corrupt ({size} bytes, the manifest "
                f"says {want.get('size')} bytes and another SHA-256); delete the directory "
                "to start afresh")
    try:
        tensors = load_file(str(where / _TENSORS))
        with open(where / _STATE, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelFormatError(f"checkpoint {str(where)!r}: unreadable ({exc})") from None
    if doc.get("format") != CHECKPOINT_FORMAT or doc.get("version") != CHECKPOINT_VERSION:
        raise ModelFormatError(f"checkpoint {str(where)!r}: format {doc.get('format')!r} "
                               f"version {doc.get('version')!r}, expected "
                               f"{CHECKPOINT_FORMAT!r} version {CHECKPOINT_VERSION}")
    return decode(doc["state"], tensors)
