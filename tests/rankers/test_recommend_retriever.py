"""recommend(..., retriever=...) end to end, on a test-only MF-style model.

``TinyMF`` exposes the vector hooks of ``maasrec.base`` (``_item_vectors``,
``_user_vectors``, ``_history_vectors``): item factors are the top right singular
vectors of the interaction matrix, a user's vector is the sum of the factors of the
items they interacted with (so cold users work), and scores are inner products.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec import load
from maasrec.base import Recommender
from maasrec.exceptions import DataError
from maasrec.models import EASE
from maasrec.rankers import MMR, FaissRetriever
from maasrec.testing import check_recommender, tiny_interactions


class TinyMF(Recommender):
    """Test-only MF-like recommender (not part of the library).

    Parameters
    ----------
    factors : int
    ann : {"flat", "ivf", "hnsw"} or None
        Attach a FaissRetriever of this kind at the end of ``fit``.
    integer : bool
        Round the factors to small integers, so that every score is computed exactly
        in float32 whatever the summation order (and ties are common).
    random_state : int or None
        Seed of the small random rotation of the factors.
    """

    def __init__(self, factors: int = 6, ann: str | None = None, integer: bool = False,
                 random_state=None):
        self.factors = factors
        self.ann = ann
        self.integer = integer
        self.random_state = random_state

    def _fit(self, data, **_):
        X = data.to_csr(binary=True).toarray().astype(np.float64)
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        f = min(self.factors, vt.shape[0])
        rng = np.random.default_rng(self.random_state)
        rot, _ = np.linalg.qr(np.eye(f) + 0.01 * rng.standard_normal((f, f)))
        v = vt[:f].T @ rot
        if self.integer:
            v = np.round(v * 4)
        self.item_factors_ = np.ascontiguousarray(v, dtype=np.float32)
        if self.ann:
            self.set_retriever(FaissRetriever(self.ann, n_candidates=8))

    def _history_vectors(self, history):
        h = sp.csr_matrix(history, dtype=np.float32, copy=True)
        h.data[:] = 1.0
        return np.asarray(h @ self.item_factors_, dtype=np.float32)

    def _user_vectors(self, user_idx):
        return self._history_vectors(self.seen_[user_idx])

    def _item_vectors(self):
        return self.item_factors_

    def _score_history(self, history):
        return self._history_vectors(history) @ self.item_factors_.T

    def _similar_scores(self, item_idx):
        return self.item_factors_[item_idx] @ self.item_factors_.T

    def add_items(self, raw_ids, vectors) -> TinyMF:
        """Test-only: append items (new catalogue entries nobody has seen yet)."""
        self.item_vocab_ = self.item_vocab_.extend(raw_ids)
        self.item_factors_ = np.vstack([self.item_factors_, vectors]).astype(np.float32)
        self.seen_ = sp.csr_matrix((self.seen_.data, self.seen_.indices, self.seen_.indptr),
                                   shape=(self.seen_.shape[0], len(self.item_vocab_)))
        self._pop_cache = None
        return self


class TorchMF(TinyMF):
    """TinyMF returning torch score blocks (ranked with torch by TopK)."""

    def _score_history(self, history):
        return torch.from_numpy(super()._score_history(history))


@pytest.mark.parametrize("factory", [
    lambda: TinyMF(),
    lambda: TinyMF(ann="hnsw"),
    lambda: TinyMF(ann="flat", integer=True),
    lambda: TorchMF(),
], ids=["exact", "hnsw", "flat-integer", "torch-blocks"])
def test_contract(factory):
    check_recommender(factory)


@pytest.fixture(scope="module")
def fitted():
    data = tiny_interactions(n_users=40, n_items=60, per_user=8, seed=3)
    return TinyMF(factors=5, integer=True, random_state=0).fit(data), data


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 65), exclude_seen=st.booleans(),
       allow=st.sampled_from(["none", "global", "rows"]),
       deny=st.sampled_from(["none", "global", "rows"]), cold=st.booleans())
def test_flat_retriever_equals_exact_ranking(fitted, seed, k, exclude_seen, allow, deny, cold):
    model, data = fitted
    rng = np.random.default_rng(seed)
    users = list(rng.choice(data.user_vocab.ids, 5, replace=False))
    ids = data.item_vocab.ids

    def lists(kind):
        if kind == "global":
            return list(rng.choice(ids, int(rng.integers(0, 40)), replace=False))
        if kind == "rows":
            return [list(rng.choice(ids, int(rng.integers(1, 40)), replace=False))
                    for _ in users]
        return None

    kwargs = {"k": k, "exclude_seen": exclude_seen, "items": lists(allow),
              "exclude": lists(deny)}
    if cold:
        kwargs["history"] = [list(rng.choice(ids, int(rng.integers(0, 6)), replace=False))
                             for _ in users]
    flat = FaissRetriever("flat", n_candidates=int(rng.integers(1, 20)))
    got = model.recommend(users, retriever=flat, **kwargs)
    ref = model.recommend(users, retriever="exact", **kwargs)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_attached_retriever_is_used_saved_and_loaded(tmp_path):
    data = tiny_interactions(n_users=50, n_items=300, per_user=10, seed=4)
    model = TinyMF(factors=8, random_state=0).fit(data)
    users = list(data.user_vocab.ids[:20])
    exact = model.recommend(users, k=10)
    r = FaissRetriever("hnsw", ef_search=64)
    assert model.set_retriever(r) is model and r.is_fitted and r.n_items_ == data.n_items
    ann = model.recommend(users, k=10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ann[0], exact[0])]) >= 0.95
    model.save(tmp_path / "m")
    files = sorted(str(p.relative_to(tmp_path / "m")) for p in (tmp_path / "m").rglob("*"))
    assert "retriever/index.faiss" in files and "retriever/retriever.json" in files
    assert not any(f.endswith((".pkl", ".pickle", ".pt", ".joblib")) for f in files)
    back = load(tmp_path / "m")
    assert isinstance(back._retriever, FaissRetriever)
    assert back._retriever.get_params() == r.get_params()
    for a, b in zip(back.recommend(users, k=10), ann):
        np.testing.assert_array_equal(a, b)
    # detaching: exact again; a model saved without a retriever loads without one
    model.set_retriever(None)
    for a, b in zip(model.recommend(users, k=10), exact):
        np.testing.assert_array_equal(a, b)
    model.save(tmp_path / "m", overwrite=True)
    assert load(tmp_path / "m")._retriever is None
    assert not (tmp_path / "m" / "retriever").exists()


def test_index_follows_added_items_and_refits():
    data = tiny_interactions(n_users=30, n_items=80, per_user=6, seed=5)
    model = TinyMF(factors=4, random_state=0).fit(data)
    r = FaissRetriever("flat", n_candidates=5)
    model.set_retriever(r)
    users = list(data.user_vocab.ids[:10])
    new = np.abs(model.item_factors_[:3]) * 5 + 1  # strong new items
    model.add_items([9001, 9002, 9003], new)
    got = model.recommend(users, k=5)
    assert r.n_items_ == r.index_.ntotal == data.n_items + 3
    ref = model.recommend(users, k=5, retriever="exact")
    np.testing.assert_array_equal(got[0], ref[0])
    assert {9001, 9002, 9003} & set(got[0].ravel().tolist())
    fp = r.fingerprint_
    data2 = tiny_interactions(n_users=30, n_items=80, per_user=6, seed=6)
    model.fit(data2)  # refit: new vectors, the same retriever stays attached
    got = model.recommend(users, k=5)
    assert r.fingerprint_ != fp and r.n_items_ == data2.n_items
    np.testing.assert_array_equal(got[0], model.recommend(users, k=5, retriever="exact")[0])


def test_models_without_vectors_are_named():
    data = tiny_interactions()
    ease = EASE(l2=10.0).fit(data)
    with pytest.raises(DataError, match="EASE does not expose _item_vectors"):
        ease.recommend(["u0"], k=3, retriever=FaissRetriever())
    with pytest.raises(DataError, match="EASE does not expose _item_vectors"):
        ease.set_retriever(FaissRetriever())
    assert ease.recommend(["u0"], k=3, retriever="exact")[0].shape == (1, 3)
    with pytest.raises(DataError, match="'annoy'"):
        ease.recommend(["u0"], k=3, retriever="annoy")
    with pytest.raises(DataError, match="FaissRetriever or None"):
        TinyMF().fit(data).set_retriever("hnsw")

    class NoHistory(TinyMF):
        def _user_vectors(self, user_idx):
            return TinyMF._history_vectors(self, self.seen_[user_idx])

        def _history_vectors(self, history):
            return None

    m = NoHistory().fit(data)
    with pytest.raises(DataError, match="NoHistory does not expose _history_vectors"):
        m.recommend(history=[1000, 1001], k=3, retriever=FaissRetriever())
    assert m.recommend(["u0"], k=3, retriever=FaissRetriever())[0].shape == (1, 3)


def test_torch_blocks_equal_numpy_blocks_and_mmr_uses_model_vectors():
    data = tiny_interactions()
    a = TinyMF(random_state=0).fit(data)
    b = TorchMF(random_state=0).fit(data)
    users = list(data.user_vocab.ids[:8])
    kw = {"k": 6, "items": list(data.item_vocab.ids[::2]), "exclude": [1000, 1001]}
    for x, y in zip(a.recommend(users, **kw), b.recommend(users, **kw)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.recommend(history=[1002, 1003], k=4), b.recommend(history=[1002, 1003],
                                                                         k=4)):
        np.testing.assert_array_equal(x, y)
    ids, _ = MMR(0.3, n_candidates=20).recommend(a, users, k=5, retriever=FaissRetriever())
    top, _ = a.recommend(users, k=20)
    assert ids.shape == (8, 5) and all(set(i) <= set(t) for i, t in zip(ids, top))
