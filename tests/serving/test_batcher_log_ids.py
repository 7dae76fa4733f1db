"""The micro-batcher's WARNING line names the error type, never its message (which can
hold a raw user id); the message stays at DEBUG."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")

from maasrec.exceptions import UnknownIdError
from maasrec.serving.batcher import MicroBatcher


def test_failed_batch_warning_has_no_raw_user_id(caplog):
    def run(model, rows, k, exclude_seen, mode):
        if "secret-user-42" in rows:
            raise UnknownIdError("unknown user id 'secret-user-42'", ["secret-user-42"], "user")
        return np.array([[r] * k for r in rows], dtype=object), np.zeros((len(rows), k))

    async def scenario():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(run, ex, max_batch=10, max_wait_ms=20)
            res = await asyncio.gather(b.submit("m", ["a"], 2, True),
                                       b.submit("m", ["secret-user-42"], 2, True),
                                       return_exceptions=True)
            await b.close(timeout=5)
            return res

    with caplog.at_level(logging.DEBUG, logger="maasrec"):
        res = asyncio.run(scenario())
    assert isinstance(res[1], UnknownIdError)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("UnknownIdError" in r.getMessage() for r in warnings)
    assert not any("secret-user-42" in r.getMessage() for r in warnings)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("secret-user-42" in r.getMessage() for r in debug)
