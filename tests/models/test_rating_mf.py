"""BiasedMF: rating prediction, the common contract, persistence and bad input."""

import numpy as np
import pandas as pd
import pytest

from maasrec.data import Interactions
from maasrec.exceptions import DataError, NotFittedError, UnknownIdError
from maasrec.metrics import rmse
from maasrec.models.rating_mf import BiasedMF, SVDpp
from maasrec.testing import iter_checks
from maasrec.testing.checks import tiny_interactions


def _factory():
    return BiasedMF(factors=8, epochs=20, learning_rate=0.02)


CASES = list(iter_checks(_factory))


@pytest.mark.parametrize("name, check", CASES, ids=[n for n, _ in CASES])
def test_contract(name, check):
    check()


def _planted(n_users=120, n_items=80, per_user=25, seed=0, noise=0.3):
    """Ratings from a rank-2 model plus biases, on the 1-5 scale."""
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    bu, bi = rng.normal(0, 0.3, n_users), rng.normal(0, 0.5, n_items)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            r = 3.5 + bu[u] + bi[i] + P[u] @ Q[i] + rng.normal(0, noise)
            rows.append((u, int(i), float(np.clip(np.round(r * 2) / 2, 1.0, 5.0))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def test_learns_planted_ratings():
    df = _planted()
    test = df.sample(frac=0.2, random_state=0)
    train = df.drop(test.index)
    m = BiasedMF(factors=4, epochs=60, learning_rate=0.01, random_state=0).fit(train)
    pred = m.predict(test["user"].tolist(), test["item"].tolist())
    baseline = rmse(test["rating"], np.full(len(test), train["rating"].mean()))
    assert rmse(test["rating"], pred) < 0.8 * baseline
    # the training error falls epoch after epoch
    log = m.training_log_["rmse"]
    assert log[-1] < log[0] and len(log) == 60


def test_predict_clips_and_matches_score():
    df = _planted()
    m = BiasedMF(factors=4, epochs=10, random_state=0).fit(df)
    u, i = df["user"].tolist()[:50], df["item"].tolist()[:50]
    p = m.predict(u, i)
    assert p.dtype == np.float64 and p.shape == (50,)
    assert p.min() >= df["rating"].min() and p.max() <= df["rating"].max()
    s = m.score(u, i)  # unclipped
    np.testing.assert_allclose(p, np.clip(s, df["rating"].min(), df["rating"].max()),
                               rtol=1e-5, atol=1e-5)
    # the closed form of a prediction, from the fitted parameters
    uu, ii = m.user_vocab_.index([u[0]])[0], m.item_vocab_.index([i[0]])[0]
    manual = (m.global_mean_ + m.user_bias_[uu] + m.item_bias_[ii]
              + m.user_factors_[uu] @ m.item_factors_[ii])
    assert p[0] == pytest.approx(np.clip(manual, 1.0, 5.0), abs=1e-5)
    assert m.predict(u[0], i[0]).shape == (1,)


def test_predict_unknown_fallback_and_raise():
    df = _planted()
    m = BiasedMF(factors=4, epochs=10, random_state=0).fit(df)
    known_u, known_i = df["user"].iloc[0], df["item"].iloc[0]
    iu = m.user_vocab_.index([known_u])[0]
    ii = m.item_vocab_.index([known_i])[0]
    p = m.predict([known_u, "nobody", "nobody"], ["nothing", known_i, "nothing"])
    np.testing.assert_allclose(p, np.clip([m.global_mean_ + m.user_bias_[iu],
                                           m.global_mean_ + m.item_bias_[ii],
                                           m.global_mean_], 1, 5), rtol=1e-6)
    with pytest.raises(UnknownIdError, match="nobody"):
        m.predict(["nobody"], [known_i], unknown="raise")
    with pytest.raises(DataError, match="unknown"):
        m.predict([known_u], [known_i], unknown="zero")
    with pytest.raises(DataError, match="same length"):
        m.predict([known_u, known_u], [known_i])
    assert m.predict([], []).shape == (0,)


def test_keeps_low_ratings():
    """Explicit feedback: ratings <= 0 are data (no implicit-feedback filtering)."""
    df = _planted()
    df["rating"] = df["rating"] - 3.0  # -2 .. 2
    with np.errstate(all="raise"):
        m = BiasedMF(factors=4, epochs=5, random_state=0).fit(df)
    assert m.rating_min_ == df["rating"].min() < 0
    assert m.global_mean_ == pytest.approx(df["rating"].mean())


def test_bad_input():
    df = _planted()
    with pytest.raises(NotFittedError):
        BiasedMF().predict([0], [0])
    with pytest.raises(DataError, match="rating"):
        BiasedMF().fit(df[["user", "item"]])
    bad = df.copy()
    bad.loc[5, "rating"] = np.nan
    with pytest.raises(DataError, match="NaN"):
        BiasedMF().fit(bad)
    for name, value in [("factors", 0), ("epochs", 0), ("learning_rate", 0.0),
                        ("regularization", -1.0), ("batch_size", 0), ("init_std", -0.1)]:
        with pytest.raises(DataError, match=name):
            BiasedMF(**{name: value}).fit(df)


def test_diverging_learning_rate_raises():
    from maasrec.training import NonFiniteLossError

    m = BiasedMF(factors=4, epochs=50, learning_rate=50.0, random_state=0)
    with pytest.raises(NonFiniteLossError, match="learning_rate"):
        m.fit(_planted())
    assert not m.is_fitted


def test_save_load_predict_identical(tmp_path):
    df = _planted()
    m = BiasedMF(factors=4, epochs=5, random_state=0).fit(df)
    m.save(tmp_path / "m")
    loaded = BiasedMF.load(tmp_path / "m")
    u, i = [*df["user"].tolist()[:30], 999], [*df["item"].tolist()[:30], 0]
    np.testing.assert_array_equal(loaded.predict(u, i), m.predict(u, i))
    assert (loaded.rating_min_, loaded.rating_max_) == (m.rating_min_, m.rating_max_)


def test_seed_changes_result():
    data = tiny_interactions()
    a = BiasedMF(factors=4, epochs=3, random_state=0).fit(data)
    b = BiasedMF(factors=4, epochs=3, random_state=1).fit(data)
    assert not np.array_equal(a.user_factors_, b.user_factors_)


def test_interactions_input():
    df = _planted()
    X = Interactions.from_pandas(df)
    a = BiasedMF(factors=4, epochs=3, random_state=0).fit(X)
    b = BiasedMF(factors=4, epochs=3, random_state=0).fit(df)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


# -- SVD++ ------------------------------------------------------------------------------

def _factory_pp():
    return SVDpp(factors=8, epochs=20, learning_rate=0.02)


CASES_PP = list(iter_checks(_factory_pp))


@pytest.mark.parametrize("name, check", CASES_PP, ids=[n for n, _ in CASES_PP])
def test_contract_svdpp(name, check):
    check()


def test_svdpp_learns_planted_ratings():
    df = _planted()
    test = df.sample(frac=0.2, random_state=0)
    train = df.drop(test.index)
    m = SVDpp(factors=4, epochs=60, learning_rate=0.01, random_state=0).fit(train)
    pred = m.predict(test["user"].tolist(), test["item"].tolist())
    baseline = rmse(test["rating"], np.full(len(test), train["rating"].mean()))
    assert rmse(test["rating"], pred) < 0.8 * baseline
    assert m.implicit_factors_.shape == (m.n_items_, 4)


def test_svdpp_history_closed_form():
    df = _planted()
    m = SVDpp(factors=4, epochs=5, random_state=0).fit(df)
    hist = [int(x) for x in m.item_vocab_.ids[[1, 4, 7]]]
    ids, scores = m.recommend(history=hist, k=5, exclude_seen=True)
    z = m.implicit_factors_[[1, 4, 7]].sum(axis=0) / np.sqrt(3)
    idx = m.item_vocab_.index(list(ids))
    manual = m.global_mean_ + m.item_bias_[idx] + m.item_factors_[idx] @ z
    np.testing.assert_allclose(scores, manual, rtol=1e-5, atol=1e-5)


def test_svdpp_bad_input():
    df = _planted()
    with pytest.raises(DataError, match="rating"):
        SVDpp().fit(df[["user", "item"]])
    with pytest.raises(DataError, match="factors"):
        SVDpp(factors=0).fit(df)
