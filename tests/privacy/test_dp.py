"""User-level DP-SGD (maasrec.privacy.dp) through the one Trainer."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("opacus")

from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError, MaasrecError
from maasrec.models import EASE
from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender
from maasrec.privacy.dp import DPSpec, PrivateSGD, check_dp, dp_model_check
from maasrec.training import Trainer, TrainerConfig, TrainingTask


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(60, 40, density=0.1, n_factors=3, seed=0,
                          with_text=False).interactions


def _neumf(**kw):
    base = dict(dim=8, mlp_layers=(8,), epochs=2, random_state=0,
                dp={"noise_multiplier": 1.0, "batch_size": 12})
    base.update(kw)
    return NeuMF(**base)


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("dp, match", [
    ({"epsilon": 0}, "epsilon"),
    ({"epsilon": -1.0}, "epsilon"),
    ({"epsilon": math.inf}, "dp=None"),
    ({"epsilon": float("nan")}, "epsilon"),
    ({"epsilon": True}, "epsilon"),
    ({"epsilon": 1.0, "delta": 1.0}, "delta"),
    ({"epsilon": 1.0, "delta": 0.0}, "delta"),
    ({"epsilon": 1.0, "delta": 1.5}, "delta"),
    ({"epsilon": 1.0, "max_grad_norm": 0}, "max_grad_norm"),
    ({"noise_multiplier": 0.0}, "noise_multiplier"),
    ({"epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one"),
    ({"delta": 1e-5}, "exactly one"),
    ({"epsilon": 1.0, "epsilson": 2}, "epsilson"),
    ({"epsilon": 1.0, "accountant": "moments"}, "moments"),
    ({"epsilon": 1.0, "batch_size": 0}, "batch_size"),
    ("epsilon=1", "epsilon=1"),
])
def test_bad_dp_names_the_value(dp, match):
    with pytest.raises(DataError, match=match):
        check_dp(dp)


def test_bad_dp_refused_by_the_models_before_training(tiny):
    with pytest.raises(DataError, match="epsilon"):
        HybridRecommender(dp={"epsilon": 0}).fit(tiny)
    with pytest.raises(DataError, match="delta"):
        SequentialRecommender(dp={"epsilon": 1.0, "delta": 1}).fit(tiny)
    with pytest.raises(DataError, match="popularity"):
        _neumf(negative_sampler="popularity").fit(tiny)
    with pytest.raises(DataError, match="clip_grad_norm"):
        _neumf(clip_grad_norm=1.0).fit(tiny)
    with pytest.raises(DataError, match="batch_size"):
        _neumf(dp={"noise_multiplier": 1.0, "batch_size": 1000}).fit(tiny)


def test_unsupported_model_type_is_refused():
    with pytest.raises(DataError, match="EASE does not support dp"):
        dp_model_check(EASE(), {"epsilon": 1.0})
    assert dp_model_check(EASE(), None) is None


def test_missing_opacus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)
    with pytest.raises(MaasrecError, match="privacy"):
        PrivateSGD(DPSpec(noise_multiplier=1.0), loss=lambda b: b, unit_batch=lambda u: u,
                   units=[0, 1, 2], epochs=1, seed=0)


def test_moved_exceptions_are_the_same_classes():
    import maasrec.exceptions as ex
    import maasrec.privacy as pv
    from maasrec.privacy import crypto

    assert pv.DecryptionError is crypto.DecryptionError is ex.DecryptionError
    assert pv.EncryptionKeyError is crypto.EncryptionKeyError is ex.EncryptionKeyError
    assert issubclass(ex.DecryptionError, ex.ModelFormatError)


# -- the engine on a toy problem ---------------------------------------------------------
def _toy(scale_user2: float = 1.0, seed: int = 0, sigma: float = 0.5):
    torch.manual_seed(0)
    w = torch.nn.Linear(4, 1)
    data = {u: torch.full((3, 4), float(u + 1)) for u in range(6)}
    data[2] = data[2] * scale_user2

    def loss(x):
        return (w(x) ** 2).mean()

    eng = PrivateSGD(DPSpec(noise_multiplier=sigma, max_grad_norm=0.5, batch_size=2),
                     loss=loss, unit_batch=lambda u: data[u], units=range(6), epochs=1,
                     seed=seed)
    return w, eng


def test_per_user_clipping_bounds_one_users_contribution():
    # neighbouring data sets: user 2's data blown up x1000; same seed, same noise
    grads = []
    for scale in (1.0, 1000.0):
        w, eng = _toy(scale)
        params = list(w.parameters())
        eng.backward(torch.tensor([0, 1, 2, 3]), params)
        grads.append(torch.cat([p.grad.flatten() for p in params]))
        assert max(eng.last_norms) > 0
    assert eng.last_norms[2] > 100 * eng.max_grad_norm  # clipping had work to do
    diff = float((grads[0] - grads[1]).norm())
    # one user moves the noised mean by at most 2 C / expected batch (replace-one)
    assert diff <= 2 * eng.max_grad_norm / eng.expected_batch + 1e-6
    assert diff > 0


def test_noise_has_the_calibrated_scale():
    w, eng = _toy(sigma=3.0)
    params = list(w.parameters())
    eng.backward(torch.tensor([], dtype=torch.long), params)  # no user: noise only
    g = torch.cat([p.grad.flatten() for p in params]) * eng.expected_batch
    assert g.abs().max() > 0
    assert float(g.std()) == pytest.approx(3.0 * 0.5, rel=0.9)


def test_poisson_batches_are_seeded_and_vary_in_size():
    _, a = _toy(seed=3)
    _, b = _toy(seed=3)
    xa = [t.tolist() for t in a.batches(0)]
    xb = [t.tolist() for t in b.batches(0)]
    assert xa == xb and len(xa) == a.steps_per_epoch == 3
    _, big = _toy()
    sizes = {len(t) for e in range(10) for t in big.batches(e)}
    assert len(sizes) > 1  # Poisson sampling, not fixed-size batches


def test_trainer_refuses_what_dp_cannot_honour(monkeypatch):
    w, eng = _toy()
    task = TrainingTask(w, eng.batches, eng.loss, privacy=eng, steps_per_epoch=3)
    with pytest.raises(DataError, match="grad_accumulation"):
        Trainer(task, TrainerConfig(epochs=1, grad_accumulation=2))
    with pytest.raises(DataError, match="clip_grad_norm"):
        Trainer(task, TrainerConfig(epochs=1, clip_grad_norm=1.0))
    import maasrec.training.trainer as tr

    monkeypatch.setattr(tr, "world_size", lambda: 2)
    with pytest.raises(DataError, match="distributed"):
        Trainer(task, TrainerConfig(epochs=1))


# -- through the models ------------------------------------------------------------------
def test_epsilon_grows_with_epochs_and_is_logged(tiny):
    m = _neumf(epochs=3).fit(tiny)
    rec = m.training_log_["privacy"]
    eps = rec["epsilon_per_epoch"]
    assert len(eps) == 3 and all(a < b for a, b in itertools.pairwise(eps))
    assert rec["epsilon"] == eps[-1] and rec["unit"] == "user"
    assert rec["delta"] == pytest.approx(1 / rec["n_users"])
    assert rec["steps"] == 3 * int(1 / rec["sample_rate"])
    assert "holdout" not in m.training_log_  # no validation slice under dp


def test_target_epsilon_is_met(tiny):
    m = _neumf(dp={"epsilon": 4.0, "batch_size": 12}, epochs=2).fit(tiny)
    rec = m.training_log_["privacy"]
    assert 3.6 <= rec["epsilon"] <= 4.0 * 1.02
    assert rec["target_epsilon"] == 4.0 and rec["noise_multiplier"] > 0


def test_same_seed_same_model_other_seed_other_model(tiny):
    a = _neumf().fit(tiny)
    b = _neumf().fit(tiny)
    c = _neumf(random_state=1).fit(tiny)
    np.testing.assert_array_equal(a.item_repr_, b.item_repr_)
    assert not np.array_equal(a.item_repr_, c.item_repr_)


def test_noise_changes_the_weights(tiny):
    quiet = _neumf(dp={"noise_multiplier": 0.3, "batch_size": 12}).fit(tiny)
    loud = _neumf(dp={"noise_multiplier": 50.0, "batch_size": 12}).fit(tiny)
    assert not np.allclose(quiet.item_repr_, loud.item_repr_)


def test_save_load_keeps_the_privacy_record(tiny, tmp_path):
    m = HybridRecommender(dim=8, epochs=2, random_state=0,
                          dp={"epsilon": 3.0, "batch_size": 10}).fit(tiny)
    m.save(tmp_path / "m")
    back = HybridRecommender.load(tmp_path / "m")
    assert back.training_log_["privacy"] == m.training_log_["privacy"]
    assert back.dp == {"epsilon": 3.0, "batch_size": 10}
    users = list(tiny.user_vocab.ids_of(np.arange(5)))
    np.testing.assert_array_equal(back.recommend(users, k=5)[0], m.recommend(users, k=5)[0])


def test_interaction_batches_group_rows_by_user(tiny):
    # id-only users: the non-private plan batches interactions; under dp a user's rows
    # are one unit
    m = _neumf(user_encoders=("id",)).fit(tiny)
    assert m.training_log_["privacy"]["n_users"] == int((tiny.user_counts() > 0).sum())


def test_sequential_dp_groups_a_users_windows(tiny):
    m = SequentialRecommender(dim=8, n_layers=1, n_heads=1, max_len=3, epochs=2,
                              random_state=0,
                              dp={"noise_multiplier": 1.0, "batch_size": 8}).fit(tiny)
    rec = m.training_log_["privacy"]
    # users with 2+ interactions are the units, however many windows (max_len=3) each has
    assert rec["n_users"] == int((tiny.user_counts() >= 2).sum())
    assert m.training_log_["n_windows"] > rec["n_users"]
    assert all(np.isfinite(m.training_log_["losses"]))


class _Crash(Exception):
    pass


def test_checkpoint_resume_keeps_the_budget_and_the_weights(tiny, tmp_path, monkeypatch):
    full = _neumf(epochs=3).fit(tiny)
    orig = Trainer.train_epoch

    def crashing(self):
        logs = orig(self)
        if self.epoch == 2:
            raise _Crash
        return logs

    monkeypatch.setattr(Trainer, "train_epoch", crashing)
    with pytest.raises(_Crash):
        _neumf(epochs=3).fit(tiny, checkpoint_dir=tmp_path)
    monkeypatch.setattr(Trainer, "train_epoch", orig)
    resumed = _neumf(epochs=3).fit(tiny, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(full.item_repr_, resumed.item_repr_)
    assert resumed.training_log_["privacy"] == full.training_log_["privacy"]
