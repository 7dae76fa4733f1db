"""RecVAE: the common contract, fold-in, the alternating updates, the composite prior and
beta from the user's count, determinism, checkpoints, bad input."""

import numpy as np
import pytest
import torch

from maasrec.exceptions import DataError
from maasrec.neural import RecVAE
from maasrec.testing import iter_checks, tiny_interactions


def small(**kw):
    params = dict(hidden_dim=32, latent_dim=16, n_layers=2, epochs=8, batch_size=16,
                  patience=3)
    params.update(kw)
    return RecVAE(**params)


CHECKS = list(iter_checks(lambda: small()))


@pytest.mark.parametrize("name, check", CHECKS, ids=[n for n, _ in CHECKS])
def test_contract(name, check):
    check()


@pytest.fixture(scope="module")
def fitted():
    data = tiny_interactions(n_users=60, per_user=8, seed=2)
    return small(random_state=0).fit(data), data


def test_history_of_a_known_user_is_that_user(fitted):
    model, data = fitted
    users = list(data.user_vocab.ids[:8])
    hist = [list(data.item_vocab.ids[data.to_csr()[i].indices]) for i in range(8)]
    ids_u, s_u = model.recommend(users, k=7)
    ids_h, s_h = model.recommend(history=hist, k=7)
    np.testing.assert_array_equal(ids_u, ids_h)
    np.testing.assert_allclose(s_u, s_h, rtol=1e-6)


def test_save_load_round_trip_keeps_the_prior(fitted, tmp_path):
    model, data = fitted
    model.save(tmp_path / "m")
    back = RecVAE.load(tmp_path / "m")
    for (ka, a), (kb, b) in zip(model.network_.state_dict().items(),
                                back.network_.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b)
    users = list(data.user_vocab.ids[:5])
    np.testing.assert_array_equal(model.recommend(users, k=5)[0], back.recommend(users, k=5)[0])


def test_prior_is_the_encoder_after_the_last_encoder_phase():
    """Every epoch ends with the decoder phase, which changes neither encoder: after a
    fit without early stopping the prior's encoder equals the encoder."""
    data = tiny_interactions(seed=3)
    m = small(epochs=3, validation_fraction=None, random_state=0).fit(data)
    net = m.network_
    for a, b in zip(net.encoder.parameters(), net.encoder_old.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in net.encoder_old.parameters())


def _batch_loss(model, data, phase, users, seed=0):
    from maasrec.neural._implicit import binary_csr

    X = binary_csr(data.to_csr())
    indptr = torch.from_numpy(X.indptr.astype(np.int64))
    indices = torch.from_numpy(X.indices.astype(np.int64))
    net = model.network_
    net.train()
    torch.manual_seed(seed)
    return model._loss_fn(net, indptr, indices, X.shape[1])(
        (torch.as_tensor(users), phase, False))


def test_each_phase_reaches_only_its_own_half(fitted):
    model, data = fitted
    net = model.network_
    for phase, trained, fixed in ((0, net.encoder, net.decoder), (1, net.decoder, net.encoder)):
        net.zero_grad(set_to_none=True)
        _batch_loss(model, data, phase, [0, 1, 2]).backward()
        assert all(p.grad is not None for p in trained.parameters())
        assert all(p.grad is None for p in fixed.parameters())
        assert all(p.grad is None for p in net.encoder_old.parameters())
    net.eval()


def test_kl_weight_is_gamma_times_the_users_count(fitted):
    """One user's encoder loss is gamma * |x_u| * KL - loglik (beta: beta * KL)."""
    model, data = fitted
    counts = np.diff(data.to_csr().indptr)
    u = int(np.argmax(counts))
    base = model.get_params()
    try:
        model.set_params(gamma=0.0, beta=None)
        l0 = float(_batch_loss(model, data, 0, [u]))
        model.set_params(gamma=0.01)
        lg = float(_batch_loss(model, data, 0, [u]))
        model.set_params(beta=0.5)
        lb = float(_batch_loss(model, data, 0, [u]))
    finally:
        model.set_params(**base)
        model.network_.eval()
    assert lg - l0 == pytest.approx((lb - l0) * 0.01 * counts[u] / 0.5, rel=1e-4)
    assert lg != l0


def test_same_seed_same_model_other_seed_other_model():
    data = tiny_interactions(seed=4)
    a = small(random_state=0, validation_fraction=None, epochs=2).fit(data)
    b = small(random_state=0, validation_fraction=None, epochs=2).fit(data)
    c = small(random_state=1, validation_fraction=None, epochs=2).fit(data)
    users, items = ["u1"] * 3, list(data.item_vocab.ids[:3])
    np.testing.assert_array_equal(a.score(users, items), b.score(users, items))
    assert not np.allclose(a.score(users, items), c.score(users, items))


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
    make = lambda: small(random_state=0, epochs=4, validation_fraction=None)  # noqa: E731
    full = make().fit(data)
    orig = Trainer.train_epoch

    def crashing(self):
        logs = orig(self)
        if self.epoch == 2:
            raise _Crash
        return logs

    monkeypatch.setattr(Trainer, "train_epoch", crashing)
    with pytest.raises(_Crash):
        make().fit(data, checkpoint_dir=tmp_path)
    monkeypatch.setattr(Trainer, "train_epoch", orig)
    resumed = make().fit(data, checkpoint_dir=tmp_path)
    users = list(data.user_vocab.ids[:5])
    np.testing.assert_array_equal(full.recommend(users, k=5)[1], resumed.recommend(users, k=5)[1])


@pytest.mark.parametrize("params, match", [
    ({"hidden_dim": 0}, "hidden_dim"),
    ({"latent_dim": 2.5}, "latent_dim"),
    ({"n_layers": 0}, "n_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"gamma": -1.0}, "gamma"),
    ({"beta": float("nan")}, "beta"),
    ({"n_enc_epochs": 0}, "n_enc_epochs"),
    ({"n_dec_epochs": 0}, "n_dec_epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"val_metric": "auc"}, "val_metric"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
])
def test_bad_params(params, match):
    with pytest.raises(DataError, match=match):
        RecVAE(**params).fit(tiny_interactions())
