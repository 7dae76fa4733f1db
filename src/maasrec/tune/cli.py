"""The ``maasrec tune`` command: :func:`maasrec.tune.tune` from the shell.

``maasrec tune --train train.csv --valid valid.csv --budget 10min`` tunes on two CSV/TSV
files (``user,item[,rating][,timestamp]`` with a header); ``maasrec tune --dataset 100k``
splits a MovieLens set per user 8:1:1 (seeded), tunes on train/valid and also reports
the test metric of the chosen model. A progress bar runs on stderr unless
``--no-progress``; one JSON line (best model, parameters, values, leaderboard) goes to
stdout. Several shells given the same ``--storage`` and ``--study-name`` share a study.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from ..exceptions import MaasrecError

__all__ = ["add_tune_parser", "cli_main", "cmd_tune"]

#: Data sets ``--dataset`` loads (maasrec.datasets.load_movielens names).
DATASETS = ("latest-small", "100k", "1m")


def add_tune_parser(sub) -> argparse.ArgumentParser:
    """Add the ``tune`` command to the sub-parsers of the ``maasrec`` parser.

    Parameters
    ----------
    sub : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The ``tune`` parser (its action is :func:`cmd_tune`).
    """
    t = sub.add_parser("tune", help="choose a model and its parameters on validation data "
                                     "(Optuna; extra: maasrec[tune])",
                       description="Tune on --train/--valid files, or on a per-user 8:1:1 "
                                   "split of --dataset (then the test metric is reported "
                                   "too). Prints one JSON line.")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", help="CSV/TSV of training interactions (with --valid)")
    src.add_argument("--dataset", choices=DATASETS, help="MovieLens set, split 8:1:1 per user")
    t.add_argument("--valid", help="CSV/TSV of validation interactions")
    t.add_argument("--data-home", default=None, help="folder holding ml-100k/, ml-1m/")
    t.add_argument("--models", default="auto",
                   help="'auto' or comma-separated names, e.g. EASE,ALS,MultVAE")
    t.add_argument("--metric", default="ndcg@10", help="e.g. ndcg@10, recall@20, hit@10")
    t.add_argument("--budget", default=None,
                   help="wall time, e.g. 90s, 10min, 1h (default 10min without --n-trials)")
    t.add_argument("--n-trials", type=int, default=None, help="trials this process runs")
    t.add_argument("--storage", default=None,
                   help="database URL or SQLite file path shared by several workers")
    t.add_argument("--study-name", default=None, help="study to create or join in --storage")
    t.add_argument("--seed", type=int, default=0, help="seed of the sampler, models, split")
    t.add_argument("--refit", action="store_true", help="refit the best on train + valid")
    t.add_argument("--strategy", default="auto", choices=["auto", "spread", "joint"],
                   help="share trials family by family (spread) or one TPE over all (joint); "
                        "auto: spread for several models without --storage")
    t.add_argument("--output", default=None, help="save the best model to this directory")
    t.add_argument("--overwrite", action="store_true", help="replace --output")
    t.add_argument("--leaderboard", default=None, metavar="CSV",
                   help="write the leaderboard to this CSV file")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(func=cmd_tune)
    return t


def _frame(path: str):
    import pandas as pd

    sep = "\t" if path.endswith((".tsv", ".tab")) else ","
    try:
        return pd.read_csv(path, sep=sep)
    except (OSError, ValueError) as exc:
        raise MaasrecError(f"cannot read interactions from {path!r}: {exc}") from exc


def _inputs(args: argparse.Namespace):
    """(train, valid, test or None)."""
    if args.train is not None:
        if args.valid is None:
            raise MaasrecError("--train needs --valid (the interactions to tune on)")
        return _frame(args.train), _frame(args.valid), None
    if args.valid is not None:
        raise MaasrecError("--valid goes with --train; --dataset makes its own split")
    from ..data.datasets import load_movielens
    from ..data.split import random_split

    ds = load_movielens(args.dataset, data_home=args.data_home)
    train, valid, test = random_split(ds.interactions, (0.8, 0.1, 0.1),
                                      random_state=args.seed)
    return train, valid, test


def cmd_tune(args: argparse.Namespace) -> int:
    """Run ``maasrec tune`` and print one JSON line.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0
    """
    from .search import tune

    train, valid, test = _inputs(args)
    models = "auto" if args.models.strip() == "auto" else [
        m.strip() for m in args.models.split(",") if m.strip()]
    res = tune(train, valid, models=models, metric=args.metric, budget=args.budget,
               n_trials=args.n_trials, storage=args.storage, study_name=args.study_name,
               random_state=args.seed, refit=args.refit, strategy=args.strategy,
               verbose=not args.no_progress)
    out = res.to_dict()
    out["leaderboard"] = out["leaderboard"][:10]
    if test is not None:
        from ..metrics.evaluation import evaluate
        from .search import _union

        # train and valid items are excluded from the test ranking either way
        seen = _union(train, valid) if args.refit else train
        ev = evaluate(res.best_model, seen, test, metrics=[res.metric], n_bootstrap=0,
                      exclude=None if args.refit else valid)
        out["test_" + res.metric] = float(ev[res.metric])
    if args.leaderboard:
        res.leaderboard.to_csv(args.leaderboard, index=False)
    if args.output:
        out["saved"] = str(res.best_model.save(args.output, overwrite=args.overwrite))
    print(json.dumps(out))
    return 0


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``maasrec tune ...`` on its own (``argv`` without the leading ``tune``).

    Parameters
    ----------
    argv : sequence of str, optional

    Returns
    -------
    int
        0 on success, 2 on a maasrec error (message on stderr).
    """
    p = argparse.ArgumentParser(prog="maasrec")
    add_tune_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["tune", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING)
    try:
        return args.func(args)
    except (MaasrecError, FileExistsError) as exc:
        print(f"maasrec: error: {exc}", file=sys.stderr)
        return 2
