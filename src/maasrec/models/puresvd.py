"""PureSVD: truncated SVD of the interaction matrix (Cremonesi, Koren & Turrin 2010)."""

from __future__ import annotations

import logging
import time
import warnings
from typing import ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from .._validation import check_choice, check_int
from ..base import Recommender
from ..data.interactions import Interactions
from ..exceptions import MaasrecWarning
from ..explain import ExplainTerms
from ._matrix import ImplicitMatrixMixin
from .als import _cosine_rows

__all__ = ["PureSVD"]

logger = logging.getLogger(__name__)


def randomized_svd(X, k: int, *, n_oversamples: int = 10, n_iter: int = 4,
                   random_state=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` singular triplets of a (sparse) matrix by a randomized range finder.

    Halko, Martinsson & Tropp (2011), Algorithm 4.4 with LU-normalised power
    iterations (as scikit-learn does), written with numpy/scipy only.

    Parameters
    ----------
    X : scipy.sparse matrix or np.ndarray, shape (m, n)
    k : int
        Number of singular values (``1 <= k <= min(m, n)``).
    n_oversamples : int, default 10
        Extra random directions (accuracy).
    n_iter : int, default 4
        Power iterations (accuracy for slowly decaying spectra).
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    U : np.ndarray, shape (m, k)
    s : np.ndarray, shape (k,)
        Descending.
    Vt : np.ndarray, shape (k, n)
    """
    rng = np.random.default_rng(random_state)
    m, n = X.shape
    dtype = np.float64
    X = X.astype(dtype)
    # Xᵀ of a CSR matrix is a CSC view (no copy): ``Xt @ Q`` then walks the user rows in
    # order, streaming Q once and accumulating into the item rows, which stay in cache,
    # instead of gathering Q's user rows at random for each item (a CSR copy of Xᵀ): the
    # same sums in the same order, 7x faster at 10 million interactions (0.22 s vs 1.6 s
    # per product, 200,000 users, one thread)
    Xt = X.T
    ell = min(k + n_oversamples, m, n)
    Q = np.asarray(X @ rng.standard_normal((n, ell)))
    for _ in range(n_iter):
        Q, _ = scipy.linalg.lu(Q, permute_l=True, check_finite=False)
        Q = np.asarray(Xt @ Q)
        Q, _ = scipy.linalg.lu(Q, permute_l=True, check_finite=False)
        Q = np.asarray(X @ Q)
    Q, _ = scipy.linalg.qr(Q, mode="economic", check_finite=False)
    B = np.asarray(Xt @ Q).T  # Q^T X, (ell, n)
    Ub, s, Vt = scipy.linalg.svd(B, full_matrices=False, check_finite=False)
    return Q @ Ub[:, :k], s[:k], Vt[:k]


class PureSVD(ImplicitMatrixMixin, Recommender):
    """Truncated SVD of the user-item matrix, scored by item-space projection.

    ``X ≈ U Σ Vᵀ`` with the top ``factors`` singular triplets; a user's scores are
    ``x_u V Vᵀ`` (the projection of the user's row onto the top item subspace), so a
    cold user is scored from a history exactly like a known user. Missing entries
    count as zeros, which is what makes PureSVD a strong top-n baseline despite its
    simplicity.

    ``partial_fit`` folds new users and events into the histories; a user's vector is the
    fold-in ``x_u V``; the item subspace is not refitted and new items are refused.

    Parameters
    ----------
    factors : int, default 32
        Rank of the approximation (clipped to ``min(n_users, n_items)`` with a warning).
    solver : {"randomized", "arpack"}, default "randomized"
        ``"randomized"``: Halko et al.'s range finder (:func:`randomized_svd`), several
        times faster than ARPACK here at the same recommendation quality;
        ``"arpack"``: ``scipy.sparse.linalg.svds`` (exact to machine precision).
    n_iter : int, default 7
        Power iterations of the randomized solver (7, as scikit-learn uses for small
        ranks: on MovieLens 1M, 4 lost 0.003 NDCG@10 against the exact SVD, 7 lost
        0.001).
    implicit : bool, default True
        Factorise the binary matrix (ignore ratings; values <= 0 are not interactions,
        see :meth:`~maasrec.base.Recommender.fit`); with False, the values.
    random_state : int, numpy.random.Generator or None, default None
        Seed of the randomized solver and of ARPACK's start vector.

    Attributes
    ----------
    item_factors_ : np.ndarray of float32, shape (n_items, factors)
        ``V``: orthonormal columns.
    singular_values_ : np.ndarray of float32, shape (factors,)
        Descending.

    Notes
    -----
    **Defaults.** ``factors`` was chosen on the validation part of per-user random 8:1:1
    splits of MovieLens 1M, 100K and latest-small (``benchmarks/bench_classical.py
    tune``, results in ``benchmarks/results/classical_tune.json``): the best ranks
    were 48 (1M), 16 (100K) and 32 (latest-small); 32 is within 0.001 of the best on
    1M and latest-small and 0.016 below it on 100K. Quality falls fast with larger
    ranks (64: -0.01 to -0.04; 256: -0.07 to -0.16).

    ``similar_items`` uses the cosine of the rows of ``V Σ`` (the items' coordinates in
    the rank-``factors`` approximation).

    References
    ----------
    P. Cremonesi, Y. Koren, R. Turrin. Performance of recommender algorithms on top-N
    recommendation tasks. RecSys 2010.
    N. Halko, P.-G. Martinsson, J. Tropp. Finding structure with randomness. SIAM
    Review 2011.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {"factors": ("int", 8, 512, "log")}

    def __init__(self, factors: int = 32, solver: str = "randomized", n_iter: int = 7,
                 implicit: bool = True, random_state=None):
        self.factors = factors
        self.solver = solver
        self.n_iter = n_iter
        self.implicit = implicit
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_int("factors", self.factors, low=1)
        check_choice("solver", self.solver, ("randomized", "arpack"))
        check_int("n_iter", self.n_iter, low=0)

    def _fit(self, data: Interactions, **_) -> None:
        t0 = time.perf_counter()
        X = self._signal_matrix(data.to_csr())
        k = int(self.factors)
        limit = min(X.shape) - (1 if self.solver == "arpack" else 0)
        if k > limit:
            warnings.warn(
                f"PureSVD: factors={k} exceeds what a {X.shape[0]}x{X.shape[1]} matrix allows "
                f"with solver={self.solver!r}; using {limit}", MaasrecWarning, stacklevel=4)
            k = max(1, limit)
        if self.solver == "arpack":
            rng = np.random.default_rng(self.random_state)
            v0 = rng.standard_normal(min(X.shape))
            _, s, Vt = scipy.sparse.linalg.svds(X.astype(np.float64), k=k, v0=v0)
            order = np.argsort(-s, kind="stable")
            s, Vt = s[order], Vt[order]
        else:
            _, s, Vt = randomized_svd(X, k, n_iter=int(self.n_iter),
                                      random_state=self.random_state)
        self.item_factors_ = np.ascontiguousarray(Vt.T, dtype=np.float32)
        self.singular_values_ = s.astype(np.float32)
        logger.info("PureSVD: rank %d of a %dx%d matrix in %.2fs", k, X.shape[0], X.shape[1],
                    time.perf_counter() - t0)

    def _check_loaded(self) -> None:
        V = self._loaded_float("item_factors_", (self.n_items_, None))
        self._loaded_float("singular_values_", (V.shape[1],))

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int) -> None:
        # online update (Recommender.partial_fit): scores are computed from the user's
        # history, which partial_fit has already merged into seen_; the item subspace (fold-in: x_u V) is not refitted
        # and new items are refused (refit to add items)
        return None

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._history_vectors(history) @ self.item_factors_.T

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        return _cosine_rows(self.item_factors_ * self.singular_values_, item_idx)

    # -- vectors for approximate retrieval: scores are (x_u V) . v_i ----------------
    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        return self._history_vectors(self.seen_[user_idx])

    def _history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._matrix(history) @ self.item_factors_, dtype=np.float32)

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
        # scores are x_u V V^T, linear in the history: item j contributes x_uj v_j . v_item
        x = self._matrix(row)
        V = self.item_factors_.astype(np.float64)
        w = x.data.astype(np.float64) * (V[x.indices] @ V[item_idx])
        return ExplainTerms(float(w.sum()), x.indices, w, "exact", 0.0,
                            "x_uj * (v_j . v_item): the history item's share of the "
                            "projection onto the top singular item subspace")
