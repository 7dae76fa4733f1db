"""BERT4Rec on MovieLens 100K, leave-last-out: settings chosen on a validation split, then test.

    python benchmarks/bench_bert4rec.py valid [--epochs N] [--set key=value ...]
    python benchmarks/bench_bert4rec.py test  [--epochs N] [--set key=value ...]

``valid``: leave-last-out of the training part (its last training item per user is the
validation target), so the test items are never looked at while choosing settings.
``test``: fit on train (the model holds out its own validation slice), the validation
item joins the histories (``extend_history``), NDCG@10 / HR@10 on the test items with
Popularity beside it, full ranking. Results are appended to
``benchmarks/results/bert4rec.jsonl``. Run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

from maasrec import datasets
from maasrec.data.split import leave_last_out
from maasrec.exceptions import ColdStartWarning
from maasrec.metrics import evaluate
from maasrec.models import Popularity
from maasrec.neural.bert4rec import BERT4Rec

OUT = Path(__file__).parent / "results" / "bert4rec.jsonl"


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["valid", "test"])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--log", action="store_true", help="the Trainer's per-epoch log on stderr")
    args = ap.parse_args()
    if args.log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    params = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    data_home = os.environ.get("MAASREC_DATA")
    X = datasets.load_movielens("100k", data_home, download=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        train, valid, test = leave_last_out(X, n_valid=1, n_test=1)
        if args.mode == "valid":
            train, target = leave_last_out(train, n_valid=0, n_test=1)
            exclude = None
        else:
            target, exclude = test, valid
        model = BERT4Rec(epochs=args.epochs, random_state=args.seed, **params)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(train)
        fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        if exclude is not None:
            model.extend_history(exclude)
        res = evaluate(model, train, target, k=10, exclude=exclude, n_bootstrap=0)
        pop = evaluate(Popularity().fit(train), train, target, k=10, exclude=exclude,
                       n_bootstrap=0)
    log = model.training_log_
    row = {"mode": args.mode, "seed": args.seed, "epochs_cap": args.epochs, "params": params,
           "ndcg@10": round(float(res["ndcg@10"]), 4), "hit@10": round(float(res["hit@10"]), 4),
           "pop_ndcg@10": round(float(pop["ndcg@10"]), 4),
           "epochs_run": len(log.get("losses", [])), "best_epoch": log.get("best_epoch"),
           "val_curve": [None if v is None else round(float(v), 4)
                         for v in log.get("metrics") or []],
           "fit_s": round(fit_s, 1), "cpu_s": round(cpu_s, 1), "threads": os.environ.get("OMP_NUM_THREADS"),
           "load": round(os.getloadavg()[0], 1)}
    print(json.dumps(row))
    OUT.parent.mkdir(exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
