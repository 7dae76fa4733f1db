"""evaluate_ratings: pooled RMSE/MAE of a rating model's predictions, id checks, errors."""

import warnings

import numpy as np
import pandas as pd
import pytest

from maasrec.exceptions import ColdStartWarning, DataError, NotFittedError, UnknownIdError
from maasrec.metrics import mae, rmse
from maasrec.metrics.evaluation import RatingEvaluationResult, evaluate_ratings
from maasrec.models import EASE
from maasrec.models.rating_mf import BiasedMF


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"user": rng.integers(0, 40, n), "item": rng.integers(0, 30, n),
                       "rating": rng.integers(1, 6, n).astype(float)})
    df = df.drop_duplicates(["user", "item"]).reset_index(drop=True)
    test = df.sample(frac=0.2, random_state=0)
    return df.drop(test.index), test


@pytest.fixture(scope="module")
def model(split):
    return BiasedMF(factors=4, epochs=5, random_state=0).fit(split[0])


def test_matches_metric_functions(model, split):
    _, test = split
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColdStartWarning)  # every test id is known here
        test = test[test["user"].isin(model.user_vocab_.ids) & test["item"].isin(model.item_vocab_.ids)]
        res = evaluate_ratings(model, test, n_bootstrap=200)
    pred = model.predict(test["user"].tolist(), test["item"].tolist())
    assert isinstance(res, RatingEvaluationResult)
    assert res["rmse"] == pytest.approx(rmse(test["rating"], pred))
    assert res["mae"] == pytest.approx(mae(test["rating"], pred))
    assert list(res) == ["rmse", "mae"] and res.n_ratings == len(test)
    for m in ("rmse", "mae"):
        lo, hi = res.ci[m]
        assert lo < res[m] < hi
    assert res.to_dict()["values"] == dict(res)
    only = evaluate_ratings(model, test, "mae", n_bootstrap=0)
    assert list(only) == ["mae"] and np.isnan(only.ci["mae"][0])
    with pytest.raises(KeyError, match="rmse"):
        only["rmse"]


def test_unknown_policies(model, split):
    _, test = split
    extra = pd.DataFrame({"user": [999, test["user"].iloc[0]], "item": [test["item"].iloc[0], 999],
                          "rating": [3.0, 4.0]})
    t = pd.concat([test, extra], ignore_index=True)
    with pytest.warns(ColdStartWarning, match="2 of"):
        skip = evaluate_ratings(model, t, n_bootstrap=0)
    assert skip.counts == {"test_rows_unknown_user": 1 + int((~test["user"].isin(model.user_vocab_.ids)).sum()),
                           "test_rows_unknown_item": skip.counts["test_rows_unknown_item"]}
    fb = evaluate_ratings(model, t, unknown="fallback", n_bootstrap=0)
    assert fb.n_ratings == len(t) and skip.n_ratings == len(t) - sum(skip.counts.values())
    pred = model.predict(t["user"].tolist(), t["item"].tolist())
    assert fb["rmse"] == pytest.approx(rmse(t["rating"], pred))
    with pytest.raises(UnknownIdError, match="999"):
        evaluate_ratings(model, t, unknown="raise")


def test_bad_input(model, split):
    _, test = split
    with pytest.raises(DataError, match="rating column"):
        evaluate_ratings(model, test[["user", "item"]])
    with pytest.raises(DataError, match="unknown metric"):
        evaluate_ratings(model, test, ["ndcg@10"])
    with pytest.raises(DataError, match="unknown must be"):
        evaluate_ratings(model, test, unknown="ignore")
    with pytest.raises(DataError, match="no test row"), pytest.warns(ColdStartWarning):
        evaluate_ratings(model, pd.DataFrame({"user": [-5], "item": [-5], "rating": [1.0]}))
    bad = test.copy()
    bad.iloc[0, bad.columns.get_loc("rating")] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluate_ratings(model, bad)
    with pytest.raises(NotFittedError):
        evaluate_ratings(BiasedMF(), test)
    ranking = EASE(l2=10.0).fit(split[0])
    with pytest.raises(DataError, match="cannot predict ratings"):
        evaluate_ratings(ranking, test)


def test_broken_predict_is_refused(model, split):
    class Broken:
        user_vocab_, item_vocab_ = model.user_vocab_, model.item_vocab_

        def score_indices(self, idx):  # pragma: no cover - not called
            raise AssertionError

        def predict(self, users, items):
            return np.full(len(users), np.nan)

    _, test = split
    with pytest.raises(DataError, match="non-finite"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        evaluate_ratings(Broken(), test)
