"""Rankers: turn scores into top-k lists.

- :class:`TopK`: exact top-k over score blocks (numpy or torch), with exclusions and
  allow/deny lists, ties to the lower item index, ``(-1, -inf)`` padding;
- :class:`MMR`: maximal-marginal-relevance re-ranking for diversity;
- :class:`FaissRetriever`: approximate candidate retrieval (flat / IVF / HNSW) over item
  vectors, used by ``Recommender.recommend(..., retriever=...)`` with exact re-scoring
  and filtering (:func:`retrieve_topk`).
"""

from .ann import FaissRetriever
from .mmr import MMR
from .retrieval import retrieve_topk
from .topk import TopK, topk_indices

__all__ = ["MMR", "FaissRetriever", "TopK", "retrieve_topk", "topk_indices"]
