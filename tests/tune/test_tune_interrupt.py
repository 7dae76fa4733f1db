"""Classical fits stopped by tune's deadline between blocks (maasrec.models._interrupt)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from maasrec.data import Interactions
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity
from maasrec.models import ease as ease_module
from maasrec.models._interrupt import FitInterrupted, check_deadline, fit_deadline
from maasrec.tune._budget import Budget


def _random_csr(n_users: int, n_items: int, per_user: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.integers(0, n_items, size=n_users * per_user)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    X.data[:] = 1.0
    return X


def test_check_is_a_no_op_without_a_deadline():
    check_deadline("nothing")  # no block: nothing happens
    with fit_deadline(None):
        check_deadline("nothing")
    with fit_deadline(time.monotonic() - 1.0):
        with pytest.raises(FitInterrupted, match=r"stopped by its deadline after .* \(here\)"):
            check_deadline("here")
        with fit_deadline(None):  # an inner block lifts the deadline
            check_deadline("inner")
    check_deadline("after")  # the block's end restores "no deadline"


def test_blocked_ease_solve_equals_the_direct_inverse(monkeypatch):
    """The blocked Cholesky (several blocks) and the column-block solve give the inverse
    LAPACK's direct routine gives, in float64; B follows from it."""
    monkeypatch.setattr(ease_module, "CHOLESKY_BLOCK", 64)
    X = _random_csr(900, 300, 12, seed=1)
    l2 = 20.0
    G = (X.T @ X).toarray() + l2 * np.eye(300)
    ref = torch.cholesky_inverse(torch.linalg.cholesky(torch.from_numpy(G))).numpy()
    P = np.empty((300, 300))
    B = ease_module._ease_weights(X, l2, inverse=P)
    scale = np.abs(ref).max()
    assert np.abs(P - ref).max() <= 1e-10 * scale
    B_ref = ref / -np.diag(ref)
    np.fill_diagonal(B_ref, 0.0)
    np.testing.assert_allclose(B, B_ref.astype(np.float32), rtol=1e-5, atol=1e-7)
    # a deadline far away changes nothing, to the bit
    with fit_deadline(time.monotonic() + 3600.0):
        B2 = ease_module._ease_weights(X, l2)
    assert np.array_equal(B, B2)


def test_blocked_cholesky_reports_the_failing_row(monkeypatch):
    monkeypatch.setattr(ease_module, "CHOLESKY_BLOCK", 4)
    A = torch.eye(10, dtype=torch.float64)
    A[6, 6] = -1.0  # not positive definite at row 7 (from 1), in the second block
    assert ease_module._cholesky_in_place(A.mT) == 7


@pytest.mark.parametrize("make, where", [
    (lambda: EASE(l2=10.0), "EASE"),
    (lambda: ALS(factors=4, iterations=3, random_state=0), "ALS iterations"),
    (lambda: BPRMF(factors=4, epochs=2, random_state=0), "BPRMF epochs"),
    (lambda: ItemKNN(n_neighbors=5), "ItemKNN similarities"),
])
def test_classical_fit_stops_at_a_passed_deadline(make, where):
    X = Interactions.from_csr(_random_csr(60, 40, 5, seed=2))
    model = make()
    with fit_deadline(time.monotonic() - 1.0):
        with pytest.raises(FitInterrupted) as e:
            model.fit(X)
    assert e.value.where.startswith(where)
    ids, _ = make().fit(X).recommend([0, 1], k=3)  # outside the block the same model fits
    assert ids.shape == (2, 3)


def test_als_stops_between_iterations():
    X = Interactions.from_csr(_random_csr(200, 100, 8, seed=3))
    model = ALS(factors=8, iterations=10**6, random_state=0)
    t0 = time.monotonic()
    with fit_deadline(t0 + 0.3):
        with pytest.raises(FitInterrupted, match="ALS iterations") as e:
            model.fit(X)
    assert e.value.seconds >= 0.3
    assert time.monotonic() - t0 < 60.0  # a million iterations would take far longer
    assert not hasattr(model, "item_factors_")


def test_budget_counts_a_stopped_fit_as_a_lower_bound():
    b = Budget(60.0, (10, 10, 10))
    b.record("ALS", 5.0, complete=False)
    assert b.expected("ALS", True) == 5.0
    b.record("ALS", 2.0)  # a complete trial shorter than the stopped one: the floor holds
    assert b.expected("ALS", True) == 5.0
    b.record("ItemKNN", 3.0)
    assert b.expected("ItemKNN", True) == 3.0


@pytest.fixture(scope="module")
def big():
    """6,000 items: EASE's fit takes tens of seconds on one core."""
    n_items = 6000
    return (Interactions.from_csr(_random_csr(1500, n_items, 20, seed=4)),
            Interactions.from_csr(_random_csr(1500, n_items, 2, seed=5)))


@pytest.mark.slow
def test_tune_stops_an_ease_trial_running_past_the_budget(monkeypatch, big):
    """EASE's fit starts because the advance estimate is wrong (as at another load) and
    is stopped past the budget and its grace: the trial is PRUNED without a model, the
    search ends, the earlier best is returned."""
    pytest.importorskip("optuna")
    from maasrec.tune import _budget, tune

    monkeypatch.setattr(_budget, "predicted_seconds", lambda *a: 0.01)
    monkeypatch.setattr(ease_module, "GRAM_BLOCK_CELLS", 2**20)  # 256-column solve blocks
    train, valid = big
    budget = 4.0
    res = tune(train, valid, models=[Popularity, EASE], budget=budget, random_state=0,
               strategy="joint", confirm=False)
    lb = res.leaderboard
    ease = lb[lb.model == "EASE"]
    assert len(ease) == 1 and ease.state.iloc[0] == "PRUNED"
    assert ease.note.iloc[0].startswith("stopped by the budget after")
    assert "unfinished" in ease.note.iloc[0]
    assert res.best_model_name == "Popularity" and res.best_model is not None
    assert res.budget_exhausted and res.stopped_by_budget == 1
    grace = max(1.0, 0.02 * budget)
    # the grace plus one block (a fraction of a second here) with generous slack; the
    # whole fit would have run past the budget by tens of seconds
    assert res.overrun_seconds < grace + 0.75 * budget
    assert res.overrun_seconds >= grace  # stopped only once the grace had passed too


@pytest.mark.slow
def test_spread_stops_an_ease_trial_half_a_share_past_its_share(monkeypatch, big):
    """strategy="spread": EASE's default may use half its share past the share's end
    (plus the grace), as a neural epoch may; then it is stopped, the budget is not."""
    pytest.importorskip("optuna")
    from maasrec.tune import _budget, tune

    monkeypatch.setattr(_budget, "predicted_seconds", lambda *a: 0.01)
    monkeypatch.setattr(ease_module, "GRAM_BLOCK_CELLS", 2**20)
    train, valid = big
    res = tune(train, valid, models=[Popularity, EASE], budget=10.0, random_state=0,
               strategy="spread", confirm=False)
    lb = res.leaderboard
    ease = lb[lb.model == "EASE"]
    assert len(ease) == 1 and ease.state.iloc[0] == "PRUNED"
    assert ease.note.iloc[0].startswith("stopped at the end of its family's time share after")
    assert res.best_model_name == "Popularity" and res.stopped_by_budget == 0
    assert res.overrun_seconds == 0.0  # stopped before the budget's end
