"""Foundation measurements: EASE and Popularity on MovieLens 1M, and evaluate's memory.

Protocol: MovieLens 1M, all ratings as implicit positives, per-user random 80/10/10 split
(seed 0), EASE's ``l2`` tuned on the validation part only, full-ranking NDCG@10 and
Recall@10 on test (train and validation items excluded).

Memory: ``evaluate``'s traced peak (tracemalloc; numpy reports its buffers) for growing
numbers of users, as a ratio to the dense users x items float32 matrix that a naive
evaluation would build. Full ranking runs in user chunks, so the peak stays flat once
the users exceed one chunk.

Usage::

    MAASREC_DATA=../shared/data python benchmarks/bench_foundation.py [--out benchmarks/results/foundation.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from maasrec import ColdStartWarning, __version__, datasets, metrics
from maasrec.data.split import random_split
from maasrec.models import EASE, Popularity


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "maasrec": __version__, "platform": platform.platform()}


def traced_peak(fn) -> tuple[float, object]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--out", default="benchmarks/results/foundation.json")
    ap.add_argument("--grid", default="100,200,500,1000,2000", help="EASE l2 values to try")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ColdStartWarning)

    ds = datasets.load_movielens("1m", data_home=args.data_home)
    train, valid, test = random_split(ds.interactions, (0.8, 0.1, 0.1), random_state=0)
    print(f"ml-1m: train {train.nnz:,} valid {valid.nnz:,} test {test.nnz:,}")
    report: dict = {"machine": machine(), "dataset": "ml-1m", "split": "per-user random 80/10/10 seed 0",
                    "models": {}}

    tuning = {}
    for l2 in [float(x) for x in args.grid.split(",")]:
        m = EASE(l2=l2).fit(train)
        tuning[l2] = metrics.evaluate(m, train, valid, k=10, metrics=["ndcg"])["ndcg@10"]
        print(f"  EASE l2={l2:g}: valid NDCG@10 {tuning[l2]:.4f}")
    best_l2 = max(tuning, key=tuning.get)

    for name, factory in (("Popularity", Popularity), ("EASE", lambda: EASE(l2=best_l2))):
        t = time.perf_counter()
        model = factory().fit(train)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        res = metrics.evaluate(model, train, test, k=(10, 20), exclude=valid)
        eval_s = time.perf_counter() - t
        report["models"][name] = {
            "params": model.get_params(deep=False), "fit_seconds": fit_s, "evaluate_seconds": eval_s,
            "ndcg@10": res["ndcg@10"], "recall@10": res["recall@10"], "ndcg@10_ci": res.ci["ndcg@10"],
            "n_test_users": len(res.users)}
        print(f"{name}: NDCG@10 {res['ndcg@10']:.4f} Recall@10 {res['recall@10']:.4f} "
              f"fit {fit_s:.2f}s evaluate {eval_s:.2f}s")
    report["models"]["EASE"]["validation_grid"] = {str(k): v for k, v in tuning.items()}

    # evaluate's peak memory vs number of users (chunked full ranking)
    model = EASE(l2=best_l2).fit(train)
    n_items = train.n_items
    users_all = np.unique(test.user_indices)
    mem = []
    for n_users, batch in ((600, None), (len(users_all), None), (len(users_all), 500)):
        sel = train.user_vocab.ids[users_all[:n_users]]
        peak, _ = traced_peak(lambda sel=sel, batch=batch: metrics.evaluate(
            model, train, test, k=10, exclude=valid, users=sel, batch_size=batch,
            metrics=["ndcg", "recall"], n_bootstrap=0))
        dense = n_users * n_items * 4 / 2**20
        mem.append({"users": int(n_users), "batch_size": batch, "peak_mib": peak,
                    "dense_matrix_mib": dense, "peak_over_dense": peak / dense})
        print(f"evaluate peak: {n_users} users, batch {batch}: {peak:.1f} MiB "
              f"(dense users x items would be {dense:.1f} MiB)")
    report["evaluate_memory"] = mem
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
