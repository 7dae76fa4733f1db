"""New items in real time: ``POST /v1/items`` (``add_items`` through the API).

Items announced with their text and attributes are made recommendable at once by the
served model's ``add_items`` (:class:`~maasrec.neural.HybridRecommender`,
:class:`~maasrec.neural.SequentialRecommender`, :class:`~maasrec.models.TextEASE`).

Durability follows the event log (:mod:`maasrec.serving.events`): the items are kept in
the same SQLite database (table ``items``, one row per item id, UNIQUE), committed
before the served model changes. The new model is built on a private copy first (so
items the model refuses are never logged), then the rows are committed, then the copy
is swapped in. On start and after every reload the stored items are added to the
loaded model *before* the events are replayed, since an event may name a new item.

Items the served model already knows are reported as ``known`` and left unchanged, so
posting the same body twice changes nothing.
"""

# No ``from __future__ import annotations``: the route's body type is built per app
# (with that app's limit), which FastAPI must see as an object.
import asyncio
import copy
import dataclasses
import json
import logging
import math
import sqlite3
import warnings
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from ..data.features import ItemFeatures
from ..data.vocab import IdVocab
from ..exceptions import DataError, MaasrecError, UnknownIdError
from ..online import apply_deferred, deferred_calls
from .events import EventLog, EventLogError, EventsNotSupportedError
from .ids import coerce_ids, to_json_ids
from .schemas import MAX_ID_LENGTH, ErrorResponse, Id, OutId, _at_most

__all__ = ["ItemLog", "ItemsNotSupportedError", "NewItem", "item_features",
           "replay_items_onto"]

logger = logging.getLogger(__name__)

#: Longest accepted item text (characters; text encoders read the first ~512 tokens).
MAX_TEXT_LENGTH = 10_000
#: Features per item, and labels per multi-valued feature, at most.
MAX_FEATURES = 64
MAX_LABELS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL UNIQUE,
    text TEXT,
    features TEXT NOT NULL
);
"""


class ItemsNotSupportedError(EventsNotSupportedError):
    """The served model cannot add items, or the server has no event log (409)."""


@dataclasses.dataclass(frozen=True)
class NewItem:
    """One announced item: its id (the model's kind), text and features."""

    item: Any
    text: str | None = None
    features: dict = dataclasses.field(default_factory=dict)


def supports_add_items(model) -> bool:
    """Whether ``model`` can add unseen items from their text/features (``add_items``)."""
    return callable(getattr(model, "add_items", None))


def _content(model) -> set[str] | None:
    """What ``model`` builds new items from ("text", "features"), None when unknown."""
    mods = getattr(model, "modalities_", None)
    if isinstance(mods, dict) and "item" in mods:  # HybridRecommender
        return {m for m in mods["item"] if m in ("text", "features")}
    if hasattr(model, "item_text") and hasattr(model, "network_"):  # SequentialRecommender
        out = set()
        if getattr(model, "item_text", "none") != "none":
            out.add("text")
        if getattr(model, "item_side", "none") == "fuse":
            out.add("features")
        return out
    if hasattr(model, "side_") and hasattr(model, "text_encoder"):  # TextEASE
        return {"text"}
    return None


def _declared_kinds(model) -> dict[str, str]:
    """Feature name -> "categorical"/"multi_hot"/"numeric" as the model was fitted."""
    encs = getattr(getattr(model, "item_tower_", None), "encoders", None)
    if encs is None or "features" not in encs:
        return {}
    enc = encs["features"]
    out = {k: "numeric" for k in getattr(enc, "numeric", [])}
    out.update({k: "multi_hot" for k in getattr(enc, "multi_hot", {})})
    out.update({k: "categorical" for k in getattr(enc, "categorical", {})})
    return out


def item_features(items: Sequence[NewItem], model=None) -> ItemFeatures:
    """The :class:`~maasrec.data.ItemFeatures` of ``items`` (one row each).

    A feature's kind is the one the model was fitted with where it says so, else its
    JSON type: a string is a categorical label, a list of strings a set of labels
    (multi-hot), a number a numeric value.

    Raises
    ------
    DataError
        A feature whose values mix kinds (e.g. a number and a string).
    """
    ids = [it.item for it in items]
    if ids and all(isinstance(x, int) for x in ids):
        arr = np.array(ids, dtype=np.int64)
    else:
        arr = np.empty(len(ids), dtype=object)
        arr[:] = ids
    declared = _declared_kinds(model) if model is not None else {}
    names = sorted({k for it in items for k in it.features})
    cat, multi, num = {}, {}, {}
    for name in names:
        values = [it.features.get(name) for it in items]
        given = [v for v in values if v is not None]
        kind = declared.get(name)
        if kind is None:
            if all(isinstance(v, int | float) for v in given):
                kind = "numeric"
            elif any(isinstance(v, list) for v in given):
                kind = "multi_hot"
            else:
                kind = "categorical"
        if kind == "numeric":
            bad = [v for v in given if not isinstance(v, int | float)]
            if bad:
                raise DataError(f"feature {name!r} is numeric but got {bad[0]!r}")
            num[name] = [math.nan if v is None else float(v) for v in values]
        elif kind == "multi_hot":
            bad = [v for v in given if not isinstance(v, str | list)]
            if bad:
                raise DataError(f"feature {name!r} takes labels (a string or a list of "
                                f"strings) but got {bad[0]!r}")
            multi[name] = [[] if v is None else ([v] if isinstance(v, str) else list(v))
                           for v in values]
        else:
            bad = [v for v in given if not isinstance(v, str)]
            if bad:
                raise DataError(f"feature {name!r} takes one label (a string) but got "
                                f"{bad[0]!r}")
            cat[name] = values
    text = None
    if any(it.text is not None for it in items):
        text = [it.text for it in items]
    return ItemFeatures(IdVocab(arr, name="item"), text=text, categorical=cat,
                        multi_hot=multi, numeric=num)


def _dump_id(x: Any) -> str:
    return json.dumps(x.item() if hasattr(x, "item") else x)


class ItemLog:
    """The ``items`` table of an :class:`~maasrec.serving.events.EventLog` database.

    Shares the log's connection and lock (one writer); the table is created when
    absent (older databases gain it; the events table is untouched).
    """

    def __init__(self, log: EventLog):
        self.log = log
        self.path = log.path
        with log._lock:
            try:
                log._conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise EventLogError(f"cannot use the event log {self.path!r} for items: "
                                    f"{exc}") from exc

    def __len__(self) -> int:
        with self.log._lock:
            return int(self.log._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def append(self, items: Sequence[NewItem]) -> list[bool]:
        """Store items in one committed transaction; False for an id already stored."""
        rows = [(_dump_id(it.item), it.text, json.dumps(it.features, allow_nan=False))
                for it in items]
        out = []
        conn = self.log._conn
        with self.log._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                for r in rows:
                    cur = conn.execute("INSERT OR IGNORE INTO items (item_id, text, features) "
                                       "VALUES (?, ?, ?)", r)
                    out.append(cur.rowcount == 1)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise EventLogError(f"cannot write the items to the event log "
                                    f"{self.path!r}: {exc}") from exc
        return out

    def read(self) -> list[NewItem]:
        """Every stored item, in the order they were announced.

        Raises
        ------
        EventLogError
            A record that cannot be read (naming the file and the record's ``seq``).
        """
        with self.log._lock:
            try:
                rows = self.log._conn.execute(
                    "SELECT seq, item_id, text, features FROM items ORDER BY seq").fetchall()
            except sqlite3.Error as exc:
                raise EventLogError(f"cannot read the items of the event log "
                                    f"{self.path!r}: {exc}") from exc
        out = []
        for seq, item, text, features in rows:
            try:
                i = json.loads(item)
                if isinstance(i, bool) or not isinstance(i, int | str | float):
                    raise ValueError(f"id {i!r} is not a JSON integer, string or number")
                if text is not None and not isinstance(text, str):
                    raise ValueError(f"text {text!r} is not text")
                f = json.loads(features)
                if not isinstance(f, dict):
                    raise ValueError(f"features {f!r} are not a JSON object")
            except (ValueError, TypeError) as exc:
                raise EventLogError(
                    f"the event log {self.path!r} holds a bad item record (seq {seq}, item "
                    f"{item!r}): {exc}; the service will not start on a log it cannot read "
                    f"in full (repair or move the file)") from exc
            out.append(NewItem(i, text, f))
        return out


def _add(model, items: Sequence[NewItem]):
    """A deep copy of ``model`` (pending deferred updates applied) with ``items`` added."""
    out = copy.deepcopy(model)  # add_items grows arrays and networks in place
    if deferred_calls(out):
        apply_deferred(out)
    feats = item_features(items, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the route checks content itself
        out.add_items(feats)
    return out


def replay_items_onto(log: EventLog, model):
    """``model`` with every stored item added (a copy), or ``model`` when none is new.

    Raises
    ------
    EventLogError
        A record cannot be read.
    """
    items = ItemLog(log).read()
    if not items:
        return model
    if not supports_add_items(model):
        logger.warning("the served %s cannot add items (no add_items): the %d items stored "
                       "in %s are not added (events naming them are skipped)",
                       type(model).__name__, len(items), log.path)
        return model
    try:
        ids = coerce_ids([it.item for it in items], model.item_vocab_)
    except UnknownIdError as exc:
        logger.warning("stored items of %s cannot be ids of the served model: %s", log.path, exc)
        return model
    items = [dataclasses.replace(it, item=i) for it, i in zip(items, ids, strict=True)]
    new = [it for it in items if it.item not in model.item_vocab_]
    if not new:
        return model
    try:
        out = _add(model, new)
    except MaasrecError as exc:
        logger.warning("the served %s cannot add the %d items stored in %s (%s); they stay "
                       "in the log but are not added to this model", type(model).__name__,
                       len(new), log.path, exc)
        return model
    logger.info("added %d stored items from %s", len(new), log.path)
    return out


def check_items(model, raw: Sequence[Any]) -> tuple[list[NewItem], list]:
    """Validate request items against ``model``: (new items, known ids).

    Raises
    ------
    ItemsNotSupportedError, DataError
    """
    if not supports_add_items(model):
        raise ItemsNotSupportedError(
            f"the served {type(model).__name__} cannot add items (no add_items); serve a "
            f"HybridRecommender, SequentialRecommender or TextEASE fitted with item text "
            f"or features")
    try:
        ids = coerce_ids([it.item for it in raw], model.item_vocab_)
    except UnknownIdError as exc:
        raise DataError(f"item ids {to_json_ids(exc.ids)[:5]} cannot be ids of this model "
                        f"(it has {model.item_vocab_.id_kind} item ids)") from None
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise DataError(f"item ids given more than once in the request: {dups[:5]}")
    content = _content(model)
    new, known = [], []
    for it, i in zip(raw, ids, strict=True):
        if i in model.item_vocab_:
            known.append(i)
            continue
        has = {"text"} if it.text is not None and it.text.strip() else set()
        if it.features:
            has.add("features")
        usable = has if content is None else has & content
        if not usable:
            needs = " or ".join(sorted(content)) if content else "text or features"
            raise DataError(f"new item {i!r} has no {needs}: the served "
                            f"{type(model).__name__} builds new items from its {needs}")
        new.append(NewItem(i, it.text, dict(it.features or {})))
    return new, known


class LiveItems:
    """How ``POST /v1/items`` reaches the log and the served model of one app.

    Uses the locks of the app's :class:`~maasrec.serving.events.LiveEvents`: no event
    group is logged or folded in while items are added.
    """

    def __init__(self, events):
        self.events = events
        self.log = ItemLog(events.log)

    async def post(self, run, raw: Sequence[Any]) -> tuple[list, list]:
        """Add the new items of ``raw``: (added ids, known ids)."""
        from .events import _swap_model

        ev = self.events
        async with ev._lock, ev._apply_lock:
            model = ev.holder.state.model
            new, known = check_items(model, raw)
            if not new:
                return [], known
            out = await run(_add, model, new)  # a private copy: nothing served yet
            flags = await asyncio.to_thread(self.log.append, new)
            _swap_model(ev.holder, out)
        await ev._notify()
        known += [it.item for it, f in zip(new, flags, strict=True) if not f]
        return [it.item for it, f in zip(new, flags, strict=True) if f], known


def items_models(max_items: int) -> type[BaseModel]:
    """The body of ``POST /v1/items`` (at most ``max_items`` items)."""
    Label = Annotated[StrictStr, Field(max_length=MAX_ID_LENGTH)]
    Value = (Annotated[float, Field(allow_inf_nan=False)] | Label
             | Annotated[list[Label], Field(max_length=MAX_LABELS)])

    class ItemIn(BaseModel):
        """One new item: its id, text and/or features."""

        model_config = ConfigDict(strict=True, extra="forbid")

        item: Id
        text: Annotated[StrictStr, Field(max_length=MAX_TEXT_LENGTH)] | None = Field(
            None, description="The item's text (title, description...)")
        features: Annotated[dict[Annotated[StrictStr, Field(max_length=128)], Value],
                            Field(max_length=MAX_FEATURES)] | None = Field(
            None, description="Attributes: a string (one label), a list of strings "
                              "(labels, e.g. genres) or a number, by feature name")

    class ItemsRequest(BaseModel):
        """Body of ``POST /v1/items``."""

        model_config = ConfigDict(strict=True, extra="forbid")

        items: Annotated[list[ItemIn], Field(min_length=1,
                                             json_schema_extra={"maxItems": max_items}),
                         _at_most(max_items, "items", "max_users")]

    return ItemsRequest


class ItemsResponse(BaseModel):
    """Body of a successful ``POST /v1/items``."""

    added: list[OutId] = Field(description="Items added (stored and recommendable now)")
    known: list[OutId] = Field(description="Items the model already knew (left unchanged)")
    n_items: int = Field(description="Items in the served catalogue now")
    model_version: int


def add_item_routes(app, rt, security: list, errors: dict, max_items: int) -> None:
    """Register ``POST /v1/items`` on ``app`` (runtime ``rt``)."""
    from fastapi.responses import Response

    ItemsRequest = items_models(max_items)

    @app.post("/v1/items", response_model=ItemsResponse,
              responses={**errors, 403: {"model": ErrorResponse,
                                         "description": "Not an admin key"},
                         409: {"model": ErrorResponse,
                               "description": "No event log, or a model that cannot add "
                                              "items"},
                         503: {"model": ErrorResponse,
                               "description": "The event log cannot be written"}},
              dependencies=security, tags=["events"])
    async def items(body: ItemsRequest) -> Response:  # type: ignore[valid-type]
        """Announce new items (text and/or features): recommendable in the next request.

        The items are stored in the event log before the served model changes and are
        added again on restart and after a reload (before the events). Items the model
        already knows are listed in ``known`` and left unchanged. 409 when the server
        has no event log or its model has no ``add_items``.
        """
        if rt.events is None:
            raise ItemsNotSupportedError(
                "this server has no event log: start it with create_app(..., events_db=PATH) "
                "or the MAASREC_EVENTS_DB environment variable")
        live = getattr(rt, "items", None)
        if live is None or live.events is not rt.events:
            live = rt.items = LiveItems(rt.events)
        added, known = await live.post(
            lambda fn, *a: rt.call("/v1/items", fn, *a), body.items)
        state = rt.holder.state
        return Response(json.dumps({"added": to_json_ids(added), "known": to_json_ids(known),
                                    "n_items": len(state.model.item_vocab_),
                                    "model_version": state.version}),
                        media_type="application/json")
