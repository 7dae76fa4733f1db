"""Seeds and random generators: the one seeded-RNG helper of maasrec.

Two ways to seed torch's global RNG for a block of code, both leaving the caller's RNG
as it was:

- :func:`manual_seeded` ``(seed)``: a raw integer seed, exactly ``torch.manual_seed(seed)``
  inside the block; ``None`` uses (and advances) the global RNG, as a plain torch layer
  does. Building blocks (encoders, fusion, scorers) build their layers under it from
  their ``random_state``.
- :func:`seeded` ``(random_state)``: the seed is first derived with :func:`seed_from`
  (the form the :class:`~maasrec.training.Trainer` and the recommenders use; ``None``
  draws fresh entropy).

This module imports only torch and numpy, so every layer may use it;
:mod:`maasrec.training.rng` re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from typing import Any

import numpy as np
import torch

from .exceptions import DataError

__all__ = ["fork_rng", "manual_seeded", "seed_from", "seeded", "torch_generator"]


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
def manual_seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[int | None]:
    """``torch.manual_seed(seed)`` inside the block only; the caller's RNG is restored.

    Parameters
    ----------
    seed : int or None
        Used as it is (no derivation), so the block draws exactly what it would after
        ``torch.manual_seed(seed)``. None: nothing is forked or seeded -- the block uses
        and advances torch's global RNG, as an unseeded torch layer does.
    device : torch.device or str, default "cpu"
        A CUDA device's RNG is forked too.

    Yields
    ------
    int or None
        The seed in effect.

    Raises
    ------
    DataError
        For a seed that is not an integer torch accepts.

    Examples
    --------
    >>> with manual_seeded(0):
    ...     a = torch.rand(1)
    >>> _ = torch.manual_seed(0)
    >>> bool(a == torch.rand(1))
    True
    """
    if seed is None:
        yield None
        return
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral) \
            or not -(2**63) <= seed < 2**64:
        raise DataError(f"seed must be an integer in [-2**63, 2**64) or None, got {seed!r}")
    with fork_rng(device):
        torch.manual_seed(int(seed))
        yield int(seed)


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
    with manual_seeded(seed_from(random_state), device) as seed:
        yield seed
