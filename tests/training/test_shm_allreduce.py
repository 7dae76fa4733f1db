"""The shared-memory all-reduce of DDP buckets for CPU ranks on one machine
(maasrec.training._shm_reduce): real ``torchrun`` runs of 2 and 3 CPU ranks."""

from __future__ import annotations

import sys

import pytest
import torch
from test_distributed import TIMEOUT, _env, _free_port, _metrics, _run

from maasrec.training._shm_reduce import shm_allreduce_hook

_SCRIPT = r'''
import glob, json, os
import torch
import torch.distributed as dist
from maasrec.training import Trainer, TrainingTask
from maasrec.training._shm_reduce import ShmAllReduce, shm_allreduce_hook
from maasrec.training.distributed import barrier, init_distributed, is_rank0, teardown

init_distributed("cpu")
r, W = dist.get_rank(), dist.get_world_size()
before = set(glob.glob("/dev/shm/maasrec-ddp-*"))
# a small slot: buckets go through in several pieces, the last one shorter
hook = shm_allreduce_hook(torch.device("cpu"), slot_bytes=4096)
left = set(glob.glob("/dev/shm/maasrec-ddp-*")) - before
out = {"hook": hook is not None, "files_left": sorted(left)}
if hook is not None:
    same, close = [], []
    for dtype, n in ((torch.float32, 2501), (torch.float64, 7), (torch.bfloat16, 4099)):
        x = torch.randn(n, generator=torch.Generator().manual_seed(r + 1)).to(dtype)
        ref = x.clone().div_(W)
        dist.all_reduce(ref)                 # what DDP's default hook computes
        got = hook.reduce_(x.clone())
        ranks = [torch.empty_like(got) for _ in range(W)]
        dist.all_gather(ranks, got)
        same.append(all(torch.equal(t, got) for t in ranks))   # every rank the same bits
        close.append(bool(torch.equal(got, ref)) if W == 2 else
                     bool(torch.allclose(got.double(), ref.double(), rtol=0,
                                           atol=3e-2 if dtype == torch.bfloat16 else 1e-6)))
    out.update(same_on_ranks=same, matches_gloo=close)
    # several buckets at once: grouped by dtype and slot size, each its own average
    xs = [torch.randn(n, generator=torch.Generator().manual_seed(10 * r + n)).to(dt)
          for n, dt in ((300, torch.float32), (200, torch.float32), (1500, torch.float32),
                        (9, torch.float64), (100, torch.float32))]
    refs = [x.clone().div_(W) for x in xs]
    for ref in refs:
        dist.all_reduce(ref)
    got = hook.reduce_many_([x.clone() for x in xs])
    out["many_match_gloo"] = [bool(torch.equal(g, f)) if W == 2 else
                              bool(torch.allclose(g.double(), f.double(), rtol=0, atol=1e-6))
                              for g, f in zip(got, refs)]
    hook.close()

# a Trainer under DDP: the hook is attached during the fit and released after it
torch.manual_seed(0)
# 1.5 MB of weights: more than DDP's first bucket (1 MB), so two buckets per backward
net = torch.nn.Sequential(torch.nn.Linear(5, 600), torch.nn.Tanh(), torch.nn.Linear(600, 600),
                          torch.nn.Tanh(), torch.nn.Linear(600, 1))
X = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
y = X.sum(1, keepdim=True)
task = TrainingTask(net, lambda e: [(X[s:s + 16], y[s:s + 16]) for s in range(0, 64, 16)],
                    lambda b: torch.nn.functional.mse_loss(net(b[0]), b[1]))
seen, barriers = [], [0]
tr = Trainer(task, epochs=2, optimizer="adam", learning_rate=0.01,
             callbacks=[])
step = Trainer._optimizer_step
per_step = []  # (buckets, barriers) of each step
def spy(self, *a, **k):
    seen.append(isinstance(self._allreduce, ShmAllReduce))
    per_step.append((buckets[0] - sum(b for b, _ in per_step),
                     barriers[0] - sum(n for _, n in per_step)))
    return step(self, *a, **k)
Trainer._optimizer_step = spy
wait = ShmAllReduce._barrier
def count(self):
    barriers[0] += 1
    return wait(self)
ShmAllReduce._barrier = count
many, buckets = ShmAllReduce.reduce_many_, [0]
def grouped(self, flats):
    buckets[0] += len(flats)
    return many(self, flats)
ShmAllReduce.reduce_many_ = grouped
tr.fit()
out["used_in_fit"] = sorted(set(seen))
# DDP's static graph hands the first two steps' gradients over as one bucket (it learns
# the graph, then rebuilds the buckets in the order the gradients come)
out["per_step"] = per_step
out["buckets_per_step"] = min(b for b, _ in per_step[2:])
out["barriers_per_step"] = sorted({n for _, n in per_step})
out["released"] = tr._allreduce is None
w = torch.cat([p.detach().ravel() for p in net.parameters()])
ws = [torch.empty_like(w) for _ in range(W)]
dist.all_gather(ws, w)
out["weights_equal_on_ranks"] = all(torch.equal(t, w) for t in ws)
out["weights"] = w[:8].tolist()
if is_rank0():
    print(json.dumps(out))
barrier()
teardown()
'''


def _torchrun(tmp_path, ranks: int, **env: str) -> dict:
    script = tmp_path / "shm.py"
    script.write_text(_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", str(ranks), "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", str(script)]
    return _metrics(_run(cmd, _env(**env), TIMEOUT))


def test_no_shared_memory_off_the_cpu_or_when_disabled(monkeypatch):
    # decided before any collective: no process group is needed to refuse
    assert shm_allreduce_hook(torch.device("meta")) is None
    monkeypatch.setenv("MAASREC_DIST_SHM", "0")
    assert shm_allreduce_hook(torch.device("cpu")) is None


@pytest.mark.slow
def test_two_ranks_get_gloos_bits_and_train_as_with_gloo(tmp_path):
    got = _torchrun(tmp_path, 2)
    assert got["hook"] and got["files_left"] == []  # unlinked once every rank mapped it
    assert got["same_on_ranks"] == [True, True, True]
    assert got["matches_gloo"] == [True, True, True]
    assert got["many_match_gloo"] == [True] * 5
    assert got["used_in_fit"] == [True] and got["released"]
    assert got["buckets_per_step"] >= 2, got["per_step"]
    assert got["barriers_per_step"] == [2]   # the step's buckets in one pair of barriers
    assert got["weights_equal_on_ranks"]
    gloo = _torchrun(tmp_path, 2, MAASREC_DIST_SHM="0")
    assert gloo["used_in_fit"] == [False]
    assert gloo["weights"] == got["weights"]     # the same training, bit for bit


@pytest.mark.slow
def test_three_ranks_agree_bitwise_and_stay_close_to_gloo(tmp_path):
    got = _torchrun(tmp_path, 3)
    assert got["hook"] and got["files_left"] == []
    assert got["same_on_ranks"] == [True, True, True]
    assert got["matches_gloo"] == [True, True, True]
    assert got["weights_equal_on_ranks"] and got["used_in_fit"] == [True]


def test_summing_order_is_the_rank_order():
    """One process standing in for the ranks: the result is the slots summed in rank
    order, each rank's share written once, read back by all."""
    import mmap

    from maasrec.training._shm_reduce import _HEADER, ShmAllReduce

    W, slot = 2, 64
    buf = mmap.mmap(-1, _HEADER + (W + 1) * slot)

    class Solo(ShmAllReduce):
        def __init__(self, r):
            self.group, self._mmap, self.slot_bytes = None, buf, slot
            self.rank, self.world_size = r, W
            self._bytes = torch.frombuffer(buf, dtype=torch.uint8)

        def _barrier(self):
            pass

    a = torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0])
    s0 = Solo(0)
    s0._slot(1, torch.float32, 5).copy_(torch.tensor([2.0, 4.0, 6.0, 8.0, 10.0]) / 2)
    # rank 0 alone: its share (the first 5 // 2 elements) is summed, the rest is read
    # back from the result slot, still zero
    out = s0.reduce_(a.clone())
    assert out[:2].tolist() == [1.5, 3.5] and out[2:].tolist() == [0.0, 0.0, 0.0]


def test_a_rank_that_never_arrives_is_a_clear_error_not_a_hang():
    """The counters' barrier: rank 0 waits for rank 1's counter, then gives up after
    the timeout with DistributedError naming the late rank."""
    import mmap
    import platform

    from maasrec.training import _shm_reduce as S
    from maasrec.training.distributed import DistributedError

    if platform.machine().lower() not in S._TSO:
        pytest.skip("the counters' barrier is used on x86-64 only")
    W, slot = 2, 64
    buf = mmap.mmap(-1, S._HEADER + (W + 1) * slot + S._LINE * W)
    r = S.ShmAllReduce.__new__(S.ShmAllReduce)
    r.group, r._mmap, r.slot_bytes, r.rank, r.world_size = None, buf, slot, 0, W
    r._bytes = torch.frombuffer(buf, dtype=torch.uint8)
    start = S._HEADER + (W + 1) * slot
    r._arrived = r._bytes[start:start + S._LINE * W].view(torch.int64)[::S._LINE // 8]
    r._generation, r._timeout = 0, 0.3
    import threading

    r._fence = threading.Lock()
    r._arrived[1] = 1          # rank 1 reached the first barrier
    r._barrier()               # passes at once
    with pytest.raises(DistributedError, match=r"rank\(s\) \[1\] did not reach"):
        r._barrier()           # rank 1 never reaches the second
    assert r._arrived.tolist() == [2, 1]
