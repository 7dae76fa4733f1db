"""Tests of maasrec.models.BPRMF: hand-written gradients against autograd, training, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maasrec.data import Interactions
from maasrec.exceptions import DataError
from maasrec.models import BPRMF
from maasrec.models.bpr import _BPRStep


def random_data(seed=0, n_users=50, n_items=30, density=0.2) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    return Interactions.from_arrays([f"u{x}" for x in u], 1000 + i)


def batch_loss(P, Q, b, u, i, j, reg):
    x = (P[u] * (Q[i] - Q[j])).sum(1)
    if b is not None:
        x = x + b[i] - b[j]
    pen = 0.5 * reg * (P[u].square().sum() + Q[i].square().sum() + Q[j].square().sum())
    return -torch.nn.functional.logsigmoid(x).sum() + pen


def make(seed, bias):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(6, 4, generator=g, dtype=torch.float64)
    Q = torch.randn(9, 4, generator=g, dtype=torch.float64)
    b = torch.randn(9, generator=g, dtype=torch.float64) if bias else None
    # repeated users and items in one batch: their updates must add up
    u = torch.tensor([0, 1, 1, 5, 2, 0])
    i = torch.tensor([3, 3, 4, 8, 0, 1])
    j = torch.tensor([2, 7, 3, 3, 8, 2])
    return P, Q, b, u, i, j


@pytest.mark.parametrize("bias", [True, False])
def test_sgd_step_is_the_gradient_of_the_summed_loss(bias):
    P, Q, b, u, i, j = make(0, bias)
    ref = [t.clone().requires_grad_(True) for t in (P, Q) + ((b,) if bias else ())]
    loss = batch_loss(ref[0], ref[1], ref[2] if bias else None, u, i, j, 0.1)
    loss.backward()
    lr = 0.05
    step = _BPRStep(P, Q, b, lr, 0.1, "sgd")
    got_loss = step(u, i, j)
    x = (ref[0][u] * (ref[1][i] - ref[1][j])).sum(1) + ((ref[2][i] - ref[2][j]) if bias else 0)
    np.testing.assert_allclose(float(got_loss), float(-torch.nn.functional.logsigmoid(x.detach()).sum()),
                               rtol=1e-12)
    for new, old in zip((P, Q) + ((b,) if bias else ()), ref):
        np.testing.assert_allclose(new.numpy(), (old - lr * old.grad).detach().numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_adam_step_gets_the_gradient_of_the_mean_loss():
    P, Q, b, u, i, j = make(1, True)
    ref = [t.clone().requires_grad_(True) for t in (P, Q, b)]
    (batch_loss(*ref, u, i, j, 0.1) / len(u)).backward()
    step = _BPRStep(P, Q, b, 1e-2, 0.1, "adam")
    step(u, i, j)
    for t, r in zip((P, Q, b), ref):
        np.testing.assert_allclose(t.grad.numpy(), r.grad.numpy(), rtol=1e-10, atol=1e-12)
    # and Adam moved every parameter with a gradient by about lr
    moved = (P - ref[0].detach()).abs()
    assert moved[u].max() <= 1e-2 + 1e-9 and moved[u].max() > 5e-3


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.2), ("adam", 0.01), ("sparse_adam", 0.01)])
def test_training_loss_decreases_and_learns(optimizer, lr):
    data = random_data(2)
    m = BPRMF(factors=8, epochs=30, batch_size=64, optimizer=optimizer, learning_rate=lr,
              random_state=0).fit(data)
    losses = m.training_log_["losses"]
    assert np.mean(losses[-5:]) < 0.8 * losses[0], losses
    assert m.user_factors_.shape == (data.n_users, 8) and m.item_bias_.shape == (data.n_items,)
    # the model ranks a user's training items above the others (AUC on train)
    s = m._score_users(np.arange(data.n_users))
    R = data.to_csr(binary=True).toarray() > 0
    auc = np.mean([(s[u][R[u]][:, None] > s[u][~R[u]][None, :]).mean() for u in range(len(R))])
    assert auc > 0.8


def test_sparse_adam_moves_only_the_touched_rows_like_adam():
    from maasrec.models.bpr import _BPRStep

    g = torch.Generator().manual_seed(0)
    P0, Q0 = torch.randn(6, 3, generator=g), torch.randn(5, 3, generator=g)
    b0 = torch.randn(5, generator=g)
    u, i, j = torch.tensor([0, 2, 2]), torch.tensor([1, 3, 1]), torch.tensor([4, 0, 4])
    dense = _BPRStep(P0.clone(), Q0.clone(), b0.clone(), 0.01, 0.1, "adam")
    lazy = _BPRStep(P0.clone(), Q0.clone(), b0.clone(), 0.01, 0.1, "sparse_adam")
    with torch.no_grad():
        loss_d, loss_l = dense(u, i, j), lazy(u, i, j)
    torch.testing.assert_close(loss_l, loss_d)
    # on the first step both are lr * sign(grad) on the rows with a gradient ...
    for a, b in ((lazy.P, dense.P), (lazy.Q, dense.Q), (lazy.b, dense.b)):
        torch.testing.assert_close(a, b)
    # ... and rows no triple touched stay where they were
    torch.testing.assert_close(lazy.P[[1, 3, 4, 5]], P0[[1, 3, 4, 5]], rtol=0, atol=0)
    torch.testing.assert_close(lazy.Q[2], Q0[2], rtol=0, atol=0)


def test_distinct_rows_match_torch_unique(monkeypatch):
    from maasrec.models.bpr import _DistinctRows

    monkeypatch.setattr(_DistinctRows, "SORT_BYTES", _DistinctRows.SORT_BYTES)

    g = torch.Generator().manual_seed(0)
    for sort_bytes in (1 << 30, 0):
        _DistinctRows.SORT_BYTES = sort_bytes
        distinct = _DistinctRows(torch.zeros(50, 3))
        assert distinct.sort == (sort_bytes == 0)
        for n in (1, 7, 200):  # the position table is reused between calls
            idx = torch.randint(50, (n,), generator=g)
            rows, inv = distinct(idx)
            if distinct.sort:
                torch.testing.assert_close(rows, torch.unique(idx), rtol=0, atol=0)
            torch.testing.assert_close(rows.sort().values, torch.unique(idx), rtol=0, atol=0)
            torch.testing.assert_close(rows[inv], idx, rtol=0, atol=0)


def test_seeded_and_silent(capsys):
    data = random_data(3)
    a = BPRMF(factors=4, epochs=3, batch_size=32, random_state=5).fit(data)
    b = BPRMF(factors=4, epochs=3, batch_size=32, random_state=5).fit(data)
    c = BPRMF(factors=4, epochs=3, batch_size=32, random_state=6).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_bias_, b.item_bias_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    BPRMF(factors=4, epochs=2, batch_size=32, random_state=5, verbose=True).fit(data)
    assert "BPRMF" in capsys.readouterr().err


def test_no_item_bias_and_no_rejection():
    data = random_data(4)
    m = BPRMF(factors=4, epochs=2, item_bias=False, exclude_positives=False,
              random_state=0).fit(data)
    assert (m.item_bias_ == 0).all()


def test_init_std_scales_the_initial_factors():
    data = random_data(1)
    # one SGD step with a tiny learning rate: the factors are still about the initial ones
    kw = dict(factors=16, epochs=1, optimizer="sgd", learning_rate=1e-9, random_state=0)
    small = BPRMF(init_std=0.01, **kw).fit(data)
    large = BPRMF(init_std=0.1, **kw).fit(data)
    np.testing.assert_allclose(large.user_factors_, 10 * small.user_factors_, rtol=1e-5)
    np.testing.assert_allclose(np.std(large.item_factors_), 0.1, rtol=0.2)


def test_divergence_raises_and_leaves_the_model_unfitted():
    from maasrec.exceptions import NotFittedError
    from maasrec.training import NonFiniteLossError

    data = random_data(1)
    m = BPRMF(factors=8, epochs=2, random_state=0).fit(data)
    m.set_params(optimizer="sgd", learning_rate=1e30, epochs=5)
    with pytest.raises(NonFiniteLossError, match=r"BPRMF diverged: .*epoch 1 .*"
                                                  r"learning_rate=1e\+30.*lower learning_rate"):
        m.fit(data)
    assert not m.is_fitted
    with pytest.raises(NotFittedError):
        m.recommend(data.user_vocab.ids[:1])


def test_history_is_not_supported():
    data = random_data(5)
    m = BPRMF(factors=4, epochs=1, random_state=0).fit(data)
    with pytest.raises(NotImplementedError, match="history"):
        m.recommend(history=[1000, 1001], k=3)


def test_auto_optimizer_rule_is_dense_on_the_published_data_and_lazy_at_scale():
    from maasrec.models.bpr import _auto_batch_size, choose_optimizer

    # (users, items, training interactions): MovieLens 100K and Amazon Beauty leave-last-out,
    # MovieLens 1M random 8:1:1 -- the data sets whose published numbers use dense Adam
    for n_users, n_items, nnz in ((943, 1682, 98_114), (6040, 3706, 800_167),
                                  (22_363, 12_101, 153_776), (22_363, 12_101, 158_000)):
        assert choose_optimizer("auto", n_users, n_items, _auto_batch_size(nnz)) == "adam"
    # the scaling suite's 3 and 10 million interactions: 60,000 / 200,000 users x 5,000 items
    # (7.9 and 25 rows per triple of 8,192)
    assert choose_optimizer("auto", 60_000, 5000, _auto_batch_size(3_000_000)) == "adam"
    assert choose_optimizer("auto", 200_000, 5000, _auto_batch_size(10_000_000)) == "sparse_adam"
    assert choose_optimizer("auto", 20_000, 5000, _auto_batch_size(1_000_000)) == "adam"
    # above the floor, the rows per triple decide (75,000 rows: 4.6 per triple of 16,384,
    # 73 per triple of 1,024)
    assert choose_optimizer("auto", 70_000, 5000, 16_384) == "adam"
    assert choose_optimizer("auto", 70_000, 5000, 1024) == "sparse_adam"
    for name in ("adam", "sparse_adam", "sgd"):  # an explicit choice is kept
        assert choose_optimizer(name, 200_000, 5000, 256) == name
        assert choose_optimizer(name, 10, 10, 8192) == name
    with pytest.raises(DataError, match=r"optimizer.*'auto', 'adam', 'sparse_adam', 'sgd'.*'lazy'"):
        choose_optimizer("lazy", 10, 10, 8)


@pytest.mark.parametrize("resolved", ["adam", "sparse_adam"])
def test_auto_fits_exactly_like_the_optimizer_it_picks(resolved, monkeypatch, tmp_path):
    from maasrec.models import bpr

    if resolved == "sparse_adam":  # make the tiny data set "large"
        monkeypatch.setattr(bpr, "LAZY_MIN_ROWS", 0)
        monkeypatch.setattr(bpr, "LAZY_ROWS_PER_TRIPLE", 1)
    data = random_data(7)
    kw = dict(factors=6, epochs=4, batch_size=32, random_state=3)
    auto = BPRMF(**kw).fit(data)
    assert auto.optimizer == "auto" and auto.optimizer_ == resolved
    explicit = BPRMF(optimizer=resolved, **kw).fit(data)
    assert explicit.optimizer_ == resolved
    other = BPRMF(optimizer="sparse_adam" if resolved == "adam" else "adam", **kw).fit(data)
    for name in ("user_factors_", "item_factors_", "item_bias_"):
        np.testing.assert_array_equal(getattr(auto, name), getattr(explicit, name))
    assert not np.array_equal(auto.user_factors_, other.user_factors_)
    loaded = BPRMF.load(auto.save(tmp_path / "m"))
    assert loaded.optimizer == "auto" and loaded.optimizer_ == resolved
    np.testing.assert_array_equal(loaded.user_factors_, auto.user_factors_)


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(DataError, match=r"optimizer must be one of \['auto', 'adam', "
                                        r"'sparse_adam', 'sgd'\], got 'sgdm'"):
        BPRMF(optimizer="sgdm").fit(random_data(0))


@pytest.mark.parametrize("params, name", [
    ({"factors": 0}, "factors"), ({"learning_rate": 0.0}, "learning_rate"),
    ({"regularization": -1e-3}, "regularization"), ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"), ({"optimizer": "sgdm"}, "optimizer"),
    ({"init_std": 0.0}, "init_std"),
])
def test_bad_params_name_the_value(params, name):
    with pytest.raises(DataError, match=name):
        BPRMF(**params).fit(random_data(0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_trains():
    data = random_data(6)
    m = BPRMF(factors=8, epochs=5, batch_size=64, random_state=0, device="cuda").fit(data)
    assert np.isfinite(m.item_factors_).all()


def test_vectors_for_retrieval_fold_in_the_bias():
    from maasrec.rankers import FaissRetriever

    data = random_data(7)
    m = BPRMF(factors=6, epochs=5, batch_size=64, random_state=0).fit(data)
    u = np.arange(10)
    V = m._item_vectors()
    assert V.shape == (data.n_items, 7) and V is m._item_vectors()  # cached, no copy per call
    np.testing.assert_allclose(m._user_vectors(u) @ V.T, m._score_users(u), rtol=1e-5, atol=1e-6)
    users = list(data.user_vocab.ids[:8])
    exact = m.recommend(users, k=5)
    approx = m.recommend(users, k=5, retriever=FaissRetriever("flat", n_candidates=20))
    np.testing.assert_array_equal(approx[0], exact[0])
    np.testing.assert_allclose(approx[1], exact[1], rtol=1e-5, atol=1e-6)


def test_auto_batch_size_gives_about_100_steps_per_epoch():
    from maasrec.models.bpr import _auto_batch_size

    assert _auto_batch_size(80_000) == 800
    assert _auto_batch_size(1_000_000) == 8192
    assert _auto_batch_size(1_000) == 256


def test_dense_adam_is_bit_identical_to_torch_fused_adam():
    from maasrec.models.bpr import _DenseAdam

    g = torch.Generator().manual_seed(0)
    ours = [torch.randn(7, 3, generator=g), torch.randn(5, generator=g)]
    ref = [t.clone() for t in ours]
    adam = _DenseAdam(ours, 0.01)
    for t in ref:
        t.grad = torch.zeros_like(t)
    try:
        torch_adam = torch.optim.Adam(ref, lr=0.01, fused=True)
    except (RuntimeError, TypeError, ValueError):
        pytest.skip("this torch has no fused Adam on the CPU")
    for _ in range(4):
        adam.zero_grad()
        for t, r in zip(ours, ref):
            grad = torch.randn(t.shape, generator=g)
            t.grad.add_(grad)
            r.grad.copy_(grad)
        adam.step()
        torch_adam.step()
    for t, r in zip(ours, ref):
        assert torch.equal(t, r)


def test_several_sampling_chunks_per_epoch_train_alike(monkeypatch):
    """Triples and negatives come a chunk of batches at a time; many small chunks cover
    every interaction once per epoch too (the same seed gives the same model) and learn
    as well as one chunk."""
    import maasrec.models.bpr as bpr

    data = random_data(4)
    one = BPRMF(factors=8, epochs=20, batch_size=32, random_state=0).fit(data)
    monkeypatch.setattr(bpr, "SAMPLE_CHUNK", 64)  # two batches per chunk
    many = BPRMF(factors=8, epochs=20, batch_size=32, random_state=0).fit(data)
    again = BPRMF(factors=8, epochs=20, batch_size=32, random_state=0).fit(data)
    np.testing.assert_array_equal(many.user_factors_, again.user_factors_)
    assert not np.array_equal(many.user_factors_, one.user_factors_)
    R = data.to_csr(binary=True).toarray() > 0

    def auc(m):
        s = m._score_users(np.arange(data.n_users))
        return np.mean([(s[u][R[u]][:, None] > s[u][~R[u]][None, :]).mean()
                        for u in range(len(R))])

    assert auc(many) > 0.8 and abs(auc(many) - auc(one)) < 0.05
    assert np.isclose(many.training_log_["losses"][-1], one.training_log_["losses"][-1], rtol=0.1)


@pytest.mark.parametrize("n_rows", [9, 400])  # repeated rows in a batch / mostly distinct
def test_dense_adam_steps_match_autograd_and_torch_adam(n_rows):
    g = torch.Generator().manual_seed(5)
    P = torch.randn(n_rows, 4, generator=g, dtype=torch.float64)
    Q = torch.randn(n_rows, 4, generator=g, dtype=torch.float64)
    b = torch.randn(n_rows, generator=g, dtype=torch.float64)
    ref = [t.clone().requires_grad_(True) for t in (P, Q, b)]
    opt = torch.optim.Adam(ref, lr=1e-2)
    step = _BPRStep(P, Q, b, 1e-2, 0.1, "adam")
    for _ in range(4):
        u, i, j = (torch.randint(n_rows, (6,), generator=g) for _ in range(3))
        opt.zero_grad()
        (batch_loss(*ref, u, i, j, 0.1) / len(u)).backward()
        opt.step()
        step(u, i, j)
    for t, r in zip((P, Q, b), ref):
        np.testing.assert_allclose(t.numpy(), r.detach().numpy(), rtol=1e-9, atol=1e-12)
