"""HybridRecommender's parts: typed configuration, scorer variants, training state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from maasrec.exceptions import DataError, ModelFormatError
from maasrec.neural import HybridRecommender, NeuMF
from maasrec.neural._hybrid_config import ComponentSpec, HybridSpec, parse_spec
from maasrec.neural._hybrid_scorers import (
    AttentionScoring,
    DotScoring,
    NeuMFScoring,
    scoring_for,
)
from maasrec.testing import tiny_interactions


def test_parse_spec_is_typed_and_names_bad_values():
    spec = parse_spec(HybridRecommender(item_encoders=["id", "features"],
                                        fusion={"kind": "gated"},
                                        scorer={"kind": "neumf", "mlp_layers": [8]}))
    assert isinstance(spec, HybridSpec)
    assert spec.item == {"id": None, "features": None} and spec.user is None
    assert spec.fusion == ComponentSpec("gated", {})
    assert spec.scorer == ComponentSpec("neumf", {"mlp_layers": [8]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.item = {}
    for bad, word in [(dict(scorer="cosine"), "cosine"), (dict(fusion={"dropout": 0.1}),
                                                          "kind"),
                      (dict(item_encoders=["id", "id"]), "twice"),
                      (dict(user_encoders=["history", "pixels"]), "pixels")]:
        with pytest.raises(DataError, match=word):
            parse_spec(HybridRecommender(**bad))


def test_auto_modalities_resolve_against_the_features():
    spec = parse_spec(HybridRecommender())
    assert spec.resolve(None, None) == ({"id": None}, {"history": None})
    with pytest.raises(DataError, match="text"):
        parse_spec(HybridRecommender(item_encoders=["id", "text"])).resolve(None, None)


def test_one_scoring_class_per_scorer_kind():
    assert isinstance(scoring_for("dot"), DotScoring)
    assert isinstance(scoring_for("neumf"), NeuMFScoring)
    assert isinstance(scoring_for("attention"), AttentionScoring)
    with pytest.raises(ModelFormatError, match="'cosine'"):
        scoring_for("cosine")
    with pytest.raises(DataError, match="history"):
        scoring_for("attention").check_user_modalities({"id": None})
    # the scorer module's options come from the variant
    opts = dict(dim=8, seed=1, item_bias=False, n_items=5)
    assert scoring_for("dot").scorer_options({}, loss="mse", **opts) == {"global_bias": True}
    assert set(scoring_for("neumf").scorer_options({}, loss="bce", **opts)) == {
        "dim", "random_state"}
    assert scoring_for("attention").user_tower_config({"history": {}, "id": {}}) == {"id": {}}


@pytest.mark.parametrize("factory", [
    lambda: HybridRecommender(dim=8, epochs=2, random_state=0),
    lambda: HybridRecommender(dim=8, epochs=2, scorer="attention", loss="bpr",
                              random_state=0),
    lambda: NeuMF(dim=8, mlp_layers=(8,), epochs=2, random_state=0),
])
def test_training_state_does_not_stay_on_the_model(factory):
    before = set(vars(factory()))
    m = factory().fit(tiny_interactions())
    private = {k for k in set(vars(m)) - before if k.startswith("_")}
    # what a fitted model keeps besides its fitted attributes: the scorer variant, the
    # retrieval cache, the device and the base class's caches -- no training tensors
    assert private <= {"_scoring", "_vectors_cache", "_device", "_pop_cache",
                       "_text_encoder_obj"}, private
    kind = {"dot": DotScoring, "attention": AttentionScoring, "neumf": NeuMFScoring}
    assert isinstance(m._scoring, kind[m.config_["scorer"]])
    assert np.isfinite(m.item_repr_).all()
