"""Running the app with uvicorn: ``maasrec serve`` (see :func:`run_server`).

Security default: without any API key the server only binds to a loopback address
(``127.0.0.1``, ``::1``, ``localhost``) and logs a warning; binding elsewhere without keys
is refused unless ``insecure=True`` (``--insecure``).

Processes: with ``workers=1`` (default) the app runs in this process; SIGHUP reloads the
model directory, SIGTERM/SIGINT drain in-flight requests (and the micro-batcher) and exit
with status 0. With ``workers > 1`` uvicorn starts N worker processes from the import
string ``maasrec.serving.server:app_from_env``; **each worker loads its own copy of the
model** (N x the memory), has its own metrics registry and batcher, and
``POST /v1/admin/reload`` reloads only the worker that receives it. Send SIGHUP to the
parent to restart all workers on the (new) model directory instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

import uvicorn

from ..exceptions import MaasrecError
from .app import create_app
from .auth import ADMIN_KEYS_ENV, API_KEYS_ENV, is_loopback, load_keys

__all__ = ["MODEL_ROOT_ENV", "app_from_env", "run_server"]

logger = logging.getLogger(__name__)

OPTIONS_ENV = "MAASREC_SERVE_OPTIONS"
#: Environment variable naming the model root (``--model-root`` wins over it).
MODEL_ROOT_ENV = "MAASREC_MODEL_ROOT"
_APP_OPTIONS = ("max_batch", "max_wait_ms", "max_k", "max_users", "max_pairs",
                "max_body_bytes", "model_threads", "max_results", "model_root")


class _DrainingServer(uvicorn.Server):
    """uvicorn server that marks the app as draining (``/readyz`` 503) on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, runtime: Any):
        super().__init__(config)
        self._runtime = runtime

    def handle_exit(self, sig: int, frame) -> None:
        self._runtime.draining = True
        super().handle_exit(sig, frame)


def _exit_cleanly(signum: int, frame) -> None:
    raise SystemExit(0)


def _keys(options: dict) -> tuple[list[str], list[str]]:
    return (load_keys(API_KEYS_ENV, options.get("api_key_file")),
            load_keys(ADMIN_KEYS_ENV, options.get("admin_key_file")))


def app_from_env():
    """App factory for uvicorn worker processes (``--workers > 1``).

    Reads the options that :func:`run_server` put in ``$MAASREC_SERVE_OPTIONS`` and the
    keys from ``$MAASREC_API_KEYS`` / ``$MAASREC_ADMIN_KEYS`` and the key files.

    Returns
    -------
    fastapi.FastAPI
    """
    options = json.loads(os.environ[OPTIONS_ENV])
    api_keys, admin_keys = _keys(options)
    return create_app(options["model_dir"], api_keys=api_keys, admin_keys=admin_keys,
                      **{k: options[k] for k in _APP_OPTIONS if k in options})


def run_server(model_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
               workers: int = 1, api_key_file: str | None = None,
               admin_key_file: str | None = None, insecure: bool = False,
               max_batch: int = 64, max_wait_ms: float = 0.0, max_k: int = 1000,
               max_users: int = 1000, max_pairs: int = 10_000,
               max_body_bytes: int = 1_048_576, model_threads: int = 1,
               max_results: int = 100_000, graceful_timeout: float = 30.0, log_level: str = "info",
               access_log: bool = True, model_root: str | os.PathLike | None = None) -> int:
    """Serve a saved model over HTTP until SIGTERM/SIGINT.

    Parameters
    ----------
    model_dir : path
        A model directory written by ``model.save``.
    host : str, default "127.0.0.1"
    port : int, default 8000
    workers : int, default 1
        Worker processes; each loads the model (see the module docstring).
    api_key_file, admin_key_file : path, optional
        Files with one key per line, added to ``$MAASREC_API_KEYS`` /
        ``$MAASREC_ADMIN_KEYS``.
    insecure : bool, default False
        Allow a non-loopback ``host`` without any key.
    max_batch, max_wait_ms, max_k, max_users, max_pairs, max_body_bytes, model_threads, max_results
        See :func:`maasrec.serving.create_app`.
    graceful_timeout : float, default 30
        Seconds to wait for in-flight requests at shutdown.
    log_level : str, default "info"
    access_log : bool, default True
        Log every request (uvicorn's access log; query strings are shown as ``?***``).
    model_root : path, optional
        The only directory admin reloads may load from; default ``$MAASREC_MODEL_ROOT``,
        else the parent directory of ``model_dir``. See
        :func:`maasrec.serving.create_app`.

    Returns
    -------
    int
        Exit status. In the main thread, SIGTERM ends the process with status 0 (a
        ``SystemExit``) once uvicorn has drained the in-flight requests.

    Raises
    ------
    MaasrecError
        No key and a non-loopback host without ``insecure``; unreadable key files; a
        model directory that cannot be served.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise MaasrecError(f"workers must be a positive integer, got {workers!r}")
    options = {"model_dir": os.path.abspath(os.fspath(model_dir)),
               "api_key_file": os.path.abspath(api_key_file) if api_key_file else None,
               "admin_key_file": os.path.abspath(admin_key_file) if admin_key_file else None,
               "max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_k": max_k,
               "max_users": max_users, "max_pairs": max_pairs,
               "max_body_bytes": max_body_bytes, "model_threads": model_threads,
               "max_results": max_results,
               "model_root": os.path.abspath(os.fspath(model_root)) if model_root else (
                   os.path.abspath(os.environ[MODEL_ROOT_ENV])
                   if os.environ.get(MODEL_ROOT_ENV) else None)}
    api_keys, admin_keys = _keys(options)
    if not api_keys and not admin_keys:
        if not is_loopback(host):
            if not insecure:
                raise MaasrecError(
                    f"refusing to serve on {host!r} without API keys: anyone who can reach "
                    f"this address could use the model. Set {API_KEYS_ENV} (comma-separated) "
                    f"or --api-key-file, bind to 127.0.0.1, or pass --insecure")
            logger.warning("serving on %s WITHOUT authentication (--insecure)", host)
        else:
            logger.warning("no API key configured (%s or --api-key-file): serving without "
                           "authentication, on the loopback address %s only", API_KEYS_ENV,
                           host)
    if log_level.lower() in ("debug", "info", "trace"):
        logging.getLogger("maasrec.serving").setLevel(logging.INFO)
    common = {"host": host, "port": port, "log_level": log_level.lower(),
              "access_log": access_log, "timeout_graceful_shutdown": int(graceful_timeout),
              "lifespan": "on"}
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_cleanly)  # exit 0 once uvicorn has drained
    if workers == 1:
        app = create_app(options["model_dir"], api_keys=api_keys, admin_keys=admin_keys,
                         handle_signals=True,
                         **{k: options[k] for k in _APP_OPTIONS})
        server = _DrainingServer(uvicorn.Config(app, **common), app.state.maasrec)
        server.run()
        return 0
    from .state import ModelHolder

    ModelHolder(options["model_dir"], model_root=options["model_root"])  # fail here, not in N workers
    os.environ[OPTIONS_ENV] = json.dumps(options)
    uvicorn.run("maasrec.serving.server:app_from_env", factory=True, workers=workers, **common)
    return 0
