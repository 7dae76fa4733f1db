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
   (the ceiling of what batching can buy inside the model), in wall and CPU time;
3. starts ``maasrec serve`` twice, ``--max-batch 64`` and ``--max-batch 1`` (both
   ``--max-wait-ms 0``, one torch thread), pinned to the first CPU, and drives them with
   a load generator pinned to the second CPU: ``wrk`` (``--loadgen wrk``, the default:
   a C client costing a few microseconds of CPU per request, see ``_wrk.py``; the run
   is skipped with a message when it is not installed) or the asyncio client of
   ``bench_serving.py`` (``--loadgen python``). Keep-alive HTTP/1.1, one random known
   user per request, k=10, at each ``--concurrency``; ``--reps`` runs per server,
   alternating which server goes first; per run the server's CPU time (/proc) and the
   generator's (RUSAGE_CHILDREN), the load average, req/s and p50/p99 latency;
4. writes ``benchmarks/results/serving_batching.json`` (the model's own key inside),
   with a summary: the req/s ratio at the top concurrency and what bounds it (server
   CPU per request batched vs unbatched, generator CPU, the in-process ceiling).

With ``--model-dir DIR`` the fitted model is kept in ``DIR`` and reused by later runs
(the fit is the slow part).

Run: ``MAASREC_DATA=... python benchmarks/bench_serving_batching.py --model sequential
--epochs 1 --model-dir /tmp/maasrec-seq-beauty``.
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

import _wrk  # noqa: E402
import bench_serving as bs  # noqa: E402

K = 10


def _model(args, tmp: Path) -> tuple[Path, dict]:
    """The fitted model's directory and description: ``--model-dir`` when it holds a saved
    model (fitted by an earlier run; its description is in ``<dir>.bench.json``), else
    fit now and save it there (or in ``tmp``)."""
    path = Path(args.model_dir) if args.model_dir else tmp / "model"
    desc_file = path.with_name(path.name + ".bench.json")
    if args.model_dir and (path / "maasrec.json").is_file() and desc_file.is_file():
        desc = json.loads(desc_file.read_text())
        if desc.get("bench_model") != args.model:
            raise SystemExit(f"{path} holds a {desc.get('bench_model')!r} model, not "
                             f"{args.model!r}: give another --model-dir")
        print(f"reusing the model in {path} (fitted in {desc['fit_s']} s)", flush=True)
        return path, {**desc, "model_dir_reused": True}
    desc = _fit(args, path)
    desc["bench_model"] = args.model
    desc_file.write_text(json.dumps(desc))
    return path, desc


def _fit(args, path: Path) -> dict:
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
    model.save(path)
    return desc


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


def _start_server(model_dir: Path, max_batch: int, key: str, log: Path, cpu: int | None):
    """``maasrec serve`` (one torch thread), pinned to ``cpu`` when given."""
    port = bs._free_port()
    env = {**os.environ, "MAASREC_API_KEYS": key, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = open(log, "w")
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "maasrec", "serve", str(model_dir), "--host", "127.0.0.1",
         "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", "0",
         "--no-access-log", "--log-level", "warning"],
        stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=pre)
    bs.wait_healthy(proc, port, key, log, timeout=180)
    return proc, port, out


def _one_run(args, server_pid: int, port: int, c: int, rep: int, env: dict,
             files: dict) -> dict:
    """Warm-up, then one timed load-generator run at concurrency ``c``; the CPU time of
    the server (/proc) and of the generator (RUSAGE_CHILDREN) around the timed run (the
    Python generator warms up in the same process: its run counts the warm-up too)."""
    url = f"http://127.0.0.1:{port}"
    if args.loadgen == "wrk":
        common = dict(concurrency=c, env=env, cpu=args.loadgen_cpu)
        _wrk.run_wrk(files["wrk"], url, files["script"], files["bodies"], seconds=args.warmup_s,
                     offset=7919 * (rep + 1), **common)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = bs._cpu_seconds(server_pid)
        res = _wrk.run_wrk(files["wrk"], url, files["script"], files["bodies"],
                           seconds=args.duration, offset=104729 * rep, **common)
    else:
        n = args.requests * max(1, c) // 32 if c > 1 else args.requests // 4
        n = max(4 * c, n)
        pre = ((lambda: os.sched_setaffinity(0, {args.loadgen_cpu}))
               if args.loadgen_cpu is not None else None)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = bs._cpu_seconds(server_pid)
        r = subprocess.run(
            [sys.executable, str(HERE / "bench_serving.py"), "--loadgen", "--url", url,
             "--users-file", str(files["users"]), "--concurrency", str(c), "--requests",
             str(n), "--warmup", str(max(c, n // 8))],
            capture_output=True, text=True, env=env, timeout=1800, check=True, preexec_fn=pre)
        res = json.loads(r.stdout)
        lat = np.asarray(res.pop("latencies_ms"))
        res.update(bs._pct(lat))
        res["requests_with_warmup"] = res["requests"] + res["warmup"]
    res["server_cpu_s"] = bs._cpu_seconds(server_pid) - cpu0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["loadgen_cpu_s"] = kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime
    return res


def _http(args, model_dir: Path, users: list, tmp: Path) -> list[dict]:
    """Both servers up; at each concurrency, ``reps`` runs per server, alternating which
    goes first; server CPU per request from /proc around each timed run."""
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "BENCH_API_KEY": key}
    files: dict = {"users": tmp / "users.json"}
    files["users"].write_text(json.dumps(users))
    if args.loadgen == "wrk":
        files["wrk"] = _wrk.find_wrk()
        files["script"], files["bodies"] = _wrk.write_script(
            tmp, [json.dumps({"users": [u], "k": K}).encode() for u in users])
    modes = (("batching", 64), ("no batching", 1))
    servers, rows = {}, []
    try:
        for label, mb in modes:
            servers[label] = _start_server(model_dir, mb, key, tmp / f"{mb}.log",
                                           args.server_cpu)
        prev_sizes = _batch_sizes(servers["batching"][1], key)
        for c in args.concurrency:
            per = {label: [] for label, _ in modes}
            for rep in range(args.reps):
                for label, _ in (modes if rep % 2 == 0 else modes[::-1]):
                    proc, port = servers[label][0], servers[label][1]
                    res = _one_run(args, proc.pid, port, c, rep, env, files)
                    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
                    per[label].append(res)
            sizes = _batch_sizes(servers["batching"][1], key)
            for label, mb in modes:
                rows.append(_row(label, mb, c, per[label]))
                if label == "batching":  # the server's batches at this concurrency
                    rows[-1].update(_batch_delta(sizes, prev_sizes))
                r = rows[-1]
                print(f"{label:12s} c={c:<3d} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                      f"p99 {r['p99_ms']:7.1f} ms  server CPU {r['server_cpu_ms_per_request']:.3f}"
                      f" ms/req  load generator CPU {r['loadgen_cpu_ms_per_request']:.3f} ms/req"
                      f"  errors {r['errors']}  load {r['loadavg_per_repetition']}"
                      + (f"  users per batch {r['mean_users_per_batch']}"
                         if "mean_users_per_batch" in r else ""), flush=True)
            prev_sizes = sizes
    finally:
        for proc, _port, out in servers.values():
            bs._stop_server(proc, out)
    return rows


def _batch_sizes(port: int, key: str) -> dict:
    """The batching server's ``maasrec_batch_size`` and ``maasrec_batch_requests``
    histogram sums and counts (``/metrics``; warm-up runs included)."""
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("maasrec_batch_size_sum", "maasrec_batch_size_count",
                    "maasrec_batch_requests_sum"):
            out[name] = float(value)
    return out


def _batch_delta(after: dict, before: dict) -> dict:
    """Mean users and requests per model call between two ``_batch_sizes`` readings."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    calls = d.get("maasrec_batch_size_count", 0.0)
    if calls <= 0:
        return {}
    return {"model_calls": int(calls),
            "mean_users_per_batch": round(d["maasrec_batch_size_sum"] / calls, 2),
            "mean_requests_per_batch": round(d["maasrec_batch_requests_sum"] / calls, 2)}


def _row(label: str, mb: int, c: int, rr: list[dict]) -> dict:
    # CPU per request of the measured part (the Python generator's runs include its
    # warm-up requests; wrk warms up in a separate run)
    n = sum(x.get("requests_with_warmup", x["requests"]) for x in rr)
    return {"mode": label, "max_batch": mb, "concurrency": c,
            "requests": int(sum(x["requests"] for x in rr)),
            "errors": int(sum(x["errors"] for x in rr)),
            "rps": round(float(np.median([x["rps"] for x in rr])), 1),
            "rps_per_repetition": [x["rps"] for x in rr],
            "loadavg_per_repetition": [x["loadavg"][0] for x in rr],
            "server_cpu_ms_per_request": round(
                1000 * sum(x["server_cpu_s"] for x in rr) / n, 3),
            "loadgen_cpu_ms_per_request": round(
                1000 * sum(x["loadgen_cpu_s"] for x in rr) / n, 3),
            # median over repetitions of each run's percentile
            "p50_ms": round(float(np.median([x["p50_ms"] for x in rr])), 3),
            "p99_ms": round(float(np.median([x["p99_ms"] for x in rr])), 3),
            "p99_ms_per_repetition": [x["p99_ms"] for x in rr]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["sequential", "lmranker"], default="sequential")
    p.add_argument("--model-dir", default=None,
                   help="reuse the model saved here by an earlier run (same --model), or "
                        "fit and save it here (default: fit into a temporary folder)")
    p.add_argument("--epochs", type=int, default=3, help="SequentialRecommender epochs")
    p.add_argument("--candidates", type=int, default=20, help="LMRanker candidates")
    p.add_argument("--max-positives", type=int, default=64,
                   help="LMRanker fine-tune groups (speed does not depend on them)")
    p.add_argument("--in-process-users", type=int, default=None,
                   help="users of the in-process comparison (default 256; LMRanker 32)")
    p.add_argument("--skip-http", action="store_true",
                   help="the in-process comparison only (no servers)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads in-process (the servers run one, like a pinned core)")
    p.add_argument("--loadgen", choices=["wrk", "python"], default="wrk",
                   help="load generator: wrk (C; a few us of CPU per request; skipped "
                        "with a message when not installed) or the asyncio client of "
                        "bench_serving.py (costs a sizeable share of the server's CPU)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds per timed wrk run")
    p.add_argument("--warmup-s", type=float, default=2.0, help="seconds of wrk warm-up per run")
    p.add_argument("--requests", type=int, default=600,
                   help="timed requests per python-generator run at c=32")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the server to CPU 0 and the load generator to CPU 1")
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--output", default=str(HERE / "results" / "serving_batching.json"))
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(cpus) >= 2
    args.server_cpu, args.loadgen_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    if not args.skip_http and args.loadgen == "wrk" and _wrk.find_wrk() is None:
        print("SKIPPED: wrk is not installed (Debian/Ubuntu: apt-get install wrk); install "
              "it, or pass --loadgen python (an asyncio client costing about as much CPU "
              "per request as the server), or --skip-http", flush=True)
        return 0
    out: dict = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                 "k": K, "loadgen": args.loadgen, "server_threads": 1,
                 "pinning": ({"server_cpu": args.server_cpu, "loadgen_cpu": args.loadgen_cpu}
                             if pin else None),
                 "command": "python benchmarks/bench_serving_batching.py " + " ".join(
                     sys.argv[1:] if argv is None else argv)}
    with tempfile.TemporaryDirectory(prefix="maasrec-bench-batching-") as tmp:
        tmp = Path(tmp)
        model_dir, desc = _model(args, tmp)
        out.update(desc)
        from maasrec import Recommender

        users = np.random.default_rng(0).permutation(
            Recommender.load(model_dir).user_vocab_.ids).tolist()
        import torch

        torch.set_num_threads(args.threads)
        out["in_process_threads"] = args.threads
        if args.server_cpu is not None:  # the in-process numbers on the server's core
            os.sched_setaffinity(0, {args.server_cpu})
        out["in_process"] = _in_process(model_dir, users, args.in_process_users or (
            256 if args.model == "sequential" else 32))
        if args.server_cpu is not None:
            os.sched_setaffinity(0, set(cpus))
        print("in-process:", out["in_process"], flush=True)
        if args.skip_http:
            return _write(args, out)
        out["runs"] = _http(args, model_dir, users, tmp)
    out["summary"] = _summary(out, max(args.concurrency))
    print(json.dumps(out["summary"]))
    return _write(args, out)


def _summary(out: dict, top: int) -> dict:
    """Req/s ratio at the top concurrency and what bounds it: the servers' CPU per
    request (the ratio req/s reaches when the server's core is the bottleneck), the load
    generator's CPU against the server's, and the in-process ceiling."""
    by = {(r["mode"], r["concurrency"]): r for r in out["runs"]}
    on, off = by[("batching", top)], by[("no batching", top)]
    ratio = on["rps"] / off["rps"]
    return {f"batching_speedup_c{top}": round(ratio, 2),
            f"goal_ge_3x_c{top}": ratio >= 3,
            f"server_cpu_saving_c{top}": round(off["server_cpu_ms_per_request"]
                                               / on["server_cpu_ms_per_request"], 2),
            f"loadgen_over_server_cpu_batching_c{top}": round(
                on["loadgen_cpu_ms_per_request"] / on["server_cpu_ms_per_request"], 3),
            "in_process_batch32_over_single_cpu": out["in_process"].get(
                "batch32_over_single_cpu"),
            f"mean_users_per_batch_c{top}": on.get("mean_users_per_batch"),
            "loadavg_1min_during_runs": {
                "min": min(min(r["loadavg_per_repetition"]) for r in out["runs"]),
                "max": max(max(r["loadavg_per_repetition"]) for r in out["runs"])}}


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
