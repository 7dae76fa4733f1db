"""Private ALS (maasrec.privacy.dp_als): joint user-level DP, accounting, contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from maasrec.base import Recommender
from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError
from maasrec.metrics import evaluate
from maasrec.models import ALS
from maasrec.privacy.dp_als import (
    PrivateALS,
    _bound_contributions,
    _clip_users,
    _scale_contributions,
    gaussian_epsilon,
    gaussian_mu,
)
from maasrec.testing import iter_checks

FACTORIES = {
    # 60 users: only a weak privacy level leaves signal on the contract's tiny data
    "eps1000": lambda: PrivateALS(epsilon=1000.0, factors=4, regularization=1.0,
                                  iterations=3, max_user_items=8),
    "nonprivate": lambda: PrivateALS(epsilon=None, factors=4, regularization=1.0,
                                     iterations=3),
    "no-bias": lambda: PrivateALS(epsilon=1000.0, factors=4, regularization=1.0,
                                  iterations=3, item_bias=0.0),
    "item-grams": lambda: PrivateALS(epsilon=1000.0, factors=4, regularization=1.0,
                                     iterations=3, budget_shares=(0.1, 0.3, 0.6)),
    "scale": lambda: PrivateALS(epsilon=1000.0, factors=4, regularization=1.0,
                                iterations=3, max_user_items=4, contribution="scale"),
    "clip-only": lambda: PrivateALS(epsilon=1000.0, factors=4, regularization=1.0,
                                    iterations=3, normalize_users=False,
                                    contribution="sample"),
}
CASES = [(f"{name}-{check_name}", check) for name, factory in FACTORIES.items()
         for check_name, check in iter_checks(factory)]


@pytest.mark.parametrize("name, check", CASES, ids=[c[0] for c in CASES])
def test_contract(name, check):
    check()


@pytest.fixture(scope="module")
def data():
    return make_synthetic(300, 60, density=0.15, n_factors=3, seed=0,
                          with_text=False).interactions


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    ({"epsilon": 0}, "epsilon"),
    ({"epsilon": -1.0}, "epsilon"),
    ({"epsilon": math.inf}, "epsilon=None"),
    ({"epsilon": float("nan")}, "epsilon"),
    ({"epsilon": "8"}, "epsilon"),
    ({"delta": 0.0}, "delta"),
    ({"delta": 1.0}, "delta"),
    ({"delta": 1.5}, "delta"),
    ({"max_user_items": 0}, "max_user_items"),
    ({"budget_shares": (0.5, 0.5)}, "budget_shares"),
    ({"budget_shares": (0.5, 0.5, 0.5)}, "budget_shares"),
    ({"budget_shares": (0.0, 0.5, 0.5)}, "budget_shares"),
    ({"budget_shares": (0.5, -0.1, 0.6)}, "budget_shares"),
    ({"user_regularization": 0.0}, "user_regularization"),
    ({"item_bias": 1.0}, "item_bias"),
    ({"item_bias": -0.1}, "item_bias"),
    ({"contribution": "clip"}, "contribution"),
    ({"contribution": None}, "contribution"),
    ({"contribution": ["scale"]}, "contribution"),
    ({"normalize_users": "yes"}, "normalize_users"),
    ({"normalize_users": 1}, "normalize_users"),
])
def test_bad_params(data, params, match):
    with pytest.raises(DataError, match=match):
        PrivateALS(**params).fit(data)


# -- accounting --------------------------------------------------------------------------
def test_gaussian_curve_known_value():
    # mu = 1 GDP at epsilon 1: delta = Phi(-0.5) - e Phi(-1.5) (Dong, Roth & Su, 2019)
    from scipy.stats import norm

    want = norm.cdf(-0.5) - math.e * norm.cdf(-1.5)
    assert gaussian_epsilon(1.0, want) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("eps", [0.5, 1.0, 4.0, 8.0, 20.0])
@pytest.mark.parametrize("delta", [1e-6, 1 / 6040])
def test_mu_epsilon_roundtrip(eps, delta):
    mu = gaussian_mu(eps, delta)
    assert gaussian_epsilon(mu, delta) == pytest.approx(eps, rel=1e-6)
    assert gaussian_epsilon(1.01 * mu, delta) > eps  # mu is the largest that fits


def test_gdp_no_looser_than_opacus_rdp():
    """Opacus's RDP accountant on the same Gaussian releases gives a larger epsilon."""
    opacus = pytest.importorskip("opacus.accountants")
    eps, delta, T = 8.0, 1 / 6040, 5
    z = math.sqrt(T) / gaussian_mu(eps, delta)
    acc = opacus.RDPAccountant()
    acc.history = [(z, 1.0, T)]
    rdp = acc.get_epsilon(delta=delta)
    assert eps <= rdp < 1.3 * eps


def test_privacy_record_and_noise(data, tmp_path):
    m = PrivateALS(epsilon=4.0, iterations=3, max_user_items=10, random_state=0).fit(data)
    rec = m.training_log_["privacy"]
    assert rec["delta"] == pytest.approx(1 / data.n_users)
    assert rec["epsilon"] == pytest.approx(4.0, rel=1e-6)
    assert rec["epsilon_zcdp_bound"] > rec["epsilon"]
    z = math.sqrt(3) / rec["mu"]
    assert rec["noise_multiplier"] == pytest.approx(z)
    assert rec["sensitivity"]["item_rhs"] == pytest.approx(3.0 * math.sqrt(10))
    assert rec["noise_std"]["item_rhs"] == pytest.approx(z * 3.0 * math.sqrt(10)
                                                         / math.sqrt(0.95))
    assert rec["noise_std"]["item_gram"] == 0.0  # not released by default
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert back.training_log_["privacy"] == rec
    np.testing.assert_array_equal(back.item_factors_, m.item_factors_)


def test_more_privacy_more_noise(data):
    """The released item factors move further from the noiseless ones as epsilon falls."""
    base = PrivateALS(epsilon=None, iterations=2, random_state=0, max_user_items=10)
    ref = base.fit(data).item_factors_
    dist = []
    for eps in (100.0, 8.0, 1.0):
        y = PrivateALS(epsilon=eps, iterations=2, random_state=0, max_user_items=10,
                       regularization=2000.0).fit(data).item_factors_
        dist.append(np.linalg.norm(y / np.linalg.norm(y) - ref / np.linalg.norm(ref)))
    assert dist[0] < dist[1] < dist[2]


def test_bound_contributions():
    rng = np.random.default_rng(0)
    R = sp.random(50, 40, density=0.4, format="csr", random_state=1, dtype=np.float32)
    R.data[:] = 1.0
    R.sort_indices()
    out = _bound_contributions(R, 5, rng)
    counts = np.diff(out.indptr)
    assert (counts == np.minimum(np.diff(R.indptr), 5)).all()
    assert ((out - R.multiply(out != 0)).nnz == 0) and (R - out).min() >= 0  # a subset
    for r in range(out.shape[0]):  # column indices stay sorted within each row
        assert (np.diff(out.indices[out.indptr[r]:out.indptr[r + 1]]) > 0).all()
    again = _bound_contributions(R, 5, np.random.default_rng(0))
    assert (out != again).nnz == 0  # seeded


def test_scale_contributions():
    """contribution="scale": every entry kept, each row's L2 norm at most sqrt(k), rows
    within the bound untouched; the privacy record (sensitivity, noise) is the sampled one's."""
    R = sp.random(50, 40, density=0.4, format="csr", random_state=1, dtype=np.float32)
    R.data[:] = 1.0
    R.sort_indices()
    out = _scale_contributions(R, 5)
    assert (out.indptr == R.indptr).all() and (out.indices == R.indices).all()
    counts = np.diff(R.indptr)
    norms = np.sqrt(np.asarray(out.multiply(out).sum(1)).ravel())
    np.testing.assert_allclose(norms, np.sqrt(np.minimum(counts, 5)), rtol=1e-6)
    short = counts <= 5
    assert (out[short].toarray() == R[short].toarray()).all()


def test_scale_contribution_fit(data):
    kw = dict(epsilon=4.0, iterations=2, max_user_items=6, random_state=0)
    sampled = PrivateALS(contribution="sample", **kw).fit(data)
    scaled = PrivateALS(**kw).fit(data)  # the default
    again = PrivateALS(contribution="scale", **kw).fit(data)
    rec, rec_s = sampled.training_log_["privacy"], scaled.training_log_["privacy"]
    assert rec_s["contribution"] == "scale" and rec["contribution"] == "sample"
    assert rec_s["noise_std"] == rec["noise_std"] and rec_s["epsilon"] == rec["epsilon"]
    np.testing.assert_array_equal(scaled.item_factors_, again.item_factors_)  # seeded
    assert not np.allclose(scaled.item_factors_, sampled.item_factors_)
    # every user within the bound: both are the data's statistics, the same release
    k = int(np.diff(data.to_csr().indptr).max())
    kw["max_user_items"] = k
    np.testing.assert_array_equal(
        PrivateALS(contribution="scale", **kw).fit(data).item_factors_,
        PrivateALS(contribution="sample", **kw).fit(data).item_factors_)


@pytest.mark.parametrize("bias", [0.0, 0.3])
def test_clip_users(bias):
    """Every user's factor enters the statistics with norm <= 1; normalize_users: == 1 (a
    zero factor stays zero); coordinate 0 held at the bias."""
    g = np.random.default_rng(0)
    X = torch.from_numpy(g.normal(size=(40, 6)) * g.uniform(0.01, 3.0, size=(40, 1)))
    X[0] = 0.0
    if bias:
        X[:, 0] = bias
    for normalize in (False, True):
        out = _clip_users(X, bias, normalize)
        norms = torch.linalg.vector_norm(out, dim=1).numpy()
        assert (norms <= 1 + 1e-9).all() and norms[0] == pytest.approx(bias)
        if bias:
            np.testing.assert_allclose(out[:, 0].numpy(), bias, rtol=1e-12)
        raw = torch.linalg.vector_norm(X[:, 1:] if bias else X, dim=1).numpy()
        cap = math.sqrt(1 - bias ** 2)
        kept = torch.linalg.vector_norm(out[:, 1:] if bias else out, dim=1).numpy()
        if normalize:
            np.testing.assert_allclose(kept[1:], cap, rtol=1e-9)
        else:
            np.testing.assert_allclose(kept, np.minimum(raw, cap), rtol=1e-9)
        # directions kept
        cos = ((out[1:, 1:] * X[1:, 1:]).sum(1) / (torch.linalg.vector_norm(out[1:, 1:], dim=1)
                                                   * torch.linalg.vector_norm(X[1:, 1:], dim=1)))
        np.testing.assert_allclose(cos.numpy(), 1.0, rtol=1e-9)


def test_normalize_users_fit(data):
    kw = dict(epsilon=4.0, iterations=2, max_user_items=6, random_state=0)
    on = PrivateALS(**kw).fit(data)  # the default
    off = PrivateALS(normalize_users=False, **kw).fit(data)
    assert on.training_log_["privacy"]["normalize_users"] is True
    assert off.training_log_["privacy"]["normalize_users"] is False
    assert on.training_log_["privacy"]["noise_std"] == off.training_log_["privacy"]["noise_std"]
    assert not np.allclose(on.item_factors_, off.item_factors_)
    np.testing.assert_array_equal(PrivateALS(**kw).fit(data).item_factors_, on.item_factors_)


@pytest.mark.parametrize("bias", [0.0, 0.3])
def test_user_factor_is_own_solve(data, bias):
    """Joint DP's structure: a user's factor is their own solve against the released items
    (recalculate_users), as on the user's device; with item_bias its coordinate 0 is fixed."""
    m = PrivateALS(epsilon=3.0, item_bias=bias, random_state=0).fit(data)
    X = data.to_csr()
    own = m.recalculate_users(X[:5])
    np.testing.assert_allclose(own, m.user_factors_[:5], atol=1e-4)
    if bias:
        np.testing.assert_allclose(m.user_factors_[:, 0], bias, rtol=1e-6)


def test_nonprivate_close_to_als():
    full = make_synthetic(400, 80, density=0.12, n_factors=3, seed=2,
                          with_text=False).interactions
    from maasrec.data.split import random_split

    train, test = random_split(full, (0.8, 0.2), per_user=True, random_state=0)
    als = evaluate(ALS(factors=8, regularization=5.0, random_state=0).fit(train), train,
                   test, k=10, metrics=["ndcg"], n_bootstrap=0)["ndcg@10"]
    ours = evaluate(PrivateALS(epsilon=None, factors=8, regularization=5.0,
                               random_state=0).fit(train), train, test, k=10,
                    metrics=["ndcg"], n_bootstrap=0)["ndcg@10"]
    assert ours >= 0.8 * als
