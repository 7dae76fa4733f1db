"""Speed and quality of maasrec's classical recommenders, side by side with ``implicit``.

Three commands (each writes ``benchmarks/results/classical_<command>.json`` and prints a
table):

``speed``
    MovieLens 1M, all 1,000,209 ratings as positives, ``factors=64``, at 1 and 2
    threads: ALS seconds per iteration, BPR-MF seconds per epoch (maasrec's defaults,
    implicit's defaults; ALS with the same regularization/confidence), and recommending
    the top 10 unseen items for every user (time, and peak extra RSS for 1x, 4x and 8x
    the users, to show it stops growing with the number of users), against implicit's
    ``AlternatingLeastSquares``, ``BayesianPersonalizedRanking`` and batched
    ``recommend``. Every measurement runs in a fresh subprocess with
    ``OMP/MKL/OPENBLAS_NUM_THREADS`` set to the thread count, under OpenMP's default
    wait policy and under ``OMP_WAIT_POLICY=PASSIVE`` (``--wait-policy``; the two
    differ enormously on a machine whose cores are busy with other work); maasrec and
    implicit alternate, ``--repeats`` times, and the table reports the fastest run of
    each (the least disturbed by other load) next to the median.
``quality``
    MovieLens 1M, per-user random 8:1:1 split (seed 0); every model fitted on train with
    the hyperparameters chosen on the validation part (``tune``), NDCG@10 on test by
    full ranking (train and validation items excluded), for maasrec and implicit on the
    same split, evaluated by the same code (``maasrec.metrics.evaluate``: implicit's
    factors are wrapped in a scoring shim) with bootstrap intervals, over several seeds;
    maasrec's defaults too. With ``--lenskit-python``, LensKit's ``ItemKNNScorer``
    (tuned on validation, its lists scored by ``maasrec.metrics.evaluate_lists``).
``tune``
    Grid search on the validation part of MovieLens 1M, 100K and latest-small for
    ALS, BPRMF, ItemKNN, PureSVD, EASE (and implicit's ALS and BPR on 1M); the
    defaults in maasrec's docstrings come from these tables.

implicit must live in its own virtual environment (never in maasrec's): pass its
interpreter with ``--implicit-python`` (default ``/tmp/peers/implicit/bin/python``).
This file is also the worker that runs there: it imports only numpy, scipy and implicit
in that role.

Data: ``maasrec.datasets.load_movielens`` with ``$MAASREC_DATA`` (or ``--data-home``).

Run: ``python benchmarks/bench_classical.py speed`` (about 15 minutes on 2 cores),
``... quality`` (about 15 minutes, plus LensKit's batch recommendations), ``... tune``
(about an hour; ``--grid``/``--merge`` add rows to an existing table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FACTORS = 64
ALS_ITERATIONS = 15
BPR_EPOCHS = 10
K = 10


# -- process memory (Linux) -------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure(fn, *args, **kwargs):
    """Run ``fn`` once; return (result, seconds, peak extra RSS in MiB or None)."""
    ok = _reset_peak()
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    extra = (_status_kib("VmHWM") - before) / 1024 if ok else None
    return out, dt, extra


def _time_recommend(fn, users: np.ndarray, repeats: int = 3) -> list[dict]:
    """Top-k for all users (and 4x, 8x as many): fastest time and largest peak extra RSS.

    A first full call warms up (on a VM the first touch of fresh memory is slow).
    """
    fn(users)
    rec = []
    for reps in (1, 4, 8):
        u = np.tile(users, reps)
        runs = [measure(fn, u)[1:] for _ in range(repeats)]
        rec.append({"n_users": len(u), "seconds": min(r[0] for r in runs),
                    "peak_extra_mib": max((r[1] or 0.0) for r in runs)})
    return rec


# -- workers (run in a subprocess; the implicit one in implicit's venv) -------------------
def _worker_implicit(job: dict) -> dict:
    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    threads = job["threads"]
    out: dict = {"library": "implicit", "version": implicit.__version__}
    if job["task"] == "speed":
        X = sp.load_npz(job["train"]).tocsr().astype(np.float32)
        p = job["als_params"]
        with threadpool_limits(1, "blas"):  # implicit's advice: BLAS single-threaded in fit
            m = AlternatingLeastSquares(factors=FACTORS, iterations=ALS_ITERATIONS,
                                        regularization=p["regularization"],
                                        alpha=1.0 + p["alpha"], num_threads=threads,
                                        random_state=0, calculate_training_loss=False)
            its: list[float] = []
            _, dt, _ = measure(m.fit, X, show_progress=False,
                               callback=lambda it, el, loss: its.append(el))
            out["als_s_per_iter"] = dt / ALS_ITERATIONS
            out["als_s_per_iter_median"] = float(np.median(its))
            b = BayesianPersonalizedRanking(factors=FACTORS, iterations=BPR_EPOCHS,
                                            num_threads=threads, random_state=0)
            eps: list[float] = []
            _, dt, _ = measure(b.fit, X, show_progress=False,
                               callback=lambda it, el, *a: eps.append(el))
            out["bpr_s_per_epoch"] = dt / BPR_EPOCHS
            out["bpr_s_per_epoch_median"] = float(np.median(eps))
        users = np.arange(X.shape[0])
        rows = {r: X[np.tile(users, r)] for r in (1, 4, 8)}  # built outside the timing

        def recommend(u):
            return m.recommend(u, rows[len(u) // len(users)], N=K,
                               filter_already_liked_items=True)

        rec = _time_recommend(recommend, users)
        out["recommend"] = rec
    elif job["task"] == "factors":
        X = sp.load_npz(job["train"]).tocsr().astype(np.float32)
        results = []
        for i, p in enumerate(job["configs"]):
            p = dict(p)
            kind = p.pop("model")
            seed = p.pop("random_state", 0)
            with threadpool_limits(1, "blas"):
                if kind == "als":
                    p["alpha"] = 1.0 + p["alpha"]  # c = 1 + alpha r  ->  implicit's c = alpha r
                    m = AlternatingLeastSquares(num_threads=threads, random_state=seed,
                                                calculate_training_loss=False, **p)
                else:
                    m = BayesianPersonalizedRanking(num_threads=threads, random_state=seed, **p)
                t0 = time.perf_counter()
                m.fit(X, show_progress=False)
                fit_s = time.perf_counter() - t0
            path = str(Path(job["out_dir"]) / f"factors_{i}.npz")
            np.savez(path, user=np.asarray(m.user_factors, dtype=np.float32),
                     item=np.asarray(m.item_factors, dtype=np.float32))
            results.append({"path": path, "fit_seconds": fit_s})
        out["results"] = results
    return out


def _worker_lenskit(job: dict) -> dict:
    """Top-N lists of LensKit's ItemKNNScorer (implicit feedback) on a train CSR."""
    import lenskit
    import pandas as pd
    from lenskit import batch
    from lenskit.data import from_interactions_df
    from lenskit.knn import ItemKNNScorer
    from lenskit.pipeline import topn_pipeline

    X = sp.load_npz(job["train"]).tocoo()
    df = pd.DataFrame({"user": X.row.astype(np.int64), "item": X.col.astype(np.int64)})
    ds = from_interactions_df(df, user_col="user", item_col="item")
    out: dict = {"library": "lenskit", "version": lenskit.__version__, "results": []}
    users = np.unique(X.row)
    for i, params in enumerate(job["configs"]):
        pipe = topn_pipeline(ItemKNNScorer(feedback="implicit", **params), n=job["n"])
        t0 = time.perf_counter()
        pipe.train(ds)
        fit_s = time.perf_counter() - t0
        recs = batch.recommend(pipe, [int(u) for u in users], n=job["n"], n_jobs=1)
        rdf = recs.to_df()
        lists = np.full((X.shape[0], job["n"]), -1, dtype=np.int64)
        for u, g in rdf.groupby("user_id"):
            g = g.sort_values("rank")
            lists[int(u), :len(g)] = g["item_id"].to_numpy()[:job["n"]]
        path = str(Path(job["out_dir"]) / f"lenskit_{i}.npy")
        np.save(path, lists)
        out["results"].append({"path": path, "fit_seconds": fit_s})
    return out


def _worker_maasrec(job: dict) -> dict:
    import torch

    import maasrec
    from maasrec.data import Interactions
    from maasrec.models import ALS, BPRMF, EASE, ItemKNN, PureSVD

    torch.set_num_threads(job["threads"])
    out: dict = {"library": "maasrec", "version": maasrec.__version__,
                 "torch": torch.__version__}
    X = sp.load_npz(job["train"]).tocsr().astype(np.float32)
    data = Interactions.from_csr(X)
    p = job["als_params"]
    m = ALS(factors=FACTORS, iterations=ALS_ITERATIONS, random_state=0, **p)
    _, dt, _ = measure(m.fit, data)
    out["als_s_per_iter"] = dt / ALS_ITERATIONS
    out["als_s_per_iter_median"] = float(np.median(m.training_log_["seconds"]))
    b = BPRMF(factors=FACTORS, epochs=BPR_EPOCHS, random_state=0)
    _, dt, _ = measure(b.fit, data)
    out["bpr_s_per_epoch"] = dt / BPR_EPOCHS
    out["bpr_s_per_epoch_median"] = float(np.median(b.training_log_["seconds"]))
    rec = _time_recommend(lambda u: m.recommend(u, k=K), data.user_vocab.ids)
    out["recommend"] = rec
    if job.get("others"):
        for name, model in (("itemknn", ItemKNN()), ("puresvd", PureSVD(random_state=0)),
                            ("ease", EASE())):
            _, dt, _ = measure(model.fit, data)
            out[f"{name}_fit_s"] = dt
    return out


def _run_worker(python: str, job: dict, threads: int, tmp: Path,
                library: str = "implicit", wait_policy: str = "default") -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    job = {**job, "threads": threads, "library": library}
    job_path = tmp / f"job_{time.monotonic_ns()}.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([python, str(Path(__file__).resolve()), "_worker", str(job_path)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {python} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- data and machine ------------------------------------------------------------------
def _load(name: str, data_home: str | None):
    from maasrec import datasets

    return datasets.load_movielens(name, data_home=data_home, download=False).interactions


def _split(name: str, data_home: str | None, seed: int = 0):
    import warnings

    from maasrec.data.split import random_split
    from maasrec.exceptions import ColdStartWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return random_split(_load(name, data_home), (0.8, 0.1, 0.1), random_state=seed)


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__}
    try:
        import torch

        import maasrec

        info["torch"] = torch.__version__
        info["maasrec"] = maasrec.__version__
    except ImportError:
        pass
    try:
        with open("/proc/loadavg") as fh:
            info["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return info


# -- the implicit factors as a maasrec scorer (same evaluation code for both) ------------
def _shim(train, user: np.ndarray, item: np.ndarray):
    from maasrec.base import Recommender

    class ImplicitFactors(Recommender):
        """Scores of factors learnt by implicit, for maasrec's evaluate()."""

        def __init__(self):
            pass

        def _score_users(self, user_idx):
            return user[user_idx] @ item.T

    m = ImplicitFactors()
    m.user_vocab_, m.item_vocab_, m.seen_ = train.user_vocab, train.item_vocab, train.to_csr()
    return m


def _ndcg(model, train, test, exclude=None, n_bootstrap: int = 0):
    from maasrec.metrics import evaluate

    res = evaluate(model, train, test, k=K, metrics=["ndcg"], exclude=exclude,
                   n_bootstrap=n_bootstrap)
    return res


# -- speed ---------------------------------------------------------------------------------
def cmd_speed(args) -> dict:
    from maasrec.models import ALS

    X = _load("1m", args.data_home).to_csr(binary=True)
    als = {"regularization": ALS().regularization, "alpha": ALS().alpha}
    policies = ["default", "passive"] if args.wait_policy == "both" else [args.wait_policy]
    runs: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-classical-") as tmp:
        tmp = Path(tmp)
        sp.save_npz(tmp / "ml1m.npz", X)
        job = {"task": "speed", "train": str(tmp / "ml1m.npz"), "als_params": als}
        for rep in range(args.repeats):
            for policy in policies:
                for threads in args.threads:
                    for lib, python in (("maasrec", sys.executable),
                                        ("implicit", args.implicit_python)):
                        j = {**job, "others": rep == 0 and lib == "maasrec"}
                        r = _run_worker(python, j, threads, tmp, lib, policy)
                        runs.setdefault(f"{lib}@{threads}/{policy}", []).append(r)
                        print(f"[{rep + 1}/{args.repeats}] {policy:>7} {lib:>8} threads={threads}: "
                              f"ALS {r['als_s_per_iter']:.3f}s/it, BPR "
                              f"{r['bpr_s_per_epoch']:.3f}s/ep, recommend "
                              f"{r['recommend'][0]['seconds']:.3f}s", flush=True)
    keys = ("als_s_per_iter", "als_s_per_iter_median", "bpr_s_per_epoch",
            "bpr_s_per_epoch_median")
    summary = {}
    for name, rs in runs.items():
        s = {k: {"min": min(r[k] for r in rs), "median": float(np.median([r[k] for r in rs]))}
             for k in keys}
        s["recommend"] = [
            {"n_users": rs[0]["recommend"][i]["n_users"],
             "seconds_min": min(r["recommend"][i]["seconds"] for r in rs),
             "seconds_median": float(np.median([r["recommend"][i]["seconds"] for r in rs])),
             "peak_extra_mib_max": max((r["recommend"][i]["peak_extra_mib"] or 0) for r in rs)}
            for i in range(len(rs[0]["recommend"]))]
        summary[name] = s
    ratios = {}
    lines = [f"{'OMP wait':>8} {'thr':>3}  {'ALS s/it (m / imp)':>19} {'ratio':>5}  "
             f"{'BPR s/ep (m / imp)':>19} {'ratio':>5}  {'rec-all s (m / imp)':>19} {'ratio':>5}"
             f"  peak extra MiB at 1x/4x/8x users (m | imp)"]
    for policy in policies:
        for threads in args.threads:
            a = summary[f"maasrec@{threads}/{policy}"]
            b = summary[f"implicit@{threads}/{policy}"]
            r = {
                "als_per_iter": a["als_s_per_iter"]["min"] / b["als_s_per_iter"]["min"],
                "als_per_iter_median": (a["als_s_per_iter"]["median"]
                                        / b["als_s_per_iter"]["median"]),
                "bpr_per_epoch": a["bpr_s_per_epoch"]["min"] / b["bpr_s_per_epoch"]["min"],
                "bpr_per_epoch_median": (a["bpr_s_per_epoch"]["median"]
                                         / b["bpr_s_per_epoch"]["median"]),
                "recommend_all": (a["recommend"][0]["seconds_min"]
                                  / b["recommend"][0]["seconds_min"]),
            }
            ratios[f"{threads}/{policy}"] = r
            mem = " | ".join("/".join(f"{x['peak_extra_mib_max']:.0f}" for x in side["recommend"])
                             for side in (a, b))
            lines.append(
                f"{policy:>8} {threads:>3}  {a['als_s_per_iter']['min']:>8.3f} / "
                f"{b['als_s_per_iter']['min']:<8.3f} {r['als_per_iter']:>5.2f}  "
                f"{a['bpr_s_per_epoch']['min']:>8.3f} / {b['bpr_s_per_epoch']['min']:<8.3f} "
                f"{r['bpr_per_epoch']:>5.2f}  {a['recommend'][0]['seconds_min']:>8.3f} / "
                f"{b['recommend'][0]['seconds_min']:<8.3f} {r['recommend_all']:>5.2f}  {mem}")
    first = f"maasrec@{args.threads[0]}/{policies[0]}"
    others = {k: v for k, v in runs[first][0].items() if k.endswith("_fit_s")}
    return {"benchmark": "classical speed", "data": "MovieLens 1M, all ratings as positives",
            "shape": list(X.shape), "nnz": int(X.nnz), "factors": FACTORS,
            "als_iterations": ALS_ITERATIONS, "bpr_epochs": BPR_EPOCHS, "als_params": als,
            "implicit_mapping": "implicit alpha = 1 + maasrec alpha (c = 1 + alpha r, binary r)",
            "timing": "fit wall time / iterations (includes setup) for both libraries; min over "
                      "repeats (least disturbed), medians in summary; recommend: k=10, seen "
                      "items excluded, min of 3 calls after a warm-up call",
            "omp_wait_policy": "default = libgomp's spin-then-sleep; passive = "
                               "OMP_WAIT_POLICY=PASSIVE (set for both libraries)",
            "repeats": args.repeats, "machine": machine(),
            "implicit_version": runs[first.replace("maasrec", "implicit")][0]["version"],
            "summary": summary, "ratios_maasrec_over_implicit": ratios,
            "maasrec_other_fit_seconds": others, "runs": runs, "table": lines}


# -- tuning ------------------------------------------------------------------------------
GRIDS = {
    "ALS": [{"regularization": r, "alpha": a} for r in (2.0, 10.0, 30.0, 100.0)
            for a in (0.3, 1.0, 3.0, 10.0)],
    "BPRMF": ([{"learning_rate": lr, "regularization": r, "epochs": e}
               for lr in (0.02, 0.05) for r in (0.01, 0.03) for e in (50, 100)]
              + [{"optimizer": "adam", "learning_rate": lr, "regularization": 0.01, "epochs": 50}
                 for lr in (1e-3, 3e-3)]
              + [{"exclude_positives": False}]),
    "ItemKNN": ([{"n_neighbors": k, "shrinkage": s} for k in (20, 50, 100, 200, 500)
                 for s in (0.0, 10.0, 50.0)]
                + [{"similarity": "asymmetric", "asymmetric_alpha": a, "n_neighbors": 100,
                    "shrinkage": 10.0} for a in (0.3, 0.7)]),
    "PureSVD": [{"factors": f} for f in (16, 32, 64, 128, 256)],
    "EASE": [{"l2": v} for v in (50.0, 200.0, 500.0, 1000.0, 3000.0)],
}
IMPLICIT_GRIDS = {
    "als": [{"model": "als", "factors": FACTORS, "iterations": 15, "regularization": r,
             "alpha": a} for r in (2.0, 10.0, 30.0, 100.0) for a in (0.3, 1.0, 3.0, 10.0)],
    "bpr": [{"model": "bpr", "factors": FACTORS, "iterations": e, "learning_rate": lr,
             "regularization": r} for lr in (0.01, 0.05) for r in (0.001, 0.01)
            for e in (100, 200)],
}


def _maasrec_model(name: str, params: dict, seed: int = 0):
    from maasrec import models

    cls = getattr(models, name)
    if "random_state" in cls._get_param_names():
        params = {"random_state": seed, **params}
    return cls(**params)


_NOT_HYPER = ("random_state", "device", "verbose")


def _full_params(model) -> dict:
    return {k: v for k, v in model.get_params(deep=False).items() if k not in _NOT_HYPER}


def cmd_tune(args) -> dict:
    grids = {**GRIDS, **{f"implicit-{k}": v for k, v in IMPLICIT_GRIDS.items()}}
    if args.grid:
        grids.update(json.loads(args.grid))
    out: dict = {"benchmark": "classical tune", "protocol": "per-user random 8:1:1 (seed 0), "
                 "fit on train, NDCG@10 on validation (full ranking, train items excluded)",
                 "machine": machine(), "results": {}}
    path = Path(args.output) if args.output else RESULTS / "classical_tune.json"
    if args.merge and path.exists():
        out["results"] = json.loads(path.read_text())["results"]

    def add(ds: str, name: str, row: dict) -> None:
        rows = out["results"].setdefault(ds, {}).setdefault(name, [])
        key = json.dumps(row.get("full_params", row["params"]), sort_keys=True)
        rows[:] = [r for r in rows
                   if json.dumps(r.get("full_params", r["params"]), sort_keys=True) != key]
        rows.append(row)

    for ds in args.datasets:
        train, valid, _ = _split(ds, args.data_home)
        for name in args.models:
            if name.startswith("implicit-") or (name == "EASE" and train.n_items > 20000):
                continue
            for params in grids.get(name, []):
                t0 = time.perf_counter()
                model = _maasrec_model(name, params).fit(train)
                fit_s = time.perf_counter() - t0
                v = _ndcg(model, train, valid)["ndcg@10"]
                add(ds, name, {"params": params, "full_params": _full_params(model),
                               "valid_ndcg@10": v, "fit_seconds": fit_s})
                print(f"{ds:>12} {name:>8} {json.dumps(params):<90} val {v:.4f} "
                      f"({fit_s:.1f}s)", flush=True)
        if ds in args.implicit_datasets and args.implicit_python:
            with tempfile.TemporaryDirectory(prefix="bench-classical-") as tmp:
                tmp = Path(tmp)
                sp.save_npz(tmp / "train.npz", train.to_csr(binary=True))
                for kind in IMPLICIT_GRIDS:
                    grid = grids.get(f"implicit-{kind}", [])
                    if not grid or f"implicit-{kind}" not in args.models:
                        continue
                    job = {"task": "factors", "train": str(tmp / "train.npz"), "configs": grid,
                           "out_dir": str(tmp)}
                    r = _run_worker(args.implicit_python, job, args.implicit_threads, tmp)
                    for params, fr in zip(grid, r["results"]):
                        f = np.load(fr["path"])
                        v = _ndcg(_shim(train, f["user"], f["item"]), train, valid)["ndcg@10"]
                        add(ds, f"implicit-{kind}", {"params": params, "valid_ndcg@10": v,
                                                     "fit_seconds": fr["fit_seconds"]})
                        print(f"{ds:>12} implicit-{kind:<4} {json.dumps(params):<90} val "
                              f"{v:.4f} ({fr['fit_seconds']:.1f}s)", flush=True)
    return out


def _best(tune: dict, ds: str, name: str) -> dict:
    """The best row's full hyperparameters (independent of later changes of defaults)."""
    rows = tune["results"][ds][name]
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    return best.get("full_params", best["params"])


# -- quality -----------------------------------------------------------------------------
def cmd_quality(args) -> dict:
    from maasrec.metrics import paired_test

    tune_path = RESULTS / "classical_tune.json"
    tune = json.loads(tune_path.read_text()) if tune_path.exists() else None
    train, valid, test = _split("1m", args.data_home)
    rows = []
    evals: dict = {}

    def params_for(name):
        if tune and name in tune["results"].get("1m", {}):
            return _best(tune, "1m", name), "best on validation (classical_tune.json)"
        return {}, "defaults"

    for name in ("ALS", "BPRMF", "EASE", "ItemKNN", "PureSVD"):
        tuned, source = params_for(name)
        variants = [("tuned", tuned, source)]
        if tuned:
            variants.append(("defaults", {}, "the library defaults"))
        for variant, params, source in variants:
            seeds = args.seeds if name in ("ALS", "BPRMF", "PureSVD") else [0]
            if variant == "defaults":
                seeds = seeds[:1]
            for seed in seeds:
                t0 = time.perf_counter()
                model = _maasrec_model(name, params, seed).fit(train)
                fit_s = time.perf_counter() - t0
                te = _ndcg(model, train, test, exclude=valid, n_bootstrap=1000)
                va = _ndcg(model, train, valid)["ndcg@10"]
                if variant == "tuned":
                    evals.setdefault(f"maasrec-{name}", []).append(te)
                    if name == "ItemKNN" and seed == seeds[0]:
                        evals["maasrec-ItemKNN-lists"] = [_lists_eval(model, train, valid, test)]
                rows.append({"library": "maasrec", "model": name, "variant": variant,
                             "params": _full_params(model), "params_source": source,
                             "seed": seed, "valid_ndcg@10": va,
                             "test_ndcg@10": te["ndcg@10"], "test_ci95": list(te.ci["ndcg@10"]),
                             "fit_seconds": fit_s})
                print(f"maasrec {name:>8} {variant:>8} seed {seed}: test NDCG@10 "
                      f"{te['ndcg@10']:.4f} (val {va:.4f}, {fit_s:.1f}s) {params}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-classical-") as tmp:
        tmp = Path(tmp)
        sp.save_npz(tmp / "train.npz", train.to_csr(binary=True))
        for kind in ("als", "bpr"):
            key = f"implicit-{kind}"
            if tune and key in tune["results"].get("1m", {}):
                base, source = _best(tune, "1m", key), "best on validation (classical_tune.json)"
            else:
                base = {"model": kind, "factors": FACTORS}
                source = "implicit defaults, factors=64"
            configs = [{**base, "random_state": s} for s in args.seeds]
            job = {"task": "factors", "train": str(tmp / "train.npz"), "configs": configs,
                   "out_dir": str(tmp)}
            r = _run_worker(args.implicit_python, job, 2, tmp)
            for cfg, fr in zip(configs, r["results"]):
                f = np.load(fr["path"])
                shim = _shim(train, f["user"], f["item"])
                te = _ndcg(shim, train, test, exclude=valid, n_bootstrap=1000)
                va = _ndcg(shim, train, valid)["ndcg@10"]
                evals.setdefault(key, []).append(te)
                lo, hi = te.ci["ndcg@10"]
                rows.append({"library": "implicit", "model": kind.upper(), "params": cfg,
                             "params_source": source, "seed": cfg["random_state"],
                             "valid_ndcg@10": va, "test_ndcg@10": te["ndcg@10"],
                             "test_ci95": [lo, hi], "fit_seconds": fr["fit_seconds"],
                             "version": r["version"]})
                print(f"implicit {kind:>4} seed {cfg['random_state']}: test NDCG@10 "
                      f"{te['ndcg@10']:.4f} (val {va:.4f}) {cfg}", flush=True)
    if args.lenskit_python and Path(args.lenskit_python).exists():
        rows += _lenskit_quality(args, train, valid, test, evals)
    comparisons = {}
    pairs = [("maasrec-ALS", "implicit-als"), ("maasrec-BPRMF", "implicit-bpr"),
             ("maasrec-ItemKNN-lists", "lenskit-ItemKNN")]
    for ours, theirs in pairs:
        if ours not in evals or theirs not in evals:
            continue
        try:
            pt = paired_test(evals[ours][0], evals[theirs][0], "ndcg@10")
        except Exception as exc:  # keep the other results
            comparisons[f"{ours} vs {theirs}"] = {"error": str(exc)}
            continue
        a = [e["ndcg@10"] for e in evals[ours]]
        b = [e["ndcg@10"] for e in evals[theirs]]
        comparisons[f"{ours} vs {theirs}"] = {
            "mean_over_seeds": [float(np.mean(a)), float(np.mean(b))],
            "std_over_seeds": [float(np.std(a)), float(np.std(b))],
            "paired_seed0": {"mean_diff": pt.mean_diff, "ci95": list(pt.ci),
                             "t_pvalue": pt.t_pvalue, "wilcoxon_pvalue": pt.wilcoxon_pvalue,
                             "n_users": pt.n_users},
            "paired_seed0_text": repr(pt)}
    table = [f"{'library':<9} {'model':<8} {'params':<8} {'test NDCG@10 (seeds)':>26}  "
             f"{'valid':>7}  params"]
    seen = []
    for r in rows:
        key = (r["library"], r["model"], r.get("variant", "tuned"))
        if key in seen:
            continue
        seen.append(key)
        same = [x for x in rows if (x["library"], x["model"], x.get("variant", "tuned")) == key]
        t = [x["test_ndcg@10"] for x in same]
        v = [x["valid_ndcg@10"] for x in same]
        p = {k: v2 for k, v2 in r["params"].items() if k not in ("random_state",)}
        table.append(f"{key[0]:<9} {key[1]:<8} {key[2]:<8} {np.mean(t):>9.4f} ± {np.std(t):.4f} "
                     f"(n={len(t)})  {np.mean(v):>7.4f}  {json.dumps(p)}")
    return {"benchmark": "classical quality",
            "protocol": "MovieLens 1M, per-user random 8:1:1 (seed 0), fit on train, NDCG@10 on "
                        "test by full ranking excluding train and validation items; the same "
                        "maasrec.metrics.evaluate code for both libraries",
            "machine": machine(), "rows": rows, "comparisons": comparisons, "table": table}


LENSKIT_GRID = [{"max_nbrs": k} for k in (20, 50, 100, 200)]


def _lists_eval(model, train, valid, test):
    """A maasrec model's top-K lists (train and validation items excluded), scored as lists.

    The same protocol as a foreign library's lists, so the two can be paired.
    """
    from maasrec.metrics import evaluate_lists

    V = valid.to_csr(binary=True)
    users = np.unique(train.user_indices)
    excl = [list(train.item_vocab.ids[V[u].indices]) for u in users]
    raw = train.user_vocab.ids[users]
    ids, scores = model.recommend(raw, k=K, exclude=excl)
    return evaluate_lists((ids, scores), raw, test, train=train, k=K, metrics=["ndcg"],
                          n_bootstrap=1000)


def _lenskit_quality(args, train, valid, test, evals) -> list[dict]:
    """LensKit's ItemKNNScorer (implicit feedback): tuned on validation, NDCG@10 on test.

    LensKit's top-N pipeline excludes the training items; validation items are removed
    from its (longer) lists afterwards, so the test ranking excludes both, as for maasrec.
    """
    from maasrec.metrics import evaluate_lists

    V = valid.to_csr(binary=True)
    n = K + int(np.diff(V.indptr).max())
    ids = train.item_vocab.ids
    users_idx = np.unique(train.user_indices)
    with tempfile.TemporaryDirectory(prefix="bench-classical-") as tmp:
        tmp = Path(tmp)
        sp.save_npz(tmp / "train.npz", train.to_csr(binary=True))
        job = {"task": "lists", "train": str(tmp / "train.npz"), "configs": LENSKIT_GRID,
               "n": n, "out_dir": str(tmp)}
        r = _run_worker(args.lenskit_python, job, 1, tmp, "lenskit")
        lists = [np.load(x["path"]) for x in r["results"]]
    rows, best = [], None
    raw_users = train.user_vocab.ids[users_idx]

    def as_ids(L):
        out = np.full(L.shape, None, dtype=object)
        ok = L >= 0
        out[ok] = ids[L[ok]]
        return out

    for params, L, fr in zip(LENSKIT_GRID, lists, r["results"]):
        va = evaluate_lists(as_ids(L[users_idx, :K]), raw_users, valid, train=train, k=K,
                            metrics=["ndcg"], n_bootstrap=0)["ndcg@10"]
        print(f"lenskit ItemKNN {params}: val NDCG@10 {va:.4f} ({fr['fit_seconds']:.1f}s)",
              flush=True)
        if best is None or va > best[0]:
            best = (va, params, L, fr)
    va, params, L, fr = best
    T = np.full((L.shape[0], K), -1, dtype=np.int64)
    for u in users_idx:  # drop the user's validation items, keep the first K
        row = L[u][(L[u] >= 0) & ~np.isin(L[u], V[u].indices)][:K]
        T[u, :len(row)] = row
    te = evaluate_lists(as_ids(T[users_idx]), raw_users, test, train=train, k=K,
                        metrics=["ndcg"], n_bootstrap=1000)
    evals.setdefault("lenskit-ItemKNN", []).append(te)
    print(f"lenskit ItemKNN {params}: test NDCG@10 {te['ndcg@10']:.4f}", flush=True)
    rows.append({"library": "lenskit", "model": "ItemKNN", "params": params,
                 "params_source": "best on validation of " + json.dumps(LENSKIT_GRID),
                 "seed": 0, "valid_ndcg@10": va, "test_ndcg@10": te["ndcg@10"],
                 "test_ci95": list(te.ci["ndcg@10"]), "fit_seconds": fr["fit_seconds"],
                 "version": r["version"]})
    return rows


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_worker":
        job = json.loads(Path(argv[1]).read_text())
        fn = {"maasrec": _worker_maasrec, "implicit": _worker_implicit,
              "lenskit": _worker_lenskit}[job["library"]]
        print(json.dumps(fn(job)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["speed", "quality", "tune"])
    ap.add_argument("--implicit-python", default="/tmp/peers/implicit/bin/python",
                    help="python of a venv with implicit installed")
    ap.add_argument("--lenskit-python", default="/tmp/peers/lenskit/bin/python",
                    help="python of a venv with LensKit (quality: ItemKNN comparison; optional)")
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wait-policy", choices=["default", "passive", "both"], default="both",
                    help="OpenMP wait policy of the speed workers (both libraries)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=["1m", "100k", "latest-small"])
    ap.add_argument("--implicit-datasets", nargs="+", default=["1m"])
    ap.add_argument("--implicit-threads", type=int, default=2)
    ap.add_argument("--models", nargs="+",
                    default=[*GRIDS, *(f"implicit-{k}" for k in IMPLICIT_GRIDS)])
    ap.add_argument("--grid", default=None,
                    help='tune: JSON {"Model": [params, ...]} replacing those grids '
                         '("implicit-als"/"implicit-bpr" for implicit)')
    ap.add_argument("--merge", action="store_true",
                    help="tune: add to the rows already in the output file")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    fn = {"speed": cmd_speed, "quality": cmd_quality, "tune": cmd_tune}[args.command]
    out = fn(args)
    out["argv"] = argv
    out["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        with open("/proc/loadavg") as fh:
            out["loadavg_at_end"] = fh.read().split()[:3]
    except OSError:
        pass
    path = Path(args.output) if args.output else RESULTS / f"classical_{args.command}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float) + "\n")
    for line in out.get("table", []):
        print(line)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
