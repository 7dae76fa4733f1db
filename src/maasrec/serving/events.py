"""The durable event log of the real-time service (``POST /v1/events``).

Events (user, item, optional value and time, a client-chosen ``event_id``) are appended
to a SQLite database in WAL mode with ``synchronous=FULL``: an event is acknowledged
only after its transaction is committed to disk, so a killed server loses no
acknowledged event. ``event_id`` is UNIQUE: posting the same event again is a no-op
(reported as a duplicate), which makes client retries safe.

On start (and after every hot reload) the whole log is replayed onto the loaded model
with :meth:`~maasrec.Recommender.partial_fit` in one call; since the classical models'
fold-in depends only on each user's history (not on how events were batched), the
served model after a restart is the one that served before it.

Fast path (EASE, TextEASE: :func:`maasrec.online.supports_deferred`): a group of events
is acknowledged once it is logged and merged into the served histories (``seen_``), which
is all a user's next recommendation reads (scores ``x_u B``); the model-wide update (the
Woodbury update of EASE's inverse Gram matrix) is deferred and applied in the background,
batched over every group that came meanwhile (:func:`maasrec.online.apply_deferred`), and
swapped in. The model it reaches is the exact ``partial_fit`` of the same events, the one a
restart replays. A poster that needs that model before the answer says ``sync=True``.

A record that cannot be read back (a damaged database, a row whose ids are not JSON)
stops the start with :class:`EventLogError` naming the file and the record: events are
never dropped silently.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError, MaasrecError
from ..online import (
    apply_deferred,
    deferred_calls,
    partial_fit,
    rebase_deferred,
    supports_partial_fit,
)
from .ids import check_known, coerce_ids

__all__ = ["EVENTS_DB_ENV", "Event", "EventLog", "EventLogError", "LiveEvents", "events_frame"]

logger = logging.getLogger(__name__)

#: Environment variable naming the event database when ``create_app`` gets no ``events_db``.
EVENTS_DB_ENV = "MAASREC_EVENTS_DB"

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    value REAL,
    time REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class EventLogError(MaasrecError):
    """The event database cannot be opened, or holds a record that cannot be read."""


@dataclass(frozen=True)
class Event:
    """One interaction event, ids as the model's raw ids."""

    event_id: str
    user: Any
    item: Any
    value: float | None = None
    time: float | None = None


def _dump_id(x: Any) -> str:
    return json.dumps(x.item() if hasattr(x, "item") else x)


class EventLog:
    """An append-only SQLite event log (WAL mode, one writer connection).

    Parameters
    ----------
    path : str or Path
        The database file; created (with its tables) when absent.

    Raises
    ------
    EventLogError
        The file cannot be opened or created, is not a SQLite database, or was written
        by a newer maasrec.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot open the event log {self.path!r}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise EventLogError(f"the event log {self.path!r} cannot use WAL mode "
                                    f"(journal_mode is {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                             (str(_SCHEMA_VERSION),))
            elif row[0] != str(_SCHEMA_VERSION):
                raise EventLogError(f"the event log {self.path!r} has schema version "
                                    f"{row[0]!r}; this maasrec reads version {_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            conn.close()
            raise EventLogError(f"cannot use the event log {self.path!r}: {exc}") from exc
        except EventLogError:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        """Close the database (further appends raise)."""
        with self._lock:
            self._conn.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Append events in one committed transaction.

        Returns
        -------
        list of bool
            For each event, True if it was new, False for an ``event_id`` already in the
            log (the stored event is kept; nothing changes).
        """
        rows = [(e.event_id, _dump_id(e.user), _dump_id(e.item), e.value, e.time)
                for e in events]
        out = []
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for r in rows:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO events (event_id, user_id, item_id, value, time) "
                        "VALUES (?, ?, ?, ?, ?)", r)
                    out.append(cur.rowcount == 1)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise EventLogError(f"cannot write to the event log {self.path!r}: "
                                    f"{exc}") from exc
        return out

    def read(self) -> list[Event]:
        """Every event, in the order they were acknowledged.

        Raises
        ------
        EventLogError
            A record that cannot be read (naming the file and the record's ``seq``).
        """
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT seq, event_id, user_id, item_id, value, time FROM events "
                    "ORDER BY seq").fetchall()
            except sqlite3.Error as exc:
                raise EventLogError(f"cannot read the event log {self.path!r}: {exc}") from exc
        out = []
        for seq, event_id, user, item, value, time in rows:
            try:
                u, i = json.loads(user), json.loads(item)
                for x in (u, i):
                    if isinstance(x, bool) or not isinstance(x, int | str | float) or (
                            isinstance(x, float) and not math.isfinite(x)):
                        raise ValueError(f"id {x!r} is not a JSON integer, string or number")
                for v in (value, time):
                    if v is not None and not (isinstance(v, int | float) and math.isfinite(v)):
                        raise ValueError(f"value/time {v!r} is not a finite number")
                if not isinstance(event_id, str):
                    raise ValueError(f"event_id {event_id!r} is not text")
            except (ValueError, TypeError) as exc:
                raise EventLogError(
                    f"the event log {self.path!r} holds a bad record (seq {seq}, event_id "
                    f"{event_id!r}): {exc}; the service will not start on a log it cannot "
                    f"read in full (repair or move the file)") from exc
            out.append(Event(event_id, u, i, value, time))
        return out


def events_frame(events: Sequence[Event]) -> pd.DataFrame:
    """The events as the frame ``partial_fit`` takes (``value`` 1.0 where not given)."""
    def column(ids: list) -> np.ndarray:
        if ids and all(isinstance(x, int) for x in ids):
            return np.array(ids, dtype=np.int64)
        out = np.empty(len(ids), dtype=object)
        out[:] = ids
        return out

    values = np.array([1.0 if e.value is None else float(e.value) for e in events],
                      dtype=np.float64)
    return pd.DataFrame({"user": column([e.user for e in events]),
                         "item": column([e.item for e in events]), "rating": values},
                        copy=False)


class EventsNotSupportedError(MaasrecError, NotImplementedError):
    """The served model cannot fold events in, or the server has no event log (409)."""


def _swap_model(holder, model) -> None:
    """Serve ``model`` in place of the current one (same version; readers see either;
    ``GET /v1/model`` counts its users and items)."""
    with holder._swap_lock:
        holder._state = holder._state.with_model(model)


class LiveEvents:
    """The event log of one app and how events reach the served model.

    A request's events are logged (one committed transaction), then folded into a
    shallow copy of the served model with ``partial_fit`` and the copy is swapped in, so
    readers never see a half-updated model. Requests that arrive while a write and
    update run are handled together by the next one (one transaction and one
    ``partial_fit`` per group); a group's disk sync overlaps the previous group's
    update, and groups are folded in in log order. An acknowledged request's events are
    in the log and in the served histories: the next ``/v1/recommend`` of their users
    reflects them.

    For a model that :func:`~maasrec.online.supports_deferred` (EASE), the group's
    ``partial_fit`` only merges the histories and the model-wide update waits: a
    background task, started when a group leaves it pending, waits until no group came
    for ``apply_delay_s`` or the oldest pending group is ``max_lag_s`` old (or a
    ``sync`` poster waits), applies every pending group in one exact batched update on a
    copy of the served model, outside the model executor, and swaps it in with the
    groups that came meanwhile still pending (:func:`~maasrec.online.rebase_deferred`).
    A batch costs about one group's update whatever the number of events of the same
    users it covers (EASE: ``O(n_items² r)`` for ``r`` distinct touched users), so
    under load the model-wide work no longer grows with the event rate.

    Parameters
    ----------
    log : EventLog
    holder : ModelHolder
    defer : bool, default True
        Defer the model-wide update where the model allows it (False: every group's
        update is applied before the answer, as ``partial_fit`` does).
    apply_delay_s : float, default 0.05
        The background update runs once no group came for this long...
    max_lag_s : float, default 1.0
        ...or once the oldest pending group is this old.
    """

    def __init__(self, log: EventLog, holder, *, defer: bool = True,
                 apply_delay_s: float = 0.05, max_lag_s: float = 1.0):
        self.log = log
        self.holder = holder
        self.defer = bool(defer)
        self.apply_delay_s = float(apply_delay_s)
        self.max_lag_s = float(max_lag_s)
        self._last_group = self._first_pending = 0.0
        self._urgent = 0  # sync posters waiting
        self._lock = asyncio.Lock()  # the log: one group's transaction at a time
        self._apply_lock = asyncio.Lock()  # the served model: one update at a time
        self._pending: list[tuple[list[Event], asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self._applied: asyncio.Condition | None = None
        self._groups = 0  # deferred groups issued (the served model holds the latest ones)
        self.apply_errors = 0

    @property
    def pending(self) -> int:
        """Groups whose model-wide update is still pending in the served model."""
        return deferred_calls(self.holder.state.model)

    # -- replay ---------------------------------------------------------------------
    def replay_onto(self, model):
        """``model`` (a shallow copy) with every logged event folded in, or ``model``.

        Raises
        ------
        EventLogError
            A record of the log cannot be read.
        """
        from .items import replay_items_onto  # POST /v1/items: items before events

        model = replay_items_onto(self.log, model)
        events = self.log.read()
        if not events:
            return model
        if not supports_partial_fit(model):
            logger.warning("the served %s cannot fold events in (no partial_fit): the %d "
                           "events of %s are not applied", type(model).__name__, len(events),
                           self.log.path)
            return model
        if not getattr(model, "_partial_fit_new_items", False):
            known = [e for e in events if e.item in model.item_vocab_]
            if len(known) < len(events):
                logger.warning("%d of the %d logged events name items the served model does "
                               "not know; they stay in %s but are not applied to this model",
                               len(events) - len(known), len(events), self.log.path)
            events = known
        if not events:
            return model
        out = copy.copy(model)
        out.partial_fit(events_frame(events))
        logger.info("replayed %d events from %s", len(events), self.log.path)
        return out

    def replay(self) -> None:
        """Fold the whole log into the served model (at start)."""
        _swap_model(self.holder, self.replay_onto(self.holder.state.model))

    # -- live events --------------------------------------------------------------------
    def check(self, model, raw: Sequence[Any]) -> list[Event]:
        """Validate request events against ``model`` (ids coerced to its id kind).

        Raises
        ------
        EventsNotSupportedError, UnknownIdError
        """
        if not supports_partial_fit(model):
            raise EventsNotSupportedError(
                f"the served {type(model).__name__} cannot fold events in (no partial_fit); "
                f"serve a classical model, or refit")
        users = coerce_ids([e.user for e in raw], model.user_vocab_)
        items = coerce_ids([e.item for e in raw], model.item_vocab_)
        if not getattr(model, "_partial_fit_new_items", False):
            check_known(items, model.item_vocab_)  # 404 naming the items; nothing logged
        return [Event(e.event_id, u, i, e.value, e.time)
                for e, u, i in zip(raw, users, items, strict=True)]

    async def post(self, run, events: list[Event], *, sync: bool = False) -> tuple[int, int]:
        """Log ``events`` and fold the new ones into the served model.

        Requests that arrive while a group is being written and folded in wait for the
        next group: one committed transaction and one ``partial_fit`` per group (group
        commit), so concurrent posters share the cost of the disk sync and the update.

        Parameters
        ----------
        run : callable
            ``await run(fn, *args)`` runs ``fn`` in the model executor.
        sync : bool, default False
            Answer only once the model-wide update that includes these events is
            served (deferred updates: see the class).

        Returns
        -------
        accepted, duplicates : int
        """
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((events, fut))
        await self._lock.acquire()  # stage 1: the log (one group at a time)
        held = [True]  # whether this coroutine still holds the log lock
        try:
            if self._pending:  # else: our events went with a group before ours
                group, self._pending = self._pending, []
                await self._write_and_apply(run, group, held)
        finally:
            if held[0]:
                self._lock.release()
        out = await fut
        if sync:
            self._urgent += 1
            try:
                await self._wait_applied(self._groups)
            finally:
                self._urgent -= 1
        return out

    async def _write_and_apply(self, run, group: list, held: list) -> None:
        """Log ``group`` (holding the log lock), then fold it in (holding the apply lock).

        The log lock is released once the apply lock is held, so the next group's disk
        sync overlaps this group's update, and groups are applied in log order.
        """
        try:
            flat = [e for evs, _ in group for e in evs]
            flags = await asyncio.to_thread(self.log.append, flat)
            new = [e for e, f in zip(flat, flags, strict=True) if f]
            async with self._apply_lock:
                held[0] = False
                self._lock.release()  # stage 2: the next group may write meanwhile
                if new:
                    await self._fold_in(run, new)
        except BaseException as exc:
            for _, f in group:
                if not f.done():
                    f.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        pos = 0
        for evs, f in group:
            got = sum(flags[pos:pos + len(evs)])
            f.set_result((got, len(evs) - got))
            pos += len(evs)

    async def _fold_in(self, run, new: list[Event]) -> None:
        model = copy.copy(self.holder.state.model)
        before = deferred_calls(model)
        await run(functools.partial(partial_fit, model, events_frame(new), defer=self.defer))
        _swap_model(self.holder, model)
        if deferred_calls(model) > before:
            self._groups += 1
            self._last_group = monotonic()
            if before == 0:
                self._first_pending = self._last_group
            self._start_apply()

    # -- deferred model-wide updates ------------------------------------------------------
    def _condition(self) -> asyncio.Condition:
        if self._applied is None:
            self._applied = asyncio.Condition()
        return self._applied

    def _start_apply(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._apply_pending())

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def _wait_applied(self, group: int) -> None:
        """Until the served model's update includes the ``group``-th deferred group."""
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self._groups - self.pending >= group
                                or self._task is None or self._task.done())

    async def _apply_pending(self) -> None:
        """Apply the pending model-wide updates (batched) until none is left."""
        try:
            while True:
                while not self._urgent:  # batch: wait for a quiet moment or max_lag_s
                    now = monotonic()
                    wait = min(self._last_group + self.apply_delay_s,
                               self._first_pending + self.max_lag_s) - now
                    if wait <= 0:
                        break
                    await asyncio.sleep(min(wait, 0.01))
                snapshot = self.holder.state.model
                if deferred_calls(snapshot) == 0:
                    return
                work = copy.copy(snapshot)
                try:
                    await asyncio.to_thread(apply_deferred, work)
                except Exception:  # the histories are served; the update is retried later
                    self.apply_errors += 1
                    logger.exception("the deferred model-wide update of %d event groups "
                                     "failed; it stays pending", deferred_calls(snapshot))
                    return
                async with self._apply_lock:
                    merged = rebase_deferred(self.holder.state.model, work, snapshot)
                    if merged is not None:  # else a reload or replay came between
                        _swap_model(self.holder, merged)
                        self._first_pending = monotonic()  # the rest waits anew
                await self._notify()
        finally:
            self._task = None
            await self._notify()

    async def after_reload(self) -> None:
        """Replay the log onto a newly loaded model (events wait meanwhile)."""
        async with self._lock, self._apply_lock:
            model = await asyncio.to_thread(self.replay_onto, self.holder.state.model)
            _swap_model(self.holder, model)
        await self._notify()  # the replayed model is exact: nothing is pending


def open_events(events_db, holder) -> LiveEvents | None:
    """The app's :class:`LiveEvents` for ``events_db`` (or ``$MAASREC_EVENTS_DB``), replayed.

    Raises
    ------
    EventLogError
        The database cannot be opened or read; a record is bad.
    """
    path = events_db if events_db is not None else os.environ.get(EVENTS_DB_ENV) or None
    if path is None:
        return None
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise DataError(f"events_db must be a path, got {path!r}")
    live = LiveEvents(EventLog(path), holder)
    live.replay()
    return live
