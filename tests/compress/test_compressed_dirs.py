"""What a saved int8 / ONNX model directory holds: the compressed network, not the float one
beside it; exact loads; foreign runtime files and the inner directory alone refused."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maasrec import Recommender
from maasrec.compress import export_onnx, quantize_network
from maasrec.datasets import make_synthetic
from maasrec.exceptions import ModelFormatError
from maasrec.lm_ranker import LMRanker
from maasrec.models import EASE
from maasrec.neural import SequentialRecommender
from maasrec.persistence import build_manifest
from maasrec.testing import tiny_interactions
from maasrec.testing.components import tiny_text_model

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the onnx extra: pip install 'maasrec[onnx]'")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=100, n_items=50, seed=1).interactions


@pytest.fixture(scope="module")
def seq(data):
    return SequentialRecommender(dim=16, n_heads=2, max_len=10, epochs=1, random_state=0,
                                 verbose=False).fit(data)


@pytest.fixture(scope="module")
def ranker():
    return LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"), missing_text="id",
                    history_len=2, max_length=48, max_positives=12, epochs=1,
                    random_state=0, verbose=False).fit(tiny_interactions())


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _compressors():
    out = [("int8", quantize_network)]
    if importlib.util.find_spec("onnxruntime") is not None:
        out.append(("onnx", lambda m: export_onnx(m, n_threads=1)))
    return out


@pytest.mark.parametrize("kind", ["int8", "onnx"])
def test_sequential_directory_holds_no_float_network(seq, tmp_path, kind):
    make = dict(_compressors()).get(kind)
    if make is None:
        pytest.skip("needs the onnx extra")
    q = make(seq)
    q.save(tmp_path / "q")
    inner = tmp_path / "q" / "model"
    assert not (inner / "weights.safetensors").exists()
    assert q.item_table_.shape == (seq.n_items_, seq.dim)
    loaded = Recommender.load(tmp_path / "q")
    users = np.arange(seq.n_users_)
    assert np.array_equal(loaded.score_indices(users), q.score_indices(users))
    hist = [list(seq.item_vocab_.ids[:3]), list(seq.item_vocab_.ids[4:20])]
    a, b = q.recommend(history=hist, k=5), loaded.recommend(history=hist, k=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # a loaded model saves and loads again, bit for bit
    loaded.save(tmp_path / "again")
    again = Recommender.load(tmp_path / "again")
    assert np.array_equal(again.score_indices(users), q.score_indices(users))
    # the inner directory alone is not a usable model
    with pytest.raises(ModelFormatError, match="weights"):
        Recommender.load(inner)


@pytest.mark.parametrize("kind", ["int8", "onnx"])
def test_lmranker_directory_holds_no_float_weights(ranker, tmp_path, kind):
    make = dict(_compressors()).get(kind)
    if make is None:
        pytest.skip("needs the onnx extra")
    ranker.save(tmp_path / "float")
    q = make(ranker)
    q.save(tmp_path / "q")
    lm = tmp_path / "q" / "model" / "lm"
    assert not (lm / "model.safetensors").exists()
    assert json.loads((lm / "maasrec_lm.json").read_text())["external_weights"] == type(q).__name__
    float_weights = (tmp_path / "float" / "lm" / "model.safetensors").stat().st_size
    if kind == "int8":
        assert _size(tmp_path / "q") < _size(tmp_path / "float")
    else:  # the graph holds the weights: the directory is the float one with the graph in
        # place of the weights file (a tiny model's graph is larger than its weights)
        assert _size(tmp_path / "q") < _size(tmp_path / "float") - float_weights + (
            q.onnx_bytes_ + 16_384)
    loaded = Recommender.load(tmp_path / "q")
    users = list(ranker.user_vocab_.ids[:8])
    a, b = q.recommend(users, k=4), loaded.recommend(users, k=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    items = list(ranker.item_vocab_.ids[:8])
    assert np.array_equal(q.predict_proba(users, items), loaded.predict_proba(users, items))
    with pytest.raises(ModelFormatError, match=f"held by the compressed model.*{type(q).__name__}"):
        Recommender.load(tmp_path / "q" / "model")


def test_int8_directory_is_smaller_for_a_wide_network(data, tmp_path):
    wide = SequentialRecommender(dim=64, n_heads=2, n_layers=2, max_len=10, epochs=1,
                                 random_state=0, verbose=False).fit(data)
    wide.save(tmp_path / "float")
    q = quantize_network(wide)
    q.save(tmp_path / "q")
    # blocks 4x smaller; the item table (50 x 64) stays float32
    assert _size(tmp_path / "q") < 0.7 * _size(tmp_path / "float")


@needs_onnx
def test_graph_of_another_model_in_a_saved_directory_is_refused(seq, data, tmp_path):
    export_onnx(seq, n_threads=1).save(tmp_path / "q")
    other = SequentialRecommender(dim=16, n_heads=2, max_len=10, epochs=1, random_state=5,
                                  verbose=False).fit(data)
    export_onnx(other, tmp_path / "other.onnx")
    for name in ("network.onnx", "network.onnx.json"):  # graph and sidecar, consistent
        src = tmp_path / name.replace("network", "other")
        shutil.copyfile(src, tmp_path / "q" / name)
    meta_path = tmp_path / "q" / "maasrec.json"
    meta = json.loads(meta_path.read_text())
    meta["files"] = build_manifest(tmp_path / "q")  # edited consistently
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="made from another network"):
        Recommender.load(tmp_path / "q")


def test_int8_file_of_an_older_format_is_refused(seq, tmp_path):
    from safetensors.torch import load_file, save_file

    quantize_network(seq).save(tmp_path / "q")
    f = tmp_path / "q" / "int8.safetensors"
    save_file(load_file(str(f)), str(f), metadata={"format": "maasrec-int8-network",
                                                   "version": "1"})
    meta_path = tmp_path / "q" / "maasrec.json"
    meta = json.loads(meta_path.read_text())
    meta["files"] = build_manifest(tmp_path / "q")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="version '1'"):
        Recommender.load(tmp_path / "q")


def test_directory_without_a_recorded_fingerprint_is_refused(seq, tmp_path):
    quantize_network(seq).save(tmp_path / "q")
    meta_path = tmp_path / "q" / "maasrec.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["float_fingerprint_"]
    meta["files"] = build_manifest(tmp_path / "q")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match=r"no float_fingerprint_.*again"):
        Recommender.load(tmp_path / "q")


def test_int8_lmranker_stores_large_embedding_tables_as_codes(ranker, tmp_path, monkeypatch):
    from maasrec.compress import networks

    monkeypatch.setattr(networks, "_EMB_ROWS", 150)  # tiny: 157 tokens, 128 positions
    q = quantize_network(ranker)
    assert len(q.int8_embeddings_) == 1 and "word_embeddings" in q.int8_embeddings_[0]
    users, items = list(ranker.user_vocab_.ids[:10]), list(ranker.item_vocab_.ids[:10])
    a = ranker.decision_function(users, items)
    b = q.model_.decision_function(users, items)
    assert np.abs(a - b).max() < 0.05 * max(1e-3, np.abs(a).max())
    q.save(tmp_path / "q")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "q" / "int8.safetensors"), "pt") as f:
        keys = set(f.keys())
    key = q.int8_embeddings_[0]
    assert key not in keys and {f"{key}.int8_codes", f"{key}.int8_scales"} <= keys
    loaded = Recommender.load(tmp_path / "q")
    assert np.array_equal(loaded.model_.decision_function(users, items), b)
    assert q.network_bytes_["int8"] < q.network_bytes_["float32"]
    monkeypatch.setattr(networks, "_EMB_ROWS", 1024)  # read with another rule: refused
    with pytest.raises(ModelFormatError, match="int8_embeddings_"):
        Recommender.load(tmp_path / "q")
