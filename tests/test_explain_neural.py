"""Recommender.explain for the neural models and LMRanker, and their deletion test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec.data import Interactions, ItemFeatures, datasets
from maasrec.encoders import TextEncoder
from maasrec.exceptions import DataError, UnknownIdError
from maasrec.explain import _scores_of, deletion_test, explain
from maasrec.lm_ranker import LMRanker
from maasrec.models import EASE
from maasrec.neural import (
    BERT4Rec,
    HybridRecommender,
    LightGCN,
    MultVAE,
    NeuMF,
    RecVAE,
    SequentialRecommender,
)
from maasrec.testing.components import tiny_text_model


@pytest.fixture(scope="module")
def synth():
    return datasets.make_synthetic(n_users=300, n_items=120, density=0.08, n_factors=4,
                                   seed=3, with_text=True)


FACTORIES = {
    "NeuMF": lambda: NeuMF(epochs=3, dim=16, random_state=0, device="cpu"),
    "Hybrid": lambda: HybridRecommender(item_encoders=("id",), dim=16, epochs=15,
                                        random_state=0, device="cpu"),
    "HybridAttention": lambda: HybridRecommender(item_encoders=("id",), scorer="attention",
                                                 dim=16, epochs=3, random_state=0,
                                                 device="cpu"),
    "MultVAE": lambda: MultVAE(epochs=10, random_state=0, device="cpu"),
    "RecVAE": lambda: RecVAE(hidden_dim=100, latent_dim=32, epochs=10, learning_rate=0.003,
                             random_state=0, device="cpu"),
    "LightGCN": lambda: LightGCN(epochs=10, dim=16, random_state=0, device="cpu"),
    "Sequential": lambda: SequentialRecommender(epochs=4, max_len=12, dim=16, random_state=0,
                                                device="cpu"),
    "BERT4Rec": lambda: BERT4Rec(epochs=4, max_len=12, dim=16, random_state=0, device="cpu"),
}


@pytest.fixture(scope="module")
def fitted(synth):
    return {name: make().fit(synth.interactions) for name, make in FACTORIES.items()}


def _active(X, r=0):
    lengths = np.diff(X.to_csr().indptr)
    return X.user_vocab.ids[np.argsort(-lengths, kind="stable")[r]]


def _history(model, X, user):
    """The user's history as the model reads it (ordered for the sequence models)."""
    u = int(model.user_vocab_.index([user])[0])
    from maasrec.explain import _stored_sequence

    if getattr(model, "_explain_sequence", None) is not None:
        return list(model.item_vocab_.ids[_stored_sequence(model, u)])
    return list(model.item_vocab_.ids[model.seen_[u].indices])


@pytest.mark.parametrize("name", list(FACTORIES))
def test_score_is_the_models_score_and_leave_one_out_is_what_it_says(fitted, synth, name):
    model, X = fitted[name], synth.interactions
    user = _active(X)
    ids, scores = model.recommend(user, k=2)
    e = model.explain(user, ids[0], n=3)
    np.testing.assert_allclose(e.score, scores[0], rtol=1e-4, atol=1e-4)
    assert len(e.contributions) == 3 and e.method in ("leave-one-out", "exact")
    assert e.reason.startswith(("Because you watched", "No item"))
    hist = _history(model, X, user)
    full = model.explain(history=hist, item=ids[1], n=len(hist))
    assert full.n_history == len(hist) == len(full.contributions)
    h = model.item_vocab_.index(hist)
    t = int(model.item_vocab_.index([ids[1]])[0])
    if full.method == "exact":  # LightGCN's fold-in: the weights add up to the score
        assert full.baseline == 0.0
        np.testing.assert_allclose(sum(c.weight for c in full.contributions), full.score,
                                   rtol=1e-5, atol=1e-6)
        return
    # each weight is the score minus the score with that item / position left out
    by_pos = {}
    for c in full.contributions:
        key = c.position if c.position is not None else hist.index(c.item)
        by_pos[key] = c.weight
    picks = sorted(by_pos, key=lambda p: -abs(by_pos[p]))[:3]
    s = _scores_of(model, [h] + [np.delete(h, p) for p in picks], np.array([t]))[:, 0]
    np.testing.assert_allclose(s[0], full.score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([by_pos[p] for p in picks], s[0] - s[1:], rtol=1e-3,
                               atol=1e-4)


@pytest.mark.parametrize("name", ["Sequential", "BERT4Rec"])
def test_sequence_positions_outside_the_window_weigh_zero(fitted, synth, name):
    model = fitted[name]
    items = list(synth.interactions.item_vocab.ids[:30])
    hist = [*items[:20], items[3]]  # 21 positions, one repeat; the window is 12 (11)
    target = items[25]
    e = model.explain(history=hist, item=target, n=len(hist))
    assert sorted(c.position for c in e.contributions) == list(range(21))
    window = 12 if name == "Sequential" else 11
    old = [c.weight for c in e.contributions if c.position < 21 - window]
    assert old and all(w == 0.0 for w in old)
    assert e.contributions[0].position >= 21 - window


def test_lightgcn_known_user_is_exact(fitted, synth):
    model = fitted["LightGCN"]
    user = _active(synth.interactions, 2)
    ids, scores = model.recommend(user, k=1)
    e = model.explain(user, ids[0], n=1000)
    assert e.method == "exact" and e.n_history == len(e.contributions)
    np.testing.assert_allclose(e.baseline + sum(c.weight for c in e.contributions), scores[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["LightGCN", "MultVAE", "RecVAE", "Hybrid"])
def test_same_cluster_history_items_weigh_more(fitted, synth, name):
    """Planted clusters: history items of the explained item's cluster support it more."""
    model, X = fitted[name], synth.interactions
    cluster = synth.metadata["item_cluster"]
    same, other = [], []
    for r in range(20):
        user = _active(X, r)
        item = model.recommend(user, k=1)[0][0]
        e = model.explain(user, item, n=1000)
        for c in e.contributions:
            (same if cluster[c.item] == cluster[item] else other).append(c.weight)
    assert same and other
    assert np.mean(same) > np.mean(other)


@pytest.mark.parametrize("name", ["LightGCN", "MultVAE", "RecVAE", "Hybrid", "NeuMF"])
def test_deletion_test_beats_random(fitted, name):
    res = deletion_test(fitted[name], n_users=40, k_remove=3, random_state=0)
    assert res.rank_drop_top > res.rank_drop_random
    assert res.score_drop_top > res.score_drop_random
    assert res.top_wins > 0.5


def test_sequence_models_run_the_deletion_test_on_ordered_histories(fitted, synth):
    model = fitted["Sequential"]
    res = deletion_test(model, synth.interactions, n_users=15, k_remove=2, random_state=0)
    assert res.n_users == 15 and np.isfinite(res.score_drop_top)


def test_bad_input(fitted, synth):
    X = synth.interactions
    for name in ("Hybrid", "Sequential", "LightGCN"):
        model = fitted[name]
        user = _active(X)
        had = _history(model, X, user)[-1]
        with pytest.raises(DataError, match="already in"):
            model.explain(user, had)
        with pytest.raises(DataError, match="already in"):
            model.explain(history=[had, had], item=had)
        with pytest.raises(UnknownIdError):
            model.explain("no such user", X.item_vocab.ids[0])
        with pytest.raises(UnknownIdError):
            model.explain(user, "no such item")
    with pytest.raises(DataError, match="takes no options"):
        explain(fitted["Hybrid"], _active(X), fitted["Hybrid"].recommend(_active(X), k=1)[0][0],
                options={"tokens": True})


def test_a_hybrid_without_history_modality_is_an_approximation(synth):
    X = synth.interactions
    model = NeuMF(user_encoders=("id",), epochs=1, dim=8, random_state=0,
                  device="cpu").fit(X)
    user = _active(X)
    ids, scores = model.recommend(user, k=1)
    e = model.explain(user, ids[0])
    assert e.method == "approximation" and e.baseline is None
    np.testing.assert_allclose(e.score, scores[0], rtol=1e-5)


# -- Hybrid with text: the modality split and text similarity ---------------------------
@pytest.fixture(scope="module")
def text_model(tmp_path_factory, synth):
    path = tmp_path_factory.mktemp("tiny-bert-explain") / "model"
    lm, tok = tiny_text_model("bert", hidden_size=32, seed=0)
    lm.save_pretrained(path)
    tok.save_pretrained(path)
    cache = tmp_path_factory.mktemp("emb-cache-explain")
    feats = synth.item_features
    model = HybridRecommender(item_encoders=["id", TextEncoder(str(path), cache_dir=str(cache))],
                              dim=16, epochs=3, random_state=0, device="cpu")
    return model.fit(synth.interactions, item_features=feats)


def test_hybrid_modalities_add_up_and_text_similarity(text_model, synth):
    model, X = text_model, synth.interactions
    user = _active(X, 1)
    ids, _ = model.recommend(user, k=1)
    e = model.explain(user, ids[0], n=5, item_titles=synth.item_features)
    assert set(e.modalities) == {"id", "text", "bias"}
    # the dot scorer: the parts and the bias add up to the score
    np.testing.assert_allclose(sum(e.modalities.values()), e.score, rtol=1e-4, atol=1e-4)
    sims = [c.extras["text_similarity"] for c in e.contributions]
    assert all(-1.0 - 1e-9 <= s <= 1.0 + 1e-9 for s in sims)
    d = e.to_dict()
    assert "text_similarity" in d["contributions"][0]["extras"]
    # titles from the item text: the reason names the history items by their text
    assert e.reason.startswith("Because you watched") and "item " not in e.reason


# -- LMRanker ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm():
    rng = np.random.default_rng(0)
    group = {1000 + i: i % 2 for i in range(24)}
    words = {0: "action war space", 1: "love story drama"}
    rows = []
    for u in range(30):
        own = [i for i, g in group.items() if g == u % 2]
        for t, i in enumerate(rng.choice(own, size=6, replace=False)):
            rows.append((f"u{u}", int(i), 1000 + t))
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    feats = ItemFeatures.from_pandas(pd.DataFrame({"item": list(group), "text": [
        f"{words[g]} film {i % 7}" for i, g in group.items()]}), "item", text="text")
    model = LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"), n_candidates=8,
                     history_len=3, max_length=80, epochs=1, learning_rate=2e-3,
                     batch_size=20, random_state=0)
    return model.fit(X, item_features=feats), X


def test_lmranker_leave_one_out_over_the_prompt(lm):
    model, X = lm
    user = "u0"
    ids, _ = model.recommend(user, k=2)
    e = model.explain(user, ids[0], n=10)
    np.testing.assert_allclose(e.score, model.decision_function(user, ids[0])[0], rtol=1e-5,
                               atol=1e-5)
    assert e.method == "leave-one-out" and e.n_history == 3  # history_len items in the prompt
    hist = list(X.item_vocab.ids[X.sequences()[X.user_vocab.index(["u0"])[0]]])
    cold = model.explain(history=hist, item=ids[1], n=10)
    assert cold.n_history == len(hist)
    old = [c.weight for c in cold.contributions if c.position < len(hist) - 3]
    assert all(w == 0.0 for w in old)
    h = model.item_vocab_.index(hist)
    t = np.array([model.item_vocab_.index([ids[1]])[0]])
    top = max(cold.contributions, key=lambda c: abs(c.weight))
    s = _scores_of(model, [h, np.delete(h, top.position)], t)[:, 0]
    np.testing.assert_allclose([cold.score, top.weight], [s[0], s[0] - s[1]], rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(DataError, match="tokens"):
        model.explain(user, ids[0], tokens="yes")
    res = deletion_test(model, X, n_users=6, k_remove=2, min_history=5, random_state=0)
    assert res.n_users == 6 and np.isfinite(res.score_drop_top)


def test_lmranker_token_attributions(lm):
    pytest.importorskip("captum")
    model, _ = lm
    ids, _ = model.recommend("u1", k=1)
    e = model.explain("u1", ids[0], tokens=True)
    toks = e.details["tokens"]
    assert toks and all(isinstance(t, str) for t, _ in toks)
    assert toks[0][0] == "[CLS]"
    # integrated gradients are complete: attributions sum to logit - baseline logit
    # (up to the reported convergence delta)
    assert abs(e.details["convergence_delta"]) < 0.1 * max(1.0, abs(e.score))
    assert e.to_dict()["details"]["tokens"] == toks
