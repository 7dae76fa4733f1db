"""Seeds and random generators (re-exported from :mod:`maasrec._rng`, the one seeded-RNG
helper, which the building blocks below ``training`` import directly)."""

from __future__ import annotations

from .._rng import fork_rng, manual_seeded, seed_from, seeded, torch_generator

__all__ = ["fork_rng", "manual_seeded", "seed_from", "seeded", "torch_generator"]
