"""MMR re-ranking: lambda=1 is the relevance order, diversity goes up, inputs are checked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.exceptions import DataError
from maasrec.metrics import intra_list_diversity, item_popularity, novelty
from maasrec.models import EASE
from maasrec.rankers import MMR, TopK
from maasrec.testing import tiny_interactions

FAST = settings(max_examples=60, deadline=None)


@st.composite
def candidate_lists(draw):
    n_users = draw(st.integers(1, 4))
    n_items = draw(st.integers(1, 12))
    width = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    cand = rng.integers(-1, n_items, (n_users, width))
    scores = rng.choice([-np.inf, -1.0, 0.0, 0.5, 1.0, 2.0], size=(n_users, width))
    vectors = rng.standard_normal((n_items, 3))
    k = draw(st.integers(1, width + 2))
    return cand, scores, vectors, k


@FAST
@given(candidate_lists())
def test_lambda_one_is_exactly_the_relevance_order(case):
    cand, scores, vectors, k = case
    idx, val = MMR(lambda_=1.0).rerank(cand, scores, vectors, k=k)
    ref_idx, ref_val = TopK(k).rank_candidates(cand, scores, n_items=len(vectors))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


@FAST
@given(candidate_lists(), st.floats(0.0, 1.0), st.sampled_from(["cosine", "dot"]))
def test_output_is_a_reordering_of_the_valid_candidates(case, lam, similarity):
    cand, scores, vectors, k = case
    idx, val = MMR(lam, similarity=similarity).rerank(cand, scores, vectors, k=k)
    assert idx.shape == val.shape == (len(cand), min(k, len(vectors)))  # k capped at n_items
    for r in range(len(cand)):
        valid = {int(c) for c, s in zip(cand[r], scores[r]) if c >= 0 and s != -np.inf}
        got = [int(i) for i in idx[r] if i >= 0]
        assert len(got) == len(set(got)) == min(k, len(valid))
        assert set(got) <= valid
        assert (idx[r, len(got):] == -1).all() and np.isneginf(val[r, len(got):]).all()
        if got:  # the most relevant candidate always comes first
            assert got[0] == TopK(1).rank_candidates(cand[r:r + 1], scores[r:r + 1],
                                                     n_items=len(vectors))[0][0, 0]
        for i, v in zip(idx[r], val[r]):  # scores are the original relevance scores
            if i >= 0:
                assert v == np.float32(max(s for c, s in zip(cand[r], scores[r]) if c == i))


def test_hand_example_and_lambda_zero():
    vecs = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    cand, rel = [[0, 1, 2, 3]], [[1.0, 0.95, 0.5, 0.1]]
    np.testing.assert_array_equal(MMR(1.0).rerank(cand, rel, vecs, k=3)[0], [[0, 1, 2]])
    # relevance scaled to [1, .94, .44, 0]; after item 0, item 3 (cosine -1 to it) gains
    # 0.5, item 2 (orthogonal) 0.22, item 1 (near duplicate) -0.03
    np.testing.assert_array_equal(MMR(0.5).rerank(cand, rel, vecs, k=3)[0], [[0, 3, 2]])
    np.testing.assert_array_equal(MMR(0.9).rerank(cand, rel, vecs, k=3)[0], [[0, 1, 2]])
    # lambda=0: most relevant first, then the least similar to what was picked
    np.testing.assert_array_equal(MMR(0.0).rerank(cand, rel, vecs, k=2)[0], [[0, 3]])
    idx, val = MMR(0.5, n_candidates=2).rerank(cand, rel, vecs, k=3)
    np.testing.assert_array_equal(idx, [[0, 1, -1]])
    np.testing.assert_array_equal(val, np.array([[1.0, 0.95, -np.inf]], dtype=np.float32))


def test_mmr_raises_intra_list_diversity_and_novelty_metrics():
    rng = np.random.default_rng(0)
    n_items, n_users, k = 400, 30, 10
    clusters = rng.integers(0, 8, n_items)
    centers = rng.standard_normal((8, 16)) * 3
    vecs = centers[clusters] + 0.3 * rng.standard_normal((n_items, 16))
    users = rng.standard_normal((n_users, 16))
    scores = users @ vecs.T
    cand, rel = TopK(100).rank(scores.copy())
    pop = rng.zipf(1.5, n_items).astype(float)
    p = np.clip(pop / pop.max(), 1e-6, 1.0)
    ild, nov = [], []
    for lam in (1.0, 0.7, 0.3):
        idx, _ = MMR(lam).rerank(cand, rel, vecs, k=k)
        ild.append(np.nanmean(intra_list_diversity(idx, vecs)))
        nov.append(np.nanmean(novelty(idx, p)))
    assert ild[0] < ild[1] < ild[2], ild
    assert all(np.isfinite(nov))
    # item_popularity from real interactions works on the same index space
    data = tiny_interactions()
    p2 = item_popularity(data)
    idx, _ = MMR(0.5).rerank([[0, 1, 2, 3]], [[4.0, 3.0, 2.0, 1.0]],
                             rng.standard_normal((data.n_items, 4)), k=3)
    assert np.isfinite(novelty(idx, p2)).all()


def test_recommend_with_explicit_vectors_and_errors_name_the_model():
    data = tiny_interactions()
    model = EASE(l2=10.0).fit(data)
    vecs = np.random.default_rng(0).standard_normal((data.n_items, 5))
    ids, _ = MMR(0.5, n_candidates=15).recommend(model, ["u0", "u1"], k=5,
                                                      item_vectors=vecs)
    assert ids.shape == (2, 5)
    top, _ = model.recommend(["u0", "u1"], k=15)
    for r in range(2):
        assert set(ids[r]) <= set(top[r])
        assert ids[r][0] == top[r][0]
    same, _ = MMR(1.0, n_candidates=15).recommend(model, ["u0", "u1"], k=5, item_vectors=vecs)
    np.testing.assert_array_equal(same, top[:, :5])
    one, _ = MMR(0.5).recommend(model, "u0", k=3, item_vectors=vecs, exclude=[1000])
    assert one.shape == (3,) and 1000 not in one
    with pytest.raises(DataError, match="EASE has none"):
        MMR().recommend(model, ["u0"], k=3)
    with pytest.raises(DataError, match="rows but the model has"):
        MMR().recommend(model, ["u0"], k=3, item_vectors=vecs[:-1])


@pytest.mark.parametrize("kwargs, match", [
    ({"lambda_": 1.5}, "lambda_ must be >= 0.0 and <= 1.0, got 1.5"),
    ({"lambda_": -0.1}, "got -0.1"),
    ({"similarity": "jaccard"}, "'jaccard'"),
    ({"n_candidates": 0}, "n_candidates"),
])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(DataError, match=match):
        MMR(**kwargs).rerank([[0]], [[1.0]], np.ones((1, 2)), k=1)


def test_bad_inputs():
    v = np.ones((3, 2))
    with pytest.raises(DataError, match="same shape"):
        MMR().rerank([[0, 1]], [[1.0]], v)
    with pytest.raises(DataError, match="NaN"):
        MMR().rerank([[0, 1]], [[1.0, np.nan]], v)
    with pytest.raises(DataError, match="NaN or inf"):
        MMR().rerank([[0, 1]], [[1.0, 2.0]], np.array([[1.0, np.nan], [1, 1], [1, 1]]))
    with pytest.raises(DataError, match=r"outside 0\.\.2"):
        MMR().rerank([[0, 5]], [[1.0, 2.0]], v)
    with pytest.raises(DataError, match="k must be a positive integer, got 0"):
        MMR().rerank([[0, 1]], [[1.0, 2.0]], v, k=0)
    assert "lambda_=0.5" in repr(MMR())
