"""int8 networks (quantize_network) and ONNX Runtime models (export_onnx of a fitted model)
for LMRanker and SequentialRecommender: outputs, save/load, serving, bad input."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from maasrec import Recommender
from maasrec.compress import (
    Int8Recommender,
    OnnxRecommender,
    export_onnx,
    quantize,
    quantize_network,
)
from maasrec.compress.cli import cli_main
from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError, MaasrecError, ModelFormatError, NotFittedError
from maasrec.lm_ranker import LMRanker
from maasrec.models import EASE
from maasrec.neural import SequentialRecommender
from maasrec.testing import tiny_interactions
from maasrec.testing.components import tiny_text_model

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the onnx extra: pip install 'maasrec[onnx]'")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=120, n_items=60, seed=0).interactions


@pytest.fixture(scope="module")
def seq(data):
    return SequentialRecommender(dim=16, n_heads=2, max_len=12, epochs=2, random_state=0,
                                 verbose=False).fit(data)


@pytest.fixture(scope="module")
def ranker():
    return LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"), missing_text="id",
                    history_len=2, max_length=48, max_positives=16, epochs=1,
                    random_state=0, verbose=False).fit(tiny_interactions())


def _pairs(model, n=40):
    rng = np.random.default_rng(0)
    users = list(rng.choice(model.user_vocab_.ids, n))
    items = list(rng.choice(model.item_vocab_.ids, n))
    return users, items


def _histories(model):
    ids = model.item_vocab_.ids
    return [list(ids[:1]), list(ids[3:10]), list(ids[5:40]), list(ids[2:4]), list(ids[7:8])]


# -- SequentialRecommender --------------------------------------------------------------------
@needs_onnx
@pytest.mark.parametrize("rows", [1, 7, 60])
def test_onnx_sequential_matches_torch(seq, rows):
    q = export_onnx(seq, n_threads=1)
    users = np.arange(rows)
    assert np.abs(seq.score_indices(users) - q.score_indices(users)).max() < 1e-4
    # cold histories of several lengths (dynamic batch and sequence axes), one above max_len
    hist = _histories(seq)
    a, b = seq.recommend(history=hist, k=5), q.recommend(history=hist, k=5)
    assert np.abs(a[1] - b[1]).max() < 1e-4
    assert isinstance(q, Recommender) and q.ordered_history


@needs_onnx
def test_onnx_sequential_round_trip_and_file(seq, tmp_path):
    q = export_onnx(seq, tmp_path / "seq.onnx", n_threads=1)
    meta = json.loads((tmp_path / "seq.onnx.json").read_text())
    assert meta["kind"] == "SequentialRecommender" and meta["inputs"] == ["items", "item_table"]
    q.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, OnnxRecommender)
    users = list(seq.user_vocab_.ids[:20])
    a, b = q.recommend(users, k=6), loaded.recommend(users, k=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    again = OnnxRecommender.from_file(seq, tmp_path / "seq.onnx")
    assert np.array_equal(again.recommend(users, k=6)[0], a[0])


def test_int8_sequential_close_and_exact_round_trip(seq, tmp_path):
    q = quantize_network(seq)
    assert isinstance(q, Int8Recommender)
    assert set(q.int8_layers_) == {f"blocks.{i}.{n}" for i in range(2)
                                   for n in ("qkv", "proj", "fc1", "fc2")}
    sizes = q.network_bytes_
    assert sizes["int8"] < sizes["float32"]
    users = np.arange(seq.n_users_)
    a, b = seq.score_indices(users), q.score_indices(users)
    assert not np.array_equal(a, b)  # the int8 layers run
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
    top_a, top_b = np.argsort(-a, 1)[:, :10], np.argsort(-b, 1)[:, :10]
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b)])
    assert overlap > 0.8, overlap
    q.save(tmp_path / "q")
    loaded = Recommender.load(tmp_path / "q")
    assert np.array_equal(loaded.score_indices(users), b)
    # the original is untouched
    assert np.array_equal(seq.score_indices(users), a)


# -- LMRanker ---------------------------------------------------------------------------------
@needs_onnx
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_onnx_lmranker_matches_torch(ranker, batch_size):
    q = export_onnx(ranker, n_threads=1)
    q.model_.set_params(batch_size=batch_size)
    users, items = _pairs(ranker)
    a = ranker.decision_function(users, items)
    b = q.model_.decision_function(users, items)
    assert np.abs(a - b).max() < 1e-4
    assert np.allclose(q.predict_proba(users, items), ranker.predict_proba(users, items),
                       atol=1e-4)
    ids_a, _ = ranker.recommend(list(ranker.user_vocab_.ids[:6]), k=4)
    ids_b, _ = q.recommend(list(ranker.user_vocab_.ids[:6]), k=4)
    assert ids_a.shape == ids_b.shape


@needs_onnx
def test_onnx_lmranker_round_trip(ranker, tmp_path):
    q = export_onnx(ranker, n_threads=1)
    assert q.onnx_meta_["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    q.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    users = list(ranker.user_vocab_.ids[:6])
    a, b = q.recommend(users, k=4), loaded.recommend(users, k=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_int8_lmranker_close_and_exact_round_trip(ranker, tmp_path):
    q = quantize_network(ranker)
    assert q.int8_layers_ and not any("head" in n for n in q.int8_layers_)
    users, items = _pairs(ranker)
    a, b = ranker.decision_function(users, items), q.model_.decision_function(users, items)
    assert not np.array_equal(a, b)  # the int8 layers run
    assert np.abs(a - b).max() < 0.05 * max(1e-3, np.abs(a).max())
    q.save(tmp_path / "q")
    loaded = Recommender.load(tmp_path / "q")
    assert np.array_equal(loaded.model_.decision_function(users, items),
                          q.model_.decision_function(users, items))


# -- serving ----------------------------------------------------------------------------------
@needs_onnx
def test_served_onnx_and_int8_models_answer_like_the_library(seq, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from maasrec.serving import create_app

    users = [int(u) for u in seq.user_vocab_.ids[:4]]
    for name, model in (("onnx", export_onnx(seq, n_threads=1)), ("int8", quantize_network(seq))):
        model.save(tmp_path / name)
        ids, _ = model.recommend(users, 3)
        with TestClient(create_app(tmp_path / name)) as c:
            r = c.post("/v1/recommend", json={"users": users, "k": 3})
            assert r.status_code == 200, r.text
            assert [x["items"] for x in r.json()["results"]] == ids.tolist()
            assert type(model).__name__ in c.get("/v1/model").json()["class"]


# -- bad input --------------------------------------------------------------------------------
def test_unfitted_and_inapplicable_models_are_refused(seq):
    with pytest.raises(NotFittedError, match="not fitted"):
        quantize_network(SequentialRecommender())
    with pytest.raises(NotFittedError, match="not fitted"):
        export_onnx(LMRanker())
    ease = EASE().fit(tiny_interactions())
    with pytest.raises(DataError, match=r"not EASE.*quantize\(model, 'int8'\)"):
        quantize_network(ease)
    with pytest.raises(DataError, match="not EASE"):
        export_onnx(ease)
    with pytest.raises(DataError, match="already compressed"):
        quantize_network(quantize_network(seq))
    with pytest.raises(DataError, match="SequentialRecommender"):
        quantize(seq, "int8")  # table quantization names why not
    with pytest.raises(DataError, match="model must be"):
        Int8Recommender(model="EASE").fit(tiny_interactions())


@needs_onnx
def test_gpt_style_lmranker_is_not_exported():
    r = LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("gpt2"), missing_text="id",
                 history_len=2, max_length=48, max_positives=8, epochs=1, random_state=0,
                 verbose=False).fit(tiny_interactions())
    with pytest.raises(DataError, match="GPT-style"):
        export_onnx(r)
    with pytest.raises(DataError, match="Conv1D"):  # GPT-2 has no nn.Linear to quantize
        quantize_network(r)


@needs_onnx
def test_onnx_file_from_another_model_or_version_is_refused(seq, data, tmp_path):
    export_onnx(seq, tmp_path / "a.onnx")
    other = SequentialRecommender(dim=16, n_heads=2, max_len=12, epochs=1, random_state=1,
                                  verbose=False).fit(data)
    with pytest.raises(ModelFormatError, match="another SequentialRecommender"):
        OnnxRecommender.from_file(other, tmp_path / "a.onnx")
    ranker = LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"),
                      missing_text="id", history_len=2, max_length=48, max_positives=8,
                      epochs=1, random_state=0, verbose=False).fit(tiny_interactions())
    with pytest.raises(ModelFormatError, match="'SequentialRecommender' export, not a LMRanker"):
        OnnxRecommender.from_file(ranker, tmp_path / "a.onnx")
    side = tmp_path / "a.onnx.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelFormatError, match="export format 99"):
        OnnxRecommender.from_file(seq, tmp_path / "a.onnx")
    side.write_text(json.dumps(meta))
    (tmp_path / "a.onnx").write_bytes((tmp_path / "a.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelFormatError, match="SHA-256"):
        OnnxRecommender.from_file(seq, tmp_path / "a.onnx")
    side.unlink()
    with pytest.raises(ModelFormatError, match="no sidecar"):
        OnnxRecommender.from_file(seq, tmp_path / "a.onnx")


@needs_onnx
def test_onnx_model_loaded_without_onnxruntime_names_the_extra(seq, tmp_path, monkeypatch):
    export_onnx(seq).save(tmp_path / "m")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MaasrecError, match=r"maasrec\[onnx\]"):
        Recommender.load(tmp_path / "m")
    with pytest.raises(MaasrecError, match=r"maasrec\[onnx\]"):
        export_onnx(seq)


def test_int8_codes_of_another_network_are_refused(seq, data, tmp_path):
    from maasrec.persistence import build_manifest

    quantize_network(seq).save(tmp_path / "q")
    wider = SequentialRecommender(dim=24, n_heads=2, max_len=12, epochs=1, random_state=1,
                                  verbose=False).fit(data)
    quantize_network(wider).save(tmp_path / "o")
    meta_path = tmp_path / "q" / "maasrec.json"
    meta = json.loads(meta_path.read_text())

    def craft(meta):  # a directory edited consistently: the manifest is redone
        meta["files"] = build_manifest(tmp_path / "q")
        meta_path.write_text(json.dumps(meta))

    meta["attributes"]["float_fingerprint_"]["value"] = "0" * 64
    craft(meta)
    with pytest.raises(ModelFormatError, match="made from another network"):
        Recommender.load(tmp_path / "q")
    meta["attributes"]["float_fingerprint_"]["value"] = quantize_network(seq).float_fingerprint_
    (tmp_path / "q" / "int8.safetensors").write_bytes(
        (tmp_path / "o" / "int8.safetensors").read_bytes())
    craft(meta)
    with pytest.raises(ModelFormatError, match=r"int8\.safetensors"):
        Recommender.load(tmp_path / "q")


# -- the command line -------------------------------------------------------------------------
@needs_onnx
def test_cli_int8_and_onnx_of_a_saved_model(seq, tmp_path, capsys):
    seq.save(tmp_path / "seq")
    assert cli_main(["int8", str(tmp_path / "seq"), str(tmp_path / "q")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "SequentialRecommender" and out["int8_bytes"] < out["float32_bytes"]
    assert isinstance(Recommender.load(tmp_path / "q"), Int8Recommender)
    assert cli_main(["onnx", str(tmp_path / "seq"), str(tmp_path / "o")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "SequentialRecommender"
    assert isinstance(Recommender.load(tmp_path / "o"), OnnxRecommender)
    EASE().fit(tiny_interactions()).save(tmp_path / "ease")
    assert cli_main(["int8", str(tmp_path / "ease"), str(tmp_path / "x")]) == 2
    assert "not EASE" in capsys.readouterr().err


@needs_onnx
def test_fit_fits_a_clone_then_compresses(data):
    params = dict(dim=16, n_heads=2, max_len=12, epochs=1, random_state=0, verbose=False)
    base = SequentialRecommender(**params).fit(data)
    for klass, kw in ((Int8Recommender, {}), (OnnxRecommender, {"n_threads": 1})):
        m = klass(model=SequentialRecommender(**params), **kw)
        with pytest.raises(NotFittedError):
            m.recommend([0], k=3)
        m.fit(data)
        assert not m.model.is_fitted  # the parameter is left unfitted
        ids, _ = m.recommend(list(data.user_vocab.ids[:5]), k=5)
        assert ids.shape == (5, 5)
        if klass is OnnxRecommender:  # the same weights as a plain fit: the same top-k
            assert np.array_equal(ids, base.recommend(list(data.user_vocab.ids[:5]), k=5)[0])
