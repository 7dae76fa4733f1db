"""The blocked softmax loss equals the unfused one (loss and gradients)."""

import numpy as np
import pytest
import torch

from maasrec.scorers import DotScorer
from maasrec.training import softmax_loss
from maasrec.training._fused_softmax import block_rows, fused_applies, fused_softmax_loss


def _problem(b=23, n=41, d=6, seed=0, empty_rows=(3, 4, 17)):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, generator=g, dtype=torch.float64)
    V = torch.randn(n, d, generator=g, dtype=torch.float64)
    ib = torch.randn(n, generator=g, dtype=torch.float64)
    counts = torch.randint(1, 9, (b,), generator=g)
    counts[list(empty_rows)] = 0  # users without targets in the batch
    rows = torch.repeat_interleave(torch.arange(b), counts)
    cols = torch.randint(0, n, (len(rows),), generator=g)  # repeats allowed
    return u, V, ib, rows, cols


def _nll(s, rows, cols):
    """The multinomial NLL in the input's precision (softmax_loss computes in float32)."""
    return -torch.log_softmax(s, dim=1)[rows, cols].sum() / s.shape[0]


def _grads(fn, *tensors):
    leaves = [None if t is None else t.clone().requires_grad_() for t in tensors]
    loss = fn(*leaves)
    loss.backward()
    return loss.detach(), [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("block", [1, 5, 8, 23, 100])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_unfused_loss_and_grads(block, temperature, bias):
    u, V, ib, rows, cols = _problem()
    ib = ib if bias else None

    def unfused(u, V, ib):
        s = u @ V.T / temperature
        if ib is not None:
            s = s + ib
        return _nll(s, rows, cols)

    def fused(u, V, ib):
        return fused_softmax_loss(u, V, ib, rows, cols, temperature=temperature, block=block)

    l1, g1 = _grads(unfused, u, V, ib)
    l2, g2 = _grads(fused, u, V, ib)
    assert abs(float(l1 - l2)) < 1e-12
    for a, c in zip(g1, g2):
        if a is None:
            assert c is None
        else:
            assert torch.allclose(a, c, atol=1e-12, rtol=0)


def test_unsorted_rows_and_upstream_grad():
    u, V, ib, rows, cols = _problem(seed=1)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(2))
    l1, g1 = _grads(lambda u, V, ib: 3.0 * _nll(u @ V.T + ib, rows, cols), u, V, ib)
    l2, g2 = _grads(lambda u, V, ib: 3.0 * fused_softmax_loss(u, V, ib, rows[perm], cols[perm],
                                                               block=4), u, V, ib)
    assert abs(float(l1 - l2)) < 1e-12
    for a, c in zip(g1, g2):
        assert torch.allclose(a, c, atol=1e-12, rtol=0)


def test_float32_close_and_no_grad_path():
    u, V, ib, rows, cols = (t.float() if t.is_floating_point() else t for t in _problem(b=64, n=300))
    ref = softmax_loss(u @ V.T + ib, cols, rows=rows)
    with torch.no_grad():
        out = fused_softmax_loss(u, V, ib, rows, cols)
    assert out.dtype == torch.float32
    assert abs(float(ref) - float(out)) < 1e-4 * abs(float(ref))


def test_non_finite_scores_give_a_non_finite_loss():
    u, V, ib, rows, cols = _problem()
    u = u.clone()
    u[0, 0] = float("nan")
    assert not np.isfinite(float(fused_softmax_loss(u, V, ib, rows, cols)))


def test_block_rows_and_applies():
    assert block_rows(3706, 512) == (1 << 19) // 3706
    assert block_rows(10 ** 7, 512) == 8
    assert block_rows(10, 5) == 5
    u, V = torch.zeros(2, 4), torch.zeros(3, 4)
    assert fused_applies(DotScorer(n_items=3, item_bias=True), u, V)
    assert not fused_applies(DotScorer(global_bias=True), u, V)
    assert not fused_applies(DotScorer(), u.double(), V.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_applies(DotScorer(), u, V)


def test_hybrid_fit_matches_unfused(monkeypatch):
    """A Hybrid fit takes the fused path and ends where the unfused fit ends."""
    import scipy.sparse as sp

    import maasrec.neural._hybrid_task as task_mod
    from maasrec.neural import HybridRecommender

    rng = np.random.default_rng(0)
    X = sp.random(80, 50, density=0.2, format="csr", random_state=rng)
    X.data[:] = 1.0
    users = np.arange(80)
    calls = []
    real = task_mod.fused_applies

    def spy(*a):
        calls.append(real(*a))
        return calls[-1]

    monkeypatch.setattr(task_mod, "fused_applies", spy)
    fused = HybridRecommender(epochs=3, random_state=0, validation_fraction=None, dim=8,
                              batch_size=16).fit(X).score_indices(users)
    assert calls and all(calls)
    monkeypatch.setattr(task_mod, "fused_applies", lambda *a: False)
    plain = HybridRecommender(epochs=3, random_state=0, validation_fraction=None, dim=8,
                              batch_size=16).fit(X).score_indices(users)
    assert np.abs(fused - plain).max() < 1e-4 * max(1.0, float(np.abs(plain).max()))
