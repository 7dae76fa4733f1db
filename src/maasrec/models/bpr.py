"""BPR matrix factorisation (Rendle et al. 2009), mini-batch in torch with analytic gradients."""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..data.interactions import Interactions
from ..device import resolve_device
from ..explain import ExplainTerms
from ..training import (
    NonFiniteLossError,
    UniformNegativeSampler,
    minibatches,
    run_epochs,
    threads_for,
    torch_generator,
)
from ..training.history import EpochLog, deprecated_log_alias
from ._interrupt import check_deadline
from .als import _cosine_rows

__all__ = ["BPRMF"]

logger = logging.getLogger(__name__)


class _BPRStep:
    """One mini-batch of BPR: gradients written by hand (no autograd graph).

    For a triple ``(u, i, j)`` with ``x = p_uᵀ(q_i - q_j) + b_i - b_j`` and loss
    ``-log σ(x) + reg/2 (‖p_u‖² + ‖q_i‖² + ‖q_j‖²)``, with ``z = σ(-x)``:
    ``∂/∂p_u = -z (q_i - q_j) + reg p_u``, ``∂/∂q_i = -z p_u + reg q_i``,
    ``∂/∂q_j = z p_u + reg q_j``, ``∂/∂b_i = -z = -∂/∂b_j``.
    Rows are gathered with ``index_select`` and updates scattered with ``index_add_``
    (repeated rows in a batch add up, as in Hogwild SGD): an epoch on MovieLens 1M took
    half the time of the same step through autograd (fused Adam in both, one thread).
    """

    def __init__(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor | None, lr: float,
                 reg: float, optimizer: str):
        self.P, self.Q, self.b = P, Q, b
        self.lr, self.reg = lr, reg
        self.adam = None  # dense Adam
        self.sgd = optimizer == "sgd"
        self.sparse = optimizer == "sparse_adam"
        if self.sparse:
            # lazy Adam: moments and updates only on the rows a batch touches, so a step
            # costs O(batch) rather than O(users + items)
            self.lazy = {id(t): _LazyAdamState(t) for t in (P, Q, b) if t is not None}
            self.t = 0
            self.user_rows = _DistinctRows(P)
            self.item_rows = _DistinctRows(Q)  # shared by Q and b
        elif optimizer == "adam":
            self.adam = _DenseAdam([t for t in (P, Q, b) if t is not None], lr)
        elif optimizer != "sgd":
            raise ValueError(f"optimizer must be 'adam', 'sparse_adam' or 'sgd', got {optimizer!r}")

    def __call__(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        P, Q, b, reg = self.P, self.Q, self.b, self.reg
        pu = torch.index_select(P, 0, u)
        qi = torch.index_select(Q, 0, i)
        qj = torch.index_select(Q, 0, j)
        d = qi - qj
        x = torch.linalg.vecdot(pu, d)
        if b is not None:
            x += torch.index_select(b, 0, i) - torch.index_select(b, 0, j)
        loss = torch.nn.functional.logsigmoid(x).sum().neg()
        # SGD applies the negative gradient times lr; Adam gets the batch-mean gradient
        scale = self.lr if self.sgd else -1.0 / len(u)
        z = torch.sigmoid(x.neg_()).mul_(scale)[:, None]
        step_reg = -reg * scale
        du = d.mul_(z).add_(pu, alpha=step_reg)
        di = torch.mul(pu, z)
        dj = di.neg().add_(qj, alpha=step_reg)
        di.add_(qi, alpha=step_reg)
        if self.sparse:
            self._sparse_step(u, i, j, du, di, dj, z)
            return loss
        if self.adam is None:
            targets = (P, Q, Q, b)
        else:
            self.adam.zero_grad()
            targets = (P.grad, Q.grad, Q.grad, None if b is None else b.grad)
        targets[0].index_add_(0, u, du)
        targets[1].index_add_(0, i, di)
        targets[2].index_add_(0, j, dj)
        if b is not None:
            zz = z.squeeze(1)
            targets[3].index_add_(0, i, zz)
            targets[3].index_add_(0, j, zz.neg())
        if self.adam is not None:
            self.adam.step()
        return loss

    def _sparse_step(self, u, i, j, du, di, dj, z) -> None:
        self.t += 1
        n = len(u)
        rows, inv = self.user_rows(u)
        self.lazy[id(self.P)].step(rows, ((inv, du),), self.lr, self.t)
        rows, inv = self.item_rows(torch.cat([i, j]))
        inv_i, inv_j = inv[:n], inv[n:]
        self.lazy[id(self.Q)].step(rows, ((inv_i, di), (inv_j, dj)), self.lr, self.t)
        if self.b is not None:
            zz = z.squeeze(1)
            self.lazy[id(self.b)].step(rows, ((inv_i, zz), (inv_j, zz.neg())), self.lr, self.t)


class _DenseAdam:
    """Adam over whole tensors whose ``.grad`` the BPR step fills: torch's fused kernel.

    ``torch.optim.Adam(fused=True)`` runs one fused kernel per step, but its ``step()``
    wrapper (hooks, state look-ups, flags) cost more than the kernel on small tables:
    226 us against 133 us per step for MovieLens 100K's tables called directly (one
    thread). When ``torch._fused_adam_`` is there (the op that ``fused=True`` calls), the
    same op is called directly, with the same arguments, so the parameters are
    bit-identical to ``torch.optim.Adam(fused=True)``; otherwise (older torch, devices
    without the fused kernel) the optimizer itself runs.
    """

    def __init__(self, params: list[torch.Tensor], lr: float):
        self.params = params
        for t in params:
            t.grad = torch.zeros_like(t)
        self.grads = [t.grad for t in params]
        self.lr = lr
        self.optim = None
        self.direct = callable(getattr(torch, "_fused_adam_", None))
        if self.direct:
            self.exp_avg = [torch.zeros_like(t) for t in params]
            self.exp_avg_sq = [torch.zeros_like(t) for t in params]
            # torch.optim keeps the step count as a float32 tensor per parameter
            self.steps = [torch.zeros((), dtype=torch.float32, device=t.device)
                          for t in params]
            try:  # a trial step on one-row copies: is the kernel there for this device?
                trial = [[torch.zeros_like(t[:1]) for t in params] for _ in range(4)]
                self._fused(*trial, [torch.zeros((), dtype=torch.float32, device=t.device)
                                     for t in params])
            except (RuntimeError, TypeError, NotImplementedError):
                self.direct = False
        if not self.direct:
            try:  # one fused kernel: ~10x faster than the default on the CPU
                self.optim = torch.optim.Adam(params, lr=lr, fused=True)
            except (RuntimeError, TypeError, ValueError):  # older torch
                self.optim = torch.optim.Adam(params, lr=lr, foreach=False)

    def _fused(self, params, grads, exp_avg, exp_avg_sq, steps) -> None:
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, lr=self.lr,
                           beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                           amsgrad=False, maximize=False)

    def zero_grad(self) -> None:
        for t in self.grads:
            t.zero_()

    def step(self) -> None:
        if self.direct:
            self._fused(self.params, self.grads, self.exp_avg, self.exp_avg_sq, self.steps)
        else:
            self.optim.step()


class _DistinctRows:
    """The distinct values of an index batch and each entry's position among them.

    ``torch.unique(idx, return_inverse=True)`` in O(batch): scatters into a table of
    ``n_rows`` positions (kept between calls) instead of sorting the whole batch. The
    distinct rows are sorted only for a table larger than ``SORT_BYTES`` (sorted row
    gathers and scatters run closer to streaming speed once the table is out of cache:
    8,192 rows of a 200,000 x 64 float table, index_copy_ 0.46 ms sorted vs 1.34 ms
    shuffled, for a 0.34 ms sort of the distinct rows); otherwise they come in batch
    order. Every per-row result of lazy Adam is the same in any row order (each row's
    gradient still sums its entries in batch order). At 10 million interactions
    (200,000 users, 5,000 items, batches of 8,192) the item side's ``unique`` took
    1.6 ms per step, this 0.2 ms.
    """

    SORT_BYTES = 4 << 20

    def __init__(self, param: torch.Tensor):
        self.pos = torch.zeros(len(param), dtype=torch.long, device=param.device)
        self.sort = param.numel() * param.element_size() > self.SORT_BYTES

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ar = torch.arange(len(idx), device=idx.device)
        self.pos[idx] = ar  # one entry per distinct value wins
        rows = idx[self.pos[idx] == ar]
        if self.sort:
            rows = rows.sort().values
        self.pos[rows] = torch.arange(len(rows), device=idx.device)
        return rows, self.pos[idx]


class _LazyAdamState:
    """Adam (beta 0.9/0.999, eps 1e-8) applied only to the rows that have a gradient.

    The same rule as :class:`torch.optim.SparseAdam` (moments of untouched rows stay as
    they are; bias correction by the global step count), written with row gathers and
    scatters: ``SparseAdam``'s ``coalesce``/``sparse_mask`` made an epoch on 10 million
    interactions as slow as dense Adam (48 s vs 48 s), these index operations cost
    O(rows in the batch).
    """

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, param: torch.Tensor):
        self.param = param
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)

    def step(self, rows: torch.Tensor, parts, lr: float, t: int) -> None:
        """Adam step on the distinct ``rows``; ``parts``: ``(inv, grad_rows)`` pairs whose
        gradients add up per row (``rows[inv[k]]`` gets ``grad_rows[k]``), in that order."""
        g = None
        for inv, grad_rows in parts:
            if g is None:
                g = grad_rows.new_zeros((len(rows), *grad_rows.shape[1:]))
            g.index_add_(0, inv, grad_rows)
        # the moments move by deltas added in place (m += (1 - beta1)(g - m), the form of
        # torch's lerp): index_add_ of distinct rows cost about 60% of index_copy_
        m = self.m.index_select(0, rows)
        v = self.v.index_select(0, rows)
        dm = torch.sub(g, m).mul_(1 - self.beta1)
        dv = torch.mul(g, g).sub_(v).mul_(1 - self.beta2)
        self.m.index_add_(0, rows, dm)
        self.v.index_add_(0, rows, dv)
        m.add_(dm)  # the same additions as in the tables: the same values
        v.add_(dv)
        step = lr / (1 - self.beta1**t)
        denom = v.div_(1 - self.beta2**t).sqrt_().add_(self.eps)
        self.param.index_add_(0, rows, m.div_(denom).mul_(-step))


#: Triples gathered (and their negatives drawn) at once, rounded down to whole batches.
SAMPLE_CHUNK = 1 << 18


def _auto_batch_size(n: int) -> int:
    """About 100 steps per epoch, within [256, 8192]."""
    return int(min(8192, max(256, n // 100)))


#: ``optimizer="auto"`` switches to lazy Adam once the user + item rows exceed both this
#: many rows per triple of a batch ...
LAZY_ROWS_PER_TRIPLE = 12
#: ... and this many rows (keeps the data sets the defaults were validated on dense Adam).
LAZY_MIN_ROWS = 50_000
OPTIMIZERS = ("auto", "adam", "sparse_adam", "sgd")


def choose_optimizer(optimizer: str, n_users: int, n_items: int, batch_size: int) -> str:
    """The optimizer BPRMF trains with: ``optimizer`` itself unless it is ``"auto"``.

    ``"auto"`` gives ``"sparse_adam"`` (lazy Adam) when
    ``n_users + n_items > max(LAZY_ROWS_PER_TRIPLE * batch_size, LAZY_MIN_ROWS)``
    (12 rows per triple, 50,000 rows), else ``"adam"`` (dense Adam).

    Parameters
    ----------
    optimizer : {"auto", "adam", "sparse_adam", "sgd"}
    n_users, n_items : int
        Rows of the user and item tables.
    batch_size : int
        Triples per mini-batch (after the automatic choice).

    Returns
    -------
    str
        ``"adam"``, ``"sparse_adam"`` or ``"sgd"``.

    Raises
    ------
    DataError
        ``optimizer`` is not one of the four names.

    Notes
    -----
    A dense Adam step reads and writes every user and item row (parameters, gradient,
    two moments), whatever the batch; a lazy Adam step gathers and scatters the rows
    the batch touches. An epoch has ``nnz / batch_size`` steps, so dense Adam does
    ``(n_users + n_items) / batch_size`` row updates per triple: linear epochs while
    that ratio is bounded, quadratic in the data once the batch size stops growing
    (8,192) and the users keep growing. Measured with 2-epoch fits on the scaling
    suite's synthetic data (5,000 items, 64 factors, one thread, batches of 8,192, one
    process, load about 3; since triples and negatives come a chunk of batches at a
    time): dense 1.5 s vs lazy 2.5-2.8 s at 1 million interactions (3.05 rows per
    triple), 7.3-7.7 s vs 9.2-9.3 s at 3 million (7.9), 60.7 s vs 39.2 s at 10 million
    (25); log-interpolated, the two cost the same near 12 rows per triple, hence 12
    (before that change, dense Adam's share of a step was smaller and they crossed near
    6.6: 8.8 s vs 8.1 s at 3 million). The floor
    of 50,000 rows keeps dense Adam, the optimizer the defaults were tuned and
    validated with, on data sets whose dense step is cheap anyway (a few ms; per-step
    timings of the two at Amazon Beauty's shape were within noise of each other):
    MovieLens 100K (2,625 rows), 1M (9,746) and Amazon Beauty (34,464; 22 rows per
    triple of its automatic batch of about 1,540) stay on dense Adam, so their results
    are those of ``optimizer="adam"`` (there lazy Adam also learned less: Amazon Beauty
    validation NDCG@10 0.0225 vs 0.0276 with the default learning rate). The rule was measured on the CPU and applies on
    any device; pass the optimizer explicitly to override it.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer != "auto":
        return optimizer
    rows = int(n_users) + int(n_items)
    limit = max(LAZY_ROWS_PER_TRIPLE * int(batch_size), LAZY_MIN_ROWS)
    return "sparse_adam" if rows > limit else "adam"


class BPRMF(Recommender):
    """Matrix factorisation trained with the Bayesian personalised ranking loss.

    For sampled triples (user ``u``, item ``i`` the user interacted with, item ``j``
    drawn uniformly from the catalogue) minimises ``-log σ(x_uᵀ(y_i - y_j) + b_i - b_j)``
    plus L2 regularisation on the rows involved, by mini-batch SGD (each positive
    interaction once per epoch, in random order). Interaction values are ignored: BPR
    learns from which items a user chose.

    ``partial_fit`` learns each new user's factor from their history (seeded Adam steps
    of the BPR loss, item factors and biases fixed: a fold-in), then runs ten seeded
    epochs of the BPR step over the new positives mixed with a replay
    sample of old ones, which moves the factors of the users and items in those triples
    and the item biases. It starts each time from the factors the model had at its first
    ``partial_fit`` (after ``fit`` or ``load``) over everything folded in since, so
    batching never changes the result; the cost of a call grows with the events folded
    in since then (refit from time to time). New items are refused (refit).

    Parameters
    ----------
    factors : int, default 64
        Dimension of the user and item vectors.
    learning_rate : float, default 0.003
        Step size (> 0). With ``optimizer="adam"`` or ``"sparse_adam"`` (so also with
        ``"auto"``), Adam's step on the batch-mean gradient; with ``"sgd"``, the per-triple step (updates of a batch are summed,
        as in implicit's Hogwild SGD, so it does not depend on ``batch_size``; values
        around 0.02).
    regularization : float, default 0.01
        L2 penalty (>= 0) applied to the rows of each triple.
    epochs : int, default 100
        Passes over the positive interactions.
    batch_size : int, optional
        Triples per mini-batch. Default: ``nnz // 100`` clipped to [256, 8192], so a
        small data set still gets about 100 optimiser steps per epoch while a large one
        runs with few, large (fast) batches.
    optimizer : {"auto", "adam", "sparse_adam", "sgd"}, default "auto"
        ``"auto"`` is dense Adam for small user bases and catalogues and lazy Adam
        (``"sparse_adam"``) when ``n_users + n_items`` exceeds both 12 times the batch
        size and 50,000 (see :func:`maasrec.models.bpr.choose_optimizer`; the choice is
        kept in ``optimizer_``), so an epoch costs time linear in the interactions.
        MovieLens 100K, 1M and Amazon Beauty get dense Adam, with which the defaults
        were tuned. ``"adam"`` steps dense Adam over all user and item rows every
        mini-batch: with the batch size capped at 8,192, an epoch then grows with
        interactions x (users + items) (dense part of an epoch on one thread: 0.75 s at
        1 million interactions, 31 s at 10 million with 200,000 users). ``"sparse_adam"``
        is lazy Adam (the rule of
        :class:`torch.optim.SparseAdam`): moments and updates only on the rows a batch
        touches, so a step costs O(batch) instead of O(users + items). Measured on one
        thread: the same MovieLens 1M validation NDCG@10 (0.2167 vs 0.2173); 2-epoch
        fits on synthetic data with 5,000 items: 1.7x slower than dense Adam at 1
        million interactions (2.5 s vs 1.5 s), 1.5x faster at 10 million with 200,000
        users (39.2 s vs 60.7 s). ``"sgd"``: plain SGD.
    item_bias : bool, default True
        Learn an item bias ``b_i`` (implicit's BPR has one too).
    exclude_positives : bool, default True
        Redraw a negative the user interacted with (vectorised rejection sampling), so
        every triple is a true (positive, unobserved) pair.
    init_std : float, default 0.01
        Standard deviation (> 0) of the normal initial user and item factors (the item
        biases start at 0). Small starts converge faster on sparse data (see Notes).
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial factors (``N(0, init_std²)``), the order of the triples and the
        negatives.
    device : str or torch.device, optional
        Where to train (see :func:`maasrec.resolve_device`).
    verbose : bool, default False
        A tqdm progress bar over the epochs (:func:`maasrec.training.progress`); nothing
        is printed, the timings go to ``logging`` either way.

    Attributes
    ----------
    user_factors_ : np.ndarray of float32, shape (n_users, factors)
    item_factors_ : np.ndarray of float32, shape (n_items, factors)
    item_bias_ : np.ndarray of float32, shape (n_items,)
        Zeros when ``item_bias=False``.
    optimizer_ : str
        The optimizer the model was trained with: ``optimizer``, or what ``"auto"``
        resolved to (``"adam"`` or ``"sparse_adam"``).
    training_log_ : dict
        The fitted log, :meth:`EpochLog.to_dict() <maasrec.training.EpochLog.to_dict>`:
        per-epoch ``losses`` (mean BPR loss) and ``seconds``,
        ``steps`` the epochs run. ``_epoch_log`` is its deprecated alias (an
        :class:`~maasrec.training.EpochLog`; reading it warns).

    Notes
    -----
    **Defaults.** Chosen on the validation part of per-user random 8:1:1 splits of
    MovieLens 1M, 100K and latest-small (``benchmarks/bench_classical.py tune``,
    results in ``benchmarks/results/classical_tune.json``): Adam with
    ``learning_rate=0.003, regularization=0.01`` for 100 epochs was the best or within
    0.007 NDCG@10 of the best on all three (SGD at 0.02 tied it on 100K and lost 0.007
    on 1M and 0.016 on latest-small); ``regularization`` 0.003 or 0.03 lost 0.02-0.06
    everywhere. Rejecting negatives the user interacted with gained 0.016 (1M), 0.019
    (100K) and 0.007 (latest-small) NDCG@10 for one bit-map lookup per draw, so it is
    on. ``init_std=0.01`` replaced 0.1 (validation NDCG@10 at 100 epochs, 0.01 vs 0.1:
    1M 0.2196 vs 0.2196, 100K 0.2395 vs 0.2380, latest-small 0.1770 vs 0.1788; the same
    at 25 and 50 epochs within 0.003): equal on these dense sets, while on the sparse
    Amazon Beauty (leave-last-out, ``benchmarks/experiments/standard.toml``) 25 epochs
    from 0.01 reached 0.0301 against 0.0291 after 100 epochs from 0.1.

    **Divergence.** A learning rate too large for the data makes the factors overflow;
    the first epoch whose mean loss is not finite raises
    :class:`~maasrec.training.NonFiniteLossError` and leaves the model unfitted (as the
    neural models do when they have no good checkpoint).

    **Cold users.** BPR has no closed-form user vector given the item vectors, so
    ``recommend(history=...)`` is not supported (as in implicit); use ALS, EASE,
    ItemKNN or PureSVD for users unseen at fit time.

    **Threads.** Each mini-batch runs a few dozen torch kernels with
    ``torch.get_num_threads()`` threads. On a machine whose cores are busy with other
    work, set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python: with OpenMP's default
    spin-waiting, two threads on two busy cores ran more than 10x slower per epoch than
    one in ``benchmarks/bench_classical.py``.

    **Determinism.** On the CPU, the same seed and thread count give the same model.
    On CUDA, ``index_add_`` accumulates with atomics, so the last bits may differ
    between runs.

    References
    ----------
    S. Rendle, C. Freudenthaler, Z. Gantner, L. Schmidt-Thieme. BPR: Bayesian
    Personalized Ranking from Implicit Feedback. UAI 2009.
    """

    supports_history = False

    #: What :func:`maasrec.tune.tune` searches (docs/tuning.rst).
    search_space: ClassVar[dict] = {
        "factors": ("int", 16, 256, "log"),
        "learning_rate": ("float", 1e-4, 0.05, "log"),
        "regularization": ("float", 1e-5, 0.1, "log"),
        "epochs": ("int", 10, 200, "log"),
    }

    def __init__(self, factors: int = 64, learning_rate: float = 0.003,
                 regularization: float = 0.01, epochs: int = 100, batch_size: int | None = None,
                 optimizer: str = "auto", item_bias: bool = True, exclude_positives: bool = True,
                 init_std: float = 0.01, random_state=None, device=None, verbose: bool = False):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.item_bias = item_bias
        self.exclude_positives = exclude_positives
        self.init_std = init_std
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _validate_params(self) -> None:
        check_int("factors", self.factors, low=1)
        check_number("learning_rate", self.learning_rate, low=0, low_inclusive=False)
        check_number("regularization", self.regularization, low=0)
        check_int("epochs", self.epochs, low=1)
        check_number("init_std", self.init_std, low=0, low_inclusive=False)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, low=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)

    def _fit(self, data: Interactions, **_) -> None:
        device = resolve_device(self.device)
        R = data.to_csr(copy=False)  # canonical (sorted), read only: no copy
        n_users, n_items = R.shape
        f = int(self.factors)
        g_init = torch_generator(self.random_state)
        P = (torch.randn(n_users, f, generator=g_init) * float(self.init_std)).to(device)
        Q = (torch.randn(n_items, f, generator=g_init) * float(self.init_std)).to(device)
        b = torch.zeros(n_items, device=device) if self.item_bias else None
        g = torch_generator(int(torch.randint(2**62, (1,), generator=g_init)), device=device)
        users = torch.from_numpy(np.repeat(np.arange(n_users, dtype=np.int64),
                                           np.diff(R.indptr))).to(device)
        pos = torch.from_numpy(R.indices.astype(np.int64)).to(device)
        sampler = UniformNegativeSampler(R, exclude_positives=bool(self.exclude_positives),
                                         device=device)
        n = len(users)
        bs = int(self.batch_size) if self.batch_size is not None else _auto_batch_size(n)
        optimizer = choose_optimizer(self.optimizer, n_users, n_items, bs)
        step = _BPRStep(P, Q, b, float(self.learning_rate), float(self.regularization),
                        optimizer)

        # triples are gathered and their negatives drawn a chunk of batches at a time:
        # one vectorised rejection pass per chunk instead of a few small kernels per
        # batch (the negatives do not depend on the parameters, so this is the same
        # sampling)
        chunk = bs * max(1, SAMPLE_CHUNK // bs)

        def epoch(e: int) -> float:
            total = torch.zeros((), device=device)
            with torch.no_grad():
                for sel in minibatches(n, chunk, generator=g, device=device):
                    check_deadline("BPRMF epochs")  # maasrec.tune's budget; nothing otherwise
                    u_c = torch.index_select(users, 0, sel)
                    i_c = torch.index_select(pos, 0, sel)
                    j_c = sampler.sample(u_c, g)
                    for s0 in range(0, len(sel), bs):
                        total += step(u_c[s0:s0 + bs], i_c[s0:s0 + bs], j_c[s0:s0 + bs])
            loss = float(total) / max(n, 1)
            if not math.isfinite(loss):  # checked once per epoch: one sync, no cost
                raise NonFiniteLossError(
                    f"BPRMF diverged: the mean loss of epoch {e + 1} is {loss} "
                    f"(optimizer={optimizer!r}, learning_rate={self.learning_rate!r}); lower "
                    f"learning_rate. The model is left unfitted",
                    epoch=e + 1, step=0)
            return loss

        logger.info("BPRMF: %d users x %d items, %d interactions, factors=%d, batch %d, "
                    "optimizer %s, device=%s", n_users, n_items, n, f, bs, optimizer, device)
        with threads_for(bs * (f + 1), device):
            try:
                log = run_epochs(epoch, int(self.epochs), verbose=self.verbose,
                                 desc="BPRMF", name="BPRMF")
            except NonFiniteLossError:
                self._forget_fit()
                raise
        self.user_factors_ = P.cpu().numpy()
        self.item_factors_ = Q.cpu().numpy()
        self.item_bias_ = (b.cpu().numpy() if b is not None
                           else np.zeros(n_items, dtype=np.float32))
        self.optimizer_ = optimizer
        self.training_log_ = log.to_dict()

    _epoch_log = deprecated_log_alias("_epoch_log", EpochLog.from_dict)

    def _score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T + self.item_bias_

    #: Fold-in of partial_fit: Adam steps, sampled negatives per positive, and the most
    #: (positive, negative) pairs one user's fold-in uses.
    _fold_in_steps: ClassVar[int] = 150
    _fold_in_negatives: ClassVar[int] = 16
    _fold_in_max_pairs: ClassVar[int] = 4096

    def _partial_fit(self, user_idx: np.ndarray, *, n_new_users: int, n_new_items: int,
                     previous_seen: sp.csr_matrix, event_items: np.ndarray) -> None:
        # online update (Recommender.partial_fit): per-user fold-in, then seeded epochs on
        # the new positives mixed with replayed old ones (maasrec.models._online.bpr_fold_in)
        from ._online import bpr_fold_in

        bpr_fold_in(self, user_idx, event_items, previous_seen)

    def _check_loaded(self) -> None:
        Q = self._loaded_float("item_factors_", (self.n_items_, None))
        self._loaded_float("user_factors_", (self.n_users_, Q.shape[1]))
        self._loaded_float("item_bias_", (self.n_items_,))

    def _similar_scores(self, item_idx: np.ndarray) -> np.ndarray:
        return _cosine_rows(self.item_factors_, item_idx)

    def _explain_history(self, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
        # the user's factor was learned, not computed from the history: the closest history
        # items to the explained one in factor space (cosine) stand in for contributions
        if user_idx is None:  # pragma: no cover - explain() refuses history= first
            raise NotImplementedError("BPRMF explains known users only")
        Q = self.item_factors_.astype(np.float64)
        norms = np.linalg.norm(Q[row.indices], axis=1) * np.linalg.norm(Q[item_idx])
        w = (Q[row.indices] @ Q[item_idx]) / np.where(norms > 0, norms, 1.0)
        score = float(self.user_factors_[user_idx] @ self.item_factors_[item_idx]
                      + self.item_bias_[item_idx])
        return ExplainTerms(score, row.indices, w, "approximation", None,
                            "cosine similarity of the history item to the explained item in "
                            "factor space (an approximation: BPR's user factor is learned, "
                            "so the weights do not add up to the score)")

    # -- vectors for approximate retrieval: the bias is an extra coordinate ---------
    def _item_vectors(self) -> np.ndarray:
        cache = getattr(self, "_vectors_cache", None)
        if cache is None or cache[0] is not self.item_factors_ or cache[1] is not self.item_bias_:
            v = np.hstack([self.item_factors_, self.item_bias_[:, None]]).astype(np.float32)
            cache = self._vectors_cache = (self.item_factors_, self.item_bias_, v)
        return cache[2]

    def _user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        u = self.user_factors_[user_idx]
        return np.hstack([u, np.ones((len(u), 1), dtype=u.dtype)])


def _fold_in_bpr(model: BPRMF, user_idx: np.ndarray) -> np.ndarray:
    """BPR user factors learned against fixed item factors, one seeded problem per user."""
    from ..online import positive_rows

    H = positive_rows(model, model.seen_[user_idx])
    Q = model.item_factors_.astype(np.float64)
    bias = model.item_bias_.astype(np.float64)
    n_items, f = Q.shape
    n_neg = int(model._fold_in_negatives)
    max_pairs = int(model._fold_in_max_pairs)
    rs = model.random_state  # None or a Generator: a fixed seed, so replays agree
    base = int(rs) if isinstance(rs, int | np.integer) else 0
    P = np.zeros((len(user_idx), f))
    rows, pos, neg = [], [], []
    for r, u in enumerate(user_idx):
        items = H.indices[H.indptr[r]:H.indptr[r + 1]]
        rng = np.random.default_rng([base, int(u)])
        P[r] = rng.standard_normal(f) * float(model.init_std)
        if len(items) == 0 or len(items) >= n_items:
            continue
        if len(items) * n_neg <= max_pairs:
            i = np.repeat(items, n_neg)
        else:  # a long history: a seeded sample of its positives bounds the cost
            i = rng.choice(items, size=max_pairs)
        j = rng.integers(0, n_items, size=len(i))
        bad = np.isin(j, items)
        while bad.any():  # redraw the negatives that are positives
            j[bad] = rng.integers(0, n_items, size=int(bad.sum()))
            bad = np.isin(j, items)
        rows.append(np.full(len(j), r))
        pos.append(i)
        neg.append(j)
    if not rows:
        return P.astype(np.float32)
    rows, pos, neg = np.concatenate(rows), np.concatenate(pos), np.concatenate(neg)
    D = Q[pos] - Q[neg]
    db = bias[pos] - bias[neg]
    counts = np.bincount(rows, minlength=len(user_idx)).astype(np.float64)
    S = sp.csr_matrix((1.0 / counts[rows], (rows, np.arange(len(rows)))),
                      shape=(len(user_idx), len(rows)))  # per-user mean over the pairs
    reg, lr = float(model.regularization), 0.05
    m, v = np.zeros_like(P), np.zeros_like(P)
    for t in range(1, int(model._fold_in_steps) + 1):
        x = np.einsum("nf,nf->n", P[rows], D) + db
        g = -0.5 * (1.0 - np.tanh(0.5 * x))  # d/dx of -log sigmoid(x), stable
        grad = S @ (g[:, None] * D) + 2.0 * reg * P
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        P -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return P.astype(np.float32)
