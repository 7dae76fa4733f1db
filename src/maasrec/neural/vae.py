"""``MultVAE``: the variational autoencoder for collaborative filtering (Liang et al. 2018).

A user is the (binary) row of the items they interacted with. The encoder reads the
L2-normalised row (with dropout on the input), gives the mean and log-variance of a
Gaussian latent vector, and the decoder maps a latent vector to logits over the whole
catalogue; training maximises the multinomial log-likelihood of the user's items minus
``beta`` times the KL divergence to the standard normal prior, with ``beta`` annealed from
0 to ``beta_cap``. Scoring (recommend, validation) decodes the mean of the latent vector.

Because a user is only their row, any history -- a known user's or a new one's -- is
scored the same way: ``recommend(history=...)`` is exact fold-in, not an approximation.
The loop (Adam, early stopping on a full-ranking validation metric with best-weights
restore, NaN/inf checks, seeds, checkpoints) is :class:`maasrec.training.Trainer`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from itertools import pairwise
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
from ..training import torch_generator
from ._implicit import (
    begin_fit,
    binary_csr,
    check_training_params,
    run_training,
    seeded_network,
)
from ._sequences import network_device

__all__ = ["MultVAE", "MultVAENetwork"]

logger = logging.getLogger(__name__)

#: Users per forward pass when scoring.
_SCORE_USERS = 1024


class MultVAENetwork(nn.Module):
    """Mult-VAE network: an encoder from the items to the hidden layers and a Gaussian latent.

    The encoder maps ``n_items`` through the hidden layers to ``2 x latent`` (mean and
    log-variance); the decoder maps the latent back through the hidden layers, reversed, to
    ``n_items``, with tanh between layers (the paper's architecture).

    Parameters
    ----------
    n_items : int
    hidden_dims : sequence of int
        Widths of the encoder's hidden layers (the decoder mirrors them).
    latent_dim : int
    dropout : float
        Dropout on the normalised input row (training only).
    """

    def __init__(self, n_items: int, hidden_dims: Sequence[int], latent_dim: int,
                 dropout: float):
        super().__init__()
        enc = [int(n_items), *(int(h) for h in hidden_dims)]
        dec = [int(latent_dim), *(int(h) for h in reversed(list(hidden_dims)))]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(enc))
        self.to_latent = nn.Linear(enc[-1], 2 * int(latent_dim))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dec))
        self.to_items = nn.Linear(dec[-1], int(n_items))
        self.drop = nn.Dropout(float(dropout))
        self.latent_dim = int(latent_dim)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weights and N(0, 0.001²) biases (the reference code's initialiser)."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    bound = math.sqrt(6.0 / (m.in_features + m.out_features))
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.normal_(0.0, 0.001, generator=generator)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` ``[b, latent]`` of dense interaction rows ``x`` ``[b, n_items]``."""
        h = self.drop(F.normalize(x, dim=1))
        for lin in self.encoder:
            h = torch.tanh(lin(h))
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Item logits ``[b, n_items]`` of latent vectors ``z``."""
        for lin in self.decoder:
            z = torch.tanh(lin(z))
        return self.to_items(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of rows ``x``: the logits of the mean latent vector (no sampling)."""
        return self.decode(self.encode(x)[0])


def _dense_rows(indptr: torch.Tensor, indices: torch.Tensor, users: torch.Tensor,
                n_items: int) -> torch.Tensor:
    """The binary rows of ``users`` of a CSR matrix held as tensors, dense ``[b, n_items]``."""
    start, stop = indptr[users], indptr[users + 1]
    counts = stop - start
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
    offs = torch.arange(int(counts.sum()), device=users.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    cols = indices[torch.repeat_interleave(start, counts) + offs]
    x = torch.zeros((len(users), n_items), device=users.device)
    x[rows, cols] = 1.0
    return x


class _RowScoring:
    """Scoring shared by the autoencoders over a user's interaction row (MultVAE, RecVAE).

    The class has ``network_`` (a module whose ``forward`` maps dense binary rows to item
    logits) and ``_output_item_weights()`` (the decoder's ``[n_items, d]`` output weights,
    for ``similar_items``). A user is only their row, so ``recommend(history=...)`` is
    exact fold-in.
    """

    # -- scoring ------------------------------------------------------------------------
    def _net_device(self) -> torch.device:
        return network_device(self)

    def _decode_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        """Scores ``[b, n_items]`` (float32 logits) of binary interaction rows."""
        dev = self._net_device()
        net = self.network_
        was_training = net.training
        net.eval()
        rows = sp.csr_matrix(rows)
        out = np.empty((rows.shape[0], rows.shape[1]), dtype=np.float32)
        try:
            with torch.no_grad():
                for a in range(0, rows.shape[0], _SCORE_USERS):
                    x = torch.from_numpy(rows[a:a + _SCORE_USERS].toarray()).to(dev)
                    out[a:a + len(x)] = net(x).float().cpu().numpy()
        finally:
            net.train(was_training)
        return out

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._decode_rows(binary_csr(history))

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self._score_history(self.seen_[user_idx])

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """Cosine similarity of the decoder's output item vectors."""
        w = self._output_item_weights()
        norms = np.linalg.norm(w, axis=1)
        norms[norms == 0] = 1.0
        return (w[item_idx] / norms[item_idx, None]) @ (w / norms[:, None]).T

    def __getstate__(self):  # copies and pickles carry no device cache
        state = dict(self.__dict__)
        state.pop("_device_obj", None)
        return state

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx):
        # leave-one-out history contributions, one batch (maasrec/neural/_explain.py)
        from ._explain import vae_terms

        return vae_terms(self, row, item_idx, user_idx)

    def _start_fit(self, data: Interactions, validation):
        """What MultVAE's and RecVAE's ``fit`` begin with: device, seed, the held-out
        validation slice, the binary training rows (CSR on the device), a freshly seeded
        network as ``network_``, and the users with at least one positive row."""
        name = type(self).__name__
        device, seed, fit_data, validation, holdout = begin_fit(self, data, validation,
                                                                ordered=False)
        self._device_obj = device
        X = binary_csr(fit_data.to_csr(copy=False))
        net = seeded_network(self._build_modules()["network_"], seed, device)
        self.network_ = net
        indptr = torch.from_numpy(X.indptr.astype(np.int64)).to(device)
        indices = torch.from_numpy(X.indices.astype(np.int64)).to(device)
        active = torch.nonzero(indptr[1:] > indptr[:-1]).squeeze(1)
        if len(active) == 0:
            raise DataError(f"{name}: no user has a positive interaction to train on")
        return device, seed, fit_data, validation, holdout, X, net, indptr, indices, active


class MultVAE(_RowScoring, Recommender):
    """Variational autoencoder with a multinomial likelihood (Mult-VAE).

    Each user's binary interaction row is encoded (L2-normalised, dropout on the input,
    an MLP with tanh) into a Gaussian latent vector; the decoder turns a latent vector
    into a softmax over the catalogue. Training minimises, per user,
    ``-sum_i x_ui log softmax(f(z))_i + beta * KL(q(z | x_u) || N(0, I))`` with ``z``
    drawn by the reparameterisation trick and ``beta`` raised linearly from 0 to
    ``beta_cap`` over ``anneal_steps`` optimiser steps (KL annealing). Recommendations
    decode the mean of ``q(z | x_u)``. Interaction values are ignored: only which items a
    user interacted with (value > 0) counts.

    Parameters
    ----------
    hidden_dims : sequence of int, default (600,)
        Hidden layers of the encoder; the decoder mirrors them.
    latent_dim : int, default 200
        Dimension of the latent vector.
    dropout : float, default 0.5
        Dropout on the normalised input row during training.
    beta_cap : float, default 0.2
        The largest weight of the KL term (the paper's ``anneal_cap``).
    anneal_steps : int, default 200
        Optimiser steps over which ``beta`` rises linearly from 0 to ``beta_cap``
        (``beta = beta_cap * min(1, step / anneal_steps)``; 0 means ``beta = beta_cap``
        from the first step). The reference code's schedule, ``min(0.2, step / 200000)``,
        reaches the cap after 40,000 steps, which MovieLens 100K (15 steps per epoch)
        never reaches; see Notes for the value chosen here.
    epochs : int, default 300
        Most passes over the users.
    batch_size : int, default 64
        Users per step.
    learning_rate : float, default 0.001
        Adam step size.
    weight_decay : float, default 0.0
        L2 penalty on all weights (Adam's coupled form; the paper uses none for Mult-VAE).
    patience : int, default 20
        Stop after this many validations without a better ``val_metric`` and restore the
        best weights.
    eval_every : int, default 1
        Epochs between validations.
    val_metric : str, default "ndcg@10"
        The full-ranking validation metric, ``"<name>@<k>"`` (``ndcg``, ``hit``,
        ``recall``, ``precision``, ``map``, ``mrr``).
    validation_fraction : float or None, default 0.1
        When :meth:`fit` gets no ``validation``: a random ``validation_fraction`` of the
        interactions of each user with 5 or more (seeded from ``random_state``,
        :func:`maasrec.data.split.holdout_validation`) is held out for early stopping and
        training uses the rest; the model is kept as trained (no refit), and the held-out
        items rejoin the users' rows it reads to recommend. None or 0: train all
        ``epochs`` on everything, without early stopping.
    device : str or torch.device, optional
        See :func:`maasrec.resolve_device`.
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial weights, the user order, dropout and the latent noise.
    verbose : bool, default False
        A progress bar over the epochs (:class:`~maasrec.training.ProgressCallback`).

    Attributes
    ----------
    network_ : MultVAENetwork
        The trained encoder and decoder (saved in ``weights.safetensors``).
    training_log_ : dict
        :meth:`maasrec.training.TrainingHistory.to_dict` of the run (per-epoch mean loss,
        validation metric, best epoch, early stop) plus ``beta_final`` (the KL weight at
        the last step) and ``holdout`` when a validation slice was held out.

    Notes
    -----
    **New users.** ``recommend(history=[...])`` encodes the history as a row: the same
    computation as for a user seen at fit time, so a known user's own items give that
    user's recommendations exactly.

    **Defaults.** Architecture, dropout, ``beta_cap`` and learning rate are the paper's
    ([I -> 600 -> 200 -> 600 -> I], tanh, input dropout 0.5, cap 0.2, Adam 1e-3).
    ``batch_size`` and ``anneal_steps`` were chosen on the validation part of per-user
    random 8:1:1 splits (seed 0), NDCG@10 with ``fit(train)`` as given here
    (``benchmarks/bench_new_models.py tune``, ``benchmarks/results/new_models_tune.json``).
    MovieLens 100K, batch 64 / 128 by ``anneal_steps`` 200, 2,000, 20,000: 0.2258,
    0.2268, 0.2228 / 0.2281, 0.2210, 0.2111 -- within 0.003 of each other up to 2,000,
    batch 64 at a third of the time (58 s against 181 s on one busy core); MovieLens
    latest-small, batch 64 with 200: 0.1774. The paper's batch of 500 gives 2 steps per
    epoch on MovieLens 100K. On these small, dense sets the defaults beat Popularity and
    stay below EASE and ALS (test NDCG@10, ``bench_new_models.py test``: 100K 0.2797
    against Popularity 0.1464, EASE 0.3327, ALS 0.3395; latest-small 0.1978 against
    0.1193, 0.2634, 0.2481); the family is at its best on larger, sparser data.

    **Cost.** A step is a few dense products of ``[batch, n_items]`` by the first and last
    layers; memory is about ``2 x n_items x hidden`` weights (plus Adam's two moments).

    **Determinism.** Same seed, data, device and thread count give the same model on the
    CPU.

    References
    ----------
    D. Liang, R. G. Krishnan, M. D. Hoffman, T. Jebara. Variational Autoencoders for
    Collaborative Filtering. WWW 2018.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "hidden_dims": ("choice", [(600,), (300,), (600, 200)]),
        "latent_dim": ("choice", [64, 128, 200]),
        "dropout": ("float", 0.0, 0.7),
        "beta_cap": ("float", 0.05, 1.0, "log"),
        "anneal_steps": ("int", 100, 20000, "log"),
        "learning_rate": ("float", 1e-4, 1e-2, "log"),
        "batch_size": ("choice", [64, 128, 256]),
        "patience": ("fixed", 10),
    }

    def __init__(self, hidden_dims: Sequence[int] = (600,), latent_dim: int = 200,
                 dropout: float = 0.5, beta_cap: float = 0.2, anneal_steps: int = 200,
                 epochs: int = 300, batch_size: int = 64, learning_rate: float = 0.001,
                 weight_decay: float = 0.0, patience: int = 20, eval_every: int = 1,
                 val_metric: str = "ndcg@10", validation_fraction: float | None = 0.1,
                 device: Any = None, random_state: Any = None, verbose: bool = False):
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.beta_cap = beta_cap
        self.anneal_steps = anneal_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.val_metric = val_metric
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        hd = self.hidden_dims
        if isinstance(hd, (str, bytes)) or not isinstance(hd, (list, tuple)):
            raise DataError(f"hidden_dims must be a list or tuple of layer widths, got {hd!r}")
        for i, h in enumerate(hd):
            check_int(f"hidden_dims[{i}]", h, low=1)
        check_int("latent_dim", self.latent_dim, low=1)
        check_number("dropout", self.dropout, low=0, high=1, high_inclusive=False)
        check_number("beta_cap", self.beta_cap, low=0, high=float("inf"),
                     high_inclusive=False)
        check_int("anneal_steps", self.anneal_steps, low=0)
        check_training_params(self, weight_decay=True)

    def _build_modules(self) -> dict:
        # nn.Linear initialises itself from torch's global RNG: leave the caller's alone
        # (fit then draws the weights from the model's seed, load overwrites them)
        with torch.random.fork_rng(devices=[]):
            return {"network_": MultVAENetwork(self.n_items_, list(self.hidden_dims),
                                               int(self.latent_dim), float(self.dropout))}

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        (device, seed, fit_data, validation, holdout, X, net, indptr, indices,
         active) = self._start_fit(data, validation)
        n_users, n_items = X.shape
        bs = int(self.batch_size)
        g = torch_generator(seed + 1, device=device)
        n_batches = -(-len(active) // bs)
        state = {"step": 0}
        cap, anneal = float(self.beta_cap), int(self.anneal_steps)

        def batches(epoch: int):
            users = active[torch.randperm(len(active), generator=g, device=device)]
            return [users[s:s + bs] for s in range(0, len(users), bs)]

        def loss(users: torch.Tensor) -> torch.Tensor:
            x = _dense_rows(indptr, indices, users, n_items)
            mu, logvar = net.encode(x)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # global RNG: Trainer's
            logits = net.decode(z)
            nll = -(F.log_softmax(logits, dim=1) * x).sum(1).mean()
            kl = 0.5 * (torch.exp(logvar) + mu * mu - 1.0 - logvar).sum(1).mean()
            beta = cap if anneal == 0 else cap * min(1.0, state["step"] / anneal)
            if net.training:
                state["step"] += 1
            return nll + beta * kl

        def score(user_idx: np.ndarray) -> np.ndarray:
            return self._decode_rows(X[user_idx])

        logger.info("MultVAE: %d users x %d items, %d interactions, %d steps/epoch, device %s",
                    n_users, n_items, X.nnz, n_batches, device)
        self.training_log_ = {}
        hist = run_training(
            self, "MultVAE", net, batches, loss, work=bs * n_items, device=device,
            data=fit_data, validation=validation, score=score, seed=seed,
            steps_per_epoch=n_batches, generators=[g], checkpoint_dir=checkpoint_dir,
            weight_decay=float(self.weight_decay),
            state_dict=lambda: {"anneal_step": int(state["step"])},
            load_state_dict=lambda s: state.update(step=int(s["anneal_step"])))
        net.eval()
        log = hist.to_dict()
        log["beta_final"] = cap if anneal == 0 else cap * min(1.0, state["step"] / anneal)
        if holdout is not None:
            log["holdout"] = holdout
        self.training_log_ = log

    def _output_item_weights(self) -> np.ndarray:
        return self.network_.to_items.weight.detach().float().cpu().numpy()
