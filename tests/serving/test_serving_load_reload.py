"""Bounded load on a real ``maasrec serve`` (127.0.0.1 only) during 8 hot reloads.

2,000 requests at concurrency 16 while a reloader thread makes 8 reloads: 6 admin reloads
alternating between two models, one SIGHUP, and one admin reload of a corrupt model
directory (refused with 409: the old model keeps serving). Every response must be a valid
200 (no 5xx, no connection error). The access log must never show an API key sent in a
query string. Prints req/s, p50/p99 latency and the reload outcomes (``pytest -s``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra")

from maasrec import ModelFormatError, Recommender
from maasrec.client import Client, ServiceError

pytestmark = pytest.mark.slow

API_KEY = "load-user-key-0123456789"
ADMIN_KEY = "load-admin-key-0123456789"
N_REQUESTS, CONCURRENCY, N_RELOADS = 2000, 16, 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_load_during_hot_reloads(tmp_path, ease_dir, ease_dir2, broken_dir):
    root = tmp_path / "models"
    root.mkdir()
    for src, name in ((ease_dir, "m1"), (ease_dir2, "m2"), (broken_dir, "corrupt")):
        shutil.copytree(src, root / name)
    models = {v: Recommender.load(root / f"m{v}") for v in (1, 2)}
    n_items = {v: set(m.item_vocab_.ids.tolist()) for v, m in models.items()}
    users = [int(u) for u in models[1].user_vocab_.ids if u in set(
        models[2].user_vocab_.ids.tolist())][:30]
    port = _free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAASREC_API_KEYS", "MAASREC_ADMIN_KEYS", "MAASREC_API_KEY")}
    env.update(MAASREC_API_KEYS=API_KEY, MAASREC_ADMIN_KEYS=ADMIN_KEY)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maasrec", "serve", str(root / "m1"), "--host", "127.0.0.1",
             "--port", str(port), "--model-threads", "2"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        probe = Client(url, api_key=API_KEY, retries=0, timeout=5)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if probe.health()["status"] == "ok":
                    break
            except ServiceError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

        # a key in the query string: refused, and never written to the access log
        import urllib.error
        import urllib.request
        try:
            urllib.request.urlopen(f"{url}/v1/model?api_key={API_KEY}", timeout=5)
            raise AssertionError("a key in the query string was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401

        lat, errors, versions = [], [], []
        lock = threading.Lock()
        counter = iter(range(N_REQUESTS))
        stop_reloads = threading.Event()

        def worker():
            c = Client(url, api_key=API_KEY, retries=0, timeout=30)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                u = users[i % len(users)]
                t0 = time.perf_counter()
                try:
                    out = c.request("POST", "/v1/recommend", {"users": [u], "k": 5})
                    dt = time.perf_counter() - t0
                    res = out["results"]
                    v = out["model_version"]
                    ok = (len(res) == 1 and res[0]["user"] == u and 1 <= len(res[0]["items"]) <= 5
                          and len(res[0]["scores"]) == len(res[0]["items"])
                          and res[0]["scores"] == sorted(res[0]["scores"], reverse=True))
                    with lock:
                        lat.append(dt)
                        versions.append(v)
                        if not ok:
                            errors.append(f"invalid answer {out}")
                        elif not set(res[0]["items"]) <= (n_items[1] | n_items[2]):
                            errors.append(f"unknown items {out}")
                except Exception as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")

        outcomes = []

        def reloader():
            admin = Client(url, api_key=ADMIN_KEY, retries=0, timeout=60)
            plan = ["m2", "m1", "corrupt", "m2", "SIGHUP", "m1", "m2", "m1"]
            assert len(plan) == N_RELOADS
            for step in plan:
                if stop_reloads.wait(0.05):
                    return
                if step == "SIGHUP":
                    before = probe.model_info()["model_version"]
                    proc.send_signal(signal.SIGHUP)
                    t_end = time.monotonic() + 30
                    while probe.model_info()["model_version"] == before:
                        assert time.monotonic() < t_end
                        time.sleep(0.05)
                    outcomes.append(("SIGHUP", "ok", probe.model_info()["model_name"]))
                    continue
                try:
                    r = admin.reload(step)
                    outcomes.append((step, "ok", r["model"]["model_name"]))
                except ModelFormatError as exc:  # the client's type for a 409 refusal
                    outcomes.append((step, "refused 409", None))
                    assert str(root) not in str(exc)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
        rt = threading.Thread(target=reloader)
        for t in threads:
            t.start()
        rt.start()
        for t in threads:
            t.join(timeout=300)
        wall = time.perf_counter() - t0
        rt.join(timeout=120)
        stop_reloads.set()
        assert not any(t.is_alive() for t in threads) and not rt.is_alive()

        a = np.array(lat) * 1000
        print(f"\n{len(lat)} requests at concurrency {CONCURRENCY} in {wall:.2f} s: "
              f"{len(lat) / wall:.0f} req/s, p50 {np.percentile(a, 50):.1f} ms, "
              f"p99 {np.percentile(a, 99):.1f} ms, max {a.max():.1f} ms, "
              f"errors {len(errors)}; model versions seen {sorted(set(versions))}")
        print("reloads:", outcomes)
        assert errors == [], errors[:5]
        assert len(lat) == N_REQUESTS
        assert len(outcomes) == N_RELOADS
        assert max(versions) == N_RELOADS  # the last reload happened while requests ran
        assert [o for o in outcomes if o[1] != "ok"] == [("corrupt", "refused 409", None)]
        final = probe.model_info()
        assert final["model_version"] == 1 + N_RELOADS - 1 and final["model_name"] == "m1"
        metrics = probe.metrics()
        assert 'maasrec_model_reloads_total{result="refused"} 1.0' in metrics
        assert 'status="5' not in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert API_KEY not in text and ADMIN_KEY not in text
    assert "/v1/model?***" in text  # the access log did record the request, redacted
    assert "Traceback" not in text
