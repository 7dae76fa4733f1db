"""The one configuration rule of the building blocks (maasrec._config): get_config is the
constructor arguments, derived from the signature; pinned per block so the saved format stays."""

from __future__ import annotations

import json

import pytest
import torch

from maasrec._config import FromConfig
from maasrec.base import clone
from maasrec.encoders import FeatureEncoder, IdEmbedding, PrecomputedEncoder
from maasrec.encoders.profile import ItemProfileEncoder, ProfileEncoder, UserProfileEncoder
from maasrec.exceptions import DataError
from maasrec.fusion import AttentionFusion, ConcatFusion, GatedFusion
from maasrec.fusion.base import Fusion
from maasrec.scorers import AttentionScorer, DotScorer, NeuMFScorer
from maasrec.scorers.base import Scorer

DIMS = {"a": 4, "b": 6}
CAT = {"genre": ["a", "b", "c"]}

# (factory, get_config of that default instance). The values are the format saved models
# hold (HybridRecommender stores FeatureEncoder's); derived defaults (attention_dim,
# gmf_dim, hidden) are stored as the argument given, None.
PINNED = [
    (lambda: IdEmbedding(20, 8),
     {"n": 20, "dim": 8, "init_std": None, "random_state": None}),
    (lambda: PrecomputedEncoder(20, 6, 4),
     {"n": 20, "input_dim": 6, "dim": 4, "normalize": False, "random_state": None}),
    (lambda: FeatureEncoder(20, 8, categorical=CAT, multi_hot={"tags": ["x", "y"]},
                            numeric=["age"]),
     {"n": 20, "dim": 8, "categorical": CAT, "multi_hot": {"tags": ["x", "y"]},
      "numeric": ["age"], "combine": "mean", "random_state": None}),
    (lambda: UserProfileEncoder(20, 8, features={"categorical": CAT}, text_dim=5,
                                vectors={"img": 3}),
     {"n": 20, "dim": 8, "features": {"categorical": CAT}, "text_dim": 5,
      "vectors": {"img": 3}, "fusion": "gated", "fusion_options": {}, "random_state": None}),
    (lambda: ItemProfileEncoder(20, 8, text_dim=5, fusion="concat"),
     {"n": 20, "dim": 8, "features": None, "text_dim": 5, "vectors": {}, "fusion": "concat",
      "fusion_options": {}, "random_state": None}),
    (lambda: ConcatFusion(DIMS, 8),
     {"input_dims": DIMS, "dim": 8, "hidden": None, "dropout": 0.0, "random_state": None}),
    (lambda: GatedFusion(DIMS, 8),
     {"input_dims": DIMS, "dim": 8, "dropout": 0.0, "random_state": None}),
    (lambda: AttentionFusion(DIMS, 8),
     {"input_dims": DIMS, "dim": 8, "num_heads": 4, "dropout": 0.0, "random_state": None}),
    (lambda: DotScorer(),
     {"n_items": None, "item_bias": False, "n_users": None, "user_bias": False,
      "global_bias": False, "temperature": 1.0}),
    (lambda: DotScorer(n_items=7, item_bias=True, n_users=3, user_bias=True, global_bias=True),
     {"n_items": 7, "item_bias": True, "n_users": 3, "user_bias": True, "global_bias": True,
      "temperature": 1.0}),
    (lambda: NeuMFScorer(8),
     {"dim": 8, "gmf_dim": None, "mlp_layers": [64, 32, 16], "dropout": 0.0, "n_items": None,
      "item_bias": False, "random_state": None}),
    (lambda: AttentionScorer(8, n_items=7, item_bias=True),
     {"dim": 8, "attention_dim": None, "dropout": 0.0, "n_items": 7, "item_bias": True,
      "random_state": None}),
]


@pytest.mark.parametrize("factory, expected", PINNED)
def test_get_config_is_pinned_and_rebuilds(factory, expected):
    block = factory()
    cfg = block.get_config()
    assert cfg == expected
    assert list(cfg) == list(expected), "get_config keys follow the signature order"
    assert json.loads(json.dumps(cfg)) == cfg  # JSON-compatible as it is
    again = type(block).from_config(json.loads(json.dumps(cfg)))
    assert again.get_config() == cfg
    a, b = block.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert block.get_params(deep=False) == cfg


def test_no_block_writes_get_config_by_hand():
    blocks = [IdEmbedding, PrecomputedEncoder, FeatureEncoder, ProfileEncoder, Fusion,
              ConcatFusion, GatedFusion, AttentionFusion, Scorer, DotScorer, NeuMFScorer,
              AttentionScorer]
    for cls in blocks:
        assert issubclass(cls, FromConfig)
        assert "get_config" not in vars(cls), f"{cls.__name__} writes get_config by hand"


@pytest.mark.parametrize("cls, resolved, default", [
    (AttentionScorer, {"dim": 8, "attention_dim": 8}, {"dim": 8}),
    (NeuMFScorer, {"dim": 8, "gmf_dim": 4}, {"dim": 8}),
    (ConcatFusion, {"input_dims": DIMS, "dim": 8, "hidden": 8}, {"input_dims": DIMS, "dim": 8}),
])
def test_old_configs_with_resolved_defaults_build_the_same_block(cls, resolved, default):
    """Files written before the rule held the derived value; they rebuild the same block."""
    old = cls.from_config({**resolved, "random_state": 3})
    new = cls(**default, random_state=3)
    a, b = old.state_dict(), new.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_blocks_have_params_clone_set_params_and_repr():
    s = NeuMFScorer(8, mlp_layers=(6, 4), n_items=5, item_bias=True, random_state=1)
    assert s.get_params()["item_bias"] is True and s.get_params()["gmf_dim"] is None
    twin = clone(s)
    assert type(twin) is NeuMFScorer and twin.get_config() == s.get_config()
    assert all(torch.equal(x, y) for x, y in zip(s.state_dict().values(),
                                                  twin.state_dict().values()))
    text = repr(s)
    assert text.splitlines()[:2] == [
        "NeuMFScorer(", "  dim=8, mlp_layers=[6, 4], n_items=5, item_bias=True, random_state=1"]
    assert "(output): Linear" in text  # torch's module tree stays
    s.set_params(item_bias=False, dim=6)  # rebuilt from the new arguments
    assert s.item_bias is None and s.output.in_features == 3 + 4
    assert s.get_config() == {**twin.get_config(), "item_bias": False, "dim": 6}
    with pytest.raises(DataError, match="'dims' is not a parameter of NeuMFScorer"):
        s.set_params(dims=3)


def test_profile_encoder_stores_its_arguments_under_their_names():
    enc = UserProfileEncoder(10, 4, features={"categorical": CAT}, vectors={"img": 3})
    assert enc.features == {"categorical": CAT} and enc.vectors == {"img": 3}
    assert isinstance(enc.fusion, str) and enc.fusion_module is not None
