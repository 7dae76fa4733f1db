"""partial_fit's item-side updates (maasrec.models._online): EASE exact, ALS/BPRMF anchored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec.base import Recommender
from maasrec.models import ALS, BPRMF, EASE


def _planted(seed=0, n_users=60, n_items=40, n=700):
    """Two groups of users, each preferring one half of the catalogue (80%)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    half = n_items // 2
    own = rng.random(n) < 0.8
    items = np.where(own == (users % 2 == 0), rng.integers(0, half, n),
                     rng.integers(half, n_items, n))
    df = pd.DataFrame({"user": users + 100, "item": items + 1})
    return df.drop_duplicates(["user", "item"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def parts():
    df = _planted()
    base, new = df.iloc[:500], df.iloc[500:]
    new = new[new["item"].isin(base["item"])]
    new = pd.concat([new, pd.DataFrame({"user": [900, 900, 900, 901], "item": [1, 2, 3, 4]})])
    return base.reset_index(drop=True), new.reset_index(drop=True)


def _weights(model: EASE, items) -> np.ndarray:
    idx = model.item_vocab_.index(items)
    return model.B_[np.ix_(idx, idx)]


@pytest.mark.parametrize("n_users_new", [1, 3, 50])  # Woodbury (rank 2-6), re-inversion
def test_ease_fold_in_equals_the_refit(parts, n_users_new):
    base, new = parts
    pick = sorted(new["user"].unique())[:n_users_new]
    part = new[new["user"].isin(pick)]
    model = EASE(l2=5.0).fit(base).partial_fit(part)
    refit = EASE(l2=5.0).fit(pd.concat([base, part]))
    items = sorted(base["item"].unique())
    np.testing.assert_allclose(_weights(model, items), _weights(refit, items), atol=1e-5)
    users = sorted(part["user"].unique())
    np.testing.assert_array_equal(model.recommend(users, k=5)[0], refit.recommend(users, k=5)[0])


def test_ease_fold_in_with_values_and_after_load(parts, tmp_path):
    base, new = parts
    base = base.assign(rating=np.linspace(1, 5, len(base)))
    new = new.assign(rating=2.0)
    model = EASE(l2=5.0, implicit=False).fit(base)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")  # no inverse kept: computed on first use
    assert getattr(loaded, "_inverse", None) is None
    # a pair already there gets a new value: the old row leaves the Gram matrix
    again = base.iloc[:5].assign(rating=-1.0)
    for m in (model, loaded):
        m.partial_fit(new)
        m.partial_fit(again)
    refit = EASE(l2=5.0, implicit=False).fit(pd.concat([base, new, again])
                                             .drop_duplicates(["user", "item"], keep="last"))
    items = sorted(base["item"].unique())
    for m in (model, loaded):
        np.testing.assert_allclose(_weights(m, items), _weights(refit, items), atol=1e-5)


def test_ease_batching_changes_only_rounding(parts):
    base, new = parts
    one = EASE(l2=5.0).fit(base).partial_fit(new)
    many = EASE(l2=5.0).fit(base)
    for chunk in np.array_split(np.arange(len(new)), 7):
        many.partial_fit(new.iloc[chunk])
    np.testing.assert_allclose(many.B_, one.B_, atol=1e-7)


def _als_objective(model: ALS) -> float:
    """Hu et al.'s objective on the model's (binary) seen_, dense (tiny data)."""
    R = model.seen_.toarray() > 0
    C = 1.0 + model.alpha * R
    X, Y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    return float((C * (R - X @ Y.T) ** 2).sum()
                 + model.regularization * ((X ** 2).sum() + (Y ** 2).sum()))


def test_als_fold_in_lowers_the_objective(parts):
    base, new = parts
    model = ALS(factors=4, iterations=3, regularization=1.0, random_state=0).fit(base)
    stale = ALS(factors=4, iterations=3, regularization=1.0, random_state=0).fit(base)
    model.partial_fit(new)
    # the stale model on the merged data: its factors, new users at zero
    stale.seen_, stale.user_vocab_ = model.seen_, model.user_vocab_
    stale.user_factors_ = np.vstack([stale.user_factors_, np.zeros(
        (model.n_users_ - len(stale.user_factors_), 4), np.float32)])
    assert _als_objective(model) < _als_objective(stale) - 1e-3


def _auc_of_new(model, base: pd.DataFrame, new: pd.DataFrame) -> float:
    """Share of (new positive, non-positive item) pairs ranked right, known users."""
    known = new[new["user"].isin(base["user"])]
    wins = []
    for u, grp in known.groupby("user"):
        seen = set(base.loc[base["user"] == u, "item"]) | set(grp["item"])
        neg = [i for i in model.item_vocab_.ids if i not in seen]
        s_pos = model.score([u] * len(grp), grp["item"].tolist())
        s_neg = model.score([u] * len(neg), neg)
        wins.append((s_pos[:, None] > s_neg[None, :]).mean())
    return float(np.mean(wins))


def test_bprmf_fold_in_ranks_the_new_positives_higher(parts):
    base, new = parts
    stale = BPRMF(factors=8, epochs=20, random_state=0).fit(base)
    model = BPRMF(factors=8, epochs=20, random_state=0).fit(base).partial_fit(new)
    assert _auc_of_new(model, base, new) > _auc_of_new(stale, base, new) + 0.02


@pytest.mark.parametrize("factory", [
    lambda: ALS(factors=4, iterations=3, random_state=0),
    lambda: BPRMF(factors=4, epochs=3, random_state=0),
])
def test_anchored_fold_in_is_exactly_batching_invariant_and_seeded(parts, factory):
    base, new = parts
    one = factory().fit(base).partial_fit(new)
    twice = factory().fit(base).partial_fit(new)
    many = factory().fit(base)
    for chunk in np.array_split(np.arange(len(new)), 4):
        many.partial_fit(new.iloc[chunk])
    for m in (twice, many):
        np.testing.assert_array_equal(m.user_factors_, one.user_factors_)
        np.testing.assert_array_equal(m.item_factors_, one.item_factors_)


def test_a_refit_starts_a_new_anchor(parts):
    base, new = parts
    model = ALS(factors=4, iterations=3, random_state=0).fit(base).partial_fit(new)
    model.fit(base)  # new factors: the old anchor no longer applies
    model.partial_fit(new)
    fresh = ALS(factors=4, iterations=3, random_state=0).fit(base).partial_fit(new)
    np.testing.assert_array_equal(model.item_factors_, fresh.item_factors_)
    np.testing.assert_array_equal(model.user_factors_, fresh.user_factors_)
