"""Neural recommenders: towers of encoders and fusion, a scorer, one training loop.

- :class:`HybridRecommender`: item text (frozen language-model vectors), ids and
  features fused, users from their histories; cold items via ``add_items``, cold users
  via ``recommend(history=...)``.
- :class:`NeuMF`: neural collaborative filtering (GMF + MLP) on the same machinery.
- :class:`SequentialRecommender`: a GPT-style causal transformer over each user's item
  sequence (SASRec-style next-item prediction).
"""

from .hybrid import HybridRecommender, NeuMF
from .sequential import SequentialRecommender

__all__ = ["HybridRecommender", "NeuMF", "SequentialRecommender"]
