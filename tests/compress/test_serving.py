"""A quantized model is served by ``maasrec serve`` like any model."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from maasrec.compress import quantize
from maasrec.models import ALS
from maasrec.serving import create_app
from maasrec.testing import tiny_interactions


def test_served_quantized_model_answers_like_the_library(tmp_path):
    q = quantize(ALS(factors=8, iterations=2, random_state=0).fit(tiny_interactions()), "int8")
    q.save(tmp_path / "q")
    users = [str(u) for u in q.user_vocab_.ids[:4]]
    ids, _ = q.recommend(users, 3)
    hist = [int(x) for x in q.item_vocab_.ids[:3]]
    cold, _ = q.recommend(history=[hist], k=3)
    with TestClient(create_app(tmp_path / "q")) as c:
        r = c.post("/v1/recommend", json={"users": users, "k": 3})
        assert r.status_code == 200, r.text
        assert [x["items"] for x in r.json()["results"]] == ids.tolist()
        r = c.post("/v1/recommend", json={"history": [hist], "k": 3})
        assert r.json()["results"][0]["items"] == cold[0].tolist()
        assert "QuantizedRecommender" in c.get("/v1/model").json()["class"]
