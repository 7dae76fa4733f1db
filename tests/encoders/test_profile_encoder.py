"""UserProfileEncoder / ItemProfileEncoder: features + text + vectors, fused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec.data import IdVocab, UserFeatures
from maasrec.encoders import ItemProfileEncoder, TextEncoder, UserProfileEncoder
from maasrec.exceptions import DataError
from maasrec.testing.components import check_component


@pytest.fixture
def users() -> UserFeatures:
    df = pd.DataFrame({
        "user": ["u1", "u2", "u3", "u4"],
        "age": [25, 35, np.nan, 18],
        "gender": ["F", "M", "M", None],
        "occupation": ["writer", "doctor", None, "student"],
        "bio": ["loves old westerns", None, "horror and sci-fi", ""],
    })
    return UserFeatures.from_pandas(df, "user", text="bio", categorical=["gender", "occupation"],
                                    numeric="age")


@pytest.fixture
def text_encoder(bert_pair, tmp_path):
    return TextEncoder(bert_pair, cache_dir=tmp_path / "cache")


def test_user_profile_with_text(users, text_encoder):
    enc = UserProfileEncoder.from_features(users, 8, text_encoder=text_encoder, random_state=0)
    assert enc.modalities == ["features", "text"]
    out = enc()
    assert out.shape == (4, 8) and enc.output_dim == 8
    weights = enc.modality_weights()
    assert set(weights) == {"features", "text"}
    text_w = weights["text"].tolist()
    assert text_w[1] == 0 and text_w[3] == 0  # users without a bio
    assert weights["features"][1] == pytest.approx(1.0)
    assert enc.last_weights.shape == (4, 2)
    assert enc.mask().all()
    torch.testing.assert_close(enc(torch.tensor([2, 0])), out[[2, 0]])


def test_text_vectors_come_from_the_text_encoder(users, text_encoder):
    enc = UserProfileEncoder.from_features(users, 8, text_encoder=text_encoder, random_state=0)
    stored = enc.encoders["text"].vectors
    want = text_encoder.encode(["loves old westerns", "horror and sci-fi"])
    np.testing.assert_allclose(stored[[0, 2]].numpy(), want, atol=1e-6)
    assert (stored[[1, 3]] == 0).all()


def test_without_text_encoder_the_text_is_ignored(users):
    enc = UserProfileEncoder.from_features(users, 4, random_state=0)
    assert enc.modalities == ["features"]


def test_vocab_alignment_and_missing_users(users, text_encoder):
    vocab = IdVocab(np.array(["u3", "u1", "nobody"]), name="user")
    enc = UserProfileEncoder.from_features(users, 4, text_encoder=text_encoder, vocab=vocab,
                                           fusion="concat", random_state=0)
    assert enc().shape == (3, 4)
    assert enc.mask().tolist() == [True, True, False]


def test_item_profile_with_vectors():
    from maasrec.data import ItemFeatures

    img = np.random.default_rng(1).normal(size=(3, 5))
    img[1] = np.nan
    df = pd.DataFrame({"item": [1, 2, 3], "genres": ["A|B", "B", ""]})
    f = ItemFeatures.from_pandas(df, "item", multi_hot="genres", vectors={"img": img})
    enc = ItemProfileEncoder.from_features(f, 4, fusion="attention",
                                           fusion_options={"num_heads": 2}, random_state=0)
    assert enc.modalities == ["features", "vectors:img"]
    w = enc.modality_weights()
    assert w["vectors:img"][1] == 0 and w["features"][2] == 0
    assert w["vectors:img"][2] == pytest.approx(1.0)


@pytest.mark.parametrize("fusion", ["gated", "concat", "attention"])
def test_config_round_trip(users, text_encoder, fusion):
    enc = UserProfileEncoder.from_features(users, 8, text_encoder=text_encoder, fusion=fusion,
                                           random_state=0)
    again = UserProfileEncoder.from_config(enc.get_config())
    again.load_state_dict(enc.state_dict())
    torch.testing.assert_close(again.eval()(), enc.eval()())


@pytest.mark.parametrize("fusion", ["gated", "concat", "attention"])
def test_contract(users, text_encoder, fusion):
    check_component(lambda: UserProfileEncoder.from_features(
        users, 8, text_encoder=text_encoder, fusion=fusion, random_state=0), n_rows=4)


def test_errors(users):
    with pytest.raises(DataError, match="at least one"):
        UserProfileEncoder(3, 4)
    with pytest.raises(DataError, match="'nope'"):
        UserProfileEncoder.from_features(users, 4, numeric=["nope"])
    with pytest.raises(DataError, match="UserFeatures"):
        UserProfileEncoder.from_features(pd.DataFrame(), 4)
    with pytest.raises(DataError, match="fusion"):
        UserProfileEncoder.from_features(users, 4, fusion="sum")
