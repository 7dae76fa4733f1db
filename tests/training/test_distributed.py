"""Distributed data parallel training: real ``torchrun`` runs of 2 CPU ranks (gloo on
127.0.0.1), each bounded by a timeout; and the pieces of maasrec.training.distributed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maasrec.base import Recommender
from maasrec.exceptions import DataError
from maasrec.recommend_all import read_recommendations
from maasrec.train import load_config, run
from maasrec.training.distributed import (
    DistributedError,
    init_distributed,
    is_distributed,
    shard,
)

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
TIMEOUT = 240  # seconds, per torchrun run: a hang fails the test instead of CI


def _config(tmp: Path, *, seed: int = 0, epochs: int = 10, batch_size: int = 64,
            checkpoint: str | None = None, name: str = "cfg") -> Path:
    lines = ["[data]", 'dataset = "latest-small"', "seed = 0", "", "[model]",
             'class = "HybridRecommender"', "[model.params]", f"epochs = {epochs}",
             f"batch_size = {batch_size}", f"random_state = {seed}", "patience = 100", "",
             "[train]", f'output = "{(tmp / (name + "_model")).as_posix()}"',
             "overwrite = true", f'recommend_dir = "{(tmp / (name + "_recs")).as_posix()}"',
             "recommend_k = 5"]
    if checkpoint:
        lines.append(f'checkpoint_dir = "{(tmp / checkpoint).as_posix()}"')
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new session: on a timeout the whole process group (torchrun
    and its workers) is killed, so no rank outlives the test."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[:4]} ran past {timeout} s; killed its process group\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _torchrun(cfg: Path, *, restarts: int = 0, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--max-restarts", str(restarts),
           "--monitor-interval", "0.5", WORKER, str(cfg), "-v"]
    return _run(cmd, _env(**env), TIMEOUT)


def _metrics(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout[-2000:]  # rank 0 alone prints the result
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One uninterrupted 2-rank fit (shared by the equivalence and restart tests)."""
    tmp = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(_config(tmp, checkpoint="ck"))
    return tmp, _metrics(proc), proc


# -- pieces -------------------------------------------------------------------------------
def test_shard_is_strided_deterministic_and_covers_the_batch():
    batch = (torch.arange(10), torch.arange(20).reshape(10, 2))
    parts = [shard(batch, r, 3) for r in range(3)]
    assert parts[1][0].tolist() == [1, 4, 7]
    assert sorted(torch.cat([p[0] for p in parts]).tolist()) == list(range(10))
    assert torch.equal(parts[2][1], batch[1][2::3])
    d = shard({"u": torch.arange(4), "i": torch.arange(4) * 2}, 1, 2)
    assert d["u"].tolist() == [1, 3] and d["i"].tolist() == [2, 6]
    small = torch.arange(1)
    assert shard(small, 1, 2) is small  # fewer rows than ranks: every rank takes it whole


@pytest.mark.parametrize("bad", [torch.tensor(3), (torch.arange(3), torch.arange(4)),
                                 "users", {"a": [1, 2]}])
def test_shard_rejects_unshardable_batches(bad):
    with pytest.raises(DataError, match="cannot be sharded"):
        shard(bad, 0, 2)


def test_not_distributed_without_torchrun_env(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == torch.device("cpu")
    assert not is_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(DistributedError, match="RANK"):
        init_distributed("cpu")


def test_bad_config_names_the_key(tmp_path):
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[train]", "[train]\nepochz = 3"))
    with pytest.raises(DataError, match="'epochz' in \\[train\\]"):
        load_config(cfg)
    cfg.write_text(cfg.read_text().replace("epochz = 3", "").replace(
        'class = "HybridRecommender"', 'class = "Nope"'))
    with pytest.raises(DataError, match="'Nope'"):
        run(load_config(cfg))


# -- torchrun -----------------------------------------------------------------------------
@pytest.mark.slow
def test_two_ranks_match_one_rank_within_seed_noise(ddp_run, tmp_path):
    """2 ranks x B/2 rows vs 1 rank x B rows: validation NDCG@10 within the spread (max -
    min) of three seeds of the 1-rank fit (benchmarks/bench_ddp.py records 3 seeds of
    both; at 10 epochs: 1 rank 0.1537/0.1526/0.1550, 2 ranks 0.1535/0.1504/0.1523)."""
    _, ddp, _ = ddp_run
    one = [run(load_config(_config(tmp_path, seed=s, name=f"one{s}")))["validation"]["ndcg@10"]
           for s in (0, 1, 2)]
    spread = max(one) - min(one)
    mean = sum(one) / 3
    assert spread > 0
    assert abs(ddp["validation"]["ndcg@10"] - mean) <= spread, (ddp, one)


def test_ddp_fit_warns_nothing_about_buffer_sync(ddp_run):
    """The Trainer turns off DDP's per-forward buffer sync with the argument this torch
    has (torch 2.13 deprecates ``broadcast_buffers`` with a FutureWarning per rank)."""
    _, _, proc = ddp_run
    assert "broadcast_buffers" not in proc.stderr, proc.stderr[-3000:]
    assert "forward_sync_buffers" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("has_new", [True, False])
def test_no_buffer_sync_picks_the_argument_torch_has(has_new):
    from maasrec.training.trainer import _no_buffer_sync

    if has_new:
        class DDP:
            def __init__(self, module, broadcast_buffers=None, forward_sync_buffers=None):
                pass
    else:
        class DDP:
            def __init__(self, module, broadcast_buffers=True):
                pass
    key = "forward_sync_buffers" if has_new else "broadcast_buffers"
    assert _no_buffer_sync(DDP) == {key: False}


@pytest.mark.slow
def test_killed_worker_recovers_from_the_checkpoint(ddp_run, tmp_path):
    """torchrun --max-restarts 1: rank 1 SIGKILLs itself in epoch 3 (10 steps an epoch);
    all ranks restart, resume from the epoch-2 checkpoint and end like the uninterrupted fit."""
    _, expected, _ = ddp_run
    marker = tmp_path / "killed"
    proc = _torchrun(_config(tmp_path, checkpoint="ck"), restarts=1,
                     MAASREC_TEST_KILL_MARKER=str(marker), MAASREC_TEST_KILL_AFTER="25")
    got = _metrics(proc)
    assert marker.exists()
    assert "resuming from" in proc.stderr
    # epoch checkpoints hold every rank's common RNG state: an exact resume
    assert got["validation"] == expected["validation"]


@pytest.mark.slow
def test_recommend_all_parts_of_both_ranks_merge(ddp_run):
    """Each rank wrote the top-5 of its half of the users; merged, they equal the saved
    (rank 0) model's recommendations for everyone: both ranks hold the same weights."""
    tmp, _, _ = ddp_run
    model = Recommender.load(tmp / "cfg_model")
    assert sorted(p.name for p in (tmp / "cfg_recs").iterdir()) == [
        "part-00000-of-00002.safetensors", "part-00001-of-00002.safetensors"]
    got = read_recommendations(tmp / "cfg_recs", model)
    ids, _ = model.recommend(list(model.user_vocab_.ids), k=5)
    np.testing.assert_array_equal(got["items"], ids)


@pytest.mark.slow
def test_changed_world_size_is_a_clear_error(ddp_run):
    tmp, _, _ = ddp_run
    with pytest.raises(DataError, match="world size 2, this run has world size 1"):
        run(load_config(_config(tmp, checkpoint="ck")))


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_unreachable_rank_fails_within_the_timeout(tmp_path, rank):
    """Only one of 2 ranks started (rank 0 waits for rank 1; rank 1 finds no master)."""
    env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               MAASREC_DIST_TIMEOUT="2")
    proc = _run([sys.executable, "-m", "maasrec.train", str(_config(tmp_path))], env, 120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"rank {rank} of 2 could not reach the other ranks" in proc.stderr
    assert "MAASREC_DIST_TIMEOUT" in proc.stderr


_EXACT = '''
import json, sys
import torch
from maasrec.training import Trainer, TrainingTask
from maasrec.training.distributed import barrier, init_distributed, is_rank0, teardown

init_distributed("cpu")
torch.manual_seed(0)


class Scaled(torch.nn.Linear):  # a constant buffer, as item text vectors are
    def __init__(self):
        super().__init__(3, 1)
        self.register_buffer("scale", torch.tensor([1.0, 2.0, 0.5]))

    def forward(self, x):
        return super().forward(x * self.scale)


net = Scaled()
X = torch.randn(24, 3, generator=torch.Generator().manual_seed(1))
y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
task = TrainingTask(net, lambda e: [(X[s:s + 8], y[s:s + 8]) for s in range(0, 24, 8)],
                    lambda b: torch.nn.functional.mse_loss(net(b[0]), b[1]))
hist = Trainer(task, epochs=3, optimizer="sgd", learning_rate=0.1).fit()
if is_rank0():
    print(json.dumps({"w": net.weight.detach().ravel().tolist(),
                      "b": net.bias.item(), "losses": hist.losses}))
barrier()  # leave together: a rank destroying its gloo group early aborts the other
teardown()
'''


@pytest.mark.slow
def test_two_ranks_take_the_full_batch_step(tmp_path, capsys, monkeypatch):
    """Mean loss, equal shards, SGD: 2 ranks x 4 rows step exactly like 1 rank x 8 rows
    (the all-reduced gradient is the full batch's), and the epoch losses agree; the
    module's constant buffer is used as built on each rank (not broadcast per step)."""
    script = tmp_path / "exact.py"
    script.write_text(_EXACT)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    exec(compile(_EXACT, str(script), "exec"), {})  # 1 process, here
    one = subprocess.CompletedProcess([], 0, capsys.readouterr().out, "")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", str(script)]
    two = _run(cmd, _env(), TIMEOUT)
    a, b = (json.loads(_metrics_line(p)) for p in (one, two))
    np.testing.assert_allclose(b["w"], a["w"], rtol=1e-5, atol=1e-6)  # float32 sums
    np.testing.assert_allclose(b["b"], a["b"], rtol=1e-5)
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-5)
    assert a["w"] != pytest.approx([0.0, 0.0, 0.0])


def _metrics_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout[-2000:]
    return lines[0]


def test_cli_train_reports_a_bad_config(tmp_path, capsys):
    from maasrec.cli import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data]\ndataset = "latest-small"\nsplit = "sideways"\n'
                   '[model]\nclass = "EASE"\n[train]\noutput = "m"\n')
    assert main(["train", str(cfg)]) == 2
    assert "split must be one of ['random', 'leave_last_out'], got 'sideways'" in \
        capsys.readouterr().err


def test_readme_example_config_is_valid():
    # README's "Training at scale" commands use this file: it must stay a valid config
    from maasrec.train import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "examples" / "train_hybrid.toml")
    assert cfg["model"]["class"] == "HybridRecommender"
    assert cfg["data"]["dataset"] == "latest-small"
    readme = (root / "README.md").read_text()
    assert "torchrun --nproc-per-node 2 -m maasrec.train examples/train_hybrid.toml" in readme


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [7, 14])
def test_two_ranks_resume_mid_epoch_bit_identically(tmp_path, stop_after):
    """A 2-rank fit stopped after ``stop_after`` optimiser steps (mid-epoch: 8 steps an
    epoch, checkpoints every 3 steps) and resumed ends with the uninterrupted fit's weights
    and losses on every rank: each rank's randomness inside a step (dropout, sampled
    noise) is reseeded per batch from (seed, epoch, rank, batch), not carried over."""
    worker = str(Path(__file__).with_name("ddp_resume_worker.py"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", worker, str(tmp_path / "ck"),
           str(stop_after)]
    proc = _run(cmd, _env(MAASREC_DIST_TIMEOUT="60"), TIMEOUT)
    got = _metrics(proc)
    assert got["same_weights"], got
    assert got["losses"][0] == got["losses"][1] and got["steps"][0] == got["steps"][1]
