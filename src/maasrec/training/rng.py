"""Seeds and random generators: the one seeded-RNG helper of maasrec."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["fork_rng", "seed_from", "seeded", "torch_generator"]


def seed_from(random_state: Any) -> int:
    """A 63-bit integer seed derived from ``random_state``.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        Passed to :func:`numpy.random.default_rng`; None draws fresh entropy.

    Returns
    -------
    int
        The same value for the same integer ``random_state``.
    """
    return int(np.random.default_rng(random_state).integers(0, 2**63 - 1))


def torch_generator(random_state: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded from ``random_state``.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
    device : torch.device or str, default "cpu"

    Returns
    -------
    torch.Generator
    """
    g = torch.Generator(device=device)
    g.manual_seed(seed_from(random_state))
    return g


def fork_rng(device: torch.device | str = "cpu"):
    """Fork torch's global RNG (the CPU one and, on CUDA, ``device``'s).

    Parameters
    ----------
    device : torch.device or str, default "cpu"

    Returns
    -------
    context manager
        On exit the global RNG states are what they were on entry.
    """
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


@contextmanager
def seeded(random_state: Any, device: torch.device | str = "cpu") -> Iterator[int]:
    """Seed torch's global RNG inside the block only (dropout, initialisers).

    The caller's global RNG state is restored on exit, so fitting a model never
    changes the random numbers the surrounding program draws.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        Reduced to an integer seed with :func:`seed_from`.
    device : torch.device or str, default "cpu"
        A CUDA device's RNG is forked too.

    Yields
    ------
    int
        The seed in effect.
    """
    seed = seed_from(random_state)
    with fork_rng(device):
        torch.manual_seed(seed)
        yield seed
