"""Model directories: JSON + safetensors, no pickle, atomic writes.

A saved model is a directory::

    maasrec.json         format name and version, class, params, scalar attributes
    vocab.json           user and item id vocabularies
    arrays.safetensors   numpy arrays (dense, and the parts of sparse matrices)
    weights.safetensors  torch module state dicts (neural models)
    <attr>/              a nested fitted recommender (e.g. a first stage)

Loading reads JSON and safetensors only (no code runs from the directory), resolves the
class name against the recommenders maasrec knows, and refuses a newer format.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._version import __version__
from .data.vocab import IdVocab
from .exceptions import ModelFormatError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "atomic_directory", "read_json", "read_model_dir",
           "write_model_dir"]

FORMAT_NAME = "maasrec-model"
FORMAT_VERSION = 1
META_FILE = "maasrec.json"
VOCAB_FILE = "vocab.json"
ARRAYS_FILE = "arrays.safetensors"
WEIGHTS_FILE = "weights.safetensors"


def _jsonable(value: Any, where: str) -> Any:
    """Check that ``value`` survives a JSON round trip; convert numpy scalars."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise ModelFormatError(
        f"{where} = {value!r} (type {type(value).__name__}) cannot be saved as JSON"
    )


class atomic_directory:
    """Context manager: write into a temporary sibling, then move it into place.

    Parameters
    ----------
    path : str or Path
        The final directory.
    overwrite : bool
        Replace an existing maasrec model directory at ``path``. Without it an
        existing ``path`` raises :class:`FileExistsError`. A directory that is not a
        maasrec model (no ``maasrec.json``) and not empty is never replaced.

    Notes
    -----
    If anything fails inside the block, the temporary directory is removed and the
    previous content of ``path`` is left untouched.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        p = self.path
        if p.exists():
            if not p.is_dir():
                raise FileExistsError(f"{str(p)!r} exists and is not a directory; choose another path")
            if not self.overwrite:
                raise FileExistsError(
                    f"{str(p)!r} already exists; pass overwrite=True to replace it atomically"
                )
            if not (p / META_FILE).exists() and any(p.iterdir()):
                raise FileExistsError(
                    f"{str(p)!r} is a non-empty directory that is not a maasrec model; refusing "
                    f"to replace it"
                )
        p.parent.mkdir(parents=True, exist_ok=True)
        # not tempfile.mkdtemp: its 0o700 mode would become the model directory's mode;
        # a plain mkdir honours the umask like any other directory the user creates
        while True:
            tmp = p.parent / f".{p.name}.tmp-{uuid.uuid4().hex[:12]}"
            try:
                tmp.mkdir()
                break
            except FileExistsError:  # pragma: no cover - a uuid collision
                continue
        self.tmp = tmp
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        p = self.path
        old = None
        try:
            if p.exists():
                old = p.with_name(f".{p.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(p, old)
            os.replace(self.tmp, p)
        except BaseException:
            if old is not None and not p.exists():
                os.replace(old, p)
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def read_json(path: Path) -> dict:
    """Read a JSON file, turning any failure into :class:`ModelFormatError`.

    Parameters
    ----------
    path : Path

    Returns
    -------
    dict
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {str(path)!r}: {exc}") from exc


def _write_json(path: Path, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.write("\n")


def write_model_dir(tmp: Path, *, class_name: str, params: dict, attributes: dict,
                    vocabs: dict[str, IdVocab], arrays: dict[str, np.ndarray],
                    weights: dict | None = None, extra: dict | None = None) -> None:
    """Write the files of a model directory into ``tmp``.

    Parameters
    ----------
    tmp : Path
        An empty directory (from :class:`atomic_directory`).
    class_name : str
        Registered class name of the model.
    params : dict
        JSON-compatible constructor parameters.
    attributes : dict
        JSON-compatible description of the fitted attributes.
    vocabs : dict of str -> IdVocab
    arrays : dict of str -> np.ndarray
        Numeric arrays (written with safetensors).
    weights : dict of str -> torch.Tensor, optional
        Module state (written with safetensors' torch writer).
    extra : dict, optional
        More JSON-compatible metadata.
    """
    from safetensors.numpy import save_file

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "maasrec_version": __version__,
        "class": class_name,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "params": _jsonable(params, "params"),
        "attributes": _jsonable(attributes, "attributes"),
    }
    if extra:
        meta.update(_jsonable(extra, "extra"))
    _write_json(tmp / VOCAB_FILE, {k: v.to_dict() for k, v in vocabs.items()})
    if arrays:
        clean = {}
        for k, a in arrays.items():
            a = np.asarray(a)
            if a.dtype == object:
                raise ModelFormatError(f"array {k!r} has dtype object and cannot be saved")
            clean[k] = np.ascontiguousarray(a)
        save_file(clean, str(tmp / ARRAYS_FILE))
    if weights:
        from safetensors.torch import save_file as save_torch

        save_torch({k: v.detach().cpu().contiguous() for k, v in weights.items()},
                   str(tmp / WEIGHTS_FILE))
    _write_json(tmp / META_FILE, meta)  # written last: its presence marks a complete model


def read_model_dir(path: str | os.PathLike) -> dict:
    """Read a model directory written by :func:`write_model_dir`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        ``meta`` (maasrec.json), ``vocabs`` (dict of IdVocab), ``arrays`` (dict of
        np.ndarray), ``weights`` (dict of torch.Tensor, loaded lazily by the caller via
        ``weights_path``), ``path``.

    Raises
    ------
    ModelFormatError
        If ``path`` is not a maasrec model directory, is corrupt, or was written by a
        newer format version.
    """
    p = Path(path)
    if not p.is_dir():
        raise ModelFormatError(f"{str(p)!r} is not a directory; expected a saved maasrec model")
    if not (p / META_FILE).is_file():
        raise ModelFormatError(
            f"{str(p)!r} is not a maasrec model directory: it has no {META_FILE}"
        )
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{str(p / META_FILE)!r} is not a maasrec model description")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise ModelFormatError(f"{str(p)!r}: format_version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{str(p)!r} was written in model format {version} by maasrec "
            f"{meta.get('maasrec_version')}; this maasrec ({__version__}) reads formats up to "
            f"{FORMAT_VERSION}: upgrade maasrec to load it"
        )
    vocabs = {}
    if (p / VOCAB_FILE).is_file():
        raw = read_json(p / VOCAB_FILE)
        try:
            vocabs = {k: IdVocab.from_dict(v) for k, v in raw.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{str(p / VOCAB_FILE)!r} is corrupt: {exc!r}") from exc
    arrays: dict[str, np.ndarray] = {}
    if (p / ARRAYS_FILE).is_file():
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(p / ARRAYS_FILE))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"cannot read {str(p / ARRAYS_FILE)!r}: {exc}") from exc
    return {"meta": meta, "vocabs": vocabs, "arrays": arrays, "path": p,
            "weights_path": p / WEIGHTS_FILE}


def csr_to_arrays(name: str, m: sp.spmatrix) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a sparse matrix into safetensors-friendly arrays.

    Parameters
    ----------
    name : str
    m : scipy.sparse matrix

    Returns
    -------
    attribute : dict
        JSON description (``{"type": "csr", "shape": [...]}``).
    arrays : dict of str -> np.ndarray
    """
    m = sp.csr_matrix(m)
    return ({"type": "csr", "shape": list(m.shape)},
            {f"{name}.data": m.data, f"{name}.indices": m.indices.astype(np.int64),
             f"{name}.indptr": m.indptr.astype(np.int64)})


def csr_from_arrays(name: str, attr: dict, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    """Inverse of :func:`csr_to_arrays`.

    Parameters
    ----------
    name : str
    attr : dict
    arrays : dict of str -> np.ndarray

    Returns
    -------
    scipy.sparse.csr_matrix
    """
    try:
        return sp.csr_matrix((arrays[f"{name}.data"], arrays[f"{name}.indices"],
                              arrays[f"{name}.indptr"]), shape=tuple(attr["shape"]))
    except (KeyError, ValueError) as exc:
        raise ModelFormatError(f"sparse attribute {name!r} is missing or corrupt: {exc}") from exc
