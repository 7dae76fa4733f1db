"""Load test of ``maasrec serve`` on loopback: throughput and latency, with and without batching.

What it does (bounded: a fixed number of requests per run; stops by itself):

1. fits EASE on MovieLens 1M (``maasrec.datasets.load_movielens("1m")`` from
   ``$MAASREC_DATA``; else the raw ``ratings_complete_no_timestamp.dat.gz``; else the
   embedded latest-small) and saves it to a temporary directory;
2. measures ``model.recommend`` in-process on the loaded model (one user per call, as the
   HTTP requests do) for the overhead ratio;
3. starts ``python -m maasrec serve`` on 127.0.0.1 twice -- micro-batching on
   (``--max-batch 64``) and off (``--max-batch 1``) -- and for each runs a load generator
   **in a separate process** at concurrency 1, 8 and 32: an asyncio HTTP/1.1 keep-alive
   client (raw streams: on a small machine the client's own CPU use would otherwise
   distort the server's numbers), one random known user per request, ``k=10``, with an
   API key; warm-up requests first, then a fixed number of timed requests;
4. writes ``benchmarks/results/serving.json`` and prints a table.

Run: ``python benchmarks/bench_serving.py`` (about 2 minutes on 2 cores, plus the EASE fit).
Options: ``--quick`` (fewer requests), ``--data-home PATH``, ``--output PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONCURRENCY = (1, 8, 32)
K = 10


# -- load generator (runs in its own process) ---------------------------------------------------
async def _worker(host: str, port: int, bodies: list[bytes], key: str, next_i: list[int],
                  n_total: int, lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /v1/recommend HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nX-API-Key: {key}\r\n").encode()
    try:
        while True:
            i = next_i[0]
            if i >= n_total:
                return
            next_i[0] = i + 1
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if b" 200 " not in status_line:
                errors.append(status_line.decode(errors="replace").strip() + " "
                              + payload[:200].decode(errors="replace"))
    finally:
        writer.close()


async def _load(url: str, key: str, users: list, concurrency: int, n_requests: int,
                n_warmup: int) -> dict:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port
    bodies = [json.dumps({"users": [u], "k": K}).encode() for u in users]

    async def run(n: int, offset: int) -> tuple[list[float], list[str], float]:
        lat: list[float] = []
        errors: list[str] = []
        counter = [0]
        rotated = bodies[offset:] + bodies[:offset]
        t0 = time.perf_counter()
        await asyncio.gather(*(_worker(host, port, rotated, key, counter, n, lat, errors)
                               for _ in range(concurrency)))
        return lat, errors, time.perf_counter() - t0

    await run(n_warmup, len(bodies) // 2)
    lat, errors, wall = await run(n_requests, 0)
    a = np.asarray(lat) * 1000
    return {"concurrency": concurrency, "requests": len(lat), "warmup": n_warmup,
            "errors": len(errors),
            "error_examples": errors[:3], "seconds": round(wall, 3),
            "rps": round(len(lat) / wall, 1),
            "latencies_ms": [round(float(x), 4) for x in a]}


def loadgen_main(args: argparse.Namespace) -> int:
    """Entry of the load-generator subprocess: prints one JSON line."""
    host = urllib.parse.urlsplit(args.url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host!r}: loopback only")
    users = json.loads(Path(args.users_file).read_text())
    res = asyncio.run(_load(args.url, os.environ["BENCH_API_KEY"], users, args.concurrency,
                            args.requests, args.warmup))
    print(json.dumps(res))
    return 0


# -- orchestration ------------------------------------------------------------------------------
def _ratings_1m(data_home: str | None):
    """MovieLens 1M interactions, or None."""
    from maasrec import datasets

    home = data_home or os.environ.get("MAASREC_DATA")
    candidates = [home] if home else []
    candidates.append(str(HERE.parent.parent / "shared" / "data"))
    for h in candidates:
        if not h:
            continue
        try:
            return datasets.load_movielens("1m", data_home=h, download=False).interactions, \
                "MovieLens 1M (maasrec.datasets)"
        except Exception:  # not there, or an older loader: try the raw file
            raw = Path(h) / "ml-1m" / "ratings_complete_no_timestamp.dat.gz"
            if raw.is_file():
                import pandas as pd

                with gzip.open(raw, "rt") as f:
                    df = pd.read_csv(f, sep=":", header=None, usecols=[0, 2, 4],
                                     names=["user", "item", "rating"])
                return df, "MovieLens 1M (raw ratings file)"
    return None


def _prepare_model(tmp: Path, data_home: str | None) -> tuple[Path, str, float]:
    from maasrec import datasets
    from maasrec.models import EASE

    found = _ratings_1m(data_home)
    if found is None:
        data, name = datasets.load_movielens("latest-small").interactions, \
            "MovieLens latest-small (embedded; ml-1m not found)"
    else:
        data, name = found
    t0 = time.perf_counter()
    model = EASE(l2=500.0).fit(data)
    fit_s = time.perf_counter() - t0
    path = tmp / "ease"
    model.save(path)
    return path, name, fit_s


def _pct(a_ms: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(a_ms, 50)), 3),
            "p95_ms": round(float(np.percentile(a_ms, 95)), 3),
            "p99_ms": round(float(np.percentile(a_ms, 99)), 3)}


def _in_process(model_dir: Path, users: list, n: int) -> dict:
    from maasrec import Recommender

    model = Recommender.load(model_dir)
    for u in users[:50]:
        model.recommend([u], k=K)
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        model.recommend([users[i % len(users)]], k=K)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    out = {"calls": n, "users_per_call": 1, "rps": round(n / wall, 1),
           **_pct(np.asarray(lat) * 1000)}
    # the same users, 32 per call: what batching can buy inside the model
    t0 = time.perf_counter()
    done = 0
    while done < n:
        model.recommend(users[done % len(users):done % len(users) + 32], k=K)
        done += 32
    out["batched32_users_per_s"] = round(done / (time.perf_counter() - t0), 1)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model_dir: Path, max_batch: int, key: str, log: Path):
    port = _free_port()
    env = {**os.environ, "MAASREC_API_KEYS": key}
    out = open(log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maasrec", "serve", str(model_dir), "--host", "127.0.0.1",
         "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", "0",
         "--no-access-log", "--log-level", "warning"],
        stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_healthy(proc, port, key, log, timeout=120)
    return proc, port, out


def wait_healthy(proc, port: int, key: str, log: Path, timeout: float) -> None:
    """Poll ``/health`` until the server answers; its log in the error if it exits."""
    from maasrec.client import Client, ServiceError

    c = Client(f"http://127.0.0.1:{port}", api_key=key, retries=0)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            c.health()
            return
        except ServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop_server(proc, out) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    out.close()
    return rc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--users-file", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    p.add_argument("--data-home", default=None, help="folder holding ml-1m/")
    p.add_argument("--output", default=str(HERE / "results" / "serving.json"))
    args = p.parse_args(argv)
    if args.loadgen:
        return loadgen_main(args)

    import maasrec

    n_req = {1: 600, 8: 1800, 32: 3600}  # timed requests per mode, over `reps` repetitions
    reps = 3
    if args.quick:
        n_req, reps = {c: max(100, n // 10) for c, n in n_req.items()}, 1
    key = secrets.token_urlsafe(24)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform(),
                                 "maasrec": maasrec.__version__,
                                 "load_average_start": os.getloadavg()},
                     "k": K, "runs": [],
                     "note": "Wall-clock rates and latencies are meaningful only when the load "
                             "average is well below the CPU count (other processes share the "
                             "cores); server_cpu_ms_per_request is much less sensitive to them."}
    with tempfile.TemporaryDirectory(prefix="maasrec-bench-serving-") as tmp:
        tmp = Path(tmp)
        model_dir, data_name, fit_s = _prepare_model(tmp, args.data_home)
        model = maasrec.Recommender.load(model_dir)
        rng = np.random.default_rng(0)
        users = rng.permutation(model.user_vocab_.ids).tolist()
        results.update({"data": data_name, "model": "EASE(l2=500)", "fit_s": round(fit_s, 1),
                        "n_users": model.n_users_, "n_items": model.n_items_})
        del model
        print(f"{data_name}: EASE fitted in {fit_s:.1f}s "
              f"({results['n_users']} users, {results['n_items']} items)", flush=True)
        results["in_process"] = _in_process(model_dir, users, 2000 if not args.quick else 200)
        print("in-process:", results["in_process"], flush=True)
        users_file = tmp / "users.json"
        users_file.write_text(json.dumps(users))
        env = {**os.environ, "BENCH_API_KEY": key}
        modes = (("batching", 64), ("no batching", 1))
        servers = {}
        try:
            for label, max_batch in modes:  # both up; an idle server costs no CPU
                servers[label] = _start_server(model_dir, max_batch, key,
                                               tmp / f"{max_batch}.log")
            for c in CONCURRENCY:
                per_mode: dict[str, list[dict]] = {label: [] for label, _ in modes}
                for rep in range(reps):
                    # alternate the order so that changing background load hits both modes
                    order = modes if rep % 2 == 0 else modes[::-1]
                    for label, _ in order:
                        proc, port = servers[label][0], servers[label][1]
                        cpu0 = _cpu_seconds(proc.pid)
                        r = subprocess.run(
                            [sys.executable, __file__, "--loadgen", "--url",
                             f"http://127.0.0.1:{port}", "--users-file", str(users_file),
                             "--concurrency", str(c), "--requests", str(n_req[c] // reps),
                             "--warmup", str(min(200, n_req[c] // reps // 4))],
                            capture_output=True, text=True, env=env, timeout=600, check=True)
                        res = json.loads(r.stdout)
                        res["server_cpu_s"] = _cpu_seconds(proc.pid) - cpu0
                        per_mode[label].append(res)
                for label, max_batch in modes:
                    reps_ = per_mode[label]
                    lat = np.concatenate([x["latencies_ms"] for x in reps_])
                    row = {"mode": label, "max_batch": max_batch, "concurrency": c,
                           "requests": int(sum(x["requests"] for x in reps_)),
                           "errors": int(sum(x["errors"] for x in reps_)),
                           "error_examples": [e for x in reps_ for e in x["error_examples"]][:3],
                           "repetitions": reps,
                           "rps": round(float(np.median([x["rps"] for x in reps_])), 1),
                           "rps_per_repetition": [x["rps"] for x in reps_],
                           # warm-up requests included: CPU is read around the whole run
                           "server_cpu_ms_per_request": round(
                               1000 * sum(x["server_cpu_s"] for x in reps_)
                               / sum(x["requests"] + x["warmup"] for x in reps_), 3),
                           **_pct(lat), "max_ms": round(float(lat.max()), 3)}
                    results["runs"].append(row)
                    print(f"{label:12s} c={c:<3d} {row['rps']:8.1f} req/s  p50 "
                          f"{row['p50_ms']:7.2f}  p95 {row['p95_ms']:7.2f}  p99 "
                          f"{row['p99_ms']:7.2f} ms  server CPU {row['server_cpu_ms_per_request']:.2f} "
                          f"ms/req  errors {row['errors']}", flush=True)
        finally:
            for label, (proc, _port, out) in servers.items():
                results.setdefault("server_exit_codes", {})[label] = _stop_server(proc, out)
        results["load_average_end"] = os.getloadavg()

    by = {(r["mode"], r["concurrency"]): r for r in results["runs"]}
    inproc = results["in_process"]
    b32, n32 = by[("batching", 32)], by[("no batching", 32)]
    b1 = by[("batching", 1)]
    results["summary"] = {
        "batching_speedup_c32": round(b32["rps"] / n32["rps"], 2),
        "goal_batching_speedup_c32_ge_3": b32["rps"] / n32["rps"] >= 3,
        "p99_over_p50_c1_batching": round(b1["p99_ms"] / b1["p50_ms"], 2),
        "p99_over_p50_c1_no_batching": round(by[("no batching", 1)]["p99_ms"]
                                             / by[("no batching", 1)]["p50_ms"], 2),
        "goal_p99_le_2x_p50_c1": b1["p99_ms"] <= 2 * b1["p50_ms"],
        "total_errors": sum(r["errors"] for r in results["runs"]),
        "server_cpu_ms_per_request_c32": {"batching": b32["server_cpu_ms_per_request"],
                                          "no batching": n32["server_cpu_ms_per_request"]},
        "server_cpu_saving_c32": round(n32["server_cpu_ms_per_request"]
                                       / b32["server_cpu_ms_per_request"], 2),
        "inprocess_batch32_over_single_throughput": round(
            inproc["batched32_users_per_s"] / inproc["rps"], 2),
        "http_over_inprocess_latency_c1": round(b1["p50_ms"] / inproc["p50_ms"], 2),
        "http_rps_c32_over_inprocess_rps": round(b32["rps"] / inproc["rps"], 2),
    }
    print(json.dumps(results["summary"], indent=1))
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
