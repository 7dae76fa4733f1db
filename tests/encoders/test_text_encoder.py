"""TextEncoder on tiny in-memory BERT / GPT-2 models (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maasrec.base import _params_from_json, _params_to_json, clone
from maasrec.device import cuda_available
from maasrec.encoders import BertEncoder, GPTEncoder, TextEncoder
from maasrec.exceptions import DataError, DeviceError
from maasrec.testing.components import check_component, tiny_text_model

TEXTS = ["Toy Story (1995)", "Heat", "Star Wars: Episode IV - A New Hope (1977) Action|Sci-Fi",
         "", "Heat", "a love story", "GoldenEye (1995) Action|Adventure|Thriller"]


def enc_for(kind="bert", padding_side="right", **kw):
    kw.setdefault("cache_dir", False)
    return TextEncoder(tiny_text_model(kind, padding_side=padding_side), **kw)


# -- construction and parameters -------------------------------------------------------------

def test_init_does_no_work():
    enc = TextEncoder("no-such-org/no-such-model", pooling="mean", device="cuda")
    assert not enc.is_loaded
    assert enc.get_params()["model"] == "no-such-org/no-such-model"
    assert list(enc.parameters()) == []


def test_params_clone_set_params_and_json():
    enc = TextEncoder(pooling="cls", max_length=32, projection_dim=16, cache_dir="/tmp/x",
                      random_state=3)
    params = enc.get_params(deep=False)
    assert params["pooling"] == "cls" and params["projection_dim"] == 16
    c = clone(enc)
    assert type(c) is TextEncoder and c.get_params(deep=False) == params
    assert enc.set_params(batch_size=8) is enc and enc.batch_size == 8
    with pytest.raises(DataError, match="not_a_param"):
        enc.set_params(not_a_param=1)
    encoded = _params_to_json({"text_encoder": enc})
    back = _params_from_json(encoded)["text_encoder"]
    assert type(back) is TextEncoder and back.get_params(deep=False) == enc.get_params(deep=False)
    assert "pooling='cls'" in repr(enc)


def test_repr_of_in_memory_pair_is_short(bert_pair):
    text = repr(TextEncoder(bert_pair, cache_dir=False))
    assert text.startswith("TextEncoder(") and "BertModel" in text and "\n" not in text


@pytest.mark.parametrize("kwargs, match", [
    ({"pooling": "max"}, "pooling"),
    ({"max_length": 0}, "max_length"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"projection_dim": -1}, "projection_dim"),
    ({"normalize": "yes"}, "normalize"),
    ({"random_state": "seed"}, "random_state"),
])
def test_bad_parameters_raise_on_use(bert_pair, kwargs, match):
    enc = TextEncoder(bert_pair, cache_dir=False, **kwargs)  # __init__ accepts anything
    with pytest.raises(DataError, match=match):
        enc.encode(["x"])


def test_bad_model_argument():
    with pytest.raises(DataError, match="pair"):
        TextEncoder((torch.nn.Linear(2, 2),), cache_dir=False).encode(["x"])
    with pytest.raises(DataError, match="model must be"):
        TextEncoder(42, cache_dir=False).encode(["x"])


@pytest.mark.parametrize("texts, match", [
    ("a single string", "single str"),
    (["ok", None], r"texts\[1\]"),
    (["ok", float("nan")], r"texts\[1\]"),
    (12, "sequence"),
])
def test_bad_texts(bert_pair, texts, match):
    enc = TextEncoder(bert_pair, cache_dir=False)
    with pytest.raises(DataError, match=match):
        enc.encode(texts)


def test_presets():
    b, g = BertEncoder(), GPTEncoder()
    assert b.pooling == "mean" and b.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert g.pooling == "last" and "SmolLM2" in g.model
    assert isinstance(b, TextEncoder) and isinstance(g, TextEncoder)
    assert set(b.get_params()) == set(TextEncoder().get_params())
    assert clone(g).get_params(deep=False) == g.get_params(deep=False)


# -- encoding ---------------------------------------------------------------------------------

def test_encode_shape_dtype_normalised(bert_pair):
    enc = TextEncoder(bert_pair, cache_dir=False)
    X = enc.encode(TEXTS)
    assert X.shape == (len(TEXTS), 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(X[1], X[4])  # same text, same vector
    assert enc.output_dim == 32 and enc.hidden_size == 32
    raw = TextEncoder(bert_pair, cache_dir=False, normalize=False).encode(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_empty_input(bert_pair):
    enc = TextEncoder(bert_pair, cache_dir=False, projection_dim=5, random_state=0)
    assert enc.encode([]).shape == (0, 5)
    assert enc.encode_tensor([]).shape == (0, 5)
    assert enc.encode_base([]).shape == (0, 32)


@pytest.mark.parametrize("kind, side", [("bert", "right"), ("gpt2", "right"), ("gpt2", "left")])
@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_batching_and_padding_do_not_change_vectors(kind, side, pooling):
    """Each text alone == the same text inside a padded, length-sorted batch."""
    enc = enc_for(kind, side, pooling=pooling, batch_size=3)
    X = enc.encode(TEXTS)
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(X, alone, atol=2e-6)
    rev = enc.encode(TEXTS[::-1])[::-1]  # input order is restored after sorting
    np.testing.assert_allclose(X, rev, atol=2e-6)


def test_left_and_right_padding_agree_for_gpt2():
    left = enc_for("gpt2", "left", batch_size=4).encode(TEXTS)
    right = enc_for("gpt2", "right", batch_size=4).encode(TEXTS)
    np.testing.assert_allclose(left, right, atol=2e-6)


def test_pooling_matches_a_manual_computation(bert_pair, gpt2_pair):
    model, tok = bert_pair
    text = "Toy Story (1995)"
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        h = model(input_ids=ids).last_hidden_state[0]
    for pooling, expected in (("mean", h.mean(0)), ("cls", h[0]), ("last", h[-1])):
        got = TextEncoder(bert_pair, pooling=pooling, normalize=False, cache_dir=False).encode([text])
        np.testing.assert_allclose(got[0], expected.numpy(), atol=1e-5, err_msg=pooling)
    gmodel, gtok = gpt2_pair
    gids = torch.tensor([gtok(text)["input_ids"]])
    with torch.no_grad():
        gh = gmodel(input_ids=gids).last_hidden_state[0]
    got = TextEncoder(gpt2_pair, normalize=False, cache_dir=False).encode([text])
    np.testing.assert_allclose(got[0], gh[-1].numpy(), atol=1e-5)


def test_auto_pooling_and_pad_token(bert_pair, gpt2_pair):
    assert gpt2_pair[1].pad_token is None
    b = TextEncoder(bert_pair, cache_dir=False)
    g = TextEncoder(gpt2_pair, cache_dir=False)
    assert b.resolved_pooling == "mean" and not b.is_decoder
    assert g.resolved_pooling == "last" and g.is_decoder
    g.encode(["x", "longer text"])
    assert gpt2_pair[1].pad_token == gpt2_pair[1].eos_token


def test_auto_pooling_follows_sentence_transformers_config(tmp_path, bert_pair):
    model, tok = bert_pair
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
        ' {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert TextEncoder(str(tmp_path), cache_dir=False).resolved_pooling == "cls"


def test_local_directory_equals_in_memory_pair(tmp_path, bert_pair):
    model, tok = bert_pair
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    a = TextEncoder(str(tmp_path / "m"), cache_dir=False).encode(TEXTS)
    b = TextEncoder(bert_pair, cache_dir=False).encode(TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_truncation_to_max_length(bert_pair):
    enc = TextEncoder(bert_pair, max_length=8, cache_dir=False)
    a, b = enc.encode(["abcdefghijklmnop", "abcdefxyz"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # both cut to [CLS] a b c d e f [SEP]


def test_show_progress_runs(bert_pair):
    X = TextEncoder(bert_pair, cache_dir=False, batch_size=2).encode(TEXTS, show_progress=True)
    assert X.shape[0] == len(TEXTS)


# -- disk cache -------------------------------------------------------------------------------

def test_second_encode_runs_no_forward_pass(bert_pair, tmp_path, count_forward):
    enc = TextEncoder(bert_pair, cache_dir=tmp_path / "c")
    counter = count_forward(enc.backbone)
    X = enc.encode(TEXTS)
    assert counter.calls >= 1
    assert counter.rows == len(set(TEXTS))  # duplicates are encoded once
    counter.reset()
    X2 = enc.encode(TEXTS)
    assert counter.calls == 0
    np.testing.assert_array_equal(X, X2)
    fresh = TextEncoder(bert_pair, cache_dir=tmp_path / "c")
    fresh_counter = count_forward(fresh.backbone)
    np.testing.assert_array_equal(fresh.encode(TEXTS[::-1]), X[::-1])
    assert fresh_counter.calls == 0
    assert enc.cache_info()["entries"] == len(set(TEXTS))
    assert list((tmp_path / "c").glob("*/shard-*.safetensors"))


def test_partial_hits_compute_only_the_missing_texts(bert_pair, tmp_path, count_forward):
    enc = TextEncoder(bert_pair, cache_dir=tmp_path)
    counter = count_forward(enc.backbone)
    enc.encode(TEXTS[:3])
    counter.reset()
    X = enc.encode(TEXTS)
    assert counter.rows == len(set(TEXTS)) - 3
    np.testing.assert_allclose(X, TextEncoder(bert_pair, cache_dir=False).encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize("change", [{"pooling": "cls"}, {"max_length": 4},
                                    {"normalize": False}])
def test_changed_settings_never_reuse_vectors(bert_pair, tmp_path, count_forward, change):
    base = TextEncoder(bert_pair, cache_dir=tmp_path)
    X = base.encode(TEXTS)
    other = TextEncoder(bert_pair, cache_dir=tmp_path, **change)
    counter = count_forward(other.backbone)
    Y = other.encode(TEXTS)
    assert counter.rows == len(set(TEXTS)), "vectors of other settings were reused"
    assert other.cache.namespace != base.cache.namespace
    assert not np.allclose(X, Y)


def test_changed_model_never_reuses_vectors(tmp_path, count_forward):
    model, tok = tiny_text_model("bert", seed=0)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    cache = tmp_path / "cache"
    X = TextEncoder(str(folder), cache_dir=cache).encode(TEXTS)
    other, _ = tiny_text_model("bert", seed=1)  # same config, other weights, same path
    other.save_pretrained(folder)
    enc = TextEncoder(str(folder), cache_dir=cache)
    counter = count_forward(enc.backbone)
    Y = enc.encode(TEXTS)
    assert counter.rows == len(set(TEXTS))
    assert not np.allclose(X, Y)
    # in-memory models are fingerprinted by their weights too
    a = TextEncoder(tiny_text_model("bert", seed=0), cache_dir=cache)
    b = TextEncoder(tiny_text_model("bert", seed=2), cache_dir=cache)
    assert a.cache.namespace != b.cache.namespace


def test_cached_local_model_is_not_even_loaded(tmp_path, bert_pair):
    model, tok = bert_pair
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    X = TextEncoder(str(tmp_path / "m"), cache_dir=tmp_path / "c").encode(TEXTS)
    fresh = TextEncoder(str(tmp_path / "m"), cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(fresh.encode(TEXTS), X)
    assert not fresh.is_loaded


def test_cache_disabled_and_default_folder(bert_pair, tmp_path, monkeypatch):
    enc = TextEncoder(bert_pair, cache_dir=False)
    enc.encode(TEXTS)
    assert enc.cache is None and enc.cache_info() is None
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "env-cache"))
    TextEncoder(bert_pair).encode(TEXTS)
    assert list((tmp_path / "env-cache").glob("*/shard-*.safetensors"))


def test_unwritable_cache_falls_back_with_a_warning(bert_pair, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    enc = TextEncoder(bert_pair, cache_dir=blocker)
    with pytest.warns(UserWarning, match="not usable"):
        X = enc.encode(TEXTS)
    assert X.shape == (len(TEXTS), 32)


def test_threads_sharing_a_cache(bert_pair, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    reference = TextEncoder(bert_pair, cache_dir=False).encode(TEXTS)
    encoders = [TextEncoder(tiny_text_model("bert", seed=0), cache_dir=tmp_path) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda e: e.encode(TEXTS), encoders))
    for r in results:
        np.testing.assert_allclose(r, reference, atol=1e-6)
    again = TextEncoder(bert_pair, cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(TEXTS), reference, atol=1e-6)


# -- training -----------------------------------------------------------------------------------

def test_frozen_encoder_has_no_trainable_state(bert_pair):
    enc = TextEncoder(bert_pair, cache_dir=False).load_model()
    assert list(enc.parameters()) == [] and enc.state_dict() == {}
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    out = enc.encode_tensor(TEXTS)
    assert not out.requires_grad and out.shape == (len(TEXTS), 32)


def test_projection_head_trains_alone(bert_pair, tmp_path):
    enc = TextEncoder(bert_pair, projection_dim=6, random_state=0, cache_dir=tmp_path).load_model()
    names = [n for n, _ in enc.named_parameters()]
    assert names == ["projection.weight", "projection.bias"]
    assert set(enc.state_dict()) == {"projection.weight", "projection.bias"}
    out = enc.encode_tensor(TEXTS)
    assert out.shape == (len(TEXTS), 6) and out.requires_grad
    out.pow(2).sum().backward()
    assert enc.projection.weight.grad is not None
    np.testing.assert_allclose(enc.encode(TEXTS), out.detach().numpy(), atol=1e-6)
    base = torch.from_numpy(enc.encode_base(TEXTS))
    torch.testing.assert_close(enc.project(base), out)
    with pytest.raises(DataError, match="shape"):
        enc.project(torch.zeros(2, 5))


def test_projection_init_is_seeded(bert_pair):
    a = TextEncoder(bert_pair, projection_dim=4, random_state=1, cache_dir=False).load_model()
    b = TextEncoder(bert_pair, projection_dim=4, random_state=1, cache_dir=False).load_model()
    c = TextEncoder(bert_pair, projection_dim=4, random_state=2, cache_dir=False).load_model()
    assert torch.equal(a.projection.weight, b.projection.weight)
    assert not torch.equal(a.projection.weight, c.projection.weight)


def test_full_fine_tuning(gpt2_pair, tmp_path, count_forward):
    enc = TextEncoder(gpt2_pair, trainable=True, cache_dir=tmp_path).load_model()
    assert enc.cache is None  # weights change: never cached
    assert any(n.startswith("backbone.") for n, _ in enc.named_parameters())
    assert any(k.startswith("backbone.") for k in enc.state_dict())
    enc.train()
    out = enc.encode_tensor(TEXTS)
    assert out.requires_grad
    out.sum().backward()
    grads = [p.grad for p in enc.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    counter = count_forward(enc.backbone)
    a = enc.encode(TEXTS)
    b = enc.encode(TEXTS)
    assert counter.calls >= 2  # no cache
    np.testing.assert_array_equal(a, b)  # encode runs in eval mode even while training
    assert enc.training and enc.backbone.training  # and restores the mode


def test_state_dict_loads_into_an_unloaded_encoder(gpt2_pair):
    src = TextEncoder(gpt2_pair, trainable=True, projection_dim=4, random_state=0, cache_dir=False)
    with torch.no_grad():
        src.load_model().backbone.wte.weight.mul_(1.5)
    state = src.state_dict()
    dst = TextEncoder(tiny_text_model("gpt2", seed=0), trainable=True, projection_dim=4,
                      random_state=9, cache_dir=False)
    assert not dst.is_loaded
    dst.load_state_dict(state)
    np.testing.assert_allclose(dst.encode(TEXTS), src.encode(TEXTS), atol=1e-6)


def test_nested_in_a_parent_module(bert_pair):
    parent = torch.nn.Module()
    parent.text = TextEncoder(bert_pair, projection_dim=3, random_state=0, cache_dir=False)
    assert set(parent.state_dict()) == {"text.projection.weight", "text.projection.bias"}
    other = torch.nn.Module()
    other.text = TextEncoder(tiny_text_model("bert"), projection_dim=3, random_state=5,
                             cache_dir=False)
    other.load_state_dict(parent.state_dict())
    np.testing.assert_allclose(other.text.encode(TEXTS), parent.text.encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize("kind, kwargs", [
    ("bert", {}),
    ("bert", {"projection_dim": 8}),
    ("gpt2", {"pooling": "mean"}),
    ("gpt2", {"trainable": True}),
    ("bert", {"trainable": True, "projection_dim": 4}),
])
def test_common_component_contract(kind, kwargs):
    done = check_component(
        lambda: TextEncoder(tiny_text_model(kind, seed=0), cache_dir=False, random_state=0,
                            **kwargs),
        inputs=(TEXTS,), n_rows=len(TEXTS))
    assert "check_state_dict_roundtrip" in done


# -- devices ------------------------------------------------------------------------------------

def test_cpu_device_and_moves(bert_pair):
    enc = TextEncoder(bert_pair, device="cpu", projection_dim=4, random_state=0, cache_dir=False)
    assert enc.to("cpu") is enc
    out = enc.encode_tensor(TEXTS)
    assert out.device.type == "cpu"


def test_conversions_through_a_parent_reach_the_frozen_model(bert_pair):
    parent = torch.nn.Module()
    parent.text = TextEncoder(bert_pair, projection_dim=3, random_state=0, cache_dir=False)
    ref = parent.text.encode(TEXTS)
    parent.double()  # nn.Module._apply on the child, not .to() on it
    assert parent.text.backbone.embeddings.word_embeddings.weight.dtype == torch.float64
    assert parent.text.encode_tensor(TEXTS).dtype == torch.float64
    out = parent.text.encode(TEXTS)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
    unloaded = TextEncoder(bert_pair, cache_dir=False).to("cpu")
    assert unloaded._compute_device().type == "cpu" and not unloaded.is_loaded


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_raises(bert_pair):
    with pytest.raises(DeviceError, match="CUDA"):
        TextEncoder(bert_pair, device="cuda", cache_dir=False).encode(["x"])


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_cuda_with_autocast_matches_cpu(tmp_path):
    cpu = TextEncoder(tiny_text_model("bert"), device="cpu", cache_dir=tmp_path).encode(TEXTS)
    enc = TextEncoder(tiny_text_model("bert"), device="cuda", cache_dir=tmp_path)
    gpu = enc.encode(TEXTS)
    np.testing.assert_allclose(gpu, cpu, atol=3e-2)
    assert enc.cache_key()["precision"] in ("bfloat16", "float16")
    moved = TextEncoder(tiny_text_model("bert"), device="cpu", cache_dir=False).to("cuda")
    assert moved.encode_tensor(TEXTS).device.type == "cuda"
