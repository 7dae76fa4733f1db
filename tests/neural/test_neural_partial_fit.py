"""partial_fit of SequentialRecommender and HybridRecommender (maasrec.neural._online)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec.exceptions import DataError, UnknownIdError
from maasrec.neural import HybridRecommender, SequentialRecommender


def _sequences(seed=0, n_users=40, n_items=30, length=15):
    """Users walking the catalogue: item i is mostly followed by item i + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        i = int(rng.integers(0, n_items))
        for t in range(length):
            rows.append((u + 100, i + 1, u * 1000 + t))
            i = (i + 1) % n_items if rng.random() < 0.8 else int(rng.integers(0, n_items))
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    # no repeated (user, item): extend_history and fit keep one row per pair in a call
    return df.drop_duplicates(["user", "item"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def seq_parts():
    df = _sequences()
    cut = df.groupby("user")["timestamp"].transform(lambda t: t.iloc[min(8, len(t) - 1)])
    base, new = df[df["timestamp"] < cut], df[df["timestamp"] >= cut]
    extra = pd.DataFrame({"user": [900] * 6, "item": [3, 4, 5, 6, 7, 8],
                          "timestamp": np.arange(6) + 10**6})
    return base.reset_index(drop=True), pd.concat([new, extra]).reset_index(drop=True)


def _seq():
    return SequentialRecommender(max_len=10, dim=16, n_layers=1, n_heads=1, epochs=3,
                                 dropout=0.1, random_state=0, validation_fraction=None)


def _next_item_loss(model, users) -> float:
    """Mean full-softmax cross-entropy of each history's items given their prefix."""
    idx = model.user_vocab_.index(users)
    losses = []
    for u in idx:
        seq = model.history_items_[model.history_indptr_[u]:model.history_indptr_[u + 1]]
        prefixes = [seq[:t] for t in range(1, len(seq))]
        s = torch.from_numpy(np.asarray(model._score_sequences(prefixes)))
        losses.append(torch.nn.functional.cross_entropy(s, torch.from_numpy(seq[1:])).item())
    return float(np.mean(losses))


def test_sequential_batching_invariant_and_seeded(seq_parts):
    base, new = seq_parts
    one = _seq().fit(base).partial_fit(new)
    again = _seq().fit(base).partial_fit(new)
    many = _seq().fit(base)
    for chunk in np.array_split(np.arange(len(new)), 3):
        many.partial_fit(new.iloc[chunk])
    for m in (again, many):
        np.testing.assert_array_equal(m.history_items_, one.history_items_)
        for (k, a), b in zip(one.network_.state_dict().items(),
                             m.network_.state_dict().values(), strict=True):
            assert torch.equal(a, b), k


def test_sequential_fold_in_learns_the_new_sequences(seq_parts):
    base, new = seq_parts
    model = _seq().fit(base)
    # the histories alone (no training): extend_history for known users
    stale = _seq().fit(base)
    stale.extend_history(new[new["user"] != 900])
    model.partial_fit(new)
    users = sorted(new["user"].unique())[:20]
    users = [u for u in users if u != 900]
    np.testing.assert_array_equal(  # the same histories
        np.concatenate([model.history_items_[model.history_indptr_[u]:
                                             model.history_indptr_[u + 1]]
                        for u in model.user_vocab_.index(users)]),
        np.concatenate([stale.history_items_[stale.history_indptr_[u]:
                                             stale.history_indptr_[u + 1]]
                        for u in stale.user_vocab_.index(users)]))
    assert _next_item_loss(model, users) < _next_item_loss(stale, users) - 0.01
    # the new user is known now; its events are seen
    ids, _ = model.recommend(900, k=5)
    assert not set(ids.tolist()) & {3, 4, 5, 6, 7, 8}


def test_sequential_does_not_change_the_served_network(seq_parts):
    base, new = seq_parts
    import copy

    model = _seq().fit(base)
    before = {k: v.clone() for k, v in model.network_.state_dict().items()}
    copy.copy(model).partial_fit(new)  # what the service does: a shallow copy
    for k, v in model.network_.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_sequential_refuses_new_items(seq_parts):
    base, _ = seq_parts
    model = _seq().fit(base)
    with pytest.raises(UnknownIdError, match="4242"):
        model.partial_fit(pd.DataFrame({"user": [100], "item": [4242], "timestamp": [1]}))


@pytest.fixture(scope="module")
def hyb_parts():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 40, 600) + 100,
                       "item": rng.integers(0, 30, 600) + 1}).drop_duplicates(["user", "item"])
    base, new = df.iloc[:400], df.iloc[400:]
    new = new[new["item"].isin(base["item"])]
    new = pd.concat([new, pd.DataFrame({"user": [900, 900, 900], "item": [1, 2, 3]})])
    return base.reset_index(drop=True), new.reset_index(drop=True)


def test_hybrid_users_follow_their_history(hyb_parts):
    base, new = hyb_parts
    model = HybridRecommender(dim=16, epochs=3, random_state=0).fit(base)
    u = int(new["user"].iloc[0])
    before = model.recommend(u, k=5)[1]
    model.partial_fit(new)
    # the new user is scored as a history= user; a known user's vector moved
    a_ids, a_sc = model.recommend(900, k=5)
    b_ids, b_sc = model.recommend(history=[1, 2, 3], k=5)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_sc, b_sc, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.recommend(u, k=5)[1], before)
    many = HybridRecommender(dim=16, epochs=3, random_state=0).fit(base)
    for chunk in np.array_split(np.arange(len(new)), 3):
        many.partial_fit(new.iloc[chunk])
    np.testing.assert_array_equal(many.user_repr_, model.user_repr_)


@pytest.mark.slow
def test_hybrid_attention_scorer_is_refused(hyb_parts):
    base, new = hyb_parts
    model = HybridRecommender(dim=16, epochs=1, scorer="attention", random_state=0).fit(base)
    n = model.n_users_
    with pytest.raises(DataError, match="refit"):
        model.partial_fit(new)
    assert model.n_users_ == n


def test_hybrid_does_not_change_the_served_model(hyb_parts):
    import copy

    base, new = hyb_parts
    model = HybridRecommender(dim=16, epochs=2, random_state=0).fit(base)
    before = model.recommend([100, 101], k=5)
    weights = {k: v.clone() for k, v in model.item_tower_.state_dict().items()}
    copy.copy(model).partial_fit(new)  # what the service does: a shallow copy
    after = model.recommend([100, 101], k=5)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    for k, v in model.item_tower_.state_dict().items():
        assert torch.equal(v, weights[k]), k
