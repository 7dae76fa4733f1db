"""``LightGCN``: light graph convolution over the user-item graph (He et al. 2020).

Users and items are the nodes of the bipartite interaction graph, with the symmetric
normalised adjacency ``A = D^-1/2 [[0, X], [X^T, 0]] D^-1/2``. Each node has a learned
("ego") vector ``E0``; ``K`` propagation steps ``E_{k+1} = A E_k`` (no weights, no
non-linearity) are averaged, ``E = (E_0 + ... + E_K) / (K + 1)``, and a user's score of an
item is the dot product of their rows of ``E``. Training is BPR on (user, positive,
sampled negative) triples with L2 on the ego vectors involved, through
:class:`maasrec.training.Trainer`.

The propagation is a product with a sparse matrix (torch CSR, symmetric, so its backward
is the same product), a few milliseconds per layer on the CPU for MovieLens 100K.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..exceptions import DataError
from ..training import (
    UniformNegativeSampler,
    torch_generator,
)
from ._implicit import (
    begin_fit,
    binary_csr,
    check_training_params,
    run_training,
    seeded_network,
)

__all__ = ["LightGCN", "normalized_adjacency"]

logger = logging.getLogger(__name__)

#: Standard deviation of the initial ego vectors (the reference implementation's).
INIT_STD = 0.1


def normalized_adjacency(X: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 [[0, X], [X^T, 0]] D^-1/2`` of a binary user x item matrix, float32 CSR.

    Nodes ``0..n_users-1`` are users, the next ``n_items`` are items; a node of degree 0
    has an empty row and column.

    Parameters
    ----------
    X : scipy.sparse matrix, shape (n_users, n_items)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_users + n_items, n_users + n_items)
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    adj = sp.bmat([[None, X], [X.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    D = sp.diags(inv.astype(np.float32))
    out = (D @ adj @ D).tocsr().astype(np.float32)
    out.sort_indices()
    return out


def _to_torch_csr(m: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products only here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)), m.shape).to(device)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ E`` for a symmetric sparse ``A``: the gradient is ``A @ grad`` (no transpose,
    which torch's CSR backward builds at every call)."""

    @staticmethod
    def forward(ctx, A: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        ctx.A = A
        return torch.sparse.mm(A, E)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.A, grad.contiguous())


class LightGCNNetwork(nn.Module):
    """The ego vectors of users then items, ``[n_users + n_items, dim]``, and propagation.

    Parameters
    ----------
    n_users, n_items, dim : int
    """

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.embedding = nn.Parameter(torch.empty(self.n_users + self.n_items, int(dim)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.embedding.normal_(0.0, INIT_STD, generator=generator)

    def propagate(self, A: torch.Tensor, n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean of E_0..E_K, sum of E_0..E_{K-1})`` over the graph ``A``.

        The second is what a new user's fold-in reads (see :class:`LightGCN`).
        """
        e = self.embedding
        total = e
        before_last = e if n_layers > 0 else torch.zeros_like(e)
        for k in range(n_layers):
            e = _SymmetricSpMM.apply(A, e)
            total = total + e
            if k < n_layers - 1:
                before_last = before_last + e
        return total / (n_layers + 1), before_last


class LightGCN(Recommender):
    """Graph collaborative filtering by light graph convolution (LightGCN).

    Every user and item has a learned vector; ``n_layers`` rounds of neighbourhood
    averaging over the normalised user-item graph (``e_u <- sum_i e_i / sqrt(d_u d_i)``
    and the same for items, no weights or activations) are averaged with the vectors
    themselves, and ``score(u, i) = e_u . e_i`` on the averaged vectors. Trained with the
    BPR loss on each positive interaction and a uniformly drawn negative item per epoch,
    plus ``l2 / 2 * (|e_u^0|^2 + |e_i^0|^2 + |e_j^0|^2)`` per triple on the ego vectors
    (as in the paper), with Adam; the graph is propagated at every step, so each step costs
    ``2 n_layers`` sparse products with the adjacency (forward and backward).
    Interaction values are ignored (values > 0 are edges).

    Parameters
    ----------
    dim : int, default 64
        Width of the user and item vectors.
    n_layers : int, default 3
        Propagation steps ``K``.
    l2 : float, default 1e-3
        Weight of the L2 penalty on the ego vectors of each triple (the paper: 1e-4; see
        Notes).
    epochs : int, default 300
        Most passes over the training interactions.
    batch_size : int, default 8192
        Triples per step (the paper: 2048; see Notes).
    learning_rate : float, default 0.01
        Adam step size (the paper: 0.001; see Notes).
    exclude_positives : bool, default True
        Redraw a negative the user interacted with.
    patience : int, default 20
        Stop after this many validations without a better ``val_metric`` and restore the
        best weights.
    eval_every : int, default 1
        Epochs between validations.
    val_metric : str, default "ndcg@10"
        The full-ranking validation metric, ``"<name>@<k>"``.
    validation_fraction : float or None, default 0.1
        When :meth:`fit` gets no ``validation``: a random ``validation_fraction`` of the
        interactions of each user with 5 or more is held out (seeded from
        ``random_state``) for early stopping and training uses the rest (no refit). At the
        end the trained ego vectors are propagated over the graph of *all* the
        interactions, so the held-out edges count in the vectors the model recommends
        with. None or 0: train all ``epochs`` on everything, without early stopping.
    device : str or torch.device, optional
        See :func:`maasrec.resolve_device`.
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial vectors, the order of the triples and the negatives.
    verbose : bool, default False
        A progress bar over the epochs.

    Attributes
    ----------
    user_factors_ : np.ndarray of float32, shape (n_users, dim)
        Propagated (layer-averaged) user vectors.
    item_factors_ : np.ndarray of float32, shape (n_items, dim)
        Propagated item vectors.
    fold_in_factors_ : np.ndarray of float32, shape (n_items, dim)
        ``(e_i^0 + ... + e_i^{K-1}) / ((K + 1) sqrt(d_i + 1))``: what one item of a new
        user's history contributes to that user's vector (see Notes).
    item_degree_ : np.ndarray of float32, shape (n_items,)
        Interactions of each item in the graph the vectors were propagated over.
    training_log_ : dict
        :meth:`maasrec.training.TrainingHistory.to_dict` of the run, plus ``holdout``
        when a validation slice was held out.

    Notes
    -----
    **New users (fold-in).** A user unseen at fit time with history ``h`` joins the graph
    with a zero ego vector and edges to the items of ``h``; one-sided propagation (the
    items' vectors are kept as they are) gives the LightGCN user vector
    ``e_u = (1 / (K + 1)) sum_{k=1..K} sum_{i in h} e_i^{k-1} / sqrt(|h| (d_i + 1))``
    (``d_i + 1``: the item's degree with the new user), i.e.
    ``|h|^-1/2 sum_{i in h} fold_in_factors_[i]``: exactly what the propagation rule
    computes for a node whose only neighbours are those items, without retraining or
    re-propagating the graph. For a user seen at fit time, ``recommend(user)`` uses the
    trained vector (ego vector included), so it differs from ``recommend(history=the
    user's items)``.

    **Defaults.** ``dim``, ``n_layers`` and the initialisation (N(0, 0.1²)) are the
    paper's; the rest was chosen on the validation part of per-user random 8:1:1 splits
    (seed 0) of MovieLens 100K and latest-small, NDCG@10 with ``fit(train)`` as given here
    (``benchmarks/bench_new_models.py tune``, ``benchmarks/results/new_models_tune.json``;
    one busy CPU core). The paper's batch of 2,048 at learning rate 0.001 converges
    slowly on the CPU, where every step propagates the whole graph (100K after 8 epochs:
    0.095; 0.140 at 0.005); batches of 8,192 at 0.01 reached 0.2393 on 100K (183 s)
    against 0.2374 for 4,096 at 0.005 (276 s). At 8,192 / 0.01, ``l2`` 1e-3 against the
    paper's 1e-4: 100K 0.2448 vs 0.2393, latest-small 0.1914 vs 0.1776; 2 layers
    instead of 3: 0.2329 and 0.1703. Test NDCG@10 of the defaults
    (``bench_new_models.py test``): 100K 0.3151 against Popularity 0.1464, EASE 0.3327,
    ALS 0.3395; latest-small 0.2098 against 0.1193, 0.2634, 0.2481 (it trains on the
    90% of ``train`` left after its validation holdout).

    **Determinism.** Same seed, data, device and thread count give the same model on the
    CPU.

    References
    ----------
    X. He, K. Deng, X. Wang, Y. Li, Y. Zhang, M. Wang. LightGCN: Simplifying and Powering
    Graph Convolution Network for Recommendation. SIGIR 2020.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "dim": ("choice", [32, 64, 128]),
        "n_layers": ("int", 1, 4),
        "l2": ("float", 1e-6, 1e-2, "log"),
        "learning_rate": ("float", 1e-3, 5e-2, "log"),
        "patience": ("fixed", 10),
    }

    def __init__(self, dim: int = 64, n_layers: int = 3, l2: float = 1e-3, epochs: int = 300,
                 batch_size: int = 8192, learning_rate: float = 0.01,
                 exclude_positives: bool = True, patience: int = 20, eval_every: int = 1,
                 val_metric: str = "ndcg@10", validation_fraction: float | None = 0.1,
                 device: Any = None, random_state: Any = None, verbose: bool = False):
        self.dim = dim
        self.n_layers = n_layers
        self.l2 = l2
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.exclude_positives = exclude_positives
        self.patience = patience
        self.eval_every = eval_every
        self.val_metric = val_metric
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self) -> None:
        check_int("dim", self.dim, low=1)
        check_int("n_layers", self.n_layers, low=0)
        check_number("l2", self.l2, low=0, high=float("inf"), high_inclusive=False)
        check_training_params(self)

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        device, seed, fit_data, validation, holdout = begin_fit(self, data, validation,
                                                                ordered=False)
        X = binary_csr(fit_data.to_csr(copy=False))
        n_users, n_items = X.shape
        if X.nnz == 0:
            raise DataError("LightGCN: no positive interaction to train on")
        K, dim = int(self.n_layers), int(self.dim)
        net = seeded_network(LightGCNNetwork(n_users, n_items, dim), seed, device)
        A = _to_torch_csr(normalized_adjacency(X), device)
        users = torch.from_numpy(np.repeat(np.arange(n_users, dtype=np.int64),
                                           np.diff(X.indptr))).to(device)
        items = torch.from_numpy(X.indices.astype(np.int64)).to(device)
        sampler = UniformNegativeSampler(X, exclude_positives=bool(self.exclude_positives),
                                         device=device)
        g = torch_generator(seed + 1, device=device)
        bs, nnz = int(self.batch_size), X.nnz
        n_batches = -(-nnz // bs)
        l2 = float(self.l2)
        cache: dict[str, Any] = {}

        def batches(epoch: int):
            order = torch.randperm(nnz, generator=g, device=device)
            u, i = users[order], items[order]
            j = sampler.sample(u, g)
            return [(u[s:s + bs], i[s:s + bs], j[s:s + bs]) for s in range(0, nnz, bs)]

        def loss(batch) -> torch.Tensor:
            cache.clear()  # the weights change: validation re-propagates
            u, i, j = batch
            E, _ = net.propagate(A, K)
            eu, ei, ej = E[u], E[n_users + i], E[n_users + j]
            x = (eu * (ei - ej)).sum(1)
            ego = net.embedding
            reg = (ego[u].square().sum() + ego[n_users + i].square().sum()
                   + ego[n_users + j].square().sum()) / (2 * len(u))
            return -F.logsigmoid(x).mean() + l2 * reg

        def score(user_idx: np.ndarray) -> torch.Tensor:
            if "E" not in cache:
                cache["E"] = net.propagate(A, K)[0]
            E = cache["E"]
            idx = torch.from_numpy(np.asarray(user_idx, dtype=np.int64)).to(device)
            return E[idx] @ E[n_users:].T

        logger.info("LightGCN: %d users x %d items, %d edges, %d layers, %d steps/epoch, "
                    "device %s", n_users, n_items, nnz, K, n_batches, device)
        self.training_log_ = {}
        hist = run_training(self, "LightGCN", net, batches, loss,
                            work=int(A.values().numel()) * dim, device=device,
                            on_finite_failure=lambda: self._propagate_all(net, data),
                            data=fit_data, validation=validation, score=score, seed=seed,
                            steps_per_epoch=n_batches, generators=[g],
                            checkpoint_dir=checkpoint_dir)
        self._propagate_all(net, data)
        log = hist.to_dict()
        if holdout is not None:
            log["holdout"] = holdout
        self.training_log_ = log

    def _propagate_all(self, net: LightGCNNetwork, data: Interactions) -> None:
        """Propagate the trained ego vectors over the graph of all of ``data``."""
        X = binary_csr(data.to_csr(copy=False))
        device = net.embedding.device
        K = int(self.n_layers)
        with torch.no_grad():
            E, before_last = net.propagate(_to_torch_csr(normalized_adjacency(X), device), K)
        E = E.float().cpu().numpy()
        n_users = X.shape[0]
        deg = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()
        S = before_last[n_users:].float().cpu().numpy()
        self.user_factors_ = np.ascontiguousarray(E[:n_users])
        self.item_factors_ = np.ascontiguousarray(E[n_users:])
        self.item_degree_ = deg
        self.fold_in_factors_ = np.ascontiguousarray(
            S / ((K + 1) * np.sqrt(deg + 1.0))[:, None], dtype=np.float32)

    # -- scoring ------------------------------------------------------------------------
    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        H = binary_csr(history)
        n = np.diff(H.indptr).astype(np.float32)
        scale = np.zeros_like(n)
        scale[n > 0] = n[n > 0] ** -0.5
        return np.asarray(sp.diags(scale) @ H @ self.fold_in_factors_, dtype=np.float32)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._history_vectors(history) @ self.item_factors_.T

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx]

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        v = self.item_factors_
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        return (v[item_idx] / norms[item_idx, None]) @ (v / norms[:, None]).T

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx):
        # exact: the propagated user vector is linear in the history (maasrec/neural/_explain.py)
        from ._explain import lightgcn_terms

        return lightgcn_terms(self, row, item_idx, user_idx)

    def _check_loaded(self) -> None:
        V = self._loaded_float("item_factors_", (self.n_items_, None))
        d = V.shape[1]
        self._loaded_float("user_factors_", (self.n_users_, d))
        self._loaded_float("fold_in_factors_", (self.n_items_, d))
        self._loaded_float("item_degree_", (self.n_items_,))
