"""PrivateALS with public item attributes (feature_regularization): the shared prior."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from maasrec.base import Recommender
from maasrec.data import IdVocab, Interactions, ItemFeatures
from maasrec.data.split import random_split
from maasrec.exceptions import DataError
from maasrec.metrics import evaluate
from maasrec.privacy import PrivateALS
from maasrec.privacy._dp_als_features import FeaturePrior, feature_matrix


def _clustered(n_users=400, n_items=120, n_groups=6, per_user=12, seed=0):
    """Items in attribute groups; users like one or two groups (items of a group alike)."""
    g = np.random.default_rng(seed)
    group = g.integers(0, n_groups, n_items)
    rows, cols = [], []
    for u in range(n_users):
        liked = g.choice(n_groups, size=2, replace=False)
        pool = np.flatnonzero(np.isin(group, liked))
        items = g.choice(pool, size=min(per_user, len(pool)), replace=False)
        rows += [u] * len(items)
        cols += list(items)
    X = Interactions.from_arrays(np.array(rows), np.array(cols))
    ids = np.arange(n_items)
    feats = ItemFeatures(IdVocab(ids, name="item"),
                         categorical={"group": [f"g{k}" for k in group]},
                         multi_hot={"tags": [[f"t{k}", "all"] for k in group]})
    return X, feats


@pytest.fixture(scope="module")
def clustered():
    return _clustered()


def test_solve_is_the_joint_minimiser():
    """FeaturePrior.solve: the exact minimiser over (Y, W) of
    Σ_i y_iᵀ G y_i - 2 b_iᵀ y_i + λ ||y_i - A_i W||² + λ_W ||W||² (a dense linear solve)."""
    g = np.random.default_rng(0)
    m, f, a, lam, lam_w = 9, 3, 4, 2.5, 0.7
    M = g.normal(size=(f, f))
    G = M @ M.T
    B = g.normal(size=(m, f))
    A = sp.csr_matrix(g.random((m, a)) * (g.random((m, a)) < 0.6))
    prior = FeaturePrior(A, lam_w)
    Y = prior.solve(torch.from_numpy(G), torch.from_numpy(B), lam).numpy()
    # stationarity: Y G + λ (Y - A W) = B and λ_W W = λ Aᵀ (Y - A W), column-major vec
    Ad = A.toarray()
    Im, Ia = np.eye(m), np.eye(a)
    top = np.hstack([np.kron(G, Im) + lam * np.eye(m * f), -lam * np.kron(np.eye(f), Ad)])
    bot = np.hstack([-lam * np.kron(np.eye(f), Ad.T),
                     np.kron(np.eye(f), lam * Ad.T @ Ad + lam_w * Ia)])
    sol = np.linalg.solve(np.vstack([top, bot]),
                          np.concatenate([B.flatten(order="F"), np.zeros(a * f)]))
    np.testing.assert_allclose(Y, sol[:m * f].reshape((m, f), order="F"), atol=1e-8)
    np.testing.assert_allclose(prior.W_.numpy(), sol[m * f:].reshape((a, f), order="F"),
                               atol=1e-8)


def test_feature_matrix(clustered):
    X, feats = clustered
    A = feature_matrix(feats, X.item_vocab)
    assert A.shape == (X.n_items, 6 + 6 + 1)  # group one-hot, tags multi-hot, "all"
    np.testing.assert_allclose(np.sqrt(A.multiply(A).sum(1)).A.ravel(), 1.0)
    # an item the features do not know: a zero row; attributes of no item: dropped
    vocab = IdVocab(np.append(X.item_vocab.ids, 10_000), name="item")
    A2 = feature_matrix(feats, vocab)
    assert A2.shape == (X.n_items + 1, A.shape[1])
    assert A2[-1].nnz == 0
    sub = IdVocab(X.item_vocab.ids[:1], name="item")
    assert feature_matrix(feats, sub).shape == (1, 3)


def test_fit_uses_attributes_and_keeps_the_release_accounting(clustered, tmp_path):
    X, feats = clustered
    X, test = random_split(X, (0.8, 0.2), per_user=True, random_state=0)
    kw = dict(epsilon=1.0, factors=4, regularization=50.0, iterations=3, max_user_items=6,
              random_state=0)
    plain = PrivateALS(**kw).fit(X)
    withf = PrivateALS(feature_regularization=1.0, **kw).fit(X, feats)
    rec, rec_f = plain.training_log_["privacy"], withf.training_log_["privacy"]
    assert rec_f["feature_regularization"] == 1.0 and rec["feature_regularization"] is None
    for key in ("epsilon", "delta", "mu", "noise_std", "sensitivity", "noise_multiplier"):
        assert rec_f[key] == rec[key]  # post-processing: the same release
    again = PrivateALS(feature_regularization=1.0, **kw).fit(X, feats)
    np.testing.assert_array_equal(withf.item_factors_, again.item_factors_)  # seeded
    # pooled per attribute, the noisy items come out better at epsilon 1
    score = {name: evaluate(m, X, test, k=10, metrics=["ndcg"], n_bootstrap=0)["ndcg@10"]
             for name, m in (("plain", plain), ("features", withf))}
    assert score["features"] > score["plain"], score
    # a very weak tie (huge penalty on W): the plain model's release
    loose = PrivateALS(feature_regularization=1e12, **kw).fit(X, feats)
    np.testing.assert_allclose(loose.item_factors_, plain.item_factors_, atol=1e-5)
    withf.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(back.item_factors_, withf.item_factors_)
    assert back.get_params()["feature_regularization"] == 1.0
    np.testing.assert_array_equal(back.recommend([0, 1], k=5), withf.recommend([0, 1], k=5))


def test_nonprivate_with_attributes(clustered):
    X, feats = clustered
    m = PrivateALS(epsilon=None, factors=4, regularization=50.0, iterations=3,
                   feature_regularization=1.0, random_state=0).fit(X, feats)
    assert np.isfinite(m.item_factors_).all() and m.training_log_["privacy"]["mu"] is None


@pytest.mark.parametrize("params, match", [
    ({"feature_regularization": 0.0}, "feature_regularization"),
    ({"feature_regularization": -1.0}, "feature_regularization"),
    ({"feature_regularization": "1"}, "feature_regularization"),
    ({"feature_regularization": 1.0, "budget_shares": (0.1, 0.3, 0.6)}, "budget_shares"),
])
def test_bad_params(clustered, params, match):
    X, feats = clustered
    with pytest.raises(DataError, match=match):
        PrivateALS(**params).fit(X, feats)


def test_bad_features(clustered):
    X, feats = clustered
    model = PrivateALS(feature_regularization=1.0, iterations=1)
    with pytest.raises(DataError, match="item_features"):
        model.fit(X)
    with pytest.raises(DataError, match="ItemFeatures"):
        model.fit(X, {"group": [1, 2]})
    numeric_only = ItemFeatures(X.item_vocab, numeric={"price": np.ones(X.n_items)})
    with pytest.raises(DataError, match="multi-hot or categorical"):
        model.fit(X, numeric_only)
    other = ItemFeatures(IdVocab(np.array([10_000]), name="item"),
                         categorical={"group": ["a"]})
    with pytest.raises(DataError, match="no item"):
        model.fit(X, other)
    # without feature_regularization the features are ignored, as other models do
    kw = dict(iterations=1, factors=3, random_state=0)
    np.testing.assert_array_equal(PrivateALS(**kw).fit(X, feats).item_factors_,
                                  PrivateALS(**kw).fit(X).item_factors_)
