"""maasrec.compress.candidate_lists and distill(lists=...): a teacher's ranked lists computed
once and reused by several students; a student trained on the lists alone learns their order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kendalltau

from maasrec import Interactions
from maasrec.compress import candidate_lists
from maasrec.compress.distillation import distill
from maasrec.exceptions import DataError, NotFittedError
from maasrec.models import EASE
from maasrec.neural import SequentialRecommender

N_ITEMS = 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(80):
        start = int(rng.integers(N_ITEMS))
        for t in range(int(rng.integers(6, 11))):
            rows.append((f"u{u}", 100 + (start + t) % N_ITEMS, t))
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    return X, EASE(l2=1.0).fit(X)


def student(**kw) -> SequentialRecommender:
    params = dict(max_len=10, dim=8, n_layers=1, n_heads=1, dropout=0.1, epochs=4,
                  batch_size=32, learning_rate=0.01, random_state=0, validation_fraction=None)
    params.update(kw)
    return SequentialRecommender(**params)


def test_candidate_lists_are_the_teachers_top_unseen_items(data):
    X, ease = data
    items, scores = candidate_lists(ease, X, n_candidates=6)
    assert items.shape == scores.shape == (X.n_users, 6)
    assert items.dtype == np.int64 and scores.dtype == np.float32
    ids, sc = ease.recommend(list(X.user_vocab.ids), k=6)
    np.testing.assert_array_equal(X.item_vocab.ids[items], ids)
    np.testing.assert_allclose(scores, sc, rtol=1e-6)
    seen = X.to_csr()
    assert not any(seen[u, items[u]].nnz for u in range(X.n_users))


def test_given_lists_train_the_same_student_as_the_teacher_asked(data):
    X, ease = data
    lists = candidate_lists(ease, X, n_candidates=5)
    a = distill(ease, student(), X, n_candidates=5, alpha=0.7)
    b = distill(ease, student(), X, alpha=0.7, lists=lists)
    assert b.compression_["n_candidates"] == 5
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def _tau(model, items, scores) -> float:
    full = model.score_indices(np.arange(items.shape[0]))
    s = np.take_along_axis(full, items, axis=1)
    return float(np.mean([kendalltau(scores[u], s[u]).statistic
                          for u in range(items.shape[0])]))


def test_a_student_on_the_lists_alone_learns_their_order(data):
    """Lists whose scores prefer the higher item index (an order the data does not hold):
    alpha=1 reproduces it, the next-item loss alone (alpha=0) does not."""
    X, ease = data
    items, _ = candidate_lists(ease, X, n_candidates=8)
    scores = (items.astype(np.float32) / N_ITEMS) * 4.0
    lists = (items, scores)
    only = distill(ease, student(epochs=8), X, alpha=1.0, lists=lists)
    plain = distill(ease, student(epochs=8), X, alpha=0.0, lists=lists)
    t_only, t_plain = _tau(only, items, scores), _tau(plain, items, scores)
    assert t_only > 0.6
    assert t_only > t_plain + 0.3


def test_bad_lists(data):
    X, ease = data
    items, scores = candidate_lists(ease, X, n_candidates=4)
    with pytest.raises(DataError, match="pair of candidate_lists"):
        distill(ease, student(), X, lists=items)
    with pytest.raises(DataError, match="shape"):
        distill(ease, student(), X, lists=(items[:3], scores[:3]))
    with pytest.raises(DataError, match="n_candidates=5"):
        distill(ease, student(), X, lists=(items, scores), n_candidates=5)
    bad = items.copy()
    bad[0, 0] = N_ITEMS
    with pytest.raises(DataError, match="item indices"):
        distill(ease, student(), X, lists=(bad, scores))
    nan = scores.copy()
    nan[1, 1] = np.nan
    with pytest.raises(DataError, match="finite"):
        distill(ease, student(), X, lists=(items, nan))
    wide = student(epochs=1).fit(X)
    with pytest.raises(DataError, match="mode='positions'"):
        distill(wide, student(), X, mode="positions", lists=(items, scores))
    with pytest.raises(NotFittedError):
        candidate_lists(EASE(), X)
    with pytest.raises(DataError, match="n_candidates"):
        candidate_lists(ease, X, n_candidates=1)
