"""The finalists' second fold of maasrec.tune (``confirm=True``, tune/_confirm.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from maasrec.data.datasets import make_synthetic
from maasrec.data.split import random_split
from maasrec.exceptions import ColdStartWarning, DataError
from maasrec.models import EASE, ItemKNN, Popularity, PureSVD
from maasrec.tune import tune
from maasrec.tune._confirm import Z, paired_gap, per_user_values, second_fold

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def split():
    X = make_synthetic(300, 120, density=0.05, n_factors=4, seed=0, with_text=False,
                       with_timestamps=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return random_split(X, (0.8, 0.1, 0.1), random_state=0)


def test_paired_gap_is_the_mean_difference_and_its_standard_error():
    a = {"u1": 0.5, "u2": 0.2, "u3": 0.9, "u4": 0.0}
    b = {"u1": 0.4, "u2": 0.4, "u3": 0.6, "u5": 1.0}  # u4, u5 unpaired: left out
    gap, se = paired_gap(a, b)
    d = np.array([0.1, -0.2, 0.3])
    assert gap == pytest.approx(d.mean())
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(3))
    assert all(math.isnan(x) for x in paired_gap({"u": 1.0}, {"u": 0.0}))


def test_second_fold_is_a_part_of_train_the_size_of_valid(split):
    train, valid, _ = split
    fit_on, fold = second_fold(train, valid, seed=3)
    tr = set(map(tuple, train.to_pandas()[["user", "item"]].to_numpy().tolist()))
    va = set(map(tuple, valid.to_pandas()[["user", "item"]].to_numpy().tolist()))
    fo = set(map(tuple, fold.to_pandas()[["user", "item"]].to_numpy().tolist()))
    fi = set(map(tuple, fit_on.to_pandas()[["user", "item"]].to_numpy().tolist()))
    assert fo <= tr and not fo & fi and fi == (tr - fo) | va
    assert abs(len(fo) - len(va)) <= 0.25 * len(va)
    # seeded: the same fold again, another with another seed
    assert fold.to_pandas().equals(second_fold(train, valid, seed=3)[1].to_pandas())
    assert not fold.to_pandas().equals(second_fold(train, valid, seed=4)[1].to_pandas())


def _tune(split, **kw):
    train, valid, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tune(train, valid, models=[Popularity, PureSVD, ItemKNN, EASE], n_trials=16,
                    random_state=0, **kw)


def test_finalists_are_rescored_on_a_second_fold(split):
    train, valid, _ = split
    res = _tune(split)
    sel = res.selection
    assert sel is not None and sel["chosen"] == res.best_model_name
    rows = sel["finalists"]
    assert 2 <= len(rows) <= 3 and "Popularity" not in rows  # far behind: not a finalist
    # the leader on valid is the first finalist; each is within Z paired SEs of it
    lb = res.leaderboard[res.leaderboard.state == "COMPLETE"]
    best_of = lb.groupby("model")["ndcg@10"].max()
    lead = next(iter(rows))
    assert rows[lead]["valid"] == best_of.max()
    for name, row in rows.items():
        assert row["valid"] == pytest.approx(best_of[name])
        assert row["mean"] == pytest.approx((row["valid"] + row["fold2"]) / 2)
    # the chosen one has the best mean; the returned model is its trial's, with its value
    assert sel["chosen"] == max(rows, key=lambda n: rows[n]["mean"])
    assert res.best_trial == rows[sel["chosen"]]["trial"]
    assert res.best_value == pytest.approx(rows[sel["chosen"]]["valid"])
    assert type(res.best_model).__name__ == sel["chosen"]
    assert res.best_model.get_params() == {**res.best_model.get_params(), **res.best_params}
    # the second-fold value is the finalist's parameters fitted on the rest, scored there
    fit_on, fold = second_fold(train, valid, seed=sel["fold_seed"])
    cls = {"PureSVD": PureSVD, "ItemKNN": ItemKNN, "EASE": EASE}[sel["chosen"]]
    model = cls(**res.best_params).fit(fit_on)
    pu = per_user_values(model, fit_on, fold, "ndcg@10", 10)
    assert rows[sel["chosen"]]["fold2"] == pytest.approx(np.mean(list(pu.values())))
    assert "finalists" in res.message and res.to_dict()["selection"]["chosen"] == sel["chosen"]


def test_confirm_false_returns_the_validation_leader(split):
    res = _tune(split, confirm=False)
    done = res.leaderboard[res.leaderboard.state == "COMPLETE"]
    assert res.selection is None and res.best_value == done["ndcg@10"].max()


def test_finalists_use_paired_standard_errors(split):
    from types import SimpleNamespace

    from maasrec.tune._confirm import finalists

    def users(f):
        return {u: f(u) for u in range(100)}

    # the part of a search the rule reads: each family's (value, trial, model, per user)
    search = SimpleNamespace(family={
        "A": (0.30, 0, None, users(lambda u: 0.30 + 0.01 * (u % 3))),
        "B": (0.29, 1, None, users(lambda u: 0.29 + 0.01 * (u % 3))),
        "C": (0.299, 2, None, users(lambda u: 0.299 + (0.2 if u % 2 else -0.2)
                                    + 0.01 * (u % 3)))})

    # B is 0.01 behind with no spread in the differences (SE 0): out; C is 0.001 behind
    # with a large spread: in
    assert finalists(search) == ["A", "C"]
    assert Z == 2.0


def test_confirm_must_be_a_bool(split):
    train, valid, _ = split
    with pytest.raises(DataError, match="confirm must be True or False"):
        tune(train, valid, models=[EASE], n_trials=1, confirm="yes")


def test_under_a_budget_the_second_fits_have_time_held_back(split, monkeypatch):
    from maasrec.tune import search as search_mod

    held = []
    orig = search_mod._Search.hold_back

    def spy(self, share=0.25):
        before = self.budget.deadline
        orig(self, share)
        held.append((before - self.budget.deadline, self.reserved))

    monkeypatch.setattr(search_mod._Search, "hold_back", spy)
    train, valid, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tune(train, valid, models=[Popularity, PureSVD, ItemKNN, EASE], budget=4,
                   random_state=0)
    # held back once, after the defaults: the deadline moved by what was reserved
    assert len(held) == 1 and held[0][0] == pytest.approx(held[0][1]) and held[0][1] > 0
    assert res.selection is not None
    assert all("fold2" in r for r in res.selection["finalists"].values())


def test_a_neural_trial_is_aborted_half_a_share_past_its_share():
    from maasrec.tune._budget import Budget
    from maasrec.tune.search import _Search

    s = _Search.__new__(_Search)
    s.budget = Budget(600.0, (10, 10, 10))
    s.slice_end = s.slice_len = None
    assert s._abort_deadline() == s.budget.deadline  # outside a share: the budget's end
    s.slice_end, s.slice_len = s.budget.start + 100.0, 100.0
    assert s._abort_deadline() == pytest.approx(s.budget.start + 150.0)
    s.slice_end, s.slice_len = s.budget.start + 580.0, 100.0  # never past the budget
    assert s._abort_deadline() == s.budget.deadline
    s.budget = Budget(None, (10, 10, 10))
    assert s._abort_deadline() == pytest.approx(s.slice_end + 50.0)
