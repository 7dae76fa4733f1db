"""TextEncoder exported to ONNX and run with ONNX Runtime (the ``onnx`` extra)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from maasrec.compress import OnnxTextEncoder, export_onnx
from maasrec.encoders import TextEncoder
from maasrec.exceptions import DataError, MaasrecError, ModelFormatError
from maasrec.testing.components import tiny_text_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the onnx extra: pip install 'maasrec[onnx]'")

TEXTS = ["toy story", "heat", "grumpier old men", "", "the empire strikes back " * 30,
         "sleepless in seattle", "a", "when harry met sally"]


def _folder(tmp_path_factory, name, kind="bert", seed=0):
    model, tok = tiny_text_model(kind, seed=seed)
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return _folder(tmp_path_factory, "tiny-bert")


@pytest.fixture(scope="module")
def exported(bert_dir, tmp_path_factory):
    enc = TextEncoder(bert_dir, cache_dir=False, max_length=40)
    path = tmp_path_factory.mktemp("onnx") / "enc.onnx"
    return enc, export_onnx(enc, path), path


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_onnx_outputs_match_torch(exported, batch_size):
    enc, onnx_enc, _ = exported
    onnx_enc.set_params(batch_size=batch_size)
    a, b = enc.encode(TEXTS), onnx_enc.encode(TEXTS)
    assert b.shape == a.shape and b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-4
    assert isinstance(onnx_enc, TextEncoder)


def test_sidecar_describes_the_export(exported):
    enc, _, path = exported
    meta = json.loads((path.parent / "enc.onnx.json").read_text())
    assert meta["inputs"] == ["input_ids", "attention_mask"] and meta["outputs"] == ["embedding"]
    assert meta["max_length"] == 40 and meta["pooling"] == "mean"
    assert meta["fingerprint"] == enc.cache_key()["fingerprint"]
    assert isinstance(exported[1].path, str)  # JSON-saveable inside a model
    again = OnnxTextEncoder.from_export(path, cache_dir=False)
    assert again.max_length == 40
    assert np.abs(again.encode(TEXTS[:3]) - enc.encode(TEXTS[:3])).max() < 1e-4


def test_onnx_encoder_uses_its_own_cache_namespace(exported, tmp_path):
    enc, _, path = exported
    cached = OnnxTextEncoder.from_export(path, cache_dir=tmp_path)
    torch_enc = TextEncoder(enc.model, cache_dir=tmp_path, max_length=40)
    assert cached.cache_key() != torch_enc.cache_key()
    first = cached.encode(TEXTS)
    assert np.array_equal(OnnxTextEncoder.from_export(path, cache_dir=tmp_path).encode(TEXTS),
                          first)


def test_file_from_another_model_is_refused(exported, tmp_path_factory):
    _, _, path = exported
    other = _folder(tmp_path_factory, "other-bert", seed=1)
    with pytest.raises(ModelFormatError, match="exported from"):
        OnnxTextEncoder(path, model=other, max_length=40, cache_dir=False).encode(["x"])
    with pytest.raises(ModelFormatError, match="max_length=40"):
        OnnxTextEncoder(path, model=exported[0].model, cache_dir=False).encode(["x"])


def _copy(path, tmp_path):
    dst = tmp_path / "copy.onnx"
    dst.write_bytes(path.read_bytes())
    (tmp_path / "copy.onnx.json").write_bytes((path.parent / "enc.onnx.json").read_bytes())
    return dst


def _edit_sidecar(p, **changes):
    side = p.parent / (p.name + ".json")
    meta = json.loads(side.read_text())
    meta.update(changes)
    side.write_text(json.dumps(meta))


@pytest.mark.parametrize("change, match", [
    ({"format_version": 2}, "export format 2"),
    ({"kind": "LMRanker"}, "not a TextEncoder"),
    ({"inputs": ["ids", "mask"]}, "its sidecar says"),
    ({"max_length": "40"}, "max_length is '40'"),
    ({"sha256": "0" * 64}, "SHA-256"),
    ({"format": "other"}, "does not describe"),
])
def test_bad_sidecars_are_refused(exported, tmp_path, change, match):
    enc, _, path = exported
    p = _copy(path, tmp_path)
    _edit_sidecar(p, **change)
    with pytest.raises(ModelFormatError, match=match):
        OnnxTextEncoder(p, model=enc.model, max_length=40, cache_dir=False).encode(["x"])


def test_changed_or_lonely_files_are_refused(exported, tmp_path):
    enc, _, path = exported
    p = _copy(path, tmp_path)
    with open(p, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFormatError, match="changed after export"):
        OnnxTextEncoder(p, model=enc.model, max_length=40, cache_dir=False).encode(["x"])
    (tmp_path / "copy.onnx.json").unlink()
    with pytest.raises(ModelFormatError, match="no sidecar"):
        OnnxTextEncoder(p, model=enc.model, max_length=40, cache_dir=False).encode(["x"])
    with pytest.raises(ModelFormatError, match="does not exist"):
        OnnxTextEncoder(tmp_path / "none.onnx", model=enc.model, cache_dir=False).encode(["x"])


def test_missing_onnxruntime_names_the_extra(exported, monkeypatch):
    enc, _, path = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MaasrecError, match=r"maasrec\[onnx\]"):
        OnnxTextEncoder(path, model=enc.model, max_length=40, cache_dir=False).encode(["x"])


def test_encoders_that_cannot_be_exported(bert_dir, tmp_path, tmp_path_factory):
    with pytest.raises(DataError, match="frozen"):
        export_onnx(TextEncoder(bert_dir, trainable=True), tmp_path / "a.onnx")
    with pytest.raises(DataError, match="projection"):
        export_onnx(TextEncoder(bert_dir, projection_dim=4), tmp_path / "a.onnx")
    with pytest.raises(DataError, match="in-memory"):
        export_onnx(TextEncoder(tiny_text_model("bert")), tmp_path / "a.onnx")
    gpt = _folder(tmp_path_factory, "tiny-gpt", kind="gpt2")
    with pytest.raises(DataError, match="GPT-style"):
        export_onnx(TextEncoder(gpt), tmp_path / "a.onnx")
    (tmp_path / "b.onnx").write_bytes(b"x")
    with pytest.raises(DataError, match="overwrite"):
        export_onnx(TextEncoder(bert_dir), tmp_path / "b.onnx")
    with pytest.raises(DataError, match="n_threads"):
        OnnxTextEncoder(tmp_path / "b.onnx", model=bert_dir, n_threads=0).encode(["x"])


def test_onnx_text_encoder_passes_the_component_contract(exported):
    from maasrec.testing.components import check_component

    enc, _, path = exported
    done = check_component(lambda: OnnxTextEncoder(path, model=enc.model, max_length=40,
                                                   cache_dir=False),
                           inputs=(TEXTS,), n_rows=len(TEXTS), trainable=False)
    assert "check_component_params" in done


@pytest.mark.slow
def test_hybrid_with_an_onnx_item_encoder_saves_and_loads(exported, tmp_path):
    from maasrec import Recommender
    from maasrec.datasets import make_synthetic
    from maasrec.neural import HybridRecommender

    enc, _, path = exported
    ds = make_synthetic(n_users=80, n_items=50, seed=0)
    onnx_enc = OnnxTextEncoder(str(path), model=enc.model, max_length=40, cache_dir=False)
    m = HybridRecommender(item_encoders=["id", onnx_enc], dim=8, epochs=2, random_state=0)
    m.fit(ds.interactions, ds.item_features)
    users = list(m.user_vocab_.ids[:5])
    ids, scores = m.recommend(users, 3)
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back.item_encoders[1], OnnxTextEncoder)
    ids2, scores2 = back.recommend(users, 3)
    assert np.array_equal(ids, ids2) and np.array_equal(scores, scores2)
