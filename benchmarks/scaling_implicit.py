"""implicit's BPR fit time on the scaling suite's synthetic data: a reference slope.

The scaling harness fits maasrec models only (its workers run in maasrec's venv). This
script fits ``implicit.cpu.bpr.BayesianPersonalizedRanking`` (one thread, 64 factors,
2 iterations = 2 epochs of sampled triples, negatives verified against the user's items
as maasrec's ``exclude_positives``) on the same ``.npz`` files the suite draws (run
``python -m benchmarks run scaling`` first, same ``--work``), and writes the fit times
and the log-log slope of fit time versus interactions, over all sizes and the largest
decade, like the suite. It shows whether a tight C++ Hogwild loop also grows faster than
the interactions on this machine (random row reads/writes of a user table that outgrows
the caches), i.e. how much of maasrec's BPR slope above 1 is the memory hierarchy.

Run it with the implicit peer venv (``benchmarks/peers/setup_implicit.sh``)::

    /tmp/peers/implicit/bin/python benchmarks/scaling_implicit.py \\
        --out benchmarks/results/scaling/implicit_bpr.json

Fit time = fastest of up to ``--repeats`` fits (further fits only while the spent time is
under ``--budget`` seconds, as the suite's ``timing_repeats``/``repeat_budget_s``); the
CSR matrix is built before the clock starts.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/implicit load their pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
SIZES = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]


def slope(x, y):
    """Least-squares slope of log(y) on log(x) (None with fewer than 2 points)."""
    if len(x) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def load_csr(path: Path) -> sp.csr_matrix:
    """The user x item binary matrix of one synthetic data file (users, items raw ids)."""
    d = np.load(path)
    _, u = np.unique(d["users"], return_inverse=True)
    _, i = np.unique(d["items"], return_inverse=True)
    R = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)),
                      shape=(u.max() + 1, i.max() + 1))
    R.sum_duplicates()
    R.data[:] = 1.0
    return R


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(HERE / "_work"),
                    help="the suite's work directory (holds scaling/data/n<size>.npz)")
    ap.add_argument("--sizes", type=float, nargs="+", default=SIZES)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--out", default=str(HERE / "results" / "scaling" / "implicit_bpr.json"))
    args = ap.parse_args()

    import implicit
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    data_dir = Path(args.work) / "scaling" / "data"
    fits = []
    for size in (int(s) for s in args.sizes):
        path = data_dir / f"n{size}.npz"
        if not path.is_file():
            raise SystemExit(f"{path} not found: run `python -m benchmarks run scaling` first "
                             "(same --work)")
        R = load_csr(path)
        times, spent = [], 0.0
        while len(times) < args.repeats and (not times or spent < args.budget):
            model = BayesianPersonalizedRanking(factors=args.factors,
                                                iterations=args.iterations,
                                                num_threads=1, random_state=0)
            t0 = time.perf_counter()
            model.fit(R, show_progress=False)
            times.append(time.perf_counter() - t0)
            spent += times[-1]
        rec = {"size": size, "nnz": int(R.nnz), "n_users": int(R.shape[0]),
               "n_items": int(R.shape[1]), "fit_time_s": min(times),
               "fit_time_median_s": float(np.median(times)), "fit_times_s": times,
               "ns_per_triple": 1e9 * min(times) / (R.nnz * args.iterations),
               "loadavg": list(os.getloadavg())}
        fits.append(rec)
        print(f"implicit BPR nnz {rec['nnz']:>10,}: fit {rec['fit_time_s']:.2f} s "
              f"(median {rec['fit_time_median_s']:.2f}, {len(times)} fits), "
              f"{rec['ns_per_triple']:.0f} ns/triple, load {rec['loadavg'][0]:.1f}", flush=True)
    nnz = [f["nnz"] for f in fits]
    t = [f["fit_time_s"] for f in fits]
    top = [k for k, n in enumerate(nnz) if n >= nnz[-1] / 10.5]
    out = {
        "model": "implicit.cpu.bpr.BayesianPersonalizedRanking",
        "params": {"factors": args.factors, "iterations": args.iterations, "num_threads": 1,
                   "random_state": 0},
        "versions": {"implicit": implicit.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "started_loadavg": fits[0]["loadavg"] if fits else None,
        "fits": fits,
        "slope_all_sizes": slope(nnz, t),
        "slope_top_decade": slope([nnz[k] for k in top], [t[k] for k in top]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(f"slope all sizes {out['slope_all_sizes']:.2f}, top decade "
          f"{out['slope_top_decade']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
