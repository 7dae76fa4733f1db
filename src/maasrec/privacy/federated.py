"""Federated training of a BPR matrix factorisation with Flower's simulation engine.

:func:`train_federated` splits the users into simulated clients (devices), trains
:class:`~maasrec.models.BPRMF` with Flower (extra ``federated``) and returns a fitted
``BPRMF`` that recommends, evaluates and saves like any other, plus a
:class:`FederatedResult` with what was sent each round.

What leaves a device: the item factors and item biases it trained (FedAvg). What never
does: its users' interactions and their user factors, which live in the device's own
storage across rounds (here one private file per client).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_choice, check_int, check_number
from ..base import as_interactions, clone, positive_interactions
from ..exceptions import DataError, MaasrecError

__all__ = ["FederatedResult", "train_federated"]

logger = logging.getLogger(__name__)


def _import_flwr():
    """Import Flower or say which extra to install.

    Unless the caller set them: Flower's telemetry is off (``FLWR_TELEMETRY_ENABLED=0``; it
    would post events to flower.ai) and Ray keeps the accelerator variables of CPU-only
    actors as they are (``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0``, its future default,
    which silences its FutureWarning; clients train on the CPU either way), and Ray's
    workers run at the caller's priority (``RAY_worker_niceness=0``; Ray's default of 15
    starved the client actor on a busy machine: 8% of a core next to nice-0 processes).
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        import flwr  # noqa: F401
        from flwr.simulation import run_simulation
    except ImportError as exc:
        raise MaasrecError("federated training needs Flower with its simulation engine: "
                           "pip install 'maasrec[federated]' (flwr[simulation])") from exc
    return run_simulation


@dataclass
class FederatedResult:
    """What :func:`train_federated` did, round by round.

    Attributes
    ----------
    model : BPRMF
        The fitted model (item side from the last aggregation, each user's factors from
        their own client).
    rounds : list of dict
        Per training round: ``round``, ``clients`` (sampled), ``bytes_down`` (serialized
        arrays sent to them), ``bytes_up`` (serialized arrays they sent back),
        ``interactions`` (their FedAvg weights summed), ``loss`` (their mean local BPR
        loss), ``seconds``.
    final_round : dict
        The personalisation round after the last one: every client receives the final
        item side (``bytes_down``) and fits its user factors to it; nothing is sent back
        but a loss (``bytes_up`` 0).
    bytes_per_client_round : int
        Serialized item side, each way, for one client in one round.
    n_clients : int
    seconds : float
        Wall time of the whole simulation.
    """

    model: Any
    rounds: list[dict] = field(default_factory=list)
    final_round: dict = field(default_factory=dict)
    bytes_per_client_round: int = 0
    n_clients: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Everything but the model, as JSON-ready values."""
        return {"n_clients": self.n_clients, "rounds": self.rounds,
                "final_round": self.final_round,
                "bytes_per_client_round": self.bytes_per_client_round,
                "seconds": self.seconds}


def _check_args(n_users: int, n_clients, rounds, clients_per_round, local_epochs,
                server_learning_rate, n_workers, optimizer) -> int:
    check_int("n_clients", n_clients, low=1)
    if n_clients > n_users:
        raise DataError(f"n_clients={n_clients!r} is more than the {n_users} users: every "
                        "simulated client must hold at least one user")
    check_int("rounds", rounds, low=1)
    check_int("local_epochs", local_epochs, low=1)
    check_int("n_workers", n_workers, low=1)
    check_number("server_learning_rate", server_learning_rate, low=0, low_inclusive=False)
    check_choice("optimizer", optimizer, ("adam", "sgd"))
    if clients_per_round is None:
        return int(n_clients)
    check_int("clients_per_round", clients_per_round, low=1)
    if clients_per_round > n_clients:
        raise DataError(f"clients_per_round={clients_per_round!r} is more than "
                        f"n_clients={n_clients!r}")
    return int(clients_per_round)


def _seed(random_state) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**32))
    return int(random_state) % 2**32


def _partition(n_users: int, n_clients: int, seed: int) -> list[np.ndarray]:
    """Users shuffled (seeded) and cut into ``n_clients`` groups of near-equal size."""
    perm = np.random.default_rng([seed, 0]).permutation(n_users)
    return [np.sort(g) for g in np.array_split(perm, n_clients)]


def _bprmf(**params):
    """The unfitted :class:`~maasrec.models.BPRMF` to fill, its parameters checked as
    ``fit`` checks them (:class:`DataError` naming a bad one)."""
    from ..models.bpr import BPRMF

    model = BPRMF(**params)
    model._check_standard_params()
    model._validate_params()
    return model


def _initial_item_side(n_items: int, factors: int, init_std: float, seed: int) -> dict:
    """The server's starting item factors (seeded normal, ``init_std``) and zero biases."""
    g = np.random.default_rng([seed, 4])
    return {"item_factors": (g.standard_normal((n_items, factors)) * init_std
                             ).astype(np.float32),
            "item_bias": np.zeros(n_items, dtype=np.float32)}


def train_federated(X, *, n_clients: int = 100, rounds: int = 20,
                    clients_per_round: int | None = None, local_epochs: int = 3,
                    factors: int = 64, learning_rate: float = 0.01,
                    regularization: float = 0.01, batch_size: int = 256,
                    init_std: float = 0.01, optimizer: str = "adam",
                    server_learning_rate: float = 1.0,
                    n_workers: int = 1, on_round=None, random_state=None) -> FederatedResult:
    """Train a BPR matrix factorisation federatedly, simulated with Flower.

    The users are shuffled (seeded) and cut into ``n_clients`` groups; each group is one
    simulated client (device) of Flower's simulation engine (Ray backend). Each round,
    ``clients_per_round`` clients (seeded choice) receive the global item factors and
    item biases, load their users' factors from their own storage, run ``local_epochs``
    passes of BPR over their interactions (Adam, the step of
    :class:`~maasrec.models.BPRMF`) and send back the item side only; the server
    aggregates with Flower's FedAvg, weighted by each client's interactions. After the
    last round every client receives the final item side and fits its user factors to it.

    Parameters
    ----------
    X : Interactions, pandas.DataFrame or scipy.sparse matrix
        Training interactions (as ``fit`` takes; values <= 0 are left out, as
        :meth:`Recommender.fit <maasrec.base.Recommender.fit>` does for implicit feedback).
    n_clients : int, default 100
        Simulated clients, 1 to the number of users.
    rounds : int, default 20
        Federated training rounds (>= 1).
    clients_per_round : int, optional
        Clients trained per round (default: all).
    local_epochs : int, default 3
        Passes over a client's interactions per round (the measured choice:
        :doc:`/privacy`).
    factors, learning_rate, regularization, init_std
        As :class:`~maasrec.models.BPRMF` (but Adam's step is 0.01 here, against
        BPRMF's 0.003: FedAvg of many short local runs moves like few large-batch steps).
    optimizer : {"adam", "sgd"}, default "adam"
        The clients' optimizer (the step of ``BPRMF``; Adam's moments start afresh each
        round).
    batch_size : int, default 256
        Triples per local mini-batch (a client with fewer interactions takes one step
        per pass).
    server_learning_rate : float, default 1.0
        1 is plain FedAvg; larger values scale the mean update (Flower's ``FedAvgM``
        without momentum).
    n_workers : int, default 1
        Clients trained at once (Ray actors, one CPU each).
    on_round : callable, optional
        ``on_round(round, model)`` after each round's aggregation, with the fitted
        ``BPRMF`` the devices would hold if training stopped there: the aggregated item
        side, and each client's user factors fitted to it as in the final round (done
        here for every client, outside Flower: a simulation-only view, e.g. to evaluate
        every round; it costs one local pass over all the data). After the last round
        the model is the one returned. A returned mapping is kept in that round's record
        under ``"metrics"``.
    random_state : int, numpy.random.Generator or None
        Seeds the partition, the client sampling, every start and every negative.

    Returns
    -------
    FederatedResult
        ``.model`` is a fitted :class:`~maasrec.models.BPRMF`; ``.rounds`` the bytes and
        losses per round.

    Raises
    ------
    MaasrecError
        Flower is not installed (extra ``federated``).
    DataError
        ``n_clients`` < 1 or more than the users, ``rounds`` < 1, another bad value.

    Notes
    -----
    **What is protected.** Raw interactions and user factors stay on the devices; the
    server sees each sampled client's item factors and biases after local training,
    which reveal which items moved (the items its users interacted with, and its sampled
    negatives). No secure aggregation (why: :doc:`/privacy`) and no differential privacy.

    **Defaults and cost.** How the defaults were chosen (MovieLens 1M: 95% of
    centralised BPRMF's test NDCG@10 after 20 rounds), what each round sends
    (``n_items x (factors + 1)`` float32 per client and direction) and how long rounds
    take: :doc:`/privacy` ("Federated training").
    """
    raw = as_interactions(X)
    data = positive_interactions(raw, "train_federated")
    R = data.to_csr(copy=False)
    n_users, n_items = R.shape
    per_round = _check_args(n_users, n_clients, rounds, clients_per_round, local_epochs,
                            server_learning_rate, n_workers, optimizer)
    model = _bprmf(factors=factors, learning_rate=learning_rate, regularization=regularization,
                   epochs=rounds, batch_size=batch_size, optimizer=optimizer,
                   init_std=init_std, random_state=random_state)
    run_simulation = _import_flwr()
    from ._federated_local import LocalConfig

    seed = _seed(random_state)
    cfg = LocalConfig(int(factors), float(learning_rate), float(regularization),
                      int(local_epochs), int(batch_size), float(init_std), seed, optimizer)

    def view(rnd: int, P: np.ndarray, arrays: dict):
        current = clone(model)
        _assemble(current, raw, P, arrays)
        return on_round(rnd, current)

    P, out, n_bytes, seconds = _simulate(
        run_simulation, R, _partition(n_users, int(n_clients), seed), cfg,
        _initial_item_side(n_items, int(factors), float(init_std), seed),
        per_round=per_round, rounds=int(rounds), seed=seed,
        server_learning_rate=float(server_learning_rate), n_workers=int(n_workers),
        on_round=None if on_round is None else view)
    _assemble(model, raw, P, out["arrays"])
    result = FederatedResult(model, out["rounds"], out["final_round"], n_bytes,
                             int(n_clients), seconds)
    model.training_log_ = {"federated": result.to_dict(), "steps": int(rounds)}
    return result


def _simulate(run_simulation, R, groups: list[np.ndarray], cfg, initial: dict, *,
              per_round: int, rounds: int, seed: int, server_learning_rate: float,
              n_workers: int, on_round) -> tuple[np.ndarray, dict, int, float]:
    """Run the Flower simulation: one client per group of users, each with its own storage
    (a private temporary folder, removed at the end).

    ``on_round(round, P, arrays)``, when given, sees each round's aggregated item side
    with every client's user factors fitted to it (``P``, not stored). Returns the users'
    factors gathered from the clients' storage, the server's output (``arrays``,
    ``rounds``, ``final_round``), the serialized size of the item side and the seconds the
    simulation took.
    """
    from . import _federated_flower as fl
    from ._federated_local import load_user_factors, personalise

    n_users, n_clients = R.shape[0], len(groups)
    out: dict = {}
    store = Path(tempfile.mkdtemp(prefix="maasrec-federated-"))
    t0 = time.perf_counter()
    try:
        client = fl.make_client_app(R, groups, cfg, store)

        def gather(fit_to: dict | None = None) -> np.ndarray:
            # each client's stored user factors; fitted to ``fit_to`` as in the final
            # round when given (what the devices would hold if training stopped there)
            P = np.zeros((n_users, cfg.factors), dtype=np.float32)
            for c, users in enumerate(groups):
                own = load_user_factors(store, c, len(users), cfg)
                P[users] = own if fit_to is None else personalise(R[users], own, fit_to,
                                                                  cfg, c)
            return P

        def watch(rnd: int, arrays: dict):
            return on_round(rnd, gather(arrays), arrays)

        server = fl.make_server_app(initial, n_clients=n_clients, clients_per_round=per_round,
                                    rounds=rounds, seed=seed,
                                    server_learning_rate=server_learning_rate, out=out,
                                    on_round=None if on_round is None else watch)
        backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                   "init_args": {"num_cpus": n_workers, "num_gpus": 0,
                                 "include_dashboard": False}}
        with _quiet_flower():
            run_simulation(server_app=server, client_app=client,
                           num_supernodes=n_clients, backend_config=backend)
        if "arrays" not in out:
            raise MaasrecError("the Flower simulation ended without a result (see its log)")
        P = gather()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    seconds = time.perf_counter() - t0
    return P, out, fl.array_bytes(_record(out["arrays"])), seconds


def _record(arrays: dict):
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def _assemble(model, data, P: np.ndarray, arrays: dict) -> None:
    """Fill a BPRMF's fitted attributes as its ``fit`` does (``data``: every row, as given)."""
    model.user_vocab_ = data.user_vocab
    model.item_vocab_ = data.item_vocab
    model.seen_ = data.to_csr(copy=False)
    model._pop_cache = None
    model.user_factors_ = np.ascontiguousarray(P, dtype=np.float32)
    model.item_factors_ = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
    model.item_bias_ = np.ascontiguousarray(arrays["item_bias"], dtype=np.float32)
    model.optimizer_ = model.optimizer
    model.fitted_at_ = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _quiet_flower:
    """Flower's INFO lines (several per round) and warnings (``run_simulation`` is deprecated
    in favour of ``flwr run``) silenced while the simulation runs; errors still show."""

    def __enter__(self):
        self.log = logging.getLogger("flwr")
        self.level = self.log.level
        self.log.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self.log.setLevel(self.level)
        return False
