"""Distributed data parallel on CPU: throughput, all-reduce cost, equivalence (issue 22).

``python benchmarks/bench_ddp.py [throughput|scaling|equivalence|all] [--case NAME]
[--epochs N] [--force]``

* ``throughput``: 2 processes x 1 thread (``torchrun``, gloo on 127.0.0.1) vs 1 process x
  1 thread, training samples/s of HybridRecommender on ML-1M and SequentialRecommender on
  Amazon Beauty (the same global batch B, i.e. B/2 rows per rank: strong scaling; and,
  reported apart, the same B per rank, a global 2B: weak scaling, half the all-reduces
  per sample; and the machine's ceiling: two independent one-process fits at once, no
  communication, their summed samples/s over one alone; training only, no validation;
  and the strong row again with gloo's socket all-reduce of the buckets,
  ``MAASREC_DIST_SHM=0``, instead of the shared-memory one), measured in one
  run (samples/s = training interactions x epochs / the trainer's epoch seconds; fit set-up
  excluded), and the gloo all-reduce time of one step's gradients (a flat float32 tensor of
  the model's parameter count, the bytes DDP's buckets all-reduce per step), through
  gloo and through the shared-memory all-reduce. ``--epochs N`` sets every case's epochs
  (default: the case's own); ``speedup_over_ceiling`` (strong / ceiling) is the number
  to compare across runs on a loaded machine.
* ``scaling``: 1 process x 1 thread at the case's batch B and at B/2: the time of one
  step at B over the time at B/2 (``2 * epoch(B) / epoch(B/2)``). Two ranks at B/2 each
  can run at most that much faster than one at B, less the all-reduce.
* ``equivalence``: validation NDCG@10 of 2 ranks x B/2 rows vs 1 rank x B rows on
  ML-latest-small (HybridRecommender), 3 seeds each.

Every run also records the CPU seconds of the training epochs (``time.process_time`` of
the process, all its threads; in a 2-rank run the larger of the two ranks) and the
1-minute load average before and after: on a shared machine the wall-clock numbers
measure the neighbours too, the CPU-time ones much less (cache and memory bandwidth are
still shared). Results go to ``benchmarks/results/ddp.json`` only when the load average
stayed below 1.0 during the runs (``--force`` writes anyway); otherwise they are printed. Needs ``MAASREC_DATA`` with ML-1M and
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
                         params=dict(batch_size=1024), epochs=30),
    "sequential-beauty": dict(dataset="beauty", cls="SequentialRecommender",
                              params=dict(batch_size=256)),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_timed_epochs() -> list[float]:
    """Record the CPU seconds of every Trainer epoch of this process (returned list)."""
    from maasrec.training import trainer

    cpu: list[float] = []
    epoch = trainer.Trainer.train_epoch

    def timed(self):
        t = time.process_time()
        try:
            return epoch(self)
        finally:
            cpu.append(time.process_time() - t)

    trainer.Trainer.train_epoch = timed
    return cpu


def worker(case: str, epochs: int, out: str, batch_size: int | None = None) -> None:
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
    params = dict(c["params"], epochs=epochs, random_state=0)
    if batch_size is not None:
        params["batch_size"] = batch_size
    if "validation_fraction" in cls._get_param_names():
        params["validation_fraction"] = None
    model = cls(**params)
    load = [os.getloadavg()[0]]
    cpu = _cpu_timed_epochs()
    barrier()
    t = time.perf_counter()
    model.fit(train)
    barrier()
    seconds = time.perf_counter() - t
    load.append(os.getloadavg()[0])
    cpu_seconds = torch.tensor([sum(cpu)], dtype=torch.float64)
    if world_size() > 1:  # the slower rank sets the pace
        dist.all_reduce(cpu_seconds, op=dist.ReduceOp.MAX)
    n_params = sum(p.numel() for p in _modules(model))
    allreduce = shm_allreduce = None
    if world_size() > 1:
        grad = torch.zeros(n_params, dtype=torch.float32)
        for _ in range(3):
            dist.all_reduce(grad)
        reps = 20
        t = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(grad)
        allreduce = (time.perf_counter() - t) / reps
        from maasrec.training._shm_reduce import shm_allreduce_hook

        hook = shm_allreduce_hook(torch.device("cpu"))
        if hook is not None:
            for _ in range(3):
                hook.reduce_(grad)
            t = time.perf_counter()
            for _ in range(reps):
                hook.reduce_(grad)
            shm_allreduce = (time.perf_counter() - t) / reps
            hook.close()
    if is_rank0():
        Path(out).write_text(json.dumps({
            "case": case, "world_size": world_size(), "epochs": epochs,
            "train_interactions": int(train.nnz), "fit_seconds": seconds,
            "loop_seconds": sum(model.training_log_["seconds"]),
            "samples_per_second": epochs * int(train.nnz) / sum(model.training_log_["seconds"]),
            "batch_size": params.get("batch_size"), "loop_cpu_seconds": float(cpu_seconds),
            "cpu_samples_per_second": epochs * int(train.nnz) / float(cpu_seconds),
            "load_average": load,
            "parameters": int(n_params), "allreduce_seconds_per_step": allreduce,
            "shm_allreduce_seconds_per_step": shm_allreduce,
            "bucket_allreduce": "gloo" if os.environ.get("MAASREC_DIST_SHM") == "0"
            or world_size() == 1 else "shared memory"}))
    barrier()
    teardown()


def _modules(model):
    import torch

    seen = []
    for v in vars(model).values():
        if isinstance(v, torch.nn.Module):
            seen.extend(v.parameters())
    return list({id(p): p for p in seen}.values())


def _launch(ranks: int, args: list[str], timeout: int = 3600, **extra: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if ranks == 1:
        cmd = [sys.executable, str(HERE), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", str(ranks), "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", str(HERE), *args]
    subprocess.run(cmd, env=env, check=True, timeout=timeout)


def _launch_together(arg_lists: list[list[str]], timeout: int = 3600) -> None:
    """One-process workers started at the same time (no process group between them)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    procs = [subprocess.Popen([sys.executable, str(HERE), *args], env=env)
             for args in arg_lists]
    for p in procs:
        if p.wait(timeout=timeout) != 0:
            raise RuntimeError(f"worker {p.args} failed with exit code {p.returncode}")


def _epochs(case: str, epochs: int | None) -> int:
    """``--epochs`` when given, else the case's own (else 2)."""
    return int(epochs if epochs is not None else CASES[case].get("epochs", 2))


def _rep(case: str, n_epochs: int, tmp: Path, i: int) -> dict:
    """One repetition: 1 process, 2 ranks at the same global batch, 2 ranks at the same
    batch per rank, back to back (the machine's speed drifts between minutes)."""
    got = {}
    for name, ranks, extra in (("one", 1, []), ("two", 2, []),
                               ("two_weak", 2, [str(2 * int(CASES[case]["params"]["batch_size"]))])):
        out = tmp / f"{case}-{name}-{i}.json"
        _launch(ranks, ["worker", case, str(n_epochs), str(out), *extra])
        got[name] = json.loads(out.read_text())
        print(json.dumps(got[name]), flush=True)
    return got


def _ratios(runs: list[dict], name: str, key: str) -> list[float]:
    """``name``'s ``key`` over the one-process run's, per repetition."""
    return [r[name][key] / r["one"][key] for r in runs]


def throughput(epochs: int | None, tmp: Path, cases: list[str] | None = None,
               reps: int = 1) -> list[dict]:
    rows = []
    for case in cases or list(CASES):
        n_epochs = _epochs(case, epochs)
        runs = [_rep(case, n_epochs, tmp, i) for i in range(reps)]

        strong, weak_r, cpu = (_ratios(runs, name, key) for name, key in (
            ("two", "samples_per_second"), ("two_weak", "samples_per_second"),
            ("two", "cpu_samples_per_second")))
        mid = sorted(range(reps), key=lambda i: strong[i])[(reps - 1) // 2]  # the median rep
        pair = {1: runs[mid]["one"], 2: runs[mid]["two"]}
        weak = runs[mid]["two_weak"]
        # the same with gloo's socket all-reduce of the buckets (MAASREC_DIST_SHM=0)
        out = tmp / f"{case}-2-gloo.json"
        _launch(2, ["worker", case, str(n_epochs), str(out)], MAASREC_DIST_SHM="0")
        gloo = json.loads(out.read_text())
        print(json.dumps(gloo), flush=True)
        # the machine's ceiling for this workload: two independent one-process fits at
        # once (no communication at all); their summed samples/s over one alone
        outs = [tmp / f"{case}-solo-{i}.json" for i in range(2)]
        _launch_together([["worker", case, str(n_epochs), str(o)] for o in outs])
        solo = [json.loads(o.read_text()) for o in outs]
        ceiling = sum(r["samples_per_second"] for r in solo) / pair[1]["samples_per_second"]
        speedup = strong[mid]
        rows.append({"case": case, "one": pair[1], "two": pair[2], "two_weak": weak,
                     "two_gloo": gloo, "speedup": speedup,
                     "reps": reps, "speedup_per_rep": strong, "weak_speedup_per_rep": weak_r,
                     "cpu_speedup_per_rep": cpu,
                     "gloo_speedup": gloo["samples_per_second"]
                     / pair[1]["samples_per_second"],
                     "gloo_cpu_speedup": gloo["cpu_samples_per_second"]
                     / pair[1]["cpu_samples_per_second"],
                     "speedup_over_ceiling": speedup / ceiling,
                     "cpu_speedup": cpu[mid],
                     "weak_speedup": sorted(weak_r)[(reps - 1) // 2],
                     "two_independent": solo, "ceiling": ceiling})
        per_rep = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(strong, weak_r))
        print(f"{case}: 2x1 vs 1x1 threads: {rows[-1]['speedup']:.2f}x wall-clock, "
              f"{rows[-1]['cpu_speedup']:.2f}x in CPU time at the same global batch "
              f"({rows[-1]['gloo_speedup']:.2f}x / {rows[-1]['gloo_cpu_speedup']:.2f}x with "
              f"gloo's all-reduce; "
              f"{rows[-1]['speedup_over_ceiling']:.2f} of the ceiling); "
              f"{rows[-1]['weak_speedup']:.2f}x with the same batch per rank (medians of "
              f"{reps} repetitions, same global / same per rank: {per_rep}); two "
              f"independent processes at once: {ceiling:.2f}x (load average "
              f"{_loads([r[k] for r in runs for k in ('one', 'two', 'two_weak')] + [gloo, *solo])})",
              flush=True)
    return rows


def scaling(epochs: int | None, tmp: Path, cases: list[str] | None = None) -> list[dict]:
    """One process x 1 thread at B and B/2: step time t(B) / t(B/2)."""
    rows = []
    for case in cases or list(CASES):
        n_epochs = _epochs(case, epochs)
        b = int(CASES[case]["params"]["batch_size"])
        runs = {}
        for size in (b, b // 2):
            out = tmp / f"{case}-scaling-{size}.json"
            _launch(1, ["worker", case, str(n_epochs), str(out), str(size)])
            runs[size] = json.loads(out.read_text())
        full, half = runs[b], runs[b // 2]
        row = {"case": case, "batch_size": b, "full": full, "half": half,
               "step_ratio": 2 * full["loop_seconds"] / half["loop_seconds"],
               "cpu_step_ratio": 2 * full["loop_cpu_seconds"] / half["loop_cpu_seconds"]}
        rows.append(row)
        print(f"{case}: t(B)/t(B/2) at B={b}: {row['step_ratio']:.2f} wall-clock, "
              f"{row['cpu_step_ratio']:.2f} CPU time (load average "
              f"{_loads(runs.values())})", flush=True)
    return rows


def _loads(runs) -> str:
    return ", ".join(f"{x:.2f}" for r in runs for x in r["load_average"])


def _max_load(res: dict) -> float:
    """The highest 1-minute load average recorded by the runs in ``res``."""
    loads = [0.0]

    def walk(x):
        if isinstance(x, dict):
            loads.extend(x.get("load_average") or [])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(res)
    return max(loads)


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
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4],
               int(sys.argv[5]) if len(sys.argv) > 5 else None)
        return
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="?", default="all",
                   choices=["throughput", "scaling", "equivalence", "all"])
    p.add_argument("--epochs", type=int, default=None,
                   help="every case (default: the case's own, else 2)")
    p.add_argument("--case", action="append", choices=list(CASES))
    p.add_argument("--reps", type=int, default=1,
                   help="throughput: repetitions of (1 process, 2 ranks, 2 ranks at the same "
                        "batch per rank), back to back; the medians are reported")
    p.add_argument("--force", action="store_true",
                   help="write results/ddp.json even if the load average reached 1.0")
    a = p.parse_args()
    import tempfile

    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    new: dict = {}
    with tempfile.TemporaryDirectory() as d:
        if a.what in ("equivalence", "all"):
            new["equivalence"] = equivalence(Path(d))
        if a.what in ("throughput", "all"):
            new["throughput"] = throughput(a.epochs, Path(d), a.case, a.reps)
        if a.what in ("scaling", "all"):
            new["scaling"] = scaling(a.epochs, Path(d), a.case)
    load = _max_load(new)
    if load >= 1.0 and not a.force:
        print(f"load average reached {load:.2f}: {RESULTS} not written (--force writes it)")
        return
    for key in ("throughput", "scaling"):  # rows of the cases not rerun are kept
        if key in new and isinstance(res.get(key), list):
            done = {r["case"] for r in new[key]}
            new[key] = [r for r in res[key] if r.get("case") not in done] + new[key]
    res.update(new)
    RESULTS.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
