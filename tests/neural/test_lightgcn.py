"""LightGCN: the common contract, fold-in, determinism, save/load, learning, bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from maasrec.data.split import random_split
from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError, DeviceError
from maasrec.metrics import evaluate
from maasrec.models import Popularity
from maasrec.neural.lightgcn import LightGCN, normalized_adjacency
from maasrec.testing import iter_checks, tiny_interactions


def small(**kw):
    params = dict(dim=16, n_layers=2, epochs=40, batch_size=64, learning_rate=0.01, patience=5)
    params.update(kw)
    return LightGCN(**params)


CHECKS = list(iter_checks(lambda: small()))


@pytest.mark.parametrize("name, check", CHECKS, ids=[n for n, _ in CHECKS])
def test_contract(name, check):
    check()


def test_normalized_adjacency():
    X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))
    A = normalized_adjacency(X).toarray()
    assert A.shape == (5, 5) and np.allclose(A, A.T)
    # user 0 (degree 2) - item 1 (degree 2): 1 / sqrt(2 * 2); item 2 has no edge
    assert A[0, 3] == pytest.approx(0.5) and A[1, 3] == pytest.approx(2 ** -0.5)
    assert not A[4].any() and not A[:2, :2].any()


@pytest.fixture(scope="module")
def fitted():
    data = tiny_interactions(n_users=60, per_user=8, seed=2)
    return small(random_state=0).fit(data), data


def test_fold_in_is_one_sided_propagation(fitted):
    """history vector = |h|^-1/2 sum of fold_in_factors_ rows; scores = vector . items."""
    model, data = fitted
    items = [int(x) for x in data.item_vocab.ids[[2, 5, 9]]]
    idx = data.item_vocab.index(items)
    vec = model.fold_in_factors_[idx].sum(0) / np.sqrt(3)
    _, scores = model.recommend(history=items, k=5, exclude_seen=False)
    np.testing.assert_allclose(scores, np.sort(model.item_factors_ @ vec)[::-1][:5], rtol=1e-5)
    assert model.fold_in_factors_.shape == model.item_factors_.shape
    np.testing.assert_array_equal(model.item_degree_, (data.to_csr() > 0).sum(0).A1)


def test_fold_in_of_a_known_user_agrees_with_the_user(fitted):
    """The fold-in of a training user's own items recommends mostly what the user gets."""
    model, data = fitted
    X = data.to_csr()
    users = list(data.user_vocab.ids)
    hist = [list(data.item_vocab.ids[X[u].indices]) for u in range(len(users))]
    a, _ = model.recommend(users, k=5)
    b, _ = model.recommend(history=hist, k=5)
    overlap = np.mean([len(set(x) & set(y)) / 5 for x, y in zip(a, b)])
    assert overlap >= 0.6, overlap


def test_training_log_and_holdout(fitted):
    model, data = fitted
    log = model.training_log_
    assert log["holdout"]["rows"] > 0 and log["best_epoch"] >= 1
    # the vectors are propagated over all interactions (held-out ones included)
    assert model.item_degree_.sum() == (data.to_csr() > 0).sum()


def test_zero_layers_is_matrix_factorisation():
    data = tiny_interactions(seed=3)
    m = small(n_layers=0, epochs=3, validation_fraction=None, random_state=0).fit(data)
    assert not m.fold_in_factors_.any()  # no propagation: a new user has no vector
    assert np.isfinite(m.recommend(history=[int(data.item_vocab.ids[0])], k=3)[1]).all()


def test_negative_values_are_not_edges():
    df = tiny_interactions(seed=3).to_pandas()
    df.loc[:20, "rating"] = -1.0
    with pytest.warns(Warning):
        m = small(epochs=2, validation_fraction=None, random_state=0).fit(df)
    assert m.item_degree_.sum() == (df["rating"] > 0).sum()


def test_torch_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small(random_state=0, epochs=2).fit(tiny_interactions())
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


class _Crash(Exception):
    pass


def test_checkpoint_resume_gives_the_same_model(tmp_path, monkeypatch):
    from maasrec.training.trainer import Trainer

    data = tiny_interactions(seed=5)
    make = lambda: small(random_state=0, epochs=6, validation_fraction=None)  # noqa: E731
    full = make().fit(data)
    orig = Trainer.train_epoch

    def crashing(self):
        logs = orig(self)
        if self.epoch == 3:
            raise _Crash
        return logs

    monkeypatch.setattr(Trainer, "train_epoch", crashing)
    with pytest.raises(_Crash):
        make().fit(data, checkpoint_dir=tmp_path)
    monkeypatch.setattr(Trainer, "train_epoch", orig)
    resumed = make().fit(data, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(full.user_factors_, resumed.user_factors_)


@pytest.mark.parametrize("params, match", [
    ({"dim": 0}, "dim"),
    ({"n_layers": -1}, "n_layers"),
    ({"l2": -1e-4}, "l2"),
    ({"l2": float("inf")}, "l2"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"patience": 0}, "patience"),
    ({"val_metric": "ndcg"}, "val_metric"),
    ({"validation_fraction": -0.1}, "validation_fraction"),
    ({"exclude_positives": 1}, "exclude_positives"),
])
def test_bad_params(params, match):
    with pytest.raises(DataError, match=match):
        LightGCN(**params).fit(tiny_interactions())


def test_missing_cuda_is_a_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError):
        small(device="cuda").fit(tiny_interactions())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::maasrec.exceptions.ColdStartWarning")
def test_beats_popularity_for_known_and_new_users():
    data = make_synthetic(400, 300, density=0.05, n_factors=6, seed=0, with_text=False,
                          with_timestamps=False).interactions
    # users 0..319 train; users 320.. are new: half their items given, half to find
    cold = data.user_indices >= 320
    train_all = data.subset(~cold)
    split = random_split(train_all, (0.8, 0.2), random_state=0)
    model = LightGCN(dim=32, n_layers=2, batch_size=512, learning_rate=0.01, epochs=60,
                     random_state=0).fit(split.train)
    pop = Popularity().fit(split.train)
    known = {name: evaluate(m, split.train, split.test, k=10, metrics=["ndcg@10"],
                            n_bootstrap=0)["ndcg@10"] for name, m in (("gcn", model), ("pop", pop))}
    assert known["gcn"] > 1.1 * known["pop"], known
    new = data.subset(cold)
    given, target = random_split(new, (0.5, 0.5), random_state=0)
    gx = given.to_csr()
    hits = {}
    for name, m in (("gcn", model), ("pop", pop)):
        users = np.flatnonzero(np.diff(gx.indptr) > 0)
        hist = [list(data.item_vocab.ids[gx[u].indices]) for u in users]
        ids, _ = m.recommend(history=hist, k=10)
        tx = target.to_csr()
        hits[name] = np.mean([len(set(data.item_vocab.index(list(r)).tolist())
                                  & set(tx[u].indices)) for u, r in zip(users, ids)])
    assert hits["gcn"] > 1.1 * hits["pop"], hits
