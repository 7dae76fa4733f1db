"""``GET /v1/model`` counts the users and items of the model being served after
``POST /v1/events`` (new users) and ``POST /v1/items`` (new items), and after a restart
that replays them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="needs the 'serve' extra")
from fastapi.testclient import TestClient

from maasrec.data import Interactions, ItemFeatures
from maasrec.encoders import TextEncoder
from maasrec.models import TextEASE
from maasrec.serving import create_app
from maasrec.testing.components import tiny_text_model


def _info(c) -> dict:
    r = c.get("/v1/model")
    assert r.status_code == 200, r.text
    return r.json()


def test_counts_follow_new_users_from_events(ease_dir, ease_model, tmp_path):
    db = tmp_path / "events.db"
    n_users, n_items = ease_model.n_users_, ease_model.n_items_
    with TestClient(create_app(ease_dir, events_db=db)) as c:
        assert (_info(c)["n_users"], _info(c)["n_items"]) == (n_users, n_items)
        body = {"events": [{"event_id": "a", "user": 901, "item": 1001},
                           {"event_id": "b", "user": 902, "item": 1002},
                           {"event_id": "c", "user": 2, "item": 1003}], "sync": True}
        r = c.post("/v1/events", json=body)
        assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
        info = _info(c)
        assert (info["n_users"], info["n_items"]) == (n_users + 2, n_items)
        assert info["model_version"] == 1  # an update, not a reload
    with TestClient(create_app(ease_dir, events_db=db)) as c:  # replayed on start
        assert _info(c)["n_users"] == n_users + 2


def test_counts_follow_new_items(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(u, int(i)) for u in range(30) for i in rng.choice(12, 4, replace=False)]
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item"]), "user", "item")
    F = ItemFeatures.from_pandas(pd.DataFrame({"item": range(12),
                                               "text": [f"item {i} text" for i in range(12)]}),
                                 "item", text="text")
    enc = TextEncoder(tiny_text_model("bert", seed=0), cache_dir=False)
    model = TextEASE(l2=5.0, text_weight=5.0, text_encoder=enc).fit(X, item_features=F)
    with TestClient(create_app(model, events_db=tmp_path / "events.db")) as c:
        assert _info(c)["n_items"] == 12
        r = c.post("/v1/items", json={"items": [{"item": 50, "text": "a new item"},
                                                {"item": 51, "text": "another one"}]})
        assert r.status_code == 200 and r.json()["n_items"] == 14, r.text
        info = _info(c)
        assert (info["n_users"], info["n_items"]) == (30, 14)
