"""The middleware's fast path of ``POST /v1/recommend`` answers exactly as the FastAPI
route does (status, headers that matter, body bytes), and leaves everything else to it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (pip install maasrec[serve])")
pytest.importorskip("httpx", reason="the ASGI test client needs httpx (dev extra)")

from fastapi.testclient import TestClient

from maasrec.serving import _fastpath as fastpath
from maasrec.serving import create_app
from maasrec.serving.schemas import MAX_ID_LENGTH

# (body, whether the fast path may answer it)
BODIES = [
    ({"users": [2], "k": 3}, True),
    ({"users": [2, 5, 7]}, True),
    ({"users": [1], "k": 10}, True),  # a list shorter than k: padding dropped
    ({"users": [1, 3], "k": 60, "exclude_seen": False}, True),
    ({"users": ["4"], "k": 5}, True),  # "4" is user 4 of an integer-id model
    ({"users": [3, 3], "k": 2, "exclude_seen": True}, True),
    ({"users": [777], "k": 3}, True),  # unknown: 404 from the route
    ({"users": ["abc"], "k": 3}, True),  # not an integer id: 404
    ({"users": [2], "k": 1001}, True),  # over max_k: 422
    ({"users": [2], "k": 0}, True),
    ({"users": [2], "k": 3.0}, False),  # 3.0 counts as 3 in the route
    ({"users": [2], "k": 3.5}, False),
    ({"users": [2], "k": True}, False),
    ({"users": [2], "k": "3"}, False),
    ({"users": [True], "k": 3}, False),
    ({"users": [2.0], "k": 3}, False),
    ({"users": [None], "k": 3}, False),
    ({"users": ["x" * (MAX_ID_LENGTH + 1)], "k": 3}, False),
    ({"users": [], "k": 3}, False),
    ({"users": None, "k": 3}, False),
    ({"users": 2, "k": 3}, False),
    ({"users": [2], "k": 3, "exclude_seen": 1}, False),
    ({"users": [2], "k": 3, "exclude": [1000]}, False),
    ({"users": [2], "k": 3, "items": [1000, 1001, 1002]}, False),
    ({"history": [[1000, 1001]], "k": 3}, False),
    ({"users": [2], "history": [[1000]]}, False),
    ({"users": [2], "k": 3, "unexpected": 1}, False),
    ({"k": 3}, False),
    ([2, 3], False),
]


def _post(client, body, raw: bytes | None = None, headers=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return client.post("/v1/recommend", content=data,
                       headers=headers or {"Content-Type": "application/json"})


@pytest.fixture(params=[64, 1], ids=["batching", "no-batching"])
def clients(request, ease_dir):
    with TestClient(create_app(ease_dir, max_batch=request.param, max_users=5)) as fast, \
            TestClient(create_app(ease_dir, max_batch=request.param, max_users=5)) as slow:
        slow.app.state.maasrec.fast_path = False
        yield fast, slow


def _same(a, b):
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.content == b.content
    assert a.headers["content-type"] == b.headers["content-type"]
    assert a.headers["content-length"] == b.headers["content-length"]


def test_fast_path_answers_exactly_as_the_route(clients, monkeypatch):
    fast, slow = clients
    answered = []
    real = fastpath._answer

    async def spy(rt, users, k, exclude_seen):
        out = await real(rt, users, k, exclude_seen)
        answered.append(users)
        return out

    monkeypatch.setattr(fastpath, "_answer", spy)
    for body, plain in BODIES:
        answered.clear()
        a, b = _post(fast, body), _post(slow, body)
        _same(a, b)
        ok = plain and a.status_code == 200
        assert bool(answered) == ok, body  # answered here exactly when plain and valid
        assert not (answered and not plain)
    too_many = {"users": [1, 2, 3, 4, 5, 6]}  # over max_users=5: the route's 422
    _same(_post(fast, too_many), _post(slow, too_many))
    assert fastpath.plain_users_request(too_many, 5, 1000) is None


def test_fast_path_leaves_odd_bodies_to_the_route(clients):
    fast, slow = clients
    for raw, headers in [
        (b"{not json", None),
        (b'{"users": [2], "k": 3}', {"Content-Type": "text/plain"}),
        (b'{"users": [2], "k": 3}', {"Content-Type": "application/vnd.x+json"}),
        (b'{"users": [2], "k": 3}', {"Content-Type": "application/json; charset=utf-8"}),
        (b'{"users": [2], "k": 3, "k": 4}', None),  # duplicate key: the last wins in both
        (b"", None),
    ]:
        _same(_post(fast, None, raw, headers), _post(slow, None, raw, headers))


def test_fast_path_counts_requests_like_the_route(clients):
    fast, _ = clients
    for _ in range(3):
        assert _post(fast, {"users": [2], "k": 3}).status_code == 200
    text = fast.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("maasrec_requests_total{")
                and 'endpoint="/v1/recommend"' in x and 'status="200"' in x)
    assert float(line.rsplit(" ", 1)[1]) == 3


def test_fast_path_still_needs_the_api_key(ease_dir):
    with TestClient(create_app(ease_dir, api_keys=["k" * 24])) as c:
        r = _post(c, {"users": [2], "k": 3})
        assert r.status_code == 401
        r = _post(c, {"users": [2], "k": 3},
                  headers={"Content-Type": "application/json", "X-API-Key": "k" * 24})
        assert r.status_code == 200 and len(r.json()["results"][0]["items"]) == 3
