"""maasrec.compress.prune: structured pruning shrinks the matrices, magnitude pruning zeroes
weights, both fine-tune through the trainer and round-trip through save/load; refusals."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec import Interactions, Recommender
from maasrec.compress.pruning import prune, sparsity
from maasrec.exceptions import DataError, ModelFormatError, NotFittedError
from maasrec.models import EASE, Popularity
from maasrec.neural import SequentialRecommender

N_ITEMS = 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cyclic(n_users: int = 80, seed: int = 0) -> Interactions:
    """Users walk the cycle of items from a random start: the next item is planted."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for t in range(int(rng.integers(6, 11))):
            rows.append((f"u{u}", 100 + (start + t) % N_ITEMS, t))
    return Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


@pytest.fixture(scope="module")
def fitted():
    X = cyclic()
    model = SequentialRecommender(max_len=10, dim=32, n_layers=2, n_heads=4, dropout=0.1,
                                  epochs=25, batch_size=32, learning_rate=0.01,
                                  random_state=0, validation_fraction=None).fit(X)
    return X, model


def _hit_rate(model, X) -> float:
    """Share of cold histories of 4 consecutive items whose next item is ranked first."""
    hits = 0
    for s in range(N_ITEMS):
        hist = [100 + (s + t) % N_ITEMS for t in range(4)]
        ids, _ = model.recommend(history=hist, k=1)
        hits += int(ids[0] == 100 + (s + 4) % N_ITEMS)
    return hits / N_ITEMS


def test_structured_pruning_shrinks_every_block(fitted):
    X, model = fitted
    before = [b.qkv.weight.shape for b in model.network_.blocks]
    pruned = prune(model, X, amount=0.5, epochs=2)
    assert [b.qkv.weight.shape for b in model.network_.blocks] == before  # original intact
    for blk in pruned.network_.blocks:
        assert blk.n_heads == 2 and blk.head_dim == 8
        assert tuple(blk.qkv.weight.shape) == (3 * 16, 32)
        assert tuple(blk.proj.weight.shape) == (32, 16)
        assert tuple(blk.fc1.weight.shape) == (64, 32) and tuple(blk.fc2.weight.shape) == (32, 64)
    np.testing.assert_array_equal(pruned.block_shapes_, [[2, 64], [2, 64]])
    info = pruned.compression_
    assert info["parameters_after"] < info["parameters_before"]
    assert info["fine_tune"]["epochs_run"] == 2
    assert sparsity(pruned)["parameters"] == info["parameters_after"]


def test_structured_pruning_keeps_the_planted_pattern(fitted):
    X, model = fitted
    assert _hit_rate(model, X) >= 0.9
    assert _hit_rate(prune(model, X, heads=0.5, ffn=0.75, epochs=5), X) >= 0.9


def test_pruning_without_fine_tune_removes_the_weakest_units(fitted):
    """With no fine-tune, the kept heads and FFN units compute what they computed before:
    zeroing the removed units' weights in the unpruned network gives the same scores."""
    X, model = fitted
    pruned = prune(model, epochs=0, heads=0.5, ffn=0.5)
    ref = copy.deepcopy(model)
    for blk, small in zip(ref.network_.blocks, pruned.network_.blocks):
        hd, h = blk.head_dim, blk.n_heads
        w, pw = blk.qkv.weight.data, blk.proj.weight.data
        v = w[2 * h * hd:].reshape(h, hd, -1).flatten(1).norm(dim=1)
        p = pw.reshape(pw.shape[0], h, hd).permute(1, 0, 2).flatten(1).norm(dim=1)
        for head in torch.argsort(v * p)[: h - small.n_heads]:
            pw[:, head * hd:(head + 1) * hd] = 0  # the head's output path is gone
        f = blk.fc1.weight.data.norm(dim=1) * blk.fc2.weight.data.norm(dim=0)
        drop = torch.argsort(f)[: len(f) - small.fc1.out_features]
        blk.fc2.weight.data[:, drop] = 0
    ref._invalidate()
    users = list(X.user_vocab.ids[:8])
    np.testing.assert_allclose(pruned.recommend(users, k=5)[1], ref.recommend(users, k=5)[1],
                               rtol=1e-5, atol=1e-5)


def test_magnitude_pruning_sparsity_layer_and_global(fitted):
    X, model = fitted
    layer = prune(model, X, method="magnitude", amount=0.6, epochs=1)
    for blk in layer.network_.blocks:
        for lin in (blk.qkv, blk.proj, blk.fc1, blk.fc2):
            assert not hasattr(lin, "weight_orig")  # the masks were made permanent
            assert float((lin.weight == 0).float().mean()) == pytest.approx(0.6, abs=0.01)
    glob = prune(model, X, method="magnitude", amount=0.6, scope="global", epochs=1)
    shares = [float((lin.weight == 0).float().mean()) for blk in glob.network_.blocks
              for lin in (blk.qkv, blk.proj, blk.fc1, blk.fc2)]
    assert len(set(np.round(shares, 3))) > 1  # one threshold over all layers
    assert glob.compression_["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert sparsity(model)["linear"] == 0.0


@pytest.mark.parametrize("method", ["structured", "magnitude"])
def test_save_load_same_scores(fitted, tmp_path, method):
    X, model = fitted
    pruned = prune(model, X, method=method, amount=0.5, epochs=1)
    loaded = Recommender.load(pruned.save(tmp_path / method))
    users = list(X.user_vocab.ids[:10])
    ids, scores = pruned.recommend(users, k=5)
    ids2, scores2 = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    assert loaded.compression_["prune"] == method
    if method == "structured":
        assert loaded.network_.blocks[0].n_heads == 2


def test_seeded_fine_tune_is_deterministic(fitted):
    X, model = fitted
    a = prune(model, X, amount=0.5, epochs=2, random_state=3)
    b = prune(model, X, amount=0.5, epochs=2, random_state=3)
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_fine_tune_stops_early_on_validation(fitted):
    X, model = fitted
    df = X.to_pandas()
    last = df.sort_values("timestamp").groupby("user").tail(1)
    train = df.drop(last.index)
    pruned = prune(model, train, validation=last, amount=0.5, epochs=3, patience=1)
    log = pruned.compression_["fine_tune"]
    assert log["metric_name"] and any(m is not None for m in log["metrics"])


def test_refit_of_a_pruned_model_is_unpruned(fitted):
    X, model = fitted
    pruned = prune(model, X, amount=0.5, epochs=0)
    pruned.set_params(epochs=1).fit(X)
    assert not hasattr(pruned, "block_shapes_")
    assert pruned.network_.blocks[0].n_heads == 4


def test_refusals(fitted):
    X, model = fitted
    with pytest.raises(DataError, match="pruning applies to networks; EASE has none"):
        prune(EASE().fit(X), X)
    with pytest.raises(DataError, match="Popularity has none -- use"):
        prune(Popularity().fit(X), X)
    with pytest.raises(NotFittedError, match="not fitted"):
        prune(SequentialRecommender(), X)
    with pytest.raises(DataError, match="maasrec Recommender"):
        prune(torch.nn.Linear(2, 2), X)
    with pytest.raises(DataError, match="method"):
        prune(model, X, method="random")
    with pytest.raises(DataError, match="amount"):
        prune(model, X, amount=1.0)
    with pytest.raises(DataError, match="heads"):
        prune(model, X, heads=-0.1)
    with pytest.raises(DataError, match="scope"):
        prune(model, X, method="structured", scope="global")
    with pytest.raises(DataError, match="training interactions X"):
        prune(model, None, epochs=1)


def test_tampered_block_shapes_are_refused(fitted, tmp_path):
    import json

    X, model = fitted
    path = Path(prune(model, X, amount=0.5, epochs=0).save(tmp_path / "p"))
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(path / "arrays.safetensors"))
    arrays["block_shapes_"] = np.array([[9, 64], [2, 64]], dtype=np.int64)
    save_file(arrays, str(path / "arrays.safetensors"))
    meta = json.loads((path / "maasrec.json").read_text())
    import hashlib

    data = (path / "arrays.safetensors").read_bytes()
    meta["files"]["arrays.safetensors"] = {"size": len(data),
                                           "sha256": hashlib.sha256(data).hexdigest()}
    (path / "maasrec.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="block_shapes_"):
        Recommender.load(path)


def test_attached_retriever_is_rebuilt_over_the_pruned_vectors(fitted):
    pytest.importorskip("faiss")
    from maasrec.rankers import FaissRetriever

    X, model = fitted
    with_index = copy.deepcopy(model).set_retriever(FaissRetriever("flat"))
    pruned = prune(with_index, X, amount=0.5, epochs=1)
    assert pruned._retriever is not None and pruned._retriever is not with_index._retriever
    users = list(X.user_vocab.ids[:10])
    exact = pruned.recommend(users, k=5, retriever="exact")
    approx = pruned.recommend(users, k=5)
    np.testing.assert_array_equal(exact[0], approx[0])
