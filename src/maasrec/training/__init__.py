"""Reusable pieces of maasrec's training loops: seeds, batches, negative sampling, progress.

Every model that trains by mini-batches (``BPRMF`` today, the neural models later)
builds its loop from these pieces, so seeding, sampling and progress reporting behave
the same way everywhere:

- :func:`torch_generator` turns a ``random_state`` (int, None or numpy ``Generator``)
  into a seeded :class:`torch.Generator`, so runs are reproducible without touching
  torch's global RNG;
- :func:`minibatches` yields shuffled index batches for one epoch;
- :class:`UniformNegativeSampler` draws negative items uniformly, optionally rejecting
  each user's positives (vectorised, on any device);
- :func:`run_epochs` drives the epochs: tqdm progress (silent with ``verbose=False``),
  timing, and a ``logging`` line per epoch -- never ``print``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..exceptions import DataError, MaasrecError

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SAMPLERS",
    "SCHEDULES",
    "EpochLog",
    "InBatchNegativeSampler",
    "NonFiniteLossError",
    "PopularityNegativeSampler",
    "TrainingHistory",
    "UniformNegativeSampler",
    "bce_loss",
    "bpr_loss",
    "fit_loop",
    "get_loss",
    "lr_factor",
    "make_optimizer",
    "make_sampler",
    "minibatches",
    "mse_loss",
    "progress",
    "ranking_validator",
    "run_epochs",
    "sampled_softmax_loss",
    "seed_from",
    "softmax_loss",
    "threads_for",
    "to_device",
    "torch_generator",
]

logger = logging.getLogger(__name__)

#: :class:`UniformNegativeSampler` builds a bit map for its membership tests when the map
#: takes at most this many bytes, or at most ``BITMAP_BYTES_PER_POSITIVE`` bytes per
#: positive (twice the sorted int64 keys of the binary-search fallback), whichever is larger.
BITMAP_BYTES = 64 * 2**20
BITMAP_BYTES_PER_POSITIVE = 16

#: Kernels smaller than this (elements, e.g. batch x factors) run on one CPU thread.
SMALL_WORK = 2**17


def seed_from(random_state: Any) -> int:
    """A 63-bit integer seed derived from ``random_state``.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        Passed to :func:`numpy.random.default_rng`; None draws fresh entropy.

    Returns
    -------
    int
        The same value for the same integer ``random_state``.
    """
    return int(np.random.default_rng(random_state).integers(0, 2**63 - 1))


def torch_generator(random_state: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded from ``random_state``.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
    device : torch.device or str, default "cpu"

    Returns
    -------
    torch.Generator
    """
    g = torch.Generator(device=device)
    g.manual_seed(seed_from(random_state))
    return g


@contextmanager
def threads_for(work: int, device: torch.device | str = "cpu") -> Iterator[int]:
    """Run a small CPU problem on one thread; restore torch's thread count afterwards.

    Some torch CPU kernels (sparse products, fused optimisers) open an OpenMP parallel
    region whatever their size. On tiny problems that costs more than the work, and
    on a machine whose cores are busy it costs milliseconds per kernel (threads spin
    waiting for each other): fitting a 40-user model took 30x longer on 2 threads than
    on 1. Work at least :data:`SMALL_WORK` keeps the configured threads.

    Note that ``torch.set_num_threads`` is process-wide: torch code running in other
    Python threads meanwhile also sees one thread.

    Parameters
    ----------
    work : int
        Elements per kernel (e.g. ``nnz * factors`` or ``batch_size * factors``).
    device : torch.device or str, default "cpu"
        Nothing changes for non-CPU devices.

    Yields
    ------
    int
        The number of threads in effect.
    """
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu" or work >= SMALL_WORK or before == 1:
        yield before
        return
    torch.set_num_threads(1)
    try:
        yield 1
    finally:
        torch.set_num_threads(before)


def minibatches(n: int, batch_size: int, *, generator: torch.Generator | None = None,
                shuffle: bool = True, device: torch.device | str = "cpu",
                drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index batches covering ``range(n)`` once (one epoch).

    Parameters
    ----------
    n : int
        Number of examples.
    batch_size : int
        Examples per batch (the last batch may be smaller unless ``drop_last``).
    generator : torch.Generator, optional
        Source of the shuffling (on ``device``).
    shuffle : bool, default True
    device : torch.device or str, default "cpu"
    drop_last : bool, default False

    Yields
    ------
    torch.Tensor of int64
        Indices of one batch.
    """
    if batch_size <= 0:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    if shuffle:
        order = torch.randperm(n, generator=generator, device=device)
    else:
        order = torch.arange(n, device=device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


class UniformNegativeSampler:
    """Draw negative items uniformly from the catalogue, optionally rejecting positives.

    Parameters
    ----------
    positives : scipy.sparse.csr_matrix, shape (n_users, n_items)
        The training interactions (any stored entry is a positive).
    exclude_positives : bool, default True
        Redraw a negative that the user interacted with, up to ``max_tries`` rounds.
        Draws still positive after that (users who interacted with almost the whole
        catalogue) are kept.
    max_tries : int, default 10
    device : torch.device or str, default "cpu"
    bitmap_bytes : int, optional
        Largest packed bit map of the ``n_users x n_items`` cells to build for the
        membership test; bigger problems use binary search instead. Default: the larger
        of ``BITMAP_BYTES`` (64 MiB) and ``BITMAP_BYTES_PER_POSITIVE`` (16) bytes
        per positive, so the map is used whenever it is at most twice the size of the
        sorted keys that binary search needs (density >= 1/128) or small anyway.

    Notes
    -----
    Membership of ``user * n_items + item`` is tested in a packed bit map (one gather
    per draw) when it fits in ``bitmap_bytes``, else by binary search in the sorted keys
    of the positives (``O(log nnz)`` per draw, a cache miss per level: drawing an epoch of
    negatives for 10 million positives, 200,000 users x 5,000 items, took 12.8 s instead
    of 2.0 s with the 125 MB bit map, one thread). Both give the same answers, so the
    negatives drawn for a seed do not depend on the choice. Only rejected
    draws are redrawn; with density ``d`` the expected number of rounds is ``1 / (1 - d)``.
    """

    def __init__(self, positives: sp.csr_matrix, *, exclude_positives: bool = True,
                 max_tries: int = 10, device: torch.device | str = "cpu",
                 bitmap_bytes: int | None = None):
        m = sp.csr_matrix(positives)
        m.sort_indices()
        self.n_items = int(m.shape[1])
        if self.n_items <= 0:
            raise DataError("the catalogue is empty; cannot sample negatives")
        self.exclude_positives = bool(exclude_positives)
        self.max_tries = int(max_tries)
        self.device = torch.device(device)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        keys = rows * self.n_items + m.indices.astype(np.int64)  # sorted: CSR is row-major
        n_cells = int(m.shape[0]) * self.n_items
        if bitmap_bytes is None:
            bitmap_bytes = max(BITMAP_BYTES, BITMAP_BYTES_PER_POSITIVE * len(keys))
        self._bitmap = self._keys = None
        if (n_cells + 7) // 8 <= bitmap_bytes:
            bits = np.zeros((n_cells + 7) // 8, dtype=np.uint8)
            np.bitwise_or.at(bits, keys >> 3, (1 << (keys & 7)).astype(np.uint8))
            self._bitmap = torch.from_numpy(bits).to(self.device)
        else:
            self._keys = torch.from_numpy(keys).to(self.device)

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether each ``(user, item)`` pair is a training positive.

        Parameters
        ----------
        users, items : torch.Tensor of int64, same shape

        Returns
        -------
        torch.Tensor of bool
        """
        q = users * self.n_items + items
        if self._bitmap is not None:
            byte = torch.index_select(self._bitmap, 0, q >> 3)
            return ((byte >> (q & 7).to(torch.uint8)) & 1).bool()
        if len(self._keys) == 0:
            return torch.zeros(users.shape, dtype=torch.bool, device=users.device)
        pos = torch.searchsorted(self._keys, q).clamp_(max=len(self._keys) - 1)
        return self._keys[pos] == q

    def sample(self, users: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """One negative item per entry of ``users``.

        Parameters
        ----------
        users : torch.Tensor of int64
        generator : torch.Generator, optional

        Returns
        -------
        torch.Tensor of int64, same shape as ``users``
        """
        neg = torch.randint(self.n_items, users.shape, generator=generator, device=users.device)
        if not self.exclude_positives:
            return neg
        todo = torch.nonzero(self.is_positive(users, neg)).squeeze(1)
        for _ in range(self.max_tries):
            if len(todo) == 0:
                break
            neg[todo] = torch.randint(self.n_items, (len(todo),), generator=generator,
                                      device=users.device)
            todo = todo[self.is_positive(users[todo], neg[todo])]
        return neg

    def draw(self, users: torch.Tensor, n: int, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, None]:
        """``n`` negatives per user, in the interface of the general loop's samplers.

        Parameters
        ----------
        users : torch.Tensor of int64, shape (b,)
        n : int
        generator : torch.Generator, optional

        Returns
        -------
        items : torch.Tensor of int64, shape (b, n)
        log_q : None
            Uniform draws: the constant log-probability cancels in every loss.
        """
        flat = users.repeat_interleave(int(n)) if n != 1 else users
        return self.sample(flat, generator).view(len(users), int(n)), None


def progress(iterable=None, *, total: int | None = None, desc: str | None = None,
             verbose: bool = True, unit: str = "it"):
    """A tqdm progress bar that is silent (and free) when ``verbose`` is False.

    Parameters
    ----------
    iterable : iterable, optional
    total : int, optional
    desc : str, optional
    verbose : bool, default True
    unit : str, default "it"

    Returns
    -------
    tqdm.tqdm
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not verbose, leave=False,
                dynamic_ncols=True)


@dataclass
class EpochLog:
    """What :func:`run_epochs` records.

    Attributes
    ----------
    losses : list of float
        The value each epoch function returned (NaN when it returned None).
    seconds : list of float
        Wall time of each epoch.
    """

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        """float: median wall time of an epoch (NaN before the first)."""
        return float(np.median(self.seconds)) if self.seconds else float("nan")


def run_epochs(epoch_fn: Callable[[int], float | None], n_epochs: int, *, verbose: bool = True,
               desc: str = "epochs", name: str = "model", unit: str = "epoch") -> EpochLog:
    """Run ``epoch_fn(epoch)`` ``n_epochs`` times with progress, timing and logging.

    Parameters
    ----------
    epoch_fn : callable
        Does one epoch (or iteration) and returns its loss (or None).
    n_epochs : int
    verbose : bool, default True
        Show a tqdm bar (with the last loss); False is silent.
    desc : str, default "epochs"
        Label of the progress bar.
    name : str, default "model"
        Prefix of the log lines (``logging`` at DEBUG per epoch, INFO at the end).
    unit : str, default "epoch"

    Returns
    -------
    EpochLog
    """
    log = EpochLog()
    bar = progress(range(n_epochs), desc=desc, verbose=verbose, unit=unit)
    for epoch in bar:
        t0 = time.perf_counter()
        loss = epoch_fn(epoch)
        dt = time.perf_counter() - t0
        loss = float("nan") if loss is None else float(loss)
        log.losses.append(loss)
        log.seconds.append(dt)
        if loss == loss:
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        logger.debug("%s: %s %d/%d in %.3fs, loss %.6g", name, unit, epoch + 1, n_epochs, dt, loss)
    bar.close()
    if n_epochs:
        logger.info("%s: %d %ss, %.3fs per %s", name, n_epochs, unit, log.seconds_per_epoch, unit)
    return log


# ======================================================================================
# The general loop of the neural models: losses, samplers, optimisers, schedules,
# early stopping, AMP, callbacks (issue 7). Everything above is used by BPRMF as is.
# ======================================================================================

class NonFiniteLossError(MaasrecError, FloatingPointError):
    """Training produced a NaN or infinite loss.

    Raised by :func:`fit_loop` *before* the bad step is applied; the module then holds
    the best checkpoint (the best validation epoch, or the weights of the last good
    step when there is no validation).

    Parameters
    ----------
    message : str
    epoch : int
        1-based epoch of the bad step.
    step : int
        1-based step within that epoch.
    best_epoch : int or None
        Epoch whose weights the module holds (None: no epoch finished).
    history : TrainingHistory, optional
        What was recorded up to the failure.
    """

    def __init__(self, message: str, *, epoch: int, step: int, best_epoch: int | None = None,
                 history: TrainingHistory | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.best_epoch = best_epoch
        self.history = history


# -- losses ------------------------------------------------------------------------------

def _as_2d(neg: torch.Tensor) -> torch.Tensor:
    return neg.unsqueeze(1) if neg.dim() == 1 else neg


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Bayesian personalised ranking: ``-log σ(s_pos - s_neg)``, averaged.

    Parameters
    ----------
    pos : torch.Tensor, shape (b,)
        Scores of the positive items.
    neg : torch.Tensor, shape (b,) or (b, k)
        Scores of ``k`` negatives per positive.
    mask : torch.Tensor of bool, shape (b, k), optional
        Negatives to use (False: ignored, e.g. accidental hits).

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    neg = _as_2d(neg)
    terms = -torch.nn.functional.logsigmoid(pos.unsqueeze(1) - neg)
    if mask is None:
        return terms.mean()
    m = mask.to(terms.dtype)
    return (terms * m).sum() / m.sum().clamp(min=1.0)


def bce_loss(pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Binary cross-entropy with negatives (NCF's pointwise log loss).

    ``-log σ(s_pos) - Σ_j log(1 - σ(s_neg_j))`` per positive, averaged over positives,
    so each positive and its ``k`` negatives weigh as in He et al. (2017).

    Parameters
    ----------
    pos : torch.Tensor, shape (b,)
    neg : torch.Tensor, shape (b,) or (b, k)
    mask : torch.Tensor of bool, shape (b, k), optional

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    neg = _as_2d(neg)
    f = torch.nn.functional
    pos_term = -f.logsigmoid(pos)
    neg_terms = -f.logsigmoid(-neg)
    if mask is not None:
        neg_terms = neg_terms * mask.to(neg_terms.dtype)
    return (pos_term + neg_terms.sum(dim=1)).mean()


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, *,
                         log_q_pos: torch.Tensor | None = None,
                         log_q_neg: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None,
                         temperature: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy of each positive against sampled negatives.

    With ``log_q`` given (the log-probability that the sampler draws an item), logits
    are corrected by ``s - log q`` (the logQ correction of Bengio & Senécal 2008 and Yi
    et al. 2019), which makes the sampled loss an unbiased-in-the-limit estimate of the
    full softmax under popularity or in-batch sampling.

    Parameters
    ----------
    pos : torch.Tensor, shape (b,)
    neg : torch.Tensor, shape (b, k)
    log_q_pos : torch.Tensor, shape (b,), optional
    log_q_neg : torch.Tensor, shape (b, k) or (k,), optional
    mask : torch.Tensor of bool, shape (b, k), optional
        Negatives to use (False: excluded from the softmax, e.g. in-batch accidental
        hits of the positive itself).
    temperature : float, default 1.0
        Logits are divided by it.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    neg = _as_2d(neg)
    pos = pos / temperature
    neg = neg / temperature
    if log_q_pos is not None:
        pos = pos - log_q_pos
    if log_q_neg is not None:
        neg = neg - log_q_neg
    if mask is not None:
        neg = neg.masked_fill(~mask, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def softmax_loss(scores: torch.Tensor, targets: torch.Tensor,
                 weights: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Full cross-entropy over the catalogue.

    Two forms:

    - ``targets`` of shape ``(b,)`` (int): one target item per row (next-item
      prediction): the mean of ``-log softmax(scores)[r, targets[r]]``;
    - ``targets`` of int item indices with ``rows`` (same length): several targets per
      row (a user's items, the multinomial likelihood of Mult-VAE/DAE): the sum of
      ``-weights * log softmax`` over the pairs, divided by the number of rows.

    Parameters
    ----------
    scores : torch.Tensor, shape (b, n_items)
    targets : torch.Tensor of int64
    weights : torch.Tensor, optional
        Per-pair weights (default 1).
    rows : torch.Tensor of int64, optional
        Row of each target (multi-target form).
    label_smoothing : float, default 0.0
        One-target form without ``weights`` only: the target distribution puts
        ``1 - label_smoothing`` on the target and spreads ``label_smoothing`` evenly over
        the whole catalogue (as ``torch.nn.functional.cross_entropy``).

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    logp = torch.log_softmax(scores.float(), dim=1)
    if label_smoothing and (rows is not None or weights is not None):
        raise ValueError(f"label_smoothing={label_smoothing!r} needs the one-target form "
                         "without weights")
    if rows is None:
        if weights is None:
            nll = torch.nn.functional.nll_loss(logp, targets)
            if label_smoothing:
                eps = float(label_smoothing)
                return (1.0 - eps) * nll - eps * logp.mean(dim=1).mean()
            return nll
        picked = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
        return -(picked * weights).sum() / weights.sum().clamp(min=1e-12)
    picked = logp[rows, targets]
    if weights is not None:
        picked = picked * weights
    return -picked.sum() / max(int(scores.shape[0]), 1)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (explicit ratings).

    Parameters
    ----------
    pred, target : torch.Tensor, same shape

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    return torch.nn.functional.mse_loss(pred.float(), target.float())


#: Loss functions by name. ``"softmax"`` is the full cross-entropy over the catalogue.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "bpr": bpr_loss,
    "bce": bce_loss,
    "sampled_softmax": sampled_softmax_loss,
    "softmax": softmax_loss,
    "mse": mse_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function called ``name``.

    Parameters
    ----------
    name : {"bpr", "bce", "sampled_softmax", "softmax", "mse"}

    Returns
    -------
    callable

    Raises
    ------
    DataError
        For an unknown name.
    """
    if name not in LOSSES:
        raise DataError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


# -- negative samplers -----------------------------------------------------------------

class PopularityNegativeSampler:
    """Draw negatives with probability proportional to ``count ** alpha``.

    Parameters
    ----------
    item_counts : array-like of float, shape (n_items,)
        Interactions per item.
    alpha : float, default 0.75
        Smoothing exponent (word2vec's 0.75; 0 is uniform, 1 proportional to counts).
    positives : scipy.sparse.csr_matrix, optional
        When given, a draw that the user interacted with is redrawn (up to
        ``max_tries`` rounds), as :class:`UniformNegativeSampler` does.
    max_tries : int, default 10
    device : torch.device or str, default "cpu"

    Notes
    -----
    Every item keeps a non-zero probability (counts are floored at 1), so items with no
    interaction -- cold items -- can be drawn too. :meth:`draw` returns ``log q``, the
    log-probability of each drawn item, for the logQ correction of
    :func:`sampled_softmax_loss`.
    """

    def __init__(self, item_counts, *, alpha: float = 0.75, positives: sp.csr_matrix | None = None,
                 max_tries: int = 10, device: torch.device | str = "cpu"):
        counts = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0)
        if counts.ndim != 1 or len(counts) == 0:
            raise DataError(f"item_counts must be a non-empty 1-d array, got shape {counts.shape}")
        if not np.isfinite(alpha) or alpha < 0:
            raise DataError(f"alpha must be a number >= 0, got {alpha!r}")
        p = counts ** float(alpha)
        p /= p.sum()
        self.device = torch.device(device)
        self.n_items = len(p)
        self.probs = torch.from_numpy(p.astype(np.float32)).to(self.device)
        self.log_probs = torch.from_numpy(np.log(p).astype(np.float32)).to(self.device)
        self.max_tries = int(max_tries)
        self._reject = (UniformNegativeSampler(positives, device=self.device)
                        if positives is not None else None)

    def log_q(self, items: torch.Tensor) -> torch.Tensor:
        """Log-probability of drawing each item.

        Parameters
        ----------
        items : torch.Tensor of int64

        Returns
        -------
        torch.Tensor of float32, same shape
        """
        return self.log_probs[items]

    def _sample(self, shape: tuple[int, ...], generator) -> torch.Tensor:
        n = int(np.prod(shape))
        if n == 0:
            return torch.empty(shape, dtype=torch.long, device=self.device)
        return torch.multinomial(self.probs, n, replacement=True,
                                 generator=generator).view(shape)

    def draw(self, users: torch.Tensor, n: int, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` negatives per user and their log-probabilities.

        Parameters
        ----------
        users : torch.Tensor of int64, shape (b,)
        n : int
        generator : torch.Generator, optional

        Returns
        -------
        items : torch.Tensor of int64, shape (b, n)
        log_q : torch.Tensor of float32, shape (b, n)
        """
        b, n = len(users), int(n)
        neg = self._sample((b, n), generator)
        if self._reject is not None:
            flat_u = users.repeat_interleave(n)
            flat = neg.view(-1)
            todo = torch.nonzero(self._reject.is_positive(flat_u, flat)).squeeze(1)
            for _ in range(self.max_tries):
                if len(todo) == 0:
                    break
                flat[todo] = self._sample((len(todo),), generator)
                todo = todo[self._reject.is_positive(flat_u[todo], flat[todo])]
            neg = flat.view(b, n)
        return neg, self.log_q(neg)


class InBatchNegativeSampler:
    """Use the other positives of a mini-batch as negatives.

    Free (no extra item representations), and popular items appear as negatives as
    often as they are positives, so the logits need the logQ correction:
    :meth:`negatives` returns ``log q`` from the item frequencies.

    Parameters
    ----------
    item_counts : array-like of float, shape (n_items,)
        Interactions per item (gives ``q``, the chance an item is a batch positive).
    device : torch.device or str, default "cpu"
    """

    def __init__(self, item_counts, *, device: torch.device | str = "cpu"):
        counts = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0)
        self.device = torch.device(device)
        self.log_probs = torch.from_numpy(np.log(counts / counts.sum()).astype(np.float32)
                                          ).to(self.device)

    def log_q(self, items: torch.Tensor) -> torch.Tensor:
        """Log-frequency of each item.

        Parameters
        ----------
        items : torch.Tensor of int64

        Returns
        -------
        torch.Tensor of float32
        """
        return self.log_probs[items]

    def negatives(self, pos_items: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's positives as every row's negatives.

        Parameters
        ----------
        pos_items : torch.Tensor of int64, shape (b,)

        Returns
        -------
        items : torch.Tensor of int64, shape (b,)
            Column ``j`` of the ``[b, b]`` score matrix is item ``items[j]``.
        log_q : torch.Tensor of float32, shape (b,)
        mask : torch.Tensor of bool, shape (b, b)
            False where column ``j`` is row ``r``'s own positive item (the diagonal and
            any repeat of it), so a positive is never its own negative.
        """
        mask = pos_items.unsqueeze(1) != pos_items.unsqueeze(0)
        return pos_items, self.log_q(pos_items), mask


#: Negative samplers by name.
SAMPLERS = ("uniform", "popularity", "in_batch")


def make_sampler(kind: str, positives: sp.csr_matrix, *, alpha: float = 0.75,
                 exclude_positives: bool = True, device: torch.device | str = "cpu"):
    """Build a negative sampler by name.

    Parameters
    ----------
    kind : {"uniform", "popularity", "in_batch"}
    positives : scipy.sparse.csr_matrix, shape (n_users, n_items)
        The training interactions.
    alpha : float, default 0.75
        Popularity exponent (``"popularity"`` only).
    exclude_positives : bool, default True
        Redraw negatives the user interacted with (``"uniform"``, ``"popularity"``).
    device : torch.device or str, default "cpu"

    Returns
    -------
    UniformNegativeSampler, PopularityNegativeSampler or InBatchNegativeSampler

    Raises
    ------
    DataError
        For an unknown kind.
    """
    counts = np.asarray((positives != 0).sum(axis=0)).ravel()
    if kind == "uniform":
        return UniformNegativeSampler(positives, exclude_positives=exclude_positives,
                                      device=device)
    if kind == "popularity":
        return PopularityNegativeSampler(counts, alpha=alpha,
                                         positives=positives if exclude_positives else None,
                                         device=device)
    if kind == "in_batch":
        return InBatchNegativeSampler(counts, device=device)
    raise DataError(f"negative sampler must be one of {list(SAMPLERS)}, got {kind!r}")


# -- optimisers and schedules -----------------------------------------------------------

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear")


def make_optimizer(params, name: str = "adam", *, learning_rate: float = 1e-3,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Build an optimiser by name.

    Parameters
    ----------
    params : iterable of parameters or parameter groups
    name : {"adam", "adamw", "sgd"}, default "adam"
        ``"adam"`` adds ``weight_decay`` to the gradient (L2); ``"adamw"`` decays the
        weights directly (decoupled).
    learning_rate : float, default 1e-3
    weight_decay : float, default 0.0

    Returns
    -------
    torch.optim.Optimizer
    """
    params = [p for p in params if not isinstance(p, torch.Tensor) or p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, weight_decay=weight_decay)
    raise DataError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def lr_factor(schedule: str, total_steps: int, warmup_steps: int = 0,
              final: float = 0.0) -> Callable[[int], float]:
    """The learning-rate multiplier of a schedule, as a function of the step.

    Parameters
    ----------
    schedule : {"constant", "cosine", "linear"}
        After ``warmup_steps`` of linear warm-up from 0: constant, cosine decay, or
        linear decay to ``final`` at ``total_steps``.
    total_steps : int
    warmup_steps : int, default 0
    final : float, default 0.0
        Multiplier reached at the end (cosine, linear).

    Returns
    -------
    callable
        ``f(step) -> float`` (for :class:`torch.optim.lr_scheduler.LambdaLR`).
    """
    if schedule not in SCHEDULES:
        raise DataError(f"lr_schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    total = max(int(total_steps), 1)
    warm = max(int(warmup_steps), 0)

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(total - warm, 1))
        if schedule == "cosine":
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0 - (1.0 - final) * t

    return f


# -- devices ---------------------------------------------------------------------------

def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors (in dicts, lists and tuples) to ``device``.

    On CUDA, CPU tensors are pinned and copied with ``non_blocking=True`` so the copy
    overlaps the previous step's kernels; elsewhere this is a plain ``.to``.

    Parameters
    ----------
    obj : torch.Tensor, dict, list, tuple or anything else (returned as is)
    device : torch.device

    Returns
    -------
    Same structure, tensors on ``device``.
    """
    if isinstance(obj, torch.Tensor):
        if obj.device == device:
            return obj
        if device.type == "cuda" and obj.device.type == "cpu":
            return obj.pin_memory().to(device, non_blocking=True)
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [to_device(v, device) for v in obj]
        return type(obj)(moved) if isinstance(obj, tuple) and not hasattr(obj, "_fields") \
            else (type(obj)(*moved) if hasattr(obj, "_fields") else moved)
    return obj


# -- validation ------------------------------------------------------------------------

class _ScoreView:
    """The minimum ``evaluate`` needs: vocabularies and ``_score_users``."""

    def __init__(self, score_fn, user_vocab, item_vocab):
        self.user_vocab_ = user_vocab
        self.item_vocab_ = item_vocab
        self._fn = score_fn

    def _score_users(self, user_idx: np.ndarray):
        out = self._fn(user_idx)
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        return out


def ranking_validator(score_fn: Callable[[np.ndarray], Any], user_vocab, item_vocab, train,
                      valid, *, k: int = 10, metric: str = "ndcg", max_users: int | None = None,
                      random_state: Any = 0, batch_size: int | None = None
                      ) -> Callable[[], float]:
    """A function computing a full-ranking validation metric with :func:`maasrec.metrics.evaluate`.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(user_idx) -> [len(user_idx), n_items]`` scores (numpy or torch) of
        the model being trained; it is called under ``torch.no_grad``.
    user_vocab, item_vocab : IdVocab
    train : Interactions
        Excluded from the rankings (the training items).
    valid : Interactions
        The relevant items.
    k : int, default 10
    metric : str, default "ndcg"
        Any per-user ranking metric :func:`~maasrec.metrics.evaluate` knows.
    max_users : int, optional
        Evaluate a fixed random subset of this many validation users (faster epochs on
        big data; the subset is drawn once, seeded).
    random_state : int, default 0
    batch_size : int, optional
        Users per scoring chunk.

    Returns
    -------
    callable
        ``validate() -> float``; its ``name`` attribute is e.g. ``"ndcg@10"``.
    """
    from ..metrics.evaluation import evaluate

    users = None
    if max_users is not None:
        uniq = np.unique(valid.user_indices)
        if len(uniq) > max_users:
            rng = np.random.default_rng(random_state)
            users = user_vocab.ids[np.sort(rng.choice(uniq, size=int(max_users), replace=False))]
    view = _ScoreView(score_fn, user_vocab, item_vocab)
    name = f"{metric}@{int(k)}"

    def validate() -> float:
        import warnings

        from ..exceptions import ColdStartWarning

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ColdStartWarning)
            res = evaluate(view, train, valid, k=int(k), metrics=[name], users=users,
                           n_bootstrap=0, batch_size=batch_size, random_state=random_state)
        return float(res[name])

    validate.name = name  # type: ignore[attr-defined]
    return validate


# -- the loop ------------------------------------------------------------------------------

@dataclass
class TrainingHistory:
    """What :func:`fit_loop` records.

    Attributes
    ----------
    losses : list of float
        Mean training loss of each epoch.
    metrics : list of float
        Validation metric after each epoch (NaN where not evaluated).
    seconds : list of float
        Wall time of each epoch (training and validation).
    learning_rates : list of float
        Learning rate at the end of each epoch.
    metric_name : str or None
    best_epoch : int or None
        1-based epoch whose weights the module holds at the end (the best validation
        epoch), or None without validation.
    best_metric : float or None
    stopped_early : bool
        Stopped by patience or a callback before ``epochs``.
    steps : int
        Optimiser steps taken.
    """

    losses: list[float] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    metric_name: str | None = None
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    steps: int = 0

    @property
    def epochs(self) -> int:
        """int: epochs run."""
        return len(self.losses)

    @property
    def seconds_per_epoch(self) -> float:
        """float: median wall time of an epoch (NaN before the first)."""
        return float(np.median(self.seconds)) if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible copy (NaN as None).

        Returns
        -------
        dict
        """
        def clean(xs):
            return [None if x != x else float(x) for x in xs]

        return {"losses": clean(self.losses), "metrics": clean(self.metrics),
                "seconds": clean(self.seconds), "learning_rates": clean(self.learning_rates),
                "metric_name": self.metric_name, "best_epoch": self.best_epoch,
                "best_metric": self.best_metric, "stopped_early": self.stopped_early,
                "steps": self.steps}


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _fork_rng(device: torch.device):
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def fit_loop(module: torch.nn.Module, step_fn: Callable[[Any], torch.Tensor],
             batches: Callable[[int], Any], *, epochs: int,
             optimizer: str | torch.optim.Optimizer = "adam", learning_rate: float = 1e-3,
             weight_decay: float = 0.0, clip_grad_norm: float | None = None,
             lr_schedule: str = "constant", warmup: float = 0.0,
             steps_per_epoch: int | None = None,
             validate: Callable[[], float] | None = None, eval_every: int = 1,
             patience: int | None = None, min_delta: float = 0.0, restore_best: bool = True,
             callbacks: Sequence[Callable[[int, dict], Any]] = (),
             device: torch.device | str | None = None, amp: bool = True,
             random_state: Any = None, verbose: bool = False, name: str = "model",
             on_step: Callable[[], None] | None = None) -> TrainingHistory:
    """Train ``module`` by mini-batches: the one loop of every maasrec neural model.

    Per step: move the batch to the device (pinned, non-blocking on CUDA), compute
    ``step_fn(batch)`` under autocast (bf16/fp16 on CUDA, from
    :func:`maasrec.device.amp_dtype`; full precision on the CPU), stop with
    :class:`NonFiniteLossError` if the loss is NaN/inf (before applying it), backward
    (with a gradient scaler for fp16), clip the gradient norm, step the optimiser and
    the learning-rate schedule. After every ``eval_every`` epochs, ``validate()``
    (higher is better, e.g. NDCG@10 from :func:`ranking_validator`) drives early
    stopping: the best weights are copied in memory and restored at the end.

    Parameters
    ----------
    module : torch.nn.Module
        Holds every trainable parameter (and is put in train/eval mode).
    step_fn : callable
        ``step_fn(batch) -> scalar loss tensor``.
    batches : callable
        ``batches(epoch) -> iterable of batches`` (0-based epoch); a batch is a tensor
        or a dict/list/tuple of tensors (moved to ``device``) or anything else.
    epochs : int
        Maximum number of epochs.
    optimizer : {"adam", "adamw", "sgd"} or torch.optim.Optimizer, default "adam"
    learning_rate : float, default 1e-3
    weight_decay : float, default 0.0
    clip_grad_norm : float, optional
        Clip the global gradient norm to this value.
    lr_schedule : {"constant", "cosine", "linear"}, default "constant"
    warmup : float, default 0.0
        Linear warm-up: a fraction of all steps if < 1, else a number of steps.
    steps_per_epoch : int, optional
        Needed by the schedules; default ``len(batches(0))`` when it has a length,
        else measured on the first epoch (warm-up/decay then start from epoch 2).
    validate : callable, optional
        ``validate() -> float``, higher is better; called in eval mode without grad.
    eval_every : int, default 1
    patience : int, optional
        Stop after this many validations without an improvement of more than
        ``min_delta``. None never stops early (the best epoch is still restored).
    min_delta : float, default 0.0
    restore_best : bool, default True
        Load the best validated weights at the end.
    callbacks : sequence of callables
        ``fn(epoch, logs) -> bool``, called after each epoch (1-based ``epoch``; ``logs``
        has ``loss``, ``lr``, ``seconds`` and the metric when validated); returning True
        stops training.
    device : torch.device or str, optional
        Where batches go (the module must already be there).
    amp : bool, default True
        Mixed precision on CUDA (ignored on the CPU).
    random_state : int, numpy.random.Generator or None
        Seeds torch's global RNG (dropout) inside the loop only; the caller's RNG state
        is restored afterwards.
    verbose : bool, default False
        tqdm progress bar over epochs with the loss and the metric.
    name : str, default "model"
        Prefix of the log lines.
    on_step : callable, optional
        Called after every optimiser step (e.g. to re-normalise embeddings).

    Returns
    -------
    TrainingHistory

    Raises
    ------
    NonFiniteLossError
        A NaN/inf loss, naming the epoch and step; the module holds the best
        checkpoint (see :class:`NonFiniteLossError`).

    Notes
    -----
    On the CPU the same ``random_state``, data and thread count give the same weights
    (all randomness comes from seeded generators; torch's CPU kernels are
    deterministic). On CUDA, atomics in some backward kernels (``index_add_``,
    embedding gradients) may change the last bits between runs.
    """
    from ..device import amp_dtype, resolve_device

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise DataError(f"epochs must be an integer >= 0, got {epochs!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) \
            or eval_every < 1:
        raise DataError(f"eval_every must be a positive integer, got {eval_every!r}")
    if patience is not None and (isinstance(patience, bool) or not isinstance(
            patience, (int, np.integer)) or patience < 1):
        raise DataError(f"patience must be a positive integer or None, got {patience!r}")
    if clip_grad_norm is not None and not (clip_grad_norm > 0):
        raise DataError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if not callable(cb):
            raise DataError(f"callbacks must be callables fn(epoch, logs), got {cb!r}")
    params = [p for p in module.parameters() if p.requires_grad]
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = make_optimizer(params, optimizer, learning_rate=learning_rate,
                             weight_decay=weight_decay)
    if steps_per_epoch is None:
        try:
            steps_per_epoch = len(batches(0))  # type: ignore[arg-type]
        except TypeError:
            steps_per_epoch = None
    total = int(epochs) * int(steps_per_epoch or 1)
    warm = round(warmup * total) if warmup < 1 else int(warmup)
    sched = None
    if lr_schedule != "constant" or warm:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(lr_schedule, total, warm))
    amp_type = amp_dtype(device) if amp and device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda") if amp_type == torch.float16 else None
    metric_name = getattr(validate, "name", "metric") if validate is not None else None
    hist = TrainingHistory(metric_name=metric_name)
    best_state: dict[str, torch.Tensor] | None = None
    best = -math.inf
    bad_rounds = 0
    seed = seed_from(random_state)
    bar = progress(range(int(epochs)), desc=name, verbose=verbose, unit="epoch")
    logger.info("%s: training up to %d epochs on %s (%s, lr %.3g, %s schedule%s)", name,
                epochs, device, opt.__class__.__name__, learning_rate, lr_schedule,
                f", AMP {amp_type}" if amp_type else "")
    with _fork_rng(device):
        torch.manual_seed(seed)
        try:
            for epoch in bar:
                t0 = time.perf_counter()
                module.train()
                total_loss = torch.zeros((), device=device, dtype=torch.float64)
                n_steps = 0
                for step, batch in enumerate(batches(epoch), 1):
                    batch = to_device(batch, device)
                    if amp_type is not None:
                        with torch.autocast(device_type="cuda", dtype=amp_type):
                            loss = step_fn(batch)
                    else:
                        loss = step_fn(batch)
                    if not bool(torch.isfinite(loss.detach())):
                        where = (f"{name}: the training loss became {float(loss.detach())} at "
                                 f"epoch {epoch + 1}, step {step}")
                        if best_state is not None and restore_best:
                            module.load_state_dict(best_state)
                            kept = f"the best checkpoint (epoch {hist.best_epoch}) was restored"
                        else:
                            kept = "the weights of the last good step are kept"
                        raise NonFiniteLossError(
                            f"{where}; {kept}. Lower the learning rate, set clip_grad_norm, or "
                            f"check the inputs for NaN/inf",
                            epoch=epoch + 1, step=step,
                            best_epoch=hist.best_epoch if best_state is not None else None,
                            history=hist)
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        if clip_grad_norm is not None:
                            scaler.unscale_(opt)
                            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        if clip_grad_norm is not None:
                            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
                        opt.step()
                    if sched is not None:
                        sched.step()
                    if on_step is not None:
                        on_step()
                    total_loss += loss.detach().double()
                    n_steps += 1
                hist.steps += n_steps
                if steps_per_epoch is None and n_steps and sched is None and (
                        lr_schedule != "constant" or warmup):
                    steps_per_epoch = n_steps
                    total = int(epochs) * n_steps
                    warm = round(warmup * total) if warmup < 1 else int(warmup)
                    f = lr_factor(lr_schedule, total, warm)
                    sched = torch.optim.lr_scheduler.LambdaLR(
                        opt, lambda s, f=f, off=n_steps: f(s + off))
                mean_loss = float(total_loss) / max(n_steps, 1)
                hist.losses.append(mean_loss)
                lr = float(opt.param_groups[0]["lr"])
                hist.learning_rates.append(lr)
                logs: dict[str, Any] = {"loss": mean_loss, "lr": lr}
                value = float("nan")
                improved = False
                if validate is not None and ((epoch + 1) % eval_every == 0
                                             or epoch + 1 == epochs):
                    module.eval()
                    with torch.no_grad():
                        value = float(validate())
                    improved = best_state is None or value > best + min_delta
                    if improved:
                        best = value
                        hist.best_epoch, hist.best_metric = epoch + 1, value
                        best_state = _state_copy(module)
                        bad_rounds = 0
                    else:
                        bad_rounds += 1
                    logs[metric_name] = value
                hist.metrics.append(value)
                dt = time.perf_counter() - t0
                hist.seconds.append(dt)
                logs["seconds"] = dt
                post = {"loss": f"{mean_loss:.4g}"}
                if value == value:
                    post[metric_name] = f"{value:.4f}"
                bar.set_postfix(post, refresh=False)
                logger.info("%s: epoch %d/%d loss %.5g%s lr %.3g (%.2fs)", name, epoch + 1,
                            epochs, mean_loss,
                            f" {metric_name} {value:.4f}" if value == value else "", lr, dt)
                stop = False
                for cb in callbacks:
                    if cb(epoch + 1, dict(logs)):
                        stop = True
                if patience is not None and bad_rounds >= patience:
                    logger.info("%s: no improvement of %s in %d validations; stopping at "
                                "epoch %d (best %.4f at epoch %s)", name, metric_name, patience,
                                epoch + 1, best, hist.best_epoch)
                    stop = True
                if stop:
                    hist.stopped_early = epoch + 1 < epochs
                    break
        finally:
            bar.close()
            module.eval()
    if best_state is not None and restore_best:
        module.load_state_dict(best_state)
        logger.info("%s: restored the best epoch %d (%s %.4f)", name, hist.best_epoch,
                    metric_name, hist.best_metric)
    return hist
