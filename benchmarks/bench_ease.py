"""EASE fit time and peak memory at 4k / 9.7k / 17.6k items beside a float32 ``numpy.linalg.inv``.

Issue 17: ``scipy.linalg.cho_factor`` (OpenBLAS, 2 threads) died with SIGSEGV at about
16,000 items, so EASE now factors and inverts with torch's LAPACK. This script fits
``EASE(l2=200)`` on synthetic data at several catalogue sizes and, in the same run and
at the same sizes, times the reference a user would write by hand: the dense float32
Gram matrix inverted by ``numpy.linalg.inv`` (OpenBLAS). Every measurement runs in its
own subprocess with the inherited environment (default thread settings, ``OPENBLAS_*``
unchanged), so a crash is recorded as a result (exit code / signal) instead of ending
the run; the table gives each fit time, its ratio to the reference at the same size,
and each process's peak RSS.

Data: the shape of Amazon Sports 5-core, the issue's data set (35,598 users x 18,357
items, 296,337 interactions), kept at every catalogue size: 1.94 users per item and 8.3
interactions per user, so the density is 8.3 / n_items (4.7e-4 at 17,600 items, 4.5e-4
in the original; 2.0e-3 at 4,000); items drawn with Zipf-like popularity (exponent 0.8),
every item seen at least once, binary values.

Run: ``python benchmarks/bench_ease.py`` (about 15 minutes on 2 cores); writes
``benchmarks/results/ease.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

USERS_PER_ITEM = 35_598 / 18_357
ITEMS_PER_USER = 296_337 / 35_598
L2 = 200.0

CHILD = r"""
import json, resource, sys, time
import numpy as np, scipy.sparse as sp
mode, n_items = sys.argv[1], int(sys.argv[2])
users_per_item, items_per_user, l2 = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rng = np.random.default_rng(0)
n_users = int(round(users_per_item * n_items))
nnz = int(round(items_per_user * n_users))
p = 1.0 / np.arange(1, n_items + 1) ** 0.8
p /= p.sum()
rows = rng.integers(0, n_users, nnz)
cols = rng.choice(n_items, nnz, p=p)
cols[:n_items] = np.arange(n_items)
X = sp.csr_matrix((np.ones(nnz), (rows, cols)), shape=(n_users, n_items))
X.sum_duplicates(); X.data[:] = 1.0
out = {"n_users": n_users, "nnz": int(X.nnz), "density": X.nnz / (n_users * n_items)}
if mode == "ease":
    from maasrec.models import EASE
    t0 = time.perf_counter()
    m = EASE(l2=l2).fit(X)
    out["seconds"] = time.perf_counter() - t0
    out["finite"] = bool(np.isfinite(m.B_).all())
else:  # the hand-written reference: dense float32 Gram matrix, numpy.linalg.inv
    import threadpoolctl
    out["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                   for d in threadpoolctl.threadpool_info()]
    t0 = time.perf_counter()
    G = (X.T @ X).toarray().astype(np.float32)
    G[np.diag_indices(n_items)] += l2
    t1 = time.perf_counter()
    P = np.linalg.inv(G)
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    out["seconds"] = time.perf_counter() - t0
    out["inv_seconds"] = time.perf_counter() - t1
    out["finite"] = bool(np.isfinite(B).all())
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""


def run_child(mode: str, n_items: int, timeout: float) -> dict:
    """One measurement in a fresh interpreter with the inherited environment."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(n_items), str(USERS_PER_ITEM),
             str(ITEMS_PER_USER), str(L2)],
            capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        return {"mode": mode, "n_items": n_items, "status": f"timeout after {timeout:.0f} s"}
    res: dict = {"mode": mode, "n_items": n_items, "returncode": proc.returncode,
                 "wall_s": time.perf_counter() - t0}
    if proc.returncode < 0:
        res["status"] = f"crashed: {signal.Signals(-proc.returncode).name}"
    elif proc.returncode != 0:
        res["status"] = f"failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    else:
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
        res.update(json.loads(line[len("RESULT "):]))
        res["status"] = "ok"
    return res


def _secs(x: dict) -> str:
    return f"{x['seconds']:.1f}" if x["status"] == "ok" else x["status"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 9700, 17600])
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ease.json")
    args = ap.parse_args(argv)
    from benchmarks.machine import calibrate, loadavg, machine_info

    doc = {"machine": machine_info(), "load_start": loadavg(),
           "env": {k: v for k, v in os.environ.items()
                   if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
           "l2": L2, "calibration": calibrate(), "rows": []}
    for n in args.sizes:
        for mode in ("ease", "numpy_inv_f32"):
            r = run_child(mode, n, args.timeout)
            print(json.dumps(r), flush=True)
            doc["rows"].append(r)
    doc["load_end"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print("\n| items | users | interactions | EASE fit s | peak MiB | numpy inv f32 s (inv only) "
          "| peak MiB | EASE / numpy |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        e, r = [x for x in doc["rows"] if x["n_items"] == n]
        ref = (f"{r['seconds']:.1f} ({r['inv_seconds']:.1f})" if r["status"] == "ok"
               else r["status"])
        ratio = (f"{e['seconds'] / r['seconds']:.2f}"
                 if e["status"] == "ok" and r["status"] == "ok" else "–")
        print(f"| {n:,} | {e.get('n_users', r.get('n_users', 0)):,} | "
              f"{e.get('nnz', r.get('nnz', 0)):,} | {_secs(e)} | {e.get('peak_rss_mib', 0):.0f} | "
              f"{ref} | {r.get('peak_rss_mib', 0):.0f} | {ratio} |")
    print(f"\nmaxrss of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
