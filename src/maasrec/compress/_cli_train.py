"""``maasrec compress prune`` and ``maasrec compress distill``: the commands that train.

Both read a saved model and the interactions it was fitted on (with the column options of
``maasrec fit``), run :func:`maasrec.compress.prune` or :func:`maasrec.compress.distill`
and save the result; each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_train_parsers", "cmd_distill", "cmd_prune"]


def _data_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    from .._cli_data import add_column_options

    p.add_argument("--data", required=required, metavar="FILE",
                   help="the interactions the model was fitted on (rows of users or items "
                        "the model does not know are left out)")
    p.add_argument("--validation", default=None, metavar="FILE",
                   help="held-out next items: early stopping (SequentialRecommender)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    add_column_options(p)


def add_train_parsers(how) -> None:
    """Add ``prune`` and ``distill`` to the sub-parsers of ``maasrec compress``."""
    p = how.add_parser("prune", help="prune a saved SequentialRecommender or LMRanker "
                                     "(structured heads/FFN units, or magnitude) and "
                                     "fine-tune it")
    p.add_argument("model_dir", help="a saved SequentialRecommender or LMRanker")
    p.add_argument("out_dir", help="where the pruned model is saved")
    p.add_argument("--method", default="structured", choices=["structured", "magnitude"])
    p.add_argument("--amount", type=float, default=0.5,
                   help="share removed (default 0.5): of the heads and FFN units of every "
                        "block, or of the Linear weights")
    p.add_argument("--heads", type=float, default=None, help="structured: share of heads")
    p.add_argument("--ffn", type=float, default=None, help="structured: share of FFN units")
    p.add_argument("--scope", default="layer", choices=["layer", "global"],
                   help="magnitude: per layer or across all layers")
    p.add_argument("--epochs", type=int, default=3,
                   help="fine-tune epochs (default 3; 0: none, and no --data needed)")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--patience", type=int, default=2)
    _data_options(p, required=False)
    d = how.add_parser("distill", help="train a SequentialRecommender student on a saved "
                                       "teacher's scores and the ground truth")
    d.add_argument("teacher_dir", help="a saved fitted recommender (the teacher)")
    d.add_argument("out_dir", help="where the student is saved")
    d.add_argument("--param", action="append", default=None, metavar="KEY=VALUE",
                   help="a SequentialRecommender parameter of the student (repeatable), "
                        "e.g. --param dim=32 --param n_layers=1")
    d.add_argument("--mode", default="auto", choices=["auto", "positions", "lists"])
    d.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher term")
    d.add_argument("--temperature", type=float, default=1.0)
    d.add_argument("--candidates", type=int, default=None,
                   help="mode lists: length of the teacher's lists")
    _data_options(d, required=True)


def _read(args: argparse.Namespace, model, path: str | None):
    from .._cli_data import read_interactions

    if path is None:
        return None
    return read_interactions(path, args, user_vocab=model.user_vocab_,
                             item_vocab=model.item_vocab_, unknown="ignore").interactions


def _load(path: str):
    from ..base import Recommender

    return Recommender.load(path)


def cmd_prune(args: argparse.Namespace) -> dict[str, Any]:
    """``maasrec compress prune``: the JSON line's content."""
    from ..exceptions import DataError
    from .pruning import prune

    model = _load(args.model_dir)
    if args.epochs and not args.data:
        raise DataError("--epochs > 0 fine-tunes the pruned model on --data FILE (the "
                        "interactions it was fitted on); pass it, or --epochs 0")
    X = _read(args, model, args.data)
    out = prune(model, X, method=args.method, amount=args.amount, heads=args.heads,
                ffn=args.ffn, scope=args.scope, epochs=args.epochs,
                learning_rate=args.learning_rate, patience=args.patience,
                validation=_read(args, model, args.validation), random_state=args.seed)
    path = out.save(args.out_dir, overwrite=args.overwrite)
    c = out.compression_
    return {"path": path, "model": type(out).__name__, "method": c["prune"],
            "amount": c["amount"], "parameters_before": c["parameters_before"],
            "parameters_after": c["parameters_after"], "sparsity": c["sparsity"]}


def cmd_distill(args: argparse.Namespace) -> dict[str, Any]:
    """``maasrec compress distill``: the JSON line's content."""
    from .._cli_data import parse_params
    from ..neural import SequentialRecommender
    from .distillation import distill

    teacher = _load(args.teacher_dir)
    params = {"random_state": args.seed, **parse_params(SequentialRecommender, args.param)}
    student = distill(teacher, SequentialRecommender(**params), _read(args, teacher, args.data),
                      validation=_read(args, teacher, args.validation), mode=args.mode,
                      alpha=args.alpha, temperature=args.temperature,
                      n_candidates=args.candidates)
    path = student.save(args.out_dir, overwrite=args.overwrite)
    log = getattr(student, "training_log_", {}) or {}
    return {"path": path, "teacher": type(teacher).__name__,
            "mode": student.compression_.get("mode"), "student": params,
            "best_epoch": log.get("best_epoch"), "epochs": len(log.get("losses") or []),
            "best_metric": log.get("best_metric")}


def dumps(result: dict[str, Any]) -> str:
    """The JSON line (numpy numbers as floats)."""
    return json.dumps(result, default=float)
