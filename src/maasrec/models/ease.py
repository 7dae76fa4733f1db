"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp

from .._validation import check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ._matrix import implicit_binary
from ..exceptions import MaasrecError

__all__ = ["EASE"]

logger = logging.getLogger(__name__)


def _symmetrize_upper(a: np.ndarray, block: int = 512) -> None:
    """Copy the upper triangle of a square array into its lower triangle, in place.

    Blocked, so that the transposed reads stay in cache (about 5x faster than
    ``np.triu(a) + np.triu(a, 1).T`` at 10,000 x 10,000, and no extra copy).
    """
    n = a.shape[0]
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        a[j0:j1, :j0] = a[:j0, j0:j1].T
        sub = a[j0:j1, j0:j1]
        il = np.tril_indices(j1 - j0, -1)
        sub[il] = sub.T[il]


class EASE(Recommender):
    """EASE item-item model with a closed-form solution.

    Learns an item-item weight matrix ``B`` with zero diagonal minimising
    ``||X - X B||^2 + l2 ||B||^2``; a user's scores are ``x_u B``. Strong on
    implicit-feedback top-n benchmarks, deterministic, no iterations.

    Parameters
    ----------
    l2 : float, default 500.0
        L2 regularisation (> 0). Larger data sets usually want larger values
        (hundreds to thousands); tune it on a validation split.
    implicit : bool, default True
        Fit on the binary interaction matrix (ignore ratings): values > 0 are
        interactions, values <= 0 are left out with a warning (they still count as
        seen; see :meth:`~maasrec.base.Recommender.fit`). With False, the
        ratings/weights (negative ones included) are the matrix values.

    Attributes
    ----------
    B_ : np.ndarray of float32, shape (n_items, n_items)
        Item-item weights.

    Notes
    -----
    Time is O(n_items^3) and memory O(n_items^2) (the Gram matrix is dense, float64):
    about 110 MB for 3,700 items, 3.2 GB for 20,000. For larger catalogues use ALS,
    ItemKNN or PureSVD.

    References
    ----------
    H. Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019.
    """

    def __init__(self, l2: float = 500.0, implicit: bool = True):
        self.l2 = l2
        self.implicit = implicit

    def _validate_params(self) -> None:
        check_number("l2", self.l2, low=0, low_inclusive=False, high=float("inf"),
                     high_inclusive=False)

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        if self.implicit:  # values > 0 are interactions (1), the others are dropped
            return implicit_binary(m)
        return m

    def _fit(self, data: Interactions, **_) -> None:
        t0 = time.perf_counter()
        X = self._matrix(data.to_csr()).astype(np.float64)
        n = X.shape[1]
        logger.info("EASE: Gram matrix of %d items (%.0f MB)", n, n * n * 8 / 2**20)
        G = (X.T @ X).toarray()
        G[np.diag_indices(n)] += self.l2
        # G is symmetric positive definite: invert through its Cholesky factor
        # (potrf + potri: about 3x faster than solving against the identity)
        c, _ = scipy.linalg.cho_factor(G, lower=False, overwrite_a=True, check_finite=False)
        P, info = scipy.linalg.lapack.dpotri(c, lower=0, overwrite_c=1)
        if info != 0:
            raise MaasrecError(f"EASE: the Gram matrix could not be inverted (LAPACK info={info})")
        _symmetrize_upper(P)  # potri fills the upper triangle only
        B = P
        B /= -np.diag(P).copy()
        B[np.diag_indices(n)] = 0.0
        self.B_ = np.ascontiguousarray(B, dtype=np.float32)  # potri returns Fortran order
        logger.info("EASE: fitted in %.2fs", time.perf_counter() - t0)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._matrix(history) @ self.B_, dtype=np.float32)

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self._score_history(self.seen_[user_idx])

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        return self.B_[item_idx]
    def _check_loaded(self) -> None:
        n = self.n_items_
        self._loaded_float("B_", (n, n))

