"""Evaluation: ranking, beyond-accuracy, rating and classification metrics, ``evaluate``, tests.

The usual entry point is :func:`evaluate` (a fitted model, its training data and a test
part) or :func:`evaluate_lists` (top-k lists someone else produced). Both return an
:class:`EvaluationResult` of means, per-user values and bootstrap intervals;
:func:`paired_test` compares two results user by user.

The metric functions are public too: ``*_from_hits`` work on a boolean hit matrix,
``*_at_k`` on lists of raw ids, and the beyond-accuracy functions on item-index lists.
The classification metrics (``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``,
``log_loss``, ``classification_report``) judge pointwise click predictions such as
``LMRanker.predict_proba``.
"""

from .beyond import catalog_coverage, gini_index, intra_list_diversity, item_popularity, novelty
from .classification import (
    ClassificationReport,
    accuracy,
    classification_report,
    confusion_counts,
    f1,
    log_loss,
    precision,
    recall,
    roc_auc,
)
from .evaluation import (
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_METRICS,
    METRICS,
    RATING_METRICS,
    EvaluationResult,
    RatingEvaluationResult,
    evaluate,
    evaluate_lists,
    evaluate_ratings,
)
from .ranking import (
    RANKING_METRICS,
    auc_from_scores,
    f1_at_k,
    f1_from_hits,
    hit_rate_at_k,
    hit_rate_from_hits,
    hits_from_lists,
    map_at_k,
    map_from_hits,
    mrr_at_k,
    mrr_from_hits,
    ndcg_at_k,
    ndcg_from_hits,
    precision_at_k,
    precision_from_hits,
    ranking_metrics_from_hits,
    recall_at_k,
    recall_from_hits,
)
from .rating import mae, rmse
from .stats import PairedTestResult, bootstrap_ci, paired_test

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_METRICS",
    "METRICS",
    "RANKING_METRICS",
    "RATING_METRICS",
    "ClassificationReport",
    "EvaluationResult",
    "PairedTestResult",
    "RatingEvaluationResult",
    "accuracy",
    "auc_from_scores",
    "bootstrap_ci",
    "catalog_coverage",
    "classification_report",
    "confusion_counts",
    "evaluate",
    "evaluate_lists",
    "evaluate_ratings",
    "f1",
    "f1_at_k",
    "f1_from_hits",
    "gini_index",
    "hit_rate_at_k",
    "hit_rate_from_hits",
    "hits_from_lists",
    "intra_list_diversity",
    "item_popularity",
    "log_loss",
    "mae",
    "map_at_k",
    "map_from_hits",
    "mrr_at_k",
    "mrr_from_hits",
    "ndcg_at_k",
    "ndcg_from_hits",
    "novelty",
    "paired_test",
    "precision",
    "precision_at_k",
    "precision_from_hits",
    "ranking_metrics_from_hits",
    "recall",
    "recall_at_k",
    "recall_from_hits",
    "rmse",
    "roc_auc",
]
