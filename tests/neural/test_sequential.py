"""SequentialRecommender: learning a planted next-item pattern, order, causality, text
cold start, truncation, persistence and bad input. Tiny models, one thread."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec import Interactions, ItemFeatures, Recommender
from maasrec.encoders import TextEncoder
from maasrec.exceptions import DataError, MaasrecWarning, UnknownIdError
from maasrec.neural import SequentialRecommender
from maasrec.neural._sequences import NextItemTask, _window_batch, _windows
from maasrec.neural.sequential import SASRecNetwork
from maasrec.training import NonFiniteLossError

N_ITEMS = 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cyclic_interactions(n_users: int = 120, n_items: int = N_ITEMS, seed: int = 0,
                        min_len: int = 6, max_len: int = 12) -> Interactions:
    """Each user walks the cycle 0 -> 1 -> ... -> n_items-1 -> 0 from a random start."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(int(rng.integers(min_len, max_len + 1))):
            rows.append((f"u{u}", 100 + (start + t) % n_items, t))
    return Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def small(**kw) -> SequentialRecommender:
    params = dict(max_len=12, dim=32, n_layers=1, n_heads=2, dropout=0.1, epochs=60,
                  batch_size=32, learning_rate=0.01, random_state=0, verbose=False)
    params.update(kw)
    return SequentialRecommender(**params)


@pytest.fixture(scope="module")
def cyclic():
    X = cyclic_interactions()
    return X, small().fit(X)


def test_learns_planted_next_item(cyclic):
    X, model = cyclic
    # a cold history anywhere on the cycle: the next item should be first
    hits = []
    for start in range(N_ITEMS):
        hist = [100 + (start + t) % N_ITEMS for t in range(5)]
        ids, _ = model.recommend(history=hist, k=1)
        hits.append(ids[0] == 100 + (start + 5) % N_ITEMS)
    assert np.mean(hits) >= 0.9, f"hit@1 {np.mean(hits):.2f} on the planted cycle (chance 1/19)"
    # known users too: the item after their last one
    users = list(X.user_vocab.ids[:40])
    ids, _ = model.recommend(users, k=1)
    last = [X.item_vocab.ids[X.item_indices[X.user_indptr[u + 1] - 1]] for u in range(40)]
    expected = [100 + (i - 100 + 1) % N_ITEMS for i in last]
    assert np.mean(ids[:, 0] == np.array(expected)) >= 0.9


def test_order_matters(cyclic):
    _, model = cyclic
    hist = [105, 106, 107, 108]
    fwd, _ = model.recommend(history=hist, k=5)
    rev, _ = model.recommend(history=hist[::-1], k=5)
    assert fwd[0] == 109
    assert not np.array_equal(fwd, rev), "a reversed history must change the recommendations"
    # repeats are kept and the latest item counts: ending on 105 again points at 106
    rep, _ = model.recommend(history=[*hist, 105], k=5, exclude_seen=False)
    assert rep[0] == 106


def test_causal_mask():
    net = SASRecNetwork(n_items=30, dim=16, max_len=10, n_layers=2, n_heads=2, ffn_dim=32,
                        dropout=0.0)
    net.reset_parameters(torch.Generator().manual_seed(0))
    net.eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 5:] = torch.tensor([20, 21, 22])
    with torch.no_grad():
        ha, hb = net.hidden(a), net.hidden(b)
    torch.testing.assert_close(ha[:, :5], hb[:, :5])
    assert not torch.allclose(ha[:, 5:], hb[:, 5:])
    # a prefix alone gives the same states (training at position t == inference on t+1 items)
    with torch.no_grad():
        hp = net.hidden(a[:, :4])
    torch.testing.assert_close(hp, ha[:, :4])


def test_windows_cover_every_target_once():
    indptr = np.array([0, 1, 3, 10, 35])  # lengths 1, 2, 7, 25
    start, length = _windows(indptr, max_len=6)
    assert (length >= 1).all() and (length <= 6).all()
    targets = np.concatenate([np.arange(s + 1, s + m + 1) for s, m in zip(start, length)])
    expected = np.concatenate([np.arange(a + 1, b) for a, b in itertools.pairwise(indptr)])
    np.testing.assert_array_equal(np.sort(targets), expected)
    # windows never cross a sequence boundary
    for s, m in zip(start, length):
        seq = np.searchsorted(indptr, s, side="right") - 1
        assert s + m < indptr[seq + 1]


def test_window_batches_hold_every_target():
    lengths = [1, 2, 7, 25, 6]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = torch.arange(100, 100 + indptr[-1])  # item = 100 + position
    start, length = _windows(indptr, max_len=6)
    inp, tgt, mask = _window_batch(flat, torch.from_numpy(start), torch.from_numpy(length))
    assert inp.shape == tgt.shape == mask.shape == (len(start), 6)
    for r, (s0, m) in enumerate(zip(start, length)):
        np.testing.assert_array_equal(inp[r, :m].numpy(), 100 + np.arange(s0, s0 + m))
        np.testing.assert_array_equal(tgt[r][mask[r]].numpy(),
                                      100 + np.arange(s0 + 1, s0 + m + 1))
        assert int(mask[r].sum()) == m
    got = np.sort(tgt[mask].numpy())
    expected = 100 + np.concatenate([np.arange(a + 1, b) for a, b in itertools.pairwise(indptr)])
    np.testing.assert_array_equal(got, expected)  # every item after a user's first


def test_max_len_truncation(cyclic):
    _, model = cyclic  # max_len=12
    long = [100 + t % N_ITEMS for t in range(30)]
    a = model._score_sequences([np.asarray(model.item_vocab_.index(long))])
    b = model._score_sequences([np.asarray(model.item_vocab_.index(long[-12:]))])
    np.testing.assert_allclose(a, b, rtol=1e-6)
    ids, scores = model.recommend(history=long, k=3)
    assert np.isneginf(scores).all(), "every item was seen: nothing left to recommend"
    ids, _ = model.recommend(history=long, k=3, exclude_seen=False)
    assert ids[0] == 100 + 30 % N_ITEMS


def test_extend_history_matches_cold_history(cyclic):
    X, model = cyclic
    m = copy.deepcopy(model)
    u = X.user_vocab.ids[3]
    seq = list(X.item_vocab.ids[X.sequences()[3]])
    new_item = 100 + (seq[-1] - 100 + 1) % N_ITEMS
    m.extend_history(pd.DataFrame({"user": [u], "item": [new_item], "timestamp": [99]}))
    ids_known, s_known = m.recommend(u, k=5)
    ids_cold, s_cold = m.recommend(history=[*seq, new_item], k=5)
    np.testing.assert_array_equal(ids_known, ids_cold)
    np.testing.assert_allclose(s_known, s_cold, rtol=1e-5)
    assert new_item not in ids_known
    with pytest.raises(UnknownIdError):
        m.extend_history(pd.DataFrame({"user": ["nobody"], "item": [100], "timestamp": [1]}))


def test_bad_history_input(cyclic):
    _, model = cyclic
    with pytest.raises(UnknownIdError, match="9999"):
        model.recommend(history=[100, 9999], k=3)
    ids, scores = model.recommend(history=[[], [100, 101]], k=3)  # empty: popular items
    assert np.isfinite(scores).all()
    popular = model.recommend(history=[[]], k=3)[0][0]
    np.testing.assert_array_equal(ids[0], popular)


def test_nan_loss_names_epoch_and_step(monkeypatch):
    X = cyclic_interactions(n_users=20)
    original = SASRecNetwork.reset_parameters

    def poisoned(self, generator=None):
        original(self, generator)
        with torch.no_grad():
            self.item_emb[0, 0] = float("nan")

    monkeypatch.setattr(SASRecNetwork, "reset_parameters", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1") as err:
        small(epochs=2).fit(X)
    assert err.value.epoch == 1 and err.value.step == 1


def test_nan_loss_later_keeps_best_checkpoint(monkeypatch):
    """A NaN in epoch 3 names epoch and step, and leaves the best validated weights."""
    X = cyclic_interactions(n_users=40)
    last = X.user_indptr[1:] - 1
    mask = np.zeros(X.nnz, dtype=bool)
    mask[last] = True
    train, valid = X.subset(~mask), X.subset(mask)
    calls = {"n": 0}
    steps_per_epoch = -(-train.n_users // 32)
    original = NextItemTask.loss

    def poisoned(self, batch):
        calls["n"] += 1
        loss = original(self, batch)
        return loss * float("nan") if calls["n"] == 2 * steps_per_epoch + 2 else loss

    monkeypatch.setattr(NextItemTask, "loss", poisoned)
    model = small(epochs=5)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 2.*best checkpoint") as err:
        model.fit(train, validation=valid)
    assert err.value.epoch == 3 and err.value.step == 2
    best = err.value.best_epoch
    assert best in (1, 2)
    monkeypatch.setattr(NextItemTask, "loss", original)
    # same seed, all of train (no holdout): the weights after epoch `best`
    ref = small(epochs=best, validation_fraction=None).fit(train)
    got = model.network_.state_dict()
    for name, value in ref.network_.state_dict().items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)


def test_bf16_autocast_on_cpu():
    X = cyclic_interactions()
    model = small(amp="bf16").fit(X)
    ids, _ = model.recommend(history=[110, 111, 112], k=1)
    assert ids[0] == 113
    # the float32 model differs (bf16 rounding), but both learn the cycle
    ref = small(amp="none").fit(X)
    assert not torch.equal(ref.network_.item_emb, model.network_.item_emb)
    assert ref.recommend(history=[110, 111, 112], k=1)[0][0] == 113


def test_bf16_scores_in_float32_on_cpu():
    # amp="bf16" autocasts the training steps only: on the CPU the scores of the trained
    # network are exactly the float32 ones (bf16 scoring would round the hidden states)
    X = cyclic_interactions(n_users=30)
    model = small(amp="bf16", epochs=3).fit(X)
    users = X.user_vocab.ids[:8]
    got = model.recommend(users, k=20)
    f32 = small(amp="none", epochs=3)
    f32.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    ref = f32.recommend(users, k=20)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    # scored under bf16 autocast, the same weights give different scores
    model._score_amp_dtype = lambda device: torch.bfloat16
    model._invalidate()
    assert not np.array_equal(model.recommend(users, k=20)[1], ref[1])


def test_bf16_save_load_exact(tmp_path):
    X = cyclic_interactions(n_users=30)
    model = small(amp="bf16", epochs=3).fit(X)
    h = [105, 106, 107]
    loaded = Recommender.load(model.save(tmp_path / "bf16"))
    assert loaded.amp == "bf16"
    a, b = model.recommend(history=h, k=5), loaded.recommend(history=h, k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_params_are_checked():
    X = cyclic_interactions(n_users=10)
    for bad in (dict(n_heads=3), dict(loss="bce"), dict(item_text="yes"), dict(max_len=0),
                dict(dropout=1.0), dict(amp="fp8")):
        with pytest.raises(DataError, match=next(iter(bad))):
            small(**bad).fit(X)


def test_label_smoothing_is_torch_cross_entropy_and_learns(monkeypatch):
    from maasrec.training import softmax_loss

    g = torch.Generator().manual_seed(0)
    scores, y = torch.randn(5, 9, generator=g), torch.randint(9, (5,), generator=g)
    for eps in (0.0, 0.1, 0.4):
        assert torch.allclose(softmax_loss(scores, y, label_smoothing=eps),
                              torch.nn.functional.cross_entropy(scores, y, label_smoothing=eps))
    X = cyclic_interactions()
    seen = []
    import maasrec.neural._sequences as seq

    def spy(*args, **kw):
        seen.append(kw.get("label_smoothing"))
        return softmax_loss(*args, **kw)

    monkeypatch.setattr(seq, "softmax_loss", spy)
    smooth = small(label_smoothing=0.2, epochs=40).fit(X)
    assert seen and set(seen) == {0.2}
    ids, _ = smooth.recommend(history=[110, 111, 112], k=1)
    assert ids[0] == 113
    # a smoothed softmax is less confident about the planted next item
    sharp = small(epochs=40).fit(X)

    def top_prob(m):
        _, s = m.recommend(history=[110, 111, 112], k=N_ITEMS)
        s = torch.from_numpy(np.asarray(s, dtype=np.float64).ravel())
        return float(torch.softmax(s[torch.isfinite(s)], 0).max())

    assert top_prob(smooth) < top_prob(sharp)
    with pytest.raises(DataError, match="label_smoothing"):
        small(label_smoothing=0.1, loss="sampled_softmax").fit(X)
    with pytest.raises(DataError, match="label_smoothing"):
        small(label_smoothing=1.0).fit(X)


def test_sampled_softmax_learns():
    X = cyclic_interactions()
    model = small(loss="sampled_softmax", n_negatives=8, epochs=40).fit(X)
    ids, _ = model.recommend(history=[110, 111, 112], k=1)
    assert ids[0] == 113


def test_validation_early_stopping_restores_best():
    X = cyclic_interactions(n_users=60)
    seqs = X.sequences()
    last = np.concatenate([[X.user_indptr[u + 1] - 1] for u in range(X.n_users)])
    mask = np.zeros(X.nnz, dtype=bool)
    mask[last] = True
    train, valid = X.subset(~mask), X.subset(mask)
    model = small(epochs=40, patience=2, eval_every=2).fit(train, validation=valid)
    log = model.training_log_
    assert log["best_epoch"] is not None
    scores = [m for m in log["metrics"] if m is not None]
    best = max(scores)
    assert len(scores) >= 2 and log["metrics"][log["best_epoch"] - 1] == best
    assert log["best_metric"] == best
    from maasrec.metrics import evaluate

    now = evaluate(model, train, valid, k=10, metrics=["ndcg@10"], n_bootstrap=0)["ndcg@10"]
    assert now == pytest.approx(best, abs=1e-6), "the best weights were not restored"
    assert len(seqs) == X.n_users


def test_val_metric_chooses_the_early_stopping_metric():
    X = cyclic_interactions(n_users=60)
    last = np.concatenate([[X.user_indptr[u + 1] - 1] for u in range(X.n_users)])
    mask = np.zeros(X.nnz, dtype=bool)
    mask[last] = True
    train, valid = X.subset(~mask), X.subset(mask)
    model = small(epochs=6, patience=2, eval_every=2, val_metric="hit@5").fit(
        train, validation=valid)
    log = model.training_log_
    assert log["metric_name"] == "hit@5"
    from maasrec.metrics import evaluate

    now = evaluate(model, train, valid, k=5, metrics=["hit@5"], n_bootstrap=0)["hit@5"]
    assert now == pytest.approx(log["best_metric"], abs=1e-9)
    for bad in ("hit", "ndcg@0", "auc@10", 10, "hit@10@2"):
        with pytest.raises(DataError, match="val_metric"):
            small(val_metric=bad).fit(train)


def test_save_load_exact(tmp_path, cyclic):
    X, model = cyclic
    users = list(X.user_vocab.ids[:10])
    ids, scores = model.recommend(users, k=5)
    path = model.save(tmp_path / "seq")
    loaded = Recommender.load(path)
    assert isinstance(loaded, SequentialRecommender)
    ids2, scores2 = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    h = [110, 111, 112]
    np.testing.assert_array_equal(model.recommend(history=h, k=5)[1],
                                  loaded.recommend(history=h, k=5)[1])


def test_retriever_for_known_users(cyclic):
    pytest.importorskip("faiss")
    from maasrec.rankers import FaissRetriever

    X, model = cyclic
    users = list(X.user_vocab.ids[:15])
    exact = model.recommend(users, k=5)
    approx = model.recommend(users, k=5, retriever=FaissRetriever("flat"))
    np.testing.assert_array_equal(exact[0], approx[0])
    np.testing.assert_allclose(exact[1], approx[1], rtol=1e-4, atol=1e-5)


def test_no_timestamps_warns():
    X = cyclic_interactions(n_users=10)
    with pytest.warns(MaasrecWarning, match="no timestamps"):
        small(epochs=1).fit(X.to_csr())


# -- item text ------------------------------------------------------------------------------

class TopicEncoder(TextEncoder):
    """A stand-in language model: ``"topic-3 ..."`` -> the one-hot vector of topic 3 plus a
    little per-text noise. Never loads a model."""

    def encode(self, texts, *, show_progress=False):
        out = np.zeros((len(texts), 12), dtype=np.float32)
        for r, t in enumerate(texts):
            out[r, int(t.split()[0].split("-")[1])] = 1.0
            rng = np.random.default_rng(sum(map(ord, t)))
            out[r, 4:] = 0.05 * rng.standard_normal(8)
        return out


def topic_data(n_users: int = 200, seed: int = 0):
    """4 topics of 8 items; a user stays on one topic, drifting to the next topic's
    items only through the sequence; the last 2 items of each topic are cold."""
    rng = np.random.default_rng(seed)
    n_topics, per = 4, 8
    warm = {k: [k * per + j for j in range(per - 2)] for k in range(n_topics)}
    rows = []
    for u in range(n_users):
        k = u % n_topics
        for t, item in enumerate(rng.choice(warm[k], size=6, replace=False)):
            rows.append((u, int(item), t))
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    ids = np.arange(n_topics * per)
    text = [f"topic-{i // per} item {i}" for i in ids]
    feats = ItemFeatures.from_pandas(pd.DataFrame({"item": ids, "text": text}), "item",
                                     text="text")
    cold = [k * per + j for k in range(n_topics) for j in (per - 2, per - 1)]
    return X, feats, cold


@pytest.mark.parametrize("mode", ["init", "fuse"])
def test_text_makes_cold_items_recommendable(mode):
    X, feats, cold = topic_data()
    model = small(item_text=mode, text_encoder=TopicEncoder(), epochs=30, max_len=8)
    model.fit(X, item_features=feats)
    assert model.n_items_ == 24
    model.add_items(feats)
    assert model.n_items_ == 32 and set(cold) <= set(model.item_vocab_.ids.tolist())
    # for a history on topic k, the two cold items of topic k beat the other cold items
    good = 0
    for k in range(4):
        hist = [k * 8 + j for j in range(3)]
        ids, _ = model.recommend(history=hist, k=2, items=cold)
        good += set(ids.tolist()) == {k * 8 + 6, k * 8 + 7}
    assert good >= 3, f"cold items of the history's topic ranked first for {good}/4 topics"


def topic_side_features(ids, with_tags: bool = True) -> ItemFeatures:
    """A categorical ``topic`` (and a multi-hot ``tags`` field) for the topic data."""
    ids = np.asarray(ids)
    cols = {"item": ids, "topic": [f"t{i // 8}" for i in ids]}
    multi = None
    if with_tags:
        cols["tags"] = [[f"tag{i // 8}", "all"] for i in ids]
        multi = ["tags"]
    return ItemFeatures.from_pandas(pd.DataFrame(cols), "item", categorical=["topic"],
                                    multi_hot=multi)


def test_side_labels_make_cold_items_recommendable(tmp_path):
    X, _, cold = topic_data()
    feats = topic_side_features(np.arange(32))
    model = small(item_side="fuse", epochs=30, max_len=8).fit(X, item_features=feats)
    assert model.n_items_ == 24
    assert model.side_labels_ == sorted([f"tags=tag{k}" for k in range(4)] + ["tags=all"]
                                        + [f"topic=t{k}" for k in range(4)])
    net = model.network_
    with torch.no_grad():  # item vector = id vector + mean of its label vectors
        table = net.item_table()
        labels = model.side_items_[3].indices
        expect = net.item_emb[3] + net.side_emb.weight[torch.from_numpy(labels)].mean(0)
    assert len(labels) == 3 and torch.allclose(table[3], expect, atol=1e-6)
    model.add_items(feats)
    assert model.n_items_ == 32
    # a cold item is its labels' vectors only (zero id vector)
    with torch.no_grad():
        table = net.item_table()
        row = model.item_vocab_.index([cold[0]])[0]
        labels = torch.from_numpy(model.side_items_[row].indices)
        assert torch.allclose(table[row], net.side_emb.weight[labels].mean(0), atol=1e-6)
    good = 0
    for k in range(4):
        ids, _ = model.recommend(history=[k * 8 + j for j in range(3)], k=2, items=cold)
        good += set(ids.tolist()) == {k * 8 + 6, k * 8 + 7}
    assert good >= 3, f"cold items of the history's topic ranked first for {good}/4 topics"
    # saved and loaded exactly, side labels included
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    a = model.recommend(history=[0, 1, 2], k=5)
    b = back.recommend(history=[0, 1, 2], k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert back.side_labels_ == model.side_labels_


def test_side_labels_unknown_at_fit_are_ignored_and_bad_input_is_named():
    X, _, _ = topic_data()
    feats = topic_side_features(np.arange(32), with_tags=False)
    model = small(item_side="fuse", epochs=2, max_len=8).fit(X, item_features=feats)
    new = ItemFeatures.from_pandas(pd.DataFrame({"item": [900, 901], "topic": ["t1", "new"]}),
                                   "item", categorical=["topic"])
    model.add_items(new)
    net = model.network_
    with torch.no_grad():
        table = net.item_table()
    r900, r901 = model.item_vocab_.index([900, 901])
    t1 = model.side_labels_.index("topic=t1")
    assert torch.allclose(table[r900], net.side_emb.weight[t1], atol=1e-6)
    assert torch.count_nonzero(table[r901]) == 0  # a label never seen at fit: no vector
    with pytest.raises(DataError, match="item_side"):
        small(item_side="fuse", epochs=1).fit(X)  # no features
    text_only = ItemFeatures.from_pandas(pd.DataFrame({"item": [0], "text": ["a"]}), "item",
                                         text="text")
    with pytest.raises(DataError, match="categorical or multi-hot"):
        small(item_side="fuse", epochs=1).fit(X, item_features=text_only)
    with pytest.raises(DataError, match="item_side"):
        small(item_side="concat").fit(X)


def test_add_items_needs_text_mode(cyclic):
    _, model = cyclic
    feats = ItemFeatures.from_pandas(pd.DataFrame({"item": [999], "text": ["x"]}), "item",
                                     text="text")
    with pytest.raises(DataError, match="item_text"):
        model.add_items(feats)


def test_fuse_save_load_after_add_items(tmp_path):
    X, feats, _ = topic_data(n_users=40)
    model = small(item_text="fuse", text_encoder=TopicEncoder(), epochs=3).fit(
        X, item_features=feats).add_items(feats)
    before = model.recommend(history=[0, 1, 2], k=6)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    after = loaded.recommend(history=[0, 1, 2], k=6)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_item_text_needs_features():
    X = cyclic_interactions(n_users=10)
    with pytest.raises(DataError, match="item_features with text"):
        small(item_text="init", text_encoder=TopicEncoder()).fit(X)


@pytest.mark.cuda
def test_cuda_device():
    from maasrec.device import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA device")
    X = cyclic_interactions()
    model = small(device="cuda").fit(X)
    ids, _ = model.recommend(history=[110, 111, 112], k=1)
    assert ids[0] == 113


# -- real data ------------------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.slow
def test_ml100k_leave_last_out_beats_popularity(data_home, require_dataset):
    """A few epochs on MovieLens 100K already rank the next movie far better than
    popularity (full ranking, leave-last-out, validation item in the history)."""
    import warnings

    from maasrec import datasets
    from maasrec.data.split import leave_last_out
    from maasrec.exceptions import ColdStartWarning
    from maasrec.metrics import evaluate
    from maasrec.models import Popularity

    require_dataset("ml-100k", "u.data", "u.item")
    X = datasets.load_movielens("100k", data_home, download=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        train, valid, test = leave_last_out(X, n_valid=1, n_test=1)
        model = SequentialRecommender(max_len=50, epochs=4, dropout=0.2, batch_size=64,
                                      learning_rate=0.005, amp="bf16", random_state=0,
                                      verbose=False).fit(train)
        model.extend_history(valid)
        seq = evaluate(model, train, test, k=10, exclude=valid, n_bootstrap=0)["ndcg@10"]
        pop = evaluate(Popularity().fit(train), train, test, k=10, exclude=valid,
                       n_bootstrap=0)["ndcg@10"]
    assert seq > 1.3 * pop, f"sequential NDCG@10 {seq:.4f} vs popularity {pop:.4f}"
