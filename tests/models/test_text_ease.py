"""TextEASE: EASE with item text in its Gram matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec import load
from maasrec.data import Interactions, ItemFeatures
from maasrec.encoders import TextEncoder
from maasrec.exceptions import DataError
from maasrec.models import EASE, TextEASE
from maasrec.testing.components import tiny_text_model


def _data(n_users=40, n_items=24, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(u, i) for u in range(n_users) for i in rng.choice(n_items, 6, replace=False)]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    X = Interactions.from_pandas(frame, "user", "item")
    # two families of items: their texts share words within a family
    texts = pd.DataFrame({"item": np.arange(n_items),
                          "text": [("space alien robot" if i % 2 else "love story paris")
                                   + f" item {i}" for i in range(n_items)]})
    return X, ItemFeatures.from_pandas(texts, "item", text="text")


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(tiny_text_model("bert", seed=0), cache_dir=False)


def test_text_weight_zero_is_ease(encoder):
    X, F = _data()
    a = TextEASE(l2=10.0, text_weight=0.0, text_encoder=encoder).fit(X, item_features=F)
    b = EASE(l2=10.0).fit(X)
    np.testing.assert_allclose(a.B_, b.B_, atol=1e-6)


def test_text_changes_the_weights_towards_similar_texts(encoder):
    X, F = _data()
    plain = EASE(l2=10.0).fit(X)
    text = TextEASE(l2=10.0, text_weight=2.0, text_encoder=encoder).fit(X, item_features=F)
    assert not np.allclose(plain.B_, text.B_)
    # the text term is the side vectors' Gram matrix: same family, larger similarity
    S = text.side_ @ text.side_.T
    same = np.equal.outer(np.arange(24) % 2, np.arange(24) % 2) & ~np.eye(24, dtype=bool)
    assert S[same].mean() > S[~same & ~np.eye(24, dtype=bool)].mean()


def test_save_load_same_scores_and_deterministic(encoder, tmp_path):
    X, F = _data()
    m = TextEASE(l2=10.0, text_weight=1.0, text_encoder=encoder).fit(X, item_features=F)
    again = TextEASE(l2=10.0, text_weight=1.0, text_encoder=encoder).fit(X, item_features=F)
    np.testing.assert_array_equal(m.B_, again.B_)
    m.save(tmp_path / "m")
    m2 = load(tmp_path / "m")
    assert isinstance(m2, TextEASE)
    np.testing.assert_array_equal(m.side_, m2.side_)
    ids, scores = m.recommend([0, 1, 2], k=5)
    ids2, scores2 = m2.recommend([0, 1, 2], k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-6)
    hist_ids, _ = m2.recommend(history=[[0, 3, 5]], k=5)
    assert hist_ids.shape == (1, 5)


def test_partial_fit_equals_refit(encoder):
    X, F = _data()
    frame = X.to_pandas()
    first, rest = frame.iloc[: len(frame) - 30], frame.iloc[len(frame) - 30:]
    m = TextEASE(l2=10.0, text_weight=1.0, text_encoder=encoder).fit(
        Interactions.from_pandas(first, "user", "item"), item_features=F)
    m.partial_fit(rest)
    # the refit's problem with the fit's text term (its scale is fixed at fit)
    from maasrec.models.ease import _ease_weights

    full = _ease_weights(m.seen_.astype(np.float64), 10.0, side=m.side_)
    np.testing.assert_allclose(m.B_, full, atol=1e-5)
    assert m.seen_.nnz == len(frame)


def test_explain_is_exact(encoder):
    X, F = _data()
    m = TextEASE(l2=10.0, text_weight=1.0, text_encoder=encoder).fit(X, item_features=F)
    seen = set(X.to_csr()[0].indices)
    item = next(i for i in range(24) if i not in seen)
    e = m.explain(0, item, n=100)  # every history item
    assert e.method == "exact"
    assert sum(c.weight for c in e.contributions) == pytest.approx(e.score - e.baseline,
                                                                  abs=1e-5)


def test_bad_input_names_the_problem(encoder):
    X, F = _data()
    with pytest.raises(DataError, match="item_features with text"):
        TextEASE(text_encoder=encoder).fit(X)
    with pytest.raises(DataError, match="text_weight"):
        TextEASE(text_weight=-1.0, text_encoder=encoder).fit(X, item_features=F)
    with pytest.raises(DataError, match="text_encoder"):
        TextEASE(text_encoder=3).fit(X, item_features=F)
