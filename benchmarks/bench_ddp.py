"""Distributed data parallel on CPU: throughput, all-reduce cost, equivalence (issue 22).

``python benchmarks/bench_ddp.py [throughput|equivalence|all] [--epochs N]``

* ``throughput``: 2 processes x 1 thread (``torchrun``, gloo on 127.0.0.1) vs 1 process x
  1 thread, training samples/s of HybridRecommender on ML-1M and SequentialRecommender on
  Amazon Beauty (the same global batch; training only, no validation), measured in one
  run (samples/s = training interactions x epochs / the trainer's epoch seconds; fit set-up
  excluded), and the gloo all-reduce time of one step's gradients (a flat float32 tensor of
  the model's parameter count, the bytes DDP's buckets all-reduce per step).
* ``equivalence``: validation NDCG@10 of 2 ranks x B/2 rows vs 1 rank x B rows on
  ML-latest-small (HybridRecommender), 3 seeds each.

Results go to ``benchmarks/results/ddp.json``. Needs ``MAASREC_DATA`` with ML-1M and
Amazon Beauty for ``throughput``. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results" / "ddp.json"

CASES = {
    "hybrid-ml-1m": dict(dataset="ml-1m", cls="HybridRecommender",
                         params=dict(batch_size=1024), epochs=10),
    "sequential-beauty": dict(dataset="beauty", cls="SequentialRecommender",
                              params=dict(batch_size=256)),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(case: str, epochs: int, out: str) -> None:
    """Under torchrun (or alone): fit one case without validation, time it on rank 0."""
    import torch

    torch.set_num_threads(1)
    import torch.distributed as dist

    from maasrec import datasets
    from maasrec.data.split import leave_last_out, random_split
    from maasrec.train import _model_class
    from maasrec.training.distributed import (
        barrier,
        init_distributed,
        is_rank0,
        teardown,
        world_size,
    )

    c = CASES[case]
    init_distributed("cpu")
    if c["dataset"] == "beauty":
        X = datasets.load_amazon_sequences("beauty").interactions
        train = leave_last_out(X, n_valid=1, n_test=1)[0]
    else:
        X = datasets.load_movielens(c["dataset"]).interactions
        train = random_split(X, (0.8, 0.1, 0.1), random_state=0)[0]
    cls = _model_class(c["cls"])
    epochs = int(c.get("epochs", epochs))
    params = dict(c["params"], epochs=epochs, random_state=0)
    if "validation_fraction" in cls._get_param_names():
        params["validation_fraction"] = None
    model = cls(**params)
    barrier()
    t = time.perf_counter()
    model.fit(train)
    barrier()
    seconds = time.perf_counter() - t
    n_params = sum(p.numel() for p in _modules(model))
    allreduce = None
    if world_size() > 1:
        grad = torch.zeros(n_params, dtype=torch.float32)
        for _ in range(3):
            dist.all_reduce(grad)
        reps = 20
        t = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(grad)
        allreduce = (time.perf_counter() - t) / reps
    if is_rank0():
        Path(out).write_text(json.dumps({
            "case": case, "world_size": world_size(), "epochs": epochs,
            "train_interactions": int(train.nnz), "fit_seconds": seconds,
            "loop_seconds": sum(model.training_log_["seconds"]),
            "samples_per_second": epochs * int(train.nnz) / sum(model.training_log_["seconds"]),
            "parameters": int(n_params), "allreduce_seconds_per_step": allreduce}))
    barrier()
    teardown()


def _modules(model):
    import torch

    seen = []
    for v in vars(model).values():
        if isinstance(v, torch.nn.Module):
            seen.extend(v.parameters())
    return list({id(p): p for p in seen}.values())


def _launch(ranks: int, args: list[str], timeout: int = 3600) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if ranks == 1:
        cmd = [sys.executable, str(HERE), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", str(ranks), "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", str(HERE), *args]
    subprocess.run(cmd, env=env, check=True, timeout=timeout)


def throughput(epochs: int, tmp: Path, cases: list[str] | None = None) -> list[dict]:
    rows = []
    for case in cases or list(CASES):
        pair = {}
        for ranks in (1, 2):
            out = tmp / f"{case}-{ranks}.json"
            _launch(ranks, ["worker", case, str(epochs), str(out)])
            pair[ranks] = json.loads(out.read_text())
            print(json.dumps(pair[ranks]), flush=True)
        rows.append({"case": case, "one": pair[1], "two": pair[2],
                     "speedup": pair[2]["samples_per_second"] / pair[1]["samples_per_second"]})
        print(f"{case}: 2x1 vs 1x1 threads: {rows[-1]['speedup']:.2f}x", flush=True)
    return rows


def equivalence(tmp: Path) -> dict:
    sys.path.insert(0, str(HERE.parents[1] / "tests" / "training"))
    from test_distributed import _config, _metrics, _torchrun

    from maasrec.train import load_config, run

    out = {"one": [], "two": []}
    for seed in (0, 1, 2):
        out["one"].append(run(load_config(_config(tmp, seed=seed, epochs=10, name=f"one{seed}")))
                          ["validation"]["ndcg@10"])
        out["two"].append(_metrics(_torchrun(_config(tmp, seed=seed, epochs=10, name=f"two{seed}")))
                          ["validation"]["ndcg@10"])
        print(json.dumps(out), flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="?", default="all",
                   choices=["throughput", "equivalence", "all"])
    p.add_argument("--epochs", type=int, default=2, help="where a case sets none")
    p.add_argument("--case", action="append", choices=list(CASES))
    a = p.parse_args()
    import tempfile

    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory() as d:
        if a.what in ("equivalence", "all"):
            res["equivalence"] = equivalence(Path(d))
        if a.what in ("throughput", "all"):
            res["throughput"] = throughput(a.epochs, Path(d), a.case)
    RESULTS.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
