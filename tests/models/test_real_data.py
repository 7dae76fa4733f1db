"""The classical models' defaults on a real data set (MovieLens 100K, from MAASREC_DATA)."""

from __future__ import annotations

import warnings

import pytest

from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD

# ML-100K, per-user random 8:1:1 (seed 0), library defaults, NDCG@10 on test (train and
# validation items excluded), measured here: Popularity 0.146, EASE 0.333, ALS 0.340,
# BPRMF 0.294, ItemKNN 0.305, PureSVD 0.293. The thresholds leave room for BLAS/thread
# differences and stay far above popularity.
CASES = {
    "EASE": (lambda: EASE(), 0.31),
    "ALS": (lambda: ALS(random_state=0), 0.32),
    "BPRMF": (lambda: BPRMF(random_state=0), 0.27),
    "ItemKNN": (lambda: ItemKNN(), 0.28),
    "PureSVD": (lambda: PureSVD(random_state=0), 0.27),
}


@pytest.fixture(scope="module")
def ml100k_split(data_home, require_dataset):
    from maasrec.data.split import random_split
    from maasrec.datasets import load_movielens

    require_dataset("ml-100k", "u.data")
    X = load_movielens("100k", data_home, download=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return random_split(X, (0.8, 0.1, 0.1), random_state=0)


def _ndcg(model, split) -> float:
    from maasrec.metrics import evaluate

    train, valid, test = split
    model.fit(train)
    return evaluate(model, train, test, k=10, metrics=["ndcg"], exclude=valid,
                    n_bootstrap=0)["ndcg@10"]


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_defaults_on_movielens_100k(name, ml100k_split):
    factory, threshold = CASES[name]
    ndcg = _ndcg(factory(), ml100k_split)
    assert ndcg >= threshold, (name, ndcg)
    assert ndcg > _ndcg(Popularity(), ml100k_split) + 0.1, (name, ndcg)
