"""The service's fast path for events (EASE: histories at once, the model-wide update
deferred and batched) and the full body of ``POST /v1/explain``."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the 'serve' extra")
from fastapi.testclient import TestClient

from maasrec import online
from maasrec.explain import Contribution, Explanation
from maasrec.serving import create_app
from maasrec.serving.events import EventLog, events_frame
from maasrec.serving.schemas import ExplainResponse


def _served(c):
    return c.app.state.maasrec.holder.state.model


def test_deferred_updates_reach_the_exact_partial_fit(ease_dir, ease_model, tmp_path):
    """Groups answered from the histories; the eventual model is partial_fit of the log."""
    from concurrent.futures import ThreadPoolExecutor

    db = tmp_path / "events.db"
    rng = np.random.default_rng(0)
    pairs = [(int(u), int(1000 + i)) for u, i in zip(rng.integers(2, 45, 60),
                                                      rng.integers(0, 60, 60), strict=True)]
    app = create_app(ease_dir, events_db=db)
    app.state.maasrec.events.apply_delay_s = 0.3  # groups pile up before an update
    with TestClient(app) as c:
        def post(n):
            u, i = pairs[n]
            r = c.post("/v1/events", json={"events": [{"event_id": f"d{n}", "user": u,
                                                       "item": i}]})
            assert r.status_code == 200, r.text
            items = c.post("/v1/recommend", json={"users": [u], "k": 60}).json()
            return i not in items["results"][0]["items"], r.json()["pending"]

        with ThreadPoolExecutor(8) as ex:
            out = list(ex.map(post, range(len(pairs))))
        assert all(gone for gone, _ in out)  # excluded at once: seen
        assert max(p for _, p in out) >= 1  # answered before the model-wide update
        r = c.post("/v1/events", json={"events": [{"event_id": "last", "user": 3,
                                                   "item": 1001}], "sync": True})
        assert r.status_code == 200 and r.json()["pending"] == 0, r.text
        served = _served(c)
        assert online.deferred_calls(served) == 0
        exact = copy.copy(ease_model).partial_fit(events_frame(EventLog(db).read()))
        np.testing.assert_allclose(served.B_, exact.B_, atol=1e-6)
        users = sorted({u for u, _ in pairs} | {3})
        ids, _ = served.recommend(users, k=10)
        np.testing.assert_array_equal(ids, exact.recommend(users, k=10)[0])
    with TestClient(create_app(ease_dir, events_db=db)) as c:  # the restart replays to it
        np.testing.assert_allclose(_served(c).B_, exact.B_, atol=1e-6)


def test_without_deferral_every_answer_is_exact(ease_dir, ease_model, tmp_path):
    app = create_app(ease_dir, events_db=tmp_path / "e.db")
    app.state.maasrec.events.defer = False
    with TestClient(app) as c:
        r = c.post("/v1/events", json={"events": [{"event_id": "a", "user": 2, "item": 1003}]})
        assert r.json()["pending"] == 0
        exact = copy.copy(ease_model).partial_fit(
            events_frame(EventLog(tmp_path / "e.db").read()))
        np.testing.assert_allclose(_served(c).B_, exact.B_, atol=1e-6)


def test_events_sync_must_be_a_bool(ease_dir, tmp_path):
    with TestClient(create_app(ease_dir, events_db=tmp_path / "e.db")) as c:
        r = c.post("/v1/events", json={"events": [{"event_id": "a", "user": 2,
                                                   "item": 1003}], "sync": "yes"})
        assert r.status_code == 422


def _rich_explanation(user, item):
    return Explanation(
        item=item, score=1.5, method="leave-one-out", reason="Because you watched A",
        contributions=(Contribution(1001, 0.75, "A", position=3,
                                    extras={"text_similarity": 0.25}),
                       Contribution(1002, -0.25, None, position=0)),
        baseline=None, user=user, model="Fake", n_history=4,
        modalities={"id": 1.0, "text": 0.5}, note="n", details={"tokens": [["a", 0.5]]})


def test_explain_returns_position_extras_and_details(ease_dir, monkeypatch):
    from tests.serving.test_client import _serve_in_thread

    from maasrec.client import Client

    app = create_app(ease_dir)
    model = app.state.maasrec.holder.state.model
    monkeypatch.setattr(model, "explain", lambda user, item, **kw: _rich_explanation(user, item))
    want = _rich_explanation(2, 1005).to_dict()
    with TestClient(app) as c:
        r = c.post("/v1/explain", json={"user": 2, "item": 1005})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body == want
        assert body["contributions"][0]["position"] == 3
        assert body["contributions"][0]["extras"] == {"text_similarity": 0.25}
        assert body["details"] == {"tokens": [["a", 0.5]]}
        parsed = ExplainResponse.model_validate(body).model_dump(exclude_none=True)
        assert parsed["contributions"][0] == want["contributions"][0]
        assert parsed["details"] == want["details"]
        doc = c.get("/openapi.json").json()["components"]["schemas"]
        assert {"position", "extras"} <= set(doc["ContributionOut"]["properties"])
        assert "details" in doc["ExplainResponse"]["properties"]
    url, server, thread, sock = _serve_in_thread(app)
    try:
        with Client(url) as cl:
            assert cl.explain(2, 1005) == want
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_reload_while_updates_are_pending_serves_the_replayed_model(ease_dir, ease_dir2,
                                                                       tmp_path):
    from maasrec.models import EASE

    db = tmp_path / "events.db"
    app = create_app(ease_dir, events_db=db)
    live = app.state.maasrec.events
    live.apply_delay_s = live.max_lag_s = 0.5  # the update is still pending at the reload
    with TestClient(app) as c:
        r = c.post("/v1/events", json={"events": [{"event_id": "a", "user": 5, "item": 1002},
                                                  {"event_id": "b", "user": 6, "item": 1003}]})
        assert r.json()["pending"] == 1
        assert c.post("/v1/admin/reload", json={"model_dir": "ease2"}).status_code == 200
        replayed = EASE.load(ease_dir2).partial_fit(events_frame(EventLog(db).read()))
        # the stale background update (of the first model) is not swapped in
        r = c.post("/v1/events", json={"events": [{"event_id": "c", "user": 7,
                                                   "item": 1004}], "sync": True})
        assert r.json()["pending"] == 0
        exact = copy.copy(replayed).partial_fit(events_frame(EventLog(db).read()[2:]))
        np.testing.assert_allclose(_served(c).B_, exact.B_, atol=1e-6)


def test_client_events_sync_must_be_a_bool():
    from maasrec.client import Client
    from maasrec.exceptions import DataError

    with Client("http://127.0.0.1:9", retries=0) as cl, pytest.raises(DataError, match="sync"):
        cl.events([{"user": 1, "item": 2}], sync="yes")
