"""Compression trade-offs (maasrec.compress): size, speed and quality, side by side.

Three parts, each against its float32 baseline in the same run:

* ``tables``: ALS on MovieLens 1M and Amazon Beauty (per-user random 8:1:1 split, seed
  0), its factor tables stored as int8 (per-row scale), float16 and bfloat16
  (``maasrec.compress.quantize``): table bytes, model directory bytes, NDCG@10 and
  Recall@10 on the test split (full ranking, training items excluded), relative change.
* ``faiss``: FaissRetriever indexes (flat, hnsw, ivf, ivfpq, sq8) over ALS item vectors of
  MovieLens 1M (queries: the users' vectors) and over 100,000 clustered random 64-d
  vectors: recall@10 of ``search`` against the exact inner-product top 10, recall@10 of
  100 candidates, bytes per vector (index file size / n), queries/s on one thread.
* ``encoder``: all-MiniLM-L6-v2 (the ``text`` extra) as float32 torch, int8 per-token
  (``quantize_encoder``), int8 ``torch.ao`` dynamic and ONNX Runtime float32
  (``export_onnx``): texts/s at 1 and 2 threads (median of 3 interleaved rounds) on 400
  MovieLens latest-small item texts, mean/min cosine to float32, max |difference|, and retrieval NDCG@10 of a
  text-only recommender (a user = the mean of their training items' vectors; items
  ranked by inner product) on ML-latest-small, per-user 8:1:1.

Run: ``MAASREC_DATA=/path/to/data OMP_NUM_THREADS=1 python benchmarks/bench_compress.py``
(``--parts tables,faiss,encoder``). Writes ``benchmarks/results/compress.json``. Timings
on a shared machine are noisy: the load average is recorded with every timing block, and
only ratios within one run are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "src"))

from maasrec import Recommender  # noqa: E402
from maasrec.compress import (  # noqa: E402
    export_onnx,
    quantize,
    quantize_encoder,
)
from maasrec.data.split import random_split  # noqa: E402
from maasrec.metrics import evaluate  # noqa: E402


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _metrics(model, train, test) -> dict:
    r = evaluate(model, train, test, k=10, metrics=["ndcg", "recall"], n_bootstrap=0)
    return {"ndcg@10": round(float(r["ndcg@10"]), 5), "recall@10": round(float(r["recall@10"]), 5)}


# -- tables -----------------------------------------------------------------------------------
def _load(name: str):
    from maasrec.datasets import load_amazon_sequences, load_movielens

    if name == "ml-1m":
        return load_movielens("1m", download=False).interactions
    return load_amazon_sequences("beauty", download=False).interactions


def bench_tables(datasets: list[str]) -> dict:
    from maasrec.models import ALS

    out = {}
    for name in datasets:
        try:
            data = _load(name)
        except Exception as exc:  # data absent: say so, go on
            out[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
            print(f"[tables] {name}: skipped ({exc})", flush=True)
            continue
        train, _valid, test = random_split(data, (0.8, 0.1, 0.1), random_state=0)
        t0 = time.perf_counter()
        model = ALS(random_state=0).fit(train)
        fit_s = time.perf_counter() - t0
        rows = {}
        tmp = Path(tempfile.mkdtemp(prefix="bench-compress-"))
        try:
            model.save(tmp / "float32")
            base = _metrics(model, train, test)
            float_bytes = sum(a.nbytes for a in (model.item_factors_, model.user_factors_))
            rows["float32"] = {**base, "table_bytes": float_bytes,
                               "dir_bytes": _dir_bytes(tmp / "float32")}
            for codec in ("int8", "float16", "bfloat16"):
                q = quantize(model, codec)
                q.save(tmp / codec)
                loaded = Recommender.load(tmp / codec)
                m = _metrics(loaded, train, test)
                rows[codec] = {
                    **m, "table_bytes": q.table_bytes_["stored"],
                    "dir_bytes": _dir_bytes(tmp / codec),
                    "tables_smaller_x": round(float_bytes / q.table_bytes_["stored"], 3),
                    "ndcg_change_rel": round(m["ndcg@10"] / base["ndcg@10"] - 1, 5),
                    "recall_change_rel": round(m["recall@10"] / base["recall@10"] - 1, 5)}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out[name] = {"users": int(data.n_users), "items": int(data.n_items),
                     "interactions": int(data.nnz), "model": "ALS(random_state=0)",
                     "fit_s": round(fit_s, 1), "rows": rows}
        print(f"[tables] {name}: " + json.dumps(rows), flush=True)
    return out


# -- faiss ------------------------------------------------------------------------------------
INDEXES = [("flat", {}), ("hnsw", {}), ("ivf", {}), ("ivfpq", {}), ("ivfpq", {"pq_m": 32}),
           ("sq8", {})]


def _exact_topk(V, Q, k):
    S = Q @ V.T
    part = np.argpartition(-S, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(S, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _recall(a, b):
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)]))


def _bench_vectors(V: np.ndarray, Q: np.ndarray) -> list[dict]:
    from maasrec.rankers import FaissRetriever

    exact = _exact_topk(V, Q, 10)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-faiss-"))
    try:
        for index, extra in INDEXES:
            r = FaissRetriever(index, n_threads=1, **extra)
            t0 = time.perf_counter()
            r.fit(V)
            build = time.perf_counter() - t0
            r.save(tmp / f"{index}{len(rows)}")
            size = (tmp / f"{index}{len(rows)}" / "index.faiss").stat().st_size
            r.search(Q[:10], 10)
            la = loadavg()
            t0 = time.perf_counter()
            idx, _ = r.search(Q, 10)
            dt = time.perf_counter() - t0
            cand, _ = r.search(Q, 100)
            rows.append({"index": index, **extra, "pq_shape": getattr(r, "pq_shape_", None),
                         "recall@10": round(_recall(idx, exact), 4),
                         "recall@10_in_100": round(_recall(cand, exact), 4),
                         "bytes_per_vector": round(size / len(V), 1),
                         "index_bytes": size, "queries_per_s": round(len(Q) / dt, 1),
                         "build_s": round(build, 2), "loadavg": la})
            print(f"[faiss] {rows[-1]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench_faiss(n_random: int) -> dict:
    out = {}
    try:
        from maasrec.models import ALS

        data = _load("ml-1m")
        m = ALS(random_state=0).fit(data)
        out["ml-1m-als"] = {"n": int(m.n_items_), "dim": int(m.item_factors_.shape[1]),
                            "queries": int(m.n_users_),
                            "rows": _bench_vectors(m.item_factors_, m.user_factors_)}
    except Exception as exc:
        out["ml-1m-als"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    rng = np.random.default_rng(0)
    d = 64
    centers = rng.standard_normal((256, d))
    V = (centers[rng.integers(0, 256, n_random)] + 0.5 * rng.standard_normal((n_random, d)))
    V *= rng.lognormal(0, 0.3, (n_random, 1))
    Q = centers[rng.integers(0, 256, 2000)] + 0.5 * rng.standard_normal((2000, d))
    out[f"random-{n_random}x{d}"] = {"n": n_random, "dim": d, "queries": 2000,
                                     "rows": _bench_vectors(V.astype(np.float32),
                                                            Q.astype(np.float32))}
    return out


# -- encoder ----------------------------------------------------------------------------------
class _TextProfile(Recommender):
    """Scores = (mean of the user's item vectors) . item vectors (text only)."""

    def __init__(self, vectors=None):
        self.vectors = vectors

    def _fit(self, data, **kwargs):
        self.V_ = np.ascontiguousarray(self.vectors, dtype=np.float32)

    def _score_history(self, history):
        import scipy.sparse as sp

        h = sp.csr_matrix(history, dtype=np.float32)
        n = np.maximum(np.asarray(h.sum(axis=1)).ravel(), 1.0)
        return np.asarray((sp.diags(1 / n) @ h) @ self.V_ @ self.V_.T, dtype=np.float32)


def _speed(variants: dict, texts: list[str], rounds: int) -> dict:
    """Median texts/s of each variant at 1 and 2 threads, rounds interleaved (so that a
    change in the machine's load hits every variant alike)."""
    import torch

    runs = {label: {1: [], 2: []} for label in variants}
    loads = []
    for enc in variants.values():
        enc.encode(texts[:64])  # load + warm up
    for _ in range(rounds):
        for threads in (1, 2):
            for label, enc in variants.items():
                torch.set_num_threads(threads)
                if "n_threads" in enc.get_params():
                    enc.set_params(n_threads=threads)
                    enc.encode(texts[:8])  # a new session for the thread count
                t0 = time.perf_counter()
                enc.encode(texts)
                runs[label][threads].append(len(texts) / (time.perf_counter() - t0))
        loads.append(loadavg())
    torch.set_num_threads(1)
    out = {}
    for label, r in runs.items():
        out[label] = {f"texts_per_s_{t}t": round(float(np.median(r[t])), 1) for t in (1, 2)}
        for t in (1, 2):
            out[label][f"speedup_{t}t"] = round(
                float(np.median(r[t]) / np.median(runs["float32"][t])), 2)
    return {"rows": out, "loadavg_per_round": loads}


def bench_encoder(n_speed: int) -> dict:
    import torch

    from maasrec.datasets import load_movielens
    from maasrec.encoders import TextEncoder

    ds = load_movielens("latest-small")
    items = ds.interactions.item_vocab
    feats = ds.item_features.align(items)
    texts = feats.texts()
    rng = np.random.default_rng(0)
    speed_texts = [texts[i] for i in rng.choice(len(texts), n_speed, replace=False)]
    name = "sentence-transformers/all-MiniLM-L6-v2"
    tmp = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    variants = {"float32": TextEncoder(name, cache_dir=False)}
    variants["int8_per_token"] = quantize_encoder(variants["float32"])
    variants["int8_torch_dynamic"] = quantize_encoder(variants["float32"], "torch_dynamic")
    t0 = time.perf_counter()
    variants["onnx_float32"] = export_onnx(variants["float32"], tmp / "minilm.onnx")
    export_s = time.perf_counter() - t0
    out = {"model": name, "texts_speed": n_speed, "items": len(texts),
           "onnx_export_s": round(export_s, 1), "onnx_bytes": (tmp / "minilm.onnx").stat().st_size,
           "rows": {}}
    speed = _speed(variants, speed_texts, rounds=3)
    out["loadavg_per_round"] = speed["loadavg_per_round"]
    ref = variants["float32"].encode(speed_texts)
    for label, enc in variants.items():
        row = speed["rows"][label]
        v = enc.encode(speed_texts)
        cos = (v * ref).sum(1)
        row.update({"cosine_mean": round(float(cos.mean()), 5),
                    "cosine_min": round(float(cos.min()), 5),
                    "max_abs_diff": float(np.abs(v - ref).max())})
        out["rows"][label] = row
        print(f"[encoder] {label}: {row}", flush=True)
    # retrieval quality: text-only recommender over every item's vector
    train, _valid, test = random_split(ds.interactions, (0.8, 0.1, 0.1), random_state=0)
    torch.set_num_threads(1)
    base = None
    for label in ("float32", "int8_per_token", "int8_torch_dynamic"):
        V = variants[label].encode(texts)
        m = _metrics(_TextProfile(V).fit(train), train, test)
        base = base or m
        out["rows"][label].update({"retrieval_" + k: v for k, v in m.items()})
        out["rows"][label]["retrieval_ndcg_change_rel"] = round(
            m["ndcg@10"] / base["ndcg@10"] - 1, 5)
        print(f"[encoder] {label} retrieval: {m}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- networks: LMRanker and SequentialRecommender, float32 / ONNX Runtime / int8 ------------
NET_VARIANTS = ("float32", "onnx", "int8")


def _net_variants(model, tmp: Path) -> dict:
    """Save the float model and its compressed forms; the directory and network sizes."""
    from maasrec.compress import export_onnx, quantize_network

    out = {}
    model.save(tmp / "float32")
    q8 = quantize_network(model)
    q8.save(tmp / "int8")
    t0 = time.perf_counter()
    onnx = export_onnx(model)
    export_s = time.perf_counter() - t0
    onnx.save(tmp / "onnx")
    nb = q8.network_bytes_
    out["float32"] = {"dir_bytes": _dir_bytes(tmp / "float32"), "network_bytes": nb["float32"]}
    out["int8"] = {"dir_bytes": _dir_bytes(tmp / "int8"), "network_bytes": nb["int8"],
                   "int8_layers": len(q8.int8_layers_)}
    out["onnx"] = {"dir_bytes": _dir_bytes(tmp / "onnx"), "network_bytes": onnx.onnx_bytes_,
                   "export_s": round(export_s, 1)}
    return out


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited from
    the parent across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _net_worker(args) -> int:
    """Child process: load one saved variant, time a workload at 1 and 2 threads
    (alternating, ``rounds`` times), print JSON with medians and the peak RSS."""
    import torch

    from maasrec import Recommender

    job = json.loads(Path(args.worker).read_text())
    rss0 = _vm_hwm_mb()
    t0 = time.perf_counter()
    model = Recommender.load(job["dir"])
    load_s = time.perf_counter() - t0
    inner = getattr(model, "model_", model)

    def work():
        if job["kind"] == "lmranker":
            inner.decision_function(job["users"], job["items"])
        else:
            model.recommend(job["users"], k=10)

    runs = {1: [], 2: []}
    for t in (1, 2):  # warm-up at each thread count
        torch.set_num_threads(t)
        if "n_threads" in model.get_params():
            model.set_params(n_threads=t)
        work()
    for _ in range(job["rounds"]):
        for t in (1, 2):
            torch.set_num_threads(t)
            if "n_threads" in model.get_params():
                model.set_params(n_threads=t)
            a = time.perf_counter()
            work()
            runs[t].append(len(job["users"]) / (time.perf_counter() - a))
    print(json.dumps({"per_s": {t: float(np.median(r)) for t, r in runs.items()},
                      "all": runs, "load_s": round(load_s, 2),
                      "peak_rss_mb": _vm_hwm_mb(), "rss_after_import_mb": rss0}))
    return 0


def _net_speed(kind: str, tmp: Path, users: list, items: list | None, rounds: int,
               reps: int) -> dict:
    """Each variant in its own process (peak memory per variant); ``reps`` passes over the
    variants, interleaved, so that load changes hit every variant alike."""
    import subprocess

    res = {v: [] for v in NET_VARIANTS}
    loads = []
    for _ in range(reps):
        for v in NET_VARIANTS:
            job = tmp / f"job-{v}.json"
            job.write_text(json.dumps({"dir": str(tmp / v), "kind": kind, "users": users,
                                       "items": items, "rounds": rounds}))
            env = {**os.environ, "OMP_NUM_THREADS": "2"}
            p = subprocess.run([sys.executable, __file__, "--worker", str(job)], env=env,
                               capture_output=True, text=True, check=False)
            if p.returncode:
                raise RuntimeError(f"worker {v} failed: {p.stderr[-2000:]}")
            res[v].append(json.loads(p.stdout.strip().splitlines()[-1]))
            loads.append(loadavg())
    unit = "pairs_per_s" if kind == "lmranker" else "users_per_s"
    out = {"loadavg_per_run": loads}
    for v, runs in res.items():
        row = {f"{unit}_{t}t": round(float(np.median([r["per_s"][str(t)] for r in runs])), 1)
               for t in (1, 2)}
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        row["load_s"] = float(np.median([r["load_s"] for r in runs]))
        out[v] = row
    for v in NET_VARIANTS:
        for t in (1, 2):
            out[v][f"speedup_{t}t"] = round(out[v][f"{unit}_{t}t"] /
                                            out["float32"][f"{unit}_{t}t"], 2)
    return out


def _net_quality(tmp: Path, train, test, users: np.ndarray) -> dict:
    """NDCG@10 and hit@10 of each saved variant for the test users of index ``users``."""
    from maasrec import Recommender

    out, base = {}, None
    for v in NET_VARIANTS:
        m = Recommender.load(tmp / v)
        r = evaluate(m, train, test, k=10, metrics=["ndcg", "hit"],
                     users=test.user_vocab.ids[users].tolist(),
                     n_bootstrap=0)
        row = {k: round(float(x), 5) for k, x in r.items() if k.endswith("@10")}
        base = base or row
        row["ndcg_change_rel"] = round(row["ndcg@10"] / base["ndcg@10"] - 1, 5)
        out[v] = row
    return out


def bench_sequential_net(args) -> dict:
    import torch

    from maasrec.data.split import leave_last_out
    from maasrec.datasets import load_amazon_sequences, load_movielens
    from maasrec.neural import SequentialRecommender

    torch.set_num_threads(1)
    if args.seq_data == "beauty":
        X = load_amazon_sequences("beauty", download=False).interactions
    else:
        X = load_movielens(args.seq_data.removeprefix("ml-"), download=False).interactions
    train, valid, test = leave_last_out(X, n_valid=1, n_test=1)
    params = dict(dim=64, n_layers=2, n_heads=2, max_len=50, dropout=0.5,
                  epochs=args.seq_epochs, random_state=0, verbose=False)
    t0 = time.perf_counter()
    model = SequentialRecommender(**params).fit(train, validation=valid)
    fit_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench-net-"))
    try:
        sizes = _net_variants(model, tmp)
        rng = np.random.default_rng(0)
        pool = np.unique(test.user_indices)
        q_users = np.sort(rng.choice(pool, min(args.seq_users, len(pool)), replace=False))
        quality = _net_quality(tmp, train, test, q_users)
        s_users = [int(u) if isinstance(u, (np.integer,)) else u for u in
                   rng.choice(model.user_vocab_.ids, min(args.seq_speed_users, model.n_users_),
                              replace=False).tolist()]
        speed = _net_speed("sequential", tmp, s_users, None, rounds=3, reps=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {v: {**sizes[v], **quality[v], **{k: x for k, x in speed[v].items()}}
            for v in NET_VARIANTS}
    return {"data": f"{args.seq_data}, leave-last-out (valid: early stopping)", "params": params,
            "fit_s": round(fit_s, 1), "quality_users": len(q_users),
            "speed_workload": f"recommend(k=10) for {len(s_users)} known users",
            "rows": rows, "loadavg_per_run": speed["loadavg_per_run"]}


def bench_lmranker_net(args) -> dict:
    import torch

    from maasrec.data.split import leave_last_out
    from maasrec.datasets import load_movielens
    from maasrec.lm_ranker import LMRanker
    from maasrec.models import EASE

    torch.set_num_threads(1)
    ds = load_movielens("100k", download=False)
    X = ds.interactions
    train, _valid, test = leave_last_out(X, n_valid=1, n_test=1)
    params = dict(model="sentence-transformers/all-MiniLM-L6-v2", head="mean",
                  n_candidates=20, history_len=3, max_length=96, max_item_tokens=20,
                  epochs=1, batch_size=32, max_positives=args.lm_positives, random_state=0,
                  alpha=0.0, verbose=False)
    t0 = time.perf_counter()
    model = LMRanker(first_stage=EASE(l2=100.0), **params).fit(
        train, item_features=ds.item_features)
    fit_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench-net-"))
    try:
        sizes = _net_variants(model, tmp)
        rng = np.random.default_rng(0)
        q_users = np.sort(rng.choice(np.unique(test.user_indices), args.lm_users, replace=False))
        quality = _net_quality(tmp, train, test, q_users)
        n = args.lm_pairs
        users = [int(u) for u in rng.choice(model.user_vocab_.ids, n)]
        items = [int(i) for i in rng.choice(model.item_vocab_.ids, n)]
        speed = _net_speed("lmranker", tmp, users, items, rounds=2, reps=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {v: {**sizes[v], **quality[v], **speed[v]} for v in NET_VARIANTS}
    p = {k: v for k, v in params.items()}
    return {"data": "MovieLens 100K, leave-last-out; first stage EASE(l2=100)", "params": p,
            "fit_s": round(fit_s, 1), "quality_users": len(q_users),
            "speed_workload": f"decision_function over {n} random (user, item) pairs",
            "rows": rows, "loadavg_per_run": speed["loadavg_per_run"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="tables,faiss,encoder")
    p.add_argument("--datasets", default="ml-1m,beauty")
    p.add_argument("--n-random", type=int, default=100_000)
    p.add_argument("--n-speed", type=int, default=400)
    p.add_argument("--seq-data", default="beauty", help="beauty, ml-100k or ml-1m")
    p.add_argument("--seq-epochs", type=int, default=20)
    p.add_argument("--seq-users", type=int, default=5000, help="quality users (Beauty)")
    p.add_argument("--seq-speed-users", type=int, default=2000)
    p.add_argument("--lm-positives", type=int, default=300)
    p.add_argument("--lm-users", type=int, default=300, help="quality users (ML-100K)")
    p.add_argument("--lm-pairs", type=int, default=256)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS / "compress.json"))
    args = p.parse_args(argv)
    if args.worker:
        return _net_worker(args)
    import platform

    import torch

    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpus": os.cpu_count(), "loadavg_start": loadavg(),
                           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}
    out_path = Path(args.out)
    if out_path.is_file():  # keep the parts not rerun
        results = {**json.loads(out_path.read_text()), **results}
    parts = args.parts.split(",")
    if "tables" in parts:
        results["tables"] = bench_tables(args.datasets.split(","))
    if "faiss" in parts:
        results["faiss"] = bench_faiss(args.n_random)
    if "encoder" in parts:
        results["encoder"] = bench_encoder(args.n_speed)
    for name, fn in (("sequential", bench_sequential_net), ("lmranker", bench_lmranker_net)):
        if name in parts:
            results[name] = fn(args)
            results[name]["loadavg_end"] = loadavg()
            print(f"[{name}] " + json.dumps(results[name]["rows"]), flush=True)
            out_path.write_text(json.dumps(results, indent=1) + "\n")  # keep what is done
    results["machine"]["loadavg_end"] = loadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
