"""The work of one simulated device in :func:`maasrec.privacy.train_federated`.

Pure numpy/torch, no Flower: a client holds the positive interactions of its users (a
CSR slice, local user indices), keeps their BPR user factors in its own storage (a
safetensors file per client in a private directory: the simulation's stand-in for the
device's disk) and trains them together with its local copy of the item side. Only the
item factors and item biases go back to the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ..training import UniformNegativeSampler, minibatches, torch_generator


@dataclass(frozen=True)
class LocalConfig:
    """Hyper-parameters every client trains with (sent once, with the client app)."""

    factors: int
    learning_rate: float
    regularization: float
    local_epochs: int
    batch_size: int
    init_std: float
    seed: int
    optimizer: str = "adam"


def _user_file(store: Path, client: int) -> Path:
    return store / f"client-{client:06d}.safetensors"


def load_user_factors(store: Path, client: int, n_users: int, cfg: LocalConfig) -> np.ndarray:
    """The client's user factors: from its storage, or a seeded start on first use."""
    from safetensors.numpy import load_file

    path = _user_file(store, client)
    if path.exists():
        return load_file(str(path))["user_factors"]
    g = torch_generator(np.random.SeedSequence([cfg.seed, 1, client]).generate_state(1)[0])
    return (torch.randn(n_users, cfg.factors, generator=g) * cfg.init_std).numpy()


def save_user_factors(store: Path, client: int, P: np.ndarray) -> None:
    """Write the client's user factors to its storage (atomic rename)."""
    from safetensors.numpy import save_file

    path = _user_file(store, client)
    tmp = path.with_suffix(".tmp")
    save_file({"user_factors": np.ascontiguousarray(P, dtype=np.float32)}, str(tmp))
    tmp.replace(path)


def local_train(R: sp.csr_matrix, P: np.ndarray, Q: np.ndarray, b: np.ndarray,
                cfg: LocalConfig, client: int, round_: int, *, epochs: int | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """BPR on one client's interactions: user factors, item factors and biases together.

    Parameters
    ----------
    R : scipy.sparse.csr_matrix, shape (n_local_users, n_items)
        The client's positive interactions.
    P, Q, b : np.ndarray
        User factors (the client's own), item factors and item biases (the global ones
        received this round). Not modified.
    cfg : LocalConfig
    client, round_ : int
        Seed the order of the triples and the negatives with ``cfg.seed``.
    epochs : int, optional
        Passes over the local interactions (default ``cfg.local_epochs``).

    Returns
    -------
    P, Q, b : np.ndarray
        The trained copies.
    loss : float
        Mean BPR loss of the last pass.
    n : int
        Positive interactions of the client (the FedAvg weight).
    """
    from ..models.bpr import _BPRStep

    Pt = torch.from_numpy(np.array(P, dtype=np.float32))
    Qt = torch.from_numpy(np.array(Q, dtype=np.float32))
    bt = torch.from_numpy(np.array(b, dtype=np.float32))
    n = int(R.nnz)
    if n == 0:
        return Pt.numpy(), Qt.numpy(), bt.numpy(), 0.0, 0
    seed = int(np.random.SeedSequence([cfg.seed, 2, client, round_]).generate_state(1)[0])
    g = torch_generator(seed)
    users = torch.from_numpy(np.repeat(np.arange(R.shape[0], dtype=np.int64), np.diff(R.indptr)))
    pos = torch.from_numpy(R.indices.astype(np.int64))
    sampler = UniformNegativeSampler(R, exclude_positives=True)
    step = _BPRStep(Pt, Qt, bt, float(cfg.learning_rate), float(cfg.regularization),
                    cfg.optimizer)
    bs = int(cfg.batch_size)
    loss = 0.0
    with torch.no_grad():
        for _ in range(int(cfg.local_epochs if epochs is None else epochs)):
            total = 0.0
            for sel in minibatches(n, bs, generator=g):
                u = torch.index_select(users, 0, sel)
                total += float(step(u, torch.index_select(pos, 0, sel), sampler.sample(u, g)))
            loss = total / n
    return Pt.numpy(), Qt.numpy(), bt.numpy(), loss, n


def personalise(R: sp.csr_matrix, P: np.ndarray, arrays: dict, cfg: LocalConfig,
                client: int) -> np.ndarray:
    """The client's user factors fitted to a received item side (its changes dropped)."""
    P, _, _, _, _ = local_train(R, P, arrays["item_factors"], arrays["item_bias"], cfg,
                                client, 0)
    return P
