"""Tests of maasrec.base: parameters, clone, recommend (written once), score, save/load."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import maasrec
from maasrec.base import Component, Recommender, clone, resolve_class
from maasrec.data import IdVocab, Interactions
from maasrec.exceptions import (
    DataError,
    MaasrecError,
    ModelFormatError,
    NotFittedError,
    UnknownIdError,
)
from maasrec.models import EASE, Popularity

# -- toy classes defined here (registered on definition; load must find them) ------------------


class Inner(Component):
    """A nested building block."""

    def __init__(self, a=1, b="x"):
        self.a = a
        self.b = b


class Toy(Recommender):
    """Scores are fixed per item: lower item index = higher score (0.5 per step)."""

    def __init__(self, weight=1.0, inner=None, tags=("x", "y"), layers=None, blocks=None):
        self.weight = weight
        self.inner = inner
        self.tags = tags
        self.layers = layers
        self.blocks = blocks

    def _fit(self, data, *, item_features=None, user_features=None, validation=None):
        n = data.n_items
        self.bias_ = (np.arange(n)[::-1] * 0.5 * self.weight).astype(np.float32)
        self.n_rows_ = int(data.nnz)
        self.scale_ = np.float32(2.5)
        self.names_ = np.array(["p", "q"], dtype=object)
        self.validation_nnz_ = None if validation is None else int(validation.nnz)
        self.calls_ = []

    def _score_users(self, user_idx):
        return np.broadcast_to(self.bias_, (len(user_idx), len(self.bias_)))

    def _score_history(self, history):
        # history matters: +10 for items co-listed... keep it simple: bias + row sums
        return self.bias_[None, :] + np.asarray(history.sum(axis=1), dtype=np.float32)


class NoHistory(Toy):
    supports_history = False

    def _score_history(self, history):
        raise AssertionError("must not be called")


class BadShape(Toy):
    def _score_users(self, user_idx):
        return np.zeros((len(user_idx), 1), dtype=np.float32)


class WithNested(Toy):
    def _fit(self, data, **kw):
        super()._fit(data, **kw)
        self.first_stage_ = Popularity().fit(data)


class WithTensor(Toy):
    def _fit(self, data, **kw):
        import torch

        super()._fit(data, **kw)
        self.emb_ = torch.arange(6, dtype=torch.float32).reshape(2, 3)


class StarArgs(Component):
    def __init__(self, *args):
        self.args = args


ITEMS = [100, 200, 300, 400, 500]


def data() -> Interactions:
    """a saw 100; b saw 200, 300; c saw nothing; pop saw everything."""
    rows = [("a", 100), ("b", 200), ("b", 300)] + [("pop", i) for i in ITEMS]
    users, items = zip(*rows)
    return Interactions.from_arrays(
        list(users),
        list(items),
        user_vocab=IdVocab(["a", "b", "c", "pop"], name="user"),
        item_vocab=IdVocab(ITEMS, name="item"),
    )


@pytest.fixture
def toy():
    return Toy().fit(data())


# -- params ------------------------------------------------------------------------------------


def test_get_params_deep_and_shallow():
    m = Toy(weight=2.0, inner=Inner(a=5))
    shallow = m.get_params(deep=False)
    assert set(shallow) == {"weight", "inner", "tags", "layers", "blocks"}
    assert shallow["inner"] is m.inner
    deep = m.get_params()
    assert deep["inner__a"] == 5 and deep["inner__b"] == "x" and deep["weight"] == 2.0
    assert Toy._get_param_names() == sorted(shallow)


def test_set_params_nested_and_errors():
    m = Toy(inner=Inner())
    assert m.set_params(weight=3.0, inner__a=7) is m
    assert m.weight == 3.0 and m.inner.a == 7
    new_inner = Inner(b="z")
    m.set_params(inner=new_inner, inner__a=9)  # the new component gets the nested value
    assert m.inner is new_inner and new_inner.a == 9 and new_inner.b == "z"
    with pytest.raises(DataError, match="'nope' is not a parameter of Toy") as info:
        m.set_params(nope=1)
    assert "weight" in str(info.value)
    with pytest.raises(DataError, match="'c' is not a parameter of Inner"):
        m.set_params(inner__c=1)


def test_star_args_rejected():
    with pytest.raises(TypeError, match="args"):
        StarArgs(1).get_params()


def test_repr_shows_non_defaults():
    assert repr(Toy()) == "Toy()"
    assert repr(Toy(weight=2.0, inner=Inner(a=3))) == "Toy(inner=Inner(a=3), weight=2.0)"
    assert "tags" in repr(Toy(tags=np.array([1, 2])))  # arrays don't crash repr


def test_clone_independent(toy):
    m = Toy(
        weight=2.0,
        inner=Inner(a=3),
        layers=[Inner(a=1), 5],
        tags=("t",),
        blocks={"x": Inner(b="q")},
    )
    m.fit(data())
    c = clone(m)
    assert type(c) is Toy and not c.is_fitted
    assert c.inner is not m.inner and c.inner.a == 3
    assert c.layers[0] is not m.layers[0] and c.layers[1] == 5
    assert c.blocks["x"] is not m.blocks["x"] and c.blocks["x"].b == "q"
    assert c.tags == ("t",) and type(c.tags) is tuple
    c.inner.a = 99
    c.layers[0].a = 99
    assert m.inner.a == 3 and m.layers[0].a == 1
    assert clone([1, {"a": Inner()}])[1]["a"].a == 1


# -- fitted state / NotFittedError -------------------------------------------------------------


def test_not_fitted_error_semantics():
    m = Toy()
    assert not m.is_fitted
    assert not hasattr(m, "n_items_") and not hasattr(m, "n_users_")
    with pytest.raises(NotFittedError) as info:
        m.recommend(["a"])
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    assert "Toy" in str(info.value) and "fit" in str(info.value)
    for call in (
        lambda: m.score(["a"], [1]),
        lambda: m.similar_items([1]),
        lambda: m.save("/nonexistent/never-written"),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_fit_sets_state(toy):
    assert toy.is_fitted
    assert toy.n_users_ == 4 and toy.n_items_ == 5
    assert toy.user_vocab_.ids.tolist() == ["a", "b", "c", "pop"]
    assert toy.seen_.shape == (4, 5)
    assert isinstance(toy.fitted_at_, str)
    assert toy.validation_nnz_ is None


def test_fit_accepts_frame_csr_and_validation():
    frame = data().to_pandas()
    m = Toy().fit(frame, validation=pd.DataFrame({"user": ["a", "zzz"], "item": [200, 100]}))
    assert m.validation_nnz_ == 1  # the unknown user is dropped
    m = Toy().fit(sp.csr_matrix(np.eye(3)))
    assert m.item_vocab_.ids.tolist() == [0, 1, 2]
    with pytest.raises(DataError):
        Toy().fit([[1, 2]])


# -- recommend: users --------------------------------------------------------------------------


def test_recommend_excludes_seen_and_sorts(toy):
    ids, scores = toy.recommend(["a", "b", "c"], k=3)
    np.testing.assert_array_equal(ids, [[200, 300, 400], [100, 400, 500], [100, 200, 300]])
    np.testing.assert_array_equal(scores[2], [2.0, 1.5, 1.0])
    assert scores.dtype == np.float32
    ids, _ = toy.recommend(["a"], k=2, exclude_seen=False)
    np.testing.assert_array_equal(ids, [[100, 200]])


def test_recommend_single_user_is_1d(toy):
    ids, scores = toy.recommend("b", k=2)
    assert ids.shape == (2,) and scores.shape == (2,)
    np.testing.assert_array_equal(ids, [100, 400])
    ids2, _ = toy.recommend(np.array(["b", "a"]), k=2)
    assert ids2.shape == (2, 2)
    ids3, _ = toy.recommend(("b",), k=2)
    assert ids3.shape == (1, 2)


def test_recommend_numpy_scalar_user():
    m = Toy().fit(pd.DataFrame({"user": [7, 8], "item": [1, 2]}))
    ids, _ = m.recommend(np.int64(7), k=1)
    assert ids.shape == (1,) and ids[0] == 2


def test_recommend_user_errors(toy):
    with pytest.raises(UnknownIdError, match="'zzz'") as info:
        toy.recommend(["a", "zzz"])
    assert info.value.ids == ["zzz"] and info.value.kind == "user"
    with pytest.raises(DataError, match="empty"):
        toy.recommend([])
    with pytest.raises(DataError, match="history"):
        toy.recommend()
    for bad in (0, -2, 1.5, "3", None, True):
        with pytest.raises(DataError, match="k must be a positive integer"):
            toy.recommend(["a"], k=bad)
    with pytest.raises(DataError, match="batch_size"):
        toy.recommend(["a"], batch_size=0)


def test_recommend_padding_numeric_and_str_ids(toy):
    ids, scores = toy.recommend("b", k=5)
    np.testing.assert_array_equal(ids, [100, 400, 500, -1, -1])
    assert np.isneginf(scores[3:]).all() and np.isfinite(scores[:3]).all()
    m = Toy().fit(pd.DataFrame({"user": [1, 1, 2], "item": ["x", "y", "z"]}))
    ids, scores = m.recommend(1, k=3)
    assert ids.tolist()[0] == "z" and ids.tolist()[1:] == [None, None]  # non-numeric sentinel
    # k beyond the catalogue is capped at the number of items (3 here)
    ids, scores = m.recommend([1, 2], k=10**9, exclude_seen=False)
    assert ids.shape == scores.shape == (2, 3) and np.isfinite(scores).all()


def test_recommend_batches_agree(toy):
    users = ["a", "b", "c", "pop", "a"]
    full = toy.recommend(users, k=4, exclude_seen=True)
    for bs in (1, 2, 3, 100):
        got = toy.recommend(users, k=4, batch_size=bs)
        np.testing.assert_array_equal(got[0], full[0])
        np.testing.assert_array_equal(got[1], full[1])


def test_recommend_wrong_score_shape():
    m = BadShape().fit(data())
    with pytest.raises(MaasrecError, match=r"BadShape returned scores of shape \(1, 1\)"):
        m.recommend(["a"])


# -- recommend: filters ------------------------------------------------------------------------


def test_items_global_and_per_user(toy):
    ids, _ = toy.recommend(["a", "c"], k=3, items=[500, 100, 300])
    np.testing.assert_array_equal(ids, [[300, 500, -1], [100, 300, 500]])
    ids, _ = toy.recommend(["a", "c"], k=2, items=[[500, 400], [300]])
    np.testing.assert_array_equal(ids, [[400, 500], [300, -1]])
    ids, _ = toy.recommend("c", k=2, items=400)  # one scalar item
    np.testing.assert_array_equal(ids, [400, -1])
    ids, _ = toy.recommend("c", k=2, items=[[400, 500]])  # one list for one user
    np.testing.assert_array_equal(ids, [400, 500])
    ids, _ = toy.recommend(["a", "c"], k=2, items=np.array([500, 400]))
    np.testing.assert_array_equal(ids, [[400, 500], [400, 500]])


def test_exclude_global_and_per_user(toy):
    ids, _ = toy.recommend(["c", "c"], k=2, exclude=[100, 300])
    np.testing.assert_array_equal(ids, [[200, 400], [200, 400]])
    ids, _ = toy.recommend(["c", "c"], k=2, exclude=[[100], (200, 300)])
    np.testing.assert_array_equal(ids, [[200, 300], [100, 400]])
    ids, _ = toy.recommend(["c", "c"], k=2, items=[100, 200, 300], exclude=[[100], [300]])
    np.testing.assert_array_equal(ids, [[200, 300], [100, 200]])


def test_filter_errors(toy):
    with pytest.raises(DataError, match="3 per-user lists for 2 users"):
        toy.recommend(["a", "b"], items=[[100], [200], [300]])
    with pytest.raises(DataError, match="exclude= has 1 per-user lists for 2 users"):
        toy.recommend(["a", "b"], exclude=[[100]])
    with pytest.raises(UnknownIdError, match="999"):
        toy.recommend(["a"], items=[100, 999])
    with pytest.raises(UnknownIdError, match="999"):
        toy.recommend(["a", "b"], exclude=[[100], [999]])
    with pytest.raises(DataError, match="raw item ids"):
        toy.recommend(["a"], items=sp.csr_matrix(np.ones((1, 5))))


# -- recommend: history ------------------------------------------------------------------------


def test_history_one_list_is_one_user(toy):
    ids, scores = toy.recommend(history=[100, 300], k=3)
    assert ids.shape == (3,)
    np.testing.assert_array_equal(ids, [200, 400, 500])  # history items excluded
    np.testing.assert_array_equal(scores, [1.5 + 2, 0.5 + 2, 0.0 + 2])  # row sum = 2
    ids_t, _ = toy.recommend(history=(100, 300), k=3)
    np.testing.assert_array_equal(ids_t, ids)
    ids_np, _ = toy.recommend(history=np.array([100, 300]), k=3)
    np.testing.assert_array_equal(ids_np, ids)
    ids_u, _ = toy.recommend("brand-new", history=[100, 300], k=3)  # unknown user id is fine
    np.testing.assert_array_equal(ids_u, ids)


def test_history_list_of_lists(toy):
    ids, _ = toy.recommend(history=[[100], [200, 300], (400,)], k=2)
    assert ids.shape == (3, 2)
    np.testing.assert_array_equal(ids, [[200, 300], [100, 400], [100, 200]])
    ids2, _ = toy.recommend(["x", "y", "z"], history=[[100], [200, 300], [400]], k=2)
    np.testing.assert_array_equal(ids2, ids)
    # known users: history replaces their training rows
    ids3, _ = toy.recommend(["a"], history=[[500]], k=1)
    np.testing.assert_array_equal(ids3, [[100]])


def test_history_exclude_seen_false_and_duplicates(toy):
    ids, scores = toy.recommend(history=[100, 100, 300], k=2, exclude_seen=False)
    np.testing.assert_array_equal(ids, [100, 200])
    assert scores[0] == 2.0 + 2  # duplicates count once (binary history)


def test_history_empty_falls_back_to_popularity():
    df = pd.DataFrame({"user": [1, 2, 3, 3, 3], "item": [30, 30, 30, 20, 10]})
    m = Toy().fit(df)
    _, s = m.recommend(history=[[], [10]], k=3)
    ids, s = m.recommend(history=[], k=3)
    np.testing.assert_array_equal(ids, [30, 10, 20])  # 3 users, then 1 and 1 (lower index)
    np.testing.assert_array_equal(s, [3, 1, 1])
    ids, _ = m.recommend(history=[[], [10]], k=2)
    np.testing.assert_array_equal(ids[0], [30, 10])


def test_history_errors(toy):
    with pytest.raises(DataError, match="3 users but 2 histories"):
        toy.recommend(["a", "b", "c"], history=[[100], [200]])
    with pytest.raises(DataError, match="one sequence per user"):
        toy.recommend(["a", "b"], history=[100, 200])
    with pytest.raises(DataError, match="history"):
        toy.recommend(history="100")
    with pytest.raises(DataError, match=r"list \[100\]"):  # read as one history: [100], 200
        toy.recommend(history=[[100], 200])
    with pytest.raises(DataError, match=r"history\[1\] must be a sequence"):
        toy._history_matrix([[100], 200])
    with pytest.raises(DataError, match=r"list \[100\]"):  # ragged: a list among the ids
        toy.recommend(history=[[100], "200"])
    with pytest.raises(DataError, match="missing"):
        toy.recommend(history=[None, [100]])
    with pytest.raises(UnknownIdError, match="777"):
        toy.recommend(history=[100, 777])
    with pytest.raises(NotImplementedError, match="history"):
        NoHistory().fit(data()).recommend(history=[100])


# -- score / similar_items ---------------------------------------------------------------------


def test_score_pairs(toy):
    s = toy.score(["a", "b", "a", "c"], [100, 500, 300, 100])
    np.testing.assert_array_equal(s, [2.0, 0.0, 1.0, 2.0])
    assert s.dtype == np.float32
    np.testing.assert_array_equal(toy.score("a", 200), [1.5])
    assert toy.score([], []).shape == (0,)
    with pytest.raises(DataError, match="same length, got 2 and 1"):
        toy.score(["a", "b"], [100])
    with pytest.raises(UnknownIdError, match="'q'"):
        toy.score(["q"], [100])
    with pytest.raises(UnknownIdError, match="12345"):
        toy.score(["a"], [12345])


def test_score_pairs_blocked(toy, monkeypatch):
    monkeypatch.setattr(maasrec.base, "SCORE_BLOCK_BYTES", 4)  # one user per block
    users = ["c", "a", "b", "a", "pop"]
    items = [500, 100, 200, 400, 300]
    np.testing.assert_array_equal(toy.score(users, items), [0.0, 2.0, 1.5, 0.5, 1.0])


def test_similar_items_not_available(toy):
    with pytest.raises(NotImplementedError, match="similar_items"):
        toy.similar_items([100])


# -- save / load -------------------------------------------------------------------------------


def test_save_load_round_trip_with_nested_params(tmp_path):
    m = Toy(
        weight=2.0,
        inner=Inner(a=3, b="q"),
        tags=("t", "u"),
        layers=[Inner(a=1), Inner(a=2)],
        blocks={"enc": Inner(b="e")},
    ).fit(data())
    path = tmp_path / "toy"
    assert m.save(path) == str(path)
    loaded = Recommender.load(path)
    assert type(loaded) is Toy
    assert isinstance(loaded.inner, Inner) and loaded.inner.get_params() == {"a": 3, "b": "q"}
    assert loaded.tags == ("t", "u") and type(loaded.tags) is tuple
    assert [x.a for x in loaded.layers] == [1, 2] and isinstance(loaded.layers, list)
    assert loaded.blocks["enc"].b == "e"
    assert repr(loaded) == repr(m)
    np.testing.assert_array_equal(loaded.bias_, m.bias_)
    assert loaded.n_rows_ == m.n_rows_ and loaded.scale_ == 2.5
    assert loaded.names_.tolist() == ["p", "q"]
    assert loaded.fitted_at_ == m.fitted_at_
    assert loaded.user_vocab_ == m.user_vocab_ and loaded.item_vocab_ == m.item_vocab_
    assert (loaded.seen_ != m.seen_).nnz == 0
    for a, b in zip(loaded.recommend(["a", "b", "c"], k=4), m.recommend(["a", "b", "c"], k=4)):
        np.testing.assert_array_equal(a, b)
    assert type(maasrec.load(path)) is Toy
    assert type(Toy.load(path)) is Toy


def test_save_load_tuple_of_components(tmp_path):
    m = Toy(tags=(Inner(a=1), Inner(a=2))).fit(data())
    m.save(tmp_path / "m")
    loaded = Toy.load(tmp_path / "m")
    assert type(loaded.tags) is tuple and [x.a for x in loaded.tags] == [1, 2]


def test_save_load_nested_recommender_and_tensor(tmp_path):
    m = WithNested().fit(data())
    m.save(tmp_path / "n")
    assert (tmp_path / "n" / "first_stage_" / "maasrec.json").is_file()
    loaded = WithNested.load(tmp_path / "n")
    assert isinstance(loaded.first_stage_, Popularity)
    np.testing.assert_array_equal(loaded.first_stage_.item_scores_, m.first_stage_.item_scores_)
    torch = pytest.importorskip("torch")
    t = WithTensor().fit(data())
    t.save(tmp_path / "t")
    lt = WithTensor.load(tmp_path / "t")
    assert isinstance(lt.emb_, torch.Tensor) and torch.equal(lt.emb_, t.emb_)


def test_load_refuses_other_class(tmp_path):
    Popularity().fit(data()).save(tmp_path / "pop")
    with pytest.raises(ModelFormatError, match="not a EASE"):
        EASE.load(tmp_path / "pop")
    with pytest.raises(ModelFormatError, match="not a Toy"):
        Toy.load(tmp_path / "pop")
    assert type(Recommender.load(tmp_path / "pop")) is Popularity


def test_save_existing_path(tmp_path, toy):
    toy.save(tmp_path / "m")
    with pytest.raises(FileExistsError):
        toy.save(tmp_path / "m")
    toy.save(tmp_path / "m", overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        toy.save(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep"


def test_failed_save_keeps_previous_model(tmp_path, toy):
    toy.save(tmp_path / "m")
    before = (tmp_path / "m" / "maasrec.json").read_text()
    toy.bad_ = {1: object()}
    with pytest.raises(ModelFormatError, match="bad_"):
        toy.save(tmp_path / "m", overwrite=True)
    del toy.bad_
    assert (tmp_path / "m" / "maasrec.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def _write_meta(path, **changes):
    meta = json.loads((path / "maasrec.json").read_text())
    meta.update(changes)
    (path / "maasrec.json").write_text(json.dumps(meta))


EVIL = textwrap.dedent("""
    import pathlib
    pathlib.Path({flag!r}).write_text("imported")

    class Thing:
        def __init__(self, **kw):
            pass
""")


@pytest.mark.parametrize(
    "class_name",
    [
        "os.system",
        "builtins.eval",
        "evil_mod_qx.Thing",
        "subprocess.Popen",
        "maasrec.no_such_module.Thing",
        "maasrec.exceptions.DataError",
        "maasrec",
        "",
        None,
        5,
    ],
)
def test_load_never_imports_named_modules(tmp_path, monkeypatch, toy, class_name):
    flag = tmp_path / "flag"
    (tmp_path / "evil_mod_qx.py").write_text(EVIL.format(flag=str(flag)))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("evil_mod_qx", None)
    had_subprocess = "subprocess" in sys.modules
    path = tmp_path / "m"
    toy.save(path)
    _write_meta(path, **{"class": class_name})
    with pytest.raises(ModelFormatError):
        Recommender.load(path)
    assert "evil_mod_qx" not in sys.modules and not flag.exists()
    assert ("subprocess" in sys.modules) == had_subprocess


def test_nested_component_class_is_not_imported(tmp_path, monkeypatch):
    flag = tmp_path / "flag"
    (tmp_path / "evil_mod_qx.py").write_text(EVIL.format(flag=str(flag)))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("evil_mod_qx", None)
    path = tmp_path / "m"
    Toy(inner=Inner()).fit(data()).save(path)
    meta = json.loads((path / "maasrec.json").read_text())
    meta["params"]["inner"]["__component__"] = "evil_mod_qx.Thing"
    (path / "maasrec.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match=r"evil_mod_qx\.Thing"):
        Recommender.load(path)
    assert "evil_mod_qx" not in sys.modules and not flag.exists()


def test_resolve_class():
    assert resolve_class(f"{Toy.__module__}.Toy") is Toy
    assert resolve_class("maasrec.models.ease.EASE") is EASE
    with pytest.raises(ModelFormatError, match="not a string"):
        resolve_class(["x"])


def test_load_corrupt_model_dirs(tmp_path, toy):
    path = tmp_path / "m"
    toy.save(path)
    meta = json.loads((path / "maasrec.json").read_text())
    _write_meta(path, params={"no_such_param": 1})
    with pytest.raises(ModelFormatError, match="cannot rebuild"):
        Toy.load(path)
    _write_meta(
        path,
        params=meta["params"],
        attributes={**meta["attributes"], "mystery_": {"type": "pickle"}},
    )
    with pytest.raises(ModelFormatError, match="unknown type 'pickle'"):
        Toy.load(path)
    _write_meta(path, attributes={**meta["attributes"], "ghost_": {"type": "ndarray"}})
    with pytest.raises(ModelFormatError, match="array 'ghost_' missing"):
        Toy.load(path)
    _write_meta(path, attributes={**meta["attributes"], "ghost_": {"type": "vocab"}})
    with pytest.raises(ModelFormatError, match="vocabulary 'ghost_' missing"):
        Toy.load(path)
    _write_meta(path, attributes=meta["attributes"], params=[1, 2])
    with pytest.raises(ModelFormatError, match="not a JSON object"):
        Toy.load(path)
    _write_meta(path, params=meta["params"], format_version=99)
    with pytest.raises(ModelFormatError, match="99"):
        Toy.load(path)


def test_saved_files_are_json_and_safetensors(tmp_path, toy):
    toy.save(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["arrays.safetensors", "maasrec.json", "vocab.json"]
    meta = json.loads((tmp_path / "m" / "maasrec.json").read_text())
    assert meta["class"] == f"{Toy.__module__}.Toy"
    assert meta["attributes"]["seen_"]["type"] == "csr"
    assert meta["attributes"]["bias_"] == {"type": "ndarray"}
    assert meta["attributes"]["names_"] == {"type": "json_array", "value": ["p", "q"]}
    assert "_pop_cache" not in meta["attributes"]
