"""Defaults and standing of the implicit-feedback neural models MultVAE, RecVAE and LightGCN.

Two commands, on per-user random 8:1:1 splits (seed 0) of MovieLens 100K and latest-small
(``maasrec.data.split.random_split``, as ``bench_classical.py``):

``tune``
    Each configuration of a small grid is fitted on train (the model holds out its own
    ``validation_fraction`` slice of train for early stopping, as a user's ``fit(train)``
    does) and scored by NDCG@10 on the validation part (full ranking, train items
    excluded). The defaults in the docstrings come from these tables. Results are merged
    into ``benchmarks/results/new_models_tune.json``.
``test``
    The defaults of MultVAE and LightGCN beside Popularity, EASE and ALS (their
    defaults): fitted on train, NDCG@10 / Recall@20 on test (train and validation items
    excluded) and NDCG@10 on validation, fit seconds.
    Writes ``benchmarks/results/new_models_test.json``.

Run with one thread (``OMP_NUM_THREADS=1``): ``python benchmarks/bench_new_models.py tune
--model MultVAE --data 100k`` (``--grid '[{"batch_size": 64}, ...]'`` replaces the grid),
``python benchmarks/bench_new_models.py test``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

GRIDS = {
    "MultVAE": [{"batch_size": b, "anneal_steps": a} for b in (64, 128, 500)
                for a in (200, 2000, 20000)],
    "LightGCN": [{"n_layers": n, "l2": r} for n in (2, 3) for r in (1e-4, 1e-3)],
    "RecVAE": [{"batch_size": b} for b in (128, 500)],
}


def _split(name: str):
    from maasrec import datasets
    from maasrec.data.split import random_split
    from maasrec.exceptions import ColdStartWarning

    data = datasets.load_movielens(name, download=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return random_split(data, (0.8, 0.1, 0.1), random_state=0)


def _model(name: str, params: dict):
    import importlib

    where = {"MultVAE": "maasrec.neural.vae", "LightGCN": "maasrec.neural.lightgcn",
             "RecVAE": "maasrec.neural.recvae"}
    m = getattr(importlib.import_module(where.get(name, "maasrec.models")), name)(**params)
    if "random_state" in m.get_params():
        m.set_params(random_state=0)
    return m


def _metric(model, train, test, exclude=None, metrics=("ndcg@10",)):
    from maasrec.metrics import evaluate

    res = evaluate(model, train, test, k=[10, 20], metrics=list(metrics), exclude=exclude,
                   n_bootstrap=0)
    return {m: float(res[m]) for m in metrics}


def _fit(name, params, train):
    model = _model(name, params)
    t0 = time.perf_counter()
    model.fit(train)
    dt = time.perf_counter() - t0
    log = getattr(model, "training_log_", {}) or {}
    return model, dt, {k: log.get(k) for k in ("best_epoch", "epochs", "stopped_early")
                       if k in log}


def _merge(path: Path, key: list[str], value) -> None:
    doc = json.loads(path.read_text()) if path.exists() else {}
    node = doc
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = value
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


def tune(args) -> None:
    grid = json.loads(args.grid) if args.grid else GRIDS[args.model]
    out = RESULTS / "new_models_tune.json"
    for ds in args.data:
        split = _split(ds)
        rows = []
        for params in grid:
            p = {**json.loads(args.base or "{}"), **params}
            model, dt, log = _fit(args.model, p, split.train)
            v = _metric(model, split.train, split.valid)["ndcg@10"]
            rows.append({"params": p, "valid_ndcg@10": v, "fit_seconds": dt, **log})
            print(f"{ds} {args.model} {p} valid NDCG@10 {v:.4f} ({dt:.1f}s) {log}", flush=True)
        old = []
        if out.exists():
            old = json.loads(out.read_text()).get("results", {}).get(ds, {}).get(args.model, [])
        keep = [r for r in old if r["params"] not in [x["params"] for x in rows]]
        _merge(out, ["results", ds, args.model], keep + rows)
    _merge(out, ["protocol"], "per-user random 8:1:1 (seed 0); fit(train) with the model's own "
           "validation_fraction holdout for early stopping; NDCG@10 on the validation part, "
           "full ranking, train items excluded; OMP_NUM_THREADS=1, shared 2-core machine")


def test(args) -> None:
    out = RESULTS / "new_models_test.json"
    models = args.models or ["Popularity", "EASE", "ALS", "MultVAE", "LightGCN"]
    for ds in args.data:
        split = _split(ds)
        for name in models:
            model, dt, log = _fit(name, json.loads(args.base or "{}") if name == args.model
                                  else {}, split.train)
            te = _metric(model, split.train, split.test, exclude=split.valid,
                         metrics=("ndcg@10", "recall@20"))
            va = _metric(model, split.train, split.valid)["ndcg@10"]
            row = {"test_ndcg@10": te["ndcg@10"], "test_recall@20": te["recall@20"],
                   "valid_ndcg@10": va, "fit_seconds": dt, "params": model.get_params(), **log}
            row["params"] = {k: v for k, v in row["params"].items()
                             if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}
            print(f"{ds} {name}: test NDCG@10 {te['ndcg@10']:.4f} recall@20 "
                  f"{te['recall@20']:.4f} valid NDCG@10 {va:.4f} ({dt:.1f}s) {log}", flush=True)
            _merge(out, ["results", ds, name], row)
    _merge(out, ["protocol"], "per-user random 8:1:1 (seed 0); every model fitted on train with "
           "its defaults (neural models hold out their own validation slice of train); "
           "test metrics by full ranking with train and validation items excluded; "
           "OMP_NUM_THREADS=1, shared 2-core machine")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["tune", "test"])
    ap.add_argument("--model", default="MultVAE")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--data", nargs="*", default=["100k", "latest-small"])
    ap.add_argument("--grid", default=None, help="JSON list of parameter dicts (tune)")
    ap.add_argument("--base", default=None, help="JSON parameters added to every config")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    RESULTS.mkdir(exist_ok=True)
    {"tune": tune, "test": test}[args.command](args)


if __name__ == "__main__":
    main()
