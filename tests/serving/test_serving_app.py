"""In-process tests of the HTTP app (FastAPI TestClient / httpx ASGI transport)."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (pip install maasrec[serve])")
pytest.importorskip("prometheus_client", reason="serving needs the 'serve' extra")
httpx = pytest.importorskip("httpx", reason="the ASGI test client needs httpx (dev extra)")

from fastapi.testclient import TestClient  # noqa: E402

from maasrec import DataError, Recommender, UnknownIdError  # noqa: E402
from maasrec.data.vocab import IdVocab  # noqa: E402
from maasrec.models import EASE  # noqa: E402
from maasrec.serving import create_app  # noqa: E402
from maasrec.serving.auth import KeyChecker, is_loopback, load_keys  # noqa: E402
from maasrec.serving.batcher import BatcherClosedError, MicroBatcher  # noqa: E402
from maasrec.serving.ids import coerce_ids  # noqa: E402

API_KEY = "user-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"


def _expected(model, users, k, **kw):
    ids, scores = model.recommend(users, k=k, **kw)
    out = []
    for irow, srow in zip(ids, scores):
        keep = srow != -np.inf
        out.append((irow[keep].tolist(), srow[keep].astype(np.float64).tolist()))
    return out


def _got(body):
    return [(r["items"], r["scores"]) for r in body["results"]]


@pytest.fixture
def client(ease_dir):
    with TestClient(create_app(ease_dir)) as c:
        yield c


@pytest.fixture
def auth_client(ease_dir):
    app = create_app(ease_dir, api_keys=[API_KEY], admin_keys=[ADMIN_KEY])
    with TestClient(app) as c:
        yield c


def _sample(app, name, labels=None):
    return app.state.maasrec.metrics.registry.get_sample_value(name, labels or {})


# -- results equal the library's ----------------------------------------------------------
def test_recommend_matches_model(client, ease_model):
    users = [2, 3, 5, 40]
    r = client.post("/v1/recommend", json={"users": users, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["user"] for x in body["results"]] == users
    assert body["k"] == 7 and body["model_version"] == 1
    assert _got(body) == _expected(ease_model, users, 7)


def test_padding_is_dropped(client, ease_model):
    # user 1 has seen all but 4 of the 60 items
    r = client.post("/v1/recommend", json={"users": [1], "k": 10})
    res = r.json()["results"][0]
    assert len(res["items"]) == 4 < 10
    assert _got(r.json()) == _expected(ease_model, [1], 10)
    assert all(np.isfinite(res["scores"]))


def test_recommend_options_match_model(client, ease_model):
    allow = [1000, 1001, 1002, 1003, 1050]
    r = client.post("/v1/recommend", json={"users": [2, 7], "k": 3, "items": allow,
                                           "exclude_seen": False})
    assert _got(r.json()) == _expected(ease_model, [2, 7], 3, items=allow, exclude_seen=False)
    deny = [1001, 1002]
    r = client.post("/v1/recommend", json={"users": [2], "k": 5, "exclude": deny})
    assert _got(r.json()) == _expected(ease_model, [2], 5, exclude=deny)


def test_history_for_cold_users(client, ease_model):
    hist = [[1000, 1003, 1010], []]
    r = client.post("/v1/recommend", json={"history": hist, "k": 5, "users": ["new", 99]})
    assert r.status_code == 422 and "not both" in r.text  # the schema's oneOf, enforced
    r = client.post("/v1/recommend", json={"history": hist, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["user"] for x in body["results"]] == [None, None]
    ids, scores = ease_model.recommend(None, k=5, history=hist)
    assert body["results"][0]["items"] == ids[0].tolist()
    assert body["results"][1]["scores"] == scores[1].astype(np.float64).tolist()
    r = client.post("/v1/recommend", json={"history": [[1000, 5]], "k": 5})
    assert r.status_code == 404 and r.json()["ids"] == [5] and r.json()["kind"] == "item"


def test_similar_items_and_score_match_model(client, ease_model):
    r = client.post("/v1/similar-items", json={"items": [1000, "1001"], "k": 4})
    assert r.status_code == 200, r.text
    ids, scores = ease_model.similar_items([1000, 1001], k=4)
    res = r.json()["results"]
    assert [x["item"] for x in res] == [1000, 1001]
    assert [x["items"] for x in res] == ids.tolist()
    assert [x["scores"] for x in res] == scores.astype(np.float64).tolist()
    r = client.post("/v1/score", json={"users": [2, 3, 3], "items": [1000, 1001, 1002]})
    want = ease_model.score([2, 3, 3], [1000, 1001, 1002]).astype(np.float64).tolist()
    assert r.json()["scores"] == want


# -- ids ----------------------------------------------------------------------------------
def test_int_model_accepts_numeric_strings(client):
    a = client.post("/v1/recommend", json={"users": [2], "k": 5}).json()
    b = client.post("/v1/recommend", json={"users": ["2"], "k": 5}).json()
    assert a == b and b["results"][0]["user"] == 2  # echoed in the model's kind
    r = client.post("/v1/recommend", json={"users": ["two", 2**70], "k": 5})
    assert r.status_code == 404
    assert r.json()["ids"] == ["two", 2**70] and r.json()["kind"] == "user"


def test_str_model_accepts_ints(pop_str_dir):
    with TestClient(create_app(pop_str_dir)) as c:
        a = c.post("/v1/recommend", json={"users": ["2"], "k": 3}).json()
        b = c.post("/v1/recommend", json={"users": [2], "k": 3}).json()
        assert a == b and isinstance(a["results"][0]["items"][0], str)
        assert a["results"][0]["user"] == "2"
        # Popularity has no item similarities: a clear 422, not a 500
        r = c.post("/v1/similar-items", json={"items": ["1000"], "k": 3})
        assert r.status_code == 422 and r.json()["error"] == "NotSupportedError"
        info = c.get("/v1/model").json()
        assert info["user_id_kind"] == "str" and info["item_id_kind"] == "str"


def test_coerce_ids_rules():
    iv = IdVocab([1, 2, 3], name="user")
    assert coerce_ids([1, "2", "+3", "-4"], iv) == [1, 2, 3, -4]
    with pytest.raises(UnknownIdError) as e:
        coerce_ids(["1.0", "x", 2**64], iv)
    assert e.value.ids == ["1.0", "x", 2**64] and e.value.kind == "user"
    sv = IdVocab(["a", "1"], name="item")
    assert coerce_ids([1, "a"], sv) == ["1", "a"]
    fv = IdVocab(np.array([1.5, 2.0]), name="item")
    assert coerce_ids([2, "1.5"], fv) == [2.0, 1.5]
    ov = IdVocab(np.array([1, "a"], dtype=object), name="item")
    assert coerce_ids([1, "a"], ov) == [1, "a"]


# -- bad input: 4xx with a clear message, never 500 ---------------------------------------
@pytest.mark.parametrize("body, status, needle", [
    ({"users": [2], "k": 100000}, 422, "max_k"),
    ({"users": [2], "k": 0}, 422, "k"),
    ({"users": [2], "k": "5"}, 422, "valid integer"),
    ({"users": [2], "k": 5.5}, 422, "k"),
    ({"users": "2"}, 422, "users"),
    ({"users": [True]}, 422, "users"),
    ({"users": [[2]]}, 422, "users"),
    ({"users": [2.5]}, 422, "users"),
    ({"users": [None]}, 422, "users"),
    ({"users": []}, 422, "at least 1"),
    ({"users": [2], "exclude_seen": "no"}, 422, "exclude_seen"),
    ({"users": [2], "kk": 3}, 422, "kk"),
    ({"k": 3}, 422, "users"),
    ({"users": [2], "history": [[1000], [1001]]}, 422, "history"),
    ({"users": ["x" * 600]}, 422, "users"),
    ({"users": [404404]}, 404, "404404"),
    ({"users": [2], "items": [77]}, 404, "77"),
    ([1, 2], 422, "dictionary"),
    ("users", 422, "dictionary"),
])
def test_bad_recommend_input(client, body, status, needle):
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == status, r.text
    out = r.json()
    assert needle in out["detail"] or needle in json.dumps(out)
    assert out["error"] in ("ValidationError", "DataError", "UnknownIdError")


def test_malformed_json_and_limits(ease_dir):
    app = create_app(ease_dir, max_users=5, max_body_bytes=2000, max_k=50, max_pairs=8,
                     max_results=100)
    with TestClient(app) as c:
        r = c.post("/v1/recommend", content=b'{"users": [1,', headers={
            "content-type": "application/json"})
        assert r.status_code == 422 and "malformed JSON" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"users": list(range(1, 7))})
        assert r.status_code == 422 and "max_users" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"users": [2], "k": 51})
        assert r.status_code == 422 and "50" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"users": [2, 3, 4], "k": 40})
        assert r.status_code == 422 and "max_results" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"users": [2], "exclude": list(range(1000, 1020))})
        assert r.status_code == 422 and "max_pairs" in r.json()["detail"]
        r = c.post("/v1/score", json={"users": [2] * 9, "items": [1000] * 9})
        assert r.status_code == 422 and "max_pairs" in r.json()["detail"]
        r = c.post("/v1/score", json={"users": [2, 3], "items": [1000]})
        assert r.status_code == 422 and "same length" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"users": [2], "exclude": ["x" * 500] * 5})
        assert r.status_code == 413 and "2000" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b" " * 500

        r = c.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/v1/similar-items", json={"items": [1000], "k": 51})
        assert r.status_code == 422
        assert c.get("/nope").status_code == 404
        assert c.get("/v1/recommend").status_code == 405
        errors = _sample(app, "maasrec_errors_total", {"endpoint": "/v1/recommend",
                                                       "error": "DataError"})
        assert errors >= 3


# -- auth ---------------------------------------------------------------------------------
def test_auth_required(auth_client):
    c = auth_client
    r = c.post("/v1/recommend", json={"users": [2]})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in r.json()["detail"]
    r = c.post("/v1/recommend", json={"users": [2]}, headers={"X-API-Key": "wrong-key-123456"})
    assert r.status_code == 401 and "invalid" in r.json()["detail"]
    # malformed JSON from an unauthenticated client is still a 401 (nothing parsed)
    r = c.post("/v1/recommend", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 401
    ok = c.post("/v1/recommend", json={"users": [2]}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200
    ok = c.post("/v1/recommend", json={"users": [2]}, headers={"X-API-Key": API_KEY})
    assert ok.status_code == 200
    assert c.get("/v1/model", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/openapi.json"):
        assert c.get(open_path).status_code == 200
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"X-API-Key": API_KEY}).status_code == 200
    # admin endpoint: an API key is not enough
    r = c.post("/v1/admin/reload", headers={"X-API-Key": API_KEY})
    assert r.status_code == 403 and "admin key" in r.json()["detail"]
    r = c.post("/v1/admin/reload", headers={"Authorization": f"bearer {ADMIN_KEY}"})
    assert r.status_code == 200 and r.json()["model"]["model_version"] == 2
    schema = c.get("/openapi.json").json()
    assert schema["paths"]["/v1/recommend"]["post"]["security"]


def test_no_admin_key_disables_admin(ease_dir):
    with TestClient(create_app(ease_dir, api_keys=[API_KEY])) as c:
        r = c.post("/v1/admin/reload", headers={"X-API-Key": API_KEY})
        assert r.status_code == 403 and "SIGHUP" in r.json()["detail"]


def test_key_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("MAASREC_API_KEYS", " key-one-123456 , key-two-123456,")
    f = tmp_path / "keys"
    f.write_text("# comment\n\nkey-three-123456\nkey-one-123456\n")
    assert load_keys("MAASREC_API_KEYS", f) == ["key-one-123456", "key-two-123456",
                                                 "key-three-123456"]
    f.write_text("k3y-7ch\n")
    with pytest.raises(Exception, match="has only 7 characters: a key needs at least 8") as exc:
        load_keys(None, f)
    assert "secrets.token_urlsafe" in str(exc.value)  # says how to make one
    assert "k3y-7ch" not in str(exc.value)  # never echoes the key
    with pytest.raises(Exception, match="cannot read the key file"):
        load_keys(None, tmp_path / "missing")
    checker = KeyChecker(["key-one-123456"], ["adm-key-123456"])
    assert checker.role({"authorization": "Bearer key-one-123456"}) == "user"
    assert checker.role({"x-api-key": "adm-key-123456"}) == "admin"
    assert checker.role({"x-api-key": "key-one-12345"}) is None
    assert checker.role({"authorization": "Basic key-one-123456"}) is None
    assert checker.role({"x-api-key": "ключ-non-ascii"}) is None
    assert KeyChecker().role({}) == "admin"  # no keys: open (loopback only)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.1.2.3") and not is_loopback("0.0.0.0")
    assert not is_loopback("example.com") and not is_loopback("")


# -- model info, reload --------------------------------------------------------------------
def test_model_info(client, ease_dir, ease_model):
    info = client.get("/v1/model").json()
    assert info["class"].endswith("EASE") and info["params"]["l2"] == 5.0
    assert info["n_users"] == ease_model.n_users_ and info["n_items"] == ease_model.n_items_
    assert info["fitted_at"] == ease_model.fitted_at_ and info["saved_at"]
    assert info["model_name"] == "ease" and info["model_version"] == 1
    assert "model_dir" not in info and str(ease_dir.parent) not in json.dumps(info)
    assert info["maasrec_version"] and info["supports_history"] is True


def test_reload_swaps_and_refuses_broken(ease_dir, ease_dir2, broken_dir, tmp_path):
    app = create_app(ease_dir)  # model root: ease_dir's parent, which holds the others
    new_model = Recommender.load(ease_dir2)
    with TestClient(app) as c:
        before = c.post("/v1/recommend", json={"users": [2], "k": 5}).json()
        r = c.post("/v1/admin/reload", json={"model_dir": "ease2"})  # relative to the root
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == 1 and r.json()["model"]["model_version"] == 2
        assert r.json()["model"]["model_name"] == "ease2"
        after = c.post("/v1/recommend", json={"users": [2], "k": 5}).json()
        assert after["model_version"] == 2
        assert _got(after) == _expected(new_model, [2], 5) != _got(before)
        r = c.post("/v1/admin/reload", json={"model_dir": str(broken_dir)})  # absolute, inside
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert r.json()["error"] == "ModelFormatError" and "broken" in detail
        assert str(broken_dir.parent) not in detail  # no absolute path in answers
        for bad in (tmp_path / "missing", tmp_path):
            r = c.post("/v1/admin/reload", json={"model_dir": str(bad)})
            assert r.status_code == 409, r.text
            assert r.json()["error"] == "ModelFormatError" and "model root" in r.json()["detail"]
        still = c.post("/v1/recommend", json={"users": [2], "k": 5}).json()
        assert still == after  # the old model keeps serving
        assert c.get("/v1/model").json()["model_name"] == "ease2"
        assert _sample(app, "maasrec_model_reloads_total", {"result": "refused"}) == 3
        assert _sample(app, "maasrec_model_version") == 2
        assert _sample(app, "maasrec_model_info", {"model_class": "maasrec.models.ease.EASE",
                                                   "model_name": "ease2",
                                                   "maasrec_version": new_model_version(c),
                                                   "model_version": "2"}) == 1
        metrics = c.get("/metrics").text
        assert str(ease_dir.parent) not in metrics and 'model_name="ease2"' in metrics
        r = c.post("/v1/admin/reload", json={"model_dir": 3})
        assert r.status_code == 422


def new_model_version(c) -> str:
    return c.get("/v1/model").json()["maasrec_version"]


class _GatedEASE(EASE):
    """EASE whose scoring waits for a gate: a request stays in flight until the test says."""

    gate: threading.Event = threading.Event()
    entered: threading.Event = threading.Event()

    def _score_users(self, user_idx):
        type(self).entered.set()
        assert type(self).gate.wait(10)
        return super()._score_users(user_idx)


def test_inflight_request_finishes_on_old_model(frame, ease_model, ease_dir2):
    old = _GatedEASE(l2=5.0).fit(frame)
    _GatedEASE.gate.clear()
    _GatedEASE.entered.clear()
    app = create_app(old, model_root=ease_dir2.parent)
    rt = app.state.maasrec

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            slow = asyncio.create_task(c.post("/v1/recommend", json={"users": [2], "k": 5}))
            while not _GatedEASE.entered.is_set():
                await asyncio.sleep(0.01)
            r = await c.post("/v1/admin/reload", json={"model_dir": str(ease_dir2)})
            assert r.status_code == 200
            assert rt.holder.state.version == 2
            _GatedEASE.gate.set()
            first = (await slow).json()
            second = (await c.post("/v1/recommend", json={"users": [2], "k": 5})).json()
            return first, second

    _GatedEASE.gate.clear()
    first, second = asyncio.run(scenario())
    _GatedEASE.gate.set()
    assert first["model_version"] == 1
    assert _got(first) == _expected(ease_model, [2], 5)  # same data and params as `old`
    assert second["model_version"] == 2


def test_reload_without_dir_for_in_memory_model(ease_model):
    with TestClient(create_app(ease_model)) as c:
        r = c.post("/v1/admin/reload")
        assert r.status_code == 409 and "model_dir" in r.json()["detail"]


# -- micro-batching -------------------------------------------------------------------------
def test_micro_batching_merges_and_matches_unbatched(ease_dir, ease_model):
    app = create_app(ease_dir, max_batch=64, max_wait_ms=50)
    rng = np.random.default_rng(3)
    reqs = []
    for _ in range(30):
        users = rng.choice(np.arange(1, 41), size=int(rng.integers(1, 4)), replace=False)
        reqs.append({"users": users.tolist(), "k": int(rng.choice([3, 10])),
                     "exclude_seen": bool(rng.random() < 0.7)})

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*(c.post("/v1/recommend", json=b) for b in reqs))

    responses = asyncio.run(fire())
    for body, r in zip(reqs, responses):
        assert r.status_code == 200, r.text
        assert _got(r.json()) == _expected(ease_model, body["users"], body["k"],
                                           exclude_seen=body["exclude_seen"])
    n_calls = _sample(app, "maasrec_batch_requests_count")
    assert _sample(app, "maasrec_batch_requests_sum") == 30
    assert n_calls <= 8  # 4 option groups, merged within the 50 ms window
    text = asyncio.run(_get_metrics(app))
    for name in ("maasrec_requests_total", "maasrec_request_duration_seconds_bucket",
                 "maasrec_batch_size_bucket", "maasrec_model_version", "maasrec_model_info"):
        assert name in text


async def _get_metrics(app) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return (await c.get("/metrics")).text


def test_unknown_id_in_one_request_does_not_fail_its_batch(ease_dir):
    app = create_app(ease_dir, max_batch=64, max_wait_ms=50)

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(
                c.post("/v1/recommend", json={"users": [2], "k": 3}),
                c.post("/v1/recommend", json={"users": [777], "k": 3}),
                c.post("/v1/recommend", json={"users": [3], "k": 3}))

    a, bad, b = asyncio.run(fire())
    assert a.status_code == b.status_code == 200
    assert bad.status_code == 404 and bad.json()["ids"] == [777]


def test_batching_off_gives_same_answers(ease_dir, ease_model):
    with TestClient(create_app(ease_dir, max_batch=1)) as c:
        assert c.app.state.maasrec.batcher is None
        r = c.post("/v1/recommend", json={"users": [4, 5], "k": 6})
        assert _got(r.json()) == _expected(ease_model, [4, 5], 6)


def test_batcher_retries_one_by_one_and_drains():
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def run(model, rows, k, exclude_seen, mode):
        calls.append(list(rows))
        if "bad" in rows:
            raise DataError("bad row")
        return np.array([[r] * k for r in rows], dtype=object), np.zeros((len(rows), k))

    async def scenario():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(run, ex, max_batch=10, max_wait_ms=20)
            res = await asyncio.gather(b.submit("m", ["a"], 2, True), b.submit("m", ["bad"], 2, True),
                                       b.submit("m", ["c", "d"], 2, True), return_exceptions=True)
            await b.close(timeout=5)
            with pytest.raises(BatcherClosedError):
                await b.submit("m", ["e"], 2, True)
            return res

    res = asyncio.run(scenario())
    assert calls[0] == ["a", "bad", "c", "d"]  # merged first, then one by one
    assert res[0][0].tolist() == [["a", "a"]]
    assert isinstance(res[1], DataError)
    assert res[2][0].tolist() == [["c", "c"], ["d", "d"]]


def test_readyz_and_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok", "model_version": 1}
    assert client.get("/readyz").json()["status"] == "ready"
    client.app.state.maasrec.draining = True
    assert client.get("/readyz").status_code == 503
    client.app.state.maasrec.draining = False
