"""Small helpers shared by the encoders (not public)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

from .._rng import manual_seeded
from ..exceptions import DataError

#: Layer construction under ``torch.manual_seed(random_state)`` (None: the global RNG);
#: the one helper, :func:`maasrec._rng.manual_seeded`.
seeded = manual_seeded


def check_seed(random_state) -> int | None:
    """A valid seed (non-negative int) as int; ``None`` stays ``None``."""
    if random_state is None:
        return None
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, Integral):
        raise DataError(f"random_state must be an int or None, got {random_state!r}")
    if random_state < 0:
        raise DataError(f"random_state must be >= 0, got {random_state!r}")
    return int(random_state)


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_index(idx, n: int, device: torch.device, what: str = "idx") -> torch.Tensor | None:
    """Validate row indices into a table of ``n`` rows; None means all rows."""
    if idx is None:
        return None
    t = torch.as_tensor(idx, device=device)
    if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise DataError(f"{what} must hold integers, got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.reshape(1)
    elif t.dim() > 1:
        raise DataError(f"{what} must be 1-d row indices, got shape {tuple(t.shape)}")
    t = t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        bad = t[(t < 0) | (t >= n)][:5].tolist()
        raise DataError(f"{what} holds rows {bad} outside [0, {n})")
    return t
