"""maasrec.tune.tune end to end on small synthetic data (classical and neural models)."""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest

from maasrec.data.datasets import make_synthetic
from maasrec.data.split import random_split
from maasrec.exceptions import ColdStartWarning, DataError, MaasrecError
from maasrec.metrics import evaluate
from maasrec.models import EASE, ItemKNN, Popularity, PureSVD
from maasrec.training import Trainer
from maasrec.tune import TrialCallback, TuneBudgetError, trainer_callbacks, tune

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def split():
    X = make_synthetic(300, 120, density=0.05, n_factors=4, seed=0, with_text=False,
                       with_timestamps=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return random_split(X, (0.8, 0.1, 0.1), random_state=0)


def _vae(**kw):
    from maasrec.neural.vae import MultVAE

    return MultVAE(**{"hidden_dims": (32,), "latent_dim": 8, "batch_size": 64, **kw})


def test_classical_search_finds_the_best_on_validation(split):
    train, valid, _ = split
    res = tune(train, valid, models=["Popularity", "PureSVD", EASE], n_trials=8,
               random_state=0)
    lb = res.leaderboard
    assert list(lb.columns) == ["trial", "model", "params", "ndcg@10", "fit_seconds",
                                "epochs", "state", "note", "worker"]
    assert len(lb) == 8 and res.n_trials == 8
    # the defaults of each model come first, in the order given
    first = lb.sort_values("trial").head(3)
    assert first["model"].tolist() == ["Popularity", "PureSVD", "EASE"]
    assert first["params"].iloc[2] == {"l2": 500.0}
    done = lb[lb.state == "COMPLETE"]
    assert res.best_value == done["ndcg@10"].max() == lb["ndcg@10"].iloc[0]
    # the returned model is fitted with the returned parameters and scores that value
    assert type(res.best_model).__name__ == res.best_model_name
    assert res.best_model.get_params() == {**res.best_model.get_params(), **res.best_params}
    again = evaluate(res.best_model, train, valid, k=10, metrics=["ndcg@10"], n_bootstrap=0)
    assert again["ndcg@10"] == pytest.approx(res.best_value)
    assert not res.budget_exhausted and res.stopped_by_budget == 0
    assert "best " in res.message and res.to_dict()["best_model"] == res.best_model_name


def test_same_seed_same_search(split):
    train, valid, _ = split
    a = tune(train, valid, models=[PureSVD, ItemKNN], n_trials=6, random_state=3)
    b = tune(train, valid, models=[PureSVD, ItemKNN], n_trials=6, random_state=3)
    ka = a.leaderboard.sort_values("trial")[["model", "params", "ndcg@10"]]
    kb = b.leaderboard.sort_values("trial")[["model", "params", "ndcg@10"]]
    assert ka.to_dict("records") == kb.to_dict("records")
    c = tune(train, valid, models=[PureSVD, ItemKNN], n_trials=6, random_state=4)
    assert c.leaderboard.sort_values("trial")["params"].tolist() != \
        ka["params"].tolist()


def test_override_space_and_fixed_values(split):
    train, valid, _ = split
    res = tune(train, valid, models={EASE(implicit=True): {"l2": ("float", 5.0, 50.0)}},
               n_trials=4, random_state=0)
    l2s = [p["l2"] for p in res.leaderboard["params"]]
    assert all(5.0 <= v <= 50.0 for v in l2s) and len(set(l2s)) == 4
    assert 5.0 <= res.best_params["l2"] <= 50.0


def test_repeated_parameters_are_not_refitted(split):
    train, valid, _ = split
    res = tune(train, valid, models={Popularity: None,
                                     PureSVD: {"factors": ("choice", [4, 8])}},
               n_trials=10, random_state=0)
    lb = res.leaderboard
    repeats = lb[lb.note.str.startswith("same parameters as trial")]
    assert len(lb) == 10 and len(repeats) == 10 - 3  # only 3 distinct points exist
    assert (repeats.fit_seconds == 0.0).all()


def test_refit_on_train_and_valid(split):
    train, valid, _ = split
    res = tune(train, valid, models=[EASE], n_trials=3, random_state=0, refit=True)
    assert res.refit and "refitted on train + valid" in res.message
    assert res.best_model.seen_.nnz == train.nnz + valid.nnz
    # the refitted model excludes valid items itself
    ids, _ = res.best_model.recommend(valid.user_vocab.ids[:5], k=5)
    assert ids.shape == (5, 5)


def test_neural_trials_are_pruned_at_the_warmup_epoch(split):
    train, valid, _ = split
    with pytest.raises(MaasrecError, match="no trial completed: 0 failed"):
        tune(train, valid, models={_vae(epochs=30, patience=30): {
            "learning_rate": ("float", 1e-3, 1e-2, "log")}}, n_trials=2, random_state=0,
            pruner=optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=2))


def test_pruned_trials_in_the_leaderboard(split):
    train, valid, _ = split
    study_pruner = optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=2)
    res = tune(train, valid, models={Popularity: None, _vae(epochs=30, patience=30): {
        "learning_rate": ("float", 1e-3, 1e-2, "log")}}, n_trials=3, random_state=0,
        pruner=study_pruner)
    lb = res.leaderboard
    vae = lb[lb.model == "MultVAE"]
    assert len(vae) >= 1 and (vae.state == "PRUNED").all()
    # ThresholdPruner(n_warmup_steps=2) first judges epoch 2: training stops there
    assert (vae.epochs == 2).all()
    assert vae.note.str.startswith("pruned at epoch 2").all()
    assert vae["ndcg@10"].notna().all()
    assert res.best_model_name == "Popularity"


def test_median_pruner_compares_a_model_with_its_own_trials():
    from maasrec.tune._optuna import per_model_pruner

    study = optuna.create_study(direction="maximize",
                                pruner=per_model_pruner(optuna.pruners.MedianPruner(
                                    n_startup_trials=1, n_warmup_steps=0)))
    dist = optuna.distributions.CategoricalDistribution(["A", "B"])
    for model, v in (("A", 0.9), ("B", 0.1)):  # one finished trial of each model
        study.add_trial(optuna.trial.create_trial(
            params={"model": model}, distributions={"model": dist}, value=v,
            intermediate_values={1: v}))
    t = study.ask({"model": dist})
    t.report(0.5, 1)
    # 0.5 is above B's median (0.1) and below A's (0.9)
    assert t.should_prune() == (t.params["model"] == "A")


def test_budget_stops_a_neural_trial_at_an_epoch_end(split):
    train, valid, _ = split
    res = tune(train, valid, models={_vae(epochs=100000, patience=100000, eval_every=1): {
        "dropout": 0.5}}, budget=3, random_state=0, pruner=None)
    assert res.budget_exhausted and res.stopped_by_budget == 1
    lb = res.leaderboard
    assert len(lb) == 1 and lb.state.iloc[0] == "COMPLETE"
    assert lb.note.iloc[0].startswith("stopped by the budget after epoch")
    assert 0 < lb.epochs.iloc[0] < 100000
    assert res.best_model is not None and math.isfinite(res.best_value)
    assert "ended the search" in res.message


def test_budget_too_small_for_one_trial(split, monkeypatch):
    from maasrec.tune import _budget

    train, valid, _ = split
    monkeypatch.setattr(_budget, "predicted_seconds", lambda *a: 1e9)  # as for a huge EASE
    with pytest.raises(TuneBudgetError, match=r"no trial completed within the budget of 60 s "
                                              r"\(0 fit\(s\) started, 1 trial\(s\) stopped by the budget\)") as e:
        tune(train, valid, models=[EASE], budget=60, random_state=0)
    r = e.value.result
    assert r.best_model is None and r.budget_exhausted
    assert r.leaderboard.note.tolist() == ["not started: expected 1000000000 s, 60 s left"]


def test_classical_trial_not_started_when_it_cannot_end_in_time(split, monkeypatch):
    from maasrec.tune import _budget

    train, valid, _ = split
    monkeypatch.setattr(_budget, "predicted_seconds",  # as for a huge EASE
                        lambda model, *a: 1e9 if model == "EASE" else None)
    res = tune(train, valid, models=[Popularity, EASE], budget=60, random_state=0)
    lb = res.leaderboard
    ease = lb[lb.model == "EASE"]
    assert (ease.state == "FAIL").all() and ease.note.str.startswith(
        "not started: expected 1000000000 s").all()
    assert res.best_model_name == "Popularity"
    assert res.stopped_by_budget >= 1 and res.budget_exhausted


@pytest.mark.parametrize("kw, words", [
    ({"metric": "ndgc@10"}, "unknown metric 'ndgc@10'"),
    ({"metric": "ndcg@0"}, "bad cut-off"),
    ({"metric": "auc@5"}, "'auc' takes no cut-off"),
    ({"n_trials": 0}, "n_trials must be a positive integer"),
    ({"budget": "soon"}, "budget 'soon' is not a duration"),
    ({"models": {EASE: {"l2": ("float", -1.0, 10.0, "log")}}}, "log range needs low > 0"),
    ({"models": ["NoSuchModel"]}, "unknown model 'NoSuchModel'"),
    ({"refit": "yes"}, "refit must be True or False"),
    ({"pruner": "hyperband"}, "pruner must be"),
])
def test_bad_input(split, kw, words):
    train, valid, _ = split
    args = {"models": [Popularity], "n_trials": 1, **kw}
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        tune(train, valid, **args)


def test_storage_that_cannot_be_opened(split, tmp_path):
    train, valid, _ = split
    bad = f"sqlite:///{tmp_path}/no/such/dir/tune.db"
    with pytest.raises(MaasrecError, match="cannot open the tuning storage 'sqlite:///"):
        tune(train, valid, models=[Popularity], n_trials=1, storage=bad)
    with pytest.raises(MaasrecError, match=r"cannot open the tuning storage "
                                           r"'nosuchdb://user:\*\*\*@host/db'") as e:
        tune(train, valid, models=[Popularity], n_trials=1,
             storage="nosuchdb://user:secret@host/db")
    assert "secret" not in str(e.value)


def test_sqlite_path_and_resume(split, tmp_path):
    train, valid, _ = split
    path = tmp_path / "study.db"
    a = tune(train, valid, models=[PureSVD], n_trials=2, storage=path, study_name="s",
             random_state=0)
    b = tune(train, valid, models=[PureSVD], n_trials=2, storage=str(path), study_name="s",
             random_state=0)
    assert len(a.leaderboard) == 2 and len(b.leaderboard) == 4
    assert b.best_value >= a.best_value
    with pytest.raises(MaasrecError, match="set to maximize its objective, this metric needs "
                                           "minimize"):
        tune(train, valid, models=[PureSVD], n_trials=1, storage=path, study_name="s",
             metric="gini@10")


def test_missing_optuna_names_the_extra(split, monkeypatch):
    train, valid, _ = split
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MaasrecError, match=r'pip install "maasrec\[tune\]"'):
        tune(train, valid, models=[Popularity], n_trials=1)


def _tiny_fit(epochs: int = 2):
    import torch

    from maasrec.training import TrainerConfig, TrainingTask

    net = torch.nn.Linear(2, 1)
    data = [torch.ones(4, 2), torch.ones(4, 2)]
    task = TrainingTask(net, lambda epoch: data, lambda b: net(b).square().mean())
    return Trainer(task, TrainerConfig(epochs=epochs, random_state=0)).fit()


def test_trainer_callbacks_reach_trainers_built_in_the_context():
    seen = []

    class Spy(TrialCallback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(epoch)

    original = Trainer.__init__
    with trainer_callbacks(Spy(None, None)):
        _tiny_fit()
    assert seen == [1, 2]
    assert Trainer.__init__ is original
    _tiny_fit()
    assert seen == [1, 2]


def test_deadline_stops_at_the_epoch_end_or_aborts_past_the_grace():
    import time

    from maasrec.tune import BudgetExhausted

    late = TrialCallback(None, time.monotonic() - 1.0, grace=3600.0)
    with trainer_callbacks(late):
        hist = _tiny_fit(epochs=5)
    assert hist.epochs == 1 and late.stopped_by_budget and late.epochs == 1
    gone = TrialCallback(None, time.monotonic() - 1.0, grace=0.5)
    with trainer_callbacks(gone), pytest.raises(BudgetExhausted, match="during epoch 1"):
        _tiny_fit(epochs=5)
    assert gone.stopped_by_budget


def test_leaderboard_values_are_finite_for_completed(split):
    train, valid, _ = split
    res = tune(train, valid, models=[PureSVD], n_trials=3, random_state=1)
    done = res.leaderboard[res.leaderboard.state == "COMPLETE"]
    assert np.isfinite(done["ndcg@10"].to_numpy(dtype=float)).all()
