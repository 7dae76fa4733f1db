"""Defaults a new user meets (issue 22, point 6): every neural model fitted as
``Model(random_state=seed).fit(train)`` -- no ``validation=``, no hand-set epochs -- against
Popularity on the protocols it is made for.

Without ``validation=``, the models hold out ``validation_fraction`` (0.1) of ``train`` by
themselves and stop early on it. Jobs (``--jobs``, default all of the table):

* ``seq-llo-100k``, ``seq-llo-beauty``: SequentialRecommender on leave-last-out (last item
  of every user with 3+ interactions to test, the rest to train);
* ``hybrid-random-100k``, ``hybrid-random-small``, ``neumf-random-100k``,
  ``neumf-random-small``: HybridRecommender / NeuMF on per-user random 80/20 splits of
  MovieLens 100K and latest-small (ids only: a new user's ``fit(train)``);
* ``seq-random-100k``: SequentialRecommender on the per-user random 80/20 split of ML-100K
  (not its protocol: the test items are scattered through each history);
* ``refit-seq-100k``, ``refit-hybrid-100k``: the decision "keep the model trained without
  the holdout" vs "refit on all the data for the best number of epochs", measured on a
  VALIDATION split of the training part (never the test part): leave-last-out of the
  leave-last-out train (sequential), a per-user random 12.5% of the 80% train (hybrid).

Test metrics: full ranking, train items excluded, NDCG@10 and HR@10
(:func:`maasrec.metrics.evaluate`). ``--max-epochs`` caps the epochs of every fit (a CPU
budget bound, reported in each row; the default models stop early well before their
caps on these sets unless a row says ``capped``). One thread per fit; rows go to
``--jsonl`` as they finish, ``report`` prints the table.

    python benchmarks/bench_defaults.py run --jsonl results/defaults.jsonl
    python benchmarks/bench_defaults.py report results/defaults.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import loadavg

JOBS = ["seq-llo-100k", "hybrid-random-100k", "neumf-random-100k", "hybrid-random-small",
        "neumf-random-small", "seq-random-100k", "refit-hybrid-100k", "refit-seq-100k",
        "seq-llo-beauty", "seqlen-random-100k"]


def _data(name: str, data_home: str | None):
    from maasrec import datasets

    if name == "beauty":
        return datasets.load_amazon_sequences("beauty", data_home=data_home, download=False)
    return datasets.load_movielens(name, data_home=data_home, download=False)


def _split(protocol: str, X, seed: int):
    from maasrec.data.split import leave_last_out, random_split

    if protocol == "llo":
        return leave_last_out(X, n_valid=0, n_test=1, assume_ordered=True)
    return random_split(X, (0.8, 0.2), per_user=True, random_state=seed)


def _model(kind: str, seed: int, max_epochs: int | None, **extra):
    from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender

    cls = {"seq": SequentialRecommender, "hybrid": HybridRecommender, "neumf": NeuMF}[kind]
    m = cls(random_state=seed, verbose=False, **extra)
    if max_epochs is not None and m.epochs > max_epochs:
        m.set_params(epochs=max_epochs)
    return m


def _log(model) -> dict:
    log = getattr(model, "training_log_", None) or getattr(model, "history_", {})
    return {"best_epoch": log.get("best_epoch"), "epochs_run": log.get("epochs_run",
            len(log.get("losses", []))), "stopped_early": log.get("stopped_early"),
            "holdout": log.get("holdout"), "epochs_cap": model.epochs}


def _eval(model, train, test, seed: int) -> dict:
    from maasrec.exceptions import ColdStartWarning
    from maasrec.metrics import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        res = evaluate(model, train, test, k=10, metrics=["ndcg", "hit"], n_bootstrap=0,
                       random_state=seed)
    return {"ndcg@10": float(res["ndcg@10"]), "hit@10": float(res["hit@10"]),
            "n_users": int(res.n_users)}


def _fit(model, train):
    t0 = time.perf_counter()
    model.fit(train)
    return time.perf_counter() - t0


def job_table(job: str, seed: int, data_home, max_epochs) -> dict:
    from maasrec.models import Popularity

    kind, protocol, name = job.split("-")
    ds_name = {"100k": "100k", "small": "latest-small", "beauty": "beauty"}[name]
    X = _data(ds_name, data_home).interactions
    train, test = _split(protocol, X, seed)
    pop = Popularity()
    pop_s = _fit(pop, train)
    model = _model(kind, seed, max_epochs)
    fit_s = _fit(model, train)
    row = {"job": job, "dataset": ds_name, "protocol": protocol, "seed": seed,
           "model": type(model).__name__, "fit_s": fit_s, **_log(model),
           "test": _eval(model, train, test, seed),
           "popularity": {**_eval(pop, train, test, seed), "fit_s": pop_s}}
    if kind != "seq":  # the previous default: all epochs on all of train (cheap here)
        off = _model(kind, seed, max_epochs, validation_fraction=None)
        off_s = _fit(off, train)
        row["no_holdout"] = {**_eval(off, train, test, seed), "fit_s": off_s,
                             "epochs_run": _log(off)["epochs_run"]}
    return row


def job_refit(job: str, seed: int, data_home, max_epochs) -> dict:
    """Keep the holdout-trained model, or refit on all of train for its best epochs."""
    kind = job.split("-")[1]
    protocol = "llo" if kind == "seq" else "random"
    X = _data("100k", data_home).interactions
    train, _test = _split(protocol, X, seed)  # the test part is never read here
    if protocol == "llo":
        from maasrec.data.split import leave_last_out

        inner, valid = leave_last_out(train, n_valid=0, n_test=1, assume_ordered=True)
    else:
        from maasrec.data.split import random_split

        inner, valid = random_split(train, (0.875, 0.125), per_user=True, random_state=seed)
    keep = _model(kind, seed, max_epochs)
    keep_s = _fit(keep, inner)
    best = _log(keep)["best_epoch"] or keep.epochs
    refit = _model(kind, seed, max_epochs, validation_fraction=None)
    t0 = time.perf_counter()
    if kind == "seq":
        refit.set_params(epochs=int(best))
        refit.fit(inner)
    else:  # the same cosine schedule as the first fit, stopped at its best epoch
        refit.fit(inner, callbacks=[lambda epoch, logs: epoch >= best])
    refit_s = time.perf_counter() - t0
    return {"job": job, "dataset": "100k", "protocol": f"{protocol} (validation split)",
            "seed": seed, "model": type(keep).__name__, **_log(keep),
            "keep": {**_eval(keep, inner, valid, seed), "fit_s": keep_s},
            "refit": {**_eval(refit, inner, valid, seed), "fit_s": refit_s,
                      "epochs_run": _log(refit)["epochs_run"]}}


def job_seq_random_valid(job: str, seed: int, data_home, max_epochs) -> dict:
    """SequentialRecommender on a per-user random split: which setting helps, chosen on a
    VALIDATION split of the 80% train part (12.5% of it per user), never the test part."""
    from maasrec.data.split import random_split
    from maasrec.models import Popularity

    X = _data("100k", data_home).interactions
    train, _test = _split("random", X, seed)
    inner, valid = random_split(train, (0.875, 0.125), per_user=True, random_state=seed)
    pop = Popularity().fit(inner)
    row = {"job": job, "dataset": "100k", "protocol": "random (validation split)",
           "seed": seed, "model": "SequentialRecommender",
           "popularity": _eval(pop, inner, valid, seed), "settings": {}}
    for label, extra in (("default", {}),
                         ("max_len=200, dropout=0.2", {"max_len": 200, "dropout": 0.2})):
        m = _model("seq", seed, max_epochs, **extra)
        fit_s = _fit(m, inner)
        row["settings"][label] = {**_eval(m, inner, valid, seed), "fit_s": fit_s, **_log(m)}
    return row


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    for job in args.jobs:
        for seed in args.seeds:
            t0 = time.time()
            fn = (job_refit if job.startswith("refit") else job_seq_random_valid
                  if job == "seqlen-random-100k" else job_table)
            row = fn(job, seed, args.data_home, args.max_epochs)
            row.update(wall_s=time.time() - t0, loadavg=loadavg(), threads=args.threads,
                       max_epochs=args.max_epochs)
            print(json.dumps(row), flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    rows = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    print("| data set | protocol | model | NDCG@10 | HR@10 | Popularity NDCG@10 | HR@10 "
          "| fit s | epochs run (best) | holdout rows |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "test" not in r:
            continue
        hold = r["holdout"] or {}
        first = hold.get("first_fit")
        if first:  # Hybrid/NeuMF: the held-out fit, then the refit for its best epochs
            run = len(first["losses"])
            epochs = f"{run} ({hold['best_epoch']}) + refit {r['epochs_run']}"
        else:
            run = r["epochs_run"]
            epochs = f"{run} ({r['best_epoch']})"
        capped = (" (budget cap)" if r.get("max_epochs") and run >= r["max_epochs"]
                  else " (all)" if run >= r["epochs_cap"] else "")
        print(f"| {r['dataset']} | {r['protocol']} | {r['model']} | {r['test']['ndcg@10']:.4f} "
              f"| {r['test']['hit@10']:.4f} | {r['popularity']['ndcg@10']:.4f} "
              f"| {r['popularity']['hit@10']:.4f} | {r['fit_s']:.0f} "
              f"| {epochs}{capped} | {hold.get('rows')} |")
    for r in rows:
        if "no_holdout" in r:
            o = r["no_holdout"]
            print(f"{r['model']} {r['dataset']} without the holdout (validation_fraction=None, "
                  f"all {o['epochs_run']} epochs): NDCG@10 {o['ndcg@10']:.4f} HR@10 "
                  f"{o['hit@10']:.4f} ({o['fit_s']:.0f} s)")
    for r in rows:
        for label, v in r.get("settings", {}).items():
            print(f"{r['model']} {r['protocol']}, {label}: NDCG@10 {v['ndcg@10']:.4f} HR@10 "
                  f"{v['hit@10']:.4f} (Popularity {r['popularity']['ndcg@10']:.4f}; "
                  f"{v['epochs_run']} epochs, best {v['best_epoch']})")
        if "not_run" in r:
            print(f"{r['job']}: not run ({r['not_run']})")
    for r in rows:
        if "keep" in r:
            print(f"refit check {r['model']} {r['protocol']}: keep {r['keep']['ndcg@10']:.4f} "
                  f"({r['keep']['fit_s']:.0f} s, best epoch {r['best_epoch']}) vs refit "
                  f"{r['refit']['ndcg@10']:.4f} (+{r['refit']['fit_s']:.0f} s)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--jobs", nargs="+", default=JOBS, choices=JOBS)
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--max-epochs", type=int, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--data-home", default=os.environ.get("MAASREC_DATA"))
    r.add_argument("--jsonl", default=None)
    r.set_defaults(fn=cmd_run)
    q = sub.add_parser("report")
    q.add_argument("jsonl")
    q.set_defaults(fn=cmd_report)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
