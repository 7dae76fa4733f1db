"""The real thing: ``python -m maasrec serve`` in a subprocess on 127.0.0.1, used by the client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra")

from maasrec import Recommender
from maasrec.client import Client, ServiceError

pytestmark = pytest.mark.slow

API_KEY = "subprocess-key-123456"
ADMIN_KEY = "subprocess-admin-123456"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAASREC_API_KEYS", "MAASREC_ADMIN_KEYS", "MAASREC_API_KEY")}
    env.update(extra)
    return env


def _wait_until(fn, timeout: float, proc, log) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if fn():
                return
        except ServiceError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {timeout}s:\n{log.read_text()}")
        time.sleep(0.1)


def test_serve_client_reload_sighup_sigterm(tmp_path, ease_dir, ease_dir2):
    port = _free_port()
    keyfile = tmp_path / "admin.keys"
    keyfile.write_text(f"# admin keys\n{ADMIN_KEY}\n")
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maasrec", "serve", str(ease_dir), "--host", "127.0.0.1",
             "--port", str(port), "--admin-key-file", str(keyfile), "--max-wait-ms", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=_env(MAASREC_API_KEYS=API_KEY))
    try:
        url = f"http://127.0.0.1:{port}"
        client = Client(url, api_key=API_KEY, retries=0, timeout=10)
        _wait_until(lambda: client.health()["status"] == "ok", 60, proc, log)

        old = Recommender.load(ease_dir)
        ids, _ = old.recommend([2, 3], k=5)
        assert [r.items for r in client.recommend([2, 3], k=5)] == ids.tolist()
        assert client.model_info()["model_version"] == 1

        admin = Client(url, api_key=ADMIN_KEY, retries=0)
        assert admin.reload(str(ease_dir2))["model"]["model_version"] == 2
        new = Recommender.load(ease_dir2)
        ids, _ = new.recommend([2, 3], k=5)
        assert [r.items for r in client.recommend([2, 3], k=5)] == ids.tolist()

        proc.send_signal(signal.SIGHUP)  # reload the current directory
        _wait_until(lambda: client.model_info()["model_version"] == 3, 30, proc, log)
        assert client.model_info()["model_name"] == "ease2"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Application shutdown complete" in text and "Traceback" not in text
    assert "maasrec serving stopped" in text


def test_refuses_public_bind_without_keys(ease_dir):
    r = subprocess.run([sys.executable, "-m", "maasrec", "serve", str(ease_dir), "--host",
                        "0.0.0.0", "--port", str(_free_port())],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 2
    assert "refusing to serve on '0.0.0.0' without API keys" in r.stderr
