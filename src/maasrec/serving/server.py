"""Running the app with uvicorn: ``maasrec serve`` (see :func:`run_server`).

Security default: without any API key the server only binds to a loopback address
(``127.0.0.1``, ``::1``, ``localhost``) and logs a warning; binding elsewhere without keys
is refused unless ``insecure=True`` (``--insecure``).

TLS: ``ssl_certfile``/``ssl_keyfile`` (``--ssl-certfile``/``--ssl-keyfile``) serve HTTPS
through uvicorn; the pair is checked (readable, PEM, the key matches the certificate)
before the model is loaded or a port is bound. Encrypted models (saved with
``encryption_key=``) are served with the key in ``$MAASREC_MODEL_KEY``.

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
import ssl
import threading
from typing import Any

import uvicorn

from ..exceptions import MaasrecError
from .app import create_app
from .auth import ADMIN_KEYS_ENV, API_KEYS_ENV, is_loopback, load_keys

__all__ = ["MODEL_ROOT_ENV", "SSL_KEYFILE_PASSWORD_ENV", "app_from_env", "check_tls", "run_server"]

logger = logging.getLogger(__name__)

OPTIONS_ENV = "MAASREC_SERVE_OPTIONS"
#: Environment variable naming the model root (``--model-root`` wins over it).
MODEL_ROOT_ENV = "MAASREC_MODEL_ROOT"
#: Environment variable holding the password of an encrypted ``--ssl-keyfile``.
SSL_KEYFILE_PASSWORD_ENV = "MAASREC_SSL_KEYFILE_PASSWORD"
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


def check_tls(certfile: str | os.PathLike | None, keyfile: str | os.PathLike | None,
              password: str | None = None) -> ssl.SSLContext | None:
    """Check a TLS certificate and private key before serving with them.

    Parameters
    ----------
    certfile : path or None
        PEM certificate (chain), server certificate first.
    keyfile : path or None
        PEM private key of that certificate (may be the same file as ``certfile``).
    password : str, optional
        Password of an encrypted key file.

    Returns
    -------
    ssl.SSLContext or None
        A server context loaded with the pair; None when neither file is given.

    Raises
    ------
    MaasrecError
        Only one of the two files given; a file that is missing or unreadable; not PEM; a
        key that does not belong to the certificate; a wrong key password.
    """
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        given, missing = (("--ssl-keyfile", "--ssl-certfile") if certfile is None
                          else ("--ssl-certfile", "--ssl-keyfile"))
        raise MaasrecError(f"{given} given without {missing}: HTTPS needs both the "
                           f"certificate and its private key")
    for what, f in (("certificate", certfile), ("private key", keyfile)):
        if not os.path.isfile(f) or not os.access(f, os.R_OK):
            raise MaasrecError(f"TLS {what} file {os.fspath(f)!r} does not exist or is not "
                               f"readable")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # never a pass-phrase prompt on the terminal: no password is an empty one
        ctx.load_cert_chain(certfile, keyfile,
                            password=password if password is not None else (lambda: b""))
    except ssl.SSLError as exc:
        text = str(exc)
        if "KEY_VALUES_MISMATCH" in text or "key values mismatch" in text:
            raise MaasrecError(f"the TLS private key {os.fspath(keyfile)!r} does not match the "
                               f"certificate {os.fspath(certfile)!r}") from None
        if "BAD_DECRYPT" in text or "bad decrypt" in text or _encrypted_pem(keyfile):
            raise MaasrecError(f"cannot decrypt the TLS private key {os.fspath(keyfile)!r}: "
                               f"wrong or missing password (${SSL_KEYFILE_PASSWORD_ENV})") from None
        raise MaasrecError(f"cannot use the TLS certificate {os.fspath(certfile)!r} with the key "
                           f"{os.fspath(keyfile)!r}: {exc}") from None
    except OSError as exc:
        raise MaasrecError(f"cannot read the TLS files {os.fspath(certfile)!r}, "
                           f"{os.fspath(keyfile)!r}: {exc}") from None
    return ctx


def _encrypted_pem(path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b"ENCRYPTED PRIVATE KEY" in head or b"Proc-Type: 4,ENCRYPTED" in head


def _check_encrypted_model(model_dir: str) -> None:
    from ..persistence import is_encrypted

    if not is_encrypted(model_dir):
        return
    from ..privacy.crypto import KEY_ENV, key_from_env

    if key_from_env(required=False) is None:
        raise MaasrecError(f"{model_dir!r} is an encrypted model: set ${KEY_ENV} (or "
                           f"--encryption-key-env NAME) to its key")


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
               access_log: bool = True, model_root: str | os.PathLike | None = None,
               ssl_certfile: str | os.PathLike | None = None,
               ssl_keyfile: str | os.PathLike | None = None,
               ssl_keyfile_password: str | None = None) -> int:
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
    ssl_certfile, ssl_keyfile : path, optional
        Serve HTTPS with this PEM certificate (chain) and private key (both or neither;
        checked by :func:`check_tls` before anything starts).
    ssl_keyfile_password : str, optional
        Password of an encrypted key file; default ``$MAASREC_SSL_KEYFILE_PASSWORD``.

    Returns
    -------
    int
        Exit status. In the main thread, SIGTERM ends the process with status 0 (a
        ``SystemExit``) once uvicorn has drained the in-flight requests.

    Raises
    ------
    MaasrecError
        No key and a non-loopback host without ``insecure``; unreadable key files; a
        model directory that cannot be served; an encrypted model without
        ``$MAASREC_MODEL_KEY``; TLS files that are missing, unreadable or do not match.
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
    if ssl_keyfile_password is None:
        ssl_keyfile_password = os.environ.get(SSL_KEYFILE_PASSWORD_ENV) or None
    check_tls(ssl_certfile, ssl_keyfile, ssl_keyfile_password)
    _check_encrypted_model(options["model_dir"])
    api_keys, admin_keys = _keys(options)
    if (api_keys or admin_keys) and ssl_certfile is None and not is_loopback(host):
        logger.warning("serving on %s over plain HTTP: API keys and requests cross the "
                       "network unencrypted (use --ssl-certfile/--ssl-keyfile or a TLS proxy)",
                       host)
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
    if ssl_certfile is not None:
        common.update(ssl_certfile=os.fspath(ssl_certfile), ssl_keyfile=os.fspath(ssl_keyfile),
                      ssl_keyfile_password=ssl_keyfile_password)
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
