"""User-level differential privacy (DP-SGD) through maasrec's one training loop.

``HybridRecommender(dp={...})``, ``NeuMF(dp={...})`` and
``SequentialRecommender(dp={...})`` train with DP-SGD (Abadi et al., 2016): every step
samples users by Poisson sampling, computes **each sampled user's** gradient, clips it to
``max_grad_norm``, sums the clipped gradients, adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` and divides by the expected number of users per
step. Opacus (extra ``privacy``) supplies the sampler
(:class:`opacus.utils.uniform_sampler.UniformWithReplacementSampler`), the noise and the
accountant (RDP by default, PRV on request) that turns (noise, sampling rate, steps) into
the spent epsilon; with ``epsilon`` given, Opacus calibrates the noise multiplier for the
planned epochs.

What is protected
-----------------
The privacy unit is the **user**: all of one user's interactions are one sample (one
clipped gradient per step), so the trained weights are (epsilon, delta)-DP with respect to
adding or removing one user with all their interactions. That covers every trained weight,
the user's own id embedding row included (it is trained with the same noised, clipped
gradients; it therefore learns little about its user, and a model with user ids gains less
from them under DP than a history-pooling model).

What is not protected
---------------------
- The fitted model also keeps what it needs to serve known users: ``seen_`` (every
  user's training items, for ``exclude_seen``), the users' stored histories
  (SequentialRecommender, and HybridRecommender's pooled history users read their own
  history when they are scored) and the id vocabularies (which user and item ids occur).
  Those are the users' own data used for their own recommendations, not private release:
  do not publish a DP model directory as if it were anonymous; publish the weights.
- Data-dependent choices outside the gradient steps are not accounted: which items had an
  interaction (``item_has_id_`` of HybridRecommender; the text initialisation of untrained
  items of SequentialRecommender), and early stopping on a ``validation`` set passed to
  ``fit`` (the model holds out no validation slice of its own under ``dp``: it trains
  exactly ``epochs`` epochs unless you pass ``validation``, which you then declare public).
- The random numbers are a seeded pseudo-random stream (reproducible fits), not a
  cryptographically secure one; floating-point attacks on the Gaussian mechanism are not
  addressed (Opacus's ``secure_mode`` is not used).

How the per-user gradients are computed
---------------------------------------
Opacus's :class:`~opacus.GradSampleModule` computes per-sample gradients layer by layer,
which needs every layer to see one row per sample. maasrec's losses do not have that
shape: HybridRecommender computes the vectors of a batch's *unique* items once and pools
histories with ``embedding_bag``; the full softmax multiplies by the whole item table;
SequentialRecommender's attention runs over windows of which a user may have several.
Per-layer hooks would give per-item or per-window gradients, not per-user ones. So every
layer is handled the same way: each sampled user's loss is back-propagated on its own
(micro-batches of one user; exact per-user gradients for every layer type, no layer
frozen or replaced), at the cost of one backward pass per sampled user.

Refused combinations (:class:`~maasrec.exceptions.DataError`): ``world_size > 1`` (DDP),
``grad_accumulation > 1``, a non-private ``clip_grad_norm``, negative samplers that read
other users' data (``"popularity"``, ``"in_batch"``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..exceptions import DataError, MaasrecError

__all__ = ["DP_KEYS", "DPSpec", "PrivateSGD", "check_dp", "dp_model_check"]

logger = logging.getLogger("maasrec.privacy.dp")

#: The keys a ``dp`` dict may hold.
DP_KEYS = ("epsilon", "noise_multiplier", "delta", "max_grad_norm", "batch_size",
           "accountant")
_ACCOUNTANTS = ("rdp", "prv")
#: RDP orders searched: Opacus's default grid has 100 fractional orders in (1, 11), whose
#: terms are slow to compute; this grid (a subset of the orders, so the bound is the same or
#: slightly looser, never tighter: +0.05% at epsilon 8, +1.3% at epsilon 20 with q=0.02)
#: makes each epsilon 3-5x faster.
RDP_ALPHAS = (1.5, 1.75, *range(2, 65), 80, 96, 128, 256)
#: The model classes that train with DP-SGD (by class name; subclasses count).
SUPPORTED = ("HybridRecommender", "NeuMF", "SequentialRecommender")


def _opacus():
    try:
        import opacus  # noqa: F401
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers.optimizer import _generate_noise
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MaasrecError("differential privacy (dp=...) needs Opacus: pip install "
                           f"'maasrec[privacy]' (or pip install opacus); {exc}") from None
    return create_accountant, get_noise_multiplier, _generate_noise, \
        UniformWithReplacementSampler


def _real(name: str, value: Any, *, low: float, high: float | None = None,
          high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"dp[{name!r}] must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= low or (high is not None and (v >= high if high_open
                                                                  else v > high)):
        bound = f"in ({low:g}, {high:g})" if high is not None else f"> {low:g} and finite"
        hint = (" (for no privacy pass dp=None)" if name == "epsilon" and v == math.inf
                else "")
        raise DataError(f"dp[{name!r}] must be {bound}, got {value!r}{hint}")
    return v


@dataclass(frozen=True)
class DPSpec:
    """A checked ``dp`` parameter (see :func:`check_dp`).

    Attributes
    ----------
    epsilon : float or None
        Target epsilon for the planned epochs (the noise multiplier is calibrated).
    noise_multiplier : float or None
        Fixed noise multiplier (the spent epsilon is reported).
    delta : float or None
        None: ``1 / n_users`` of the fit.
    max_grad_norm : float
        Per-user clipping norm.
    batch_size : int or None
        Expected users per step (Poisson sampling rate ``batch_size / n_users``); None:
        ``n_users // 10`` clipped to [16, 512].
    accountant : {"rdp", "prv"}
    """

    epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    batch_size: int | None = None
    accountant: str = "rdp"

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return dataclasses.asdict(self)


def check_dp(dp: Any) -> DPSpec | None:
    """Check a model's ``dp`` parameter.

    Parameters
    ----------
    dp : None or mapping
        ``{"epsilon": float > 0}`` or ``{"noise_multiplier": float > 0}`` (exactly one),
        optionally ``"delta"`` in (0, 1) (default ``1 / n_users``), ``"max_grad_norm"``
        > 0 (default 1.0), ``"batch_size"`` (expected users per step) and
        ``"accountant"`` (``"rdp"`` or ``"prv"``).

    Returns
    -------
    DPSpec or None

    Raises
    ------
    DataError
        Not a mapping, unknown keys, a value out of range (named), both or neither of
        ``epsilon`` and ``noise_multiplier``.
    """
    if dp is None:
        return None
    if isinstance(dp, DPSpec):
        dp = dp.to_dict()
    if not isinstance(dp, Mapping):
        raise DataError(f"dp must be None or a dict with keys from {list(DP_KEYS)}, got "
                        f"{dp!r}")
    unknown = sorted(str(k) for k in dp if k not in DP_KEYS)
    if unknown:
        raise DataError(f"dp has unknown keys {unknown}; allowed: {list(DP_KEYS)}")
    eps, sigma = dp.get("epsilon"), dp.get("noise_multiplier")
    if (eps is None) == (sigma is None):
        raise DataError("dp needs exactly one of 'epsilon' (a target, the noise is "
                        "calibrated) and 'noise_multiplier', got "
                        f"epsilon={eps!r}, noise_multiplier={sigma!r}")
    out: dict[str, Any] = {}
    if eps is not None:
        out["epsilon"] = _real("epsilon", eps, low=0.0)
    if sigma is not None:
        out["noise_multiplier"] = _real("noise_multiplier", sigma, low=0.0)
    if dp.get("delta") is not None:
        out["delta"] = _real("delta", dp["delta"], low=0.0, high=1.0)
    if dp.get("max_grad_norm") is not None:
        out["max_grad_norm"] = _real("max_grad_norm", dp["max_grad_norm"], low=0.0)
    bs = dp.get("batch_size")
    if bs is not None:
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise DataError(f"dp['batch_size'] must be a positive integer, got {bs!r}")
        out["batch_size"] = int(bs)
    acc = dp.get("accountant", "rdp")
    if acc not in _ACCOUNTANTS:
        raise DataError(f"dp['accountant'] must be one of {list(_ACCOUNTANTS)}, got {acc!r}")
    out["accountant"] = acc
    return DPSpec(**out)


_FROM_MODEL = object()


def dp_model_check(model: Any, dp: Any = _FROM_MODEL) -> DPSpec | None:
    """Check a ``dp`` parameter for ``model`` and the model settings DP-SGD cannot honour.

    Parameters
    ----------
    model : Recommender
    dp : None or mapping, optional
        Default: ``model.dp``.

    Returns
    -------
    DPSpec or None

    Raises
    ------
    DataError
        A model type without DP-SGD support, a bad ``dp``, or a setting that breaks the
        user-level guarantee (named).
    """
    if dp is _FROM_MODEL:
        dp = getattr(model, "dp", None)
    if dp is None:
        return None
    name = type(model).__name__
    if not any(c.__name__ in SUPPORTED for c in type(model).__mro__):
        raise DataError(f"{name} does not support dp=...: DP-SGD is available for "
                        f"{list(SUPPORTED)}")
    spec = check_dp(dp)
    sampler = getattr(model, "negative_sampler", "uniform")
    if sampler in ("popularity", "in_batch") and getattr(model, "loss", "") not in (
            "softmax", "mse"):
        raise DataError(f"{name}(dp=...) needs negative_sampler='uniform', got "
                        f"{sampler!r}: it reads other users' interactions outside the "
                        "private gradient")
    if getattr(model, "clip_grad_norm", None) is not None:
        raise DataError(f"{name}(dp=...) clips each user's gradient to "
                        "dp['max_grad_norm']; set clip_grad_norm=None, got "
                        f"{model.clip_grad_norm!r}")
    return spec


class PrivateSGD:
    """The DP-SGD step of one fit: Poisson-sampled users, per-user clipping, noise,
    accounting. Handed to the :class:`~maasrec.training.Trainer` as
    :attr:`TrainingTask.privacy <maasrec.training.TrainingTask>`.

    Parameters
    ----------
    spec : DPSpec
    loss : callable
        The task's ``loss(batch) -> scalar``; called once per sampled user.
    unit_batch : callable
        ``unit_batch(user) -> batch``: the batch of all of one user's training data (a
        user index from ``units``).
    units : sequence of int
        The users with training data (the privacy population, ``n_users``).
    epochs : int
        Planned epochs (for the noise calibration from ``epsilon``).
    seed : int
        Seeds the sampler and the noise (two generators, checkpointed by the trainer).
    name : str
        For messages and logs.

    Attributes
    ----------
    noise_multiplier, sample_rate, delta : float
    steps_per_epoch : int
    epsilons : list of float
        The spent epsilon after each finished epoch.
    generators : list of torch.Generator
    """

    def __init__(self, spec: DPSpec, *, loss: Callable[[Any], torch.Tensor],
                 unit_batch: Callable[[int], Any], units, epochs: int, seed: int,
                 name: str = "model"):
        create_accountant, get_noise_multiplier, self._noise, self._sampler_cls = _opacus()
        self._create_accountant = create_accountant
        self.spec, self.loss, self.unit_batch, self.name = spec, loss, unit_batch, name
        self.units = np.asarray(units, dtype=np.int64)
        n = len(self.units)
        if n < 2:
            raise DataError(f"{name}(dp=...): DP-SGD needs 2 or more users with training "
                            f"data, got {n}")
        self.n_units = n
        bs = spec.batch_size if spec.batch_size is not None else int(min(512, max(16,
                                                                                  n // 10)))
        if bs >= n:
            raise DataError(f"{name}: dp['batch_size'] must be below the {n} users of the "
                            f"fit (Poisson sampling), got {bs}")
        self.expected_batch = float(bs)
        self.sample_rate = bs / n
        self.steps_per_epoch = int(1 / self.sample_rate)
        self.delta = spec.delta if spec.delta is not None else 1.0 / n
        self.epochs = int(epochs)
        if spec.noise_multiplier is not None:
            self.noise_multiplier = float(spec.noise_multiplier)
        else:
            try:
                self.noise_multiplier = float(get_noise_multiplier(
                    target_epsilon=spec.epsilon, target_delta=self.delta,
                    sample_rate=self.sample_rate,
                    steps=max(1, self.epochs * self.steps_per_epoch),
                    accountant=spec.accountant, **self._accountant_kwargs()))
            except ValueError as exc:
                raise DataError(f"{name}: no noise multiplier reaches dp['epsilon']="
                                f"{spec.epsilon!r} at delta={self.delta:g}: {exc}") from None
        self.max_grad_norm = float(spec.max_grad_norm)
        self._sample_gen = torch.Generator().manual_seed(int(seed) % 2**63)
        self._noise_gen = torch.Generator().manual_seed((int(seed) + 7919) % 2**63)
        self.generators = [self._sample_gen, self._noise_gen]
        self.epsilons: list[float] = []
        self.steps_at_epoch: list[int] = []
        self.clipped_fraction: list[float] = []  # per epoch: users whose norm > C
        self.median_norm: list[float] = []  # per epoch: median per-user gradient norm
        self._epoch_norms: list[float] = []
        self._trainer = None
        self.last_norms: list[float] = []
        logger.info("%s: DP-SGD over %d users, %d expected per step (q=%.4g), noise "
                    "multiplier %.4g, max_grad_norm %g, delta %.3g, %s accountant", name, n,
                    bs, self.sample_rate, self.noise_multiplier, self.max_grad_norm,
                    self.delta, spec.accountant)

    # -- what the trainer calls --------------------------------------------------------
    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        """Poisson-sampled users (indices into ``units``' values) of one epoch's steps."""
        sampler = self._sampler_cls(num_samples=self.n_units, sample_rate=self.sample_rate,
                                    generator=self._sample_gen, steps=self.steps_per_epoch)
        for idx in sampler:
            yield torch.from_numpy(self.units[np.asarray(idx, dtype=np.int64)])

    def attach(self, trainer) -> None:
        """Refuse what DP-SGD cannot honour; called by the trainer's constructor."""
        from ..training.trainer import world_size

        c = trainer.config
        if world_size() > 1:
            raise DataError(f"{self.name}: dp=... is not supported with distributed training "
                            f"(world size {world_size()}); train on one process")
        if int(c.grad_accumulation) != 1:
            raise DataError(f"{self.name}: dp=... needs grad_accumulation=1, got "
                            f"{c.grad_accumulation!r} (raise dp['batch_size'] instead)")
        if c.clip_grad_norm is not None:
            raise DataError(f"{self.name}: dp=... clips per user (dp['max_grad_norm']); "
                            f"clip_grad_norm must be None, got {c.clip_grad_norm!r}")
        trainer.amp_type, trainer.scaler = None, None
        self._trainer = trainer

    def backward(self, users: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """Set ``p.grad`` of ``params`` to the noised mean of the clipped per-user
        gradients of ``users``; return the mean loss over those users."""
        from ..training.runtime import to_device

        device = params[0].device if params else torch.device("cpu")
        summed = [torch.zeros_like(p) for p in params]
        losses = []
        self.last_norms = []
        c = self.max_grad_norm
        for u in users.tolist():
            loss = self.loss(to_device(self.unit_batch(int(u)), device))
            if not bool(torch.isfinite(loss.detach())):
                return loss
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            sq = [g.detach().double().pow(2).sum() for g in grads if g is not None]
            norm = float(torch.stack(sq).sum().sqrt()) if sq else 0.0
            self.last_norms.append(norm)
            self._epoch_norms.append(norm)
            factor = min(1.0, c / (norm + 1e-6))
            for s, g in zip(summed, grads):
                if g is not None:
                    s.add_(g.detach().to(s.dtype), alpha=factor)
            losses.append(loss.detach())
        std = self.noise_multiplier * c
        for p, s in zip(params, summed):
            noise = self._noise(std=std, reference=s.cpu(), generator=self._noise_gen)
            s.add_(noise.to(s.device, s.dtype))
            p.grad = s.div_(self.expected_batch)
        if not losses:
            return torch.zeros((), device=device)
        return torch.stack(losses).float().mean()

    def epsilon(self, steps: int) -> float:
        """The epsilon spent after ``steps`` noised steps (at ``delta``)."""
        if steps <= 0:
            return 0.0
        acc = self._create_accountant(self.spec.accountant)
        acc.history = [(self.noise_multiplier, self.sample_rate, int(steps))]
        return float(acc.get_epsilon(delta=self.delta, **self._accountant_kwargs()))

    def _accountant_kwargs(self) -> dict[str, Any]:
        return {"alphas": list(RDP_ALPHAS)} if self.spec.accountant == "rdp" else {}

    def end_epoch(self, steps: int) -> dict[str, float]:
        """Record the epsilon spent after an epoch; the log entries of that epoch."""
        eps = self.epsilon(steps)
        self.epsilons.append(eps)
        self.steps_at_epoch.append(int(steps))
        norms = np.asarray(self._epoch_norms, dtype=np.float64)
        self._epoch_norms = []
        clipped = float((norms > self.max_grad_norm).mean()) if len(norms) else 0.0
        median = float(np.median(norms)) if len(norms) else 0.0
        self.clipped_fraction.append(clipped)
        self.median_norm.append(median)
        logger.info("%s: epsilon %.4g spent after %d steps; %.0f%% of the users clipped "
                    "(median gradient norm %.3g, max_grad_norm %g)", self.name, eps, steps,
                    100 * clipped, median, self.max_grad_norm)
        return {"epsilon": eps}

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match (the privacy settings of the fit)."""
        return {"noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "max_grad_norm": self.max_grad_norm, "delta": self.delta,
                "accountant": self.spec.accountant, "n_users": self.n_units}

    def state_dict(self) -> dict[str, Any]:
        """The per-epoch record (for a checkpoint)."""
        return {"epsilons": list(self.epsilons), "steps_at_epoch": list(self.steps_at_epoch),
                "clipped_fraction": list(self.clipped_fraction),
                "median_norm": list(self.median_norm)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.epsilons = [float(x) for x in state.get("epsilons", [])]
        self.steps_at_epoch = [int(x) for x in state.get("steps_at_epoch", [])]
        self.clipped_fraction = [float(x) for x in state.get("clipped_fraction", [])]
        self.median_norm = [float(x) for x in state.get("median_norm", [])]

    def record(self) -> dict[str, Any]:
        """The privacy record kept in ``training_log_["privacy"]`` (JSON-ready)."""
        return {
            "unit": "user", "mechanism": "DP-SGD (Poisson sampling, per-user clipping, "
                                         "Gaussian noise)",
            "accountant": self.spec.accountant, "target_epsilon": self.spec.epsilon,
            "epsilon": self.epsilons[-1] if self.epsilons else 0.0,
            "epsilon_per_epoch": list(self.epsilons), "delta": self.delta,
            "noise_multiplier": self.noise_multiplier, "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.sample_rate, "expected_batch_users": self.expected_batch,
            "n_users": self.n_units,
            "steps": self.steps_at_epoch[-1] if self.steps_at_epoch else 0,
            "clipped_fraction_per_epoch": list(self.clipped_fraction),
            "median_grad_norm_per_epoch": list(self.median_norm),
            "opacus": _opacus_version(),
        }


def _opacus_version() -> str:
    import opacus

    return str(opacus.__version__)


def wrap_task(task, engine: PrivateSGD):
    """``task`` with the engine's Poisson batches, its generators and ``privacy`` set
    (the trainer then runs the DP-SGD step)."""
    inner_sd, inner_load = task.state_dict, task.load_state_dict

    def state_dict() -> dict:
        return {"task": inner_sd() if inner_sd is not None else None,
                "privacy": engine.state_dict()}

    def load_state_dict(state: dict) -> None:
        if inner_load is not None and state.get("task") is not None:
            inner_load(state["task"])
        engine.load_state_dict(state.get("privacy") or {})

    return dataclasses.replace(task, batches=engine.batches, privacy=engine,
                               steps_per_epoch=engine.steps_per_epoch,
                               generators=[*task.generators, *engine.generators],
                               state_dict=state_dict, load_state_dict=load_state_dict)


def private_task(task, spec: DPSpec, *, unit_batch: Callable[[int], Any], units, epochs: int,
                 seed: int, name: str):
    """``(private task, engine)``: ``task`` trained with DP-SGD over ``units`` (users).

    Parameters
    ----------
    task : maasrec.training.TrainingTask
        The model's non-private task; its ``loss`` is called on ``unit_batch(user)``.
    spec : DPSpec
    unit_batch : callable
        ``unit_batch(user) -> batch`` of all of that user's training data.
    units : array of int
        The users with training data.
    epochs, seed, name
        See :class:`PrivateSGD`.

    Returns
    -------
    (TrainingTask, PrivateSGD)
    """
    engine = PrivateSGD(spec, loss=task.loss, unit_batch=unit_batch, units=units,
                        epochs=epochs, seed=seed_for_privacy(seed), name=name)
    return wrap_task(task, engine), engine


def seed_for_privacy(seed: int) -> int:
    """The sampler/noise seed of a fit seeded with ``seed`` (kept apart from its other
    streams)."""
    from ..training.rng import seed_from

    return int(seed_from(np.random.default_rng([int(seed) % 2**63, 0xD9])))


def hybrid_private_task(training, task, active: torch.Tensor, seed: int, *,
                        by_interaction: bool, name: str):
    """HybridRecommender/NeuMF: one user's batch is ``[user]`` (the user and grouped
    plans) or the range of the user's interaction rows (the interaction plan)."""
    dev = training.device
    indptr = training.indptr

    if by_interaction:
        def unit_batch(u: int) -> torch.Tensor:
            return torch.arange(int(indptr[u]), int(indptr[u + 1]), device=dev)
    else:
        def unit_batch(u: int) -> torch.Tensor:
            return torch.tensor([u], dtype=torch.long, device=dev)

    return private_task(task, training.settings.dp, unit_batch=unit_batch,
                        units=active.cpu().numpy(), epochs=training.settings.epochs,
                        seed=seed, name=name)


def sequential_private_task(task, spec: DPSpec, *, items: np.ndarray, indptr: np.ndarray,
                            max_len: int, seed: int, epochs: int):
    """SequentialRecommender: one user's batch is all of the user's training windows (a
    user with more than ``max_len`` targets has several; ``_sequences._windows`` cuts
    each sequence's windows contiguously, so user ``u``'s are a range)."""
    from ..neural._sequences import _window_batch, _windows

    starts, lengths = _windows(indptr, int(max_len))
    n_targets = np.maximum(np.diff(indptr) - 1, 0)
    n_win = -(-n_targets // int(max_len))
    win_ptr = np.concatenate([[0], np.cumsum(n_win)]).astype(np.int64)
    flat = torch.from_numpy(np.array(items, dtype=np.int64))
    starts_t, lengths_t = torch.from_numpy(starts), torch.from_numpy(lengths)

    def unit_batch(u: int):
        sl = slice(int(win_ptr[u]), int(win_ptr[u + 1]))
        return _window_batch(flat, starts_t[sl], lengths_t[sl])

    users = np.nonzero(n_win > 0)[0]
    return private_task(task, spec, unit_batch=unit_batch, units=users, epochs=epochs,
                        seed=seed, name="SequentialRecommender")


class SequentialPrivacy:
    """``wrap_task`` of :func:`~maasrec.training.fit_loop` for SequentialRecommender:
    makes the next-item task private (:func:`sequential_private_task`) and keeps the
    engine (``engine``) for the training log.

    Parameters
    ----------
    spec : DPSpec
    items, indptr : numpy.ndarray
        The training sequences, CSR-style (time order).
    max_len, seed, epochs : int
    """

    def __init__(self, spec: DPSpec, items: np.ndarray, indptr: np.ndarray, *, max_len: int,
                 seed: int, epochs: int):
        self.spec, self.items, self.indptr = spec, items, np.asarray(indptr, dtype=np.int64)
        self.max_len, self.seed, self.epochs = int(max_len), int(seed), int(epochs)
        self.engine: PrivateSGD | None = None

    def __call__(self, task):
        task, self.engine = sequential_private_task(
            task, self.spec, items=self.items, indptr=self.indptr, max_len=self.max_len,
            seed=self.seed, epochs=self.epochs)
        return task
