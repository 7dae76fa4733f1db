"""The one device rule of maasrec.

:func:`resolve_device` is the **only** place in the package that asks torch whether CUDA
is available. Every model and component takes ``device=None`` and passes it here:

1. an explicit argument (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a :class:`torch.device`),
2. else the ``MAASREC_DEVICE`` environment variable,
3. else CUDA when available,
4. else the CPU.

Asking for CUDA when it is absent raises :class:`~maasrec.exceptions.DeviceError`
instead of silently falling back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .exceptions import DeviceError

if TYPE_CHECKING:  # torch is imported lazily so that ``import maasrec`` stays light
    import torch

__all__ = ["amp_dtype", "cuda_available", "resolve_device"]

_ENV = "MAASREC_DEVICE"


def cuda_available() -> bool:
    """Return whether a CUDA device can be used.

    Returns
    -------
    bool
        ``torch.cuda.is_available()``; the single call site for that question.
    """
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """Resolve a device specification to a :class:`torch.device`.

    Parameters
    ----------
    spec : str or torch.device or None
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``/None. None (or ``"auto"``) reads
        ``MAASREC_DEVICE`` and then picks CUDA when available, else CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        If CUDA is asked for (by argument or environment) but not available, the index
        is out of range, or the specification is not understood.
    """
    import torch

    source = "argument"
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        env = os.environ.get(_ENV, "").strip()
        if env and env.lower() != "auto":
            spec, source = env, f"environment variable {_ENV}"
        else:
            return torch.device("cuda") if cuda_available() else torch.device("cpu")
    try:
        device = spec if isinstance(spec, torch.device) else torch.device(str(spec).strip().lower())
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceError(
            f"device {spec!r} (from {source}) is not understood; expected 'cpu', 'cuda', "
            f"'cuda:N' or 'auto'"
        ) from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not cuda_available():
            raise DeviceError(
                f"device {spec!r} (from {source}) asks for CUDA, but CUDA is not available on "
                f"this machine; use device='cpu' or leave device=None"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {spec!r} (from {source}) asks for CUDA device {device.index}, but only "
                f"{torch.cuda.device_count()} device(s) exist"
            )
        return device
    raise DeviceError(
        f"device {spec!r} (from {source}) has type {device.type!r}; maasrec supports 'cpu' "
        f"and 'cuda'"
    )


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Pick the autocast dtype for mixed precision on ``device``.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    torch.dtype or None
        ``torch.bfloat16`` on CUDA devices that support it, ``torch.float16`` on older
        CUDA devices, None on the CPU (no autocast: full float32 precision).
    """
    import torch

    if device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
