"""Federated BPR-MF with Flower's simulation engine (maasrec.privacy.train_federated)."""

import numpy as np
import pytest

from maasrec.data.interactions import Interactions
from maasrec.exceptions import DataError, MaasrecError
from maasrec.models import BPRMF

pytest.importorskip("flwr")
pytest.importorskip("ray")

from maasrec.privacy.federated import _partition, train_federated


def _data(n_users=24, n_items=30, seed=0):
    """Two planted tastes: even users like the first half of the items, odd users the rest."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        pool = np.arange(n_items // 2) if u % 2 == 0 else np.arange(n_items // 2, n_items)
        for i in rng.choice(pool, 8, replace=False):
            users.append(f"u{u}")
            items.append(f"i{i}")
    return Interactions.from_arrays(users, items)


@pytest.fixture(scope="module")
def fitted():
    X = _data()

    seen = {}

    def on_round(rnd, model):
        # a fitted BPRMF of the state after each round's aggregation
        seen[rnd] = model
        return {"top_u0": float(model.recommend("u0", k=1)[1][0]), "n_users": model.n_users_}

    result = train_federated(X, n_clients=4, rounds=3, clients_per_round=3, factors=8,
                             learning_rate=0.05, on_round=on_round, random_state=7)
    result.seen = seen
    return X, result


@pytest.mark.slow
def test_federated_fit_gives_a_working_bprmf(fitted, tmp_path):
    _, result = fitted
    model = result.model
    assert isinstance(model, BPRMF)
    assert model.user_factors_.shape == (24, 8) and model.item_factors_.shape == (30, 8)
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    ids, _ = model.recommend(["u0", "u1"], k=5)
    assert ids.shape == (2, 5)
    # the planted structure is learned: user u0 gets items of its half, u1 of the other
    half = {f"i{i}" for i in range(15)}
    assert sum(i in half for i in ids[0]) >= 4
    assert sum(i not in half for i in ids[1]) >= 4
    model.save(tmp_path / "m")
    again = BPRMF.load(tmp_path / "m")
    np.testing.assert_array_equal(again.recommend(["u0", "u1"], k=5)[0], ids)


@pytest.mark.slow
def test_rounds_and_bytes_are_reported(fitted):
    _, result = fitted
    assert [r["round"] for r in result.rounds] == [1, 2, 3]
    per_client = result.bytes_per_client_round
    # 30 x 8 float32 factors and 30 float32 biases, plus the arrays' headers
    assert 30 * 9 * 4 <= per_client < 30 * 9 * 4 + 1024
    for r in result.rounds:
        assert r["clients"] == 3
        assert r["bytes_down"] == r["bytes_up"] == 3 * per_client
    assert result.final_round["clients"] == 4 and result.final_round["bytes_up"] == 0
    # every client sampled over the rounds trained its users: FedAvg weights sum to the
    # interactions of the sampled clients
    assert all(0 < r["interactions"] <= 24 * 8 for r in result.rounds)
    assert result.model.training_log_["federated"]["n_clients"] == 4
    assert [r["metrics"]["n_users"] for r in result.rounds] == [24, 24, 24]
    assert all(np.isfinite(r["metrics"]["top_u0"]) for r in result.rounds)
    # the last round's view is what the clients' final fit produced, outside Flower
    last = result.seen[3]
    np.testing.assert_array_equal(last.item_factors_, result.model.item_factors_)
    np.testing.assert_array_equal(last.user_factors_, result.model.user_factors_)


@pytest.mark.slow
def test_same_seed_same_model(fitted):
    X, result = fitted
    again = train_federated(X, n_clients=4, rounds=3, clients_per_round=3, factors=8,
                            learning_rate=0.05, random_state=7)
    np.testing.assert_array_equal(again.model.item_factors_, result.model.item_factors_)
    np.testing.assert_array_equal(again.model.user_factors_, result.model.user_factors_)


def test_partition_is_a_seeded_cover_of_the_users():
    groups = _partition(10, 3, seed=1)
    assert sorted(np.concatenate(groups).tolist()) == list(range(10))
    assert [len(g) for g in groups] == [4, 3, 3]
    assert all(np.array_equal(a, b) for a, b in zip(groups, _partition(10, 3, seed=1)))
    assert not all(np.array_equal(a, b) for a, b in zip(groups, _partition(10, 3, seed=2)))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_clients": 0}, "n_clients must be >= 1, got 0"),
    ({"n_clients": 25}, "n_clients=25"),
    ({"rounds": 0}, "rounds must be >= 1, got 0"),
    ({"rounds": 2.5}, "rounds must be an integer, got 2.5"),
    ({"n_clients": 4, "clients_per_round": 5}, "clients_per_round=5"),
    ({"local_epochs": 0}, "local_epochs"),
    ({"server_learning_rate": 0.0}, "server_learning_rate"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(DataError, match=match):
        train_federated(_data(), **{"n_clients": 4, **kwargs})


def test_missing_flower_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_flwr(name, *args, **kwargs):
        if name == "flwr" or name.startswith("flwr."):
            raise ImportError("No module named 'flwr'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_flwr)
    with pytest.raises(MaasrecError, match=r"maasrec\[federated\]"):
        train_federated(_data(), n_clients=2, rounds=1)
