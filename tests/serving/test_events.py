"""POST /v1/events (durable event log, replay, idempotency) and POST /v1/explain."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the 'serve' extra")
from fastapi.testclient import TestClient

from maasrec.models import ALS
from maasrec.serving import create_app
from maasrec.serving.events import EventLog, EventLogError


def _top(client, user, k=10):
    r = client.post("/v1/recommend", json={"users": [user], "k": k})
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["items"]


def _events(pairs, prefix="e"):
    return {"events": [{"event_id": f"{prefix}{n}", "user": u, "item": i}
                       for n, (u, i) in enumerate(pairs)]}


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "events.db"


def test_event_changes_recommendations_and_survives_restart(ease_dir, db):
    with TestClient(create_app(ease_dir, events_db=db)) as c:
        before = _top(c, 2)
        first = before[0]
        r = c.post("/v1/events", json=_events([(2, first), (2, before[1]), (999, first)])
                   | {"sync": True})  # answered once the model-wide update is served
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 3 and r.json()["duplicates"] == 0
        assert r.json()["pending"] == 0
        after = _top(c, 2)
        assert first not in after and after != before  # seen now: excluded
        new_user = _top(c, 999)  # a new user, served from their one event
        assert first not in new_user
    # the database is a WAL-mode SQLite file with the three events
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    with TestClient(create_app(ease_dir, events_db=db)) as c:  # restart: replayed
        assert _top(c, 2) == after
        assert _top(c, 999) == new_user


def test_duplicate_event_ids_are_idempotent(ease_dir, db):
    with TestClient(create_app(ease_dir, events_db=db)) as c:
        body = _events([(3, 1001), (3, 1002)])
        assert c.post("/v1/events", json=body).json()["accepted"] == 2
        again = c.post("/v1/events", json=body).json()
        assert again["accepted"] == 0 and again["duplicates"] == 2
    assert len(EventLog(db)) == 2


def test_als_events_replay_to_the_same_model(tmp_path, frame, db):
    ALS(factors=8, iterations=3, random_state=0).fit(frame).save(tmp_path / "als")
    with TestClient(create_app(tmp_path / "als", events_db=db)) as c:
        for n, item in enumerate([1001, 1005, 1007]):  # three requests: three updates
            c.post("/v1/events", json=_events([(4, item)], prefix=f"x{n}-"))
        live = c.post("/v1/recommend", json={"users": [4], "k": 5}).json()["results"][0]
    with TestClient(create_app(tmp_path / "als", events_db=db)) as c:  # one replay
        again = c.post("/v1/recommend", json={"users": [4], "k": 5}).json()["results"][0]
    assert again["items"] == live["items"]
    np.testing.assert_allclose(again["scores"], live["scores"], rtol=1e-5)


def test_reload_replays_the_log(ease_dir, ease_dir2, db):
    with TestClient(create_app(ease_dir, events_db=db)) as c:
        top = _top(c, 5)
        c.post("/v1/events", json=_events([(5, top[0])]))
        r = c.post("/v1/admin/reload", json={"model_dir": "ease2"})
        assert r.status_code == 200, r.text
        assert top[0] not in _top(c, 5, k=60)  # the new model has the event too


def test_bad_events(ease_dir, db):
    with TestClient(create_app(ease_dir, events_db=db)) as c:
        r = c.post("/v1/events", json=_events([(2, 1001), (2, 987654)]))
        assert r.status_code == 404 and "987654" in r.json()["detail"]
        for body in ({"events": []}, {"events": [{"user": 1, "item": 1001}]},
                     {"events": [{"event_id": "a", "user": 1}]},
                     {"events": [{"event_id": "a", "user": 1, "item": 1001, "value": "x"}]},
                     {"events": [{"event_id": "", "user": 1, "item": 1001}]},
                     {"events": [{"event_id": "a", "user": True, "item": 1001}]},
                     {"events": "nope"}):
            r = c.post("/v1/events", json=body)
            assert r.status_code == 422, (body, r.text)
    assert len(EventLog(db)) == 0  # nothing of a refused request was logged


def test_too_many_events_in_one_request(ease_dir, db):
    app = create_app(ease_dir, events_db=db, max_pairs=5)
    with TestClient(app) as c:
        r = c.post("/v1/events", json=_events([(1, 1001)] * 6))
        assert r.status_code == 422 and "max_pairs" in r.text


def test_no_event_log_and_unopenable_path(ease_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MAASREC_EVENTS_DB", raising=False)
    with TestClient(create_app(ease_dir)) as c:
        r = c.post("/v1/events", json=_events([(1, 1001)]))
        assert r.status_code == 409 and "events_db" in r.json()["detail"]
    bad = tmp_path / "no-such-dir" / "events.db"
    with pytest.raises(EventLogError, match="no-such-dir"):
        create_app(ease_dir, events_db=bad)
    notdb = tmp_path / "notdb"
    notdb.write_bytes(b"this is not a database" * 100)
    with pytest.raises(EventLogError, match="notdb"):
        create_app(ease_dir, events_db=notdb)


def test_environment_variable(ease_dir, db, monkeypatch):
    monkeypatch.setenv("MAASREC_EVENTS_DB", str(db))
    with TestClient(create_app(ease_dir)) as c:
        assert c.post("/v1/events", json=_events([(1, 1001)])).status_code == 200
    assert db.exists()


def test_corrupt_record_refuses_to_start(ease_dir, db):
    EventLog(db).append([])
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO events (event_id, user_id, item_id) VALUES ('bad', '{', '1')")
    with pytest.raises(EventLogError, match=r"seq 1.*'bad'"):
        create_app(ease_dir, events_db=db)


def test_events_need_an_admin_key(ease_dir, ease_model, db):
    app = create_app(ease_dir, events_db=db, api_keys=["user-key-123456789"],
                     admin_keys=["admin-key-123456789"])
    with TestClient(app) as c:
        body = _events([(1, 1001)])
        r = c.post("/v1/events", json=body, headers={"X-API-Key": "user-key-123456789"})
        assert r.status_code == 403
        r = c.post("/v1/events", json=body, headers={"X-API-Key": "admin-key-123456789"})
        assert r.status_code == 200
        item = int(ease_model.recommend(2, k=1)[0][0])
        r = c.post("/v1/explain", json={"user": 2, "item": item},
                   headers={"X-API-Key": "user-key-123456789"})
        assert r.status_code == 200  # readers may explain


def test_explain(ease_dir, ease_model):
    with TestClient(create_app(ease_dir)) as c:
        item = ease_model.recommend(2, k=1)[0][0]
        r = c.post("/v1/explain", json={"user": 2, "item": int(item), "n": 3})
        assert r.status_code == 200, r.text
        assert r.json() == ease_model.explain(2, item, n=3).to_dict()
        hist = ease_model.seen_[ease_model.user_vocab_.index([2])].indices
        hist_ids = [int(x) for x in ease_model.item_vocab_.ids_of(hist)]
        r = c.post("/v1/explain", json={"history": hist_ids, "item": int(item)})
        assert r.status_code == 200 and r.json()["method"] == "exact"
        assert c.post("/v1/explain", json={"user": 2, "item": 987654}).status_code == 404
        assert c.post("/v1/explain", json={"user": 99999, "item": 1001}).status_code == 404
        seen = hist_ids[0]
        r = c.post("/v1/explain", json={"user": 2, "item": seen})
        assert r.status_code == 409 and str(seen) in r.json()["detail"]
        assert c.post("/v1/explain", json={"item": 1001}).status_code == 422
        assert c.post("/v1/explain", json={"user": 2, "history": [1001],
                                           "item": 1002}).status_code == 422


def test_client_methods(ease_dir, db):
    from tests.serving.test_client import _serve_in_thread

    from maasrec.client import Client

    url, server, thread, sock = _serve_in_thread(create_app(ease_dir, events_db=db))
    try:
        with Client(url) as cl:
            top = cl.recommend(7, k=3).items
            out = cl.events([{"user": 7, "item": top[0], "event_id": "c1"},
                             {"user": 7, "item": top[1]}])
            assert out["accepted"] == 2
            assert cl.events([{"user": 7, "item": top[0], "event_id": "c1"}])["duplicates"] == 1
            assert top[0] not in list(cl.recommend(7, k=3).items)
            exp = cl.explain(7, top[2], n=2)
            assert exp["item"] == top[2] and len(exp["contributions"]) <= 2
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert len(EventLog(db)) == 2


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_event(ease_dir, tmp_path):
    """``maasrec serve`` with MAASREC_EVENTS_DB, SIGKILLed after N acknowledged events."""
    import signal
    import subprocess
    import sys

    from tests.serving.test_serving_subprocess import _env, _free_port, _wait_until

    from maasrec.client import Client

    db, log = tmp_path / "events.db", tmp_path / "server.log"

    def start():
        port = _free_port()
        with open(log, "a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "maasrec", "serve", str(ease_dir), "--host",
                 "127.0.0.1", "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=_env(MAASREC_EVENTS_DB=str(db)))
        client = Client(f"http://127.0.0.1:{port}", retries=0, timeout=10)
        _wait_until(lambda: client.health()["status"] == "ok", 60, proc, log)
        return proc, client

    users = [2, 3, 4, 5, 6]
    proc, client = start()
    try:
        acked = 0
        for n in range(30):
            top = client.recommend(users[n % 5], k=1).items
            out = client.events([{"user": users[n % 5], "item": top[0], "event_id": f"k{n}"}],
                                sync=n == 29)  # the last: once the model-wide update is in
            acked += out["accepted"]
        before = [r.items for r in client.recommend(users, k=10)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert acked == 30
    assert len(EventLog(db)) == 30  # nothing acknowledged was lost
    proc, client = start()
    try:
        assert [r.items for r in client.recommend(users, k=10)] == before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_concurrent_posters_are_grouped_and_all_applied(ease_dir, ease_model, db):
    from concurrent.futures import ThreadPoolExecutor

    from tests.serving.test_client import _serve_in_thread

    from maasrec.client import Client

    url, server, thread, sock = _serve_in_thread(create_app(ease_dir, events_db=db))
    users = list(range(2, 18))
    tops = {u: int(ease_model.recommend(u, k=1)[0][0]) for u in users}

    def post(u):
        with Client(url, retries=0) as cl:
            a = cl.events([{"user": u, "item": tops[u], "event_id": f"p{u}"}])
            b = cl.events([{"user": u, "item": tops[u], "event_id": f"p{u}"}])  # retry
            return a["accepted"], b["duplicates"], tops[u] in list(cl.recommend(u, k=10).items)

    try:
        with ThreadPoolExecutor(8) as ex:
            out = list(ex.map(post, users))
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert out == [(1, 1, False)] * len(users)
    assert len(EventLog(db)) == len(users)
