"""Shared helpers for the peer-library adapters (``run_<library>.py``).

The adapters run inside each peer's own virtual environment (created by
``setup_<library>.sh``), never in maasrec's, so this module is deliberately
dependency-light: the standard library at import time, numpy/pandas imported lazily.
Nothing here imports maasrec or the ``benchmarks`` package.

Conventions shared by every adapter
-----------------------------------
* Input CSVs have a header ``user,item[,rating][,timestamp]`` with raw integer ids.
  Every train row is a positive (ratings are ignored; duplicate pairs are dropped).
* ``--test``: the users to recommend for (column ``user``); when it also has an
  ``item`` column it is the held-out truth for the peer's *own* metric
  (``--no-metrics`` disables it). The harness passes the *relevant* test rows (test
  minus the user's train/valid items, restricted to train users and items), so the
  peer's own metric and maasrec's are computed against the same truth.
* ``--exclude``: optional CSV ``user,item`` of further items never to recommend to
  the user (the validation part): lists skip the user's train items **and** these.
* Users of the test file that are not in train (cold users) are skipped and counted
  (``n_cold_users_skipped``); only train items are ever recommended.
* ``--fit-repeats N`` fits a fresh model up to N times (stopping early once
  ``--repeat-budget-s`` seconds of fitting are spent); the last fit makes the lists.
  ``fit_times_s`` lists every fit; ``fit_time_s`` is the minimum.
* Output: CSV ``user,rank,item,score`` (rank starts at 1) and a meta JSON with
  times (seconds), peak memory (MiB) and the peer's own metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
)


def early_threads(default: int | None = None) -> int:
    """Read ``--threads N`` (or env ``PEER_THREADS``) *before* numpy/torch are imported.

    Exports the BLAS/OpenMP thread variables and returns N.
    """
    n = None
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif a.startswith("--threads="):
            n = int(a.split("=", 1)[1])
    if n is None and os.environ.get("PEER_THREADS"):
        n = int(os.environ["PEER_THREADS"])
    if n is None:
        n = default if default is not None else (os.cpu_count() or 1)
    for v in THREAD_ENV_VARS:
        os.environ[v] = str(n)
    # LensKit reads these; harmless elsewhere.
    os.environ.setdefault("LK_NUM_THREADS", str(n))
    os.environ.setdefault("LK_NUM_BACKEND_THREADS", str(n))
    os.environ.setdefault("LK_NUM_PROCS", "1")
    return n


def base_parser(description: str, models: list[str]) -> argparse.ArgumentParser:
    """The command line every adapter shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--train", required=True, help="train CSV: user,item[,rating][,timestamp]")
    p.add_argument("--test", required=True,
                   help="test-users CSV (column user; optional item column = held-out truth)")
    p.add_argument("--exclude", default=None,
                   help="CSV user,item of items never to recommend to the user (e.g. the "
                        "validation part), on top of the user's train items")
    p.add_argument("--model", required=True, choices=models)
    p.add_argument("--params", default="{}", help="hyperparameters as a JSON object (or a "
                                                  "path to a JSON file)")
    p.add_argument("--k", type=int, default=10, help="list length")
    p.add_argument("--threads", type=int, default=None,
                   help="thread count (default: env PEER_THREADS or all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output recommendations CSV")
    p.add_argument("--meta", default=None, help="output meta JSON (default: <out>.json)")
    p.add_argument("--no-metrics", action="store_true",
                   help="do not compute the peer's own metrics")
    p.add_argument("--metric-k", type=int, default=10)
    p.add_argument("--fit-repeats", type=int, default=1,
                   help="fit a fresh model up to this many times (timing repeats)")
    p.add_argument("--repeat-budget-s", type=float, default=float("inf"),
                   help="stop repeating once this many seconds of fitting are spent")
    return p


def parse_params(s: str) -> dict:
    """A JSON object given inline or as a file path."""
    if os.path.exists(s):
        with open(s) as f:
            d = json.load(f)
    else:
        d = json.loads(s)
    if not isinstance(d, dict):
        raise SystemExit("--params must be a JSON object")
    return d


def read_inputs(train_path: str, test_path: str):
    """Return ``(train_df, test_users ndarray, test_df or None)``."""
    import numpy as np
    import pandas as pd

    train = pd.read_csv(train_path)
    for c in ("user", "item"):
        if c not in train.columns:
            raise SystemExit(f"{train_path}: missing column {c!r}")
    train["user"] = train["user"].astype(np.int64)
    train["item"] = train["item"].astype(np.int64)
    # one row per (user,item) pair: positives are binary
    if "timestamp" in train.columns:
        train = train.sort_values(["user", "timestamp"], kind="stable")
    train = train.drop_duplicates(["user", "item"], keep="last").reset_index(drop=True)

    test = pd.read_csv(test_path)
    if "user" not in test.columns:
        raise SystemExit(f"{test_path}: missing column 'user'")
    test["user"] = test["user"].astype(np.int64)
    users = pd.unique(test["user"])
    test_df = None
    if "item" in test.columns:
        test["item"] = test["item"].astype(np.int64)
        test_df = test[["user", "item"]].drop_duplicates()
    return train, np.asarray(users, dtype=np.int64), test_df


def read_exclude(path: str | None):
    """The ``--exclude`` rows as a frame ``user,item`` (empty frame when not given)."""
    import numpy as np
    import pandas as pd

    if not path:
        return pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)})
    ex = pd.read_csv(path)
    for c in ("user", "item"):
        if c not in ex.columns:
            raise SystemExit(f"{path}: missing column {c!r}")
    ex = ex[["user", "item"]].astype(np.int64).drop_duplicates().reset_index(drop=True)
    return ex


def exclude_lists(exclude_df) -> dict:
    """``{user: [items]}`` from an exclude frame."""
    if len(exclude_df) == 0:
        return {}
    return {int(u): g.tolist() for u, g in exclude_df.groupby("user")["item"]}


def fit_repeated(build_and_fit, repeats: int, budget_s: float):
    """Call ``build_and_fit()`` (returns a fitted model) up to ``repeats`` times.

    Stops early once the fits took ``budget_s`` seconds in total (at least one fit).
    Returns ``(last_model, [seconds of each fit])``.
    """
    times: list[float] = []
    model = None
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        model = build_and_fit()
        times.append(time.perf_counter() - t0)
        if sum(times) >= budget_s:
            break
    return model, times


def write_recs(path: str, users, items, scores, k: int) -> int:
    """users: (n,) raw ids; items: (n,k) raw ids (-1 = padding); scores (n,k)."""
    import numpy as np
    import pandas as pd

    items = np.asarray(items)
    scores = np.asarray(scores, dtype=np.float64)
    n = len(users)
    uu = np.repeat(np.asarray(users), k)
    rr = np.tile(np.arange(1, k + 1), n)
    ii = items.reshape(-1)
    ss = scores.reshape(-1)
    keep = (ii >= 0) & np.isfinite(ss)
    df = pd.DataFrame({"user": uu[keep], "rank": rr[keep], "item": ii[keep], "score": ss[keep]})
    df.to_csv(path, index=False, float_format="%.9g")
    return len(df)


def topk_from_scores(scores, k: int):
    """Row-wise top-k of a dense ``(n, m)`` score matrix (``-inf`` = excluded).

    Ties go to the lower column index. Returns ``(idx (n,k), vals (n,k))``; idx is -1
    where fewer than k finite scores remain.
    """
    import numpy as np

    n, m = scores.shape
    kk = min(k, m)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    pv = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -pv), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(pv, order, axis=1)
    idx = np.where(np.isfinite(vals), idx, -1)
    if kk < k:
        idx = np.hstack([idx, -np.ones((n, k - kk), dtype=idx.dtype)])
        vals = np.hstack([vals, np.full((n, k - kk), -np.inf)])
    return idx, vals


def reference_metrics(recs_items, users, test_df, k: int) -> dict:
    """Plain-numpy ndcg@k / recall@k (recall denominator = |test items|).

    Mean over listed warm users that have >= 1 test item; one identically-defined
    number in every adapter, next to the peer's own.
    """
    import numpy as np

    truth = test_df.groupby("user")["item"].apply(lambda s: set(s.tolist())).to_dict()
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    nd, rc = [], []
    for u, row in zip(users, recs_items):
        t = truth.get(int(u))
        if not t:
            continue
        row = [int(x) for x in row[:k] if x >= 0]
        hits = np.array([1.0 if x in t else 0.0 for x in row] + [0.0] * (k - len(row)))
        dcg = float((hits * disc).sum())
        idcg = float(disc[: min(k, len(t))].sum())
        nd.append(dcg / idcg)
        rc.append(hits.sum() / len(t))
    return {
        f"ndcg@{k}": float(np.mean(nd)) if nd else float("nan"),
        f"recall@{k}": float(np.mean(rc)) if rc else float("nan"),
        "n_users_evaluated": len(nd),
    }


_HWM_SEEN_KIB = 0.0  # highest VmHWM read before a PhasePeak reset it


def _note_hwm() -> None:
    global _HWM_SEEN_KIB
    v = _status_kib("VmHWM")
    if v is not None:
        _HWM_SEEN_KIB = max(_HWM_SEEN_KIB, v)


def peak_rss_mib() -> float:
    """Peak RSS of this whole process so far, in MiB (kept across PhasePeak resets)."""
    _note_hwm()
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return max(ru, _HWM_SEEN_KIB) / 1024.0


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    """Current resident set size (``VmRSS``) in MiB, or None off Linux."""
    v = _status_kib("VmRSS")
    return None if v is None else v / 1024.0


def reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    _note_hwm()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mib() -> float | None:
    """Peak RSS (``VmHWM``) since the last :func:`reset_peak`, in MiB."""
    v = _status_kib("VmHWM")
    return None if v is None else v / 1024.0


class PhasePeak:
    """Context manager: the peak RSS reached inside the block, above the RSS at entry."""

    def __enter__(self):
        self.ok = reset_peak()
        self.start = rss_mib()
        return self

    def __exit__(self, *a):
        _note_hwm()
        peak = hwm_mib() if self.ok else None
        self.peak_mib = peak
        self.extra_mib = (None if peak is None or self.start is None
                          else max(0.0, peak - self.start))


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *a):
        self.s = time.perf_counter() - self.t0


def write_meta(path: str, meta: dict) -> None:
    meta = dict(meta)
    meta.setdefault("peak_rss_mib", peak_rss_mib())
    meta.setdefault("python", platform.python_version())
    meta.setdefault("argv", sys.argv)
    try:
        meta.setdefault("loadavg_end", list(os.getloadavg()))
    except OSError:  # pragma: no cover
        pass
    with open(path, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True, default=_json_default)


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
