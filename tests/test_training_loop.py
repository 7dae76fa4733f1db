"""Tests of the general training loop of maasrec.training: losses, samplers, schedules,
early stopping, NaN handling, callbacks, determinism (the loop every neural model uses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from maasrec.device import cuda_available
from maasrec.exceptions import DataError, MaasrecError
from maasrec.training import (
    InBatchNegativeSampler,
    NonFiniteLossError,
    PopularityNegativeSampler,
    UniformNegativeSampler,
    bce_loss,
    bpr_loss,
    fit_loop,
    get_loss,
    lr_factor,
    make_optimizer,
    make_sampler,
    mse_loss,
    ranking_validator,
    sampled_softmax_loss,
    softmax_loss,
    to_device,
)

# -- losses ---------------------------------------------------------------------------------


def test_bpr_and_bce_match_their_formulas():
    pos = torch.tensor([2.0, -1.0])
    neg = torch.tensor([[0.5, 1.0], [-2.0, 0.0]])
    sig = torch.sigmoid
    bpr = -torch.log(sig(pos[:, None] - neg)).mean()
    torch.testing.assert_close(bpr_loss(pos, neg), bpr)
    bce = (-torch.log(sig(pos)) - torch.log(1 - sig(neg)).sum(1)).mean()
    torch.testing.assert_close(bce_loss(pos, neg), bce)
    mask = torch.tensor([[True, False], [True, True]])
    terms = -torch.log(sig(pos[:, None] - neg))
    torch.testing.assert_close(bpr_loss(pos, neg, mask), terms[mask].mean())
    torch.testing.assert_close(bpr_loss(pos, neg[:, 0]), -torch.log(sig(pos - neg[:, 0])).mean())


def test_sampled_softmax_logq_and_mask():
    pos = torch.tensor([1.0, 0.0])
    neg = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    logits = torch.cat([pos[:, None], neg], 1)
    ref = torch.nn.functional.cross_entropy(logits, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(sampled_softmax_loss(pos, neg), ref)
    lq_pos, lq_neg = torch.tensor([-1.0, -2.0]), torch.tensor([[-0.5, -3.0], [-1.0, -1.0]])
    corrected = torch.cat([(pos - lq_pos)[:, None], neg - lq_neg], 1)
    ref = torch.nn.functional.cross_entropy(corrected, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(sampled_softmax_loss(pos, neg, log_q_pos=lq_pos, log_q_neg=lq_neg),
                               ref)
    mask = torch.tensor([[True, False], [True, True]])
    ref0 = torch.logsumexp(torch.tensor([1.0, 0.0]), 0) - 1.0
    ref1 = torch.logsumexp(logits[1], 0) - 0.0
    torch.testing.assert_close(sampled_softmax_loss(pos, neg, mask=mask), (ref0 + ref1) / 2)


def test_full_softmax_single_and_multi_target():
    scores = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    targets = torch.tensor([1, 2])
    ref = torch.nn.functional.cross_entropy(scores, targets)
    torch.testing.assert_close(softmax_loss(scores, targets), ref)
    rows, items = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2])
    logp = torch.log_softmax(scores, 1)
    ref = -(logp[0, 0] + logp[0, 1] + logp[1, 2]) / 2
    torch.testing.assert_close(softmax_loss(scores, items, rows=rows), ref)
    torch.testing.assert_close(mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0])),
                               torch.tensor(0.5))


def test_get_loss_names_the_bad_value():
    assert get_loss("bpr") is bpr_loss
    with pytest.raises(DataError, match="hinge"):
        get_loss("hinge")


# -- samplers ---------------------------------------------------------------------------------


def _positives(n_users=50, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    m = sp.random(n_users, n_items, density=0.2, random_state=rng, format="csr")
    m.data[:] = 1
    return m


def test_popularity_sampler_follows_counts_and_rejects_positives():
    R = _positives()
    counts = np.asarray(R.sum(0)).ravel()
    s = PopularityNegativeSampler(counts, alpha=1.0, positives=R)
    users = torch.arange(50).repeat(40)
    g = torch.Generator().manual_seed(0)
    items, log_q = s.draw(users, 5, g)
    assert items.shape == (2000, 5) and log_q.shape == (2000, 5)
    pos = torch.from_numpy(R.toarray() > 0)
    hits = pos[users.unsqueeze(1).expand(-1, 5), items]
    assert hits.float().mean() < 0.01
    p = np.maximum(counts, 1) / np.maximum(counts, 1).sum()
    torch.testing.assert_close(log_q, torch.from_numpy(np.log(p).astype(np.float32))[items])
    # without rejection the draws follow the distribution
    free = PopularityNegativeSampler(counts, alpha=1.0)
    many, _ = free.draw(torch.zeros(20000, dtype=torch.long), 1, g)
    freq = np.bincount(many.numpy().ravel(), minlength=40) / 20000
    assert np.abs(freq - p).max() < 0.02
    a, _ = free.draw(users[:10], 3, torch.Generator().manual_seed(1))
    b, _ = free.draw(users[:10], 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(DataError, match="alpha"):
        PopularityNegativeSampler(counts, alpha=-1)


def test_uniform_draw_and_in_batch_and_make_sampler():
    R = _positives()
    u = make_sampler("uniform", R)
    assert isinstance(u, UniformNegativeSampler)
    items, lq = u.draw(torch.arange(10), 3, torch.Generator().manual_seed(0))
    assert items.shape == (10, 3) and lq is None
    ib = make_sampler("in_batch", R)
    assert isinstance(ib, InBatchNegativeSampler)
    pos = torch.tensor([3, 5, 3])
    cols, log_q, mask = ib.negatives(pos)
    assert torch.equal(cols, pos) and log_q.shape == (3,)
    assert mask.tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    assert isinstance(make_sampler("popularity", R), PopularityNegativeSampler)
    with pytest.raises(DataError, match="zipf"):
        make_sampler("zipf", R)


# -- optimisers, schedules, devices ---------------------------------------------------------


def test_lr_schedules():
    f = lr_factor("cosine", total_steps=110, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0)
    g = lr_factor("linear", total_steps=100)
    assert g(50) == pytest.approx(0.5)
    # final=0: exactly (total - step) / (total - warm), LMRanker's schedule, bit for bit
    h = lr_factor("linear", total_steps=7, warmup_steps=2)
    assert [h(s) for s in range(9)] == [0.5, 1.0] + [(7 - s) / 5 for s in range(2, 7)] + [0.0, 0.0]
    assert lr_factor("constant", 10, 0)(7) == 1.0
    with pytest.raises(DataError, match="step"):
        lr_factor("step", 10)
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer(p, "adamw", weight_decay=0.1), torch.optim.AdamW)
    with pytest.raises(DataError, match="lion"):
        make_optimizer(p, "lion")


def test_to_device_keeps_structure():
    batch = {"a": torch.ones(2), "b": (torch.zeros(1), 3), "c": [torch.ones(1)]}
    out = to_device(batch, torch.device("cpu"))
    assert out["a"] is batch["a"] and out["b"][1] == 3 and isinstance(out["b"], tuple)


# -- the loop ---------------------------------------------------------------------------------


def _regression(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    y = X @ w + 0.01 * torch.randn(n, generator=g)
    return X, y


class _Net(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lin = torch.nn.Linear(5, 1)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x):
        return self.lin(self.drop(x)).squeeze(1)


def _run(epochs=20, seed=0, **kw):
    X, y = _regression()
    net = _Net()
    g = torch.Generator().manual_seed(1)

    def batches(epoch):
        order = torch.randperm(len(X), generator=g)
        return [order[s:s + 32] for s in range(0, len(X), 32)]

    def step(idx):
        return mse_loss(net(X[idx]), y[idx])

    hist = fit_loop(net, step, batches, epochs=epochs, learning_rate=0.05, random_state=seed,
                    device="cpu", **kw)
    return net, hist


def test_loss_decreases_on_a_planted_task_and_is_deterministic():
    state = torch.get_rng_state()
    net, hist = _run()
    assert torch.equal(torch.get_rng_state(), state), "fit_loop changed the global RNG"
    assert hist.losses[-1] < 0.2 * hist.losses[0]  # the floor is the dropout noise
    assert hist.epochs == 20 and hist.steps == 20 * 8 and hist.best_epoch is None
    net2, _ = _run()
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    net3, _ = _run(seed=5)
    assert not torch.equal(net.lin.weight, net3.lin.weight)  # dropout follows the seed


def test_schedule_clipping_and_weight_decay_run():
    _net, hist = _run(epochs=6, lr_schedule="cosine", warmup=0.2, clip_grad_norm=1.0,
                     optimizer="adamw", weight_decay=0.01)
    assert hist.learning_rates[-1] < 1e-3  # cosine decays to ~0
    assert hist.losses[-1] < hist.losses[0]


def test_gradient_clipping_bounds_the_update():
    w = torch.nn.Parameter(torch.zeros(3))
    mod = torch.nn.Module()
    mod.w = w

    def step(_):
        return (w * torch.tensor([100.0, 0.0, 0.0])).sum()

    fit_loop(mod, step, lambda e: [0], epochs=1, optimizer="sgd", learning_rate=1.0,
             clip_grad_norm=0.5, device="cpu")
    assert w.detach().norm().item() == pytest.approx(0.5, rel=1e-5)


def test_early_stopping_restores_the_best_epoch():
    sequence = iter([0.1, 0.5, 0.3, 0.2, 0.25, 0.1, 0.9])
    snapshots = []

    def validate():
        return next(sequence)

    def cb(epoch, logs):
        snapshots.append(net_ref[0].lin.weight.detach().clone())
        assert "loss" in logs and "ndcg@10" in logs and "lr" in logs

    validate.name = "ndcg@10"
    net_ref = [None]
    X, y = _regression()
    net = _Net()
    net_ref[0] = net
    hist = fit_loop(net, lambda idx: mse_loss(net(X[idx]), y[idx]),
                    lambda e: [torch.arange(64), torch.arange(64, 128)], epochs=7,
                    learning_rate=0.05, validate=validate, patience=3, callbacks=[cb],
                    random_state=0, device="cpu")
    assert hist.best_epoch == 2 and hist.best_metric == pytest.approx(0.5)
    assert hist.stopped_early and hist.epochs == 5
    assert torch.equal(net.lin.weight, snapshots[1]), "best checkpoint not restored"
    assert math.isnan(hist.metrics[0]) is False and hist.metrics[1] == pytest.approx(0.5)


def test_callback_can_stop_and_eval_every():
    calls = []

    def validate():
        calls.append(1)
        return 0.5

    _, hist = _run(epochs=10, validate=validate, eval_every=3,
                   callbacks=[lambda epoch, logs: epoch >= 7])
    assert hist.epochs == 7 and hist.stopped_early
    assert len(calls) == 2  # epochs 3 and 6
    with pytest.raises(DataError, match="callbacks"):
        _run(epochs=1, callbacks=[42])
    with pytest.raises(DataError, match="patience"):
        _run(epochs=1, patience=0)


def test_nan_loss_names_epoch_and_step_and_keeps_best_checkpoint():
    X, y = _regression()
    net = _Net()
    count = {"n": 0}

    def step(idx):
        count["n"] += 1
        loss = mse_loss(net(X[idx]), y[idx])
        if count["n"] == 7:  # epoch 3, step 1 (3 steps per epoch)
            return loss * float("nan")
        return loss

    seen = {}

    def validate():
        seen[len(seen)] = net.lin.weight.detach().clone()
        return [0.3, 0.6][len(seen) - 1]

    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 1") as info:
        fit_loop(net, step, lambda e: [torch.arange(32)] * 3, epochs=5, learning_rate=0.05,
                 validate=validate, random_state=0, device="cpu")
    err = info.value
    assert isinstance(err, MaasrecError) and isinstance(err, FloatingPointError)
    assert (err.epoch, err.step, err.best_epoch) == (3, 1, 2)
    assert torch.equal(net.lin.weight, seen[1])
    assert torch.isfinite(net.lin.weight).all()


def test_ranking_validator_on_a_perfect_scorer():
    from maasrec.data import Interactions

    train = Interactions.from_arrays(["a", "a", "b"], [1, 2, 2])
    valid = Interactions.from_arrays(["a", "b"], [3, 1]).with_vocab(train.user_vocab,
                                                                    train.item_vocab,
                                                                    unknown="ignore")
    vocab_i = train.item_vocab.extend([3])
    train = train.with_vocab(train.user_vocab, vocab_i)
    valid = Interactions.from_arrays(["a", "b"], [3, 1]).with_vocab(train.user_vocab, vocab_i)
    truth = valid.to_csr(binary=True).toarray()

    def score(idx):
        return truth[idx] + 0.0

    v = ranking_validator(score, train.user_vocab, vocab_i, train, valid, k=2)
    assert v.name == "ndcg@2" and v() == pytest.approx(1.0)


@pytest.mark.skipif(not cuda_available(), reason="needs CUDA")
def test_loop_on_cuda_with_amp():  # pragma: no cover - CPU-only machines skip it
    X, y = _regression()
    net = _Net().cuda()
    Xc, yc = X.cuda(), y.cuda()
    hist = fit_loop(net, lambda idx: mse_loss(net(Xc[idx]), yc[idx]),
                    lambda e: [torch.arange(64)], epochs=20, learning_rate=0.05,
                    device="cuda", random_state=0)
    assert hist.losses[-1] < hist.losses[0]


def test_continue_global_rng_starts_the_trainer_stream_from_the_callers():
    """LMRanker's hook: dropout continues the caller's global stream, which is left as it was."""
    from maasrec.training import Trainer, TrainerConfig, TrainingTask

    module = torch.nn.Linear(2, 1)
    drawn = []

    def loss(batch):
        drawn.append(float(torch.rand(())))  # what dropout would draw
        return module(batch).pow(2).mean()

    def run(hook: bool):
        drawn.clear()
        torch.manual_seed(11)
        trainer = Trainer(TrainingTask(module, lambda e: [torch.ones(3, 2)], loss),
                          TrainerConfig(epochs=1, random_state=0))
        if hook:
            trainer.continue_global_rng()
        trainer.fit()
        return list(drawn), float(torch.rand(()))

    (own, after_own), (cont, after_cont) = run(False), run(True)
    torch.manual_seed(11)
    expected = float(torch.rand(()))
    assert cont == [expected] and own != [expected]
    assert after_own == after_cont == expected  # the caller's stream is untouched
