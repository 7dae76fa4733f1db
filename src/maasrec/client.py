"""A Python client for ``maasrec serve``, using only the standard library.

>>> from maasrec.client import Client
>>> client = Client("http://127.0.0.1:8000", api_key="...")      # doctest: +SKIP
>>> top = client.recommend([1, 2], k=10)                          # doctest: +SKIP
>>> top[0].items, top[0].scores                                   # doctest: +SKIP

Why no HTTP library: the client is meant to be embedded in other services, where every
extra dependency is a possible version conflict; :mod:`http.client` gives persistent
(keep-alive) connections, timeouts and TLS, which is all a JSON API needs. The client
keeps one connection per thread, so one :class:`Client` can be shared by threads.

Errors mirror the library's, so code written against a local model handles a remote one
the same way:

==========================  ==================================================
HTTP status                 raised
==========================  ==================================================
401, 403                    :class:`AuthenticationError`
404 (unknown id)            :class:`maasrec.UnknownIdError` (``.ids``, ``.kind``)
400, 413, 422               :class:`maasrec.DataError` (or :class:`NotSupportedError`
                            when the model cannot do the operation)
409 (reload refused)        :class:`maasrec.ModelFormatError`
5xx, connection errors      retried with exponential backoff, then :class:`ServiceError`
==========================  ==================================================

Every exception raised for an HTTP answer has a ``status`` attribute.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .exceptions import DataError, MaasrecError, ModelFormatError, UnknownIdError

__all__ = ["AuthenticationError", "Client", "NotSupportedError", "Ranking", "ServiceError"]

logger = logging.getLogger(__name__)

#: Environment variable read when ``Client(api_key=None)``.
API_KEY_ENV = "MAASREC_API_KEY"

_RETRY_STATUS = frozenset({500, 502, 503, 504})
_NETWORK_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError,
                   OSError)


class ServiceError(MaasrecError):
    """The service failed or could not be reached (after the retries).

    Parameters
    ----------
    message : str
    status : int, optional
        HTTP status (None when no answer was received).
    body : object, optional
        The decoded error body.
    """

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class AuthenticationError(ServiceError):
    """401 (missing or invalid API key) or 403 (the key may not use this endpoint)."""


class NotSupportedError(ServiceError, NotImplementedError):
    """The served model cannot do this (e.g. ``similar_items`` on a popularity model)."""


@dataclass(frozen=True)
class Ranking:
    """Items recommended for one user (or similar to one item), best first.

    Attributes
    ----------
    id : object
        The user id (``recommend``; None for an unnamed history) or the item id
        (``similar_items``).
    items : list
        Item ids, best first. May be shorter than ``k``: the server drops padding.
    scores : list of float
        Their scores (higher is better).
    """

    id: Any
    items: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


def _is_scalar(x: Any) -> bool:
    if isinstance(x, (str, bytes, int, float)):
        return True
    return getattr(x, "ndim", None) == 0


def _plain(x: Any) -> Any:
    """JSON-native version of ids given as numpy arrays/scalars, tuples, sets."""
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if hasattr(x, "tolist"):  # numpy array or scalar
        return _plain(x.tolist())
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)) or hasattr(x, "__iter__"):
        return [_plain(v) for v in x]
    return x


def _tls_context(scheme: str, context: ssl.SSLContext | None, ca_file, verify: bool):
    """The TLS context of an ``https`` client (None: the system's defaults)."""
    if not isinstance(verify, bool):
        raise DataError(f"verify must be True or False, got {verify!r}")
    if ca_file is None and verify:
        return context
    if scheme != "https":
        raise DataError(f"ca_file/verify apply to https URLs; this one is {scheme}://")
    if context is not None:
        raise DataError("pass either ssl_context or ca_file/verify, not both")
    if not verify:
        logger.warning("TLS certificate verification is off: the server is not authenticated")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    path = os.fspath(ca_file)
    if not os.path.isfile(path):
        raise DataError(f"ca_file {path!r} does not exist or is not a file")
    try:
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise DataError(f"ca_file {path!r} is not a readable PEM certificate file: {exc}") from None


class Client:
    """Client of a maasrec HTTP service.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``"http://127.0.0.1:8000"`` (a path prefix is kept).
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>``. Default: ``$MAASREC_API_KEY`` if set.
    timeout : float, default 10.0
        Seconds for connecting and for each read.
    retries : int, default 3
        Extra attempts after a connection error, a timeout or a 500/502/503/504 answer
        (all endpoints except ``reload`` are read-only, hence safe to retry).
    backoff : float, default 0.1
        First retry delay in seconds; doubles each attempt (with jitter), capped by
        ``max_backoff``. A ``Retry-After`` header is honoured up to ``max_backoff``.
    max_backoff : float, default 5.0
    headers : dict, optional
        Extra headers for every request.
    ssl_context : ssl.SSLContext, optional
        For ``https`` URLs (default: the system's trusted certificates, or ``ca_file``).
    ca_file : path, optional
        PEM file of the certificate authorities to trust for an ``https`` URL (e.g. the
        server's self-signed certificate), instead of the system's.
    verify : bool, default True
        Check the server's certificate and host name. ``False`` accepts any certificate
        (the traffic is encrypted but the server is not authenticated): for tests only.

    Examples
    --------
    >>> with Client("http://127.0.0.1:8000") as c:   # doctest: +SKIP
    ...     c.recommend(1, k=5).items
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.1, max_backoff: float = 5.0,
                 headers: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 ca_file: str | os.PathLike | None = None, verify: bool = True):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DataError(f"url must look like http://host:port, got {url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DataError(f"retries must be a non-negative integer, got {retries!r}")
        if not timeout or timeout <= 0:
            raise DataError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._ssl = _tls_context(parts.scheme, ssl_context, ca_file, verify)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {"Accept": "application/json", "User-Agent": "maasrec-client",
                         **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- connection handling ------------------------------------------------
    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        if self._scheme == "https":
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._drop_connection()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send_once(self, method: str, path: str, body: bytes | None,
                   headers: dict) -> tuple[int, dict, bytes]:
        for fresh_try in (False, True):
            conn, reused = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except _NETWORK_ERRORS as exc:
                self._drop_connection()
                # a kept-alive connection the server closed meanwhile: reconnect at once
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                         ConnectionResetError))
                if reused and stale and not fresh_try:
                    continue
                raise
            if resp.getheader("connection", "").lower() == "close":
                self._drop_connection()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, path: str, payload: Any = None, *,
                retries: int | None = None) -> Any:
        """Send one request, with retries, and decode the JSON answer.

        Parameters
        ----------
        method : str
        path : str
            E.g. ``"/v1/recommend"``.
        payload : object, optional
            JSON body.
        retries : int, optional
            Override the client's retries.

        Returns
        -------
        object
            The decoded JSON body (or the text for non-JSON answers).

        Raises
        ------
        AuthenticationError, UnknownIdError, DataError, ModelFormatError,
        NotSupportedError, ServiceError
        """
        headers = dict(self._headers)
        body = None
        if payload is not None:
            body = json.dumps(_plain(payload), separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        attempts = 1 + (self.retries if retries is None else retries)
        last: str = ""
        for attempt in range(attempts):
            delay = None
            try:
                status, resp_headers, data = self._send_once(method, path, body, headers)
            except ssl.SSLCertVerificationError as exc:  # retrying cannot help
                raise ServiceError(f"{method} {self.url}{path}: TLS certificate not trusted: "
                                   f"{exc}") from exc
            except _NETWORK_ERRORS as exc:
                last = f"{type(exc).__name__}: {exc}"
                status = None
            else:
                if status < 400:
                    return _decode(data, resp_headers)
                if status not in _RETRY_STATUS:
                    _raise_for(status, _decode(data, resp_headers))
                last = f"HTTP {status}: {_detail(_decode(data, resp_headers))}"
                delay = _retry_after(resp_headers.get("retry-after"))
            if attempt + 1 < attempts:
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
                if delay is not None:
                    wait = max(wait, min(delay, self.max_backoff))
                logger.info("%s %s failed (%s); retry %d/%d in %.2fs", method, path, last,
                            attempt + 1, attempts - 1, wait)
                time.sleep(wait)
        raise ServiceError(f"{method} {self.url}{path} failed after {attempts} attempt(s): "
                           f"{last}", status=status)

    # -- API ------------------------------------------------------------------
    def recommend(self, users: Any = None, k: int = 10, *, exclude_seen: bool = True,
                  items: Sequence | None = None, exclude: Sequence | None = None,
                  history: Sequence | None = None) -> Ranking | list[Ranking]:
        """Top-k items for users, like :meth:`maasrec.Recommender.recommend`.

        Parameters
        ----------
        users : id or sequence of ids, optional
            Known users. A single id returns a single :class:`Ranking`.
        k : int, default 10
        exclude_seen : bool, default True
        items : sequence of ids, optional
            Allow-list (for all users of the request).
        exclude : sequence of ids, optional
            Deny-list (for all users of the request).
        history : sequence of ids, or one sequence per user, optional
            Cold users: their interactions. One flat list is one user.

        Returns
        -------
        Ranking or list of Ranking
            One per user; lists may be shorter than ``k`` (no padding).
        """
        single, labels = False, None
        payload: dict[str, Any] = {"k": k, "exclude_seen": exclude_seen}
        if history is not None:
            hist = _plain(history)
            if not isinstance(hist, list):
                raise DataError("history must be a sequence of item ids or one per user")
            if not hist or not all(isinstance(h, list) for h in hist):
                hist, single = [hist], (users is None or _is_scalar(users))
            payload["history"] = hist
        if users is not None:
            if _is_scalar(users):
                users, single = [users], True
            if history is None:
                payload["users"] = _plain(users)
            else:  # labels of the histories' results, kept here (the server takes one)
                labels = list(_plain(users))
                if len(labels) != len(payload["history"]):
                    raise DataError(f"{len(labels)} users but {len(payload['history'])} "
                                    f"histories: give one label per history")
        if items is not None:
            payload["items"] = _plain(items)
        if exclude is not None:
            payload["exclude"] = _plain(exclude)
        out = self.request("POST", "/v1/recommend", payload)
        res = [Ranking(r.get("user") if labels is None else labels[i], r["items"],
                       r["scores"]) for i, r in enumerate(out["results"])]
        return res[0] if single else res

    def similar_items(self, items: Any, k: int = 10) -> Ranking | list[Ranking]:
        """Items most similar to the given items (the item itself excluded).

        Parameters
        ----------
        items : id or sequence of ids
        k : int, default 10

        Returns
        -------
        Ranking or list of Ranking
        """
        single = _is_scalar(items)
        out = self.request("POST", "/v1/similar-items",
                           {"items": [items] if single else items, "k": k})
        res = [Ranking(r["item"], r["items"], r["scores"]) for r in out["results"]]
        return res[0] if single else res

    def score(self, users: Any, items: Any) -> float | list[float | None] | None:
        """Scores of (user, item) pairs.

        Parameters
        ----------
        users : id or sequence of ids
        items : id or sequence of ids, same length

        Returns
        -------
        float or list of float
            One score per pair (None where the model gave a non-finite score).
        """
        single = _is_scalar(users) and _is_scalar(items)
        us = [users] if _is_scalar(users) else users
        its = [items] if _is_scalar(items) else items
        us, its = _plain(us), _plain(its)
        if not isinstance(us, list) or not isinstance(its, list) or len(us) != len(its):
            raise DataError(f"users and items must be two ids or two sequences of the same "
                            f"length, got {users!r} and {items!r}")
        pairs = [{"user": u, "item": i} for u, i in zip(us, its)]
        out = self.request("POST", "/v1/score", {"pairs": pairs})["scores"]
        return out[0] if single else out

    def events(self, events: Any, *, sync: bool = False) -> dict:
        """Post interaction events to the server's event log (needs an admin key).

        The server commits them to its log and folds them into the users' histories
        before it answers: the next :meth:`recommend` reflects them. For EASE the
        model-wide update follows in the background (``pending`` in the answer).
        Retrying is safe: an ``event_id`` the server already has is a no-op (counted in
        ``duplicates``).

        Parameters
        ----------
        events : sequence of dict
            Each ``{"user": id, "item": id}`` with optional ``"value"`` (float),
            ``"time"`` (float) and ``"event_id"`` (str; a random UUID when absent, kept
            across this call's retries).
        sync : bool, default False
            Return only once the server's model-wide update including these events is
            served (the model a restart would replay to).

        Returns
        -------
        dict
            ``{"accepted": n, "duplicates": n, "model_version": v, "pending": n}``.

        Raises
        ------
        UnknownIdError
            An item the model does not know (nothing of the call is logged).
        DataError
            Malformed events, more than the server accepts per request.
        NotSupportedError
            The server has no event log, or its model cannot fold events in.
        """
        import uuid

        if isinstance(events, dict) or _is_scalar(events):
            raise DataError(f"events must be a sequence of event dicts, got {events!r}")
        body = []
        for e in events:
            if not isinstance(e, dict) or "user" not in e or "item" not in e:
                raise DataError(f"an event is a dict with 'user' and 'item' (and optional "
                                f"'value', 'time', 'event_id'), got {e!r}")
            e = {k: _plain(v) for k, v in e.items()}
            e.setdefault("event_id", uuid.uuid4().hex)
            body.append(e)
        if not body:
            raise DataError("events is empty; give at least one event")
        if not isinstance(sync, bool):
            raise DataError(f"sync must be True or False, got {sync!r}")
        payload: dict[str, Any] = {"events": body}
        if sync:
            payload["sync"] = True
        return self.request("POST", "/v1/events", payload)

    def add_items(self, items: Any) -> dict:
        """Announce new items to the server (needs an admin key): recommendable at once.

        The server stores them in its event log, then adds them to the served model with
        its ``add_items`` (HybridRecommender, SequentialRecommender, TextEASE); they are
        added again after a restart or reload. Retrying is safe: items the model already
        knows are left unchanged and listed in ``known``.

        Parameters
        ----------
        items : sequence of dict
            Each ``{"item": id}`` with ``"text"`` (str) and/or ``"features"`` (a dict of
            name -> a label, a list of labels or a number).

        Returns
        -------
        dict
            ``{"added": [ids], "known": [ids], "n_items": n, "model_version": v}``.

        Raises
        ------
        DataError
            Malformed items, a new item without the text or features the model needs,
            more items than the server accepts per request.
        NotSupportedError
            The server has no event log, or its model cannot add items.
        """
        if isinstance(items, dict) or _is_scalar(items):
            raise DataError(f"items must be a sequence of item dicts, got {items!r}")
        body = []
        for it in items:
            if not isinstance(it, dict) or "item" not in it:
                raise DataError(f"an item is a dict with 'item' (and 'text' and/or "
                                f"'features'), got {it!r}")
            body.append({k: _plain(v) for k, v in it.items()})
        if not body:
            raise DataError("items is empty; give at least one item")
        return self.request("POST", "/v1/items", {"items": body})

    def explain(self, user: Any = None, item: Any = None, *, history: Any = None,
                n: int = 5) -> dict:
        """Why the served model scores ``item`` as it does for a user.

        Parameters
        ----------
        user : id, optional
            A user the model knows (or give ``history``).
        item : id
        history : sequence of ids, optional
            The history of a user the model does not know.
        n : int, default 5

        Returns
        -------
        dict
            :meth:`maasrec.explain.Explanation.to_dict`: ``item``, ``score``,
            ``contributions`` (``item``, ``weight``, ``title``, and ``position`` and
            ``extras`` where the model gives them), ``method``, ``reason``, ``baseline``,
            ``user``, ``model``, ``n_history``, ``modalities``, ``note`` and ``details``
            (when not empty), as the server sent them.
        """
        payload: dict[str, Any] = {"item": _plain(item), "n": n}
        if history is not None:
            payload["history"] = _plain(list(history))
        if user is not None:
            payload["user"] = _plain(user)
        return self.request("POST", "/v1/explain", payload)

    def model_info(self) -> dict:
        """What the server serves: class, params, counts, dates, ``model_version``.

        Returns
        -------
        dict
        """
        return self.request("GET", "/v1/model")

    def health(self) -> dict:
        """Liveness (``/healthz``).

        Returns
        -------
        dict
            ``{"status": "ok", "model_version": n}``.
        """
        return self.request("GET", "/healthz")

    def ready(self) -> bool:
        """Whether the server is ready (``/readyz`` answers 200), without retrying.

        Returns
        -------
        bool
        """
        try:
            self.request("GET", "/readyz", retries=0)
        except ServiceError:
            return False
        return True

    def reload(self, model_dir: str | None = None) -> dict:
        """Make the server load a model directory (needs an admin key); not retried.

        Parameters
        ----------
        model_dir : str, optional
            Relative to the server's model root (e.g. a name ``model_info()`` shows).
            A directory **on the server**; default: reload the current one.

        Returns
        -------
        dict
            ``{"previous_version": n, "model": {...}}``.

        Raises
        ------
        ModelFormatError
            The server refused the directory and keeps serving the old model.
        """
        return self.request("POST", "/v1/admin/reload",
                            {"model_dir": model_dir} if model_dir is not None else {},
                            retries=0)

    def metrics(self) -> str:
        """The Prometheus metrics text.

        Returns
        -------
        str
        """
        return self.request("GET", "/metrics")


def _decode(data: bytes, headers: dict) -> Any:
    text = data.decode("utf-8", "replace")
    if "json" in headers.get("content-type", ""):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("detail", body))
    return str(body)[:500]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _raise_for(status: int, body: Any) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    detail = _detail(body)
    exc: Exception
    if status in (401, 403):
        exc = AuthenticationError(detail, status=status, body=body)
    elif status == 404 and error == "UnknownIdError":
        exc = UnknownIdError(detail, ids=body.get("ids") or [], kind=body.get("kind"))
    elif error in ("NotSupportedError",):
        exc = NotSupportedError(detail, status=status, body=body)
    elif status in (400, 413, 422):
        exc = DataError(detail)
    elif status == 409 and error == "DataError":
        exc = DataError(detail)
    elif status == 409:
        exc = ModelFormatError(detail)
    else:
        exc = ServiceError(f"HTTP {status}: {detail}", status=status, body=body)
    exc.status = status  # type: ignore[attr-defined]
    raise exc
