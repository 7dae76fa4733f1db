"""Faithfulness and latency of ``Recommender.explain`` for the classical models (issue 20).

The deletion test (:func:`maasrec.explain.deletion_test`): MovieLens 1M, per-user random
8:1:1 split (seed 0), every model fitted on train with its defaults; for each of
``--users`` sampled train users (seeded) with at least 6 train items, the model's top-1
recommendation for the user's train history is explained; the 3 history items with the
largest weights are removed, against 3 random history items (3 draws), and the item's
rank (among the items not in the history) and score are computed again on the reduced
history (``recommend(history=...)``). Reported per model: mean rank drop (top vs
random) and their ratio (goal >= 2), relative score drops and their ratio, the share of
users for whom the top removal dropped the rank more, and explain latency (p50/p99 over
the sampled users, a known user's ``explain(user, item)``).

BPRMF cannot score a history (``supports_history`` is False): removing history items
cannot change its scores, so it has no deletion test; only its latency is measured.
Popularity's scores do not depend on the history: its drops are 0 by construction.

Run (CPU; the numbers go to ``benchmarks/results/explain.json``)::

    OMP_NUM_THREADS=1 python -m benchmarks.bench_explain --users 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "explain.json"


def _models(bpr_epochs: int) -> dict:
    from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD

    return {
        "EASE": lambda: EASE(),
        "ItemKNN": lambda: ItemKNN(),
        "PureSVD": lambda: PureSVD(random_state=0),
        "ALS": lambda: ALS(random_state=0, device="cpu"),
        "BPRMF": lambda: BPRMF(random_state=0, epochs=bpr_epochs, device="cpu"),
        "Popularity": lambda: Popularity(),
    }


def _latency(model, train, n_users: int, seed: int) -> dict:
    """p50/p99 milliseconds of ``explain(user, top-1 item)`` for sampled known users."""
    rng = np.random.default_rng(seed)
    users = rng.choice(train.user_vocab.ids, size=min(n_users, train.n_users), replace=False)
    ids, _ = model.recommend(list(users), k=1)
    times = []
    for u, item in zip(users, ids[:, 0]):
        t0 = time.perf_counter()
        model.explain(u, item, n=5)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {"explain_ms_p50": float(np.percentile(ms, 50)),
            "explain_ms_p99": float(np.percentile(ms, 99)), "latency_users": len(ms)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="1m", help="MovieLens variant (default 1m)")
    ap.add_argument("--data-home", default=os.environ.get("MAASREC_DATA"))
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--models", default="EASE,ItemKNN,PureSVD,ALS,BPRMF,Popularity")
    ap.add_argument("--bpr-epochs", type=int, default=20,
                    help="BPRMF epochs (latency only; its default is 100)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    import warnings

    from maasrec import datasets
    from maasrec.data.split import random_split
    from maasrec.exceptions import ColdStartWarning
    from maasrec.explain import NotExplainableError, deletion_test

    from .bench_classical import machine

    X = datasets.load_movielens(args.data, data_home=args.data_home,
                                download=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        train, _, _ = random_split(X, (0.8, 0.1, 0.1), random_state=0)
    factories = _models(args.bpr_epochs)
    out = {"machine": machine(), "data": f"movielens-{args.data} train (per-user 8:1:1, seed 0)",
           "users": args.users, "k_remove": 3, "n_random": 3,
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "models": {}}
    for name in args.models.split(","):
        t0 = time.perf_counter()
        model = factories[name]().fit(train)
        row: dict = {"fit_s": round(time.perf_counter() - t0, 2)}
        row.update(_latency(model, train, min(args.users, 200), seed=1))
        t0 = time.perf_counter()
        try:
            res = deletion_test(model, n_users=args.users, k_remove=3, n_random=3,
                                random_state=0)
            row.update(res.to_dict())
        except NotExplainableError as exc:
            row["deletion_test"] = f"not applicable: {exc}"
        row["deletion_s"] = round(time.perf_counter() - t0, 1)
        out["models"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    with open("/proc/loadavg") as fh:
        out["loadavg_at_end"] = fh.read().split()[:3]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
