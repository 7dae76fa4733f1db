"""Run a compare suite: splits once, every model in its own process, one evaluation.

For each experiment and seed:

1. the split is made by maasrec and written to CSV (:mod:`benchmarks.splits`);
2. every model -- maasrec's and the peers' -- trains on exactly ``train.csv`` in its own
   subprocess (peers in their own virtual environments), preceded by a timing
   calibration, and writes top-``max(k)`` lists ``user,rank,item,score`` that skip the
   user's train **and validation** items;
3. the lists are checked (no train/validation item, only train items, no repeats) and
   scored by :func:`maasrec.metrics.evaluate_lists` against ``test_relevant.csv`` -- one
   evaluation code for every library; a target user without a list scores 0;
4. maasrec models are also evaluated by :func:`maasrec.metrics.evaluate` in their worker
   on the first seed they run (consistency check: must agree to 1e-9); peers' own metric
   functions, run by the
   adapters on the same lists and truth, are compared with ours (cross-check: 1e-6 where
   the definitions match).

A model that cannot run (peer venv missing, import error, crash, timeout) is recorded
with its error and shown in the report, never dropped.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import machine
from .config import (
    CONSISTENCY_TOLERANCE,
    CROSSCHECK_TOLERANCE,
    PEER_MODELS,
    ExperimentSpec,
    ModelSpec,
    Suite,
)
from .splits import SplitFiles, item_attributes, prepare_split

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_SRC = HERE / "peers"
DEFAULT_WORK = HERE / "_work"


def default_peers_dir() -> Path:
    """``$MAASREC_PEERS_DIR``, else ``/tmp/peers`` if it exists, else ``/tmp/maasrec-peers``."""
    env = os.environ.get("MAASREC_PEERS_DIR")
    if env:
        return Path(env)
    legacy = Path("/tmp/peers")
    if legacy.is_dir():
        return legacy
    return Path("/tmp/maasrec-peers")


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "model"


@dataclass
class RunOptions:
    """Everything a suite run needs besides the suite itself."""

    work_dir: Path = DEFAULT_WORK
    out_dir: Path | None = None
    peers_dir: Path = field(default_factory=default_peers_dir)
    data_home: str | None = None
    peers: set[str] | None = None  # None: every peer library
    skip_peers: bool = False
    experiments: set[str] | None = None
    models: list[str] | None = None  # model keys, or substrings of them
    seeds: tuple[int, ...] | None = None
    threads: int | None = None
    plots: bool = True
    quiet: bool = False
    calibrate: bool = True  # time the reference matrix product before each run (tests: off)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------
def peer_python(peers_dir: Path, library: str) -> Path:
    return peers_dir / library / "bin" / "python"


_IMPORT_NAME = {"implicit": "implicit", "lenskit": "lenskit", "cornac": "cornac",
                "recbole": "recbole"}


def check_peer(peers_dir: Path, library: str) -> dict[str, Any]:
    """Is the peer's venv there and does the library import? With versions."""
    py = peer_python(peers_dir, library)
    if not py.exists():
        return {"available": False, "python": str(py),
                "error": f"no virtual environment at {py.parent.parent}: create it with "
                         f"`bash benchmarks/peers/setup_{library}.sh` (MAASREC_PEERS_DIR="
                         f"{peers_dir})"}
    import subprocess

    try:
        r = subprocess.run([str(py), "-c", f"import {_IMPORT_NAME[library]}"],
                           capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"available": False, "python": str(py), "error": f"{type(exc).__name__}: {exc}"}
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-5:])
        return {"available": False, "python": str(py),
                "error": f"`import {_IMPORT_NAME[library]}` failed: {tail}"}
    return {"available": True, "python": str(py),
            "versions": machine.package_versions(str(py), machine.PEER_PACKAGES[library])}


# ---------------------------------------------------------------------------
# lists: read, check, score
# ---------------------------------------------------------------------------
def read_lists(path: Path, users: np.ndarray, k: int) -> tuple[np.ndarray, pd.DataFrame]:
    """``[len(users), k]`` item ids (``-1`` = empty slot) from a ``user,rank,item,score`` CSV."""
    recs = pd.read_csv(path)
    for c in ("user", "rank", "item"):
        if c not in recs.columns:
            raise ValueError(f"{path}: missing column {c!r}")
    ids = np.full((len(users), k), -1, dtype=np.int64)
    pos = pd.Index(users).get_indexer(recs["user"].to_numpy())
    r = recs["rank"].to_numpy() - 1
    ok = (pos >= 0) & (r >= 0) & (r < k)
    ids[pos[ok], r[ok]] = recs["item"].to_numpy()[ok]
    return ids, recs


def check_lists(recs: pd.DataFrame, users: np.ndarray, train: pd.DataFrame,
                exclude: pd.DataFrame | None, k: int) -> dict[str, Any]:
    """Facts about a list file that every library must satisfy."""
    from .splits import pair_keys

    keys = pair_keys(recs)
    out = {
        "rows": len(recs),
        "users_with_list": int(recs["user"].nunique()),
        "target_users": len(users),
        "users_without_list": int((~pd.Index(users).isin(recs["user"].unique())).sum()),
        "users_not_in_target": int((~recs["user"].isin(users)).sum()),
        "duplicate_pairs": int(keys.duplicated().sum()),
        "train_items_recommended": int(keys.isin(pair_keys(train)).sum()),
        "excluded_items_recommended": (0 if exclude is None or len(exclude) == 0
                                       else int(keys.isin(pair_keys(exclude)).sum())),
        "non_train_items": int((~recs["item"].isin(pd.unique(train["item"]))).sum()),
        "bad_ranks": 0,
        "short_lists": 0,
    }
    if len(recs):
        g = recs.groupby("user")["rank"]
        expect = g.cumcount() + 1
        out["bad_ranks"] = int((recs["rank"].to_numpy() != expect.to_numpy()).sum()
                               + (recs["rank"] > k).sum())
        out["short_lists"] = int((g.size() < k).sum())
    out["ok"] = all(out[c] == 0 for c in ("users_not_in_target", "duplicate_pairs",
                                          "train_items_recommended",
                                          "excluded_items_recommended", "non_train_items",
                                          "bad_ranks"))
    return out


def hits_matrix(ids: np.ndarray, users: np.ndarray, target: pd.DataFrame
                ) -> tuple[np.ndarray, np.ndarray]:
    """``hits[u, r]`` (item at rank r+1 is relevant) and ``|T_u|`` per user."""
    from .splits import pair_keys

    tk = pair_keys(target)
    uu = np.repeat(users, ids.shape[1])
    q = pd.MultiIndex.from_arrays([uu, ids.ravel()])
    hits = np.asarray(q.isin(tk)).reshape(ids.shape) & (ids >= 0)
    n_rel = target.groupby("user").size().reindex(users).fillna(0).to_numpy(np.int64)
    return hits, n_rel


def alternative_definitions(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, float]:
    """Other libraries' definitions, computed on our hit matrix (users with |T| > 0).

    * ``ndcg@k`` -- ours (1/log2(rank+1), ideal over min(|T|, k)), recomputed;
    * ``ndcg@k_lenskit_default`` -- LensKit's default ``NDCG(n=k)``: discount
      1/log2(max(rank, 2)) (ranks 1 and 2 both weigh 1);
    * ``recall@k`` -- hits/|T| (ours, Cornac, RecBole);
    * ``recall@k_capped`` -- hits/min(|T|, k) (LensKit's ``Recall(n=k)``).
    """
    m = n_rel > 0
    h = hits[m, :k].astype(np.float64)
    n = n_rel[m]
    ranks = np.arange(1, k + 1)
    d_std = 1.0 / np.log2(ranks + 1)
    d_lk = 1.0 / np.log2(np.maximum(ranks, 2))
    ideal = np.minimum(n, k)
    cs_std = np.concatenate([[0.0], np.cumsum(d_std)])
    cs_lk = np.concatenate([[0.0], np.cumsum(d_lk)])
    hk = h.sum(axis=1)
    return {
        f"ndcg@{k}": float(np.mean((h @ d_std) / cs_std[ideal])),
        f"ndcg@{k}_lenskit_default": float(np.mean((h @ d_lk) / cs_lk[ideal])),
        f"recall@{k}": float(np.mean(hk / n)),
        f"recall@{k}_capped": float(np.mean(hk / ideal)),
    }


def crosscheck(library: str, own: dict[str, Any], ours: dict[str, float],
               alt: dict[str, float], k: int) -> list[dict[str, Any]]:
    """Pairs (peer's own value, maasrec's value on the same lists) with the definition used."""
    rows = []

    def add(own_key: str, our_value: float | None, definition: str, match: bool) -> None:
        v = own.get(own_key)
        if v is None or our_value is None:
            return
        diff = abs(float(v) - float(our_value))
        rows.append({"peer_metric": own_key, "peer_value": float(v),
                     "maasrec_value": float(our_value), "abs_diff": diff,
                     "definition": definition, "definitions_match": match,
                     "agree": diff <= CROSSCHECK_TOLERANCE})

    nd, rc = f"ndcg@{k}", f"recall@{k}"
    if library == "lenskit":
        add(f"{nd}_offset1", ours.get(nd), "NDCG(n=k, weight=LogRankWeight(offset=1)) vs "
                                           "maasrec ndcg@k", True)
        add(nd, ours.get(nd), "LensKit default NDCG (1/log2(max(rank,2))) vs maasrec "
                              "ndcg@k (1/log2(rank+1)): definitions differ", False)
        add(nd, alt.get(f"{nd}_lenskit_default"), "LensKit default NDCG vs the same "
                                                  "definition recomputed from our hits", True)
        add(rc, ours.get(rc), "LensKit Recall = hits/min(|T|,k) vs maasrec recall = "
                              "hits/|T|: definitions differ", False)
        add(rc, alt.get(f"{rc}_capped"), "LensKit Recall vs hits/min(|T|,k) recomputed "
                                         "from our hits", True)
    elif library == "implicit":
        add(nd, ours.get(nd), "implicit ranking_metrics_at_k ndcg vs maasrec ndcg@k", True)
    else:
        add(nd, ours.get(nd), f"{library} NDCG vs maasrec ndcg@k", True)
        add(rc, ours.get(rc), f"{library} Recall (hits/|T|) vs maasrec recall@k", True)
    return rows


def score_lists(ids: np.ndarray, users: np.ndarray, target: pd.DataFrame, train: pd.DataFrame,
                suite: Suite, n_items: int, seed: int, n_bootstrap: int | None = None):
    """:func:`maasrec.metrics.evaluate_lists` with the suite's metrics."""
    from maasrec.metrics import evaluate_lists

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_lists(ids, users, target, train=train, k=suite.k,
                              metrics=list(suite.metrics), n_items=n_items,
                              n_bootstrap=suite.n_bootstrap if n_bootstrap is None
                              else n_bootstrap, random_state=seed)


# ---------------------------------------------------------------------------
# one model run
# ---------------------------------------------------------------------------
@dataclass
class Target:
    """What a run is scored on: test (exclude validation) or validation (tuning)."""

    name: str
    path: Path
    exclude: Path | None


def calibrate(threads: int, log: Path) -> dict[str, Any]:
    env = machine.thread_env(threads)
    cmd = [sys.executable, "-m", "benchmarks.machine"]
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    r = machine.run_process(cmd, log, env=env, timeout=300, cwd=REPO)
    if not r.ok:
        return {"error": r.tail(5)}
    try:
        return json.loads(log.read_text().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "calibration printed no JSON"}


def model_command(m: ModelSpec, files: SplitFiles, target: Target, run_dir: Path, seed: int,
                  k: int, threads: int, repeats: int, budget: float, metric_k: int,
                  peers_dir: Path, consistency: dict | None) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of one model run."""
    env = machine.thread_env(threads)
    if not m.is_peer:
        if m.item_text and files.item_text is None:
            raise RuntimeError(f"{m.key} needs item text but the data set has none")
        if m.item_attributes and files.item_attributes is None:
            raise RuntimeError(f"{m.key} needs item attributes but the data set has no "
                               f"categorical or multi-hot item fields")
        if m.fit_validation and files.valid is None:
            raise RuntimeError(f"{m.key} asks for fit_validation but the split has no "
                               f"validation part")
        job = {
            "kind": "lists", "model": m.model, "params": m.params, "seed": seed,
            "threads": threads, "train": str(files.train), "target": str(target.path),
            "exclude": None if target.exclude is None else str(target.exclude),
            "item_text": str(files.item_text) if m.item_text else None,
            "item_attributes": str(files.item_attributes) if m.item_attributes else None,
            "validation": str(files.valid) if m.fit_validation else None,
            "k": k, "fit_repeats": repeats, "repeat_budget_s": budget,
            "out": str(run_dir / "recs.csv"), "meta": str(run_dir / "meta.json"),
            "consistency": consistency,
            "per_user_out": str(run_dir / "evaluate_per_user.csv") if consistency else None,
        }
        (run_dir / "job.json").write_text(json.dumps(job, indent=2))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return [sys.executable, "-m", "benchmarks.worker", str(run_dir / "job.json")], env
    env.pop("PYTHONPATH", None)
    env["PEER_THREADS"] = str(threads)
    cmd = [str(peer_python(peers_dir, m.library)), str(PEERS_SRC / f"run_{m.library}.py"),
           "--train", str(files.train), "--test", str(target.path),
           "--model", m.model, "--params", json.dumps(m.params), "--k", str(k),
           "--threads", str(threads), "--seed", str(seed),
           "--out", str(run_dir / "recs.csv"), "--meta", str(run_dir / "meta.json"),
           "--metric-k", str(metric_k), "--fit-repeats", str(repeats),
           "--repeat-budget-s", str(budget)]
    if target.exclude is not None:
        cmd += ["--exclude", str(target.exclude)]
    if m.item_text:
        if files.item_text is None:
            raise RuntimeError(f"{m.key} needs item text but the data set has none")
        cmd += ["--item-text", str(files.item_text)]
    if m.library == "recbole":
        cmd += ["--workdir", str(run_dir / "recbole_data")]
    cmd += list(m.args)
    return cmd, env


def run_model(m: ModelSpec, exp: ExperimentSpec, files: SplitFiles, target: Target, seed: int,
              suite: Suite, opts: RunOptions, run_dir: Path, peer_status: dict[str, Any],
              frames: dict[str, pd.DataFrame], consistency: bool = True,
              n_bootstrap: int | None = None) -> dict[str, Any]:
    """Run one model on one split and score its lists. Returns the JSON record."""
    threads = m.threads or opts.threads or suite.threads
    repeats = m.timing_repeats or suite.timing_repeats
    rec: dict[str, Any] = {
        "experiment": exp.name, "seed": seed, "model": m.key, "library": m.library,
        "model_name": m.model, "params": m.params, "algorithm": m.algorithm,
        "threads": threads, "target": target.name, "status": "ok", "error": None,
    }
    if m.is_peer:
        if opts.skip_peers or (opts.peers is not None and m.library not in opts.peers):
            rec.update(status="skipped", error="peer skipped by command-line option")
            return rec
        st = peer_status.get(m.library, {})
        if not st.get("available"):
            rec.update(status="unavailable", error=st.get("error", "peer not available"))
            return rec
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("recs.csv", "meta.json", "evaluate_per_user.csv"):
        (run_dir / stale).unlink(missing_ok=True)
    rec["loadavg_start"] = machine.loadavg()
    rec["calibration"] = (calibrate(threads, run_dir / "calibration.log") if opts.calibrate
                          else {"skipped": "RunOptions.calibrate is False"})
    k_list = suite.list_length
    metric_k = int(suite.primary_metric.split("@")[1])
    cons = ({"k": list(suite.k), "metrics": list(suite.metrics)}
            if consistency and not m.is_peer else None)
    try:
        cmd, env = model_command(m, files, target, run_dir, seed, k_list, threads, repeats,
                                 suite.repeat_budget_s, metric_k, opts.peers_dir, cons)
    except (RuntimeError, OSError) as exc:
        rec.update(status="error", error=str(exc))
        return rec
    timeout = m.timeout_s or suite.timeout_s
    proc = machine.run_process(cmd, run_dir / "log.txt", env=env, timeout=timeout, cwd=REPO)
    rec["process"] = {"returncode": proc.returncode, "seconds": proc.seconds,
                      "maxrss_mib_wait4": proc.maxrss_mib, "timed_out": proc.timed_out,
                      "log": str(proc.log)}
    rec["loadavg_end"] = machine.loadavg()
    if not proc.ok or not (run_dir / "recs.csv").is_file() or not (run_dir / "meta.json").is_file():
        rec["status"] = "timeout" if proc.timed_out else "error"
        rec["error"] = (f"timed out after {timeout:.0f} s" if proc.timed_out
                        else f"exit code {proc.returncode}") + "\n" + proc.tail(15)
        return rec
    meta = json.loads((run_dir / "meta.json").read_text())
    rec["meta"] = {k: v for k, v in meta.items() if k not in ("argv",)}
    fit_times = meta.get("fit_times_s") or [meta.get("fit_time_s")]
    rec["fit_time_s"] = float(min(fit_times))
    rec["fit_times_s"] = [float(t) for t in fit_times]
    rec["fit_time_median_s"] = float(np.median(fit_times))
    cal = rec["calibration"].get("median_s")
    rec["fit_ratio"] = rec["fit_time_s"] / cal if cal else None
    rec["recommend_time_s"] = meta.get("recommend_time_s")
    rec["peak_rss_mib"] = meta.get("peak_rss_mib") or proc.maxrss_mib
    rec["library_version"] = meta.get("library_version")

    # score the lists with maasrec
    tgt = frames[target.name]
    train = frames["train"]
    users = pd.unique(tgt["user"])
    ids, recs = read_lists(run_dir / "recs.csv", users, k_list)
    excl = frames.get("valid") if target.exclude is not None else None
    rec["list_check"] = check_lists(recs, users, train, excl, k_list)
    n_items = int(train["item"].nunique())
    res = score_lists(ids, users, tgt, train, suite, n_items, seed, n_bootstrap)
    rec["metrics"] = {n: float(v) for n, v in res.items()}
    rec["ci"] = {n: list(v) for n, v in res.ci.items()}
    rec["eval_counts"] = dict(res.counts)
    rec["n_users_evaluated"] = int(res.n_users)
    pu = res.per_user_frame()
    pu.to_csv(run_dir / "per_user.csv", float_format="%.17g")
    rec["per_user_file"] = str(run_dir / "per_user.csv")
    hits, n_rel = hits_matrix(ids, users, tgt)
    alt = alternative_definitions(hits, n_rel, metric_k)
    rec["alt_metrics"] = alt

    if cons and "evaluate" in meta:
        rec["consistency"] = consistency_check(meta["evaluate"], rec["metrics"], pu,
                                               run_dir / "evaluate_per_user.csv")
    if m.is_peer and meta.get("own_metrics"):
        rows = crosscheck(m.library, meta["own_metrics"], rec["metrics"], alt, metric_k)
        rec["crosscheck"] = rows
    return rec


def consistency_check(ev: dict[str, Any], lists_metrics: dict[str, float], lists_pu: pd.DataFrame,
                      ev_pu_path: Path) -> dict[str, Any]:
    """evaluate() in the worker vs evaluate_lists() here: same numbers to 1e-9?"""
    diffs = {}
    for name, v in ev["metrics"].items():
        if name in lists_metrics:
            a, b = float(v), float(lists_metrics[name])
            diffs[name] = 0.0 if (np.isnan(a) and np.isnan(b)) else abs(a - b)
    out: dict[str, Any] = {"mean_abs_diff": diffs,
                           "max_abs_diff_means": max(diffs.values()) if diffs else None,
                           "n_users_evaluate": ev.get("n_users"),
                           "n_users_lists": len(lists_pu)}
    if ev_pu_path.is_file():
        ev_pu = pd.read_csv(ev_pu_path, index_col=0)
        common = ev_pu.index.intersection(lists_pu.index)
        cols = [c for c in ev_pu.columns if c in lists_pu.columns]
        if cols:
            d = (ev_pu.loc[common, cols] - lists_pu.loc[common, cols]).abs().to_numpy()
            out["max_abs_diff_per_user"] = float(np.nanmax(d)) if d.size else 0.0
        out["users_only_in_one"] = len(ev_pu.index.symmetric_difference(lists_pu.index))
    worst = max([out.get("max_abs_diff_means") or 0.0, out.get("max_abs_diff_per_user") or 0.0])
    out["max_abs_diff"] = worst
    out["agree"] = bool(worst <= CONSISTENCY_TOLERANCE and out.get("users_only_in_one", 0) == 0
                        and out["n_users_evaluate"] == out["n_users_lists"])
    return out


# ---------------------------------------------------------------------------
# experiment / suite
# ---------------------------------------------------------------------------
def selected_models(exp: ExperimentSpec, opts: RunOptions) -> list[ModelSpec]:
    if not opts.models:
        return list(exp.models)
    # a pattern that is a model's whole key selects that model only ("maasrec:BPRMF" is
    # not also "maasrec:BPRMF (sgd)"); any other pattern selects the keys containing it
    keys = {m.key.lower() for m in exp.models}
    pats = [p.lower() for p in opts.models]
    return [m for m in exp.models
            if any(p == m.key.lower() or (p not in keys and p in m.key.lower()) for p in pats)]


def split_dir(opts: RunOptions, suite: Suite, exp: ExperimentSpec, seed: int) -> Path:
    base = opts.work_dir / safe_name(suite.name) / safe_name(exp.name)
    return base / (f"split-seed{seed}" if exp.split.seeded else "split")


def load_frames(files: SplitFiles) -> dict[str, pd.DataFrame]:
    frames = {"train": pd.read_csv(files.train), "test": pd.read_csv(files.test_relevant)}
    if files.valid is not None:
        frames["valid"] = pd.read_csv(files.valid)
        frames["valid_target"] = pd.read_csv(files.valid_relevant)
    return frames


def run_experiment(exp: ExperimentSpec, suite: Suite, opts: RunOptions,
                   peer_status: dict[str, Any], dataset_cache: dict) -> dict[str, Any]:
    t0 = time.perf_counter()
    seeds = exp.seeds if opts.seeds is None else tuple(opts.seeds)
    models = selected_models(exp, opts)
    out: dict[str, Any] = {"name": exp.name, "description": exp.description,
                           "dataset": exp.dataset.label, "protocol": exp.split.describe(),
                           "seeds": list(seeds), "splits": {}, "runs": []}
    checked: set[str] = set()
    for seed in seeds:
        opts.log(f"[{exp.name}] seed {seed}: split {exp.split.describe()} of {exp.dataset.label}")
        try:
            files = prepare_split(exp, seed, split_dir(opts, suite, exp, seed), opts.data_home,
                                  dataset_cache, log=opts.log)
        except Exception as exc:  # a missing data set fails the experiment, not the suite
            out["error"] = f"split failed: {type(exc).__name__}: {exc}"
            opts.log(f"  ERROR {out['error']}")
            break
        if any(m.item_attributes for m in models):
            item_attributes(exp, seed, files, opts.data_home, dataset_cache)
        out["splits"][str(seed)] = {k: v for k, v in files.info.items() if k != "key"}
        frames = load_frames(files)
        target = Target("test", files.test_relevant, files.valid)
        for m in models:
            mseeds = exp.model_seeds(m) if opts.seeds is None else tuple(
                s for s in seeds if m.seeds is None or s in m.seeds or s == seeds[0])
            if seed not in mseeds:
                continue
            run_dir = (opts.work_dir / safe_name(suite.name) / safe_name(exp.name)
                       / f"seed{seed}" / "runs" / safe_name(m.key))
            opts.log(f"  {m.key:<28s} ... ")
            t = time.perf_counter()
            # evaluate() consistency check: on the first seed each maasrec model runs
            first = m.key not in checked
            checked.add(m.key)
            rec = run_model(m, exp, files, target, seed, suite, opts, run_dir, peer_status,
                            frames, consistency=first)
            out["runs"].append(rec)
            opts.log("    " + describe_record(rec, suite, time.perf_counter() - t))
    out["wall_s"] = time.perf_counter() - t0
    return out


def describe_record(rec: dict[str, Any], suite: Suite, seconds: float) -> str:
    if rec["status"] != "ok":
        first = (rec.get("error") or "").strip().splitlines()
        return f"{rec['status'].upper()}: {first[-1] if first else ''} ({seconds:.0f}s)"
    pm = suite.primary_metric
    s = (f"{pm} {rec['metrics'].get(pm, float('nan')):.4f}  fit {rec['fit_time_s']:.2f}s "
         f"(x{len(rec['fit_times_s'])})  peak {rec['peak_rss_mib']:.0f} MiB  [{seconds:.0f}s]")
    c = rec.get("consistency")
    if c is not None:
        s += f"  evaluate-vs-lists max diff {c['max_abs_diff']:.1e}"
    if rec.get("list_check", {}).get("ok") is False:
        s += "  LIST CHECK FAILED"
    return s


def collect_peer_status(suite: Suite, opts: RunOptions) -> dict[str, Any]:
    libs = sorted({m.library for e in suite.experiments for m in e.models if m.is_peer})
    status = {}
    for lib in libs:
        if opts.skip_peers or (opts.peers is not None and lib not in opts.peers):
            status[lib] = {"available": None, "error": "skipped by command-line option"}
            continue
        opts.log(f"checking peer {lib} in {opts.peers_dir / lib} ...")
        status[lib] = check_peer(opts.peers_dir, lib)
        if not status[lib]["available"]:
            opts.log(f"  {lib} UNAVAILABLE: {status[lib]['error']}")
    return status


def run_suite(suite: Suite, opts: RunOptions) -> dict[str, Any]:
    """Run every experiment of a compare suite; returns the results document."""
    from . import report

    if suite.kind == "scaling":
        from .scaling import run_scaling

        return run_scaling(suite, opts)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results: dict[str, Any] = {
        "format": "maasrec-benchmark/1",
        "suite": suite.to_dict(),
        "started": started,
        "machine": machine.machine_info(),
        "versions": {"maasrec_env": machine.package_versions(sys.executable,
                                                             machine.MAASREC_PACKAGES)},
        "git": machine.git_state(REPO),
        "peers_dir": str(opts.peers_dir),
        "options": {"skip_peers": opts.skip_peers,
                    "peers": None if opts.peers is None else sorted(opts.peers),
                    "seeds": None if opts.seeds is None else list(opts.seeds),
                    "experiments": None if opts.experiments is None else sorted(opts.experiments),
                    "models": opts.models, "threads": opts.threads or suite.threads,
                    "data_home": opts.data_home},
        "experiments": [],
    }
    status = collect_peer_status(suite, opts)
    results["peers"] = status
    dataset_cache: dict = {}
    for exp in suite.experiments:
        if opts.experiments is not None and exp.name not in opts.experiments:
            continue
        e = run_experiment(exp, suite, opts, status, dataset_cache)
        e.update(report.summarize_experiment(e, suite))
        results["experiments"].append(e)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["wall_s"] = time.perf_counter() - t0
    results["loadavg_end"] = machine.loadavg()
    return results


# ---------------------------------------------------------------------------
# tuning on validation
# ---------------------------------------------------------------------------
def tune_experiment(exp: ExperimentSpec, suite: Suite, opts: RunOptions, seed: int
                    ) -> dict[str, Any]:
    """Fit every grid point on train, score on validation (train items excluded)."""
    models = [m for m in selected_models(exp, opts) if m.grid or opts.models]
    status = collect_peer_status(
        Suite(**{**suite.__dict__, "experiments": (exp,)}), opts)
    files = prepare_split(exp, seed, split_dir(opts, suite, exp, seed), opts.data_home, {},
                          log=opts.log)
    if files.valid_relevant is None:
        raise ValueError(f"{exp.name}: the split has no validation part to tune on")
    frames = load_frames(files)
    frames["valid_target"] = pd.read_csv(files.valid_relevant)
    target = Target("valid_target", files.valid_relevant, None)
    out: dict[str, Any] = {"experiment": exp.name, "seed": seed, "metric": suite.primary_metric,
                           "protocol": "fit on train, score on validation (train items "
                                       "excluded), full ranking over train items",
                           "models": {}}
    for m in models:
        points = m.grid_points()
        opts.log(f"[tune {exp.name}] {m.key}: {len(points)} point(s)")
        rows = []
        for i, p in enumerate(points):
            mp = ModelSpec(**{**m.__dict__, "params": p, "grid": {}, "timing_repeats": 1})
            run_dir = (opts.work_dir / safe_name(suite.name) / safe_name(exp.name) / "tune"
                       / f"seed{seed}" / safe_name(m.key) / f"p{i:03d}")
            rec = run_model(mp, exp, files, target, seed, suite, opts, run_dir, status, frames,
                            consistency=False, n_bootstrap=0)
            val = rec.get("metrics", {}).get(suite.primary_metric)
            rows.append({"params": p, "status": rec["status"], "error": rec.get("error"),
                         "valid_" + suite.primary_metric: val,
                         "fit_time_s": rec.get("fit_time_s")})
            opts.log(f"  {json.dumps(p)} -> "
                     + (f"{val:.4f}  fit {rec['fit_time_s']:.1f}s" if val is not None
                        else rec["status"]))
        ok = [r for r in rows if r["status"] == "ok"]
        best = max(ok, key=lambda r: r["valid_" + suite.primary_metric]) if ok else None
        out["models"][m.key] = {"rows": rows, "best": best}
    return out


def as_namespace_result(users: np.ndarray, values: np.ndarray, metric: str) -> Any:
    """A duck-typed EvaluationResult for :func:`maasrec.metrics.paired_test`."""
    return types.SimpleNamespace(per_user={metric: values}, users=users, protocol="lists",
                                 n_negatives=None)


__all__ = ["PEER_MODELS", "RunOptions", "run_suite", "tune_experiment"]
