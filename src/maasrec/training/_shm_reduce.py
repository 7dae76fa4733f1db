"""Gradient all-reduce through shared memory for CPU ranks on one machine.

DDP on the CPU all-reduces its gradient buckets with gloo, which moves them through
TCP sockets even between processes of one machine: on a 2-core machine the copies in
and out of the kernel and gloo's thread cost about 2 ms of CPU per 4 MB bucket, taken
from the training's own cores. When every rank runs on the same machine the bucket can
instead go through one shared memory segment: each rank writes its bucket (divided by
the world size, as DDP's default hook does) into its own slot, and after a barrier sums
its share of the elements over the slots in rank order into a common result, which
every rank copies back after a second barrier. The sum runs in a fixed order, so every
rank gets the same bits (the weights stay identical on all ranks) and a rerun the same
result; for two ranks it is the one sum ``a/2 + b/2`` that gloo computes.

The hook holds the buckets of one backward pass until the last one is ready and
reduces them together (one pair of barriers per step instead of one per bucket): every
barrier is a point where a rank waits for the slower one, and two ranks on two busy
cores are rarely at the same point of the backward at the same time.

The barriers themselves go through the segment too, where the CPU orders stores as
written (x86-64: a rank that sees another's arrival counter also sees the slot it wrote
before it): each rank bumps its own counter, on its own cache line, and waits until every
other counter has reached it, yielding the core while it waits and sleeping after a
while; past ``MAASREC_DIST_TIMEOUT`` it raises
:class:`~maasrec.training.distributed.DistributedError`. A gloo all-reduce of one number
cost 1.3-1.6 ms per barrier on both of two ranks of a 2-core machine (its threads wake up
and talk through a socket). On other CPUs gloo's all-reduce is the barrier.

:func:`shm_hook` is a DDP communication hook (``ddp.register_comm_hook(state,
shm_hook)``); its state, a :class:`ShmAllReduce`, comes from :func:`shm_allreduce_hook`
when the ranks do share memory, which returns None otherwise (different machines, CUDA,
no ``/dev/shm``, or ``MAASREC_DIST_SHM=0``) and leaves DDP on its default all-reduce.
"""

from __future__ import annotations

import logging
import mmap
import os
import platform
import secrets
import threading
import time
from typing import Any

import torch

logger = logging.getLogger("maasrec.training")

#: Environment variable: ``0`` keeps gloo's all-reduce for CPU ranks on one machine.
SHM_ENV = "MAASREC_DIST_SHM"
#: Bytes of one rank's slot; a larger bucket goes through in pieces of this size.
SLOT_BYTES = 8 << 20
_SHM_DIR = "/dev/shm"
_HEADER = 64                 # the token rank 0 writes, checked by the others
_LINE = 64                   # one arrival counter per rank, each on its own cache line
#: CPUs whose memory model keeps stores in program order (the counters' barrier is safe)
_TSO = ("x86_64", "amd64", "i386", "i686", "x86")
_SPIN_S = 0.005              # waiting: yield the core this long, then sleep between looks


class ShmAllReduce:
    """The state of :func:`shm_hook`: buckets summed through one shared memory segment.

    Built by :func:`shm_allreduce_hook` (every rank together); call :meth:`close` to
    unmap the segment (the file itself is removed as soon as every rank has mapped it).

    Parameters
    ----------
    group : ProcessGroup
        The ranks (synchronised through its barriers).
    buffer : mmap.mmap
        The mapped segment: a header, then ``world_size + 1`` slots of ``slot_bytes``.
    slot_bytes : int
    """

    def __init__(self, group: Any, buffer: mmap.mmap, slot_bytes: int):
        dist = torch.distributed
        self.group, self._mmap, self.slot_bytes = group, buffer, int(slot_bytes)
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self._bytes = torch.frombuffer(buffer, dtype=torch.uint8)
        self._flag = torch.zeros(1)
        start = _HEADER + (self.world_size + 1) * self.slot_bytes
        self._arrived = None             # the counters' barrier (x86-64), else gloo's
        if len(buffer) >= start + _LINE * self.world_size and \
                platform.machine().lower() in _TSO:
            self._arrived = self._bytes[start:start + _LINE * self.world_size].view(
                torch.int64)[::_LINE // 8]
        self._generation = 0
        self._fence = threading.Lock()
        from .distributed import _timeout

        self._timeout = _timeout(None)
        #: buckets of the running backward pass waiting for the last one (shm_hook)
        self._pending: list[tuple[torch.Tensor, Any]] = []

    def _slot(self, i: int, dtype: torch.dtype, n: int) -> torch.Tensor:
        start = _HEADER + i * self.slot_bytes
        return self._bytes[start:start + n * dtype.itemsize].view(dtype)

    def _barrier(self) -> None:
        if self._arrived is None:
            torch.distributed.all_reduce(self._flag, group=self.group)
            return
        self._generation += 1
        g = self._generation
        counters = self._arrived
        # a locked instruction (the lock's compare-and-swap) orders every earlier store,
        # streaming stores of large copies included, before the counter's
        self._fence.acquire()
        self._fence.release()
        counters[self.rank] = g
        if int(counters.min()) >= g:
            return
        start = time.monotonic()
        while int(counters.min()) < g:
            waited = time.monotonic() - start
            if waited < _SPIN_S:
                os.sched_yield()
            elif waited < self._timeout:
                time.sleep(0.0002)
            else:
                from .distributed import TIMEOUT_ENV, DistributedError

                late = [i for i in range(self.world_size) if int(counters[i]) < g]
                raise DistributedError(
                    f"rank {self.rank}: rank(s) {late} did not reach the gradient all-reduce "
                    f"within {self._timeout:g} s ({TIMEOUT_ENV}); a rank died or hangs")

    def reduce_(self, flat: torch.Tensor) -> torch.Tensor:
        """Average the contiguous 1-d ``flat`` over the ranks, in place; returns it."""
        step = self.slot_bytes // flat.element_size()
        for s in range(0, flat.numel(), step):
            self._reduce_pieces([flat[s:s + step]])
        return flat

    def reduce_many_(self, flats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Average several contiguous 1-d tensors over the ranks, in place: those of one
        dtype that fit in a slot together go through one pair of barriers."""
        group: list[torch.Tensor] = []
        used = 0
        for flat in flats:
            size = flat.numel() * flat.element_size()
            if group and (flat.dtype != group[0].dtype or used + size > self.slot_bytes):
                self._reduce_pieces(group)
                group, used = [], 0
            if size > self.slot_bytes:
                self.reduce_(flat)
                continue
            group.append(flat)
            used += size
        if group:
            self._reduce_pieces(group)
        return flats

    def _reduce_pieces(self, parts: list[torch.Tensor]) -> None:
        """Average ``parts`` (one dtype, together at most a slot) as one vector."""
        W, r = self.world_size, self.rank
        dtype = parts[0].dtype
        n = sum(p.numel() for p in parts)
        mine = self._slot(r, dtype, n)
        offsets = []
        at = 0
        for part in parts:
            offsets.append(at)
            torch.div(part, W, out=mine[at:at + part.numel()])
            at += part.numel()
        self._barrier()                      # every rank's slot written
        lo, hi = r * n // W, (r + 1) * n // W
        out = self._slot(W, dtype, n)[lo:hi]
        out.copy_(self._slot(0, dtype, n)[lo:hi])
        for i in range(1, W):                # rank order: the same bits on every rank
            out.add_(self._slot(i, dtype, n)[lo:hi])
        self._barrier()                      # every share summed
        result = self._slot(W, dtype, n)
        for part, at in zip(parts, offsets):
            part.copy_(result[at:at + part.numel()])
        # no race with the next piece or call: a rank writes its slot again only after
        # the second barrier (every rank done reading the slots), and the result only
        # after the next first barrier (every rank done copying it out)

    def close(self) -> None:
        """Unmap the segment (idempotent)."""
        if self._mmap is not None:
            del self._bytes
            try:
                self._mmap.close()
            except BufferError:  # a view still alive: the mapping goes with it
                pass
            self._mmap = None


def shm_allreduce_hook(device: torch.device, group: Any = None,
                       slot_bytes: int = SLOT_BYTES) -> ShmAllReduce | None:
    """A :class:`ShmAllReduce` when every rank of ``group`` shares this machine's
    memory, else None (every rank decides together; call it on every rank).

    Parameters
    ----------
    device : torch.device
        The training device: only ``cpu`` uses shared memory.
    group : ProcessGroup, optional
        Default: the default group.
    slot_bytes : int
        Bytes of each rank's slot (larger buckets go through in pieces).

    Returns
    -------
    ShmAllReduce or None
    """
    dist = torch.distributed
    if device.type != "cpu" or os.environ.get(SHM_ENV, "1") == "0":
        return None
    W, r = dist.get_world_size(group), dist.get_rank(group)
    slot_bytes = max(64, int(slot_bytes) // 64 * 64)   # every slot aligned for any dtype
    total = _HEADER + (W + 1) * int(slot_bytes) + _LINE * W   # slots, then counters
    token = secrets.token_bytes(16)
    path = None
    if r == 0 and os.path.isdir(_SHM_DIR):
        path = os.path.join(_SHM_DIR, f"maasrec-ddp-{os.getpid()}-{secrets.token_hex(6)}")
    names: list[Any] = [path, token]
    buf, fd = None, -1
    try:
        if r == 0 and path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.ftruncate(fd, total)
            buf = mmap.mmap(fd, total)
            buf[:16] = token
    except OSError as exc:
        logger.debug("shared memory all-reduce unavailable: %s", exc)
        names[0] = None
    dist.broadcast_object_list(names, src=0, group=group)
    path, token = names
    ok = path is not None
    if ok and r != 0:
        try:
            fd = os.open(path, os.O_RDWR)
            buf = mmap.mmap(fd, total)
            ok = bytes(buf[:16]) == token    # the same memory, not a namesake elsewhere
        except (OSError, ValueError):
            ok = False
    if fd >= 0:
        os.close(fd)
    flag = torch.tensor([1.0 if ok else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=group)   # every rank mapped it
    if r == 0 and path is not None:
        try:
            os.unlink(path)                  # gone from the file system; mapped still
        except OSError:
            pass
    if flag.item() < 1.0:
        if buf is not None:
            buf.close()
        return None
    return ShmAllReduce(group, buf, slot_bytes)


def shm_hook(state: ShmAllReduce, bucket):  # DDP refuses other annotations than its own
    """The DDP communication hook: ``bucket.buffer()`` averaged over the ranks through
    ``state`` (a :class:`ShmAllReduce`). The buckets of a backward pass are held (their
    futures pending) until the last one is ready, then reduced together and completed;
    DDP waits for every bucket's future only when the backward pass ends."""
    buf = bucket.buffer()
    if buf.layout != torch.strided or not buf.is_contiguous():   # not a flat dense bucket
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        return allreduce_hook(state.group, bucket)
    fut: torch.futures.Future = torch.futures.Future()
    state._pending.append((buf, fut))
    if not bucket.is_last():
        return fut
    pending, state._pending = state._pending, []
    try:
        state.reduce_many_([b for b, _ in pending])
    except Exception as exc:  # DDP raises it from backward
        for _, f in pending:
            f.set_exception(exc)
        return fut
    for b, f in pending:
        f.set_result(b)
    return fut
