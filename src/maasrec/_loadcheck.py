"""Checks of what ``load`` reads from a model directory, before any C code sees it.

A saved model is data from disk: a corrupt or crafted file must raise
:class:`~maasrec.exceptions.ModelFormatError` naming the file and the value, never crash
the process inside scipy, faiss or torch, and never load silently wrong. The helpers
here check arrays (dtype, shape, finiteness, index bounds), CSR parts, JSON values and
torch state dicts; models call them from their ``_check_loaded`` hook.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .exceptions import ModelFormatError

__all__ = ["check_csr_parts", "check_dense", "check_index_array", "check_json_int",
           "check_state_finite", "loaded_array"]


def _where(where: str, name: str) -> str:
    return f"{name!r} in {where}" if where else repr(name)


def check_json_int(where: str, name: str, value: Any, *, low: int = 0,
                   high: int | None = None) -> int:
    """A JSON value that must be an integer within ``[low, high]`` (not a bool).

    Parameters
    ----------
    where : str
        The file (for the message).
    name : str
        The value's name.
    value : object
    low, high : int

    Returns
    -------
    int

    Raises
    ------
    ModelFormatError
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ModelFormatError(f"{_where(where, name)} must be an integer, got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ModelFormatError(f"{_where(where, name)} = {v} is out of range {rng}")
    return v


def check_dense(where: str, name: str, a: Any, *, shape: tuple | None = None,
                ndim: int | None = None, kind: str = "f", finite: bool = True) -> np.ndarray:
    """Check a loaded dense array (numpy, or a torch tensor, checked on its values).

    Parameters
    ----------
    where : str
        The file (for the message).
    name : str
    a : np.ndarray or torch.Tensor
    shape : tuple, optional
        Expected shape; ``None`` entries match any length.
    ndim : int, optional
        Expected number of dimensions (when ``shape`` is not given).
    kind : str, default "f"
        Allowed numpy dtype kinds: ``"f"`` float, ``"i"``/``"u"`` integer, ``"b"`` bool.
    finite : bool, default True
        Require finite values (float arrays).

    Returns
    -------
    np.ndarray or torch.Tensor
        ``a`` itself.

    Raises
    ------
    ModelFormatError
    """
    arr = a
    if not isinstance(a, np.ndarray):
        torch_mod = type(a).__module__.split(".")[0]
        if torch_mod == "torch":
            arr = a.detach().cpu()
            if arr.dtype.is_floating_point and arr.dtype not in _torch_float_ok():
                arr = arr.float()
            arr = arr.numpy()
        else:
            raise ModelFormatError(f"{_where(where, name)} is a {type(a).__name__}, expected "
                                   f"an array")
    if arr.dtype.kind not in kind:
        raise ModelFormatError(f"{_where(where, name)} has dtype {arr.dtype}, expected "
                               f"{_kinds(kind)}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or int(s) == n
                                             for s, n in zip(shape, arr.shape))
        if not ok:
            want = tuple("*" if s is None else int(s) for s in shape)
            raise ModelFormatError(f"{_where(where, name)} has shape {arr.shape}, expected "
                                   f"{want}")
    elif ndim is not None and arr.ndim != ndim:
        raise ModelFormatError(f"{_where(where, name)} has {arr.ndim} dimensions, expected "
                               f"{ndim}")
    if finite and arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        bad = arr[~np.isfinite(arr)].ravel()[0]
        raise ModelFormatError(f"{_where(where, name)} holds a non-finite value ({bad})")
    return a


def _torch_float_ok():
    import torch

    return (torch.float32, torch.float64, torch.float16)


def _kinds(kind: str) -> str:
    names = {"f": "float", "i": "signed integer", "u": "unsigned integer", "b": "bool"}
    return " or ".join(names[k] for k in kind)


def check_index_array(where: str, name: str, a: Any, high: int, *, low: int = 0,
                      ndim: int | None = 1) -> np.ndarray:
    """Check an integer array used to index something of length ``high``.

    Parameters
    ----------
    where, name : str
    a : np.ndarray
    high : int
        Exclusive upper bound.
    low : int, default 0
        Inclusive lower bound (-1 allows a padding value).
    ndim : int, optional

    Returns
    -------
    np.ndarray

    Raises
    ------
    ModelFormatError
    """
    check_dense(where, name, a, ndim=ndim, kind="iu", finite=False)
    arr = np.asarray(a)
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < low or hi >= high:
            bad = lo if lo < low else hi
            raise ModelFormatError(f"{_where(where, name)} holds index {int(bad)}, outside "
                                   f"[{low}, {high})")
    return arr


def check_indptr(where: str, name: str, indptr: Any, n_rows: int, nnz: int) -> np.ndarray:
    """Check a CSR-style row pointer: ``n_rows + 1`` ints from 0, non-decreasing, to ``nnz``.

    Parameters
    ----------
    where, name : str
    indptr : np.ndarray
    n_rows, nnz : int

    Returns
    -------
    np.ndarray

    Raises
    ------
    ModelFormatError
    """
    check_dense(where, name, indptr, shape=(n_rows + 1,), kind="iu", finite=False)
    p = np.asarray(indptr)
    if int(p[0]) != 0 or int(p[-1]) != nnz:
        raise ModelFormatError(f"{_where(where, name)} runs from {int(p[0])} to {int(p[-1])}, "
                               f"expected 0 to {nnz}")
    if n_rows and (np.diff(p) < 0).any():
        r = int(np.flatnonzero(np.diff(p) < 0)[0])
        raise ModelFormatError(f"{_where(where, name)} decreases at row {r} "
                               f"({int(p[r])} then {int(p[r + 1])})")
    return p


def check_csr_parts(where: str, name: str, shape: Any, data: Any, indices: Any,
                    indptr: Any) -> tuple[int, int]:
    """Check the parts of a CSR matrix before scipy sees them.

    Parameters
    ----------
    where, name : str
    shape : object
        The JSON shape: a list of two non-negative ints.
    data, indices, indptr : np.ndarray

    Returns
    -------
    (n_rows, n_cols)

    Raises
    ------
    ModelFormatError
    """
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2):
        raise ModelFormatError(f"{_where(where, name)}: shape {shape!r} is not a pair of "
                               f"integers")
    n_rows = check_json_int(where, f"{name}.shape[0]", shape[0], high=2**62)
    n_cols = check_json_int(where, f"{name}.shape[1]", shape[1], high=2**62)
    check_dense(where, f"{name}.data", data, ndim=1, kind="fiub", finite=True)
    nnz = len(data)
    check_dense(where, f"{name}.indices", indices, shape=(nnz,), kind="iu", finite=False)
    check_indptr(where, f"{name}.indptr", indptr, n_rows, nnz)
    check_index_array(where, f"{name}.indices", indices, n_cols)
    return n_rows, n_cols


def loaded_array(where: str, arrays: Mapping[str, Any], name: str) -> Any:
    """``arrays[name]``, or a ModelFormatError naming the missing array."""
    if name not in arrays:
        raise ModelFormatError(f"array {name!r} is missing from {where}")
    return arrays[name]


def check_state_finite(where: str, state: Mapping[str, Any]) -> None:
    """Every floating tensor of a torch state dict must be finite.

    Parameters
    ----------
    where : str
    state : dict of str -> torch.Tensor

    Raises
    ------
    ModelFormatError
    """
    import torch

    for k, t in state.items():
        if t.dtype.is_floating_point and t.numel() and not bool(torch.isfinite(t).all()):
            raise ModelFormatError(f"weight {k!r} in {where} holds non-finite values")


def check_stored_histories(model: Any, where: str) -> None:
    """Check a model's stored histories (``history_items_`` indexed by ``history_indptr_``).

    The items index the item embedding (out of range is a crash on CUDA), so they must lie
    in ``[0, n_items_)``, and the row pointer must cover ``n_users_`` rows. On success both
    arrays are set back on ``model`` as int64.

    Parameters
    ----------
    model : Recommender
        A loaded model with ``n_items_``, ``n_users_``, ``history_items_`` and
        ``history_indptr_``.
    where : str
        The model directory, for messages.

    Raises
    ------
    ModelFormatError
    """
    items = getattr(model, "history_items_", None)
    check_index_array(where, "history_items_", items, model.n_items_)
    check_indptr(where, "history_indptr_", getattr(model, "history_indptr_", None),
                 model.n_users_, len(items))
    model.history_items_ = np.asarray(items, dtype=np.int64)
    model.history_indptr_ = np.asarray(model.history_indptr_, dtype=np.int64)
