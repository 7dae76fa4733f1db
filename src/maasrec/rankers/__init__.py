"""Rankers: turn score blocks into top-k lists (exact top-k, filters)."""

from .topk import TopK, topk_indices

__all__ = ["TopK", "topk_indices"]
