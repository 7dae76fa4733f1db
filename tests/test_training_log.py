"""One fitted-log name (``training_log_``) and one meaning of ``verbose`` (issue 22)."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest

from maasrec import load
from maasrec.lm_ranker import LMRanker
from maasrec.models import ALS, BPRMF
from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender
from maasrec.testing.checks import tiny_interactions
from maasrec.training import EpochLog, TrainingHistory

TRAINED = {
    "ALS": lambda **kw: ALS(factors=4, iterations=3, random_state=0, **kw),
    "BPRMF": lambda **kw: BPRMF(factors=4, epochs=3, batch_size=64, random_state=0, **kw),
    "HybridRecommender": lambda **kw: HybridRecommender(dim=8, epochs=3, random_state=0,
                                                        validation_fraction=None, **kw),
    "NeuMF": lambda **kw: NeuMF(dim=8, mlp_layers=(8, 4), epochs=3, batch_size=64,
                                random_state=0, validation_fraction=None, **kw),
    "SequentialRecommender": lambda **kw: SequentialRecommender(
        max_len=6, dim=8, n_layers=1, n_heads=2, epochs=3, batch_size=16, random_state=0,
        validation_fraction=None, **kw),
}
HISTORY_KEYS = set(TrainingHistory().to_dict())


@pytest.fixture(scope="module")
def data():
    return tiny_interactions(n_users=24, n_items=20)


@pytest.mark.parametrize("cls", [ALS, BPRMF, HybridRecommender, NeuMF, SequentialRecommender,
                                 LMRanker])
def test_verbose_defaults_to_false_and_is_documented(cls):
    assert inspect.signature(cls).parameters["verbose"].default is False
    doc = inspect.getdoc(cls)
    assert "verbose : bool, default False" in doc and "tqdm progress bar over" in doc


@pytest.mark.parametrize("name", list(TRAINED))
def test_training_log_is_a_training_history_dict(name, data, capsys):
    model = TRAINED[name]().fit(data)
    log = model.training_log_
    assert isinstance(log, dict) and HISTORY_KEYS <= set(log)
    assert len(log["losses"]) == len(log["seconds"]) == 3 and log["steps"] > 0
    json.dumps(log)  # saved as JSON
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # verbose=False: silent


@pytest.mark.parametrize("name", ["BPRMF", "HybridRecommender"])
def test_verbose_shows_an_epoch_bar_and_prints_nothing(name, data, capsys):
    TRAINED[name](verbose=True).fit(data)
    out = capsys.readouterr()
    assert out.out == "" and "0/3" in out.err and "epoch" in out.err  # a bar over 3 epochs


@pytest.mark.parametrize("name, old", [("HybridRecommender", "history_"),
                                       ("NeuMF", "history_"), ("ALS", "_epoch_log"),
                                       ("BPRMF", "_epoch_log")])
def test_old_names_are_deprecated_aliases(name, old, data):
    model = TRAINED[name]()
    assert not hasattr(model, old)  # unfitted: no log under either name
    model.fit(data)
    with pytest.warns(FutureWarning, match=f"{old} is deprecated.*training_log_"):
        value = getattr(model, old)
    if old == "history_":
        assert value is model.training_log_
    else:
        assert isinstance(value, EpochLog)
        assert value.seconds == model.training_log_["seconds"]
        assert len(value.losses) == 3


@pytest.mark.parametrize("name", list(TRAINED))
def test_training_log_round_trips(name, data, tmp_path):
    model = TRAINED[name]().fit(data)
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "maasrec.json").read_text())
    assert "training_log_" in meta["attributes"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading a new directory warns about nothing
        loaded = load(tmp_path / "m")
    assert loaded.training_log_ == model.training_log_


@pytest.mark.parametrize("name, old", [("HybridRecommender", "history_"), ("ALS", None)])
def test_directories_saved_under_the_old_name_still_load(name, old, data, tmp_path):
    """Hybrid/NeuMF saved ``history_``; ALS/BPRMF saved no log (``_epoch_log`` was private)."""
    model = TRAINED[name]().fit(data)
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "maasrec.json"
    meta = json.loads(path.read_text())
    entry = meta["attributes"].pop("training_log_")
    if old is not None:
        meta["attributes"][old] = entry
    path.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load(tmp_path / "m")
    if old is not None:
        assert loaded.training_log_ == model.training_log_
    else:
        assert not hasattr(loaded, "training_log_")
    users = list(data.user_vocab.ids[:3])
    np.testing.assert_array_equal(loaded.recommend(users, k=3)[0], model.recommend(users, k=3)[0])
