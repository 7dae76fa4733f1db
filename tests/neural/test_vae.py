"""MultVAE: the common contract, fold-in, determinism, save/load, learning, bad input."""

import numpy as np
import pytest
import torch

from maasrec.data.split import random_split
from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError, DeviceError, ModelFormatError
from maasrec.metrics import evaluate
from maasrec.models import Popularity
from maasrec.neural.vae import MultVAE
from maasrec.testing import iter_checks, tiny_interactions


def small(**kw):
    params = dict(hidden_dims=(32,), latent_dim=16, epochs=30, batch_size=16, anneal_steps=50,
                  patience=5)
    params.update(kw)
    return MultVAE(**params)


CHECKS = list(iter_checks(lambda: small()))


@pytest.mark.parametrize("name, check", CHECKS, ids=[n for n, _ in CHECKS])
def test_contract(name, check):
    check()


@pytest.fixture(scope="module")
def fitted():
    data = tiny_interactions(n_users=60, per_user=8, seed=2)
    return small(random_state=0).fit(data), data


def test_history_of_a_known_user_is_that_user(fitted):
    """Fold-in encodes the history row: a training user's own items give their list."""
    model, data = fitted
    users = list(data.user_vocab.ids[:8])
    hist = [list(data.item_vocab.ids[data.to_csr()[i].indices]) for i in range(8)]
    ids_u, s_u = model.recommend(users, k=7)
    ids_h, s_h = model.recommend(history=hist, k=7)
    np.testing.assert_array_equal(ids_u, ids_h)
    np.testing.assert_allclose(s_u, s_h, rtol=1e-6)


def test_scores_ignore_values_and_order_of_history(fitted):
    model, data = fitted
    items = [int(x) for x in data.item_vocab.ids[[3, 1, 7]]]
    a = model.recommend(history=items, k=5)
    b = model.recommend(history=items[::-1], k=5)
    np.testing.assert_array_equal(a[0], b[0])


def test_training_log_and_holdout(fitted):
    model, data = fitted
    log = model.training_log_
    assert log["holdout"]["rows"] > 0 and log["best_epoch"] >= 1
    assert 0 < log["beta_final"] <= 0.2
    assert len(log["losses"]) == len(log["metrics"]) >= log["best_epoch"]
    # held-out interactions rejoin the user's row: never recommended as unseen
    ids, _ = model.recommend(list(data.user_vocab.ids), k=10)
    seen = data.to_csr()
    for u, row in enumerate(ids):
        assert not set(data.item_vocab.index(list(row)).tolist()) & set(seen[u].indices)


def test_no_holdout_trains_every_epoch():
    data = tiny_interactions(seed=3)
    m = small(epochs=4, validation_fraction=None, random_state=0).fit(data)
    assert len(m.training_log_["losses"]) == 4 and "holdout" not in m.training_log_
    assert m.training_log_["best_epoch"] is None


def test_anneal_schedule_reaches_cap():
    data = tiny_interactions(seed=3)
    # 40 users / 16 per batch = 3 steps per epoch: 4 epochs = 12 steps
    m = small(epochs=4, validation_fraction=None, anneal_steps=24, random_state=0).fit(data)
    assert m.training_log_["beta_final"] == pytest.approx(0.2 * 12 / 24)
    m = small(epochs=4, validation_fraction=None, anneal_steps=0, beta_cap=0.3,
              random_state=0).fit(data)
    assert m.training_log_["beta_final"] == pytest.approx(0.3)


def test_seed_changes_the_model():
    data = tiny_interactions(seed=4)
    a = small(random_state=0, validation_fraction=None, epochs=3).fit(data)
    b = small(random_state=1, validation_fraction=None, epochs=3).fit(data)
    sa = a.score(["u1"] * 3, list(data.item_vocab.ids[:3]))
    sb = b.score(["u1"] * 3, list(data.item_vocab.ids[:3]))
    assert not np.allclose(sa, sb)


def test_torch_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small(random_state=0, epochs=2).fit(tiny_interactions())
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


class _Crash(Exception):
    pass


def test_checkpoint_resume_gives_the_same_model(tmp_path, monkeypatch):
    """A fit stopped after epoch 3 and rerun with its checkpoint_dir ends as an unbroken
    fit (the KL annealing step is restored with the weights)."""
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
    users = list(data.user_vocab.ids[:5])
    np.testing.assert_array_equal(full.recommend(users, k=5)[1], resumed.recommend(users, k=5)[1])
    assert resumed.training_log_["beta_final"] == full.training_log_["beta_final"]


@pytest.mark.parametrize("params, match", [
    ({"hidden_dims": 600}, "hidden_dims"),
    ({"hidden_dims": (600, 0)}, "hidden_dims[1]"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"dropout": 1.0}, "dropout"),
    ({"beta_cap": -0.1}, "beta_cap"),
    ({"beta_cap": float("nan")}, "beta_cap"),
    ({"anneal_steps": -1}, "anneal_steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"val_metric": "auc"}, "val_metric"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"verbose": "yes"}, "verbose"),
])
def test_bad_params(params, match):
    with pytest.raises(DataError, match=match.replace("[", r"\[").replace("]", r"\]")):
        MultVAE(**params).fit(tiny_interactions())


def test_missing_cuda_is_a_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError):
        small(device="cuda").fit(tiny_interactions())


def test_load_refuses_weights_of_another_shape(fitted, tmp_path):
    import json

    model, _ = fitted
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "maasrec.json").read_text())
    meta["params"]["latent_dim"] = 8
    (tmp_path / "m" / "maasrec.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError):
        MultVAE.load(tmp_path / "m")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::maasrec.exceptions.ColdStartWarning")
def test_beats_popularity_on_planted_structure():
    data = make_synthetic(400, 300, density=0.05, n_factors=6, seed=0, with_text=False,
                          with_timestamps=False).interactions
    split = random_split(data, (0.8, 0.2), random_state=0)
    vae = MultVAE(hidden_dims=(64,), latent_dim=16, epochs=40, batch_size=32,
                  anneal_steps=200, random_state=0).fit(split.train)
    pop = Popularity().fit(split.train)
    ndcg = {name: evaluate(m, split.train, split.test, k=10, metrics=["ndcg@10"],
                           n_bootstrap=0)["ndcg@10"] for name, m in (("vae", vae), ("pop", pop))}
    assert ndcg["vae"] > 1.1 * ndcg["pop"], ndcg
