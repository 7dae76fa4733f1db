"""Micro-batching where it pays: ``maasrec serve`` of a SequentialRecommender (or an
LMRanker two-stage), batching on vs off, in one run.

For EASE the per-request HTTP/JSON cost dominates and micro-batching cannot reach 3x
req/s (``bench_serving.py``). A model whose scoring does real work per call -- a causal
transformer pass plus a dot product with every item, or a cross-encoder over the
candidates -- can amortise that work over the users of a batch. This script:

1. fits the model (``--model sequential``: SequentialRecommender on Amazon Beauty,
   ``--epochs`` epochs; ``--model lmranker``: LMRanker (MiniLM, EASE first stage,
   ``--candidates`` candidates) on MovieLens 100K) and saves it;
2. measures in-process ``recommend`` with 1 user per call against 32 users per call
   (the ceiling of what batching can buy inside the model);
3. starts ``maasrec serve`` twice, ``--max-batch 64`` and ``--max-batch 1`` (both
   ``--max-wait-ms 0``), and runs the load generator of ``bench_serving.py`` (its own
   process, keep-alive HTTP/1.1, one random known user per request, k=10) at the given
   concurrencies, alternating the two servers per repetition;
4. writes ``benchmarks/results/serving_batching.json`` (the model's own key inside).

Run: ``MAASREC_DATA=... python benchmarks/bench_serving_batching.py --model sequential``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import bench_serving as bs  # noqa: E402

K = 10


def _fit(args, tmp: Path) -> tuple[Path, dict]:
    t0 = time.perf_counter()
    if args.model == "sequential":
        from maasrec.datasets import load_amazon_sequences
        from maasrec.neural import SequentialRecommender

        data = load_amazon_sequences("beauty", download=False).interactions
        params = dict(dim=64, n_layers=2, n_heads=2, max_len=50, epochs=args.epochs,
                      random_state=0, verbose=False)
        model = SequentialRecommender(**params).fit(data)
        desc = {"data": "Amazon Beauty", "model": f"SequentialRecommender({params})"}
    else:
        from maasrec.datasets import load_movielens
        from maasrec.lm_ranker import LMRanker
        from maasrec.models import EASE

        ds = load_movielens("100k", download=False)
        params = dict(model="sentence-transformers/all-MiniLM-L6-v2", head="mean",
                      n_candidates=args.candidates, history_len=3, max_length=96,
                      max_item_tokens=20, epochs=1, max_positives=args.max_positives,
                      random_state=0)
        model = LMRanker(first_stage=EASE(l2=100.0), **params).fit(
            ds.interactions, item_features=ds.item_features)
        desc = {"data": "MovieLens 100K", "model": f"LMRanker(EASE(l2=100), {params})"}
    desc["fit_s"] = round(time.perf_counter() - t0, 1)
    path = tmp / "model"
    model.save(path)
    return path, desc


def _in_process(model_dir: Path, users: list, n: int) -> dict:
    """1 user per call against 32 per call: users/s in wall time and in this process's
    CPU time (the CPU figure is what batching saves; the wall figure also counts the
    machine's other work)."""
    from maasrec import Recommender

    model = Recommender.load(model_dir)
    model.recommend(users[:32], k=K)
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        model.recommend([users[i % len(users)]], k=K)
    single = (n / (time.perf_counter() - w0), n / (time.process_time() - c0))
    w0, c0 = time.perf_counter(), time.process_time()
    done = 0
    while done < n:
        model.recommend(users[done % len(users):done % len(users) + 32], k=K)
        done += 32
    batched = (done / (time.perf_counter() - w0), done / (time.process_time() - c0))
    return {"single_users_per_s": round(single[0], 1), "batch32_users_per_s": round(batched[0], 1),
            "batch32_over_single": round(batched[0] / single[0], 2),
            "single_cpu_ms_per_user": round(1000 / single[1], 2),
            "batch32_cpu_ms_per_user": round(1000 / batched[1], 2),
            "batch32_over_single_cpu": round(batched[1] / single[1], 2)}


def _http(model_dir: Path, users_file: Path, concurrency: list[int], n_req: dict, reps: int,
          tmp: Path) -> list[dict]:
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "BENCH_API_KEY": key}
    modes = (("batching", 64), ("no batching", 1))
    servers, rows = {}, []
    try:
        for label, mb in modes:
            servers[label] = bs._start_server(model_dir, mb, key, tmp / f"{mb}.log")
        for c in concurrency:
            per = {label: [] for label, _ in modes}
            for rep in range(reps):
                for label, _ in (modes if rep % 2 == 0 else modes[::-1]):
                    proc, port = servers[label][0], servers[label][1]
                    cpu0 = bs._cpu_seconds(proc.pid)
                    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    r = subprocess.run(
                        [sys.executable, str(HERE / "bench_serving.py"), "--loadgen", "--url",
                         f"http://127.0.0.1:{port}", "--users-file", str(users_file),
                         "--concurrency", str(c), "--requests", str(n_req[c]),
                         "--warmup", str(max(c, n_req[c] // 8))],
                        capture_output=True, text=True, env=env, timeout=1800, check=True)
                    res = json.loads(r.stdout)
                    res["server_cpu_s"] = bs._cpu_seconds(proc.pid) - cpu0
                    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
                    res["loadgen_cpu_s"] = (kids.ru_utime + kids.ru_stime
                                            - kids0.ru_utime - kids0.ru_stime)
                    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
                    per[label].append(res)
            for label, mb in modes:
                rr = per[label]
                lat = np.concatenate([x["latencies_ms"] for x in rr])
                row = {"mode": label, "max_batch": mb, "concurrency": c,
                       "requests": int(sum(x["requests"] for x in rr)),
                       "errors": int(sum(x["errors"] for x in rr)),
                       "rps": round(float(np.median([x["rps"] for x in rr])), 2),
                       "rps_per_repetition": [x["rps"] for x in rr],
                       "loadavg_per_repetition": [x["loadavg"] for x in rr],
                       "server_cpu_ms_per_request": round(
                           1000 * sum(x["server_cpu_s"] for x in rr)
                           / sum(x["requests"] + x["warmup"] for x in rr), 2),
                       "loadgen_cpu_ms_per_request": round(
                           1000 * sum(x["loadgen_cpu_s"] for x in rr)
                           / sum(x["requests"] + x["warmup"] for x in rr), 2),
                       **bs._pct(lat)}
                rows.append(row)
                print(f"{label:12s} c={c:<3d} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:8.1f}"
                      f" ms  server CPU {row['server_cpu_ms_per_request']:.1f} ms/req  "
                      f"load generator CPU {row['loadgen_cpu_ms_per_request']:.1f} ms/req  "
                      f"errors {row['errors']}", flush=True)
    finally:
        for proc, _port, out in servers.values():
            bs._stop_server(proc, out)
    return rows


def _cpu(row: dict) -> float:
    return row["server_cpu_ms_per_request"] + row["loadgen_cpu_ms_per_request"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["sequential", "lmranker"], default="sequential")
    p.add_argument("--epochs", type=int, default=3, help="SequentialRecommender epochs")
    p.add_argument("--candidates", type=int, default=20, help="LMRanker candidates")
    p.add_argument("--max-positives", type=int, default=64,
                   help="LMRanker fine-tune groups (speed does not depend on them)")
    p.add_argument("--in-process-users", type=int, default=None,
                   help="users of the in-process comparison (default 256; LMRanker 32)")
    p.add_argument("--skip-http", action="store_true",
                   help="the in-process comparison only (no servers)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in-process")
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--requests", type=int, default=600, help="timed requests per run at c=32")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--output", default=str(HERE / "results" / "serving_batching.json"))
    args = p.parse_args(argv)
    conc = [int(c) for c in args.concurrency.split(",")]
    n_req = {c: max(4 * c, args.requests * max(1, c) // 32) if c > 1 else args.requests // 4
             for c in conc}
    out: dict = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                 "k": K}
    with tempfile.TemporaryDirectory(prefix="maasrec-bench-batching-") as tmp:
        tmp = Path(tmp)
        model_dir, desc = _fit(args, tmp)
        out.update(desc)
        from maasrec import Recommender

        users = np.random.default_rng(0).permutation(
            Recommender.load(model_dir).user_vocab_.ids).tolist()
        users_file = tmp / "users.json"
        users_file.write_text(json.dumps(users))
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
            out["in_process_threads"] = args.threads
        out["in_process"] = _in_process(model_dir, users, args.in_process_users or (
            256 if args.model == "sequential" else 32))
        print("in-process:", out["in_process"], flush=True)
        if args.skip_http:
            return _write(args, out)
        out["runs"] = _http(model_dir, users_file, conc, n_req, args.reps, tmp)
    by = {(r["mode"], r["concurrency"]): r for r in out["runs"]}
    top = max(conc)
    ratio = by[("batching", top)]["rps"] / by[("no batching", top)]["rps"]
    out["summary"] = {f"batching_speedup_c{top}": round(ratio, 2),
                      f"goal_ge_3x_c{top}": ratio >= 3,
                      "server_cpu_saving": round(
                          by[("no batching", top)]["server_cpu_ms_per_request"]
                          / by[("batching", top)]["server_cpu_ms_per_request"], 2),
                      # server + load generator CPU per request: what bounds req/s when
                      # both share the machine's cores
                      "server_and_loadgen_cpu_saving": round(
                          _cpu(by[("no batching", top)]) / _cpu(by[("batching", top)]), 2)}
    print(json.dumps(out["summary"]))
    return _write(args, out)


def _write(args, out: dict) -> int:
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    path = Path(args.output)
    allres = json.loads(path.read_text()) if path.is_file() else {}
    allres[args.model] = out
    path.write_text(json.dumps(allres, indent=1) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
