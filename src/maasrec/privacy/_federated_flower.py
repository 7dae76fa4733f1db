"""The Flower side of :func:`maasrec.privacy.train_federated`: client app, strategy, server app.

Imported only after :func:`maasrec.privacy.federated._import_flwr` has checked that Flower
is installed. Messages (Flower's Message API, 1.20+):

- ``query`` (server → every client, once): the client answers its partition id, so the
  server can sample clients reproducibly (Flower's simulated node ids are random).
- ``train`` (server → sampled clients, each round): the global item factors and biases;
  the client loads its user factors from its own storage, runs local BPR epochs, stores
  its user factors again and answers the new item factors and biases with its number of
  interactions (the FedAvg weight). User factors are never in a message.
- ``evaluate`` (server → every client, after the last round): the final item side; each
  client fits its user factors to it locally (the item side's local changes are dropped)
  and answers its loss only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvgM

from ._federated_local import (
    LocalConfig,
    load_user_factors,
    local_train,
    personalise,
    save_user_factors,
)

logger = logging.getLogger("maasrec.privacy.federated")

ITEM_KEYS = ("item_factors", "item_bias")


def array_bytes(record: ArrayRecord) -> int:
    """Bytes of the serialized arrays of a record (what goes over the wire for them)."""
    return int(sum(len(a.data) for a in record.values()))


def _client_rows(R: sp.csr_matrix, groups: list[np.ndarray], client: int) -> sp.csr_matrix:
    return R[groups[client]]


def make_client_app(R: sp.csr_matrix, groups: list[np.ndarray], cfg: LocalConfig,
                    store: Path) -> ClientApp:
    """The client app: every simulated node is one client holding ``R[groups[partition]]``."""
    app = ClientApp()

    def _received(msg: Message) -> tuple[np.ndarray, np.ndarray]:
        arrays = msg.content["arrays"]
        return arrays["item_factors"].numpy(), arrays["item_bias"].numpy()

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"metrics": MetricRecord({"partition-id": pid})}),
                       reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        Q, b = _received(msg)
        Rc = _client_rows(R, groups, pid)
        P = load_user_factors(store, pid, Rc.shape[0], cfg)
        P, Q, b, loss, n = local_train(Rc, P, Q, b, cfg, pid, rnd)
        save_user_factors(store, pid, P)
        arrays = ArrayRecord({"item_factors": Array(Q), "item_bias": Array(b)})
        metrics = MetricRecord({"num-examples": n, "loss": loss * n, "partition-id": pid})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def final_fit(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        Q, b = _received(msg)
        Rc = _client_rows(R, groups, pid)
        P = load_user_factors(store, pid, Rc.shape[0], cfg)
        P = personalise(Rc, P, {"item_factors": Q, "item_bias": b}, cfg, pid)
        save_user_factors(store, pid, P)
        metrics = MetricRecord({"num-examples": Rc.nnz, "partition-id": pid})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


class SeededFedAvg(FedAvgM):
    """Flower's FedAvg (``FedAvgM`` without momentum), made reproducible and metered.

    Flower samples clients with the global :mod:`random` module and aggregates replies in
    arrival order; here clients are sampled with a seeded numpy generator over partition
    ids, and replies are aggregated in partition order, so a seed gives one result.
    ``server_learning_rate`` 1 is plain FedAvg (the new item side is the
    interaction-weighted mean of the clients' item sides); above 1 the mean update is
    scaled (FedAvg with a server step size, Hsu et al. 2019). Bytes of the serialized
    arrays of every message are counted per round.
    """

    def __init__(self, node_of: dict[int, int], clients_per_round: int, seed: int,
                 server_learning_rate: float, on_round=None):
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1,
                         min_evaluate_nodes=0, min_available_nodes=1,
                         server_learning_rate=server_learning_rate, server_momentum=0.0)
        self.node_of = node_of  # partition id -> node id
        self.part_of = {v: k for k, v in node_of.items()}
        self.clients_per_round = clients_per_round
        self.seed = seed
        self.rounds: list[dict] = []
        self.on_round = on_round
        self._t0 = time.perf_counter()

    def sampled(self, server_round: int) -> list[int]:
        """The partition ids trained in ``server_round`` (sorted)."""
        n = len(self.node_of)
        rng = np.random.default_rng([self.seed, 3, server_round])
        picked = rng.choice(n, size=self.clients_per_round, replace=False)
        return sorted(int(p) for p in picked)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if self.current_arrays is None:
            self.current_arrays = arrays
        config["server-round"] = server_round
        parts = self.sampled(server_round)
        self.rounds.append({"round": server_round, "clients": len(parts),
                            "bytes_down": array_bytes(arrays) * len(parts)})
        self._t0 = time.perf_counter()
        record = RecordDict({"arrays": arrays, "config": config})
        return self._construct_messages(record, [self.node_of[p] for p in parts], "train")

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        bad = [m for m in replies if m.has_error()]
        if bad:
            raise RuntimeError(f"{len(bad)} client(s) failed in round {server_round}: "
                               f"{bad[0].error.reason}")
        replies.sort(key=lambda m: self.part_of[m.metadata.src_node_id])
        up = sum(array_bytes(m.content["arrays"]) for m in replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.current_arrays = arrays
        n = sum(int(m.content["metrics"]["num-examples"]) for m in replies)
        loss = sum(float(m.content["metrics"]["loss"]) for m in replies)
        self.rounds[-1].update(bytes_up=up, interactions=n, loss=loss / max(n, 1),
                               seconds=time.perf_counter() - self._t0)
        if self.on_round is not None:
            extra = self.on_round(server_round, {k: arrays[k].numpy() for k in ITEM_KEYS})
            if extra:
                self.rounds[-1]["metrics"] = dict(extra)
        return arrays, metrics


def _wait_for_nodes(grid: Grid, n: int, timeout: float) -> list[int]:
    t0 = time.monotonic()
    while len(nodes := list(grid.get_node_ids())) < n:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"only {len(nodes)} of {n} simulated clients came up "
                               f"within {timeout:.0f} s")
        time.sleep(0.05)
    return sorted(nodes)


def _node_map(grid: Grid, nodes: list[int], timeout: float) -> dict[int, int]:
    msgs = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=nid,
                    message_type="query") for nid in nodes]
    node_of = {}
    for reply in grid.send_and_receive(msgs, timeout=timeout):
        if reply.has_error():
            raise RuntimeError(f"a client failed to start: {reply.error.reason}")
        node_of[int(reply.content["metrics"]["partition-id"])] = reply.metadata.src_node_id
    return node_of


def make_server_app(initial: dict[str, np.ndarray], *, n_clients: int, clients_per_round: int,
                    rounds: int, seed: int, server_learning_rate: float, out: dict,
                    on_round=None, timeout: float = 3600.0) -> ServerApp:
    """The server app; the final arrays and per-round records are written into ``out``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = _wait_for_nodes(grid, n_clients, timeout=120.0)
        node_of = _node_map(grid, nodes, timeout)
        strategy = SeededFedAvg(node_of, clients_per_round, seed, server_learning_rate,
                                on_round)
        start = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in initial.items()})
        result = strategy.start(grid=grid, initial_arrays=start, num_rounds=rounds,
                                timeout=timeout)
        final = result.arrays
        # personalisation: every client fits its user factors to the final item side
        record = RecordDict({"arrays": final, "config": ConfigRecord({})})
        msgs = [Message(record, dst_node_id=node_of[p], message_type="evaluate")
                for p in range(n_clients)]
        t0 = time.perf_counter()
        replies = list(grid.send_and_receive(msgs, timeout=timeout))
        bad = [m for m in replies if m.has_error()]
        if bad:
            raise RuntimeError(f"{len(bad)} client(s) failed in the final round: "
                               f"{bad[0].error.reason}")
        out["final_round"] = {"clients": n_clients, "bytes_down": array_bytes(final) * n_clients,
                              "bytes_up": 0, "seconds": time.perf_counter() - t0}
        out["arrays"] = {k: final[k].numpy() for k in ITEM_KEYS}
        out["rounds"] = strategy.rounds

    return app
