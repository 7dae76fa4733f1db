"""``maasrec compress`` (compress.cli_main; cli.py wires it as a sub-command)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from maasrec import Recommender
from maasrec.compress import QuantizedRecommender
from maasrec.compress.cli import cli_main
from maasrec.models import ALS, ItemKNN
from maasrec.testing import tiny_interactions
from maasrec.testing.components import tiny_text_model


def test_compress_tables_writes_a_loadable_model(tmp_path, capsys):
    data = tiny_interactions()
    m = ALS(factors=8, iterations=2, random_state=0).fit(data)
    m.save(tmp_path / "als")
    assert cli_main(["tables", str(tmp_path / "als"), str(tmp_path / "q"),
                     "--tables", "bfloat16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tables"] == "bfloat16" and out["stored_bytes"] * 2 == out["float32_bytes"]
    q = Recommender.load(tmp_path / "q")
    assert isinstance(q, QuantizedRecommender) and q.tables == "bfloat16"
    users = list(m.user_vocab_.ids[:5])
    assert np.array_equal(q.recommend(users, 3)[0].shape, (5, 3))


def test_compress_tables_refusal_is_a_clean_error(tmp_path, capsys):
    ItemKNN().fit(tiny_interactions()).save(tmp_path / "knn")
    assert cli_main(["tables", str(tmp_path / "knn"), str(tmp_path / "q")]) == 2
    assert "does not apply to ItemKNN" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="needs the onnx extra")
def test_compress_onnx_exports_an_encoder(tmp_path, capsys):
    model, tok = tiny_text_model("bert")
    model.save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    assert cli_main(["onnx", str(tmp_path / "bert"), str(tmp_path / "e.onnx"),
                     "--max-length", "32"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (tmp_path / "e.onnx.json").is_file() and len(out["sha256"]) == 64
    assert cli_main(["onnx", str(tmp_path / "bert"), str(tmp_path / "e.onnx")]) == 2
    assert "overwrite" in capsys.readouterr().err
