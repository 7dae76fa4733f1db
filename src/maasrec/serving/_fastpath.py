"""The fast path of ``POST /v1/recommend`` for plain known-user requests.

Most recommendation traffic is ``{"users": [...], "k": ..., "exclude_seen": ...}``: known
users, no allow/deny lists, no histories. For such a body the work FastAPI does around
the model call -- routing, dependency solving, pydantic validation of the request
model, the exception middleware -- costs as much CPU as the model itself once requests
are micro-batched. The serving middleware therefore answers these requests itself,
after authentication and the body-size limit, with the same steps as the route
(:func:`maasrec.serving.app.create_app`): the same limits, id conversion, batching and
JSON encoding, so the answer is byte for byte the route's.

Anything else -- another key, a value of another type than the schema's plain form
(e.g. ``k: 3.0``, a boolean id, an over-long string id), a limit exceeded, an unknown
user, a body that is not JSON, a content type other than JSON, or any error while
answering -- goes to the FastAPI route unchanged, which validates it and produces the
documented answer or error (a read-only recommendation may then be computed twice).
"""

from __future__ import annotations

import json
from typing import Any

from .ids import check_known, coerce_ids
from .schemas import MAX_ID_LENGTH

__all__ = ["plain_users_request", "try_fast_recommend"]

_KEYS = frozenset({"users", "k", "exclude_seen"})
_DEFAULT_K = 10


def plain_users_request(data: Any, max_users: int, max_k: int
                        ) -> tuple[list, int, bool] | None:
    """``(users, k, exclude_seen)`` when ``data`` (a decoded JSON body) is a known-user
    request that ``RecommendRequest`` accepts as it is, else None.

    Only the plain form is recognised: a JSON object with ``users`` (1 to ``max_users``
    JSON integers or strings of at most ``MAX_ID_LENGTH`` characters), optionally ``k``
    (a JSON integer from 1 to ``max_k``; default 10) and ``exclude_seen`` (a boolean;
    default true), and no other key.
    """
    if type(data) is not dict or not data.keys() <= _KEYS:
        return None
    users = data.get("users")
    if type(users) is not list or not 0 < len(users) <= max_users:
        return None
    for u in users:
        t = type(u)
        if t is str:
            if len(u) > MAX_ID_LENGTH:
                return None
        elif t is not int:  # bool, float, null, list...: the route decides
            return None
    k = data.get("k", _DEFAULT_K)
    if type(k) is not int or not 1 <= k <= max_k:
        return None
    exclude_seen = data.get("exclude_seen", True)
    if type(exclude_seen) is not bool:
        return None
    return users, k, exclude_seen


def _json_content_type(scope: dict) -> bool:
    """No Content-Type, or ``application/json`` (with parameters): what FastAPI decodes
    as JSON too (other ``+json`` types go to the route)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":  # the first one, as Starlette reads it
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return True


async def _answer(rt, users: list, k: int, exclude_seen: bool) -> bytes:
    # the steps of the route in app.py for known users without filters, in its order;
    # the JSON body the route's response carries
    from .app import _json_bytes, _rankings

    state = rt.holder.state
    model = state.model
    rt.check_results(len(users), k)
    rows = coerce_ids(users, model.user_vocab_)
    check_known(rows, model.user_vocab_)
    if rt.batcher is None:
        ids, scores = await rt.call("/v1/recommend", model.recommend, rows, k=k,
                                    exclude_seen=exclude_seen, history=None)
    else:
        ids, scores = await rt.batcher.submit(model, rows, k, exclude_seen, "users",
                                              model_key=(state.version, id(model)))
    return _json_bytes({"results": _rankings("user", rows, ids, scores), "k": k,
                        "model_version": state.version})


async def _send_json(send, body: bytes) -> None:
    """A 200 JSON answer as the route's ``Response`` sends it (the same headers, in the
    same order), without building one."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode("latin-1")),
                            (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def try_fast_recommend(rt, scope: dict, receive, send):
    """Answer a ``POST /v1/recommend`` here when its body is a plain known-user request.

    Parameters
    ----------
    rt : ServingRuntime
    scope : dict
        The ASGI scope (authentication and the body-size limit already passed).
    receive : callable
        Yields the whole body in one ``http.request`` message (the middleware's replay).
    send : callable

    Returns
    -------
    callable or None
        None when the request was answered; else the ``receive`` to hand to the app
        (it replays the body).
    """
    message = await receive()
    if message.get("type") == "http.request" and _json_content_type(scope):
        try:
            plain = plain_users_request(json.loads(message.get("body", b"")),
                                        rt.max_users, rt.max_k)
            body = None if plain is None else await _answer(rt, *plain)
        except Exception:  # the route gives the documented error
            body = None
        if body is not None:
            await _send_json(send, body)
            return None
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return message
        return await receive()

    return replay
