"""tune(strategy="spread"): defaults first, then successive halving over the leading
families, each searched by its own TPE; bad input of the strategy and the budget."""

from __future__ import annotations

import warnings

import pytest

from maasrec.data.datasets import make_synthetic
from maasrec.data.split import random_split
from maasrec.exceptions import ColdStartWarning, DataError, MaasrecError
from maasrec.models import EASE, ItemKNN, Popularity, PureSVD
from maasrec.tune import TuneBudgetError, tune
from maasrec.tune._schedule import LEADERS, family_best

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def split():
    X = make_synthetic(300, 120, density=0.05, n_factors=4, seed=1, with_text=False,
                       with_timestamps=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return random_split(X, (0.8, 0.1, 0.1), random_state=0)


def _blocks(models: list[str]) -> list[str]:
    """Consecutive runs of the same model: ['A', 'A', 'B'] -> ['A', 'B']."""
    return [m for i, m in enumerate(models) if i == 0 or models[i - 1] != m]


def test_defaults_then_rounds_of_halving(split):
    train, valid, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tune(train, valid, models=[Popularity, PureSVD, ItemKNN, EASE], n_trials=16,
                   random_state=0, confirm=False)
    lb = res.leaderboard.sort_values("trial")
    assert len(lb) == 16 and res.n_trials == 16
    models = lb.model.tolist()
    assert models[:4] == ["Popularity", "PureSVD", "ItemKNN", "EASE"]  # the defaults
    defaults = dict(zip(lb.model[:4], lb["ndcg@10"][:4], strict=True))
    # round 1: each searchable family in turn, best default first (Popularity has no space)
    ranked = sorted(["PureSVD", "ItemKNN", "EASE"], key=defaults.get, reverse=True)
    blocks = _blocks(models[4:])
    assert blocks[:3] == ranked
    # every family searches its own parameters: never a trial of a family outside its turn
    assert len(blocks) == len(set(blocks)) + (len(blocks) - 3)
    # the last round belongs to one family, the best after the round before it
    assert len(set(models[-3:])) == 1
    assert res.best_value >= max(defaults.values())
    assert res.best_value == max(family_best(res.study, optuna, True).values())


def test_leaders_only_and_never_below_the_best_default(split):
    from maasrec.models import ALS, BPRMF

    train, valid, _ = split
    models = [Popularity, PureSVD, ItemKNN, EASE, ALS(iterations=3), BPRMF(epochs=3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tune(train, valid, models=models, n_trials=14, random_state=0, confirm=False)
    lb = res.leaderboard.sort_values("trial")
    defaults = dict(zip(lb.model[:6], lb["ndcg@10"][:6], strict=True))
    searched = {m: v for m, v in defaults.items() if m != "Popularity"}
    leaders = sorted(searched, key=searched.get, reverse=True)[:LEADERS]
    assert set(lb.model[6:]) <= set(leaders)
    assert res.best_value >= max(defaults.values())


def test_joint_keeps_one_sampler_over_all(split):
    train, valid, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = tune(train, valid, models=[PureSVD, EASE], n_trials=6, random_state=0,
                 strategy="joint")
        b = tune(train, valid, models=[PureSVD, EASE], n_trials=6, random_state=0,
                 strategy="joint")
    assert a.leaderboard.sort_values("trial")["params"].tolist() == \
        b.leaderboard.sort_values("trial")["params"].tolist()
    assert a.leaderboard.sort_values("trial").model.tolist()[:2] == ["PureSVD", "EASE"]


@pytest.mark.slow
def test_a_neural_default_stops_at_its_share(split):
    from maasrec.neural.vae import MultVAE

    train, valid, _ = split
    vae = MultVAE(hidden_dims=(16,), latent_dim=8, batch_size=64, epochs=100000,
                  patience=100000)
    # a space without MultVAE's fixed patience: the instance's patience holds
    res = tune(train, valid, models={Popularity: None,
                                     vae: {"learning_rate": ("float", 1e-4, 1e-3, "log")}},
               budget=40, random_state=0)
    lb = res.leaderboard.sort_values("trial")
    first_vae = lb[lb.model == "MultVAE"].iloc[0]
    assert first_vae.state == "COMPLETE"
    assert first_vae.note.startswith("stopped at the end of its family's time share"), \
        res.leaderboard.to_dict("records")
    assert res.best_model is not None and res.elapsed_seconds < 40 + 40


def test_budget_too_small_for_any_family(split, monkeypatch):
    from maasrec.tune import _budget

    train, valid, _ = split
    monkeypatch.setattr(_budget, "predicted_seconds", lambda *a: 1e9)
    with pytest.raises(TuneBudgetError, match=r"no trial completed within the budget of "
                                              r"30 s") as e:
        tune(train, valid, models=[EASE, ItemKNN], budget=30, random_state=0,
             strategy="spread")
    r = e.value.result
    assert r.best_model is None and r.budget_exhausted
    assert r.leaderboard.note.str.startswith("not started: expected 1000000000 s").all()


def test_best_so_far_when_the_budget_ends(split, monkeypatch):
    from maasrec.tune import _budget

    train, valid, _ = split
    monkeypatch.setattr(_budget, "predicted_seconds",
                        lambda model, *a: 1e9 if model == "EASE" else None)
    res = tune(train, valid, models=[Popularity, EASE, PureSVD], budget=30, n_trials=6,
               random_state=0)
    assert res.best_model_name in ("Popularity", "PureSVD")
    ease = res.leaderboard[res.leaderboard.model == "EASE"]
    assert len(ease) == 1 and ease.note.iloc[0].startswith("not started: expected")


@pytest.mark.parametrize("kw, error, words", [
    ({"strategy": "halving"}, DataError, "strategy must be 'auto', 'spread' or 'joint'"),
    ({"strategy": "spread", "storage": "sqlite:///x.db"}, DataError,
     "strategy='spread' runs in one process"),
    ({"models": {EASE: {"l2": ("float", 100.0, 10.0)}, Popularity: None}}, DataError, "l2"),
    ({"models": {ItemKNN: {"n_neighbors": ("int", 5, "many")}}}, DataError, "n_neighbors"),
    ({"models": {EASE: {"no_such_param": ("float", 1.0, 2.0)}}}, DataError,
     "no_such_param"),
    ({"metric": "ndcg"}, None, None),  # a metric without cut-off: @10
    ({"metric": "rmse@10"}, DataError, "unknown metric 'rmse@10'"),
    ({"budget": 0}, DataError, "budget must be a positive duration"),
])
def test_bad_input_of_a_spread_search(split, kw, error, words):
    train, valid, _ = split
    args = {"models": [Popularity, PureSVD], "n_trials": 2, **kw}
    if error is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert tune(train, valid, **args).metric == "ndcg@10"
        return
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        tune(train, valid, **args)


def test_storage_that_cannot_be_opened_names_it(split, tmp_path):
    train, valid, _ = split
    target = tmp_path / "a_file"
    target.write_text("not a database")
    with pytest.raises(MaasrecError, match="cannot open the tuning storage"):
        tune(train, valid, models=[Popularity, PureSVD], n_trials=2,
             storage=f"sqlite:///{target}/tune.db")


def test_cli_strategy(split, tmp_path, capsys):
    import json

    from maasrec.tune import cli_main

    train, valid, _ = split
    paths = tmp_path / "train.csv", tmp_path / "valid.csv"
    train.to_pandas().to_csv(paths[0], index=False)
    valid.to_pandas().to_csv(paths[1], index=False)
    lb = tmp_path / "lb.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli_main(["--train", str(paths[0]), "--valid", str(paths[1]), "--models",
                         "PureSVD,EASE", "--n-trials", "5", "--no-progress", "--strategy",
                         "joint", "--leaderboard", str(lb)])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n_trials"] == 5
    assert cli_main(["--train", str(paths[0]), "--valid", str(paths[1]), "--strategy",
                     "spread", "--storage", str(tmp_path / "s.db"), "--n-trials", "1",
                     "--no-progress"]) == 2
    assert "strategy='spread' runs in one process" in capsys.readouterr().err


def test_no_experimental_warning_reaches_the_user(split):
    train, valid, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        res = tune(train, valid, models=[PureSVD, EASE], n_trials=5, random_state=0)
    assert res.n_trials == 5


def test_defaults_not_reached_are_named_in_the_leaderboard(split):
    train, valid, _ = split
    res = tune(train, valid, models=[Popularity, PureSVD, EASE], n_trials=1, random_state=0)
    lb = res.leaderboard
    waiting = lb[lb.state == "WAITING"]
    assert sorted(waiting.model) == ["EASE", "PureSVD"]
    assert (waiting.note == "not run: the search ended first").all()
    assert res.best_model_name == "Popularity" and res.n_trials == 1


def test_neighbours_move_one_log_parameter_at_a_time():
    from maasrec.models import ALS
    from maasrec.tune._models import resolve_models
    from maasrec.tune._schedule import neighbours

    cands = {c.name: c for c in resolve_models([EASE, ALS, Popularity])}
    assert neighbours(cands["EASE"]) == [{"EASE.l2": pytest.approx(500 / 3)},
                                         {"EASE.l2": 1500.0}]
    assert neighbours(cands["Popularity"]) == []
    als = neighbours(cands["ALS"])
    base = {"ALS.factors": 64, "ALS.regularization": 30.0, "ALS.alpha": 2.0,
            "ALS.iterations": 15, "ALS.confidence": "linear"}
    assert als[0] == {**base, "ALS.factors": 21} and als[1] == {**base, "ALS.factors": 192}
    for n in als:  # every other parameter at its default
        assert sum(n[key] != value for key, value in base.items()) == 1


def test_a_family_with_few_trials_starts_from_its_defaults_neighbours(split):
    train, valid, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tune(train, valid, models=[EASE, Popularity], n_trials=5, random_state=0,
                   confirm=False)
    lb = res.leaderboard.sort_values("trial")
    ease = [p["l2"] for m, p in zip(lb.model, lb.params) if m == "EASE"]
    # the default, then its neighbours (l2 / 3, l2 * 3), then TPE
    assert ease[:3] == [500.0, pytest.approx(500 / 3), 1500.0], lb.to_dict("records")


def test_the_rounds_leader_gets_one_trials_time_from_the_round(monkeypatch):
    """An expensive leader whose equal share is shorter than one of its trials takes one
    trial's time from what is left (else it would never be searched); the others share
    the rest of the round, and a leader whose trial does not fit in the budget is not
    given it."""
    from types import SimpleNamespace

    from maasrec.tune import _schedule

    now = [1000.0]
    monkeypatch.setattr(_schedule.time, "monotonic", lambda: now[0])
    calls = []

    class Budget:
        deadline = 1100.0

        def remaining(self):
            return self.deadline - now[0]

        def expired(self):
            return self.remaining() <= 0

        def expected(self, name, classical):
            return {"A": 40.0, "B": 1.0}[name]

    def run_slice(name, k, seconds, sampler):
        calls.append((name, round(seconds, 1)))
        now[0] += seconds          # each family uses its whole share
        return 1

    search = SimpleNamespace(budget=Budget(), cands={n: SimpleNamespace(name=n) for n in "AB"},
                             study=SimpleNamespace(get_trials=lambda deepcopy: []),
                             run_slice=run_slice, hold_back=lambda: None,
                             exhausted_models=set())
    monkeypatch.setattr(_schedule, "searchable", lambda cand: True)
    monkeypatch.setattr(_schedule, "_ranked", lambda s, names: [n for n in "AB" if n in names])
    monkeypatch.setattr(_schedule, "_classical", lambda s, name: True)
    monkeypatch.setattr(_schedule, "_probe", lambda *a: 0)
    _schedule.run_spread(search, None, None)
    # round 1 of 2 (50 s): A would get 25 s, less than its 40 s trial: it takes 44 s
    assert calls[0] == ("A", 44.0) and calls[1] == ("B", 6.0)
    # a trial longer than a round but within the budget: taken from what is left
    calls.clear()
    now[0] = 1000.0
    Budget.expected = lambda self, name, classical: {"A": 70.0, "B": 1.0}[name]
    _schedule.run_spread(search, None, None)
    assert calls[0] == ("A", 77.0)
    # longer than the whole budget: its equal share (it will not start there)
    calls.clear()
    now[0] = 1000.0
    Budget.expected = lambda self, name, classical: {"A": 170.0, "B": 1.0}[name]
    _schedule.run_spread(search, None, None)
    assert calls[0] == ("A", 25.0)
