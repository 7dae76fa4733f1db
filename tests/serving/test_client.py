"""The standard-library client against a real server (uvicorn in a thread) and fake servers."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from maasrec import DataError, ModelFormatError, UnknownIdError
from maasrec.client import AuthenticationError, Client, NotSupportedError, Ranking, ServiceError
from maasrec.models import EASE

API_KEY = "client-test-key-123456"
ADMIN_KEY = "client-admin-key-123456"


def _serve_in_thread(app):
    uvicorn = pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread, sock


@pytest.fixture(scope="module")
def live(ease_dir):
    pytest.importorskip("fastapi", reason="needs the 'serve' extra")
    from maasrec.serving import create_app

    app = create_app(ease_dir, api_keys=[API_KEY], admin_keys=[ADMIN_KEY])
    url, server, thread, sock = _serve_in_thread(app)
    yield url
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def client(live):
    with Client(live, api_key=API_KEY, timeout=10) as c:
        yield c


def test_recommend_like_the_library(client, ease_model):
    ids, scores = ease_model.recommend(2, k=5)
    one = client.recommend(2, k=5)
    assert isinstance(one, Ranking) and one.id == 2
    assert one.items == ids.tolist() and one.scores == scores.astype(float).tolist()
    many = client.recommend(np.array([2, 3]), k=5)  # numpy ids are fine
    assert [r.id for r in many] == [2, 3] and many[0] == one
    short = client.recommend(1, k=10)
    assert len(short) == 4  # padding dropped
    cold = client.recommend(history=[1000, 1001], k=3)
    want, _ = ease_model.recommend(None, k=3, history=[1000, 1001])
    assert isinstance(cold, Ranking) and cold.items == want.tolist() and cold.id is None
    cold2 = client.recommend(["a", "b"], history=[[1000], [1001, 1002]], k=3)
    assert [r.id for r in cold2] == ["a", "b"]
    filtered = client.recommend(2, k=3, items=[1000, 1001, 1002, 1003], exclude=[1000])
    assert set(filtered.items) <= {1001, 1002, 1003}


def test_other_endpoints(client, ease_model):
    sim = client.similar_items(1000, k=3)
    ids, _ = ease_model.similar_items(1000, k=3)
    assert sim.id == 1000 and sim.items == ids.tolist()
    assert len(client.similar_items([1000, 1001], k=2)) == 2
    s = client.score(2, 1000)
    assert s == pytest.approx(float(ease_model.score([2], [1000])[0]))
    assert len(client.score([2, 3], [1000, 1001])) == 2
    info = client.model_info()
    assert info["n_items"] == ease_model.n_items_ and info["class"].endswith("EASE")
    assert client.health()["status"] == "ok" and client.ready()
    assert "maasrec_requests_total" in client.metrics()


def test_typed_errors(live, client, broken_dir):
    with pytest.raises(UnknownIdError) as e:
        client.recommend([2, 98765], k=3)
    assert e.value.ids == [98765] and e.value.kind == "user" and e.value.status == 404
    with pytest.raises(DataError, match="max_k"):
        client.recommend(2, k=10**6)
    with pytest.raises(DataError):
        client.recommend(2, k=0)
    with pytest.raises(AuthenticationError) as e:
        Client(live, retries=0).recommend(2)
    assert e.value.status == 401
    with pytest.raises(AuthenticationError):
        Client(live, api_key="wrong-key-123456").recommend(2)
    with pytest.raises(AuthenticationError) as e:
        client.reload()
    assert e.value.status == 403
    admin = Client(live, api_key=ADMIN_KEY)
    with pytest.raises(ModelFormatError, match="broken"):
        admin.reload(str(broken_dir))
    assert admin.reload()["previous_version"] >= 1
    with pytest.raises(DataError):
        Client("ftp://example.com")


def test_api_key_from_environment(live, monkeypatch):
    monkeypatch.setenv("MAASREC_API_KEY", API_KEY)
    assert Client(live).recommend(2, k=2).id == 2


def test_threads_share_one_client(client, ease_model):
    def work(u):
        return client.recommend(int(u), k=4).items

    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(work, range(2, 30)))
    ids, _ = ease_model.recommend(list(range(2, 30)), k=4)
    assert got == ids.tolist()


# -- retries, against fake servers ------------------------------------------------------------
class _Fake:
    """A stdlib HTTP server answering from a script of (status, body, delay)."""

    def __init__(self, script, http10=False):
        self.script = list(script)
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0" if http10 else "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self._answer()

            def do_GET(self):
                self._answer()

            def _answer(self):
                i = min(fake.requests, len(fake.script) - 1)
                fake.requests += 1
                status, body, delay = fake.script[i]
                time.sleep(delay)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the client hung up (timeout test)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


OK = {"results": [{"user": 1, "items": [5], "scores": [1.0]}], "k": 1, "model_version": 1}


def test_retries_5xx_with_backoff():
    fake = _Fake([(503, {"error": "ServiceUnavailable", "detail": "busy"}, 0),
                  (502, {"detail": "bad gateway"}, 0), (200, OK, 0)])
    try:
        r = Client(fake.url, retries=3, backoff=0.01).recommend(1, k=1)
        assert r.items == [5] and fake.requests == 3
    finally:
        fake.close()


def test_gives_up_after_retries_and_does_not_retry_4xx():
    fake = _Fake([(500, {"error": "InternalError", "detail": "boom"}, 0)])
    try:
        t0 = time.monotonic()
        with pytest.raises(ServiceError, match="boom") as e:
            Client(fake.url, retries=2, backoff=0.05).recommend(1)
        assert e.value.status == 500 and fake.requests == 3
        assert time.monotonic() - t0 >= 0.05 * 0.5 + 0.1 * 0.5  # backed off twice
    finally:
        fake.close()
    fake = _Fake([(422, {"error": "NotSupportedError", "detail": "no similar items"}, 0)])
    try:
        with pytest.raises(NotSupportedError) as e:
            Client(fake.url, retries=3).similar_items(1)
        assert isinstance(e.value, NotImplementedError) and fake.requests == 1
    finally:
        fake.close()


def test_connection_refused_and_timeout():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(ServiceError, match="2 attempt") as e:
        Client(f"http://127.0.0.1:{port}", retries=1, backoff=0.01).health()
    assert e.value.status is None
    fake = _Fake([(200, OK, 0.5)])
    try:
        with pytest.raises(ServiceError, match=r"timed out|timeout"):
            Client(fake.url, timeout=0.1, retries=1, backoff=0.01).recommend(1)
        assert fake.requests == 2
    finally:
        fake.close()


def test_http10_server_closing_connections():
    fake = _Fake([(200, OK, 0)], http10=True)
    try:
        c = Client(fake.url, retries=0)
        for _ in range(3):
            assert c.recommend(1, k=1).items == [5]
        assert fake.requests == 3
    finally:
        fake.close()


class _GateEASE(EASE):
    """EASE whose scoring waits for a gate, to hold a request in flight."""

    gate = threading.Event()
    entered = threading.Event()

    def _score_users(self, user_idx):
        type(self).entered.set()
        assert type(self).gate.wait(10)
        return super()._score_users(user_idx)


def test_graceful_shutdown_finishes_inflight_request(frame, ease_model):
    pytest.importorskip("fastapi", reason="needs the 'serve' extra")
    from maasrec.serving import create_app

    _GateEASE.gate.clear()
    _GateEASE.entered.clear()
    app = create_app(_GateEASE(l2=5.0).fit(frame))
    url, server, thread, sock = _serve_in_thread(app)
    result = {}

    def call():
        result["ranking"] = Client(url, retries=0).recommend(2, k=3)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert _GateEASE.entered.wait(10)
        server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        assert thread.is_alive()  # draining: waits for the request in flight
    finally:
        _GateEASE.gate.set()
        caller.join(10)
        thread.join(10)
        sock.close()
    assert not thread.is_alive()
    want, _ = ease_model.recommend(2, k=3)
    assert result["ranking"].items == want.tolist()
    assert app.state.maasrec.draining
