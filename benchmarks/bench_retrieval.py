"""Approximate retrieval (faiss flat / IVF / HNSW) against exact brute force.

Measures, on a synthetic catalogue of 1M items x 64-d (MF-like: clustered, with varied
norms) and, when available, on ALS vectors of MovieLens 1M:

* recall@10 of each index setting against the exact top 10 (float32 inner products,
  ties by lower index), both for a raw ``FaissRetriever.search(q, 10)`` and for the
  pipeline ``recommend`` runs (``retrieve_topk``: fetch ``n_candidates`` = 100, exact
  re-scoring, filters);
* queries per second, in the same run, against exact brute force: numpy matmul +
  maasrec's exact top-k (what ``recommend`` does without a retriever), numpy matmul +
  ``argpartition``, torch matmul + ``topk``, and faiss's flat (BLAS) index;
* index build time, index size (bytes written by ``faiss.write_index``) and the growth
  of the process's resident memory while building;
* the pipeline with exclusions (each user has "seen" 50 random items and 20 of its
  true top 30): recall, QPS, how many rows needed a larger fetch or exact scoring.

Outputs ``benchmarks/results/retrieval.json`` and ``retrieval_recall_qps.png`` (recall
versus QPS; matplotlib is needed for the plot only, it is not a maasrec dependency).

Run: ``python benchmarks/bench_retrieval.py`` (about 6 minutes on 2 cores; HNSW
construction at 1M items is most of it); ``--n-items 100000`` for a quick run;
``--data-home PATH`` (or ``$MAASREC_DATA``) for the MovieLens 1M part, which is skipped
with a message when the data or ``maasrec.models.ALS`` are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
K = 10


# -- environment ---------------------------------------------------------------------------

def _rss() -> int:
    """Current resident set size in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine(threads: int) -> dict:
    import faiss
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "logical_cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "memory_bytes": mem, "python": sys.version.split()[0], "numpy": np.__version__,
            "faiss": faiss.__version__, "torch": torch.__version__, "threads": threads}


# -- data ----------------------------------------------------------------------------------

def synthetic(n_items: int, dim: int, n_queries: int, seed: int = 0):
    """MF-like vectors: 1,024 taste clusters, within-cluster noise, log-normal norms.

    Items ``c_j + 0.7 e`` scaled by ``LogNormal(0, 0.25)`` (popular items have larger
    norms, as in MF), queries ``c_j + 0.7 e`` for random clusters, with ``c ~ N(0, I)``
    and ``e ~ N(0, I)``.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1024, dim), dtype=np.float32)
    items = np.empty((n_items, dim), dtype=np.float32)
    step = 200_000
    for a in range(0, n_items, step):
        b = min(n_items, a + step)
        lab = rng.integers(0, len(centers), b - a)
        block = centers[lab] + 0.7 * rng.standard_normal((b - a, dim), dtype=np.float32)
        block *= rng.lognormal(0.0, 0.25, b - a).astype(np.float32)[:, None]
        items[a:b] = block
    lab = rng.integers(0, len(centers), n_queries)
    queries = centers[lab] + 0.7 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    return items, queries.astype(np.float32)


# -- exact baselines -----------------------------------------------------------------------

def exact_topk_torch(q: np.ndarray, v: np.ndarray, k: int, exclude=None,
                     block: int = 64) -> np.ndarray:
    """Exact top-k (float32 scores, ties by lower index) with torch, for ground truth."""
    import torch

    from maasrec.rankers import TopK

    vt = torch.from_numpy(v)
    out = np.empty((len(q), k), dtype=np.int64)
    for a in range(0, len(q), block):
        s = torch.from_numpy(q[a:a + block]) @ vt.T
        ex = exclude[a:a + block] if exclude is not None else None
        out[a:a + block] = TopK(k).rank(s, exclude=ex)[0].numpy()
    return out


def time_exact(q: np.ndarray, v: np.ndarray, k: int) -> dict:
    """Queries/s of exact brute force, four ways (same queries)."""
    import faiss
    import torch

    from maasrec.rankers import topk_indices

    out = {}
    block = 32
    t = time.perf_counter()
    for a in range(0, len(q), block):
        topk_indices(q[a:a + block] @ v.T, k)
    out["numpy_matmul_maasrec_topk"] = len(q) / (time.perf_counter() - t)
    t = time.perf_counter()
    for a in range(0, len(q), block):
        s = q[a:a + block] @ v.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)
    out["numpy_matmul_argpartition"] = len(q) / (time.perf_counter() - t)
    vt = torch.from_numpy(v)
    t = time.perf_counter()
    for a in range(0, len(q), block):
        torch.topk(torch.from_numpy(q[a:a + block]) @ vt.T, k)
    out["torch_matmul_topk"] = len(q) / (time.perf_counter() - t)
    flat = faiss.IndexFlatIP(v.shape[1])
    flat.add(v)
    t = time.perf_counter()
    flat.search(q, k)
    out["faiss_flat"] = len(q) / (time.perf_counter() - t)
    del flat
    return {name: round(qps, 2) for name, qps in out.items()}


def recall(got: np.ndarray, ref: np.ndarray) -> float:
    k = ref.shape[1]
    hits = [len(set(a[:k].tolist()) & set(b.tolist())) for a, b in zip(got, ref)]
    return float(np.mean(hits) / k)


# -- indexes -------------------------------------------------------------------------------

def build(kind: str, v: np.ndarray, workdir: Path, **params) -> tuple:
    from maasrec.rankers import FaissRetriever

    rss0 = _rss()
    t = time.perf_counter()
    r = FaissRetriever(kind, random_state=0, **params).fit(v)
    seconds = time.perf_counter() - t
    rss1 = _rss()
    path = workdir / f"{kind}-{time.time_ns()}"
    r.save(path)
    size = (path / "index.faiss").stat().st_size
    # RSS growth under-counts when memory freed by an earlier build is reused: the index
    # size is the reliable number (faiss holds the index in memory as written)
    info = {"build_seconds": round(seconds, 2), "index_bytes": size,
            "rss_growth_bytes": max(0, rss1 - rss0), "vectors_bytes": v.nbytes}
    if kind == "ivf":
        info["nlist"] = r.nlist_
    if kind == "hnsw":
        info["M"] = r.hnsw_m
        info["ef_construction"] = r.ef_construction
    for f in path.iterdir():
        f.unlink()
    path.rmdir()
    return r, info


def sweep(r, q: np.ndarray, ref: np.ndarray, name: str, values: list[int],
          numpy_qps: float) -> list[dict]:
    rows = []
    r.search(q[:8], K)  # warm-up
    for value in values:
        r.set_params(**{name: value})
        t = time.perf_counter()
        idx, _ = r.search(q, K)
        qps = len(q) / (time.perf_counter() - t)
        rows.append({name: value, "recall@10": round(recall(idx, ref), 4), "qps": round(qps, 1),
                     "speedup_vs_numpy": round(qps / numpy_qps, 1)})
        print(f"  {name}={value:<5d} recall@10={rows[-1]['recall@10']:.4f} "
              f"qps={qps:9.1f} ({rows[-1]['speedup_vs_numpy']}x numpy brute force)")
    return rows


def pipeline(r, q: np.ndarray, v: np.ndarray, ref: np.ndarray, numpy_qps: float,
             exclude=None, ref_excluded=None) -> dict:
    """retrieve_topk (what recommend runs) at the retriever's current settings."""
    from maasrec.rankers import retrieve_topk

    t = time.perf_counter()
    idx, _, stats = retrieve_topk(r, q, v, K, exclude=exclude, return_stats=True)
    qps = len(q) / (time.perf_counter() - t)
    target = ref if ref_excluded is None else ref_excluded
    out = {"recall@10": round(recall(idx, target), 4), "qps": round(qps, 1),
           "speedup_vs_numpy": round(qps / numpy_qps, 1), "stats": stats}
    return out


def seen_matrix(q: np.ndarray, v: np.ndarray, ref30: np.ndarray, seed: int = 1):
    """Each user 'has seen' 50 random items and 20 of its true top 30."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(len(q)):
        items = np.concatenate([rng.choice(len(v), 50, replace=False),
                                rng.choice(ref30[u], 20, replace=False)])
        items = np.unique(items)
        rows.append(np.full(len(items), u))
        cols.append(items)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(q), len(v)))


# -- MovieLens 1M ---------------------------------------------------------------------------

def movielens(data_home: str | None, threads: int) -> dict:
    try:
        from maasrec.models import ALS
    except ImportError:
        return {"skipped": "maasrec.models.ALS does not exist yet"}
    from maasrec import datasets
    from maasrec.exceptions import DataError
    from maasrec.rankers import FaissRetriever, TopK, retrieve_topk

    try:
        ds = datasets.load_movielens("1m", data_home=data_home, download=False)
    except DataError as exc:
        return {"skipped": f"MovieLens 1M not found ({exc}); pass --data-home or set "
                           f"MAASREC_DATA"}
    X = ds.interactions
    t = time.perf_counter()
    model = ALS(factors=64, random_state=0).fit(X)
    fit_s = time.perf_counter() - t
    users = np.arange(X.n_users)
    U = model.user_factors_.astype(np.float32)
    V = model.item_factors_.astype(np.float32)
    seen = model.seen_
    t = time.perf_counter()
    ref_idx = np.empty((len(users), K), dtype=np.int64)
    for a in range(0, len(users), 512):
        b = min(len(users), a + 512)
        ref_idx[a:b] = TopK(K).rank(U[a:b] @ V.T, exclude=seen[a:b])[0]
    exact_s = time.perf_counter() - t
    out = {"n_users": int(X.n_users), "n_items": int(X.n_items), "factors": 64,
           "als_fit_seconds": round(fit_s, 1),
           "exact_qps (numpy matmul + TopK, seen excluded)": round(len(users) / exact_s, 1),
           "indexes": {}}
    for kind in ("flat", "ivf", "hnsw"):
        r = FaissRetriever(kind, random_state=0).fit(V)
        t = time.perf_counter()
        idx, _, stats = retrieve_topk(r, U, V, K, exclude=seen, return_stats=True)
        s = time.perf_counter() - t
        out["indexes"][kind] = {"recall@10": round(recall(idx, ref_idx), 4),
                                "qps": round(len(users) / s, 1), "stats": stats}
        print(f"  ML-1M {kind:5s} recall@10={out['indexes'][kind]['recall@10']:.4f} "
              f"qps={len(users) / s:.0f}")
    return out


# -- plot ----------------------------------------------------------------------------------

def plot(results: dict, path: Path) -> None:
    """Recall@10 versus queries/s (matplotlib imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for kind, key, marker in (("ivf", "nprobe", "o"), ("hnsw", "ef_search", "s")):
        rows = results["indexes"][kind]["sweep"]
        ax.plot([r["recall@10"] for r in rows], [r["qps"] for r in rows], marker=marker,
                label=f"{kind.upper()} ({key})")
        for r in rows:
            ax.annotate(str(r[key]), (r["recall@10"], r["qps"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    exact = results["exact"]
    best = max(exact.values())
    ax.axhline(best, linestyle="--", color="grey", linewidth=1,
               label=f"exact brute force, best of {len(exact)} ({best:.0f} q/s)")
    ax.axhline(exact["numpy_matmul_maasrec_topk"], linestyle=":", color="black", linewidth=1,
               label=f"exact: numpy matmul + TopK ({exact['numpy_matmul_maasrec_topk']:.0f} q/s)")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 (vs exact top 10)")
    ax.set_ylabel("queries / second")
    d = results["dataset"]
    ax.set_title(f"maasrec FaissRetriever, {d['n_items']:,} items x {d['dim']}-d, "
                 f"{results['machine']['threads']} threads")
    ax.axvline(0.95, color="red", linewidth=0.6, linestyle=":")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(bottom=min(exact.values()) / 2)
    ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n-queries", type=int, default=1000,
                        help="queries for recall and ANN speed")
    parser.add_argument("--n-exact-queries", type=int, default=128,
                        help="queries timed for the exact brute-force baselines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-home", default=os.environ.get("MAASREC_DATA"))
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import faiss
    import torch

    from maasrec.rankers.ann import DEFAULT_EF_SEARCH

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    results: dict = {"machine": machine(args.threads)}
    print(f"machine: {results['machine']}")

    v, q = synthetic(args.n_items, args.dim, args.n_queries)
    results["dataset"] = {"kind": "synthetic MF-like (see synthetic())", "n_items": len(v),
                          "dim": args.dim, "n_queries": len(q), "seed": 0}
    print(f"data: {len(v):,} x {args.dim}, {len(q)} queries")

    t = time.perf_counter()
    ref30 = exact_topk_torch(q, v, 30)
    ref = ref30[:, :K]
    print(f"ground truth (exact top 30 by torch) in {time.perf_counter() - t:.1f}s")
    seen = seen_matrix(q, v, ref30)
    ref_seen = exact_topk_torch(q, v, K, exclude=seen)
    results["exact"] = time_exact(q[: args.n_exact_queries], v, K)
    numpy_qps = results["exact"]["numpy_matmul_maasrec_topk"]
    print(f"exact brute force qps: {results['exact']}")

    results["indexes"] = {}
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        work = Path(tmp)
        for kind, key, values in (("ivf", "nprobe", [4, 8, 16, 32, 64, 128, 256]),
                                  ("hnsw", "ef_search", [16, 32, 64, 96, 128, 192, 256, 512])):
            print(f"{kind}: building ...")
            r, info = build(kind, v, work)
            print(f"  {info}")
            info["sweep"] = sweep(r, q, ref, key, values, numpy_qps)
            r.set_params(**{key: None})  # back to the defaults
            info["default"] = {key: r._nprobe(K) if kind == "ivf" else DEFAULT_EF_SEARCH}
            info["default"]["pipeline"] = pipeline(r, q, v, ref, numpy_qps)
            info["default"]["pipeline_with_seen_items"] = pipeline(r, q, v, ref, numpy_qps,
                                                                   exclude=seen,
                                                                   ref_excluded=ref_seen)
            print(f"  defaults: {info['default']}")
            results["indexes"][kind] = info
            del r
        print("flat: building ...")
        r, info = build("flat", v, work)
        idx, _ = r.search(q[: args.n_exact_queries], K)
        info["recall@10"] = recall(idx, ref[: args.n_exact_queries])
        results["indexes"]["flat"] = info
        del r

    if args.skip_movielens:
        results["movielens_1m_als"] = {"skipped": "--skip-movielens"}
    else:
        print("MovieLens 1M ALS vectors ...")
        results["movielens_1m_als"] = movielens(args.data_home, args.threads)
        if "skipped" in results["movielens_1m_als"]:
            print(f"  skipped: {results['movielens_1m_als']['skipped']}")
    results["peak_rss_bytes"] = _peak_rss()
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "retrieval.json", "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    try:
        plot(results, args.out / "retrieval_recall_qps.png")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
    print(f"wrote {args.out / 'retrieval.json'} in {results['total_seconds']}s")
    return results


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    main()
