"""Service hardening: model root for reloads, names instead of paths, redacted access log,
and a table of bad HTTP requests (each a 4xx with a JSON error naming the bad value)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
pytest.importorskip("httpx", reason="the ASGI test client needs httpx (dev extra)")

from fastapi.testclient import TestClient

from maasrec.serving import create_app
from maasrec.serving.app import RedactQueryFilter, redact_target

API_KEY = "hardening-user-key-0123"
ADMIN_KEY = "hardening-admin-key-0123"
ADMIN = {"X-API-Key": ADMIN_KEY}
USER = {"X-API-Key": API_KEY}


@pytest.fixture
def tree(tmp_path, ease_dir, ease_dir2):
    """root/{a, b, notmodel/, file.txt, link_in -> b, link_out -> ../outside/m}; outside/m."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(ease_dir, root / "a")
    shutil.copytree(ease_dir2, root / "b")
    (root / "notmodel").mkdir()
    (root / "file.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copytree(ease_dir2, outside / "m")  # a valid model, outside the root
    os.symlink(root / "b", root / "link_in")
    os.symlink(outside / "m", root / "link_out")
    return root, outside


def test_reload_only_inside_the_model_root(tree):
    root, outside = tree
    app = create_app(root / "a", api_keys=[API_KEY], admin_keys=[ADMIN_KEY])
    with TestClient(app) as c:
        assert c.get("/v1/model", headers=USER).json()["model_name"] == "a"
        refused = {}
        for bad in ["../outside/m", str(outside / "m"), "link_out", "a/../../outside/m",
                    "missing", str(outside / "missing"), "notmodel", "file.txt", "/etc",
                    "/", "..", str(root.parent), "a/\x00", "link_out/../m"]:
            r = c.post("/v1/admin/reload", json={"model_dir": bad}, headers=ADMIN)
            assert r.status_code == 409, (bad, r.text)
            body = r.json()
            assert body["error"] == "ModelFormatError"
            rest = body["detail"].replace(repr(bad[:200]), "<path>")  # echo of the request
            assert str(root) not in rest and str(outside) not in rest
            refused[bad] = rest
        # one message whatever the reason: existing or not, dir or file, outside or inside
        assert len(set(refused.values())) == 1, refused
        assert c.get("/v1/model", headers=USER).json()["model_version"] == 1
        for good, name in [("b", "b"), ("link_in", "link_in"), (str(root / "a"), "a"),
                           ("./b/../a", "a")]:
            r = c.post("/v1/admin/reload", json={"model_dir": good}, headers=ADMIN)
            assert r.status_code == 200, (good, r.text)
            assert r.json()["model"]["model_name"] == name
        info = c.get("/v1/model", headers=USER).json()
        assert info["model_version"] == 5 and "model_dir" not in info
        assert str(root) not in json.dumps(info)
        assert str(root) not in c.get("/metrics", headers=USER).text


def test_explicit_model_root_and_refusals(tree, ease_model):
    root, outside = tree
    with pytest.raises(Exception, match="not a model directory inside the model root"):
        create_app(outside / "m", model_root=root)
    app = create_app(root / "a", model_root=root.parent)  # a wider root
    with TestClient(app) as c:
        assert c.get("/v1/model").json()["model_name"] == "root/a"
        assert c.post("/v1/admin/reload", json={"model_dir": "outside/m"}).status_code == 200
    with TestClient(create_app(ease_model)) as c:  # in memory, no root: no reload by path
        r = c.post("/v1/admin/reload", json={"model_dir": str(root / "a")})
        assert r.status_code == 409 and "no model root" in r.json()["detail"]
        assert c.get("/v1/model").json()["model_name"] is None


def test_symlink_swap_then_sighup_style_reload(tree):
    """Reloading the current directory follows a re-pointed link, but not out of the root."""
    root, outside = tree
    os.symlink(root / "a", root / "current")
    app = create_app(root / "current")
    with TestClient(app) as c:
        assert c.get("/v1/model").json()["model_name"] == "current"
        os.remove(root / "current")
        os.symlink(root / "b", root / "current")
        r = c.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["model"]["params"]["l2"] == 200.0
        os.remove(root / "current")
        os.symlink(outside / "m", root / "current")  # now points outside: refused
        r = c.post("/v1/admin/reload")
        assert r.status_code == 409
        assert c.get("/v1/model").json()["model_version"] == 2


def test_access_log_never_shows_query_strings():
    assert redact_target("/v1/model?api_key=s3cret-value") == "/v1/model?***"
    assert redact_target("/v1/model") == "/v1/model"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/x?api_key=s3cret-value&a=1", "1.1",
                                401), None)
    assert RedactQueryFilter().filter(record)
    assert "s3cret" not in record.getMessage() and "/x?***" in record.getMessage()


def test_key_in_query_string_is_refused_and_said(ease_dir):
    app = create_app(ease_dir, api_keys=[API_KEY])
    with TestClient(app) as c:
        r = c.get(f"/v1/model?api_key={API_KEY}")
        assert r.status_code == 401
        assert "query string are not accepted" in r.json()["detail"]
        assert API_KEY not in r.text


# -- a table of bad requests: every one a 4xx with a JSON error naming the bad value ---------
_J = {"content-type": "application/json"}
BAD_REQUESTS = [
    # (id, method, path, headers, body (dict: JSON; bytes: raw), status, needle in answer)
    ("no key", "POST", "/v1/recommend", {}, {"users": [2]}, 401, "missing API key"),
    ("wrong key", "POST", "/v1/recommend", {"X-API-Key": "nope-nope-nope"}, {"users": [2]}, 401,
     "invalid API key"),
    ("basic auth", "GET", "/v1/model", {"Authorization": f"Basic {API_KEY}"}, None, 401,
     "missing API key"),
    ("key in query", "GET", f"/v1/model?api_key={API_KEY}", {}, None, 401, "query string"),
    ("user key on admin", "POST", "/v1/admin/reload", USER, None, 403, "admin key"),
    ("metrics no key", "GET", "/metrics", {}, None, 401, "API key"),
    ("malformed json", "POST", "/v1/recommend", {**USER, **_J}, b'{"users": [1,', 422,
     "malformed JSON"),
    ("not utf-8", "POST", "/v1/recommend", {**USER, **_J}, b"\xff\xfe{", 422, "malformed JSON"),
    ("empty body", "POST", "/v1/recommend", {**USER, **_J}, b"", 422, "body"),
    ("json array", "POST", "/v1/recommend", USER, [1, 2], 422, "dictionary"),
    ("json string", "POST", "/v1/recommend", USER, "users", 422, "dictionary"),
    ("neither users nor history", "POST", "/v1/recommend", USER, {"k": 3}, 422, "users"),
    ("users not a list", "POST", "/v1/recommend", USER, {"users": "2"}, 422, "users"),
    ("empty users", "POST", "/v1/recommend", USER, {"users": []}, 422, "users"),
    ("bool id", "POST", "/v1/recommend", USER, {"users": [True]}, 422, "users.0"),
    ("fractional id", "POST", "/v1/recommend", USER, {"users": [2.5]}, 422, "2.5"),
    ("null id", "POST", "/v1/recommend", USER, {"users": [None]}, 422, "users.0"),
    ("nested id", "POST", "/v1/recommend", USER, {"users": [[2]]}, 422, "users.0"),
    ("huge string id", "POST", "/v1/recommend", USER, {"users": ["x" * 600]}, 422, "512"),
    ("unknown user", "POST", "/v1/recommend", USER, {"users": [404404]}, 404, "404404"),
    ("unknown str user", "POST", "/v1/recommend", USER, {"users": ["abc"]}, 404, "abc"),
    ("2**64 user", "POST", "/v1/recommend", USER, {"users": [2**64]}, 404,
     str(2**64)),
    ("unknown item allow", "POST", "/v1/recommend", USER, {"users": [2], "items": [77]}, 404,
     "77"),
    ("unknown item deny", "POST", "/v1/recommend", USER, {"users": [2], "exclude": [78]}, 404,
     "78"),
    ("unknown history item", "POST", "/v1/recommend", USER, {"history": [[79]]}, 404, "79"),
    ("huge k", "POST", "/v1/recommend", USER, {"users": [2], "k": 10**9}, 422, "1000000000"),
    ("k zero", "POST", "/v1/recommend", USER, {"users": [2], "k": 0}, 422, "k"),
    ("k negative", "POST", "/v1/recommend", USER, {"users": [2], "k": -3}, 422, "-3"),
    ("k string", "POST", "/v1/recommend", USER, {"users": [2], "k": "5"}, 422, '"5"'),
    ("k fractional", "POST", "/v1/recommend", USER, {"users": [2], "k": 5.5}, 422, "5.5"),
    ("k bool", "POST", "/v1/recommend", USER, {"users": [2], "k": True}, 422, "k"),
    ("exclude_seen string", "POST", "/v1/recommend", USER,
     {"users": [2], "exclude_seen": "no"}, 422, "exclude_seen"),
    ("unknown field", "POST", "/v1/recommend", USER, {"users": [2], "kk": 3}, 422, "kk"),
    ("too many users", "POST", "/v1/recommend", USER, {"users": list(range(1, 31))}, 422,
     "max_users"),
    ("history and users differ", "POST", "/v1/recommend", USER,
     {"users": [2], "history": [[1000], [1001]]}, 422, "histories"),
    ("empty history", "POST", "/v1/recommend", USER, {"history": []}, 422, "history"),
    ("history not nested", "POST", "/v1/recommend", USER, {"history": [1000]}, 422,
     "history.0"),
    ("users x k over max_results", "POST", "/v1/recommend", USER,
     {"users": list(range(1, 11)), "k": 50}, 422, "max_results"),
    ("oversize body", "POST", "/v1/recommend", {**USER, **_J}, b" " * 70_000, 413,
     "max_body_bytes"),
    ("bad content-length", "POST", "/v1/recommend", {**USER, **_J, "content-length": "x1"},
     b"{}", 400, "Content-Length"),
    ("similar: empty", "POST", "/v1/similar-items", USER, {"items": []}, 422, "items"),
    ("similar: unknown", "POST", "/v1/similar-items", USER, {"items": [5]}, 404, "5"),
    ("similar: huge k", "POST", "/v1/similar-items", USER, {"items": [1000], "k": 51}, 422,
     "max_k"),
    ("score: no pairs", "POST", "/v1/score", USER, {}, 422, "pairs"),
    ("score: empty pairs", "POST", "/v1/score", USER, {"pairs": []}, 422, "pairs"),
    ("score: pair missing item", "POST", "/v1/score", USER, {"pairs": [{"user": 2}]}, 422,
     "item"),
    ("score: lengths differ (old form)", "POST", "/v1/score", USER,
     {"users": [2, 3], "items": [1000]}, 422, "same length"),
    ("score: both forms", "POST", "/v1/score", USER,
     {"pairs": [{"user": 2, "item": 1000}], "users": [2], "items": [1000]}, 422, "not both"),
    ("score: unknown user", "POST", "/v1/score", USER,
     {"pairs": [{"user": 999999, "item": 1000}]}, 404, "999999"),
    ("score: too many pairs", "POST", "/v1/score", USER,
     {"pairs": [{"user": 2, "item": 1000}] * 201}, 422, "max_pairs"),
    ("reload: traversal", "POST", "/v1/admin/reload", ADMIN, {"model_dir": "../../etc"}, 409,
     "../../etc"),
    ("reload: absolute outside", "POST", "/v1/admin/reload", ADMIN, {"model_dir": "/etc"}, 409,
     "/etc"),
    ("reload: not a string", "POST", "/v1/admin/reload", ADMIN, {"model_dir": 3}, 422,
     "model_dir"),
    ("reload: empty string", "POST", "/v1/admin/reload", ADMIN, {"model_dir": ""}, 422,
     "model_dir"),
    ("unknown path", "GET", "/v1/nope", USER, None, 404, "Not Found"),
    ("wrong method", "GET", "/v1/recommend", USER, None, 405, "Method Not Allowed"),
]


@pytest.fixture(scope="module")
def hard_client(tmp_path_factory, ease_model):
    root = tmp_path_factory.mktemp("hard")
    ease_model.save(root / "m")
    app = create_app(root / "m", api_keys=[API_KEY], admin_keys=[ADMIN_KEY], max_users=20,
                     max_pairs=200, max_k=50, max_results=400, max_body_bytes=65_536)
    with TestClient(app) as c:
        yield c


def test_bad_request_table_is_big_and_distinct():
    assert len(BAD_REQUESTS) >= 40
    assert len({r[0] for r in BAD_REQUESTS}) == len(BAD_REQUESTS)
    assert len({json.dumps(r[1:5], default=repr) for r in BAD_REQUESTS}) == len(BAD_REQUESTS)


@pytest.mark.parametrize("name, method, path, headers, body, status, needle", BAD_REQUESTS,
                         ids=[r[0] for r in BAD_REQUESTS])
def test_bad_request(hard_client, name, method, path, headers, body, status, needle):
    kw = {"content": body} if isinstance(body, bytes) else (
        {"json": body} if body is not None else {})
    r = hard_client.request(method, path, headers=headers, **kw)
    assert r.status_code == status, r.text
    assert 400 <= r.status_code < 500
    out = r.json()
    assert set(out) >= {"error", "detail"} and out["error"] != "InternalError"
    assert needle in out["detail"] or needle in json.dumps(out), out
    assert hard_client.get("/healthz").status_code == 200
