"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..exceptions import MaasrecError
from ..explain import ExplainTerms
from ._interrupt import check_deadline
from ._matrix import implicit_binary

__all__ = ["EASE"]

logger = logging.getLogger(__name__)


#: Upper bound on the cells of one block of the Gram matrix built as a sparse product
#: (each cell of a sparse block costs up to 12 bytes before it is written in place).
GRAM_BLOCK_CELLS = 2**22


def _gram(X: sp.csr_matrix, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dense ``X.T @ X`` built a block of item rows at a time into one preallocated tensor.

    Only the block's sparse product is held besides the result (at most
    :data:`GRAM_BLOCK_CELLS` cells), instead of the whole sparse product, which for a
    dense-ish catalogue is larger than the dense matrix itself.
    """
    n = X.shape[1]
    G = torch.empty((n, n), dtype=dtype)
    g = G.numpy()
    Xt = X.T.tocsr()
    step = max(1, GRAM_BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        check_deadline("EASE Gram matrix")
        stop = min(n, start + step)
        block = (Xt[start:stop] @ X).astype(g.dtype, copy=False)
        block.toarray(out=g[start:stop])
    return G


#: Up to this many items ``fit`` also keeps the float64 inverse ``P`` (8 bytes per item
#: pair, not saved) that ``partial_fit`` updates; above it the first ``partial_fit``
#: computes it (about the cost of a fit).
KEEP_INVERSE_MAX_ITEMS = 5000


def _ease_weights(X: sp.csr_matrix, l2: float, dtype: torch.dtype = torch.float64,
                  inverse: np.ndarray | None = None,
                  side: np.ndarray | None = None) -> np.ndarray:
    """EASE's ``B = I - P diagMat(1 / diag(P))`` with ``P = (X.T X + l2 I)^-1``, float32.

    With ``inverse`` (a float64 array of shape (n, n)), ``P`` itself is written into it.
    With ``side`` (an array of shape (n, d), e.g. scaled item text vectors), the Gram
    matrix is ``X.T X + side side.T``: the side vectors' dimensions act as extra users
    (:class:`~maasrec.models.TextEASE`).

    The inversion runs on torch's LAPACK: the Cholesky factor in place in the Gram
    matrix's buffer (blocked), then triangular solves a block of columns at a time, so
    the only n x n arrays are the Gram matrix (``dtype``) and the float32 result.
    Between blocks a deadline set by :func:`maasrec.tune.tune` is checked
    (:mod:`maasrec.models._interrupt`: ``FitInterrupted``; nothing outside it). OpenBLAS's
    threaded ``potrf`` (``scipy.linalg``, ``numpy.linalg``) dies with SIGSEGV on some
    CPUs from about 16,000 items (issue 17).

    Raises
    ------
    MaasrecError
        If ``X.T X + l2 I`` is not numerically positive definite (``l2`` too small for
        the scale of the data) or the data overflow.
    """
    n = X.shape[1]
    # the largest eigenvalue of X^T X is at most its trace, so cond(X^T X + l2 I) <=
    # 1 + trace / l2: refuse an l2 that lets rounding decide the result
    trace = float(X.multiply(X).sum())
    if not np.isfinite(trace):
        raise MaasrecError(
            "EASE: the Gram matrix X^T X overflows (interaction values too large); "
            "scale the values or use implicit=True"
        )
    eps = float(torch.finfo(dtype).eps)
    if not float(l2) > 1e3 * eps * trace:
        raise MaasrecError(
            f"EASE: l2={l2!r} is too small for this data (trace of X^T X {trace:.3g}): "
            f"X^T X + l2 I is numerically singular in {str(dtype).split('.')[-1]}; "
            f"use l2 > {1e3 * eps * trace:.3g}"
        )
    G = _gram(X, dtype)
    if side is not None:
        S = torch.from_numpy(np.ascontiguousarray(side, dtype=np.float64)).to(dtype)
        G.addmm_(S, S.mT)
    G.diagonal().add_(float(l2))  # finite: |G_ij| <= sqrt(G_ii G_jj) <= trace + l2
    # G is symmetric, so its row-major buffer is also G in the column-major layout
    # that LAPACK wants: factor and invert in place, no copy
    L = G.mT
    failed = _cholesky_in_place(L)
    # every pivot L_ii^2 is a Schur complement of X^T X + l2 I, so >= l2 in exact
    # arithmetic: a smaller one means rounding swamped l2 (numerically singular)
    pivot = float(L.diagonal().min()) ** 2 if failed is None else 0.0
    if failed is not None or not pivot >= 0.5 * float(l2):
        where = f"Cholesky failed at row {failed}" if failed else f"pivot {pivot:.3g}"
        raise MaasrecError(
            f"EASE: X^T X + l2 I is not numerically positive definite with l2={l2!r} "
            f"({where} of {n} items); use a larger l2"
        )
    return _inverse_weights(L, l2, inverse)


#: Columns of one diagonal block of the blocked Cholesky factorisation (its trailing
#: update is one matrix product per block row: a deadline is checked between them).
CHOLESKY_BLOCK = 512


def _cholesky_in_place(L: torch.Tensor) -> int | None:
    """Lower Cholesky factor of the SPD matrix ``L`` written into its lower triangle.

    Right-looking and blocked (:data:`CHOLESKY_BLOCK`): each diagonal block is factored
    by LAPACK, the panel below it by a triangular solve, and the trailing lower triangle
    updated a block row at a time (a product of the panel's rows), so that
    :func:`~maasrec.models._interrupt.check_deadline` runs every few seconds even at
    20,000 items; one LAPACK ``potrf`` over the whole matrix was not faster (within a
    few % at 3,000-6,000 items, one thread). The upper triangle is left as it was.

    Returns None, or the row (from 1) at which the matrix was found not positive definite.
    """
    n = L.shape[0]
    b = CHOLESKY_BLOCK
    for k in range(0, n, b):
        e = min(n, k + b)
        check_deadline("EASE Cholesky factorisation")
        c, info = torch.linalg.cholesky_ex(L[k:e, k:e], upper=False)
        if int(info) != 0:
            return k + int(info)
        L[k:e, k:e].copy_(c)
        if e == n:
            break
        panel = L[e:, k:e]  # A21 := A21 L11^-T
        torch.linalg.solve_triangular(c.mT, panel, upper=True, left=False, out=panel)
        for j0 in range(e, n, b):  # lower triangle of A22 -= A21 A21^T, a block row at a time
            j1 = min(n, j0 + b)
            L[j0:j1, e:j1].addmm_(panel[j0 - e:j1 - e], panel[:j1 - e].mT, alpha=-1.0)
            check_deadline("EASE Cholesky factorisation")
    return None


def _inverse_weights(L: torch.Tensor, l2: float, inverse: np.ndarray | None) -> np.ndarray:
    """``B`` from the Cholesky factor ``L`` of ``P^-1``, a block of columns at a time."""
    # P = G^-1 a block of columns at a time, by two triangular solves against the
    # identity's columns (L Y = E, then L^T P = Y), each column block scaled into B:
    # the only other n x n array is B. (torch.cholesky_inverse, LAPACK potri, is in
    # place too but was 4x slower with torch's MKL on an AMD EPYC: 19 s vs 4.7 s at 5,000.)
    # Both solves take the whole factor: a trailing block L[start:, start:] (to skip the
    # rows above the block, zero in E and Y) is not contiguous, and torch copied it on
    # every call, up to the size of the Gram matrix (5.4 GiB peak at 16,384 items).
    n = L.shape[0]
    dtype = L.dtype
    B = np.empty((n, n), dtype=np.float32)
    step = min(n, max(256, GRAM_BLOCK_CELLS // max(n, 1)))
    for start in range(0, n, step):
        check_deadline("EASE inverse")
        stop = min(n, start + step)
        cols = torch.arange(stop - start)
        Y = torch.zeros((n, stop - start), dtype=dtype)
        Y[start + cols, cols] = 1.0
        torch.linalg.solve_triangular(L, Y, upper=False, out=Y)
        check_deadline("EASE inverse")
        torch.linalg.solve_triangular(L.mT, Y, upper=True, out=Y)
        d = Y[start + cols, cols].clone()
        if not bool((torch.isfinite(d) & (d > 0)).all()):
            raise MaasrecError(
                f"EASE: the inverse of X^T X + l2 I is not finite with l2={l2!r}; "
                "use a larger l2"
            )
        if inverse is not None:
            inverse[:, start:stop] = Y.numpy()
        Y /= -d
        Y[start + cols, cols] = 0.0
        B[:, start:stop] = Y.numpy()
    return B


class EASE(Recommender):
    """EASE item-item model with a closed-form solution.

    Learns an item-item weight matrix ``B`` with zero diagonal minimising
    ``||X - X B||^2 + l2 ||B||^2``; a user's scores are ``x_u B``. Strong on
    implicit-feedback top-n benchmarks, deterministic, no iterations.

    ``partial_fit`` folds new users and events in exactly: the change of the Gram matrix
    ``X^T X`` (two rank-one terms per touched user: the old row out, the new row in) is
    applied to its inverse by the Woodbury identity in float64, and ``B_`` is recomputed
    from it, so the model equals a refit on all the data up to rounding (about 1e-12 of
    the inverse; in any batching). A call costs ``O(n_items^2 * rank)`` with ``rank``
    twice the touched users (a refit inverts from scratch when that is cheaper); the
    float64 inverse is kept in memory beside ``B_`` (not saved: the first ``partial_fit``
    after ``load``, or after a fit of more than 5,000 items, computes it, about the
    cost of a fit). New items are refused (refit).

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
    Time is O(n_items^3) and memory O(n_items^2): the dense float64 Gram matrix
    ``X^T X + l2 I`` is built a block of rows at a time and factored and inverted in
    place by torch's LAPACK (Cholesky, then triangular solves), and ``B_`` is float32,
    so the peak is about 12 bytes per item pair besides the data: 160 MB for 3,700 items,
    3.2 GB for 16,384, 4.8 GB for 20,000. For larger catalogues use ALS, ItemKNN or
    PureSVD. (scipy's and numpy's Cholesky, on OpenBLAS, crash with SIGSEGV on some CPUs
    from about 16,000 items when OpenBLAS runs several threads; torch's does not.)

    References
    ----------
    H. Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst): the one regulariser, over
    #: four decades (small dense data want ~100, large sparse ones thousands).
    search_space: ClassVar[dict] = {"l2": ("float", 10.0, 1e5, "log")}

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
        P = np.empty((n, n)) if n <= KEEP_INVERSE_MAX_ITEMS else None
        self.B_ = _ease_weights(X, self.l2, inverse=P)
        self._inverse = None if P is None else (self.B_, P)  # for partial_fit (not saved)
        logger.info("EASE: fitted in %.2fs", time.perf_counter() - t0)

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int,
                     previous_seen: sp.csr_matrix) -> None:
        # online update (Recommender.partial_fit): the exact refit by a low-rank update of
        # the inverse Gram matrix (maasrec.models._online.ease_fold_in)
        from ._online import ease_fold_in

        ease_fold_in(self, user_idx, previous_seen)

    def _ease_side(self) -> np.ndarray | None:
        """Side vectors whose Gram matrix joins ``X^T X`` (None; :class:`TextEASE`)."""
        return None

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._matrix(history) @ self.B_, dtype=np.float32)

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self._score_history(self.seen_[user_idx])

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        return self.B_[item_idx]

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
        # scores are x_u B: history item j contributes x_uj * B[j, item] (exact)
        x = self._matrix(row)
        w = x.data.astype(np.float64) * self.B_[x.indices, item_idx]
        return ExplainTerms(float(w.sum()), x.indices, w, "exact", 0.0,
                            "x_uj * B[j, item]: the EASE weight of each history item")

    def _check_loaded(self) -> None:
        n = self.n_items_
        self._loaded_float("B_", (n, n))

