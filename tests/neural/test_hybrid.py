"""Tests of HybridRecommender and NeuMF: text/feature towers, cold items, cold users,
early stopping, NaN handling, save/load, retrieval (tiny random language models)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import maasrec.neural._hybrid_task as hybrid_task
from maasrec import load
from maasrec.data import Interactions, ItemFeatures
from maasrec.device import cuda_available
from maasrec.encoders import TextEncoder
from maasrec.exceptions import DataError, ModelFormatError, NotFittedError, UnknownIdError
from maasrec.metrics import evaluate
from maasrec.neural import HybridRecommender, NeuMF
from maasrec.rankers import FaissRetriever
from maasrec.testing import tiny_interactions
from maasrec.testing.components import tiny_text_model
from maasrec.training import NonFiniteLossError

TOPIC_WORDS = {0: ["space", "star", "war", "action"], 1: ["love", "story", "drama", "comedy"]}


def _topic_text(topic: int, i: int) -> str:
    words = TOPIC_WORDS[topic]
    return " ".join(words[(i + j) % 4] for j in range(3))


def planted(n_users=60, n_items=40, per_user=8, seed=0, n_new=10):
    """Two topics; users pick items of their topic; item text names the topic.

    Returns train interactions over ``n_items`` items (ids 0..n_items-1), the features of
    those items plus ``n_new`` new items (ids from 1000, half per topic), and topics.
    """
    rng = np.random.default_rng(seed)
    topic = np.arange(n_items) % 2
    rows = []
    for u in range(n_users):
        pool = np.flatnonzero(topic == u % 2)
        for i in rng.choice(pool, size=per_user, replace=False):
            rows.append((f"u{u}", int(i)))
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item"]))
    new_ids = list(range(1000, 1000 + n_new))
    new_topic = np.arange(n_new) % 2
    ids = list(range(n_items)) + new_ids
    texts = [_topic_text(t, i) for i, t in enumerate(topic)] + [
        _topic_text(t, i + 7) for i, t in enumerate(new_topic)]
    genres = [["scifi"] if t == 0 else ["romance"] for t in list(topic) + list(new_topic)]
    frame = pd.DataFrame({"item": ids, "text": texts, "genres": genres})
    feats = ItemFeatures.from_pandas(frame, "item", text="text", multi_hot=["genres"])
    return X, feats, dict(zip(ids, list(topic) + list(new_topic)))


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    """A tiny random BERT saved to disk, so models reference it by path (and save)."""
    path = tmp_path_factory.mktemp("tiny-bert") / "model"
    model, tok = tiny_text_model("bert", hidden_size=32, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emb-cache")


def _text_model(tiny_lm_dir, cache_dir, **kw):
    params = dict(item_encoders=["id", TextEncoder(str(tiny_lm_dir), cache_dir=str(cache_dir))],
                  dim=16, epochs=25, batch_size=16, random_state=0, learning_rate=1e-2)
    params.update(kw)
    return HybridRecommender(**params)


@pytest.fixture(scope="module")
def fitted_text(tiny_lm_dir, cache_dir):
    X, feats, topic = planted()
    model = _text_model(tiny_lm_dir, cache_dir).fit(X, item_features=feats)
    return model, X, feats, topic


def _topic_share(ids, topic, t):
    return np.mean([topic[int(i)] == t for i in np.ravel(ids)])


def test_defaults_are_id_only_without_text_and_id_text_with_it(fitted_text):
    m = HybridRecommender(dim=8, epochs=2, random_state=0).fit(tiny_interactions())
    assert m.modalities_ == {"item": ["id"], "user": ["history"]}
    model, *_ = fitted_text
    assert model.modalities_["item"] == ["id", "text"]
    assert model.text_fingerprint_ and model.item_repr_.shape == (40, 16)


def test_loss_decreases_and_learns_the_topics(fitted_text):
    model, _X, _, topic = fitted_text
    losses = model.training_log_["losses"]
    assert losses[-1] < 0.9 * losses[0]
    ids, _ = model.recommend(["u0", "u1"], k=5)
    assert _topic_share(ids[0], topic, 0) >= 0.8 and _topic_share(ids[1], topic, 1) >= 0.8


def test_cold_items_become_recommendable_from_their_text(fitted_text, tmp_path):
    model, _X, feats, topic = fitted_text
    model.save(tmp_path / "copy")
    m = load(tmp_path / "copy")
    with pytest.raises(UnknownIdError):
        m.recommend("u0", k=3, items=[1000])
    m.add_items(feats)
    assert m.n_items_ == 50 and m.seen_.shape == (60, 50)
    assert not m.item_has_id_[40:].any()
    new = list(range(1000, 1010))
    ids, scores = m.recommend(["u0", "u1"], k=5, items=new)
    assert np.isfinite(scores).all()
    assert _topic_share(ids[0], topic, 0) >= 0.8, ids
    assert _topic_share(ids[1], topic, 1) >= 0.8, ids
    # new items rank by similarity to the known items of their topic
    sim, _ = m.similar_items(1000, k=5)
    assert _topic_share(sim, topic, topic[1000]) >= 0.8
    # known items keep their vectors; adding known ids again changes nothing
    np.testing.assert_array_equal(m.item_repr_[:40], model.item_repr_)
    before = m.item_repr_.copy()
    m.add_items(feats)
    np.testing.assert_array_equal(m.item_repr_, before)


def test_cold_user_from_history(fitted_text):
    model, _, _, topic = fitted_text
    hist = [i for i in range(40) if topic[i] == 1][:4]
    ids, _scores = model.recommend(history=hist, k=5)
    assert not set(ids.tolist()) & set(hist)
    assert _topic_share(ids, topic, 1) >= 0.8
    with pytest.raises(UnknownIdError, match="4242"):
        model.recommend(history=[hist[0], 4242], k=3)
    _ids2, s2 = model.recommend(history=[[], hist], k=5)  # empty history: popular items
    assert np.isfinite(s2).all()


def test_missing_text_is_masked(tiny_lm_dir, cache_dir):
    X, _feats, _topic = planted()
    frame = pd.DataFrame({"item": list(range(40)),
                          "text": [_topic_text(i % 2, i) if i % 5 else None for i in range(40)]})
    partial = ItemFeatures.from_pandas(frame, "item", text="text")
    assert not partial.text_mask.all()
    m = _text_model(tiny_lm_dir, cache_dir, epochs=5).fit(X, item_features=partial)
    assert np.isfinite(m.item_repr_).all()
    # an item without text is its id embedding alone (the text term is masked, not zero
    # text pushed through the projection and its bias)
    no_text = m.item_vocab_.index([i for i in range(40) if not i % 5])
    with torch.no_grad():
        ids = m.item_tower_.encoders["id"](torch.from_numpy(no_text)).numpy()
    np.testing.assert_allclose(m.item_repr_[no_text], ids, rtol=1e-6, atol=1e-7)


def test_features_modality_and_cold_items():
    X, feats, topic = planted()
    m = HybridRecommender(item_encoders=["id", "features"], dim=16, epochs=20, batch_size=16,
                          random_state=0, learning_rate=1e-2).fit(X, item_features=feats)
    m.add_items(feats)
    ids, _ = m.recommend(["u0", "u1"], k=4, items=list(range(1000, 1010)))
    assert _topic_share(ids[0], topic, 0) == 1 and _topic_share(ids[1], topic, 1) == 1
    with pytest.raises(DataError, match="text"):
        HybridRecommender(item_encoders=["id", "text"], epochs=1).fit(X)
    idonly = HybridRecommender(dim=8, epochs=1, random_state=0).fit(X)
    with pytest.raises(DataError, match="ids only"):
        idonly.add_items(feats)


def test_residual_fusion_is_the_id_plus_projected_text(fitted_text, tmp_path):
    model, X, feats, _ = fitted_text
    assert model.config_["fusion"] == "residual"  # the default
    tower = model.item_tower_
    enc = model._text_encoder()
    text = torch.from_numpy(enc.encode_base([str(t) for t in feats.text]))
    rows = feats.vocab.index(list(range(40)))
    with torch.no_grad():
        content = tower.residual["text"](text).numpy()
        ids = tower.encoders["id"](torch.arange(40)).numpy()
    has_id = model.item_has_id_
    expect = np.where(has_id[:, None], ids + content[rows], content[rows])
    np.testing.assert_allclose(model.item_repr_, expect, rtol=1e-5, atol=1e-6)
    # a new item is its projected text alone
    model.save(tmp_path / "m")
    m = load(tmp_path / "m").add_items(feats)
    new_rows = feats.vocab.index(list(range(1000, 1010)))
    np.testing.assert_allclose(m.item_repr_[40:], content[new_rows], rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="heads"):
        HybridRecommender(item_encoders=["id", "features"], dim=8, epochs=1,
                          fusion={"kind": "residual", "heads": 2}).fit(X, item_features=feats)


@pytest.fixture(scope="module")
def fitted_tied(tiny_lm_dir, cache_dir):
    X, feats, topic = planted()
    model = _text_model(tiny_lm_dir, cache_dir, tie_history=True,
                        history_activation="linear").fit(X, item_features=feats)
    return model, X, feats, topic


def _pooled_users(model, X, C):
    """The user vectors of the known users from history vectors ``C`` (sqrt pooling)."""
    R = X.to_csr()
    R = (R != 0).astype(np.float32)
    pooled = np.asarray((R @ C) / np.sqrt(np.maximum(R.sum(axis=1), 1.0)), np.float32)
    if model.history_activation == "tanh":
        pooled = np.tanh(pooled)
    with torch.no_grad():
        return model.user_tower_.single(torch.from_numpy(pooled)).numpy()


def test_untied_history_pools_its_own_item_tower(fitted_text, fitted_tied):
    model, X, _feats, topic = fitted_text
    tied, *_ = fitted_tied
    assert tied.history_tower_ is None and not hasattr(tied, "history_repr_")
    np.testing.assert_allclose(tied.user_repr_, _pooled_users(tied, X, tied.item_repr_),
                               rtol=1e-4, atol=1e-5)
    ids, _ = tied.recommend(["u0", "u1"], k=5)
    assert _topic_share(ids[0], topic, 0) >= 0.8 and _topic_share(ids[1], topic, 1) >= 0.8
    # the default is untied: a second tower with the item modalities, its own weights
    assert not model.tie_history and model.history_activation == "tanh"
    assert model.config_["history_tower"] == model.config_["item_tower"]
    assert set(model.history_tower_.input_dims) == {"id", "text"}
    assert model.history_repr_.shape == model.item_repr_.shape == (40, 16)
    assert not np.allclose(model.history_repr_, model.item_repr_)
    # the users pool the history vectors (then tanh), the scorer uses the item vectors
    np.testing.assert_allclose(model.user_repr_, _pooled_users(model, X, model.history_repr_),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(model.user_repr_, _pooled_users(model, X, model.item_repr_),
                           rtol=1e-3, atol=1e-3)
    # a cold user is pooled the same way as a known user with the same history
    hist = [int(i) for i in X.to_pandas().query("user == 'u3'")["item"]]
    np.testing.assert_allclose(model.recommend(history=hist, k=5)[1],
                               model.recommend("u3", k=5)[1], rtol=1e-5, atol=1e-5)


def test_untied_history_save_load_and_cold_items(fitted_text, tmp_path):
    model, _X, feats, topic = fitted_text
    users = ["u0", "u3", "u7"]
    ids, scores = model.recommend(users, k=6)
    model.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    for name in ("item_repr_", "history_repr_", "user_repr_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    for a, b in zip(loaded.history_tower_.state_dict().values(),
                    model.history_tower_.state_dict().values()):
        assert torch.equal(a, b)
    i2, s2 = loaded.recommend(users, k=6)
    np.testing.assert_array_equal(i2, ids)
    np.testing.assert_array_equal(s2, scores)
    np.testing.assert_array_equal(loaded.recommend(history=[0, 2, 4], k=4)[1],
                                  model.recommend(history=[0, 2, 4], k=4)[1])
    # new items get an item vector and a history vector, both from their text alone
    loaded.add_items(feats)
    assert loaded.history_repr_.shape == loaded.item_repr_.shape == (50, 16)
    np.testing.assert_array_equal(loaded.history_repr_[:40], model.history_repr_)
    enc = loaded._text_encoder()
    new_rows = feats.vocab.index(list(range(1000, 1010)))
    text = torch.from_numpy(enc.encode_base([str(t) for t in feats.text[new_rows]]))
    with torch.no_grad():
        expect = loaded.history_tower_.residual["text"](text).numpy()
    np.testing.assert_allclose(loaded.history_repr_[40:], expect, rtol=1e-5, atol=1e-6)
    # a user who has only seen new items is served from their history vectors
    new0 = [i for i in range(1000, 1010) if topic[i] == 0][:3]
    rec, _ = loaded.recommend(history=new0, k=5)
    assert _topic_share(rec, topic, 0) >= 0.8, rec
    loaded.save(tmp_path / "m2")
    again = load(tmp_path / "m2")
    np.testing.assert_array_equal(again.history_repr_, loaded.history_repr_)
    np.testing.assert_array_equal(again.recommend(history=new0, k=5)[1],
                                  loaded.recommend(history=new0, k=5)[1])


def test_untied_history_with_features_determinism_and_errors():
    X, feats, topic = planted()
    kw = dict(item_encoders=["id", "features"], dim=16, epochs=8, batch_size=16,
              random_state=3, learning_rate=1e-2, tie_history=False)
    a = HybridRecommender(**kw).fit(X, item_features=feats)
    b = HybridRecommender(**kw).fit(X, item_features=feats)
    np.testing.assert_array_equal(a.item_repr_, b.item_repr_)
    np.testing.assert_array_equal(a.history_repr_, b.history_repr_)
    a.add_items(feats)
    assert a.history_repr_.shape == (50, 16)
    ids, _ = a.recommend(history=[1000, 1002], k=4, items=list(range(1000, 1010)))
    assert _topic_share(ids, topic, 0) >= 0.75, ids
    # pairwise losses pool the untied history too
    p = HybridRecommender(dim=8, epochs=2, loss="bpr", random_state=0,
                          tie_history=False).fit(X)
    assert p.history_repr_.shape == (40, 8) and np.isfinite(p.user_repr_).all()
    # without a pooled history there is nothing to untie
    assert HybridRecommender(dim=8, epochs=1, user_encoders=["id"], tie_history=False,
                             random_state=0).fit(X).history_tower_ is None
    with pytest.raises(DataError, match="tie_history"):
        HybridRecommender(epochs=1, tie_history="no").fit(X)
    with pytest.raises(DataError, match="history_activation"):
        HybridRecommender(epochs=1, history_activation="relu").fit(X)


def test_save_load_roundtrip_offline_and_fingerprint(fitted_text, tiny_lm_dir, cache_dir,
                                                     tmp_path):
    model, X, feats, _ = fitted_text
    users = ["u0", "u3", "u7"]
    ids, scores = model.recommend(users, k=6)
    model.save(tmp_path / "m")
    assert not (tmp_path / "m" / "arrays.safetensors").stat().st_size > 10 * 2**20
    # the language model is referenced, not copied: loading works without it
    moved = tmp_path / "moved-lm"
    shutil.copytree(tiny_lm_dir, moved)
    m2 = _text_model(moved, cache_dir, epochs=2).fit(X, item_features=feats)
    m2.save(tmp_path / "m2")
    shutil.rmtree(moved)
    offline = load(tmp_path / "m2")
    i2, _s2 = offline.recommend(users, k=6)
    np.testing.assert_array_equal(i2, m2.recommend(users, k=6)[0])
    loaded = load(tmp_path / "m")
    assert type(loaded) is HybridRecommender
    i3, s3 = loaded.recommend(users, k=6)
    np.testing.assert_array_equal(i3, ids)
    np.testing.assert_allclose(s3, scores, rtol=1e-6, atol=1e-6)
    h = [0, 2, 4]
    np.testing.assert_array_equal(loaded.recommend(history=h, k=4)[0],
                                  model.recommend(history=h, k=4)[0])
    # cold items after loading, then save again with the grown catalogue
    loaded.add_items(feats)
    loaded.save(tmp_path / "m3")
    again = load(tmp_path / "m3")
    new = list(range(1000, 1010))
    np.testing.assert_array_equal(again.recommend(users, k=4, items=new)[0],
                                  loaded.recommend(users, k=4, items=new)[0])
    # a different language model behind the same path: refuse to mix vectors
    other, _tok = tiny_text_model("bert", hidden_size=32, seed=1)
    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_lm_dir, swapped)
    m4 = _text_model(swapped, cache_dir, epochs=2).fit(X, item_features=feats)
    m4.save(tmp_path / "m4")
    other.save_pretrained(swapped)
    with pytest.raises(ModelFormatError, match="fingerprint"):
        load(tmp_path / "m4").add_items(feats)


def test_early_stopping_restores_the_best_validated_epoch():
    data = tiny_interactions(n_users=80, per_user=8, seed=3)
    rng = np.random.default_rng(0)
    mask = rng.random(data.nnz) < 0.2
    train, valid = data.subset(~mask), data.subset(mask)
    stops = []
    m = HybridRecommender(dim=16, epochs=40, patience=3, random_state=0, learning_rate=0.02)
    m.fit(train, validation=valid, callbacks=[lambda e, logs: stops.append(logs) or False])
    h = m.training_log_
    assert h["metric_name"] == "ndcg@10" and len(stops) == len(h["losses"])
    best = h["best_epoch"]
    assert h["best_metric"] == pytest.approx(max(x for x in h["metrics"] if x is not None))
    res = evaluate(m, train, valid, k=10, metrics=["ndcg@10"], n_bootstrap=0)
    assert res["ndcg@10"] == pytest.approx(h["best_metric"], abs=1e-6)
    assert best <= len(h["losses"])
    # a callback stops training
    m2 = HybridRecommender(dim=8, epochs=10, random_state=0)
    m2.fit(train, callbacks=[lambda e, logs: e >= 2])
    assert len(m2.training_log_["losses"]) == 2 and m2.training_log_["stopped_early"]


def test_nan_loss_is_a_clear_error_and_keeps_the_best_checkpoint(monkeypatch):
    data = tiny_interactions()
    calls = {"n": 0}

    def flaky(real):
        def loss_fn(*args, **kwargs):
            calls["n"] += 1
            loss = real(*args, **kwargs)
            return loss * float("nan") if calls["n"] == 20 else loss
        return loss_fn

    # the CPU path computes the loss blocked (fused_softmax_loss); both are patched
    for name in ("softmax_loss", "fused_softmax_loss"):
        monkeypatch.setattr(hybrid_task, name, flaky(getattr(hybrid_task, name)))
    m = HybridRecommender(dim=8, epochs=10, batch_size=8, random_state=0)
    per_epoch = -(-data.n_users // 8)
    epoch, step = 20 // per_epoch + 1, 20 % per_epoch  # the 20th step
    if step == 0:
        epoch, step = epoch - 1, per_epoch
    with pytest.raises(NonFiniteLossError, match=rf"epoch {epoch}, step {step}\b") as info:
        m.fit(data)
    assert (info.value.epoch, info.value.step) == (epoch, step)
    assert m.is_fitted and np.isfinite(m.item_repr_).all()
    _ids, scores = m.recommend(["u0"], k=3)
    assert np.isfinite(scores).all()


def test_pairwise_losses_samplers_and_scorers_learn():
    full = tiny_interactions(n_users=60, per_user=8, seed=1)
    last = full.user_indptr[1:] - 1
    mask = np.zeros(full.nnz, dtype=bool)
    mask[last] = True
    train, test = full.subset(~mask), full.subset(mask)
    configs = [dict(loss="bpr"), dict(loss="bce", negative_sampler="popularity"),
               dict(loss="sampled_softmax", negative_sampler="in_batch"),
               dict(loss="sampled_softmax", negative_sampler="popularity",
                    user_encoders=["id"]),
               dict(scorer="neumf", loss="bce"), dict(scorer="attention"),
               dict(scorer="attention", loss="bpr", epochs=5),
               dict(user_encoders=["history", "id"], fusion="concat")]
    for cfg in configs:
        cfg = {"dim": 16, "epochs": 10, "random_state": 0, "learning_rate": 5e-3, **cfg}
        m = HybridRecommender(**cfg).fit(train)
        res = evaluate(m, train, test, k=10, metrics=["hit@10"], n_bootstrap=0)
        assert res["hit@10"] > 1.3 * 10 / full.n_items, (cfg, res["hit@10"])


def test_mse_fits_ratings():
    data = tiny_interactions()
    m = HybridRecommender(loss="mse", dim=8, epochs=20, random_state=0, learning_rate=0.02,
                          user_encoders=["history", "id"]).fit(data)
    frame = data.to_pandas()
    pred = m.score(list(frame["user"]), list(frame["item"]))
    err = np.sqrt(np.mean((pred - frame["rating"].to_numpy()) ** 2))
    assert err < frame["rating"].std()


def test_retriever_matches_exact_ranking():
    data = tiny_interactions()
    m = HybridRecommender(dim=8, epochs=5, random_state=0).fit(data)
    users = list(data.user_vocab.ids[:10])
    exact = m.recommend(users, k=5)
    approx = m.recommend(users, k=5, retriever=FaissRetriever("flat"))
    np.testing.assert_array_equal(approx[0], exact[0])
    np.testing.assert_allclose(approx[1], exact[1], rtol=1e-5, atol=1e-5)
    h = [1000, 1001, 1002]
    np.testing.assert_array_equal(m.recommend(history=h, k=4, retriever=FaissRetriever("flat"))[0],
                                  m.recommend(history=h, k=4)[0])
    neumf = NeuMF(dim=8, epochs=2, random_state=0).fit(data)
    assert neumf._item_vectors() is None
    with pytest.raises(DataError):
        neumf.recommend(users, k=3, retriever=FaissRetriever("flat"))


def test_neumf_class_and_id_only_users():
    data = tiny_interactions()
    m = NeuMF(dim=8, epochs=3, random_state=0, mlp_layers=(8, 4))
    assert m.get_params()["mlp_layers"] == (8, 4) and "scorer" not in m.get_params()
    m.fit(data)
    assert m.scorer_.mlp_layers == [8, 4]
    ids, _ = m.recommend(history=[1000, 1001], k=3)
    assert len(ids) == 3
    plain = NeuMF(dim=8, epochs=2, user_encoders=["id"], random_state=0).fit(data)
    assert not plain.supports_history
    with pytest.raises(NotImplementedError, match="history"):
        plain.recommend(history=[1000], k=3)


def test_determinism_and_parameter_errors():
    data = tiny_interactions()
    a = HybridRecommender(dim=8, epochs=3, random_state=4).fit(data)
    b = HybridRecommender(dim=8, epochs=3, random_state=4).fit(data)
    np.testing.assert_array_equal(a.item_repr_, b.item_repr_)
    for bad, match in [(dict(loss="hinge"), "loss"), (dict(scorer="cosine"), "scorer"),
                       (dict(item_encoders=["pixels"]), "pixels"),
                       (dict(user_encoders=["id", "id"]), "twice"),
                       (dict(fusion={"num_heads": 2}), "kind"), (dict(dim=0), "dim"),
                       (dict(history_dropout=1.0), "history_dropout"),
                       (dict(scorer="attention", user_encoders=["id"]), "history")]:
        with pytest.raises(DataError, match=match):
            HybridRecommender(epochs=1, **bad).fit(data)
    with pytest.raises(NotFittedError):
        HybridRecommender().add_items(ItemFeatures([1], text=["x"]))


@pytest.mark.skipif(not cuda_available(), reason="needs CUDA")
def test_fit_on_cuda():  # pragma: no cover - CPU-only machines skip it
    data = tiny_interactions()
    m = HybridRecommender(dim=8, epochs=3, random_state=0, device="cuda").fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _ids, scores = m.recommend(["u0"], k=3)
    assert np.isfinite(scores).all()
    assert torch.device(m._dev()).type == "cpu"  # vectors and modules end on the CPU
