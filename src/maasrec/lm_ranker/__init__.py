"""Language-model re-ranking: a fine-tuned cross-encoder as the second stage.

- :class:`LMRanker`: a BERT- or GPT-style model fine-tuned on (user history as text,
  item text) pairs with a click label, re-ranking the candidates of a fast first stage
  (a fresh EASE by default);
- :class:`TwoStage`: any recommender re-ranking another's candidates;
- :data:`DEFAULT_TEMPLATE` and :class:`~maasrec.lm_ranker.text.PairBuilder`: how a pair
  becomes tokens.

Optional LoRA fine-tuning needs the ``lora`` extra (``pip install 'maasrec[lora]'``).
"""

from .ranker import LM_RANKER_LOSSES, LMRanker
from .text import DEFAULT_TEMPLATE, PairBuilder
from .two_stage import CandidateReranker, TwoStage, blend_scores

__all__ = [
    "DEFAULT_TEMPLATE",
    "LM_RANKER_LOSSES",
    "CandidateReranker",
    "LMRanker",
    "PairBuilder",
    "TwoStage",
    "blend_scores",
]


def __getattr__(name: str):
    if name == "DEFAULT_FIRST_STAGE":  # deprecated (see maasrec.lm_ranker.ranker)
        from . import ranker

        return ranker.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
