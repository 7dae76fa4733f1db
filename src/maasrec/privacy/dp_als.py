"""Private alternating least squares: joint (billboard) user-level differential privacy.

:class:`PrivateALS` follows Chien, Jain, Krichene, Rendle, Song, Thakurta and Zhang,
"Private Alternating Least Squares: Practical Private Matrix Completion with Tighter
Rates" (ICML 2021) on the implicit-feedback ALS objective of :class:`maasrec.models.ALS`
(Hu, Koren & Volinsky 2008). The item factors are the only thing released; each user's
factor is solved from that user's own data and the released item factors, "on the
user's device" (the billboard model of Hsu et al. 2014).

Privacy accounting: each iteration is one Gaussian mechanism on the stacked item
statistics with L2 sensitivity 1 after scaling, so ``T`` iterations compose exactly to one
Gaussian mechanism with ``mu = sqrt(T) / z`` (Gaussian differential privacy, Dong, Roth &
Su 2019); epsilon for a given delta is the analytic Gaussian curve (Balle & Wang 2018,
Theorem 8), which is tight for Gaussian noise without subsampling. No Opacus needed.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..exceptions import DataError
from ..models.als import FactorScoring, _cg_solve, _Side
from ..training import threads_for, torch_generator

__all__ = ["PrivateALS", "gaussian_epsilon", "gaussian_mu"]

logger = logging.getLogger("maasrec.privacy.dp_als")


def gaussian_epsilon(mu: float, delta: float) -> float:
    """Epsilon of a ``mu``-GDP mechanism at ``delta`` (analytic Gaussian, exact).

    Parameters
    ----------
    mu : float
        ``sensitivity / noise std`` of the (composed) Gaussian mechanism, > 0.
    delta : float
        In (0, 1).

    Returns
    -------
    float
        The smallest epsilon >= 0 with
        ``Phi(-eps/mu + mu/2) - exp(eps) Phi(-eps/mu - mu/2) <= delta``.
    """
    check_number("mu", mu, low=0, low_inclusive=False)
    check_number("delta", delta, low=0, high=1, low_inclusive=False, high_inclusive=False)
    if _delta_of(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while _delta_of(hi, mu) > delta:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _delta_of(mid, mu) > delta else (lo, mid)
    return hi


def gaussian_mu(epsilon: float, delta: float) -> float:
    """The largest ``mu`` whose Gaussian mechanism is (epsilon, delta)-DP.

    Parameters
    ----------
    epsilon : float
        > 0.
    delta : float
        In (0, 1).

    Returns
    -------
    float
    """
    check_number("epsilon", epsilon, low=0, low_inclusive=False)
    check_number("delta", delta, low=0, high=1, low_inclusive=False, high_inclusive=False)
    lo, hi = 0.0, 1.0
    while _delta_of(epsilon, hi) < delta:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _delta_of(epsilon, mid) <= delta else (lo, mid)
    return lo


def _delta_of(eps: float, mu: float) -> float:
    from scipy.special import log_ndtr

    a = log_ndtr(-eps / mu + mu / 2.0)
    b = eps + log_ndtr(-eps / mu - mu / 2.0)
    return float(np.exp(a) - np.exp(b)) if a > b else 0.0


def _sym_noise(shape: tuple[int, ...], f: int, std: float, g: torch.Generator) -> torch.Tensor:
    """Symmetric Gaussian noise: i.i.d. on the upper triangle (diagonal included)."""
    noise = torch.randn((*shape, f, f), generator=g, dtype=torch.float64) * std
    upper = torch.triu(noise)
    return upper + torch.triu(noise, diagonal=1).transpose(-1, -2)


class PrivateALS(FactorScoring, Recommender):
    """Implicit-feedback ALS with joint user-level differential privacy (private ALS).

    Each iteration: (1) every user solves their own factor ``x_u`` as
    :class:`~maasrec.models.ALS` does, against the last released item factors, from **all**
    of their interactions; (2) each user's factor is clipped to norm 1 and the item
    sufficient statistics are summed over users: the global Gram ``Σ_u x_u x_uᵀ`` and, per
    item, ``(1 + alpha) Σ_u x_u`` (and ``alpha Σ_u x_u x_uᵀ`` when ``budget_shares[1] >
    0``) with each user's part bounded by ``max_user_items`` (``contribution``: their
    interactions weighted down to an L2 norm of ``sqrt(max_user_items)``, or a fresh
    seeded sample of that many each iteration); (3) Gaussian noise is added to those
    statistics (symmetric on the Grams) and every item factor is solved from the noisy statistics (eigenvalues of the noisy
    Gram clipped at 0, plus ``regularization``): these item factors are released. ``iterations`` releases compose
    to one Gaussian mechanism (see the module docstring); the noise is calibrated to
    ``epsilon`` at ``delta``.

    What is protected (joint differential privacy, the privacy unit is the user): the
    released item factors ``item_factors_`` are (epsilon, delta)-DP with respect to adding
    or removing one user with all their interactions, and so is everything computed from
    them together with *other* users' data: another user's factor and recommendations.

    What is not protected: a user's own factor (``user_factors_[u]``) and recommendations
    are computed from that user's own data without noise (in a deployment they would be
    computed on the user's device; here the fitted model holds every user's factor, and
    ``seen_``, the user vocabulary and the item vocabulary, like any fitted model: publish
    ``item_factors_``, not the model directory). Which item ids occur in the data is not
    protected (the item vocabulary comes from the data). The random numbers are a seeded
    pseudo-random stream, not a cryptographically secure one; floating-point attacks on
    the Gaussian mechanism are not addressed.

    Parameters
    ----------
    epsilon : float or None, default 8.0
        Privacy budget (> 0) for all iterations together; None: no noise and no
        contribution bounds (a non-private diagnostic; clipping is kept).
    delta : float or None, default None
        In (0, 1); None: ``1 / n_users`` of the fit.
    factors : int, default 32
        Dimension of the factors.
    regularization : float, default 2000.0
        L2 penalty of the item solves (>= 0). The user factors are clipped to norm 1, so
        the statistics are sums over users: it is on the scale of the number of users
        (the global Gram's trace is at most ``n_users``) and shrinks the items whose
        few interactions the noise drowns.
    user_regularization : float, default 0.1
        L2 penalty of the (local) user solves (> 0).
    alpha : float, default 2.0
        Confidence slope: ``c = 1 + alpha`` on observed pairs, 1 elsewhere (binary
        interactions).
    iterations : int, default 5
        Released item updates (more iterations: more noise per iteration).
    max_user_items : int, default 100
        Interactions per user (sampled each iteration) that enter the item statistics:
        the per-user contribution bound. The noise grows with its square root, so set it
        near the typical number of interactions per user of *your* data (a public
        choice; it is not taken from the data): 100 suits MovieLens 1M (165 per user on
        average), 5 suits Amazon Beauty (9 per user; 100 there: NDCG@10 0.0015 instead
        of 0.017, see Notes).
    budget_shares : tuple of 3 floats, default (0.05, 0.0, 0.95)
        How the privacy budget (the squared ``1/noise`` of each iteration) is divided
        between the global Gram, the per-item Grams and the per-item right-hand sides
        (>= 0, summing to 1; the first and last > 0). A 0 for the per-item Grams
        releases none: every item is solved against the noisy global Gram alone
        (``(G + regularization I) y_i = b_i``), which spends the whole item budget on the
        right-hand sides. See Notes.
    item_bias : float, default 0.3
        In [0, 1). Above 0, coordinate 0 of every user's factor is held at ``item_bias``
        (public, the same for all users) and the rest is clipped to norm
        ``sqrt(1 - item_bias²)``: coordinate 0 of the item factors becomes a private item
        bias, a popularity prior that survives strong noise (the user solves are then exact
        dense solves). 0: plain factors, solved by conjugate gradients.
    cg_steps : int, default 10
        Conjugate-gradient steps of the local user solves when ``item_bias`` is 0
        (warm-started).
    contribution : {"sample", "scale"}, default "scale"
        How ``max_user_items`` bounds a user's part of the item statistics (the L2
        sensitivity is ``sqrt(max_user_items)`` times the factor clip either way):
        ``"sample"``, at most ``max_user_items`` of the user's interactions, a fresh
        seeded sample each iteration; ``"scale"``, all of them, each weighted
        ``min(1, sqrt(max_user_items / n_u))`` for a user with ``n_u`` interactions (no
        sampling; long histories count with less weight per item). ``"scale"`` scored
        higher on the validation parts of MovieLens 1M and Amazon Beauty (see Notes).
    normalize_users : bool, default True
        Scale every user's factor to the clip norm (1, or ``sqrt(1 - item_bias²)`` for the
        part after coordinate 0) before it enters the item statistics, so that each user
        spends the whole sensitivity; False: only factors above the norm are clipped.
        The same sensitivity and accounting either way. True scored higher on the
        validation parts of MovieLens 1M and Amazon Beauty (see Notes).
    feature_regularization : float or None, default None
        > 0: tie the item factors to public item attributes, given to
        ``fit(X, item_features=...)`` (an :class:`~maasrec.data.ItemFeatures`; its
        multi-hot and categorical blocks, each item's indicator row scaled to unit norm,
        ``A``): every item is shrunk (by ``regularization``) toward ``A_i W`` instead of
        toward 0, where the attribute vectors ``W`` (penalised by this value) are solved
        jointly from the same noisy statistics, pooling the signal of all items that share
        an attribute. Post-processing of the release: the privacy guarantee and its
        accounting are unchanged, but the attributes must be public (not derived from
        the users' data). Needs ``budget_shares[1] == 0``. None: no attributes (they are
        ignored if given).
    random_state : int, numpy.random.Generator or None, default None
        Seed of the initial item factors, the contribution samples and the noise.

    Attributes
    ----------
    user_factors_ : np.ndarray of float32, shape (n_users, factors)
        Each user's own (unreleased) factor.
    item_factors_ : np.ndarray of float32, shape (n_items, factors)
        The released, differentially private item factors.
    training_log_ : dict
        ``seconds`` per iteration and ``privacy``: the record (epsilon, delta, mu,
        noise_multiplier, sensitivities and noise standard deviations, iterations,
        max_user_items, accountant ``"gdp"``, ``epsilon_zcdp_bound``: the looser zCDP
        conversion, for comparison).

    Notes
    -----
    **Defaults.** Chosen on the validation part of MovieLens 1M (per-user random 8:1:1,
    seed 0) at epsilon 8, delta 1/n_users (``benchmarks/bench_privacy_dp.py``): per-item
    Grams with 10% of the budget gave NDCG@10 0.187 against 0.192 without them (16
    factors, ``regularization`` 1000: their noise cost more than their information); then at 16 factors and 50 items per user,
    ``regularization`` 300 / 1000 / 2000 / 3000: 0.170 / 0.192 / 0.194 / 0.193; at 2000,
    8 / 16 / 32 factors: 0.181 / 0.194 / 0.197, ``max_user_items`` 30 / 50 / 100:
    0.188 / 0.194 / 0.197; at 32 factors and 100 items per user: 0.200 (200 items per
    user: 0.195, ``regularization`` 4000: 0.199, ``user_regularization`` 0.01: 0.201);
    3 / 5 / 8 iterations (16 factors): 0.185 / 0.194 / 0.192. Non-private ALS (its
    defaults) scores 0.240 there. On Amazon Beauty (leave-last-out validation item, 22,363
    users, 9 interactions each on average) ``max_user_items`` 100 / 10 / 5 / 3 gave
    0.0015 / 0.016 / 0.017 / 0.016 and ``max_user_items=5, user_regularization=0.01``
    0.018 (ALS: 0.028). All of that with ``item_bias=0``; ``item_bias`` 0.3 then kept those (ML-1M 0.199, Beauty 0.018) and
    held the low-epsilon end above collapse: Beauty at epsilon 1 / 2 went from 0.0005 /
    0.0005 (test, below Popularity's 0.005) to 0.004 / 0.006 (validation); 0.7 lost at
    epsilon 8 (ML-1M 0.186, Beauty 0.017). All of that with ``contribution="sample"``;
    ``"scale"`` (every interaction, weighted) then gave ML-1M 0.205 instead of 0.199
    (seed 0) and Beauty (``max_user_items=5, user_regularization=0.01``) 0.0194 instead of
    0.0177 (3 seeds; ``max_user_items=3``: 0.0196); ``normalize_users=True`` on top:
    ML-1M 0.207 (seed 0), Beauty 0.0201 (3 seeds). With both, on Beauty (seeds 0-1)
    ``factors`` 32 / 48 / 64: 0.0200 / 0.0208 / 0.0200, ``max_user_items=3``: 0.0201,
    ``regularization=4000``: 0.0202, ``iterations=8``: 0.0192, ``user_regularization=0.1``:
    0.0199 (ALS: 0.028); test, 3 seeds, epsilon 8: 0.0128 at 32 factors, 0.0129 at 48,
    76% of ALS's 0.0170 (the 80% goal is not reached on Beauty).

    **Item attributes** (``feature_regularization``, Beauty's S3Rec category and brand
    attributes; validation item, epsilon 8, ``max_user_items=5, user_regularization=0.01``,
    seed 0): ``feature_regularization`` 1 / 10 / 100 / 300 / 1000 / 3000 / 10000 at 32
    factors: 0.0215 / 0.0213 / 0.0219 / 0.0234 / 0.0251 / 0.0247 / 0.0232 (without: 0.0199);
    at 1000, ``regularization`` 1000 / 4000 / 8000: 0.0229 / 0.0238 / 0.0224; ``factors``
    48 / 64 / 96 / 128 / 192: 0.0263 / 0.0278 / 0.0296 / 0.0305 / 0.0299 (without
    attributes at 128: 0.0192); at 128, ``feature_regularization`` 3000: 0.0291,
    ``regularization`` 1000 / 4000: 0.0284 / 0.0290. At 128 factors and 1000, 3 seeds:
    0.0309 (ALS 0.0282); test: 0.0183, 108% of ALS (64 factors: 0.0164, 96%). MovieLens 1M
    genres (32 factors, 3 seeds): 0.2052 without, 0.2082 at 10,000 (test 0.2098 against
    0.2064, 88.0% of ALS instead of 86.6%).

    **Scaling.** Each iteration costs one ALS user half-step plus one ``factors x
    factors`` eigen-decomposition (``budget_shares[1] == 0``) or one per item (per-item
    Grams, ``n_items x factors²`` memory).

    References
    ----------
    S. Chien, P. Jain, W. Krichene, S. Rendle, S. Song, A. Thakurta, L. Zhang. Private
    Alternating Least Squares: Practical Private Matrix Completion with Tighter Rates.
    ICML 2021.
    J. Dong, A. Roth, W. Su. Gaussian Differential Privacy. JRSS-B 2022.
    B. Balle, Y.-X. Wang. Improving the Gaussian Mechanism for Differential Privacy:
    Analytical Calibration and Optimal Denoising. ICML 2018.
    """

    def __init__(self, epsilon: float | None = 8.0, delta: float | None = None,
                 factors: int = 32, regularization: float = 2000.0,
                 user_regularization: float = 0.1, alpha: float = 2.0, iterations: int = 5,
                 max_user_items: int = 100, budget_shares=(0.05, 0.0, 0.95),
                 item_bias: float = 0.3, cg_steps: int = 10, contribution: str = "scale",
                 normalize_users: bool = True, feature_regularization: float | None = None,
                 random_state=None):
        self.epsilon = epsilon
        self.delta = delta
        self.factors = factors
        self.regularization = regularization
        self.user_regularization = user_regularization
        self.alpha = alpha
        self.iterations = iterations
        self.max_user_items = max_user_items
        self.budget_shares = budget_shares
        self.item_bias = item_bias
        self.cg_steps = cg_steps
        self.contribution = contribution
        self.normalize_users = normalize_users
        self.feature_regularization = feature_regularization
        self.random_state = random_state

    def _validate_params(self) -> None:
        if self.epsilon is not None:
            if isinstance(self.epsilon, (int, float)) and math.isinf(self.epsilon):
                raise DataError(f"epsilon must be a finite number > 0, got {self.epsilon!r} "
                                "(for no privacy pass epsilon=None)")
            check_number("epsilon", self.epsilon, low=0, low_inclusive=False)
        if self.delta is not None:
            check_number("delta", self.delta, low=0, high=1, low_inclusive=False,
                         high_inclusive=False)
        check_int("factors", self.factors, low=1)
        check_number("regularization", self.regularization, low=0)
        check_number("user_regularization", self.user_regularization, low=0,
                     low_inclusive=False)
        check_number("alpha", self.alpha, low=0, low_inclusive=False)
        check_int("iterations", self.iterations, low=1)
        check_int("max_user_items", self.max_user_items, low=1)
        check_number("item_bias", self.item_bias, low=0, high=1, high_inclusive=False)
        check_int("cg_steps", self.cg_steps, low=1)
        if not isinstance(self.normalize_users, (bool, np.bool_)):
            raise DataError(f"normalize_users must be True or False, got "
                            f"{self.normalize_users!r}")
        if not isinstance(self.contribution, str) or self.contribution not in _CONTRIBUTIONS:
            raise DataError(f"contribution must be one of {sorted(_CONTRIBUTIONS)}, got "
                            f"{self.contribution!r}")
        if self.feature_regularization is not None:
            check_number("feature_regularization", self.feature_regularization, low=0,
                         low_inclusive=False)
            if self._shares()[1] > 0:
                raise DataError("feature_regularization needs budget_shares[1] == 0 (no "
                                f"per-item Grams), got budget_shares={self.budget_shares!r}")
        self._shares()

    def _shares(self) -> tuple[float, float, float]:
        s = self.budget_shares
        try:
            vals = tuple(float(v) for v in s)
        except (TypeError, ValueError):
            vals = ()
        if (len(vals) != 3 or not all(math.isfinite(v) and v >= 0 for v in vals)
                or vals[0] <= 0 or vals[2] <= 0 or abs(sum(vals) - 1.0) > 1e-6):
            raise DataError(f"budget_shares must be 3 numbers >= 0 summing to 1 (global "
                            f"Gram, item Grams, item right-hand sides; only the item Grams' "
                            f"may be 0), got {s!r}")
        return vals

    # -- privacy -------------------------------------------------------------------
    def _noise_plan(self, n_users: int) -> dict[str, Any]:
        a, k, T = float(self.alpha), int(self.max_user_items), int(self.iterations)
        sens = {"global_gram": 1.0, "item_gram": a * math.sqrt(k),
                "item_rhs": (1.0 + a) * math.sqrt(k)}
        if self._shares()[1] == 0:  # no per-item Grams: the items solved against G alone
            sens["item_gram"] = 0.0
        if self.epsilon is None:
            return {"epsilon": None, "delta": None, "mu": None, "noise_multiplier": 0.0,
                    "sensitivity": sens, "noise_std": dict.fromkeys(sens, 0.0)}
        delta = float(self.delta) if self.delta is not None else 1.0 / n_users
        if not 0.0 < delta < 1.0:
            raise DataError(f"delta must be in (0, 1), got {delta!r}")
        mu = gaussian_mu(float(self.epsilon), delta)
        z = math.sqrt(T) / mu  # per-iteration noise multiplier of the stacked statistics
        std = {name: z * s / math.sqrt(w) if w > 0 else 0.0
               for (name, s), w in zip(sens.items(), self._shares())}
        rho = mu * mu / 2.0  # zCDP of the composition, for comparison
        return {"epsilon": gaussian_epsilon(mu, delta), "target_epsilon": float(self.epsilon),
                "delta": delta, "mu": mu, "noise_multiplier": z, "sensitivity": sens,
                "noise_std": std,
                "epsilon_zcdp_bound": rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))}

    # -- fitting -------------------------------------------------------------------
    def _fit(self, data: Interactions, *, item_features=None, **_) -> None:
        prior = None
        if self.feature_regularization is not None:
            from ._dp_als_features import FeaturePrior, feature_matrix

            if item_features is None:
                raise DataError("PrivateALS(feature_regularization=...) needs "
                                "fit(X, item_features=...) with multi-hot or categorical "
                                "item attributes")
            prior = FeaturePrior(feature_matrix(item_features, data.item_vocab),
                                 float(self.feature_regularization))
        R = sp.csr_matrix(data.to_csr(), dtype=np.float32, copy=True)
        R.data[:] = 1.0
        R.sort_indices()
        n, m = R.shape
        f, T = int(self.factors), int(self.iterations)
        plan = self._noise_plan(n)
        private = plan["epsilon"] is not None
        std = plan["noise_std"]
        g = torch_generator(self.random_state)
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
        # data-independent start: random item factors of norm about 1
        Y = torch.randn(m, f, generator=g) / math.sqrt(f)
        X = torch.zeros(n, f)
        users = _Side(R, np.full(R.nnz, 1.0 + float(self.alpha), np.float32), f,
                      torch.device("cpu"))
        seconds = []
        with threads_for(R.nnz * f):
            for _ in range(T):
                t0 = time.perf_counter()
                self._solve_users(users, R, X, Y, int(self.cg_steps))
                Rk = (_CONTRIBUTIONS[self.contribution](R, int(self.max_user_items), rng)
                      if private else R)
                Y = self._solve_items(X, Rk, std, g, prior)
                seconds.append(time.perf_counter() - t0)
            # the users' final factors, solved locally against the last release
            self._solve_users(users, R, X, Y, 2 * f + 10, tol=1e-10)
        self.user_factors_ = X.numpy().astype(np.float32)
        self.item_factors_ = Y.numpy().astype(np.float32)
        record = {**plan, "accountant": "gdp", "unit": "user", "model": "joint",
                  "iterations": T, "max_user_items": int(self.max_user_items),
                  "contribution": self.contribution,
                  "normalize_users": bool(self.normalize_users),
                  "feature_regularization": self.feature_regularization,
                  "clip_norm": 1.0, "n_users": n,
                  "budget_shares": list(self._shares())}
        self.training_log_ = {"seconds": seconds, "steps": T, "privacy": record}
        if private:
            logger.info("PrivateALS: epsilon %.3g at delta %.3g (mu %.4g) over %d iterations, "
                        "noise multiplier %.4g", plan["epsilon"], plan["delta"], plan["mu"],
                        T, plan["noise_multiplier"])

    def _solve_items(self, X: torch.Tensor, Rk: sp.csr_matrix, std: dict[str, float],
                     g: torch.Generator, prior=None) -> torch.Tensor:
        """Item factors from the (noisy) sufficient statistics of clipped user factors;
        ``prior``: the attribute side (``_dp_als_features.FeaturePrior``) or None."""
        n, m = Rk.shape
        f = X.shape[1]
        a = float(self.alpha)
        Xc = _clip_users(X.double(), float(self.item_bias), bool(self.normalize_users))
        G = Xc.T @ Xc
        RkT = Rk.T.tocsr().astype(np.float64)
        rhs = torch.from_numpy(RkT @ Xc.numpy()) * (1.0 + a)
        item_grams = self._shares()[1] > 0
        if std["item_rhs"] > 0:
            G = G + _sym_noise((), f, std["global_gram"], g)
            rhs = rhs + torch.randn(m, f, generator=g, dtype=torch.float64) * std["item_rhs"]
        if not item_grams and prior is not None:  # shrunk toward attributes
            return prior.solve(G, rhs, float(self.regularization)).float()
        if not item_grams:  # one system for every item: (G + λI) Y = rhs
            w, V = torch.linalg.eigh(G)
            w = torch.clamp(w, min=0.0) + float(self.regularization) + 1e-8
            return ((rhs @ V) / w @ V.T).float()
        A = torch.zeros(m, f * f, dtype=torch.float64)
        chunk = max(1, 2**22 // (f * f))
        for s in range(0, n, chunk):  # Σ_u x_u x_uᵀ per item, in blocks of users
            Z = (Xc[s:s + chunk, :, None] * Xc[s:s + chunk, None, :]).reshape(-1, f * f)
            A += torch.from_numpy(RkT[:, s:s + chunk] @ Z.numpy())
        A = A.reshape(m, f, f) * a
        if std["item_gram"] > 0:
            A = A + _sym_noise((m,), f, std["item_gram"], g)
        # post-processing: the noisy Gram projected on the PSD cone, then regularised
        w, V = torch.linalg.eigh(G[None] + A)
        w = torch.clamp(w, min=0.0) + float(self.regularization) + 1e-8
        Y = V @ ((V.transpose(-1, -2) @ rhs[..., None]) / w[..., None])
        return Y[..., 0].float()

    def _solve_users(self, users, R, X, Y, steps, tol=0.0) -> None:
        if self.item_bias:
            X.copy_(_solve_fixed(R, Y, float(self.alpha), float(self.user_regularization),
                                 float(self.item_bias)))
        else:
            _cg_solve(users, X, Y, float(self.user_regularization), steps, tol=tol)

    # -- scoring -------------------------------------------------------------------
    def recalculate_users(self, history: sp.csr_matrix) -> np.ndarray:
        """Solve user factors (locally) from interactions against the released item factors.

        Parameters
        ----------
        history : scipy.sparse matrix, shape (n_users_given, n_items)

        Returns
        -------
        np.ndarray of float32, shape (n_users_given, factors)
        """
        self._check_fitted()
        H = sp.csr_matrix(history, dtype=np.float32, copy=True)
        if H.ndim != 2 or H.shape[1] != self.n_items_:
            raise DataError(f"history has shape {H.shape}, expected (n_users, {self.n_items_})")
        H.data[:] = 1.0
        H.sort_indices()
        Y = torch.from_numpy(np.ascontiguousarray(self.item_factors_))
        X = torch.zeros(H.shape[0], Y.shape[1])
        if self.item_bias:
            return _solve_fixed(H, Y, float(self.alpha), float(self.user_regularization),
                                float(self.item_bias)).numpy()
        if H.nnz:
            side = _Side(H, np.full(H.nnz, 1.0 + float(self.alpha), np.float32), Y.shape[1],
                         torch.device("cpu"))
            with threads_for(H.nnz * Y.shape[1]):
                _cg_solve(side, X, Y, float(self.user_regularization),
                          steps=2 * Y.shape[1] + 10, tol=1e-10)
        return X.numpy()


def _solve_fixed(R: sp.csr_matrix, Y: torch.Tensor, alpha: float, reg: float,
                 bias: float) -> torch.Tensor:
    """Exact implicit-ALS user solves with coordinate 0 held at ``bias``.

    Each user's Gram ``Σ_i y_i y_iᵀ`` over their items: a sparse product with every item's
    ``y_i y_iᵀ`` (``n_items x factors²`` float64) while that table fits in 256 MiB, else
    summed from gathered rows in blocks of users (``O(block x factors²)`` memory; the
    same numbers).
    """
    n, f = R.shape[0], Y.shape[1]
    Yd = Y.double()
    YtY = Yd.T @ Yd
    out = torch.zeros(n, f, dtype=torch.float64)
    out[:, 0] = bias
    eye = torch.eye(f - 1, dtype=torch.float64) * reg
    for s, e, G, b in (_user_grams_table if Y.shape[0] * f * f * 8 <= 2**28
                       else _user_grams_gather)(R, Yd):
        W = G * alpha + YtY
        rhs = b[:, 1:] * (1.0 + alpha) - bias * W[:, 1:, 0]
        out[s:e, 1:] = torch.linalg.solve(W[:, 1:, 1:] + eye, rhs)
    return out.float()


def _user_grams_table(R: sp.csr_matrix, Yd: torch.Tensor):
    """Blocks ``(start, end, Σ y yᵀ, Σ y)`` of users' item sums, from a table of ``y yᵀ``."""
    n, f = R.shape[0], Yd.shape[1]
    P = (Yd[:, :, None] * Yd[:, None, :]).reshape(-1, f * f).numpy()
    Rd = sp.csr_matrix(R, dtype=np.float64)
    Rd.data[:] = 1.0
    chunk = max(1, 2**21 // (f * f))
    for s in range(0, n, chunk):
        Rs = Rd[s:s + chunk]
        yield (s, min(n, s + chunk), torch.from_numpy(Rs @ P).reshape(-1, f, f),
               torch.from_numpy(Rs @ Yd.numpy()))


def _user_grams_gather(R: sp.csr_matrix, Yd: torch.Tensor):
    """As :func:`_user_grams_table`, from gathered item rows (about ``2**22 / factors²``
    interactions a block)."""
    n, f = R.shape[0], Yd.shape[1]
    indptr = np.asarray(R.indptr, dtype=np.int64)
    cols = torch.from_numpy(np.asarray(R.indices, dtype=np.int64))
    budget, max_users = max(1, 2**22 // (f * f)), max(1, 2**21 // (f * f))
    s = 0
    while s < n:
        e = int(np.searchsorted(indptr, indptr[s] + budget, side="right")) - 1
        e = min(n, s + max_users, max(e, s + 1))
        Yg = Yd[cols[indptr[s]:indptr[e]]]
        if e == s + 1:  # one user (perhaps a long history): one product
            yield s, e, (Yg.T @ Yg)[None], Yg.sum(0, keepdim=True)
        else:
            rows = torch.from_numpy(np.repeat(np.arange(e - s), np.diff(indptr[s:e + 1])))
            yield (s, e, torch.zeros(e - s, f, f, dtype=torch.float64).index_add_(
                0, rows, Yg[:, :, None] * Yg[:, None, :]),
                torch.zeros(e - s, f, dtype=torch.float64).index_add_(0, rows, Yg))
        s = e


def _bound_contributions(R: sp.csr_matrix, k: int, rng: np.random.Generator) -> sp.csr_matrix:
    """At most ``k`` stored entries per row, sampled uniformly without replacement."""
    counts = np.diff(R.indptr)
    if counts.max(initial=0) <= k:
        return R
    keys = rng.random(R.nnz)
    rows = np.repeat(np.arange(R.shape[0]), counts)
    order = np.lexsort((keys, rows))  # within each row, a random order
    rank = np.arange(R.nnz) - np.repeat(R.indptr[:-1], counts)
    keep = np.zeros(R.nnz, dtype=bool)
    keep[order[rank < k]] = True
    out = sp.csr_matrix((R.data[keep], R.indices[keep], np.concatenate(
        [[0], np.cumsum(np.minimum(counts, k))])), shape=R.shape)
    return out


def _clip_users(Xd: torch.Tensor, bias: float, normalize: bool) -> torch.Tensor:
    """Users' factors as they enter the item statistics: norm <= 1 (== 1 if ``normalize``).

    With ``bias`` > 0 coordinate 0 is the constant ``bias`` and the rest is bounded by
    ``sqrt(1 - bias²)``; a zero factor stays zero.
    """
    low = 1e-12 if normalize else 1.0
    if bias:
        rest = Xd[:, 1:]
        cap = math.sqrt(1.0 - bias ** 2)
        norms = torch.linalg.vector_norm(rest, dim=1, keepdim=True)
        return torch.cat([Xd[:, :1], rest / torch.clamp(norms / cap, min=low)], dim=1)
    norms = torch.linalg.vector_norm(Xd, dim=1, keepdim=True)
    return Xd / torch.clamp(norms, min=low)


def _scale_contributions(R: sp.csr_matrix, k: int, rng=None) -> sp.csr_matrix:
    """Every stored entry, each row weighted ``min(1, sqrt(k / n_row))``: row L2 norm <= sqrt(k)."""
    counts = np.diff(R.indptr)
    out = sp.csr_matrix(R, dtype=np.float32, copy=True)
    out.data = np.repeat(np.minimum(1.0, np.sqrt(k / np.maximum(counts, 1))),
                         counts).astype(np.float32) * np.sign(out.data)
    return out


_CONTRIBUTIONS = {"sample": _bound_contributions, "scale": _scale_contributions}
