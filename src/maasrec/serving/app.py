"""The FastAPI application: endpoints, error mapping, auth/limits/metrics middleware.

Endpoints (JSON bodies are described in :mod:`maasrec.serving.schemas`; the OpenAPI
schema is at ``/openapi.json``, interactive docs at ``/docs``):

=========================  ======  ===================================================
``/v1/recommend``          POST    top-k items for users or cold-user histories
``/v1/similar-items``      POST    items most similar to given items
``/v1/score``              POST    scores of (user, item) pairs
``/v1/items``              POST    new items (text, features), recommendable at once
``/v1/model``              GET     what is served (class, params, counts, dates, version)
``/v1/admin/reload``       POST    load a model directory and swap it in (admin key)
``/healthz``               GET     liveness (always open)
``/readyz``                GET     readiness: 503 while shutting down (always open)
``/metrics``               GET     Prometheus metrics
=========================  ======  ===================================================

Errors are JSON ``{"error": type, "detail": message, ...}``:
401 missing/invalid key, 403 not an admin key, 404 unknown id (``ids``, ``kind``),
409 a reload refused (the old model keeps serving), 413 body too large,
422 invalid input (including limits on ``k`` and request sizes, and operations the model
does not support), 503 shutting down. Bad input never gives a 500.
"""

# No ``from __future__ import annotations``: the endpoints' body types are classes built
# per app (with that app's limits in their schema), which FastAPI must see as objects.
import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..base import Recommender
from ..exceptions import DataError, MaasrecError, ModelFormatError, UnknownIdError
from ._fastpath import try_fast_recommend
from .auth import KeyChecker
from .batcher import BatcherClosedError, MicroBatcher
from .events import EventLogError, EventsNotSupportedError, LiveEvents, open_events
from .ids import check_known, coerce_ids, to_json_ids
from .items import add_item_routes
from .metrics import ServingMetrics
from .schemas import (
    ErrorResponse,
    EventsResponse,
    ExplainResponse,
    HealthResponse,
    ModelInfo,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    ScoreResponse,
    SimilarItemsResponse,
    event_models,
    request_models,
)
from .state import ModelHolder, ModelState

__all__ = ["RedactQueryFilter", "ServingRuntime", "create_app", "install_access_log_redaction",
           "redact_target"]

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                        "/redoc"})
ADMIN_PREFIX = "/v1/admin/"
#: Endpoints that change what the server serves: they need an admin key, as /v1/admin/* do.
WRITE_PATHS = frozenset({"/v1/events", "/v1/items"})
ENDPOINTS = frozenset({"/v1/recommend", "/v1/similar-items", "/v1/score", "/v1/model",
                       "/v1/events", "/v1/explain", "/v1/items",
                       "/v1/admin/reload", "/healthz", "/readyz", "/metrics", "/openapi.json",
                       "/docs", "/redoc"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


#: Query-string parameter names that look like credentials (a 401 then says why).
_KEY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token",
                         "auth", "authorization", "x-api-key"})


def redact_target(target: str) -> str:
    """A request target as the access log shows it: the query string's content hidden.

    The API takes no query parameters, so a query string is at best noise and at worst a
    credential (``?api_key=...``); the log keeps the path and marks that a query was sent.

    Parameters
    ----------
    target : str
        Path with an optional ``?query``.

    Returns
    -------
    str
        ``target`` unchanged without a query, else ``path?***``.
    """
    path, sep, _ = target.partition("?")
    return path + "?***" if sep else path


class RedactQueryFilter(logging.Filter):
    """Logging filter for uvicorn's access log (``uvicorn.access``): hides query strings.

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the path and query string as the
    third argument; this filter replaces it with :func:`redact_target`. Installed by the
    app at startup (each worker process), so every way of running the app is covered.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`RedactQueryFilter` to a logger (once).

    Parameters
    ----------
    logger_name : str, default "uvicorn.access"
    """
    log = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQueryFilter) for f in log.filters):
        log.addFilter(RedactQueryFilter())


def _endpoint(path: str) -> str:
    return path if path in ENDPOINTS else "other"


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(_json_bytes(obj), status_code=status, media_type="application/json",
                    headers=headers)


class NotSupportedError(MaasrecError):
    """The served model cannot do what the request asks (e.g. similar items)."""


class ServingRuntime:
    """Everything one app owns: the model holder, batcher, executor, metrics and limits.

    Available as ``app.state.maasrec``.

    Attributes
    ----------
    holder : ModelHolder
    batcher : MicroBatcher or None
        None when batching is off (``max_batch=1``).
    executor : ThreadPoolExecutor
        Model calls run here, never on the event loop.
    metrics : ServingMetrics
    checker : KeyChecker
    draining : bool
        True once shutdown started (``/readyz`` then answers 503).
    """

    def __init__(self, holder: ModelHolder, checker: KeyChecker, *, max_batch: int,
                 max_wait_ms: float, max_k: int, max_users: int, max_pairs: int,
                 max_body_bytes: int, model_threads: int, max_results: int = 100_000):
        for name, v in (("max_batch", max_batch), ("max_k", max_k), ("max_users", max_users),
                        ("max_pairs", max_pairs), ("max_body_bytes", max_body_bytes),
                        ("model_threads", model_threads), ("max_results", max_results)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(max_wait_ms, (int, float)) and 0 <= max_wait_ms <= 10_000):
            raise DataError(f"max_wait_ms must be between 0 and 10000, got {max_wait_ms!r}")
        self.holder = holder
        self.checker = checker
        self.max_k = max_k
        self.max_users = max_users
        self.max_pairs = max_pairs
        self.max_body_bytes = max_body_bytes
        self.max_results = max_results
        self.metrics = ServingMetrics()
        #: Answer plain known-user ``/v1/recommend`` bodies in the middleware
        #: (serving/_fastpath.py); False sends every request through the FastAPI route.
        self.fast_path = True
        self._max_batch = max_batch
        self._max_wait_ms = max_wait_ms
        self._model_threads = model_threads
        self._signal_tasks: set[asyncio.Task] = set()
        #: The event log and live updates (``POST /v1/events``), or None without one.
        self.events: LiveEvents | None = None
        self._open()
        self._record_model(holder.state)

    def _open(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=self._model_threads,
                                           thread_name_prefix="maasrec-model")
        self.batcher: MicroBatcher | None = None
        if self._max_batch > 1:
            self.batcher = MicroBatcher(_run_recommend, self.executor,
                                        max_batch=self._max_batch,
                                        max_wait_ms=self._max_wait_ms,
                                        max_inflight=self._model_threads,
                                        on_batch=self.metrics.observe_batch)
        self.draining = False
        self._stopped = False

    async def start(self) -> None:
        """Ready to serve (again, after :meth:`stop`: an app may see several lifespans)."""
        if self._stopped:
            self._open()

    async def stop(self, timeout: float = 30.0) -> None:
        """Drain: answer every queued request, then stop the model threads."""
        self.draining = True
        if self.batcher is not None:
            await self.batcher.close(timeout=timeout)
        await asyncio.to_thread(self.executor.shutdown, True)
        self._stopped = True

    def _record_model(self, state: ModelState) -> None:
        self.metrics.set_model(state.info["class"], state.name,
                               state.info.get("maasrec_version"), state.version)

    async def call(self, endpoint: str, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` in the model executor; time it (in the thread)."""
        histogram = self.metrics.model_seconds.labels(endpoint=endpoint)

        def timed():
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - t0)

        return await asyncio.get_running_loop().run_in_executor(self.executor, timed)

    async def reload(self, model_dir: str | None = None) -> tuple[ModelState, ModelState]:
        """Load ``model_dir`` (default: the current directory) in a thread and swap it in.

        Raises
        ------
        ModelFormatError
            The directory was refused; the current model keeps serving.
        """
        try:
            old, new = await asyncio.to_thread(self.holder.reload, model_dir)
        except ModelFormatError as exc:
            self.metrics.reloads.labels(result="refused").inc()
            logger.error("reload refused, still serving model version %d: %s",
                         self.holder.state.version, exc)
            raise
        if self.events is not None:  # the new model gets the logged events too
            await self.events.after_reload()
            new = self.holder.state
        self.metrics.reloads.labels(result="ok").inc()
        self._record_model(self.holder.state)  # the latest, should reloads overlap
        return old, new

    def on_sighup(self) -> None:
        """Reload the current model directory (the SIGHUP handler)."""
        logger.info("SIGHUP: reloading the model")

        async def _reload() -> None:
            with contextlib.suppress(ModelFormatError):
                await self.reload(None)

        task = asyncio.get_running_loop().create_task(_reload())
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    def check_k(self, k: int) -> None:
        if k > self.max_k:
            raise DataError(f"k={k} is larger than this server's limit of {self.max_k} "
                            f"(max_k)")

    def check_results(self, n_rows: int, k: int) -> None:
        if n_rows * k > self.max_results:
            raise DataError(f"{n_rows} rows x k={k} = {n_rows * k} results in one answer; this "
                            f"server returns at most {self.max_results} (max_results); lower k "
                            f"or split the request")

    def check_count(self, what: str, n: int, limit: int, name: str) -> None:
        if n > limit:
            raise DataError(f"{n} {what} in one request; this server accepts at most {limit} "
                            f"({name}); split the request")


def _run_recommend(model: Recommender, rows: list, k: int, exclude_seen: bool,
                   mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "history":
        return model.recommend(None, k=k, exclude_seen=exclude_seen, history=rows)
    return model.recommend(rows, k=k, exclude_seen=exclude_seen)


def _rankings(key: str, labels: Sequence, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
    out = []
    for label, irow, srow in zip(labels, ids, scores):
        keep = srow != -np.inf  # padding slots are dropped
        out.append({key: label, "items": to_json_ids(irow[keep]),
                    "scores": srow[keep].astype(np.float64).tolist()})
    return out


class _ServingMiddleware:
    """Pure ASGI middleware: API keys, body size limit, request metrics.

    Runs before routing and body parsing, so an unauthenticated client learns nothing
    about the API beyond 401, and an oversized body is never parsed.
    """

    def __init__(self, app, runtime: ServingRuntime):
        self.app = app
        self.rt = runtime

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rt = self.rt
        path = scope.get("path", "")
        endpoint = _endpoint(path)
        method = scope.get("method", "GET")
        method_label = method if method in _METHODS else "OTHER"
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        rt.metrics.inflight.inc()
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            refusal = self._authorize(path, headers, scope.get("query_string", b""))
            if refusal is None and method in ("POST", "PUT", "PATCH"):
                receive, refusal = await self._limit_body(headers, receive)
                if receive is None:  # client went away
                    status = 499
                    return
            if refusal is not None:
                rt.metrics.errors.labels(endpoint=endpoint, error=_error_name(refusal)).inc()
                await refusal(scope, receive, send_wrapper)
                return
            if rt.fast_path and method == "POST" and path == "/v1/recommend":
                receive = await try_fast_recommend(rt, scope, receive, send_wrapper)
                if receive is None:  # answered (see serving/_fastpath.py)
                    return
            await self.app(scope, receive, send_wrapper)
        finally:
            rt.metrics.inflight.dec()
            rt.metrics.observe_request(endpoint, method_label, status,
                                       time.perf_counter() - t0)

    def _authorize(self, path: str, headers: dict, query: bytes = b"") -> Response | None:
        checker = self.rt.checker
        if not checker.enabled or path in OPEN_PATHS:
            return None
        role = checker.role(headers)
        if role is None:
            sent = bool(checker.presented_keys(headers))
            detail = ("invalid API key" if sent else "missing API key") + (
                ": send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
            if not sent and _key_in_query(query):
                detail += ("; keys in the URL query string are not accepted (URLs end up in "
                           "logs and caches), and this key should now be considered exposed")
            return _json({"error": "AuthenticationError", "detail": detail}, 401,
                         headers={"WWW-Authenticate": "Bearer"})
        if (path.startswith(ADMIN_PREFIX) or path in WRITE_PATHS) and role != "admin":
            detail = ("this endpoint needs an admin key" if checker.has_admin else
                      "admin endpoints are disabled: no admin key is configured "
                      "(MAASREC_ADMIN_KEYS or --admin-key-file); use SIGHUP to reload")
            return _json({"error": "AuthenticationError", "detail": detail}, 403)
        return None

    async def _limit_body(self, headers: dict, receive):
        limit = self.rt.max_body_bytes

        def too_big() -> Response:  # built only when needed: this runs for every POST
            return _json({"error": "DataError",
                          "detail": f"request body larger than this server's limit of {limit} "
                                    f"bytes (max_body_bytes); split the request"}, 413)
        cl = headers.get("content-length")
        if cl is not None:
            if not cl.strip().isdigit():
                return receive, _json({"error": "DataError",
                                       "detail": f"invalid Content-Length {cl!r}"}, 400)
            if int(cl) > limit:
                return receive, too_big()
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                return receive, too_big()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None


def _key_in_query(query: bytes) -> bool:
    from urllib.parse import parse_qsl

    try:
        names = {k.lower() for k, _ in parse_qsl(query.decode("latin-1"),
                                                 keep_blank_values=True)}
    except ValueError:
        return False
    return bool(names & _KEY_PARAMS)


def _error_name(response: Response) -> str:
    try:
        return json.loads(response.body).get("error", "HTTPError")
    except (ValueError, AttributeError):
        return "HTTPError"


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _summarise_validation(errors: Sequence[dict]) -> tuple[str, list[dict]]:
    clean, seen = [], {}
    for e in errors:
        # keep field names and list indices; drop pydantic's union-branch labels
        loc = [str(p) for p in e.get("loc", ())
               if isinstance(p, int) or ("[" not in str(p) and "-" not in str(p))]
        if tuple(loc) in seen:  # an id failing both branches (integer, string): one error
            seen[tuple(loc)]["msg"] += " or " + str(e.get("msg", ""))[0].lower() + str(
                e.get("msg", ""))[1:]
            continue
        item = seen[tuple(loc)] = {"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        if "input" in e and e.get("type") not in ("json_invalid", "missing"):
            item["input"] = _show(e["input"])
        clean.append(item)
    parts = []
    for e in clean[:3]:
        where = ".".join(p for p in e["loc"] if p != "body") or "body"
        msg = e["msg"]
        if e["type"] == "json_invalid":
            where, msg = "body", "malformed JSON"
        elif "input" in e and where != "body":
            msg += f" (got {e['input']})"
        parts.append(f"{where}: {msg}")
    more = f" (and {len(clean) - 3} more)" if len(clean) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more, clean[:50]


def create_app(model_dir: str | os.PathLike | Recommender, *,
               api_keys: Sequence[str] | None = None, admin_keys: Sequence[str] | None = None,
               max_batch: int = 64, max_wait_ms: float = 0.0, max_k: int = 1000,
               max_users: int = 1000, max_pairs: int = 10_000,
               max_body_bytes: int = 1_048_576, model_threads: int = 1,
               max_results: int = 100_000, handle_signals: bool = False,
               model_root: str | os.PathLike | None = None,
               events_db: str | os.PathLike | None = None) -> FastAPI:
    """Build the HTTP app serving one saved model.

    Parameters
    ----------
    model_dir : path or Recommender
        A model directory written by ``model.save`` (loaded now, so a broken directory
        fails here), or a fitted model (then reloads need an explicit directory).
    api_keys : sequence of str, optional
        Keys accepted for the API. None or empty together with ``admin_keys``: no
        authentication (bind to loopback only; :func:`maasrec.serving.run_server`
        enforces it).
    admin_keys : sequence of str, optional
        Keys accepted for ``/v1/admin/*`` (and everything else).
    max_batch : int, default 64
        Users merged into one ``model.recommend`` call at most; 1 turns micro-batching
        off (each request is its own call).
    max_wait_ms : float, default 0.0
        How long a request may wait for others to batch with when the model is idle.
        With 0, an idle model serves a request at once, and the requests that arrive
        while it is busy are merged into the next call (no added latency at low load).
    max_k : int, default 1000
        Largest ``k`` accepted (422 above).
    max_users : int, default 1000
        Users (or histories, or items for similar-items) per request at most (422).
    max_pairs : int, default 10000
        Pairs per ``/v1/score`` request, and ids per allow/deny list or over all
        histories of a request, at most (422).
    max_body_bytes : int, default 1 MiB
        Largest request body (413 above).
    model_threads : int, default 1
        Threads running model calls (and batched calls in flight at once).
    max_results : int, default 100000
        Rows x ``k`` of one answer at most (422), which bounds response size and memory.
    handle_signals : bool, default False
        Reload the model on SIGHUP (only when the server runs in the main thread; the
        ``maasrec serve`` command sets it).
    model_root : path, optional
        The only directory ``POST /v1/admin/reload`` may load models from (paths are
        relative to it; ``..`` and symbolic links cannot leave it). Default: the parent
        directory of ``model_dir``; none for an in-memory model (reloads of a directory
        are then refused). ``GET /v1/model`` names the model by its path relative to
        the root, never by an absolute path.
    events_db : path, optional
        The SQLite event log of ``POST /v1/events`` (WAL mode; created when absent).
        Default: the ``MAASREC_EVENTS_DB`` environment variable; neither: no event log
        (``/v1/events`` answers 409). Its events are replayed onto the model now and
        after every reload (see :doc:`/online`).

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.maasrec`` the :class:`ServingRuntime`.

    Raises
    ------
    maasrec.serving.events.EventLogError
        ``events_db`` cannot be opened, or holds a record that cannot be read (the
        message names the file and the record).
    """
    checker = KeyChecker(api_keys, admin_keys)
    holder = ModelHolder(model_dir, model_root=model_root)
    rt = ServingRuntime(holder, checker, max_batch=max_batch, max_wait_ms=max_wait_ms,
                        max_k=max_k, max_users=max_users, max_pairs=max_pairs,
                        max_body_bytes=max_body_bytes, model_threads=model_threads,
                        max_results=max_results)
    rt.events = open_events(events_db, holder)
    app = FastAPI(
        title="maasrec",
        version=__version__,
        summary="Recommendations from a saved maasrec model",
        description=(
            "Raw ids are JSON integers or strings, matched to the model's id kind ('1' and 1 "
            "are the same id for a model with integer ids). Per-user lists may be shorter "
            "than k: padding is dropped. Authenticate with 'Authorization: Bearer <key>' or "
            "'X-API-Key: <key>' when the server has keys."),
        lifespan=_lifespan(rt, handle_signals),
    )
    app.state.maasrec = rt
    app.add_middleware(_ServingMiddleware, runtime=rt)
    security = []
    if checker.enabled:  # documented in OpenAPI; enforced by the middleware
        security = [Security(HTTPBearer(auto_error=False, description="API key as a bearer "
                                                                      "token")),
                    Security(APIKeyHeader(name="X-API-Key", auto_error=False))]
    _add_error_handlers(app, rt)
    _add_model_routes(app, rt, request_models(max_k=max_k, max_users=max_users,
                                              max_pairs=max_pairs), security)
    _add_ops_routes(app, rt, security)
    _add_event_routes(app, rt, event_models(max_pairs=max_pairs), security)
    add_item_routes(app, rt, security, _ERRORS, max_items=max_users)  # serving/items.py
    return app


#: The error answers the endpoints document in OpenAPI.
_ERRORS = {400: {"model": ErrorResponse, "description": "Malformed HTTP request (e.g. an "
                                                        "invalid Content-Length)"},
           401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
           404: {"model": ErrorResponse, "description": "Unknown user or item id"},
           413: {"model": ErrorResponse, "description": "Request body too large"},
           422: {"model": ErrorResponse, "description": "Invalid input or limits exceeded"}}


def _lifespan(rt: ServingRuntime, handle_signals: bool):
    """The app's lifespan: SIGHUP reloads (if asked), start, then drain on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        install_access_log_redaction()  # after uvicorn configured its loggers
        loop = asyncio.get_running_loop()
        sighup = False
        if handle_signals and hasattr(signal, "SIGHUP"):
            try:
                loop.add_signal_handler(signal.SIGHUP, rt.on_sighup)
                sighup = True
            except (NotImplementedError, RuntimeError, ValueError) as exc:
                logger.warning("cannot install the SIGHUP reload handler: %s", exc)
        await rt.start()
        try:
            yield
        finally:
            if sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await rt.stop()
            logger.info("maasrec serving stopped")

    return lifespan


def _add_error_handlers(app: FastAPI, rt: ServingRuntime) -> None:
    """Map every error to a JSON ``{"error", "detail", ...}`` answer, counted in metrics."""

    def _error(request: Request, status: int, error: str, detail: str,
               headers: dict | None = None, **extra) -> Response:
        rt.metrics.errors.labels(endpoint=_endpoint(request.url.path), error=error).inc()
        body = {"error": error, "detail": detail}
        body.update({k: v for k, v in extra.items() if v is not None})
        if status == 503:
            headers = {**(headers or {}), "Retry-After": "1"}
        return _json(body, status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError):
        detail, errs = _summarise_validation(exc.errors())
        return _error(request, 422, "ValidationError", detail, errors=errs)

    @app.exception_handler(UnknownIdError)
    async def _on_unknown(request: Request, exc: UnknownIdError):
        return _error(request, 404, "UnknownIdError", str(exc), ids=to_json_ids(exc.ids),
                      kind=exc.kind)

    @app.exception_handler(ModelFormatError)
    async def _on_model_format(request: Request, exc: ModelFormatError):
        return _error(request, 409, "ModelFormatError", str(exc))

    @app.exception_handler(NotSupportedError)
    async def _on_not_supported(request: Request, exc: NotSupportedError):
        return _error(request, 422, "NotSupportedError", str(exc))

    @app.exception_handler(NotImplementedError)
    async def _on_not_implemented(request: Request, exc: NotImplementedError):
        return _error(request, 422, "NotSupportedError", str(exc))

    @app.exception_handler(DataError)
    async def _on_data(request: Request, exc: DataError):
        return _error(request, 422, "DataError", str(exc))

    @app.exception_handler(EventsNotSupportedError)
    async def _on_events_not_supported(request: Request, exc: EventsNotSupportedError):
        # a state of the server (no event log, a model without partial_fit), not bad input
        return _error(request, 409, "NotSupportedError", str(exc))

    @app.exception_handler(EventLogError)
    async def _on_event_log(request: Request, exc: EventLogError):
        logger.error("event log: %s", exc)
        return _error(request, 503, "ServiceUnavailable", f"the event log cannot take the "
                                                          f"events now: {exc}")

    @app.exception_handler(BatcherClosedError)
    async def _on_closed(request: Request, exc: BatcherClosedError):
        return _error(request, 503, "ServiceUnavailable", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            return _error(request, 422, "ValidationError",
                          "invalid request: body: malformed JSON (the body must be UTF-8 "
                          "JSON)")
        return _error(request, exc.status_code, "HTTPError", str(exc.detail),
                      headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _on_internal(request: Request, exc: Exception):
        logger.exception("internal error on %s", request.url.path)
        return _error(request, 500, "InternalError",
                      f"internal server error ({type(exc).__name__}); see the server log")


def _add_model_routes(app: FastAPI, rt: ServingRuntime, bodies: tuple, security: list) -> None:
    """``/v1/recommend``, ``/v1/similar-items`` and ``/v1/score`` (request bodies ``bodies``)."""
    RecommendRequest, SimilarItemsRequest, ScoreRequest = bodies
    errors = _ERRORS

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=errors,
              dependencies=security, tags=["recommend"])
    async def recommend(body: RecommendRequest) -> Response:
        """Top-k items for known users (``users``) or cold users (``history``)."""
        state = rt.holder.state  # limits on k and list sizes: checked by the schema
        model = state.model
        filters = {}
        for name in ("items", "exclude"):
            ids = getattr(body, name)
            if ids is not None:
                filters[name] = coerce_ids(ids, model.item_vocab_)
        if body.history is not None:
            rt.check_results(len(body.history), body.k)
            if not model.supports_history:
                raise NotSupportedError(f"{state.info['class']} cannot score users from a "
                                        f"history")
            rows = [coerce_ids(h, model.item_vocab_) for h in body.history]
            for h in rows:
                check_known(h, model.item_vocab_)  # unknown item -> 404 for this request only
            labels = list(body.users) if body.users is not None else [None] * len(rows)
            mode = "history"
        else:
            rt.check_results(len(body.users), body.k)
            rows = coerce_ids(body.users, model.user_vocab_)
            check_known(rows, model.user_vocab_)  # unknown user -> 404 for this request only
            labels, mode = rows, "users"
        if filters or rt.batcher is None:
            ids, scores = await rt.call(
                "/v1/recommend", model.recommend, None if mode == "history" else rows,
                k=body.k, exclude_seen=body.exclude_seen,
                history=rows if mode == "history" else None, **filters)
        else:
            ids, scores = await rt.batcher.submit(model, rows, body.k, body.exclude_seen, mode,
                                                  model_key=(state.version, id(model)))
        return _json({"results": _rankings("user", labels, ids, scores), "k": body.k,
                      "model_version": state.version})

    @app.post("/v1/similar-items", response_model=SimilarItemsResponse, responses=errors,
              dependencies=security, tags=["recommend"])
    async def similar_items(body: SimilarItemsRequest) -> Response:
        """Items most similar to each given item (the item itself excluded)."""
        rt.check_results(len(body.items), body.k)
        state = rt.holder.state
        model = state.model
        items = coerce_ids(body.items, model.item_vocab_)
        ids, scores = await rt.call("/v1/similar-items", model.similar_items, items, k=body.k)
        return _json({"results": _rankings("item", items, ids, scores), "k": body.k,
                      "model_version": state.version})

    @app.post("/v1/score", response_model=ScoreResponse, responses=errors,
              dependencies=security, tags=["recommend"])
    async def score(body: ScoreRequest) -> Response:
        """Scores of (user, item) pairs, in order."""
        state = rt.holder.state
        model = state.model
        users = coerce_ids([p.user for p in body.pairs], model.user_vocab_)
        items = coerce_ids([p.item for p in body.pairs], model.item_vocab_)
        s = await rt.call("/v1/score", model.score, users, items)
        s = np.asarray(s, dtype=np.float64)
        out = [float(v) if np.isfinite(v) else None for v in s.tolist()]
        return _json({"scores": out, "model_version": state.version})


def _add_ops_routes(app: FastAPI, rt: ServingRuntime, security: list) -> None:
    """``/v1/model``, ``/v1/admin/reload``, ``/healthz``, ``/readyz`` and ``/metrics``."""
    errors = _ERRORS

    @app.get("/v1/model", response_model=ModelInfo, responses={401: errors[401]},
             dependencies=security, tags=["model"])
    async def model_info() -> Response:
        """The served model: class, params, counts, fit and save dates, version."""
        return _json(rt.holder.state.info)

    @app.post("/v1/admin/reload", response_model=ReloadResponse,
              responses={401: errors[401],
                         403: {"model": ErrorResponse, "description": "Not an admin key"},
                         409: {"model": ErrorResponse,
                               "description": "Reload refused; the old model keeps serving"},
                         422: errors[422]},
              dependencies=security, tags=["admin"])
    async def reload(body: ReloadRequest | None = None) -> Response:
        """Load a model directory (default: the current one) and swap it in atomically.

        In-flight requests finish on the old model. A directory that fails to load is
        refused with 409 and the old model keeps serving.
        """
        old, new = await rt.reload(body.model_dir if body is not None else None)
        return _json({"previous_version": old.version, "model": new.info})

    @app.get("/healthz", response_model=HealthResponse, tags=["ops"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json({"status": "ok", "model_version": rt.holder.state.version})

    @app.get("/readyz", response_model=HealthResponse,
             responses={503: {"model": HealthResponse, "description": "Shutting down"}},
             tags=["ops"])
    async def readyz() -> Response:
        """Readiness: a model is loaded and the server is not shutting down."""
        if rt.draining:
            return _json({"status": "draining", "model_version": rt.holder.state.version}, 503)
        return _json({"status": "ready", "model_version": rt.holder.state.version})

    @app.get("/metrics", dependencies=security, tags=["ops"],
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text format"}, 401: errors[401]})
    async def metrics() -> Response:
        """Prometheus metrics (needs a key when the server has keys)."""
        body, ctype = rt.metrics.render()
        return Response(body, media_type=ctype)


def _add_event_routes(app: FastAPI, rt: ServingRuntime, bodies: tuple, security: list) -> None:
    """``/v1/events`` (live updates through the event log) and ``/v1/explain``."""
    EventsRequest, ExplainRequest = bodies
    errors = _ERRORS

    @app.post("/v1/events", response_model=EventsResponse,
              responses={**errors, 403: {"model": ErrorResponse,
                                         "description": "Not an admin key"},
                         409: {"model": ErrorResponse,
                               "description": "No event log, or a model that cannot fold "
                                              "events in"},
                         503: {"model": ErrorResponse,
                               "description": "The event log cannot be written"}},
              dependencies=security, tags=["events"])
    async def events(body: EventsRequest) -> Response:
        """Log interaction events durably and fold them into the served model.

        When the answer comes, the events are committed to the event log and the next
        ``/v1/recommend`` reflects them. For EASE the model-wide update follows in the
        background (``pending`` counts the groups it has yet to apply); ``sync: true``
        answers only once it is served. An ``event_id`` already logged is a no-op
        (counted in ``duplicates``). Unknown items (models that cannot add items) are
        refused with 404 and nothing of the request is logged; 409 when the server has
        no event log or its model cannot fold events in.
        """
        if rt.events is None:
            raise EventsNotSupportedError(
                "this server has no event log: start it with create_app(..., events_db=PATH) "
                "or the MAASREC_EVENTS_DB environment variable")
        state = rt.holder.state
        checked = rt.events.check(state.model, body.events)
        accepted, dups = await rt.events.post(
            lambda fn, *a: rt.call("/v1/events", fn, *a), checked, sync=body.sync)
        return _json({"accepted": accepted, "duplicates": dups,
                      "model_version": rt.holder.state.version,
                      "pending": rt.events.pending})

    @app.post("/v1/explain", response_model=ExplainResponse,
              responses={**errors, 409: {"model": ErrorResponse,
                                         "description": "The item is in the user's history"}},
              dependencies=security, tags=["recommend"])
    async def explain(body: ExplainRequest) -> Response:
        """Why the model scores ``item`` as it does for a user (``Recommender.explain``).

        The body is ``Explanation.to_dict()``: contributions carry ``position`` (models
        that read the history in order) and ``extras`` when the model gives them, and
        ``details`` holds model-specific extras when there are any.
        """
        state = rt.holder.state
        model = state.model
        item = coerce_ids([body.item], model.item_vocab_)
        check_known(item, model.item_vocab_)
        kwargs = {"n": body.n}
        if body.history is not None:
            hist = coerce_ids(body.history, model.item_vocab_)
            check_known(hist, model.item_vocab_)
            kwargs["history"] = hist
            user = None
        else:
            user = coerce_ids([body.user], model.user_vocab_)
            check_known(user, model.user_vocab_)
            user = user[0]
        try:
            out = await rt.call("/v1/explain", model.explain, user, item[0], **kwargs)
        except DataError as exc:  # the item is in the user's history: a conflict with it
            rt.metrics.errors.labels(endpoint="/v1/explain", error="DataError").inc()
            return _json({"error": "DataError", "detail": str(exc)}, 409)
        return _json(out.to_dict())
