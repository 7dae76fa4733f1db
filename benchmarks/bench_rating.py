"""Rating prediction: BiasedMF vs Surprise's SVD, 5-fold cross-validation on MovieLens.

Issue 21 (deliverable 3) anchors rating prediction on Surprise's published numbers for
its ``SVD`` (5-fold RMSE 0.934 on MovieLens 100K, 0.873 on 1M). This script splits the
ratings into 5 random folds (a seeded permutation, every rating in exactly one test
fold, as Surprise's ``KFold``), fits :class:`maasrec.models.rating_mf.BiasedMF` with its
defaults (Surprise SVD's: 100 factors, 20 epochs, lr 0.005, reg 0.02) on each training
part and scores the test part with :func:`maasrec.metrics.evaluation.evaluate_ratings`
(``unknown="fallback"``: test rows with an unseen user or item get the global mean plus
the known bias, as Surprise predicts them). When ``--surprise-python`` names an
interpreter with ``scikit-surprise`` installed (a separate venv), the same folds are
written to a temporary folder and Surprise's ``SVD()`` (``SVDpp()`` beside
:class:`~maasrec.models.rating_mf.SVDpp`, ``--models SVDpp``; their defaults) is fitted and
scored on them in that interpreter: same data, same folds, same machine, same run.

Run::

    python3 -m venv /tmp/surprise-venv && /tmp/surprise-venv/bin/pip install scikit-surprise pandas
    MAASREC_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/bench_rating.py \\
        --datasets 100k 1m --surprise-python /tmp/surprise-venv/bin/python

Writes ``benchmarks/results/rating.json`` and prints a Markdown table (mean ± std over
folds of RMSE, MAE and fit seconds, with the machine's load average: fit times on a
shared machine are only comparable within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PUBLISHED_SURPRISE_SVD = {"100k": {"rmse": 0.934, "mae": 0.737},
                          "1m": {"rmse": 0.873, "mae": 0.686}}
PUBLISHED_SURPRISE_SVDPP = {"100k": {"rmse": 0.92, "mae": 0.722},
                            "1m": {"rmse": 0.862, "mae": 0.673}}

# Run by the Surprise interpreter (no maasrec there): fold files in, one JSON line per fold out.
_SURPRISE_CHILD = r"""
import json, sys, time
import numpy as np, pandas as pd
from surprise import SVD, SVDpp, Dataset, Reader, accuracy
folder, n_folds, seed, algo_name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for f in range(n_folds):
    tr = pd.read_csv(f"{folder}/train{f}.csv")
    te = pd.read_csv(f"{folder}/test{f}.csv")
    lo, hi = float(tr.rating.min()), float(tr.rating.max())
    data = Dataset.load_from_df(tr[["user", "item", "rating"]], Reader(rating_scale=(lo, hi)))
    algo = {"SVD": SVD, "SVDpp": SVDpp}[algo_name](random_state=seed)
    t0 = time.perf_counter()
    algo.fit(data.build_full_trainset())
    fit_s = time.perf_counter() - t0
    pred = algo.test(list(te[["user", "item", "rating"]].itertuples(index=False, name=None)))
    print(json.dumps({"fold": f, "rmse": accuracy.rmse(pred, verbose=False),
                      "mae": accuracy.mae(pred, verbose=False), "fit_s": fit_s}), flush=True)
"""


def _folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each rating: a seeded permutation cut into ``n_folds`` near-equal parts."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return fold


def _summary(rows: list[dict]) -> dict:
    out = {}
    for key in ("rmse", "mae", "fit_s"):
        v = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "folds": v.tolist()}
    return out


def run_maasrec(model_name: str, frame, fold: np.ndarray, n_folds: int, seed: int,
                params: dict) -> list[dict]:
    from maasrec.metrics.evaluation import evaluate_ratings
    from maasrec.models import rating_mf

    rows = []
    for f in range(n_folds):
        train, test = frame[fold != f], frame[fold == f]
        model = getattr(rating_mf, model_name)(random_state=seed, **params)
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        res = evaluate_ratings(model, test, unknown="fallback", n_bootstrap=0)
        rows.append({"fold": f, "rmse": res["rmse"], "mae": res["mae"], "fit_s": fit_s,
                     "unknown_rows": sum(res.counts.values())})
        print(f"  maasrec {model_name}{params or ''} fold {f}: RMSE {res['rmse']:.4f} "
              f"MAE {res['mae']:.4f} fit {fit_s:.1f}s", flush=True)
    return rows


def run_surprise(python: str, algo: str, frame, fold: np.ndarray, n_folds: int, seed: int
                 ) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="maasrec-bench-rating-") as d:
        for f in range(n_folds):
            frame[fold != f].to_csv(f"{d}/train{f}.csv", index=False)
            frame[fold == f].to_csv(f"{d}/test{f}.csv", index=False)
        proc = subprocess.Popen([python, "-c", _SURPRISE_CHILD, d, str(n_folds), str(seed), algo],
                                stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            row = json.loads(line)
            rows.append(row)
            print(f"  Surprise {algo} fold {row['fold']}: RMSE {row['rmse']:.4f} "
                  f"MAE {row['mae']:.4f} fit {row['fit_s']:.1f}s", flush=True)
        if proc.wait() != 0:
            raise RuntimeError(f"the Surprise run failed (exit code {proc.returncode})")
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["100k"], choices=["100k", "1m"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--surprise-python", default=None,
                    help="interpreter with scikit-surprise installed (a separate venv)")
    ap.add_argument("--models", nargs="+", default=["BiasedMF"], choices=["BiasedMF", "SVDpp"],
                    help="maasrec models; each is compared with Surprise's SVD / SVDpp")
    ap.add_argument("--surprise-skip", nargs="*", default=[],
                    help="DATA:MODEL pairs not to run in Surprise, e.g. 1m:SVDpp (hours)")
    ap.add_argument("--params", default="{}",
                    help="JSON of model parameters besides the defaults, e.g. '{\"epochs\": 30}'")
    ap.add_argument("--out", default=str(HERE / "results" / "rating.json"))
    args = ap.parse_args(argv)
    params = json.loads(args.params)

    from maasrec.datasets import load_movielens

    result = {"load_average_start": os.getloadavg(), "omp_num_threads":
              os.environ.get("OMP_NUM_THREADS"), "n_folds": args.folds, "seed": args.seed,
              "params": params, "published_surprise_svd": PUBLISHED_SURPRISE_SVD,
              "published_surprise_svdpp": PUBLISHED_SURPRISE_SVDPP, "models": args.models, "data": {}}
    for name in args.datasets:
        frame = load_movielens(name).interactions.to_pandas()[["user", "item", "rating"]]
        fold = _folds(len(frame), args.folds, args.seed)
        print(f"MovieLens {name}: {len(frame)} ratings, {args.folds} folds", flush=True)
        entry: dict = {"n_ratings": len(frame)}
        for model in args.models:
            entry[f"maasrec_{model}"] = _summary(run_maasrec(model, frame, fold, args.folds,
                                                             args.seed, params))
            peer = "SVD" if model == "BiasedMF" else "SVDpp"
            if args.surprise_python and f"{name}:{peer}" not in args.surprise_skip:
                entry[f"surprise_{peer}"] = _summary(run_surprise(
                    args.surprise_python, peer, frame, fold, args.folds, args.seed))
        result["data"][name] = entry
    result["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("\n| data | model | RMSE | MAE | fit s |\n|---|---|---|---|---|")
    for name, entry in result["data"].items():
        for model, s in entry.items():
            if isinstance(s, dict):
                print(f"| ML-{name} | {model} | {s['rmse']['mean']:.4f} ± {s['rmse']['std']:.4f} "
                      f"| {s['mae']['mean']:.4f} ± {s['mae']['std']:.4f} "
                      f"| {s['fit_s']['mean']:.1f} ± {s['fit_s']['std']:.1f} |")
        for label, pub in (("SVD", PUBLISHED_SURPRISE_SVD), ("SVDpp", PUBLISHED_SURPRISE_SVDPP)):
            print(f"| ML-{name} | Surprise {label} (published) | {pub[name]['rmse']} "
                  f"| {pub[name]['mae']} | |")
    print(f"load average {result['load_average_start']} -> {result['load_average_end']}")
    return result


if __name__ == "__main__":
    main()
