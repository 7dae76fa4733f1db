"""Where the work runs: batches to the device, thread counts for small kernels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["SMALL_WORK", "threads_for", "to_device"]

#: Kernels smaller than this (elements, e.g. batch x factors) run on one CPU thread.
SMALL_WORK = 2**17


@contextmanager
def threads_for(work: int, device: torch.device | str = "cpu") -> Iterator[int]:
    """Run a small CPU problem on one thread; restore torch's thread count afterwards.

    Some torch CPU kernels (sparse products, fused optimisers) open an OpenMP parallel
    region whatever their size. On tiny problems that costs more than the work, and
    on a machine whose cores are busy it costs milliseconds per kernel (threads spin
    waiting for each other): fitting a 40-user model took 30x longer on 2 threads than
    on 1. Work at least :data:`SMALL_WORK` keeps the configured threads.

    Note that ``torch.set_num_threads`` is process-wide: torch code running in other
    Python threads meanwhile also sees one thread.

    Parameters
    ----------
    work : int
        Elements per kernel (e.g. ``nnz * factors`` or ``batch_size * factors``).
    device : torch.device or str, default "cpu"
        Nothing changes for non-CPU devices.

    Yields
    ------
    int
        The number of threads in effect.
    """
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu" or work >= SMALL_WORK or before == 1:
        yield before
        return
    torch.set_num_threads(1)
    try:
        yield 1
    finally:
        torch.set_num_threads(before)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors (in dicts, lists and tuples) to ``device``.

    On CUDA, CPU tensors are pinned and copied with ``non_blocking=True`` so the copy
    overlaps the previous step's kernels; elsewhere this is a plain ``.to``.

    Parameters
    ----------
    obj : torch.Tensor, dict, list, tuple or anything else (returned as is)
    device : torch.device

    Returns
    -------
    Same structure, tensors on ``device``.
    """
    if isinstance(obj, torch.Tensor):
        if obj.device == device:
            return obj
        if device.type == "cuda" and obj.device.type == "cpu":
            return obj.pin_memory().to(device, non_blocking=True)
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [to_device(v, device) for v in obj]
        return type(obj)(moved) if isinstance(obj, tuple) and not hasattr(obj, "_fields") \
            else (type(obj)(*moved) if hasattr(obj, "_fields") else moved)
    return obj
