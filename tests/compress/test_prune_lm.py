"""compress.prune of an LMRanker (tiny in-memory BERT): heads and FFN units removed from every
layer, the smaller model saved and loaded with the same scores; magnitude pruning; distilling
the two-stage into a SequentialRecommender student."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from maasrec import load
from maasrec.compress.distillation import distill
from maasrec.compress.pruning import prune, sparsity
from maasrec.data import Interactions, ItemFeatures
from maasrec.exceptions import DataError
from maasrec.lm_ranker import LMRanker
from maasrec.models import EASE
from maasrec.neural import SequentialRecommender
from maasrec.testing.components import tiny_text_model

# a tiny LMRanker fit (~40 s on a busy 2-core machine)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

WORDS = {0: "action war space", 1: "love story drama"}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    group = {1000 + i: i % 2 for i in range(24)}
    rows = []
    for u in range(36):
        own = [i for i, g in group.items() if g == u % 2]
        for t, i in enumerate(rng.choice(own, size=6, replace=False)):
            rows.append((f"u{u}", int(i), t))
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    feats = ItemFeatures.from_pandas(pd.DataFrame({
        "item": list(group), "text": [f"{WORDS[g]} film {i % 7}" for i, g in group.items()]}),
        "item", text="text")
    model = LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"), n_candidates=12,
                     history_len=3, max_length=80, epochs=1, learning_rate=2e-3, batch_size=20,
                     random_state=0).fit(X, item_features=feats)
    return X, model


def _layers(model):
    return model._lm.backbone.encoder.layer


def test_structured_pruning_shrinks_heads_and_ffn(fitted, tmp_path):
    X, model = fitted
    pruned = prune(model, X, amount=0.5, epochs=1)
    for lay in _layers(pruned):  # 4 heads of 8 -> 2; FFN 64 -> 32
        assert tuple(lay.attention.self.query.weight.shape) == (16, 32)
        assert tuple(lay.attention.output.dense.weight.shape) == (32, 16)
        assert tuple(lay.intermediate.dense.weight.shape) == (32, 32)
        assert tuple(lay.output.dense.weight.shape) == (32, 32)
    assert tuple(_layers(model)[0].attention.self.query.weight.shape) == (32, 32)
    assert pruned.compression_["parameters_after"] < pruned.compression_["parameters_before"]
    users = list(X.user_vocab.ids[:6])
    ids, scores = pruned.recommend(users, k=5)
    path = pruned.save(tmp_path / "lm")
    meta = json.loads(open(os.path.join(path, "lm", "maasrec_lm.json")).read())
    assert meta["pruned"] == {"heads": [2, 2], "intermediate": [32, 32]}
    loaded = load(path)
    ids2, scores2 = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    with pytest.raises(DataError, match="already pruned"):
        prune(loaded, X, epochs=0)


def test_tampered_pruned_sizes_are_refused(fitted, tmp_path):
    from maasrec.exceptions import ModelFormatError

    X, model = fitted
    path = prune(model, X, amount=0.5, epochs=0).save(tmp_path / "lm")
    meta_path = os.path.join(path, "lm", "maasrec_lm.json")
    meta = json.loads(open(meta_path).read())
    meta["pruned"] = {"heads": [9, 2], "intermediate": [32, 32]}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    manifest = json.loads(open(os.path.join(path, "maasrec.json")).read())
    import hashlib

    data = open(meta_path, "rb").read()
    manifest["files"]["lm/maasrec_lm.json"] = {"size": len(data),
                                               "sha256": hashlib.sha256(data).hexdigest()}
    with open(os.path.join(path, "maasrec.json"), "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ModelFormatError, match=r"outside 1\.\.4"):
        load(path)


def test_magnitude_pruning_of_the_cross_encoder(fitted):
    X, model = fitted
    pruned = prune(model, X, method="magnitude", amount=0.5, epochs=0)
    for lay in _layers(pruned):
        w = lay.intermediate.dense.weight
        assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert sparsity(pruned)["linear"] > 0.4 and sparsity(model)["linear"] == 0.0


def test_two_stage_distilled_into_a_sequential_student(fitted):
    X, model = fitted
    s = distill(model, SequentialRecommender(max_len=6, dim=8, n_layers=1, n_heads=1,
                                             epochs=3, batch_size=16, random_state=0,
                                             validation_fraction=None), X, n_candidates=6)
    assert s.compression_["mode"] == "lists" and s.compression_["teacher"] == "LMRanker"
    ids, _ = s.recommend(list(X.user_vocab.ids[:4]), k=12)
    assert ids.shape == (4, 12)  # the student ranks the whole catalogue, no cross-encoder
