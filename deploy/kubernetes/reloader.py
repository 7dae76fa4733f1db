"""Hot-reload sidecar: reload the pod's maasrec server when the model directory changes.

The training job publishes with ``model.save("/models/current", overwrite=True)``, which
swaps the whole directory in one atomic step and writes ``maasrec.json`` (holding the
sha256 of every other file) last. This loop fingerprints ``maasrec.json`` every
``RELOAD_POLL_SECONDS`` and, when it changed, calls ``POST /v1/admin/reload`` on the
server beside it (``maasrec.client.Client.reload``). A refused model leaves the old one
serving; the server counts it in ``maasrec_model_reloads_total{result="refused"}``.
Standard library plus maasrec's own client only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("maasrec.reloader")


def fingerprint(model_dir: str | os.PathLike) -> str | None:
    """sha256 of the model's ``maasrec.json`` (None while there is none)."""
    try:
        return hashlib.sha256((Path(model_dir) / "maasrec.json").read_bytes()).hexdigest()
    except OSError:
        return None


def check_once(client, model_dir: str, last: str | None) -> str | None:
    """Reload when the fingerprint differs from ``last``; return the one now served."""
    now = fingerprint(model_dir)
    if now is None or now == last:
        return last
    if last is None:  # first look: the server loaded this model at start
        return now
    try:
        info = client.reload()
    except Exception as exc:  # refused or unreachable: keep the old one, retry next poll
        log.error("reload of %s failed: %s", model_dir, exc)
        return last
    log.info("reloaded %s: %s", model_dir, info)
    return now


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from maasrec.client import Client

    key = os.environ["MAASREC_ADMIN_KEY"].split(",")[0].strip()
    client = Client(os.environ.get("MAASREC_URL", "http://127.0.0.1:8000"), api_key=key)
    model_dir = os.environ.get("MAASREC_MODEL_DIR", "/models/current")
    period = float(os.environ.get("RELOAD_POLL_SECONDS", "30"))
    last = None
    while True:
        last = check_once(client, model_dir, last)
        time.sleep(period)


if __name__ == "__main__":
    sys.exit(main())
