"""Quantized factor / item-vector tables (maasrec.compress.quantize)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maasrec import Recommender
from maasrec.compress import QuantizedRecommender, dequantize_table, quantize, quantize_table
from maasrec.exceptions import DataError, ModelFormatError, NotFittedError
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD
from maasrec.rankers import FaissRetriever
from maasrec.testing import check_recommender, tiny_interactions


@pytest.fixture(scope="module")
def data():
    return tiny_interactions(n_users=60, n_items=40, per_user=8)


def _models():
    return [ALS(factors=8, iterations=3, random_state=0),
            BPRMF(factors=8, epochs=3, random_state=0), PureSVD(factors=6), EASE()]


# -- codecs -------------------------------------------------------------------------------
def test_int8_codes_are_within_half_a_step_of_each_row():
    rng = np.random.default_rng(0)
    t = (rng.standard_normal((50, 17)) * rng.uniform(0.01, 100, (50, 1))).astype(np.float32)
    t[3] = 0.0
    enc = quantize_table(t, "int8")
    assert enc["codes"].dtype == np.int8 and enc["scales"].shape == (50,)
    assert np.abs(enc["codes"]).max() <= 127
    back = dequantize_table("int8", enc["codes"], enc["scales"])
    step = enc["scales"][:, None]
    assert (np.abs(back - t) <= step / 2 + 1e-6 * np.abs(t)).all()
    assert (back[3] == 0).all() and enc["scales"][3] == 0
    # the largest entry of each (non-zero) row is exact up to float rounding
    big = np.abs(t).argmax(axis=1)
    r = np.arange(50)
    assert np.allclose(back[r, big], t[r, big], rtol=1e-6)


def test_bfloat16_matches_torch_rounding():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((30, 9)).astype(np.float32) * 1e3
    enc = quantize_table(t, "bfloat16")
    assert enc["codes"].dtype == np.uint16
    want = torch.from_numpy(t).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(enc["codes"], want)
    back = dequantize_table("bfloat16", enc["codes"])
    assert np.array_equal(back, torch.from_numpy(t).to(torch.bfloat16).float().numpy())


def test_float16_clips_out_of_range_values():
    t = np.array([[1e6, -1e6, 0.5]], dtype=np.float32)
    back = dequantize_table("float16", quantize_table(t, "float16")["codes"])
    assert back[0, 0] == 65504 and back[0, 1] == -65504 and back[0, 2] == 0.5


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]], np.float32), np.ones(3, np.float32)])
def test_bad_tables_are_refused(bad):
    with pytest.raises(DataError):
        quantize_table(bad, "int8")


# -- models -------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["int8", "float16", "bfloat16"])
@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_quantized_model_scores_with_rounded_tables_and_round_trips(model, codec, data,
                                                                   tmp_path):
    m = model.fit(data)
    before = {k: v.copy() for k, v in vars(m).items() if isinstance(v, np.ndarray)}
    q = quantize(m, codec)
    for k, v in before.items():  # the original model is untouched
        assert np.array_equal(getattr(m, k), v)
    users = list(m.user_vocab_.ids[:25])
    ref_scores = m.score_indices(np.arange(25))
    got = q.score_indices(np.arange(25))
    tol = {"int8": 0.05, "float16": 2e-3, "bfloat16": 0.02}[codec]
    assert np.abs(got - ref_scores).max() <= tol * max(1.0, np.abs(ref_scores).max())
    assert not np.array_equal(got, ref_scores) or codec == "float16"
    # the stored bytes: int8 = 1 byte per value + a float32 scale per row
    b = q.table_bytes_
    n_values = sum(np.prod(i["shape"]) for i in q.quantized_tables_.values())
    rows = sum(i["shape"][0] for i in q.quantized_tables_.values())
    assert b["float32"] == 4 * n_values
    assert b["stored"] == (n_values + 4 * rows if codec == "int8" else 2 * n_values)
    ids, scores = q.recommend(users, 5)
    q.save(tmp_path / "q")
    r = Recommender.load(tmp_path / "q")
    assert isinstance(r, QuantizedRecommender) and type(r.model_) is type(m)
    ids2, scores2 = r.recommend(users, 5)
    assert np.array_equal(ids, ids2) and np.array_equal(scores, scores2)
    assert r.quantized_tables_ == q.quantized_tables_
    # the inner model's directory does not hold the float tables
    inner = json.loads((tmp_path / "q" / "model" / "maasrec.json").read_text())
    assert not set(q.quantized_tables_) & set(inner["attributes"])


def test_history_and_similar_items_go_through_the_inner_model(data):
    m = ALS(factors=8, iterations=3, random_state=0).fit(data)
    q = quantize(m, "int8")
    hist = [list(m.item_vocab_.ids[:4])]
    a, _ = m.recommend(history=hist, k=5)
    b, _ = q.recommend(history=hist, k=5)
    assert len(set(a[0]) & set(b[0])) >= 3
    s_ids, _ = q.similar_items([m.item_vocab_.ids[0]], k=3)
    assert s_ids.shape == (1, 3)


def test_retriever_on_a_quantized_model_is_saved_with_it(data, tmp_path):
    q = quantize(BPRMF(factors=8, epochs=3, random_state=0).fit(data), "int8")
    q.set_retriever(FaissRetriever("flat"))
    users = list(q.user_vocab_.ids[:10])
    ids, _ = q.recommend(users, 5)
    exact, _ = q.recommend(users, 5, retriever="exact")
    assert np.array_equal(ids, exact)
    q.save(tmp_path / "q")
    r = Recommender.load(tmp_path / "q")
    assert r._retriever is not None and np.array_equal(r.recommend(users, 5)[0], ids)


@pytest.mark.parametrize("inner", [ALS(factors=6, iterations=2, random_state=0), EASE()],
                         ids=lambda m: type(m).__name__)
def test_quantized_recommender_passes_the_common_contract(inner):
    check_recommender(lambda: QuantizedRecommender(inner, tables="int8"))


# -- bad input ----------------------------------------------------------------------------
def test_refusals_name_the_problem(data):
    with pytest.raises(NotFittedError, match="not fitted"):
        quantize(ALS())
    with pytest.raises(DataError, match="ItemKNN: its item-item similarities"):
        quantize(ItemKNN().fit(data))
    with pytest.raises(DataError, match="Popularity"):
        quantize(Popularity().fit(data))
    q = quantize(PureSVD(factors=4).fit(data))
    with pytest.raises(DataError, match="already quantized"):
        quantize(q)
    with pytest.raises(DataError, match="tables must be one of"):
        quantize(PureSVD(factors=4).fit(data), "int4")
    with pytest.raises(DataError, match="Recommender"):
        quantize(np.zeros((3, 3)))
    with pytest.raises(DataError, match="ItemKNN"):
        QuantizedRecommender(ItemKNN()).fit(data)


def _edit(path, fn):
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["attributes"]["quantized_tables_"]["value"]["item_factors_"].update(
        shape=[3, 3]), "shape"),
    (lambda m: m["attributes"]["quantized_tables_"]["value"]["item_factors_"].update(
        codec="float16"), "does not match"),
    (lambda m: m["attributes"]["quantized_tables_"]["value"].update(B_={"codec": "int8",
                                                                         "shape": [1, 1]}),
     "does not name"),
    (lambda m: m["params"].update(tables="int4"), "tables must be one of"),
])
def test_corrupt_descriptions_are_refused(data, tmp_path, edit, match):
    q = quantize(ALS(factors=6, iterations=2, random_state=0).fit(data), "int8")
    q.save(tmp_path / "q")
    _edit(tmp_path / "q" / "maasrec.json", edit)
    with pytest.raises(ModelFormatError, match=match):
        Recommender.load(tmp_path / "q")


def test_inner_model_of_another_class_is_refused(data, tmp_path):
    q = quantize(ALS(factors=6, iterations=2, random_state=0).fit(data), "int8")
    q.save(tmp_path / "q")
    ItemKNN().fit(data).save(tmp_path / "knn")
    import shutil

    shutil.rmtree(tmp_path / "q" / "model")
    shutil.copytree(tmp_path / "knn", tmp_path / "q" / "model")
    with pytest.raises(ModelFormatError, match="manifest"):  # the outer manifest sees it
        Recommender.load(tmp_path / "q")
    _edit(tmp_path / "q" / "maasrec.json", lambda m: m.pop("files"))  # an old, unlisted dir
    with pytest.raises(ModelFormatError, match="ItemKNN"):
        Recommender.load(tmp_path / "q")


@pytest.mark.slow
def test_hybrid_final_vectors_are_quantized_and_round_trip(data, tmp_path):
    from maasrec.neural import HybridRecommender

    m = HybridRecommender(epochs=2, random_state=0).fit(data)
    q = quantize(m, "int8")
    assert "item_repr_" in q.quantized_tables_
    assert m.item_repr_.dtype == np.float32  # the original keeps its float vectors
    users = list(m.user_vocab_.ids[:10])
    hist = [list(m.item_vocab_.ids[:3])]
    ids, scores = q.recommend(users, 5)
    cold = q.recommend(history=hist, k=3)
    q.save(tmp_path / "h")
    r = Recommender.load(tmp_path / "h")
    assert np.array_equal(r.recommend(users, 5)[0], ids)
    assert np.array_equal(r.recommend(users, 5)[1], scores)
    assert np.array_equal(r.recommend(history=hist, k=3)[1], cold[1])
    assert np.abs(q.score_indices(np.arange(10)) - m.score_indices(np.arange(10))).max() < 0.05


def test_an_attached_retriever_is_rebuilt_over_the_quantized_vectors(data):
    m = ALS(factors=8, iterations=3, random_state=0).fit(data)
    m.set_retriever(FaissRetriever("hnsw", n_candidates=20))
    q = quantize(m, "int8")
    assert q._retriever is not m._retriever
    assert q._retriever.get_params() == m._retriever.get_params()
    assert np.array_equal(q._retriever.index_.reconstruct_n(0, 3), q._item_vectors()[:3])
    assert m._retriever.fingerprint_ != q._retriever.fingerprint_
