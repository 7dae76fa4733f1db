"""The common contract, run over every model (grows with each model)."""

import pytest

from maasrec.models import EASE, Popularity
from maasrec.testing import check_recommender, iter_checks

MODELS = {
    "Popularity": lambda: Popularity(),
    "EASE": lambda: EASE(l2=10.0),
}

CASES = [(name, check_name, check) for name, factory in MODELS.items()
         for check_name, check in iter_checks(factory)]


@pytest.mark.parametrize("model_name, check_name, check", CASES,
                         ids=[f"{m}-{c}" for m, c, _ in CASES])
def test_contract(model_name, check_name, check):
    check()


def test_check_recommender_runs_all():
    check_recommender(lambda: EASE(l2=5.0))
