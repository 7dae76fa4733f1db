"""A loaded int8 / ONNX LMRanker builds no float-sized language-model tensors it never uses:
the shell's parameters sit on the ``meta`` device until the int8 state replaces them, and
an ONNX model keeps its shell there (the session holds the weights)."""

from __future__ import annotations

import importlib.util
import json
import threading

import numpy as np
import pytest
import torch
from torch import nn

from maasrec import Recommender
from maasrec.compress import Int8Linear, export_onnx, quantize_network
from maasrec.compress._adapters import _meta_parameters, has_meta, load_shell, shells_allowed
from maasrec.lm_ranker import LMRanker
from maasrec.models import EASE
from maasrec.testing import tiny_interactions
from maasrec.testing.components import tiny_text_model

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the onnx extra: pip install 'maasrec[onnx]'")


@pytest.fixture(scope="module", params=["auto", "mean"])
def ranker(request):
    return LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"), missing_text="id",
                    history_len=2, max_length=48, max_positives=12, epochs=1,
                    head=request.param, random_state=0, verbose=False).fit(tiny_interactions())


def _float_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())
               if t.dtype.is_floating_point and not t.is_meta)


def test_shell_parameters_are_meta_and_buffers_real(ranker, tmp_path):
    quantize_network(ranker).save(tmp_path / "q")
    folder = tmp_path / "q" / "model" / "lm"
    meta = json.loads((folder / "maasrec_lm.json").read_text())
    with shells_allowed("test"):
        shell = load_shell(folder, meta)
    params = list(shell.parameters())
    assert params and all(p.is_meta for p in params)
    buffers = list(shell.buffers())
    assert buffers and not any(b.is_meta for b in buffers)  # e.g. BERT's position_ids
    assert not any(p.requires_grad for p in params)


@needs_onnx
def test_loaded_onnx_lmranker_holds_no_float_language_model(ranker, tmp_path):
    q = export_onnx(ranker, n_threads=1)
    q.save(tmp_path / "q")
    loaded = Recommender.load(tmp_path / "q")
    lm = loaded.model_._lm
    assert all(p.is_meta for p in lm.model.parameters())
    # what stays real: the buffers and a mean head -- far less than the float model
    assert _float_bytes(lm) < 0.1 * _float_bytes(ranker._lm)
    users = list(ranker.user_vocab_.ids[:8])
    a, b = q.recommend(users, k=4), loaded.recommend(users, k=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # a loaded model (meta shell) saves and loads again, scoring the same
    loaded.save(tmp_path / "again")
    again = Recommender.load(tmp_path / "again")
    c = again.recommend(users, k=4)
    assert np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])
    items = list(ranker.item_vocab_.ids[:8])
    assert np.array_equal(q.predict_proba(users, items), again.predict_proba(users, items))


def test_loaded_int8_lmranker_has_every_tensor_from_the_file(ranker, tmp_path):
    q = quantize_network(ranker)
    q.save(tmp_path / "q")
    loaded = Recommender.load(tmp_path / "q")
    lm = loaded.model_._lm
    assert not has_meta(lm)
    assert sorted(n for n, m in lm.named_modules() if isinstance(m, Int8Linear)) == \
        q.int8_layers_
    users = list(ranker.user_vocab_.ids[:8])
    a, b = q.recommend(users, k=4), loaded.recommend(users, k=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for (name, t), (name2, t2) in zip(sorted(q._qnet.state_dict().items()),
                                      sorted(lm.state_dict().items())):
        assert name == name2 and torch.equal(t, t2)


def test_meta_parameters_only_on_the_building_thread():
    built = {}

    def other():
        built["other"] = nn.Linear(4, 3)

    with _meta_parameters():
        built["here"] = nn.Linear(4, 3)
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert built["here"].weight.is_meta and built["here"].bias.is_meta
    assert not built["other"].weight.is_meta
    assert not nn.Linear(2, 2).weight.is_meta  # the patch is gone afterwards


@needs_onnx
def test_loaded_onnx_graph_is_mapped_and_outlives_its_directory(ranker, tmp_path):
    import mmap
    import shutil

    q = export_onnx(ranker, n_threads=1)
    q.save(tmp_path / "q")
    loaded = Recommender.load(tmp_path / "q")
    assert isinstance(loaded._onnx_bytes, mmap.mmap)  # not a copy of the file in memory
    assert loaded.onnx_bytes_ == q.onnx_bytes_
    shutil.rmtree(tmp_path / "q")
    users = list(ranker.user_vocab_.ids[:8])
    want = q.recommend(users, k=4)
    got = loaded.set_params(n_threads=2).recommend(users, k=4)  # a session from the map
    assert np.array_equal(want[0], got[0]) and np.allclose(want[1], got[1], atol=1e-5)
    loaded.save(tmp_path / "again")
    again = Recommender.load(tmp_path / "again")
    got = again.recommend(users, k=4)
    assert np.array_equal(want[0], got[0]) and np.allclose(want[1], got[1], atol=1e-5)


def test_pruned_lmranker_compressed_loads_exactly(tmp_path):
    from maasrec.compress import prune

    X = tiny_interactions()
    r = LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"), missing_text="id",
                 history_len=2, max_length=48, max_positives=12, epochs=1,
                 random_state=0, verbose=False).fit(X)
    pruned = prune(r, X, amount=0.5, epochs=0)  # the meta shell is shrunk to these sizes
    users = list(X.user_vocab.ids[:6])
    makers = [("int8", quantize_network)]
    if importlib.util.find_spec("onnxruntime") is not None:
        makers.append(("onnx", lambda m: export_onnx(m, n_threads=1)))
    for name, make in makers:
        q = make(pruned)
        q.save(tmp_path / name)
        loaded = Recommender.load(tmp_path / name)
        a, b = q.recommend(users, k=4), loaded.recommend(users, k=4)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
