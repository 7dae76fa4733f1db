"""Data-parallel training on ``torch.distributed``: process group, ranks, sharding.

Launch any maasrec training under ``torchrun`` (``torchrun --nproc-per-node 2 -m
maasrec.train config.toml``); :func:`init_distributed` reads torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins
the process group: gloo on the CPU, NCCL on CUDA (rank ``r`` of a node uses
``cuda:LOCAL_RANK``). Once a group of more than one process is initialised, the
:class:`~maasrec.training.Trainer` wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel` and gives each rank its
:func:`shard` of every batch.

CPU ranks that all run on one machine sum their gradient buckets through one shared
memory segment instead of gloo's sockets (:func:`attach_allreduce`; the same bits for
two ranks, about half the CPU time and latency); ``MAASREC_DIST_SHM=0`` keeps gloo.

A rank that cannot reach the others raises :class:`DistributedError` after
``MAASREC_DIST_TIMEOUT`` seconds (default 300) instead of waiting for ever.
"""

from __future__ import annotations

import datetime
import gc
import os
from typing import Any

import torch

from ..exceptions import DataError, MaasrecError

__all__ = ["DistributedError", "barrier", "broadcast_float", "init_distributed",
           "is_distributed", "is_rank0", "rank", "shard", "teardown", "world_size"]

#: Environment variable: seconds a rank waits for the others (process-group init and
#: every collective) before :class:`DistributedError`.
TIMEOUT_ENV = "MAASREC_DIST_TIMEOUT"


class DistributedError(MaasrecError, RuntimeError):
    """The process group cannot be formed (a rank unreachable, a timeout, bad env)."""


def _dist():
    return torch.distributed


def is_distributed() -> bool:
    """True when a ``torch.distributed`` group of more than one process is initialised.

    Returns
    -------
    bool
    """
    return world_size() > 1


def world_size() -> int:
    """Processes in the default group (1 when none is initialised).

    Returns
    -------
    int
    """
    d = _dist()
    return int(d.get_world_size()) if d.is_available() and d.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 when none is initialised).

    Returns
    -------
    int
    """
    d = _dist()
    return int(d.get_rank()) if d.is_available() and d.is_initialized() else 0


def is_rank0() -> bool:
    """True on rank 0, and in a process that is not distributed.

    Returns
    -------
    bool
    """
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing when not distributed)."""
    if is_distributed():
        _dist().barrier()


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        raw = os.environ.get(TIMEOUT_ENV, "300")
        try:
            timeout = float(raw)
        except ValueError:
            raise DataError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise DataError(f"the distributed timeout must be a positive number of seconds, got "
                        f"{timeout!r}")
    return float(timeout)


def _env_int(name: str) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise DistributedError(f"environment variable {name} must be an integer, got "
                               f"{raw!r} (launch with torchrun)") from None
    if value < 0:
        raise DistributedError(f"environment variable {name} must be >= 0, got {value}")
    return value


def init_distributed(device: Any = None, *, timeout: float | None = None) -> torch.device:
    """Join the process group described by torchrun's environment, if there is one.

    Without ``WORLD_SIZE`` in the environment (a plain ``python`` run) or with
    ``WORLD_SIZE=1`` nothing is initialised and the device is returned as resolved by
    :func:`maasrec.device.resolve_device`.

    Parameters
    ----------
    device : str or torch.device, optional
        As for :func:`~maasrec.device.resolve_device`; on CUDA each process uses
        ``cuda:LOCAL_RANK``.
    timeout : float, optional
        Seconds to wait for the other ranks (default: ``MAASREC_DIST_TIMEOUT``, else 300).

    Returns
    -------
    torch.device
        This process's device.

    Raises
    ------
    DistributedError
        A malformed environment, or the other ranks not reachable within ``timeout``.
    DataError
        A timeout that is not a positive number.
    """
    from ..device import resolve_device

    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if "WORLD_SIZE" not in os.environ:
        return dev
    ws = _env_int("WORLD_SIZE")
    if ws <= 1:
        return dev
    r, local = _env_int("RANK"), _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if r >= ws:
        raise DistributedError(f"RANK {r} is not below WORLD_SIZE {ws}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise DistributedError(f"environment variable {name} is not set (launch with "
                                   "torchrun)")
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        resolve_device(dev)  # DeviceError when this node has fewer GPUs than ranks
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    d = _dist()
    if d.is_initialized():
        return dev
    seconds = _timeout(timeout)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        d.init_process_group(backend, rank=r, world_size=ws,
                             timeout=datetime.timedelta(seconds=seconds), **_store(ws, seconds))
        d.barrier()  # every rank present: fail here, not in the first training step
    except Exception as exc:  # torch raises several types for one cause
        teardown()
        raise DistributedError(
            f"rank {r} of {ws} could not reach the other ranks at {where} within "
            f"{seconds:g}s ({backend}): {str(exc).splitlines()[0] if str(exc) else exc!r}. "
            f"Start all ranks with torchrun, check MASTER_ADDR/MASTER_PORT and the "
            f"firewall, or raise {TIMEOUT_ENV}") from None
    return dev


def _store(ws: int, seconds: float) -> dict[str, Any]:
    """``init_method="env://"``, or under a torchrun agent that keeps its store across
    ``--max-restarts`` attempts, that store under a per-attempt prefix (a restarted
    rank must not read the gloo addresses of the killed attempt)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        return {"init_method": "env://"}
    d = _dist()
    store = d.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), ws,
                       is_master=False, timeout=datetime.timedelta(seconds=seconds))
    return {"store": d.PrefixStore(f"/maasrec/attempt_{attempt}", store)}


def teardown() -> None:
    """Leave the process group (nothing when none is initialised)."""
    d = _dist()
    if d.is_available() and d.is_initialized():
        gc.collect()  # a DDP reducer left in a reference cycle must go before its group
        d.destroy_process_group()


def _leaves_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            raise DataError("a 0-d tensor batch cannot be sharded across ranks")
        return int(batch.shape[0])
    if isinstance(batch, (list, tuple, dict)) and batch:
        values = batch.values() if isinstance(batch, dict) else batch
        sizes = {_leaves_len(v) for v in values}
        if len(sizes) != 1:
            raise DataError(f"a batch's tensors have different leading sizes {sorted(sizes)}; "
                            "it cannot be sharded across ranks")
        return sizes.pop()
    raise DataError(f"a batch of type {type(batch).__name__} cannot be sharded across ranks: "
                    "use a tensor, or a dict/list/tuple of tensors with one leading batch "
                    "dimension")


def _take(batch: Any, r: int, n: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[r::n]
    if isinstance(batch, dict):
        return {k: _take(v, r, n) for k, v in batch.items()}
    return type(batch)(_take(v, r, n) for v in batch) if not hasattr(batch, "_fields") \
        else type(batch)(*(_take(v, r, n) for v in batch))


def shard(batch: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s part of a global batch: rows ``rank, rank + W, rank + 2W, ...``.

    Strided rather than contiguous, so batches sorted by length (sequence windows) give
    every rank similar work. Deterministic: the same batch gives the same shards. A
    batch of fewer rows than ranks is given whole to every rank (the averaged gradient
    is then the batch's own).

    Parameters
    ----------
    batch : tensor, or dict/list/tuple (namedtuple) of tensors
        Every tensor with the same leading (batch) dimension.
    rank, world_size : int

    Returns
    -------
    The same structure with ``ceil`` or ``floor(B / world_size)`` rows.

    Raises
    ------
    DataError
        A batch with no leading batch dimension, or tensors of different lengths.
    """
    if not (0 <= rank < world_size):
        raise DataError(f"rank must be in [0, {world_size}), got {rank}")
    n = _leaves_len(batch)
    if world_size == 1 or n < world_size:
        return batch
    return _take(batch, rank, world_size)


def balanced_order(cost: torch.Tensor, world_size: int) -> torch.Tensor:
    """An order of a batch's rows whose :func:`shard` parts cost about the same.

    Rows sorted by ``cost`` (descending, ties by position) are dealt to the ranks in a
    snake: ranks ``0..W-1`` take the first ``W`` rows, ``W-1..0`` the next ``W``, and so
    on, so every rank gets the same number of rows (as with :func:`shard`) and nearly
    the same total cost. Deterministic.

    Parameters
    ----------
    cost : torch.Tensor, shape (B,)
        The work of each row (e.g. a user's interactions).
    world_size : int

    Returns
    -------
    torch.Tensor of int64, shape (B,)
        Positions into the batch: ``batch[order]`` sharded gives the balanced parts.
    """
    n = int(cost.shape[0])
    if world_size <= 1 or n <= world_size:
        return torch.arange(n, device=cost.device)
    by_cost = torch.sort(cost, descending=True, stable=True).indices
    k = torch.arange(n, device=cost.device)
    block, pos = k // world_size, k % world_size
    # a last, partial block goes forwards: ranks keep shard's row counts
    full = block < n // world_size
    rank_of = torch.where((block % 2 == 1) & full, world_size - 1 - pos, pos)
    # the rows of rank r sit at r, r + W, ...: the j-th row dealt to r goes to j * W + r
    slot = torch.empty_like(k)
    for r in range(world_size):
        mine = torch.nonzero(rank_of == r).squeeze(1)
        slot[mine] = torch.arange(len(mine), device=cost.device) * world_size + r
    order = torch.empty_like(k)
    order[slot] = by_cost
    return order


def broadcast_float(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank (unchanged when not distributed).

    Parameters
    ----------
    values : list of float
    device : torch.device
        Where the collective runs (the CUDA device for NCCL).

    Returns
    -------
    list of float
    """
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    _dist().broadcast(t, src=0)
    return [float(x) for x in t.tolist()]


def attach_allreduce(ddp: Any, device: torch.device) -> Any:
    """Give ``ddp`` (a ``DistributedDataParallel``) the shared-memory all-reduce when
    every rank of the default group runs on this machine on the CPU (call on every rank).

    The buckets are averaged in rank order through one shared memory segment (see
    ``maasrec.training._shm_reduce``): for two ranks the same bits as gloo's all-reduce,
    with about half its CPU time and latency. Ranks on several machines, CUDA, no
    ``/dev/shm`` or ``MAASREC_DIST_SHM=0`` keep DDP's default all-reduce.

    Parameters
    ----------
    ddp : torch.nn.parallel.DistributedDataParallel
    device : torch.device
        The training device.

    Returns
    -------
    object or None
        The hook's state, for :func:`release_allreduce`; None when DDP keeps its own.
    """
    from ._shm_reduce import shm_allreduce_hook, shm_hook

    state = shm_allreduce_hook(device)
    if state is not None:
        ddp.register_comm_hook(state, shm_hook)
    return state


def release_allreduce(state: Any) -> None:
    """Unmap the segment of :func:`attach_allreduce` (None: nothing)."""
    if state is not None:
        state.close()
