"""TextEASE.add_items: new items from their text, equal to the bordered refit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from maasrec import load
from maasrec.data import Interactions, ItemFeatures
from maasrec.encoders import TextEncoder
from maasrec.exceptions import ColdStartWarning, DataError, NotFittedError
from maasrec.models import TextEASE
from maasrec.models.ease import _ease_weights
from maasrec.testing.components import tiny_text_model

N_ITEMS = 24


def _texts(items):
    return pd.DataFrame({"item": list(items),
                         "text": [("space alien robot" if i % 2 else "love story paris")
                                  + f" item {i}" for i in items]})


def _data(n_users=40, n_warm=20, seed=0):
    """Interactions on items 0..n_warm-1 only; text for all N_ITEMS items."""
    rng = np.random.default_rng(seed)
    rows = [(u, i) for u in range(n_users) for i in rng.choice(n_warm, 6, replace=False)]
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item"]), "user", "item")
    return X, ItemFeatures.from_pandas(_texts(range(N_ITEMS)), "item", text="text")


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(tiny_text_model("bert", seed=0), cache_dir=False)


def _fitted(encoder, **kw):
    X, F = _data()
    return TextEASE(l2=10.0, text_weight=2.0, text_encoder=encoder, **kw).fit(
        X, item_features=F), F


def test_add_items_equals_the_bordered_refit(encoder):
    m, F = _fitted(encoder)
    n = m.n_items_
    B_old = m.B_.copy()
    assert m.add_items(F) is m
    assert m.n_items_ == N_ITEMS and m.B_.shape == (N_ITEMS, N_ITEMS)
    assert m.item_vocab_.ids[n:].tolist() == list(range(20, N_ITEMS))
    # the refit's problem: the new items' columns of X are empty, the text term is theirs
    # on the fit's scale
    full = _ease_weights(m.seen_.astype(np.float64), 10.0, side=m.side_)
    np.testing.assert_allclose(m.B_, full, atol=1e-6)
    # the new side rows have the fit's norm and the text of their items
    norms = np.linalg.norm(m.side_, axis=1)
    np.testing.assert_allclose(norms[n:], norms[:n].max(), rtol=1e-5)
    assert not np.allclose(m.B_[:n, :n], B_old)  # known items' weights move, as in a refit
    # and the new items are scored and recommended
    S = m.score_indices(np.arange(m.n_users_))
    assert S.shape == (m.n_users_, N_ITEMS) and np.isfinite(S).all()
    assert np.abs(S[:, n:]).max() > 0
    ids, _ = m.recommend(0, k=N_ITEMS, exclude_seen=True)
    assert set(range(20, N_ITEMS)) <= set(ids.tolist())


def test_add_items_in_two_calls_equals_one(encoder):
    one, F = _fitted(encoder)
    two, _ = _fitted(encoder)
    one.add_items(F)
    two.add_items(F.align(two.item_vocab_.extend([20, 21])))
    two.add_items(F)
    assert two.item_vocab_.ids.tolist() == one.item_vocab_.ids.tolist()
    np.testing.assert_allclose(two.B_, one.B_, atol=1e-6)


def test_new_items_similar_in_text_score_higher(encoder):
    m, F = _fitted(encoder)
    m.add_items(F)
    # a history of odd ("space alien robot") items: the odd new items 21, 23 rank above
    # the even ones 20, 22
    ids, _ = m.recommend(history=[[1, 3, 5, 7, 9]], k=N_ITEMS, items=[20, 21, 22, 23])
    assert set(ids[0, :2].tolist()) == {21, 23}


def test_add_items_then_partial_fit_and_save_load(encoder, tmp_path):
    m, F = _fitted(encoder)
    m.add_items(F)
    m.partial_fit(pd.DataFrame({"user": [0, 0, 99], "item": [21, 22, 23]}))
    full = _ease_weights(m.seen_.astype(np.float64), 10.0, side=m.side_)
    np.testing.assert_allclose(m.B_, full, atol=1e-5)
    m.save(tmp_path / "m")
    m2 = load(tmp_path / "m")
    np.testing.assert_array_equal(m2.B_, m.B_)
    np.testing.assert_array_equal(m2.side_, m.side_)
    assert m2.item_vocab_.ids.tolist() == m.item_vocab_.ids.tolist()
    # a loaded model adds items too (its inverse is recomputed from seen_ and side_);
    # an in-memory encoder is not saved: it is given back, and one of another size refused
    F2 = ItemFeatures.from_pandas(_texts([30, 31]), "item", text="text")
    m2.text_encoder = TextEncoder(tiny_text_model("bert", hidden_size=16), cache_dir=False)
    with pytest.raises(DataError, match="encoder of the fit"):
        m2.add_items(F2)
    assert m2.n_items_ == N_ITEMS
    m2.text_encoder = encoder
    m.add_items(F2)
    m2.add_items(F2)
    np.testing.assert_allclose(m2.B_, m.B_, atol=1e-5)


def test_known_items_only_is_a_no_op(encoder):
    m, F = _fitted(encoder)
    B = m.B_
    m.add_items(F.align(m.item_vocab_))
    assert m.B_ is B and m.n_items_ == 20


def test_bad_input_and_items_without_text(encoder):
    m, _ = _fitted(encoder)
    with pytest.raises(DataError, match="ItemFeatures"):
        m.add_items(pd.DataFrame({"item": [50]}))
    no_text = ItemFeatures.from_pandas(pd.DataFrame({"item": [50, 51], "g": ["a", "b"]}),
                                       "item", categorical=["g"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.warns(ColdStartWarning, match="no text"):
            m.add_items(no_text)
    assert m.n_items_ == 22
    S = m.score_indices(np.arange(3))
    np.testing.assert_array_equal(S[:, 20:], 0.0)
    with pytest.raises(NotFittedError):
        TextEASE(text_encoder=encoder).add_items(no_text)
