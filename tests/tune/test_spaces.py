"""Search spaces: the forms, their checks, the declared spaces of every model."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest

from maasrec.exceptions import DataError
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD
from maasrec.tune import DEFAULT_SPACES, KNOWN_MODELS, parse_budget, parse_space, search_space_of
from maasrec.tune._models import AUTO_MODELS, resolve_models

optuna = pytest.importorskip("optuna")


def test_forms_parse_to_params():
    ps = {p.name: p for p in parse_space({
        "l2": ("float", 1.0, 100.0, "log"), "n": ("int", 1, 5), "s": ("choice", ["a", "b"]),
        "h": ("choice", [(600,), (200, 100)]), "f": ("fixed", (1, 2)), "x": 3, "y": None})}
    assert (ps["l2"].kind, ps["l2"].low, ps["l2"].high, ps["l2"].log) == ("float", 1.0, 100.0,
                                                                         True)
    assert (ps["n"].kind, ps["n"].low, ps["n"].high, ps["n"].log) == ("int", 1, 5, False)
    assert ps["h"].choices == ((600,), (200, 100))
    assert ps["f"].value == (1, 2) and ps["x"].value == 3 and ps["y"].kind == "fixed"


def test_optuna_distributions_accepted():
    d = optuna.distributions
    ps = parse_space({"a": d.FloatDistribution(0.1, 1.0, log=True), "b": d.IntDistribution(1, 9),
                      "c": d.CategoricalDistribution(["x", "y"])})
    assert [(p.kind, p.log) for p in ps] == [("float", True), ("int", False), ("choice", False)]


@pytest.mark.parametrize("space, words", [
    ({"l2": ("float", 10.0, 1.0)}, "is above high"),
    ({"l2": ("float", 0.0, 10.0, "log")}, "log range needs low > 0"),
    ({"l2": ("float", 1.0, float("inf"))}, "finite number"),
    ({"n": ("int", 1.5, 4)}, "integer"),
    ({"l2": ("float", 1.0)}, "write ('float', low, high)"),
    ({"l2": ("float", 1.0, 2.0, "linear")}, "('float', low, high, 'log')"),
    ({"s": ("choice", [])}, "at least one value"),
    ({"s": ("choice", "ab")}, "write ('choice'"),
    ({"s": ("choice", [1, 1])}, "repeated"),
    ({"h": (600, 200)}, "is not a spec"),
    ("l2", "must be a dict"),
])
def test_invalid_space_names_the_value(space, words):
    with pytest.raises(DataError, match=re.escape(words)):
        parse_space(space)


def test_space_checked_against_the_model():
    with pytest.raises(DataError, match="EASE: no parameter 'lambda'"):
        parse_space({"lambda": ("float", 1.0, 2.0)}, EASE)
    # the range reaches a value the model's own checks refuse
    with pytest.raises(DataError, match=r"EASE: \{'l2': 0.0\} is refused"):
        parse_space({"l2": ("float", 0.0, 10.0)}, EASE)
    with pytest.raises(DataError, match=r"ItemKNN.*'similarity': 'pearson'"):
        parse_space({"similarity": ("choice", ["cosine", "pearson"])}, ItemKNN)


@pytest.mark.parametrize("cls", [EASE, ItemKNN, ALS, BPRMF, PureSVD, Popularity])
def test_classical_models_declare_valid_spaces(cls):
    assert "search_space" in vars(cls)
    parse_space(cls.search_space, cls)  # every corner accepted by the model


def test_every_known_model_has_a_valid_space():
    cands = resolve_models(list(KNOWN_MODELS))
    assert {c.name for c in cands} == set(KNOWN_MODELS)
    for c in cands:
        if c.name != "Popularity":
            assert c.params, c.name
    assert set(AUTO_MODELS) <= set(KNOWN_MODELS)
    assert set(DEFAULT_SPACES) <= set(KNOWN_MODELS)


def test_class_attribute_wins_over_the_table():
    from maasrec.neural.vae import MultVAE

    class MyVAE(MultVAE):
        search_space: ClassVar[dict] = {"dropout": ("float", 0.1, 0.2)}

    assert search_space_of(MultVAE) == dict(MultVAE.search_space)
    assert search_space_of(MyVAE) == {"dropout": ("float", 0.1, 0.2)}


def test_every_known_model_declares_its_space_next_to_its_class():
    for name in KNOWN_MODELS:
        cls = resolve_models([name])[0].cls
        assert "search_space" in vars(cls), cls.__name__


def test_table_registers_a_space_for_a_class_without_one(monkeypatch):
    from maasrec.models import EASE

    class Mine(EASE):
        search_space = None

    monkeypatch.setitem(DEFAULT_SPACES, "Mine", {"l2": ("float", 1.0, 2.0)})
    assert search_space_of(Mine) == {"l2": ("float", 1.0, 2.0)}


def test_resolve_models_inputs():
    assert [c.name for c in resolve_models("auto")] == list(AUTO_MODELS)
    c, = resolve_models([EASE(l2=50.0)])
    assert c.base == {"l2": 50.0, "implicit": True}
    c, = resolve_models({"ease": {"l2": ("float", 1.0, 9.0)}})
    assert c.cls is EASE and c.searched() == {"l2": "float [1, 9]"}
    with pytest.raises(DataError, match="unknown model 'SVD\\+\\+'"):
        resolve_models(["SVD++"])
    with pytest.raises(DataError, match="given twice"):
        resolve_models([EASE, "EASE"])
    with pytest.raises(DataError, match="at least one"):
        resolve_models([])
    with pytest.raises(DataError, match="models must name"):
        resolve_models([42])


def test_choice_of_tuples_round_trips_through_a_trial():
    p, = parse_space({"hidden_dims": ("choice", [(600,), (300, 100)])})
    trial = optuna.trial.FixedTrial({"M.hidden_dims": repr((300, 100))})
    assert p.suggest(trial, "M") == (300, 100)


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("10min", 600.0), ("1.5h", 5400.0),
    ("1h30min", 5400.0), (" 2 m ", 120.0), ("45", 45.0)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("bad", ["ten minutes", "5 parsecs", "", 0, -1, "0s", True,
                                 float("nan"), [10]])
def test_parse_budget_refuses(bad):
    with pytest.raises(DataError, match="budget"):
        parse_budget(bad)
