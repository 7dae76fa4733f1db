"""README's "Serving" example, run exactly as written (parsed out of README.md).

If the README drifts (a command changes, a key too short to be accepted), this test runs
the new text and fails where a user copying it would.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra")

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def serving_blocks() -> tuple[list[str], str]:
    """The shell lines and the Python code of README's Serving section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Serving\n", 1)[1].split("\n## ", 1)[0]
    shell = re.findall(r"```bash\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(shell) == 1 and len(python) == 1, "README's Serving section changed shape"
    lines = [ln.strip() for ln in shell[0].splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    return lines, python[0]


def test_readme_parses():
    lines, code = serving_blocks()
    assert sum(ln.startswith("maasrec serve") for ln in lines) == 1
    assert "Client(" in code


def test_readme_serving_example_runs_as_written(tmp_path):
    lines, code = serving_blocks()
    port = int(re.search(r"--port (\d+)", next(ln for ln in lines
                                                 if ln.startswith("maasrec serve"))).group(1))
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"port {port} of README's example is in use on this machine")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAASREC_API_KEYS", "MAASREC_ADMIN_KEYS", "MAASREC_API_KEY")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    server = None
    log = tmp_path / "server.log"
    try:
        for line in lines:
            if line.startswith("maasrec serve"):
                with open(log, "w") as out:
                    server = subprocess.Popen(["bash", "-c", "exec " + line], cwd=tmp_path,
                                              env=env, stdout=out, stderr=subprocess.STDOUT)
                deadline = time.monotonic() + 120
                while True:
                    assert server.poll() is None, f"server exited:\n{log.read_text()}"
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                                    timeout=2) as r:
                            if r.status == 200:
                                break
                    except OSError:
                        pass
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            else:
                r = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=600)
                assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        assert server is not None
        check = code + ("\nr = c.recommend([1, 2], k=10)\n"
                        "assert len(r) == 2 and all(len(x.items) == 10 for x in r)\n"
                        "assert len(c.recommend(history=[1, 50, 260], k=10).items) == 10\n"
                        "print('README OK')\n")
        r = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "README OK" in r.stdout, r.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
    assert "Traceback" not in log.read_text()
