"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with a vectorised conjugate-gradient solver."""

from __future__ import annotations

import logging
import warnings
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..device import resolve_device
from ..exceptions import DataError
from ..explain import ExplainTerms
from ..training import run_epochs, threads_for, torch_generator
from ..training.history import EpochLog, deprecated_log_alias
from ._interrupt import check_deadline

__all__ = ["ALS"]

logger = logging.getLogger(__name__)


def _csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


class _Side:
    """One side of the factorisation: the confidence matrix with rows = the solved factors.

    Holds the CSR structure once (int32 indices when they fit: no index conversion per
    product) and two CSR tensors sharing it, whose value buffers are overwritten in place:
    ``S`` receives the sampled dot products (SDDMM) and ``W`` the weights of the sparse
    product ``W @ Y`` (SpMM).
    """

    def __init__(self, m: sp.csr_matrix, conf: np.ndarray, factors: int, device: torch.device):
        idx = torch.int32 if m.nnz < 2**31 - 1 and max(m.shape) < 2**31 - 1 else torch.int64
        self.shape = (int(m.shape[0]), int(m.shape[1]))
        self.crow = torch.from_numpy(m.indptr.astype(np.int64)).to(device=device, dtype=idx)
        self.col = torch.from_numpy(m.indices.astype(np.int64)).to(device=device, dtype=idx)
        self.c = torch.from_numpy(np.asarray(conf, dtype=np.float32)).to(device)
        self.cm1 = self.c - 1.0
        self.S = _csr_tensor(self.crow, self.col, torch.zeros_like(self.c), self.shape)
        self.W = _csr_tensor(self.crow, self.col, torch.zeros_like(self.c), self.shape)
        self.w = self.W.values()

    def sddmm(self, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``<A[u], Y[i]>`` for every stored ``(u, i)``, in CSR value order."""
        torch.sparse.sampled_addmm(self.S, A, Y.T, beta=0.0, out=self.S)
        return self.S.values()

    def spmm(self, Y: torch.Tensor) -> torch.Tensor:
        """``W @ Y`` with the current weights ``self.w``."""
        return torch.mm(self.W, Y)


class _TransposedSide:
    """The item side on the CPU, kept in the user-major order of the users' ``_Side``.

    Solving the items needs ``<y_i, x_u>`` on the pattern and ``Wᵀ X`` (items x factors).
    In item-major order (a CSR of ``Rᵀ``) both gather user rows of ``X`` at random, and
    once ``X`` outgrows the CPU caches every stored entry costs a cache miss: per stored
    entry the product took 105 ns at 1 million interactions (20,000 users) and 296 ns at
    10 million (200,000 users). Here both walk the user rows in order (``X`` streamed once)
    and gather/scatter the item rows, which stay in cache: the SDDMM is the users' own
    kernel with the arguments swapped, and ``Wᵀ X`` is scipy's CSC product (the same
    summation order as the CSR product on ``Rᵀ``: identical results). Measured on one
    thread at 10 million interactions: 0.21 s instead of 1.38 s for the product, 0.14 s
    instead of 0.90 s for the SDDMM.
    """

    def __init__(self, users: _Side):
        self.shape = (users.shape[1], users.shape[0])
        self.c, self.cm1 = users.c, users.cm1
        self.S = _csr_tensor(users.crow, users.col, torch.zeros_like(self.c), users.shape)
        self.w = torch.zeros_like(self.c)
        # shares the weight buffer: writes to self.w are what the scipy product sees
        self._wt = sp.csc_matrix((self.w.numpy(), users.col.numpy(), users.crow.numpy()),
                                 shape=self.shape, copy=False)
        if not np.shares_memory(self._wt.data, self.w.numpy()):  # pragma: no cover
            raise RuntimeError("scipy copied the ALS weight buffer")

    def sddmm(self, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``<A[i], Y[u]>`` for every stored ``(u, i)``, in user-major order."""
        torch.sparse.sampled_addmm(self.S, Y, A.T, beta=0.0, out=self.S)
        return self.S.values()

    def spmm(self, Y: torch.Tensor) -> torch.Tensor:
        """``Wᵀ @ Y`` (items x factors) with the current weights ``self.w``."""
        return torch.from_numpy(self._wt @ Y.numpy())


def _gram(Y: torch.Tensor, reg: float) -> torch.Tensor:
    G = Y.T @ Y
    G.diagonal().add_(reg)
    return G


def _cg_solve(side: _Side, X: torch.Tensor, Y: torch.Tensor, reg: float, steps: int,
              tol: float = 0.0) -> None:
    """Conjugate-gradient steps on every row of ``X`` at once (in place).

    Row ``u`` of ``X`` approaches the solution of
    ``(YᵀY + reg I + Σ_i (c_ui - 1) y_i y_iᵀ) x_u = Σ_i c_ui y_i``
    (sums over the stored entries of row ``u``), starting from its current value.
    Each step is one SDDMM (``(c - 1) <p_u, y_i>`` on the sparsity pattern) and one
    SpMM (those weights times ``Y``), plus dense ``[n, f] x [f, f]`` products.

    Parameters
    ----------
    side : _Side
    X : torch.Tensor, shape (n_rows, f)
        Warm start, overwritten with the result.
    Y : torch.Tensor, shape (n_cols, f)
    reg : float
    steps : int
        Maximum number of CG steps.
    tol : float, default 0.0
        Stop early when every row's squared residual is below ``tol`` times its
        initial squared residual (0: always run ``steps``).
    """
    G = _gram(Y, reg)
    # residual r = b - A x = Σ_i (c - (c - 1) <x, y_i>) y_i - (YᵀY + reg I) x
    s = side.sddmm(X, Y)
    torch.addcmul(side.c, side.cm1, s, value=-1.0, out=side.w)
    r = side.spmm(Y)
    r.addmm_(X, G, alpha=-1.0)
    p = r.clone()
    rs = torch.linalg.vecdot(r, r)
    stop = rs * tol
    zero = torch.zeros((), device=X.device, dtype=X.dtype)
    for _ in range(steps):
        s = side.sddmm(p, Y)
        torch.mul(side.cm1, s, out=side.w)
        Ap = side.spmm(Y)
        Ap.addmm_(p, G)
        pAp = torch.linalg.vecdot(p, Ap)
        alpha = torch.where(pAp > 0, rs / pAp, zero)
        X.addcmul_(alpha[:, None], p)
        r.addcmul_(alpha[:, None], Ap, value=-1.0)
        rs_new = torch.linalg.vecdot(r, r)
        if tol > 0 and bool((rs_new <= stop).all()):
            break
        beta = torch.where(rs > 0, rs_new / rs, zero)
        p = torch.addcmul(r, beta[:, None], p)
        rs = rs_new


def _als_loss(side: _Side, X: torch.Tensor, Y: torch.Tensor, reg: float) -> float:
    """The weighted least-squares objective, normalised by the number of cells.

    ``Σ_{u,i} c_ui (p_ui - x_uᵀ y_i)² + reg (‖X‖² + ‖Y‖²)`` over *all* cells
    (``p = 1, c`` as stored on the pattern, ``p = 0, c = 1`` elsewhere), computed without
    the dense matrix: ``tr(XᵀX YᵀY) + Σ_stored [c (1 - s)² - s²]``.
    """
    s = side.sddmm(X, Y).double()
    c = side.c.double()
    sparse_part = (c * (1.0 - s) ** 2 - s**2).sum()
    dense_part = ((X.T @ X).double() * (Y.T @ Y).double()).sum()
    penalty = reg * (X.double().square().sum() + Y.double().square().sum())
    total = sparse_part + dense_part + penalty
    return float(total) / (side.shape[0] * side.shape[1])


class FactorScoring:
    """Scoring hooks of a model with ``user_factors_`` and ``item_factors_``.

    Shared by :class:`ALS` and :class:`maasrec.privacy.PrivateALS`: scores are inner
    products of the factors, a history is scored through the subclass's
    ``recalculate_users``, similar items by cosine, and the factors are the vectors for
    approximate retrieval. Listed before :class:`~maasrec.base.Recommender` in the bases.
    """

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _check_loaded(self) -> None:
        Y = self._loaded_float("item_factors_", (self.n_items_, None))
        self._loaded_float("user_factors_", (self.n_users_, Y.shape[1]))

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self.recalculate_users(history) @ self.item_factors_.T

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        return _cosine_rows(self.item_factors_, item_idx)

    # -- vectors for approximate retrieval (scores are inner products) -------------
    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx]

    def _history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        return self.recalculate_users(history)


class ALS(FactorScoring, Recommender):
    """Implicit-feedback matrix factorisation by alternating least squares.

    Minimises ``Σ_{u,i} c_ui (p_ui - x_uᵀ y_i)² + regularization (‖X‖² + ‖Y‖²)`` over
    all user-item cells, with preference ``p_ui = 1`` and confidence
    ``c_ui = 1 + alpha · r_ui`` on observed pairs and ``p = 0, c = 1`` elsewhere
    (Hu, Koren & Volinsky 2008). Each half-iteration solves every user (item) against
    the fixed item (user) factors with a few conjugate-gradient steps warm-started
    from the previous factors, as the ``implicit`` library does, but vectorised over
    all users at once with torch sparse kernels (SDDMM + SpMM per step), so the same
    code runs multi-threaded on the CPU and on CUDA.

    ``partial_fit`` runs one ALS sweep restricted to what changed: every touched or new
    user's factors solved exactly (least squares against the item factors), then the
    factors of every item that got an event solved exactly against all users' factors,
    then those users again. It starts each time from the factors the model had at its
    first ``partial_fit`` (after ``fit`` or ``load``) over everything folded in since, so
    batching never changes the result and a call costs at most about one full sweep.
    Other users' and items' factors are kept; new items are refused (refit).

    Parameters
    ----------
    factors : int, default 64
        Dimension of the user and item vectors.
    regularization : float, default 30.0
        L2 penalty ``λ`` (>= 0) on the factors, not scaled by counts (implicit's
        ``regularization`` is the same quantity; its default 0.01 is far too small for
        top-n quality on MovieLens-sized data, see Notes).
    alpha : float, default 2.0
        Confidence slope (> 0): ``c = 1 + alpha · r``. **Mapping to implicit**: the
        ``implicit`` library uses ``c = alpha_implicit · r`` with ``p = 1``; on binary
        data ``alpha_implicit = 1 + alpha``.
    iterations : int, default 15
        Alternating sweeps (users then items).
    implicit : bool, default True
        Use ``r = 1`` for every interaction with a value > 0 (ignore ratings/counts;
        values <= 0 are left out, see :meth:`~maasrec.base.Recommender.fit`). With
        False, ``r`` is the interaction value (must be >= 0).
    confidence : {"linear", "log"}, default "linear"
        ``"linear"``: ``c = 1 + alpha · r``; ``"log"``: ``c = 1 + alpha · log(1 + r)``
        (Hu et al.'s alternative for heavy-tailed counts; only differs from a rescaled
        ``alpha`` when ``implicit=False``).
    cg_steps : int, default 3
        Conjugate-gradient steps per half-iteration (3 is implicit's default; the warm
        start makes more rarely worth it).
    random_state : int, numpy.random.Generator or None, default None
        Seed of the initial factors (``N(0, 0.01²)``, drawn on the CPU, so CPU and
        CUDA start identically).
    device : str or torch.device, optional
        Where to train (see :func:`maasrec.resolve_device`): CUDA when available.
    verbose : bool, default False
        A tqdm progress bar over the iterations (:func:`maasrec.training.progress`);
        nothing is printed, the timings go to ``logging`` either way.

    Attributes
    ----------
    user_factors_ : np.ndarray of float32, shape (n_users, factors)
    item_factors_ : np.ndarray of float32, shape (n_items, factors)
    training_log_ : dict
        The fitted log, :meth:`EpochLog.to_dict() <maasrec.training.EpochLog.to_dict>`:
        per-iteration ``losses`` (None unless ``logging`` is at DEBUG) and ``seconds``,
        ``steps`` the iterations run. ``_epoch_log`` is its deprecated alias (an
        :class:`~maasrec.training.EpochLog`; reading it warns).

    Notes
    -----
    **Defaults.** Chosen on the *validation* part of per-user random 8:1:1 splits of
    MovieLens 1M, MovieLens 100K and latest-small (``benchmarks/bench_classical.py
    tune``, results in ``benchmarks/results/classical_tune.json``), not on one data
    set: ``regularization=30, alpha=2`` was within 0.003 NDCG@10 of the best of a
    ``regularization`` x ``alpha`` grid (2-100 x 0.3-10) on each of the three (1M:
    0.2396 vs 0.2425 at (50, 2); 100K: 0.2604 vs 0.2608 at (20, 1); latest-small:
    0.2190 vs 0.2203 at (30, 3)); ``regularization`` 2-10 lost 0.01-0.04. With it,
    ``factors=128`` did not help and 30 iterations added at most 0.002.

    **Cold users.** ``recommend(history=...)`` solves the users' factors against the
    fitted item factors (CG run to convergence from zero: the exact least-squares
    solution, implicit's ``recalculate_user``), without refitting.

    **Threads.** Training uses ``torch.get_num_threads()`` threads (many short
    OpenMP regions per iteration), except the item side's sparse product on the CPU,
    which is scipy's single-threaded CSC product in user-major order (at 10 million
    interactions 6.5x faster on one thread than torch's item-major product, whose random
    reads of user rows miss the caches); scoring uses BLAS. On a machine whose cores are
    busy with other work, set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python:
    with the default spin-waiting, two torch threads on two busy cores ran 5x slower
    than one in ``benchmarks/bench_classical.py``.

    References
    ----------
    Y. Hu, Y. Koren, C. Volinsky. Collaborative Filtering for Implicit Feedback
    Datasets. ICDM 2008.
    G. Takács, I. Pilászy, D. Tikk. Applications of the conjugate gradient method for
    implicit feedback collaborative filtering. RecSys 2011.
    """

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "factors": ("int", 16, 256, "log"),
        "regularization": ("float", 0.1, 1000.0, "log"),
        "alpha": ("float", 0.1, 100.0, "log"),
        "iterations": ("int", 5, 30),
        "confidence": ("choice", ["linear", "log"]),
    }

    def __init__(self, factors: int = 64, regularization: float = 30.0, alpha: float = 2.0,
                 iterations: int = 15, implicit: bool = True, confidence: str = "linear",
                 cg_steps: int = 3, random_state=None, device=None, verbose: bool = False):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.implicit = implicit
        self.confidence = confidence
        self.cg_steps = cg_steps
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _validate_params(self) -> None:
        check_int("factors", self.factors, low=1)
        check_number("regularization", self.regularization, low=0)
        check_number("alpha", self.alpha, low=0, low_inclusive=False)
        check_int("iterations", self.iterations, low=1)
        check_int("cg_steps", self.cg_steps, low=1)
        check_choice("confidence", self.confidence, ("linear", "log"))

    # -- confidence ----------------------------------------------------------------
    def _weights(self, m: sp.csr_matrix, fitting: bool = True) -> sp.csr_matrix:
        """The matrix of ``r`` values (binary when ``implicit``), checked."""
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        m.sort_indices()
        if self.implicit:
            m.data[:] = 1.0
            return m
        if m.nnz and (m.data < 0).any():
            bad = float(m.data[m.data < 0][0])
            raise DataError(
                f"ALS with implicit=False needs non-negative interaction values (confidence "
                f"1 + alpha * value), got {bad!r}; use implicit=True or shift the values"
            )
        m.eliminate_zeros()  # a zero value is no interaction
        if fitting and m.nnz == 0:
            raise DataError(
                "every interaction value is zero, so ALS has no positive signal; use "
                "implicit=True to treat every interaction as a positive"
            )
        return m

    def _conf(self, r: np.ndarray) -> np.ndarray:
        if self.confidence == "log":
            return 1.0 + self.alpha * np.log1p(r)
        return 1.0 + self.alpha * r

    # -- fitting ---------------------------------------------------------------
    def _fit(self, data: Interactions, **_) -> None:
        device = resolve_device(self.device)
        R = self._weights(data.to_csr())
        R.sort_indices()
        f, reg = int(self.factors), float(self.regularization)
        users = _Side(R, self._conf(R.data), f, device)
        if device.type == "cpu":  # cache-friendly user-major item side (see _TransposedSide)
            items = _TransposedSide(users)
        else:
            Rt = R.T.tocsr()
            Rt.sort_indices()
            items = _Side(Rt, self._conf(Rt.data), f, device)
        g = torch_generator(self.random_state)
        X = (torch.randn(R.shape[0], f, generator=g) * 0.01).to(device)
        Y = (torch.randn(R.shape[1], f, generator=g) * 0.01).to(device)
        steps = int(self.cg_steps)
        debug = logger.isEnabledFor(logging.DEBUG)

        def iteration(_: int) -> float | None:
            check_deadline("ALS iterations")  # maasrec.tune's budget; nothing otherwise
            _cg_solve(users, X, Y, reg, steps)
            check_deadline("ALS iterations")
            _cg_solve(items, Y, X, reg, steps)
            return _als_loss(users, X, Y, reg) if debug else None

        logger.info("ALS: %d users x %d items, %d interactions, factors=%d, device=%s",
                    R.shape[0], R.shape[1], R.nnz, f, device)
        with threads_for(R.nnz * f, device):
            log = run_epochs(iteration, int(self.iterations), verbose=self.verbose, desc="ALS",
                             name="ALS", unit="iteration")
        self.user_factors_ = X.cpu().numpy()
        self.item_factors_ = Y.cpu().numpy()
        self.training_log_ = log.to_dict()  # timings and (at DEBUG) losses

    # -- scoring ---------------------------------------------------------------
    _epoch_log = deprecated_log_alias("_epoch_log", EpochLog.from_dict)

    def recalculate_users(self, history: sp.csr_matrix) -> np.ndarray:
        """Solve user factors from interactions, against the fitted item factors.

        The exact least-squares solution for each row (CG to convergence from zero),
        as a fitted user's factors would be after one more user half-iteration. This
        is what ``recommend(history=...)`` uses for cold users.

        Parameters
        ----------
        history : scipy.sparse matrix, shape (n_users_given, n_items)
            Interactions by item index (values are used as ``r`` when
            ``implicit=False``).

        Returns
        -------
        np.ndarray of float32, shape (n_users_given, factors)
        """
        self._check_fitted()
        H = sp.csr_matrix(history)
        if H.ndim != 2 or H.shape[1] != self.n_items_:
            raise DataError(f"history has shape {H.shape}, expected (n_users, {self.n_items_})")
        H = self._weights(H, fitting=False)
        Y = torch.from_numpy(np.ascontiguousarray(self.item_factors_))
        X = torch.zeros(H.shape[0], Y.shape[1])
        if H.nnz:
            side = _Side(H, self._conf(H.data), Y.shape[1], torch.device("cpu"))
            with threads_for(H.nnz * Y.shape[1]):
                _cg_solve(side, X, Y, float(self.regularization), steps=2 * Y.shape[1] + 10,
                          tol=1e-10)
        return X.numpy()

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int,
                     previous_seen: sp.csr_matrix, event_items: np.ndarray) -> None:
        # online update (Recommender.partial_fit): exact user solves, the items that got
        # events, the users again (maasrec.models._online.als_fold_in)
        from ._online import als_fold_in

        als_fold_in(self, user_idx, event_items, previous_seen)

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
        """implicit's ``ALS.explain`` decomposition, exact for the re-solved user factor.

        The exact least-squares user factor is ``x = W⁻¹ Σ_j c_j y_j`` with ``W = YᵀY +
        λI + Σ_j (c_j - 1) y_j y_jᵀ`` (sums over the history), so the item's score
        ``y_itemᵀ x`` is the sum over history items of ``c_j · y_itemᵀ W⁻¹ y_j``: a
        confidence-weighted similarity in the user's own metric ``W⁻¹``. For a known user
        the score is that of the re-solved factor (:meth:`recalculate_users`), which
        differs from ``user_factors_`` by what training's few CG steps left.
        """
        r = self._weights(row, fitting=False)
        Y = self.item_factors_.astype(np.float64)
        Yh, c = Y[r.indices], self._conf(r.data).astype(np.float64)
        W = Y.T @ Y + (Yh.T * (c - 1.0)) @ Yh
        W[np.diag_indices_from(W)] += float(self.regularization)
        z = np.linalg.solve(W, Y[item_idx])  # W⁻¹ y_item (W is symmetric)
        w = c * (Yh @ z)
        return ExplainTerms(float(w.sum()), r.indices, w, "exact", 0.0,
                            "c_j * y_item' W^-1 y_j: implicit's ALS explain terms (the "
                            "user's factor solved from the history)")


def _cosine_rows(V: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``V[rows]`` to every row of ``V``."""
    norms = np.linalg.norm(V, axis=1)
    norms[norms == 0] = 1.0
    return (V[rows] / norms[rows, None]) @ (V / norms[:, None]).T
