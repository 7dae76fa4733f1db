"""``RecVAE``: Mult-VAE with a composite prior and alternating updates (Shenbin et al. 2020).

A user is their binary interaction row, as in :class:`~maasrec.neural.vae.MultVAE`. What
RecVAE changes:

- a deeper encoder: five dense layers with swish activations, layer normalisation and
  dense residual connections (each layer's input adds the outputs of all earlier ones);
  the decoder is one linear layer from the latent vector to the item logits;
- a **composite prior**: a mixture of the standard normal, the posterior of the encoder
  as it was at the end of the previous encoder phase (the "old" encoder, frozen), and a
  wide normal (log-variance 10), weights 3/20, 3/4, 1/10; the KL term is
  ``log q(z | x) - log p(z | x)`` at the sampled ``z``;
- **beta from the user**: the KL weight of a user is ``gamma`` times their number of
  interactions (or a constant ``beta`` when given);
- **alternating updates**: each epoch trains the encoder for ``n_enc_epochs`` passes over
  the users (input dropout, the decoder held fixed), copies the encoder into the prior's
  old encoder, then trains the decoder for ``n_dec_epochs`` passes (no dropout, the
  encoder held fixed).

Both phases run inside one :class:`maasrec.training.Trainer` epoch with one Adam
optimiser: each phase's loss reaches only its own half of the weights (the other is
detached), and Adam skips weights without a gradient, so its per-weight state advances
exactly as the paper's two optimisers would.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..training import torch_generator
from ._implicit import check_training_params, run_training
from .vae import _dense_rows, _RowScoring

__all__ = ["RecVAE", "RecVAENetwork"]

logger = logging.getLogger(__name__)

#: Mixture weights of the composite prior: standard normal, old posterior, wide normal.
MIXTURE = (3 / 20, 3 / 4, 1 / 10)
#: Log-variance of the wide component of the prior.
WIDE_LOGVAR = 10.0
_LOG_2PI = math.log(2 * math.pi)


def _log_normal(z: torch.Tensor, mu: Any, logvar: Any) -> torch.Tensor:
    """Elementwise log density of N(mu, exp(logvar)) at ``z``."""
    if not isinstance(logvar, torch.Tensor):
        logvar = torch.tensor(float(logvar), dtype=z.dtype, device=z.device)
    return -0.5 * (logvar + _LOG_2PI + (z - mu).pow(2) / logvar.exp())


class _Encoder(nn.Module):
    """RecVAE's encoder: dense-residual swish layers with layer norm, then mu and logvar."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(n_items, hidden_dim)]
            + [nn.Linear(hidden_dim, hidden_dim) for _ in range(n_layers - 1)])
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim, eps=0.1) for _ in range(n_layers))
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor, dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.normalize(x, dim=1)
        if dropout > 0 and self.training:
            h = F.dropout(h, p=dropout, training=True)  # torch's RNG: the Trainer's seed
        return self.after_first(self.layers[0](h))

    def after_first(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar from the first layer's output ``a`` (before its activation)."""
        h = self.norms[0](a * torch.sigmoid(a))  # swish
        total = h
        for lin, norm in zip(self.layers[1:], self.norms[1:], strict=True):
            a = lin(h) + total
            h = norm(a * torch.sigmoid(a))
            total = total + h
        return self.to_mu(h), self.to_logvar(h)


class RecVAENetwork(nn.Module):
    """RecVAE: the encoder, the prior's frozen copy of it, and a linear decoder.

    Parameters
    ----------
    n_items : int
    hidden_dim : int
        Width of the encoder's layers.
    latent_dim : int
    n_layers : int
        Encoder layers (the paper: 5).
    """

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, n_layers: int):
        super().__init__()
        self.encoder = _Encoder(n_items, hidden_dim, latent_dim, n_layers)
        self.encoder_old = _Encoder(n_items, hidden_dim, latent_dim, n_layers)
        self.encoder_old.requires_grad_(False)
        self.decoder = nn.Linear(latent_dim, n_items)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """torch's default ``Linear`` initialiser (uniform within 1/sqrt(fan_in)) drawn
        from ``generator``; unit layer norms; the old encoder a copy of the encoder."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.uniform_(-bound, bound, generator=generator)
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
        self.update_prior()

    def update_prior(self) -> None:
        """The prior's old encoder becomes a copy of the encoder."""
        with torch.no_grad():
            for old, new in zip(self.encoder_old.parameters(), self.encoder.parameters(),
                                strict=True):
                old.copy_(new)

    def prior_log_density(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(z | x)`` elementwise ``[b, latent]`` under the composite prior."""
        with torch.no_grad():
            mu_old, logvar_old = self.encoder_old(x, 0.0)
        parts = (_log_normal(z, 0.0, 0.0), _log_normal(z, mu_old, logvar_old),
                 _log_normal(z, 0.0, WIDE_LOGVAR))
        return torch.logsumexp(torch.stack([p + math.log(w) for p, w in
                                            zip(parts, MIXTURE, strict=True)], -1), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Item logits of dense rows ``x``: the decoded mean of the latent vector."""
        return self.decoder(self.encoder(x, 0.0)[0])


class RecVAE(_RowScoring, Recommender):
    """RecVAE: a variational autoencoder with a composite prior (Shenbin et al. 2020).

    Each user's binary interaction row is encoded (L2-normalised, input dropout, five
    dense-residual swish layers with layer norm) into a Gaussian latent vector, decoded
    by one linear layer into logits over the catalogue. Per user the loss is
    ``-sum_i x_ui log softmax(W z + b)_i + beta_u * sum_d [log q(z_d | x) - log p(z_d | x)]``
    with ``p`` the composite prior (standard normal, the previous encoder's posterior,
    a wide normal) and ``beta_u = gamma * |x_u|`` (or the constant ``beta``). Training
    alternates between the encoder and the decoder within every epoch (module docstring).
    Recommendations decode the mean of the latent vector; interaction values are ignored
    (value > 0 counts).

    Parameters
    ----------
    hidden_dim : int, default 600
        Width of the encoder's layers.
    latent_dim : int, default 200
        Dimension of the latent vector.
    n_layers : int, default 5
        Encoder layers.
    dropout : float, default 0.5
        Input dropout in the encoder phase.
    gamma : float, default 0.005
        KL weight per interaction of the user (``beta_u = gamma * |x_u|``); used when
        ``beta`` is None.
    beta : float, optional
        A constant KL weight instead.
    n_enc_epochs : int, default 3
        Passes over the users training the encoder, per epoch.
    n_dec_epochs : int, default 1
        Passes training the decoder, per epoch.
    epochs : int, default 100
        Most epochs (each ``n_enc_epochs + n_dec_epochs`` passes).
    batch_size : int, default 128
        Users per step.
    learning_rate : float, default 0.0005
        Adam step size (both halves).
    patience : int, default 10
        Stop after this many validations without a better ``val_metric`` and restore the
        best weights.
    eval_every : int, default 1
        Epochs between validations.
    val_metric : str, default "ndcg@10"
        The full-ranking validation metric, ``"<name>@<k>"``.
    validation_fraction : float or None, default 0.1
        As :class:`~maasrec.neural.vae.MultVAE`: when :meth:`fit` gets no
        ``validation``, this share of each user's interactions (users with 5 or more) is
        held out for early stopping; None or 0 trains all epochs on everything.
    device : str or torch.device, optional
        See :func:`maasrec.resolve_device`.
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial weights, the user order, dropout and the latent noise.
    verbose : bool, default False
        A progress bar over the epochs.

    Attributes
    ----------
    network_ : RecVAENetwork
        The trained encoder, the prior's encoder and the decoder (``weights.safetensors``).
    training_log_ : dict
        :meth:`maasrec.training.TrainingHistory.to_dict` of the run (an epoch's loss is
        the mean over its encoder and decoder steps of their own losses) plus
        ``holdout`` when a validation slice was held out.

    Notes
    -----
    **New users.** ``recommend(history=[...])`` encodes the history as a row: for a user
    seen at fit time their own items give that user's recommendations exactly.

    **Defaults.** Architecture, dropout, ``gamma``, the alternation (3 encoder passes, 1
    decoder pass) and the learning rate are the paper's. ``batch_size`` (the paper: 500)
    is 128 and ``epochs`` 100 with early stopping because the paper's data (ML-20M,
    Netflix) have 100 times more users per epoch than MovieLens 100K: on its per-user
    random 8:1:1 split (seed 0, ``benchmarks/bench_new_models.py tune``) validation
    NDCG@10 was 0.2255 at batch 128 (best epoch 11) and 0.2254 at 500 (best epoch 31,
    twice the time); Mult-VAE's defaults 0.2258. Test NDCG@10 of the defaults there
    (``bench_new_models.py test``): 0.2924 (Mult-VAE 0.2797, EASE 0.3327, ALS 0.3395):
    like Mult-VAE, below the linear models on this small dense set. On the standard suite's MovieLens 100K
    leave-last-out split RecVAE's defaults reach test NDCG@10 0.0741 (Mult-VAE 0.0681,
    LightGCN 0.0694).

    **Explanations.** ``explain`` gives leave-one-out weights, as
    :class:`~maasrec.neural.vae.MultVAE`: each history item's weight is the score minus
    the score with that item left out, all of them in one batch (the encoder's first
    layer is linear in the normalised row).

    **Cost.** Per epoch about ``n_enc_epochs + 1`` times the encoder passes of a Mult-VAE
    epoch with a 600-wide first layer, plus the old encoder's pass in the encoder phase.

    References
    ----------
    I. Shenbin, A. Alekseev, E. Tutubalina, V. Malykh, S. I. Nikolenko. RecVAE: a New
    Variational Autoencoder for Top-N Recommendations with Implicit Feedback. WSDM 2020.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "hidden_dim": ("choice", [300, 600]),
        "latent_dim": ("choice", [100, 200]),
        "dropout": ("float", 0.1, 0.7),
        "gamma": ("float", 5e-4, 0.05, "log"),
        "learning_rate": ("float", 1e-4, 5e-3, "log"),
        "batch_size": ("choice", [64, 128, 256, 500]),
        "patience": ("fixed", 5),
    }

    def __init__(self, hidden_dim: int = 600, latent_dim: int = 200, n_layers: int = 5,
                 dropout: float = 0.5, gamma: float = 0.005, beta: float | None = None,
                 n_enc_epochs: int = 3, n_dec_epochs: int = 1, epochs: int = 100,
                 batch_size: int = 128, learning_rate: float = 0.0005, patience: int = 10,
                 eval_every: int = 1, val_metric: str = "ndcg@10",
                 validation_fraction: float | None = 0.1, device: Any = None,
                 random_state: Any = None, verbose: bool = False):
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.n_layers = n_layers
        self.dropout = dropout
        self.gamma = gamma
        self.beta = beta
        self.n_enc_epochs = n_enc_epochs
        self.n_dec_epochs = n_dec_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.eval_every = eval_every
        self.val_metric = val_metric
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        check_int("hidden_dim", self.hidden_dim, low=1)
        check_int("latent_dim", self.latent_dim, low=1)
        check_int("n_layers", self.n_layers, low=1)
        check_number("dropout", self.dropout, low=0, high=1, high_inclusive=False)
        check_number("gamma", self.gamma, low=0, high=float("inf"), high_inclusive=False)
        if self.beta is not None:
            check_number("beta", self.beta, low=0, high=float("inf"), high_inclusive=False)
        check_int("n_enc_epochs", self.n_enc_epochs, low=1)
        check_int("n_dec_epochs", self.n_dec_epochs, low=1)
        check_training_params(self)

    def _build_modules(self) -> dict:
        with torch.random.fork_rng(devices=[]):  # leave torch's global RNG alone
            return {"network_": RecVAENetwork(self.n_items_, int(self.hidden_dim),
                                              int(self.latent_dim), int(self.n_layers))}

    # -- fitting ------------------------------------------------------------------------
    def _loss_fn(self, net: RecVAENetwork, indptr, indices, n_items: int):
        """``loss((users, phase, first))``: phase 0 trains the encoder, 1 the decoder."""
        dropout, gamma = float(self.dropout), float(self.gamma)
        beta = None if self.beta is None else float(self.beta)

        def loss(batch) -> torch.Tensor:
            users, phase, first = batch
            x = _dense_rows(indptr, indices, users, n_items)
            if phase == 1:
                if first and net.training:
                    net.update_prior()  # after the encoder phase, as the paper
                with torch.no_grad():
                    mu, logvar = net.encoder(x, 0.0)
                    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                logits = net.decoder(z)
                return -(F.log_softmax(logits, dim=1) * x).sum(1).mean()
            mu, logvar = net.encoder(x, dropout)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            logits = F.linear(z, net.decoder.weight.detach(), net.decoder.bias.detach())
            mll = (F.log_softmax(logits, dim=1) * x).sum(1)
            kl = (_log_normal(z, mu, logvar) - net.prior_log_density(x, z)).sum(1)
            weight = gamma * x.sum(1) if beta is None else beta
            return (kl * weight - mll).mean()

        return loss

    def _fit(self, data: Interactions, *, item_features=None, user_features=None,
             validation=None, checkpoint_dir=None) -> None:
        (device, seed, fit_data, validation, holdout, X, net, indptr, indices,
         active) = self._start_fit(data, validation)
        n_users, n_items = X.shape
        bs = int(self.batch_size)
        g = torch_generator(seed + 1, device=device)
        n_enc, n_dec = int(self.n_enc_epochs), int(self.n_dec_epochs)
        per_pass = -(-len(active) // bs)

        def batches(epoch: int):
            # the encoder's passes, then the decoder's; the first decoder batch copies
            # the encoder into the prior (inside its loss: a resume past it keeps the copy)
            out = []
            for phase, passes in ((0, n_enc), (1, n_dec)):
                for p in range(passes):
                    users = active[torch.randperm(len(active), generator=g, device=device)]
                    out += [(users[s:s + bs], phase, phase == 1 and p == 0 and s == 0)
                            for s in range(0, len(users), bs)]
            return out

        def score(user_idx: np.ndarray) -> np.ndarray:
            return self._decode_rows(X[user_idx])

        logger.info("RecVAE: %d users x %d items, %d interactions, %d steps/epoch, device %s",
                    n_users, n_items, X.nnz, per_pass * (n_enc + n_dec), device)
        self.training_log_ = {}
        hist = run_training(
            self, "RecVAE", net, batches, self._loss_fn(net, indptr, indices, n_items),
            work=bs * n_items, device=device, data=fit_data, validation=validation,
            score=score, seed=seed, steps_per_epoch=per_pass * (n_enc + n_dec),
            generators=[g], checkpoint_dir=checkpoint_dir)
        net.eval()
        log = hist.to_dict()
        if holdout is not None:
            log["holdout"] = holdout
        self.training_log_ = log

    def _output_item_weights(self) -> np.ndarray:
        return self.network_.decoder.weight.detach().float().cpu().numpy()
