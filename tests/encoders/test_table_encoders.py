"""IdEmbedding, FeatureEncoder and PrecomputedEncoder: rows aligned to a vocabulary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec.data import IdVocab, ItemFeatures
from maasrec.encoders import FeatureEncoder, IdEmbedding, PrecomputedEncoder
from maasrec.exceptions import DataError
from maasrec.testing.components import check_component


@pytest.fixture
def items() -> ItemFeatures:
    df = pd.DataFrame({
        "item": [10, 20, 30, 40, 50],
        "genre": ["drama", "comedy", None, "drama", "horror"],
        "genres": ["Action|Drama", "Comedy", "", None, "Horror|Action|Sci-Fi"],
        "year": [1995, np.nan, 2001, 1977, 2010],
        "runtime": [90, 120, np.nan, np.nan, 100],
    })
    img = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    img[2] = np.nan
    return ItemFeatures.from_pandas(df, "item", categorical="genre", multi_hot="genres",
                                    numeric=["year", "runtime"], vectors={"img": img})


# -- IdEmbedding -------------------------------------------------------------------------------

def test_id_embedding_shapes_and_seed():
    emb = IdEmbedding(7, 4, random_state=0)
    assert emb().shape == (7, 4) and emb.output_dim == 4
    assert emb(torch.tensor([6, 0, 6])).shape == (3, 4)
    assert emb(np.array([1, 2])).shape == (2, 4)
    assert torch.equal(IdEmbedding(7, 4, random_state=0).weight, emb.weight)
    assert not torch.equal(IdEmbedding(7, 4, random_state=1).weight, emb.weight)
    assert emb.mask().all() and emb.mask([1, 2]).shape == (2,)
    std = IdEmbedding(2000, 16, random_state=0).weight.std().item()
    assert abs(std - 0.25) < 0.02  # 1 / sqrt(dim)


def test_id_embedding_errors():
    emb = IdEmbedding(3, 2, random_state=0)
    with pytest.raises(DataError, match=r"\[3\]"):
        emb(torch.tensor([0, 3]))
    with pytest.raises(DataError, match="integers"):
        emb(torch.tensor([0.5]))
    for bad in ({"n": 0, "dim": 2}, {"n": 3, "dim": 2.5}):
        with pytest.raises(DataError):
            IdEmbedding(**bad)
    with pytest.raises(DataError, match="init_std"):
        IdEmbedding(3, 2, init_std=-1)


def test_id_embedding_config_round_trip():
    emb = IdEmbedding(5, 3, random_state=2)
    again = IdEmbedding.from_config(emb.get_config())
    again.load_state_dict(emb.state_dict())
    assert torch.equal(again(), emb())


def test_id_embedding_contract():
    check_component(lambda: IdEmbedding(9, 4, random_state=0), inputs=(torch.tensor([1, 8, 1]),),
                    n_rows=3)
    check_component(lambda: IdEmbedding(9, 4, random_state=0), n_rows=9)


# -- FeatureEncoder --------------------------------------------------------------------------

def test_feature_encoder_fields_and_masks(items):
    enc = FeatureEncoder.from_features(items, 8, random_state=0)
    assert enc.fields == ["cat:genre", "multi:genres", "numeric"]
    out = enc()
    assert out.shape == (5, 8)
    vectors, masks = enc.field_outputs()
    assert masks["cat:genre"].tolist() == [True, True, False, True, True]
    assert masks["multi:genres"].tolist() == [True, True, False, False, True]
    assert masks["numeric"].tolist() == [True, True, True, True, True]
    assert (vectors["cat:genre"][2] == 0).all()  # missing category: the zero padding row
    sub = enc(torch.tensor([4, 0]))
    torch.testing.assert_close(sub, out[[4, 0]])
    sub_vectors, _ = enc.field_outputs([4, 2, 0])
    torch.testing.assert_close(sub_vectors["multi:genres"], vectors["multi:genres"][[4, 2, 0]])


def test_feature_encoder_numeric_standardisation(items):
    enc = FeatureEncoder.from_features(items, 4, numeric=["year"], categorical=[], multi_hot=[],
                                       random_state=0)
    years = np.array([1995, 2001, 1977, 2010], dtype=np.float32)
    np.testing.assert_allclose(enc.numeric_mean.item(), years.mean(), rtol=1e-6)
    np.testing.assert_allclose(enc.numeric_std.item(), years.std(), rtol=1e-5)
    assert enc.fields == ["numeric"]
    assert enc.mask().tolist() == [True, False, True, True, True]


def test_feature_encoder_multi_hot_mean_bag(items):
    enc = FeatureEncoder.from_features(items, 4, categorical=[], numeric=[], random_state=0)
    labels = enc.multi_hot["genres"]
    table = enc.bag_embeddings[0].weight
    want = (table[labels.index("Action")] + table[labels.index("Drama")]) / 2
    torch.testing.assert_close(enc()[0], want)
    assert (enc()[2] == 0).all() and (enc()[3] == 0).all()


def test_feature_encoder_concat_and_unseen_labels(items):
    enc = FeatureEncoder.from_features(items, 6, combine="concat", random_state=0)
    assert enc().shape == (5, 6)
    df = pd.DataFrame({"item": [10, 20, 30, 40, 50],
                       "genre": ["western", "comedy", "drama", None, None],
                       "genres": ["Western|Drama", "", "", "", ""],
                       "year": [2000, 2000, 2000, 2000, 2000], "runtime": [1, 2, 3, 4, 5]})
    new = ItemFeatures.from_pandas(df, "item", categorical="genre", multi_hot="genres",
                                   numeric=["year", "runtime"])
    enc.set_data(new)
    _, masks = enc.field_outputs()
    assert masks["cat:genre"].tolist() == [False, True, True, False, False]  # western unseen
    assert masks["multi:genres"].tolist() == [True, False, False, False, False]  # Drama kept


def test_feature_encoder_aligns_to_a_vocab(items):
    vocab = IdVocab(np.array([50, 10, 999]), name="item")
    enc = FeatureEncoder.from_features(items, 4, vocab=vocab, random_state=0)
    full = FeatureEncoder.from_features(items, 4, random_state=0)
    assert enc().shape == (3, 4)
    for field in ("cat:genre", "multi:genres"):  # (numeric statistics are fitted on the rows)
        torch.testing.assert_close(enc.field_outputs()[0][field][0],
                                   full.field_outputs()[0][field][4])
    assert enc.mask().tolist() == [True, True, False]


def test_feature_encoder_config_round_trip(items):
    enc = FeatureEncoder.from_features(items, 5, random_state=3)
    again = FeatureEncoder.from_config(enc.get_config())
    again.load_state_dict(enc.state_dict())  # bag indices are resized on load
    torch.testing.assert_close(again(), enc())


def test_feature_encoder_errors(items):
    with pytest.raises(DataError, match="'nope'"):
        FeatureEncoder.from_features(items, 4, categorical=["nope"])
    with pytest.raises(DataError, match="at least one"):
        FeatureEncoder(3, 4)
    with pytest.raises(DataError, match="combine"):
        FeatureEncoder(3, 4, numeric=["x"], combine="max")
    enc = FeatureEncoder.from_features(items, 4, random_state=0)
    with pytest.raises(DataError, match="rows"):
        enc.set_data(items.align(IdVocab(np.array([10]), name="item")))
    with pytest.raises(DataError, match="ItemFeatures"):
        FeatureEncoder.from_features({"a": 1}, 4)


@pytest.mark.parametrize("combine", ["mean", "concat"])
def test_feature_encoder_contract(items, combine):
    check_component(lambda: FeatureEncoder.from_features(items, 8, combine=combine,
                                                         random_state=0), n_rows=5)
    check_component(lambda: FeatureEncoder.from_features(items, 8, combine=combine,
                                                         random_state=0),
                    inputs=(torch.tensor([3, 3, 0]),), n_rows=3)


# -- PrecomputedEncoder ---------------------------------------------------------------------

def test_precomputed_masks_missing_rows(items):
    enc = PrecomputedEncoder.from_features(items, "img", dim=3, random_state=0)
    out = enc()
    assert out.shape == (5, 3)
    assert enc.mask().tolist() == [True, True, False, True, True]
    assert (out[2] == 0).all()
    raw = PrecomputedEncoder.from_features(items, "img")
    assert list(raw.parameters()) == [] and raw.output_dim == 6
    np.testing.assert_allclose(raw()[0].numpy(), items.vectors["img"][0], rtol=1e-6)
    normed = PrecomputedEncoder.from_features(items, "img", normalize=True)
    np.testing.assert_allclose(normed()[[0, 1, 3, 4]].norm(dim=1).numpy(), 1.0, rtol=1e-5)
    assert normed()[2].abs().sum() == 0


def test_precomputed_explicit_mask_and_errors():
    v = np.ones((3, 2), dtype=np.float32)
    enc = PrecomputedEncoder.from_vectors(v, mask=np.array([True, False, True]))
    assert enc.mask().tolist() == [True, False, True]
    assert enc(torch.tensor([1])).abs().sum() == 0
    bad = v.copy()
    bad[0, 1] = np.nan
    with pytest.raises(DataError, match="partly"):
        PrecomputedEncoder.from_vectors(bad)
    with pytest.raises(DataError, match="shape"):
        PrecomputedEncoder.from_vectors(np.ones(3))
    with pytest.raises(DataError, match="mask"):
        PrecomputedEncoder.from_vectors(v, mask=[1, 0, 1])
    with pytest.raises(DataError, match="'nope'"):
        PrecomputedEncoder.from_features(ItemFeatures(IdVocab(np.arange(3))), "nope")


@pytest.mark.parametrize("dim", [None, 4])
def test_precomputed_contract(items, dim):
    check_component(lambda: PrecomputedEncoder.from_features(items, "img", dim=dim,
                                                             random_state=0), n_rows=5)
