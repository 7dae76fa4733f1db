"""The fast path of ``POST /v1/recommend`` sends the route's exact HTTP answer (every
header, in order, and the body bytes) without building a Response, and the request
metrics it records per ``(endpoint, method, status)`` match the route's."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (pip install maasrec[serve])")
pytest.importorskip("httpx", reason="the ASGI test client needs httpx (dev extra)")

from fastapi.testclient import TestClient

from maasrec.serving import create_app
from maasrec.serving.metrics import ServingMetrics


def _served_by_fast_path(monkeypatch) -> list:
    import maasrec.serving._fastpath as fastpath

    sent = []
    real = fastpath._send_json

    async def spy(send, body):
        sent.append(body)
        await real(send, body)

    monkeypatch.setattr(fastpath, "_send_json", spy)
    return sent


@pytest.mark.parametrize("max_batch", [64, 1])
def test_fast_path_sends_the_routes_headers_and_bytes(ease_dir, monkeypatch, max_batch):
    sent = _served_by_fast_path(monkeypatch)
    with TestClient(create_app(ease_dir, max_batch=max_batch)) as fast, \
            TestClient(create_app(ease_dir, max_batch=max_batch)) as slow:
        slow.app.state.maasrec.fast_path = False
        for body in ({"users": [2, 5], "k": 4}, {"users": [1], "k": 10},
                     {"users": [3], "k": 2, "exclude_seen": False}):
            data = json.dumps(body).encode()
            hdr = {"Content-Type": "application/json"}
            a = fast.post("/v1/recommend", content=data, headers=hdr)
            b = slow.post("/v1/recommend", content=data, headers=hdr)
            assert a.status_code == b.status_code == 200
            assert a.content == b.content
            assert a.headers.raw == b.headers.raw
    assert len(sent) == 3  # all three were answered by the fast path


def test_request_series_are_counted_once_per_label_set():
    m = ServingMetrics()
    for status, seconds in ((200, 0.01), (200, 0.02), (404, 0.5)):
        m.observe_request("/v1/recommend", "POST", status, seconds)
    m.observe_request("/healthz", "GET", 200, 0.001)
    text = m.render()[0].decode()

    def value(line_start: str) -> float:
        return next(float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
                    if x.startswith(line_start))

    assert value('maasrec_requests_total{endpoint="/v1/recommend",method="POST",'
                 'status="200"}') == 2
    assert value('maasrec_requests_total{endpoint="/v1/recommend",method="POST",'
                 'status="404"}') == 1
    assert value('maasrec_requests_total{endpoint="/healthz",method="GET",status="200"}') == 1
    assert value('maasrec_request_duration_seconds_count{endpoint="/v1/recommend"}') == 3
    assert value('maasrec_request_duration_seconds_sum{endpoint="/v1/recommend"}') == \
        pytest.approx(0.53)
