"""Tuned peers for ``bench_tune.py``: implicit (ALS, BPR) and Cornac (EASE, BiVAE) tuned on
the same validation split as ``maasrec.tune``, with the same wall-time budget per library.

The split is ``bench_tune.py``'s (per-user random 8:1:1, seed 0). Each library runs
``tune_worker.py`` in its own venv (``benchmarks/peers/setup_<lib>.sh``, plus ``pip
install optuna`` there) with one thread: each model's defaults, then Optuna TPE per model
for an equal share of the time left, selection by NDCG@10 on valid. The top-10 lists
the worker writes (each model's best trial, fitted on train) are scored here by
``maasrec.metrics.evaluate_lists``: validation NDCG@10 (train excluded) and test
NDCG@10 (train and valid excluded), the protocol of ``bench_tune.py``. Results are
merged into ``benchmarks/results/tune_peers.json`` under ``<data>@<budget>/<lib>``, with
the 1-minute load average before and after (the machine is shared).

Run: ``python benchmarks/peers/tune_peers.py --data 100k --lib implicit --budget 600``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
sys.path.insert(0, str(HERE.parent))


def run(data: str, lib: str, budget: float, python: str, workdir: str | None,
        models: str | None = None) -> dict:
    from bench_tune import _split

    from maasrec.metrics import evaluate_lists

    train, valid, test = _split(data)
    tr, va, te = train.to_pandas(), valid.to_pandas(), test.to_pandas()
    uid = {u: j for j, u in enumerate(train.user_vocab.ids)}
    iid = {i: j for j, i in enumerate(train.item_vocab.ids)}
    va = va[va.user.isin(uid) & va.item.isin(iid)]
    d = Path(workdir or tempfile.mkdtemp(prefix=f"tunepeer-{data}-{lib}-"))
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"u": tr.user.map(uid), "i": tr.item.map(iid)}).to_csv(d / "train.csv",
                                                                       index=False)
    pd.DataFrame({"u": va.user.map(uid), "i": va.item.map(iid)}).to_csv(d / "valid.csv",
                                                                       index=False)
    test_users = sorted({uid[u] for u in te.user if u in uid})
    (d / "meta.json").write_text(json.dumps({"n_users": len(uid), "n_items": len(iid),
                                             "test_users": test_users}))
    load0 = os.getloadavg()
    t = time.perf_counter()
    subprocess.run([python, str(HERE / "tune_worker.py"), "--lib", lib, "--dir", str(d),
                    "--budget", str(budget), "--threads", "1"]
                   + (["--models", models] if models else []), check=True)
    wall = time.perf_counter() - t
    res = json.loads((d / f"result_{lib}.json").read_text())
    items = np.asarray(train.item_vocab.ids)
    users = np.asarray(train.user_vocab.ids)
    vusers = np.asarray(res["valid_users"], dtype=np.int64)
    out = {"data": data, "lib": lib, "models_searched": res.get("models"),
           "budget_seconds": budget, "elapsed": res["elapsed"],
           "wall_seconds": round(wall, 1), "load_1min_before_after":
           [round(load0[0], 2), round(os.getloadavg()[0], 2)], "threads": 1,
           "n_trials": len(res["trials"]), "models": {}}
    for name, b in res["best"].items():
        vl = np.load(d / f"{name}_valid.npy")
        tl = np.load(d / f"{name}_test.npy")
        ev_v = evaluate_lists(items[vl], users[vusers], valid, train=train, k=10,
                              metrics=["ndcg@10"], n_bootstrap=0)
        ev_t = evaluate_lists(items[tl], users[np.asarray(test_users)], test, train=train,
                              k=10, metrics=["ndcg@10", "recall@20"] if tl.shape[1] >= 20
                              else ["ndcg@10"], n_bootstrap=0)
        out["models"][name] = {"params": b["params"], "n_trials": b["n_trials"],
                               "valid_ndcg@10": float(ev_v["ndcg@10"]),
                               "valid_ndcg@10_worker": b["valid_ndcg@10_own"],
                               "test_ndcg@10": float(ev_t["ndcg@10"])}
    best = max(out["models"], key=lambda m: out["models"][m]["valid_ndcg@10"])
    out["best_by_valid"] = best
    out["trials"] = res["trials"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="100k", choices=["100k", "latest-small", "1m", "beauty"])
    p.add_argument("--lib", required=True, choices=["implicit", "cornac"])
    p.add_argument("--budget", type=float, default=600.0)
    p.add_argument("--python", default=None,
                   help="the peer venv's python (default /tmp/maasrec-peers/<lib>/bin/python)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--models", default=None,
                   help="a subset of the library's models, e.g. cornac-bivaecf (each then "
                        "gets the whole budget)")
    a = p.parse_args(argv)
    python = a.python or f"/tmp/maasrec-peers/{a.lib}/bin/python"
    out = run(a.data, a.lib, a.budget, python, a.workdir, a.models)
    print(json.dumps({k: v for k, v in out.items() if k != "trials"}, indent=1))
    path = RESULTS / "tune_peers.json"
    allres = json.loads(path.read_text()) if path.exists() else {}
    allres[f"{a.data}@{a.budget:g}s/{a.lib}" + (f"[{a.models}]" if a.models else "")] = out
    path.write_text(json.dumps(allres, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
