"""BERT4Rec: the common contract, cloze masking, bidirectional attention, learning a planted
order, determinism, save/load, new-user histories and bad input. Tiny models, one thread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from maasrec import Interactions, Recommender
from maasrec.exceptions import DataError, UnknownIdError
from maasrec.metrics import evaluate
from maasrec.models import Popularity
from maasrec.neural.bert4rec import (
    BERT4Rec,
    BERT4RecNetwork,
    ClozeTask,
    cloze_windows,
    random_cloze_windows,
)
from maasrec.testing import iter_checks

N_ITEMS = 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cyclic_interactions(n_users: int = 120, n_items: int = N_ITEMS, seed: int = 0,
                        min_len: int = 6, max_len: int = 12) -> Interactions:
    """Each user walks the cycle 0 -> 1 -> ... -> n_items-1 -> 0 from a random start, and
    the popular items are not the ones that come next."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(int(rng.integers(min_len, max_len + 1))):
            rows.append((f"u{u}", 100 + (start + t) % n_items, t))
    return Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def small(**kw) -> BERT4Rec:
    params = dict(max_len=13, dim=32, n_layers=1, n_heads=2, dropout=0.1, epochs=60,
                  batch_size=32, learning_rate=0.005, mask_prob=0.3, random_state=0)
    params.update(kw)
    return BERT4Rec(**params)


CHECKS = list(iter_checks(lambda: small(epochs=3, dim=16, max_len=8)))


@pytest.mark.parametrize("name, check", CHECKS, ids=[n for n, _ in CHECKS])
def test_contract(name, check):
    check()


@pytest.fixture(scope="module")
def cyclic():
    X = cyclic_interactions()
    return X, small().fit(X)


# -- learning -------------------------------------------------------------------------------

def test_learns_planted_next_item(cyclic):
    X, model = cyclic
    hits = []
    for start in range(N_ITEMS):
        hist = [100 + (start + t) % N_ITEMS for t in range(5)]
        ids, _ = model.recommend(history=hist, k=1)
        hits.append(ids[0] == 100 + (start + 5) % N_ITEMS)
    assert np.mean(hits) >= 0.9, f"hit@1 {np.mean(hits):.2f} on the planted cycle (chance 1/19)"
    users = list(X.user_vocab.ids[:40])
    ids, _ = model.recommend(users, k=1)
    last = [X.item_vocab.ids[X.item_indices[X.user_indptr[u + 1] - 1]] for u in range(40)]
    expected = [100 + (i - 100 + 1) % N_ITEMS for i in last]
    assert np.mean(ids[:, 0] == np.array(expected)) >= 0.9


@pytest.mark.slow
def test_beats_popularity_leave_last_out():
    """Held-out last items of a planted order: far above Popularity (full ranking)."""
    from maasrec.data.split import leave_last_out

    X = cyclic_interactions(n_users=150, seed=1)
    train, test = leave_last_out(X, n_valid=0, n_test=1)
    model = small(random_state=1).fit(train)
    ours = evaluate(model, train, test, k=5, n_bootstrap=0)["ndcg@5"]
    pop = evaluate(Popularity().fit(train), train, test, k=5, n_bootstrap=0)["ndcg@5"]
    assert ours > 0.8 and ours > 3 * pop, f"BERT4Rec NDCG@5 {ours:.3f} vs popularity {pop:.3f}"


def test_order_matters(cyclic):
    _, model = cyclic
    hist = [105, 106, 107, 108]
    fwd, _ = model.recommend(history=hist, k=5)
    rev, _ = model.recommend(history=hist[::-1], k=5)
    assert fwd[0] == 109
    assert not np.array_equal(fwd, rev)
    # repeats are kept: the same items with 105 again at the end rank differently
    same, _ = model.recommend(history=hist, k=5, exclude_seen=False)
    rep, _ = model.recommend(history=[*hist, 105], k=5, exclude_seen=False)
    assert not np.array_equal(rep, same)


def test_training_log_and_holdout(cyclic):
    X, model = cyclic
    log = model.training_log_
    assert log["holdout"]["rows"] > 0 and log["holdout"]["ordered"] is True
    assert log["n_windows"] > 0 and log["best_epoch"] >= 1
    # the held-out last items rejoin the histories the model reads
    np.testing.assert_array_equal(np.diff(model.history_indptr_),
                                  np.minimum(X.user_counts(), model.max_len - 1))


# -- the network and the cloze task ---------------------------------------------------------

def _net(**kw) -> BERT4RecNetwork:
    params = dict(n_items=30, dim=16, max_len=10, n_layers=2, n_heads=2, ffn_dim=32, dropout=0.0)
    params.update(kw)
    net = BERT4RecNetwork(**params)
    net.reset_parameters(torch.Generator().manual_seed(0))
    return net.eval()


def test_attention_is_bidirectional_and_ignores_padding():
    net = _net()
    a = torch.tensor([[1, 2, 3, 4, 5, 6, 30]])  # 30 = [MASK]
    b = a.clone()
    b[0, 5] = 20  # a later item changes the earlier states (no causal mask)
    with torch.no_grad():
        ha, hb = net.hidden(a), net.hidden(b)
        assert not torch.allclose(ha[:, :5], hb[:, :5])
        padded = torch.cat([torch.full((1, 3), 31), a], 1)  # 31 = padding, on the left
        hp = net.hidden(padded)
    torch.testing.assert_close(hp[:, 3:], ha, rtol=1e-5, atol=1e-5)


def test_windows_cover_every_item_once():
    indptr = np.array([0, 1, 3, 13, 26])  # lengths 1 (dropped), 2, 10, 13
    start, length = cloze_windows(indptr, 5)
    covered = np.concatenate([np.arange(s, s + m) for s, m in zip(start, length, strict=True)])
    # length 13 = 5 + 5 + 3; length 10 = 5 + 5; one-item sequences train nothing
    np.testing.assert_array_equal(np.sort(covered), np.arange(1, 26))
    assert length.max() <= 5 and length.min() >= 2


def test_random_windows_are_prefixes_that_move_between_epochs():
    indptr = np.array([0, 1, 3, 13, 26])  # lengths 1 (dropped), 2, 10, 13
    gen = torch.Generator().manual_seed(0)
    ends = set()
    for _ in range(50):
        start, length = random_cloze_windows(indptr, 5, gen)
        # as many windows per sequence as the tiling: 1 + 2 + 3
        seq = np.searchsorted(indptr, start.numpy(), side="right") - 1
        np.testing.assert_array_equal(np.bincount(seq, minlength=4), [0, 1, 2, 3])
        assert int(length.min()) >= 2 and int(length.max()) <= 5
        end = (start + length).numpy()
        assert bool((end <= indptr[seq + 1]).all()), "a window stays inside its sequence"
        # a window shorter than max_len starts at its sequence's first item (a prefix)
        short = length.numpy() < 5
        np.testing.assert_array_equal(start.numpy()[short], indptr[seq][short])
        ends.update(end.tolist())
    # every item from the second on ends a window at some epoch
    assert ends == {3} | set(range(5, 14)) | set(range(15, 27))


def test_random_window_sampling_is_seeded():
    net = _net()
    items = np.arange(40, dtype=np.int64) % 30
    indptr = np.array([0, 3, 12, 40], dtype=np.int64)

    def epochs(seed):
        task = ClozeTask(net, items, indptr, max_len=10, batch_size=8, mask_prob=0.3,
                         mask_last_prob=0.5, loss="ce", n_negatives=5, seed=seed,
                         window_sampling="random")
        return [torch.cat([torch.cat(b, 1) for b in task.batches(e)]) for e in range(3)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert any(x.shape != z.shape or not torch.equal(x, z) for x, z in zip(a, c, strict=True))
    assert not torch.equal(a[0], a[1]) or a[0].shape != a[1].shape


def test_masked_positions_only_enter_the_loss():
    net = _net(dropout=0.0)
    rng = np.random.default_rng(0)
    items = rng.integers(0, 30, size=40).astype(np.int64)
    indptr = np.array([0, 3, 12, 40], dtype=np.int64)
    task = ClozeTask(net, items, indptr, max_len=10, batch_size=8, mask_prob=0.3,
                     mask_last_prob=0.0, loss="ce", n_negatives=5, seed=0)
    batches = list(task.batches(0))
    assert sum(len(b[0]) for b in batches) == task.n_windows == 5
    for inputs, targets in batches:
        masked = targets >= 0
        pad = inputs == 31
        assert bool((inputs[masked] == 30).all()), "every target position is a [MASK]"
        assert not bool((masked & pad).any()), "padding is never a target"
        assert bool(masked.any(1).all()), "every window has a target"
        assert not bool((inputs[~masked] == 30).any()), "no [MASK] without a target"
        # the loss is the cross-entropy at the masked positions only
        h = net.hidden(inputs)
        expected = F.cross_entropy(net.logits(h[masked]), targets[masked])
        torch.testing.assert_close(task.loss((inputs, targets)), expected)
        # the hidden items are the data's own items at those positions
        originals = torch.where(masked, targets, inputs)
        for row in originals:
            real = row[row != 31].numpy()
            assert any(np.array_equal(real, items[s:s + len(real)]) for s in range(40))


def test_mask_last_prob_one_masks_only_the_last_item():
    net = _net()
    items = np.arange(20, dtype=np.int64) % 30
    task = ClozeTask(net, items, np.array([0, 8, 20]), max_len=10, batch_size=8,
                     mask_prob=0.5, mask_last_prob=1.0, loss="ce", n_negatives=5, seed=0)
    for _, targets in task.batches(0):
        masked = targets >= 0
        assert bool(masked[:, -1].all()) and int(masked.sum()) == len(targets)


@pytest.mark.slow
def test_sampled_softmax_learns():
    X = cyclic_interactions()
    model = small(loss="sampled_softmax", n_negatives=16, epochs=80,
                  validation_fraction=None).fit(X)
    losses = model.training_log_["losses"]
    assert losses[-1] < 0.7 * losses[0]
    ids, _ = model.recommend(history=[110, 111, 112], k=3)
    assert 113 in ids


# -- determinism, persistence, histories ----------------------------------------------------

def test_same_seed_same_model_other_seed_differs():
    X = cyclic_interactions(n_users=40)
    a = small(epochs=3).fit(X)
    b = small(epochs=3).fit(X)
    c = small(epochs=3, random_state=1).fit(X)
    users = list(X.user_vocab.ids[:10])
    np.testing.assert_array_equal(a.recommend(users, k=5)[1], b.recommend(users, k=5)[1])
    assert not np.allclose(a.recommend(users, k=5)[1], c.recommend(users, k=5)[1])


def test_torch_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small(epochs=2).fit(cyclic_interactions(n_users=30))
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_save_load_exact(tmp_path, cyclic):
    X, model = cyclic
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, BERT4Rec)
    users = list(X.user_vocab.ids)
    np.testing.assert_array_equal(model.recommend(users, k=5)[0], loaded.recommend(users, k=5)[0])
    np.testing.assert_array_equal(model.recommend(users, k=5)[1], loaded.recommend(users, k=5)[1])
    h = [[103, 104, 105], [100]]
    np.testing.assert_array_equal(model.recommend(history=h, k=4)[1],
                                  loaded.recommend(history=h, k=4)[1])


def test_new_user_history_equals_known_user(cyclic):
    """A known user's own sequence, given as a history, is scored as that user."""
    X, model = cyclic
    users = list(X.user_vocab.ids[:6])
    hist = [list(X.item_vocab.ids[X.item_indices[X.user_indptr[u]:X.user_indptr[u + 1]]])
            for u in range(6)]
    a = model.recommend(users, k=5)
    b = model.recommend(history=hist, k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def test_extend_history_matches_cold_history(cyclic):
    import copy

    X, model = cyclic
    m = copy.deepcopy(model)
    u = X.user_vocab.ids[0]
    seq = list(X.item_vocab.ids[X.item_indices[X.user_indptr[0]:X.user_indptr[1]]])
    nxt = 100 + (seq[-1] - 100 + 1) % N_ITEMS
    m.extend_history(pd.DataFrame({"user": [u], "item": [nxt], "timestamp": [99]}))
    np.testing.assert_array_equal(m.recommend([u], k=3)[0][0],
                                  m.recommend(history=[[*seq, nxt]], k=3)[0][0])
    with pytest.raises(UnknownIdError):
        m.extend_history(pd.DataFrame({"user": ["nobody"], "item": [100], "timestamp": [1]}))


def test_bad_history_input(cyclic):
    _, model = cyclic
    with pytest.raises(UnknownIdError, match="9999"):
        model.recommend(history=[100, 9999], k=3)
    ids, scores = model.recommend(history=[[], [100, 101]], k=3)  # empty: popular items
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(ids[0], model.recommend(history=[[]], k=3)[0][0])


def test_long_history_is_truncated(cyclic):
    _, model = cyclic
    long = [100 + t % N_ITEMS for t in range(40)]
    a = model.recommend(history=long, k=5, exclude_seen=False)
    b = model.recommend(history=long[-(model.max_len - 1):], k=5, exclude_seen=False)
    np.testing.assert_array_equal(a[0], b[0])


def test_checkpoint_resume_gives_the_same_model(tmp_path, monkeypatch):
    from maasrec.training.trainer import Trainer

    X = cyclic_interactions(n_users=40)
    full = small(epochs=4, validation_fraction=None).fit(X)
    orig = Trainer.train_epoch

    class Crash(Exception):
        pass

    def crashing(self):
        logs = orig(self)
        if self.epoch == 2:
            raise Crash
        return logs

    monkeypatch.setattr(Trainer, "train_epoch", crashing)
    with pytest.raises(Crash):
        small(epochs=4, validation_fraction=None).fit(X, checkpoint_dir=tmp_path)
    monkeypatch.setattr(Trainer, "train_epoch", orig)
    resumed = small(epochs=4, validation_fraction=None).fit(X, checkpoint_dir=tmp_path)
    users = list(X.user_vocab.ids[:8])
    np.testing.assert_array_equal(full.recommend(users, k=5)[1], resumed.recommend(users, k=5)[1])


@pytest.mark.parametrize("params, match", [
    ({"max_len": 1}, "max_len"),
    ({"dim": 0}, "dim"),
    ({"dim": 30, "n_heads": 4}, "n_heads"),
    ({"ffn_dim": 0}, "ffn_dim"),
    ({"dropout": 1.0}, "dropout"),
    ({"mask_prob": 0.0}, "mask_prob"),
    ({"mask_prob": 1.5}, "mask_prob"),
    ({"mask_last_prob": -0.1}, "mask_last_prob"),
    ({"window_sampling": "prefix"}, "window_sampling"),
    ({"loss": "bpr"}, "loss"),
    ({"n_negatives": 0}, "n_negatives"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"val_metric": "auc"}, "val_metric"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"verbose": "yes"}, "verbose"),
    ({"random_state": "seed"}, "random_state"),
])
def test_bad_params(params, match):
    with pytest.raises(DataError, match=match):
        BERT4Rec(**params).fit(cyclic_interactions(n_users=10))


def test_sparse_history_is_refused(cyclic):
    _, model = cyclic
    import scipy.sparse as sp

    with pytest.raises(NotImplementedError, match="order"):
        model._score_history(sp.csr_matrix((1, model.n_items_)))


@pytest.mark.cuda
def test_cuda_device():
    from maasrec.device import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA device")
    X = cyclic_interactions()
    model = small(device="cuda").fit(X)
    ids, _ = model.recommend(history=[110, 111, 112], k=1)
    assert ids[0] == 113
