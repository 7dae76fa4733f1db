"""maasrec.compress.distill: a narrow SequentialRecommender learns from a wide one (scores at
every position) or from any recommender's ranked lists; loss, persistence, seeds, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec import Interactions, Recommender
from maasrec.compress.distillation import distill, kl_to_teacher, teacher_lists
from maasrec.exceptions import DataError, NotFittedError
from maasrec.models import EASE, Popularity
from maasrec.neural import SequentialRecommender

N_ITEMS = 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cyclic(n_users: int = 80, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for t in range(int(rng.integers(6, 11))):
            rows.append((f"u{u}", 100 + (start + t) % N_ITEMS, t))
    return Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def student(**kw) -> SequentialRecommender:
    params = dict(max_len=10, dim=8, n_layers=1, n_heads=1, dropout=0.1, epochs=8,
                  batch_size=32, learning_rate=0.01, random_state=0, validation_fraction=None)
    params.update(kw)
    return SequentialRecommender(**params)


@pytest.fixture(scope="module")
def teacher():
    X = cyclic()
    wide = SequentialRecommender(max_len=10, dim=32, n_layers=2, n_heads=2, dropout=0.1,
                                 epochs=25, batch_size=32, learning_rate=0.01, random_state=0,
                                 validation_fraction=None).fit(X)
    return X, wide


def test_kl_to_teacher_matches_torch_and_masks():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    ref = torch.nn.functional.kl_div(torch.log_softmax(s / 2, -1), torch.log_softmax(t / 2, -1),
                                     log_target=True, reduction="batchmean") * 4
    torch.testing.assert_close(kl_to_teacher(s, t, 2.0), ref)
    assert float(kl_to_teacher(t, t, 1.0)) == pytest.approx(0.0, abs=1e-6)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[:, 5:] = False
    padded = kl_to_teacher(s, t.masked_fill(~mask, 99.0), 1.0, mask=mask)
    torch.testing.assert_close(padded, kl_to_teacher(s[:, :5], t[:, :5], 1.0))


def _agreement(a, b, X) -> float:
    users = list(X.user_vocab.ids)
    return float(np.mean(a.recommend(users, k=1)[0] == b.recommend(users, k=1)[0]))


def test_narrow_student_from_wide_teacher(teacher):
    X, wide = teacher
    small = distill(wide, student(), X, alpha=0.9, temperature=2.0)
    assert small.network_.item_emb.shape == (N_ITEMS, 8)
    assert small.compression_["mode"] == "positions"
    assert sum(p.numel() for p in small.network_.parameters()) < sum(
        p.numel() for p in wide.network_.parameters()) / 5
    assert len(small.training_log_["losses"]) == 8
    assert _agreement(small, wide, X) >= 0.8


def test_the_teacher_term_changes_the_student(teacher):
    X, wide = teacher
    plain = distill(wide, student(epochs=2), X, alpha=0.0)
    taught = distill(wide, student(epochs=2), X, alpha=1.0)
    a = plain.network_.item_emb.detach()
    b = taught.network_.item_emb.detach()
    assert not torch.allclose(a, b)


def test_lists_from_any_teacher_and_save_load(teacher, tmp_path):
    X, _ = teacher
    ease = EASE(l2=1.0).fit(X)
    s = distill(ease, student(), X, n_candidates=5, alpha=0.7)
    assert s.compression_ == {"method": "distill", "mode": "lists", "teacher": "EASE",
                              "alpha": 0.7, "temperature": 1.0, "n_candidates": 5}
    loaded = Recommender.load(s.save(tmp_path / "student"))
    users = list(X.user_vocab.ids[:10])
    ids, scores = s.recommend(users, k=5)
    ids2, scores2 = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    assert loaded.compression_["teacher"] == "EASE"


def test_teacher_lists_are_the_teachers_top_unseen_items(teacher):
    X, _ = teacher
    ease = EASE(l2=1.0).fit(X)
    seen = X.to_csr()
    seqs, lengths, cands, scores = teacher_lists(
        ease, X.item_indices.astype(np.int64), X.user_indptr.astype(np.int64), seen, 4, 10)
    assert cands.shape == scores.shape == (X.n_users, 4)
    ids, sc = ease.recommend(list(X.user_vocab.ids[:3]), k=4)
    np.testing.assert_array_equal(X.item_vocab.ids[cands[:3]], ids)
    np.testing.assert_allclose(scores[:3], sc, rtol=1e-6)
    first = X.item_indices[X.user_indptr[0]:X.user_indptr[1]][-10:]
    np.testing.assert_array_equal(seqs[0, :lengths[0]], first)


def test_seeded_students_are_identical(teacher):
    X, wide = teacher
    a = distill(wide, student(epochs=2, random_state=5), X)
    b = distill(wide, student(epochs=2, random_state=5), X)
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_early_stopping_on_validation(teacher):
    X, wide = teacher
    df = X.to_pandas()
    last = df.sort_values("timestamp").groupby("user").tail(1)
    s = distill(wide, student(epochs=3, patience=1), df.drop(last.index), validation=last)
    assert s.training_log_["metric_name"] and any(
        m is not None for m in s.training_log_["metrics"])


def test_bad_input(teacher):
    X, wide = teacher
    with pytest.raises(NotFittedError):
        distill(SequentialRecommender(), student(), X)
    with pytest.raises(DataError, match="must be a SequentialRecommender"):
        distill(wide, EASE(), X)
    with pytest.raises(DataError, match="mode='positions' needs a SequentialRecommender"):
        distill(Popularity().fit(X), student(), X, mode="positions")
    with pytest.raises(DataError, match="mode"):
        distill(wide, student(), X, mode="teacher")
    with pytest.raises(DataError, match="alpha"):
        distill(wide, student(), X, alpha=1.5)
    with pytest.raises(DataError, match="temperature"):
        distill(wide, student(), X, temperature=0)
    with pytest.raises(DataError, match="full-softmax"):
        distill(wide, student(loss="sampled_softmax"), X)
    with pytest.raises(DataError, match="max_len"):
        distill(wide, student(max_len=30), X)
    with pytest.raises(DataError, match="training interactions X"):
        distill(wide, student(), None)
    with pytest.raises(DataError, match="n_candidates"):
        distill(Popularity().fit(X), student(), X, n_candidates=1)
