"""POST /v1/items: new items recommendable at once, stored in the event log, replayed."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="needs the 'serve' extra")
from fastapi.testclient import TestClient

from maasrec.data import Interactions, ItemFeatures
from maasrec.encoders import TextEncoder
from maasrec.models import TextEASE
from maasrec.serving import create_app
from maasrec.serving.items import item_features
from maasrec.testing.components import tiny_text_model

ADMIN = {"X-API-Key": "items-admin-key-123456"}
USER = {"X-API-Key": "items-user-key-1234567"}


def _text(i: int) -> str:
    return ("space alien robot galaxy" if i % 2 else "love story paris romance") + f" {i}"


@pytest.fixture(scope="module")
def text_model() -> TextEASE:
    """A TextEASE on items 0..19: odd items are "space", even "love"; users like one kind."""
    rng = np.random.default_rng(0)
    rows = [(u, int(i)) for u in range(40)
            for i in rng.choice(np.arange(u % 2, 20, 2), 5, replace=False)]
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item"]), "user", "item")
    F = ItemFeatures.from_pandas(pd.DataFrame({"item": range(20),
                                               "text": [_text(i) for i in range(20)]}),
                                 "item", text="text")
    enc = TextEncoder(tiny_text_model("bert", seed=0), cache_dir=False)
    return TextEASE(l2=5.0, text_weight=5.0, text_encoder=enc).fit(X, item_features=F)


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory, frame):
    """A HybridRecommender (ids + genre features) saved: new items from their genre."""
    from maasrec.neural import HybridRecommender

    items = sorted(frame["item"].unique())
    feats = ItemFeatures.from_pandas(
        pd.DataFrame({"item": items, "genre": [["a", "b", "c"][i % 3] for i in items]}),
        "item", categorical=["genre"])
    path = tmp_path_factory.mktemp("items") / "hybrid"
    HybridRecommender(item_encoders=["id", "features"], dim=8, epochs=2, batch_size=64,
                      random_state=0).fit(frame, item_features=feats).save(path)
    return path


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "events.db"


def _new(*ids, **extra):
    return {"items": [{"item": i, "text": _text(i), **extra} for i in ids]}


def _score(c, user, items):
    r = c.post("/v1/score", json={"pairs": [{"user": user, "item": i} for i in items]})
    assert r.status_code == 200, r.text
    return r.json()["scores"]


def test_new_items_are_recommendable_and_survive_restart(text_model, db):
    n0 = text_model.n_items_
    with TestClient(create_app(text_model, events_db=db)) as c:
        assert c.post("/v1/score", json={"pairs": [{"user": 1, "item": 101}]}).status_code == 404
        r = c.post("/v1/items", json={"items": _new(100, 101)["items"]
                                      + [{"item": 3, "text": "x"}]})
        assert r.status_code == 200, r.text
        assert r.json()["added"] == [100, 101] and r.json()["known"] == [3]
        assert r.json()["n_items"] == n0 + 2
        # a "space" user (odd) prefers the new space item 101, a "love" user item 100
        s1, s0 = _score(c, 1, [100, 101]), _score(c, 0, [100, 101])
        assert np.isfinite(s1 + s0).all() and s1[1] > s1[0] and s0[0] > s0[1]
        rec = c.post("/v1/recommend", json={"users": [1], "k": 2, "items": [100, 101, 2]})
        assert rec.status_code == 200 and rec.json()["results"][0]["items"][0] == 101
        full = c.post("/v1/recommend", json={"users": [1], "k": 22, "exclude_seen": False})
        assert {100, 101} <= set(full.json()["results"][0]["items"])
        ex = c.post("/v1/recommend", json={"users": [1], "k": 22, "exclude": [101]})
        assert ex.status_code == 200 and 101 not in ex.json()["results"][0]["items"]
        # an event may name a new item now
        ev = c.post("/v1/events", json={"events": [{"event_id": "e1", "user": 0,
                                                    "item": 101}], "sync": True})
        assert ev.status_code == 200 and ev.json()["accepted"] == 1, ev.text
        after = _score(c, 0, [100, 101, 5])
        top = c.post("/v1/recommend", json={"users": [0], "k": 22}).json()
        assert 101 not in top["results"][0]["items"]  # seen now
        assert 100 in top["results"][0]["items"]
        # posting the same body again changes nothing
        again = c.post("/v1/items", json=_new(100, 101))
        assert again.json()["added"] == [] and again.json()["known"] == [100, 101]
        assert _score(c, 0, [100, 101, 5]) == after
    assert text_model.n_items_ == n0  # the caller's model is not changed
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 2
    with TestClient(create_app(text_model, events_db=db)) as c:  # restart: items, then events
        np.testing.assert_allclose(_score(c, 0, [100, 101, 5]), after, rtol=1e-4, atol=1e-6)
        assert c.post("/v1/recommend", json={"users": [0], "k": 22}).json()["results"] == \
            top["results"]


def test_reload_adds_the_stored_items_again(feature_dir, db):
    app = create_app(feature_dir, events_db=db)
    with TestClient(app) as c:
        r = c.post("/v1/items", json={"items": [{"item": 5000, "features": {"genre": "b"}},
                                                {"item": "5001", "features": {"genre": "c"}}]})
        assert r.status_code == 200, r.text
        assert r.json()["added"] == [5000, 5001]  # "5001" is an integer id for this model
        before = _score(c, 2, [5000, 5001])
        assert all(np.isfinite(before))
        r = c.post("/v1/admin/reload", json={})
        assert r.status_code == 200, r.text
        assert _score(c, 2, [5000, 5001]) == pytest.approx(before, rel=1e-5)


def test_models_without_add_items_and_no_event_log(ease_dir, text_model, db):
    with TestClient(create_app(ease_dir, events_db=db)) as c:
        r = c.post("/v1/items", json=_new(5000))
        assert r.status_code == 409 and "EASE" in r.json()["detail"], r.text
    with TestClient(create_app(text_model)) as c:
        r = c.post("/v1/items", json=_new(100))
        assert r.status_code == 409 and "events_db" in r.json()["detail"]
        assert c.post("/v1/score", json={"pairs": [{"user": 1, "item": 100}]}).status_code \
            == 404


def test_bad_bodies(text_model, db):
    app = create_app(text_model, events_db=db, max_users=3)
    with TestClient(app) as c:
        for body, status, word in [
                ({"items": []}, 422, "items"),
                ({}, 422, "items"),
                (_new(100, 101, 102, 103), 422, "max_users"),
                ({"items": [{"item": 100}]}, 422, "no text"),
                ({"items": [{"item": 100, "features": {"genre": "a"}}]}, 422, "no text"),
                ({"items": [{"item": 100, "text": "   "}]}, 422, "no text"),
                ({"items": [{"item": "abc", "text": "x"}]}, 422, "abc"),
                ({"items": [{"item": 100, "text": "x"}, {"item": "100", "text": "y"}]}, 422,
                 "more than once"),
                ({"items": [{"item": 100, "text": 3}]}, 422, "text"),
                ({"items": [{"item": 100, "text": "x", "price": 3}]}, 422, "price"),
                ({"items": [{"item": 100, "text": "x", "features": {"p": [1]}}]}, 422, "p")]:
            r = c.post("/v1/items", json=body)
            assert r.status_code == status and word in r.text, (body, r.text)
        assert c.post("/v1/score", json={"pairs": [{"user": 1, "item": 100}]}).status_code \
            == 404
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0


def test_items_need_an_admin_key(text_model, db):
    app = create_app(text_model, events_db=db, api_keys=[USER["X-API-Key"]],
                     admin_keys=[ADMIN["X-API-Key"]])
    with TestClient(app) as c:
        assert c.post("/v1/items", json=_new(100)).status_code == 401
        r = c.post("/v1/items", json=_new(100), headers=USER)
        assert r.status_code == 403 and "admin" in r.json()["detail"]
        assert c.post("/v1/items", json=_new(100), headers=ADMIN).status_code == 200


def test_item_features_kinds(feature_dir):
    from maasrec import load
    from maasrec.exceptions import DataError
    from maasrec.serving.items import NewItem

    F = item_features([NewItem(1, "a", {"g": "x", "tags": ["p", "q"], "year": 1999}),
                       NewItem(2, None, {"tags": "r", "year": 2001.5})])
    assert F.vocab.ids.tolist() == [1, 2] and F.text_mask.tolist() == [True, False]
    assert set(F.categorical) == {"g"} and set(F.numeric) == {"year"}
    assert F.multi_hot["tags"][1].tolist() == ["p", "q", "r"]
    with pytest.raises(DataError, match="year"):
        item_features([NewItem(1, None, {"year": 1}), NewItem(2, None, {"year": "x"})])
    model = load(feature_dir)  # the model says genre is one label
    with pytest.raises(DataError, match="genre"):
        item_features([NewItem(1, None, {"genre": ["a", "b"]})], model)


def test_client_add_items(text_model, db):
    from tests.serving.test_client import _serve_in_thread

    from maasrec.client import Client
    from maasrec.exceptions import DataError

    url, server, thread, sock = _serve_in_thread(create_app(text_model, events_db=db))
    try:
        with Client(url) as client:
            out = client.add_items([{"item": 100, "text": _text(100)},
                                    {"item": 3, "text": "x"}])
            assert out["added"] == [100] and out["known"] == [3]
            assert np.isfinite(client.score(1, 100))
            assert client.add_items([{"item": 100, "text": "y"}])["added"] == []
            with pytest.raises(DataError, match="no text"):
                client.add_items([{"item": 7000}])
            with pytest.raises(DataError, match="item"):
                client.add_items([])
            with pytest.raises(DataError, match="item"):
                client.add_items([{"text": "no id"}])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_items_while_an_event_update_is_pending(text_model, db):
    app = create_app(text_model, events_db=db)
    live = app.state.maasrec.events
    live.apply_delay_s = live.max_lag_s = 3600.0  # the model-wide update stays pending
    with TestClient(app) as c:
        ev = c.post("/v1/events", json={"events": [{"event_id": "a", "user": 1, "item": 2}]})
        assert ev.status_code == 200 and ev.json()["pending"] == 1, ev.text
        r = c.post("/v1/items", json=_new(100, 101))
        assert r.status_code == 200 and r.json()["added"] == [100, 101], r.text
        assert live.pending == 0  # the items' model carries the exact update
        served = _score(c, 1, [100, 101, 2, 4])
    with TestClient(create_app(text_model, events_db=db)) as c:  # replay: the same model
        np.testing.assert_allclose(_score(c, 1, [100, 101, 2, 4]), served, rtol=1e-4,
                                   atol=1e-6)


def test_sequential_items_from_their_labels(db):
    from maasrec.neural import SequentialRecommender

    rng = np.random.default_rng(0)
    rows = [(u, int(i), t) for u in range(40)
            for t, i in enumerate(rng.choice(np.arange(u % 4 * 8, u % 4 * 8 + 6), 5,
                                             replace=False))]
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    ids = np.arange(32)
    feats = ItemFeatures.from_pandas(pd.DataFrame({"item": ids,
                                                   "topic": [f"t{i // 8}" for i in ids]}),
                                     "item", categorical=["topic"])
    model = SequentialRecommender(max_len=8, dim=16, n_layers=1, n_heads=2, epochs=2,
                                  batch_size=32, random_state=0, item_side="fuse",
                                  verbose=False).fit(X, item_features=feats)
    with TestClient(create_app(model, events_db=db)) as c:
        r = c.post("/v1/items", json={"items": [{"item": 900, "text": "no labels"}]})
        assert r.status_code == 422 and "no features" in r.json()["detail"], r.text
        r = c.post("/v1/items", json={"items": [{"item": 900, "features": {"topic": "t1"}}]})
        assert r.status_code == 200 and r.json()["added"] == [900], r.text
        rec = c.post("/v1/recommend", json={"history": [[8, 9, 10]], "k": 1,
                                            "items": [900, 0]})
        assert rec.status_code == 200 and len(rec.json()["results"][0]["items"]) == 1
        assert np.isfinite(_score(c, 1, [900])).all()
