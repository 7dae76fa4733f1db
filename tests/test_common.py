"""The common contract, run over every model (grows with each model)."""

import pytest

from maasrec.lm_ranker import LMRanker, TwoStage
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD
from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender
from maasrec.testing import check_recommender, iter_checks
from maasrec.testing.components import tiny_text_model

MODELS = {
    "Popularity": lambda: Popularity(),
    "EASE": lambda: EASE(l2=10.0),
    "ItemKNN": lambda: ItemKNN(n_neighbors=10),
    "PureSVD": lambda: PureSVD(factors=8),
    "ALS": lambda: ALS(factors=8, iterations=5, regularization=0.1),
    "BPRMF": lambda: BPRMF(factors=8, epochs=20, batch_size=64),
    "SequentialRecommender": lambda: SequentialRecommender(
        max_len=10, dim=16, n_layers=1, n_heads=2, epochs=20, batch_size=16, verbose=False),
    # no item features in the contract data: id-only items, users from their histories
    "HybridRecommender": lambda: HybridRecommender(dim=8, epochs=10),
    "HybridRecommender-tied": lambda: HybridRecommender(dim=8, epochs=10, tie_history=True,
                                                        history_activation="linear"),
    "HybridRecommender-attention": lambda: HybridRecommender(scorer="attention", loss="bpr",
                                                             dim=8, epochs=5),
    "NeuMF": lambda: NeuMF(dim=8, mlp_layers=(8, 4), epochs=5, batch_size=64),
    "TwoStage": lambda: TwoStage(EASE(l2=10.0), ItemKNN(n_neighbors=10), n_candidates=40),
    # a tiny random BERT; the contract data have no item text, so the ids are the texts
    "LMRanker": lambda: LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"),
                                 missing_text="id", history_len=2, max_length=48,
                                 max_positives=16, alpha=0.5, verbose=False),
}

CASES = [(name, check_name, check) for name, factory in MODELS.items()
         for check_name, check in iter_checks(factory)]


@pytest.mark.parametrize("model_name, check_name, check", CASES,
                         ids=[f"{m}-{c}" for m, c, _ in CASES])
def test_contract(model_name, check_name, check):
    check()


def test_check_recommender_runs_all():
    check_recommender(lambda: EASE(l2=5.0))
