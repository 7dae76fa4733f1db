"""The ``maasrec compress`` command: quantize a saved model, export to ONNX.

``maasrec compress tables MODEL_DIR OUT_DIR --tables int8`` writes the quantized model
(:func:`maasrec.compress.quantize`); ``maasrec compress int8 MODEL_DIR OUT_DIR`` the
model with an int8 network (:func:`maasrec.compress.quantize_network`);
``maasrec compress onnx MODEL OUT.onnx`` exports a text encoder, and ``maasrec compress
onnx MODEL_DIR OUT_DIR`` a saved LMRanker or SequentialRecommender
(:func:`maasrec.compress.export_onnx`); ``maasrec compress prune MODEL_DIR OUT_DIR
--data TRAIN`` and ``maasrec compress distill TEACHER_DIR OUT_DIR --data TRAIN`` prune
and fine-tune, or distill a student (:mod:`maasrec.compress._cli_train`). Each prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from ..exceptions import MaasrecError
from ._cli_train import add_train_parsers

__all__ = ["add_compress_parser", "cli_main", "cmd_compress"]


def add_compress_parser(sub) -> argparse.ArgumentParser:
    """Add the ``compress`` command to the sub-parsers of the ``maasrec`` parser.

    Parameters
    ----------
    sub : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The ``compress`` parser (its action is :func:`cmd_compress`).
    """
    c = sub.add_parser("compress", help="quantize, prune or distill a saved model, or export "
                                        "it or a text encoder to ONNX (see "
                                        "docs/compression.rst)")
    how = c.add_subparsers(dest="compress_command", required=True)
    t = how.add_parser("tables", help="int8 / float16 / bfloat16 storage of a saved model's "
                                      "factor or item-vector tables")
    t.add_argument("model_dir", help="a saved ALS, BPRMF, PureSVD, EASE or HybridRecommender")
    t.add_argument("out_dir", help="where the quantized model is saved")
    t.add_argument("--tables", default="int8", choices=["int8", "float16", "bfloat16"])
    t.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    n = how.add_parser("int8", help="int8 Linear layers for the network of a saved LMRanker "
                                    "or SequentialRecommender")
    n.add_argument("model_dir", help="a saved LMRanker or SequentialRecommender")
    n.add_argument("out_dir", help="where the quantized model is saved")
    n.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    o = how.add_parser("onnx", help="export a BERT-style text encoder, or the network of a "
                                    "saved LMRanker or SequentialRecommender, to ONNX "
                                    "(extra: onnx)")
    o.add_argument("model", help="model name or folder, e.g. "
                                 "sentence-transformers/all-MiniLM-L6-v2, or a saved model "
                                 "directory (LMRanker, SequentialRecommender)")
    o.add_argument("out", help="the .onnx file (its sidecar goes to OUT.json); for a saved "
                               "model, the directory of the ONNX Runtime model")
    o.add_argument("--pooling", default="auto", choices=["auto", "mean", "cls"])
    o.add_argument("--max-length", type=int, default=128)
    o.add_argument("--no-normalize", action="store_true", help="keep unnormalised vectors")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    o.add_argument("--overwrite", action="store_true", help="replace OUT")
    add_train_parsers(how)
    c.set_defaults(func=cmd_compress)
    return c


def cmd_compress(args: argparse.Namespace) -> int:
    """Run ``maasrec compress tables|int8|onnx|prune|distill`` and print one JSON line.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0
    """
    if args.compress_command in ("prune", "distill"):
        from . import _cli_train

        run = _cli_train.cmd_prune if args.compress_command == "prune" else _cli_train.cmd_distill
        print(_cli_train.dumps(run(args)))
        return 0
    if args.compress_command == "tables":
        from ..base import Recommender
        from .tables import quantize

        q = quantize(Recommender.load(args.model_dir), args.tables)
        path = q.save(args.out_dir, overwrite=args.overwrite)
        print(json.dumps({"path": path, "tables": args.tables,
                          "model": type(q.model_).__name__, **{
                              f"{k}_bytes": v for k, v in q.table_bytes_.items()}}))
        return 0
    if args.compress_command == "int8":
        from ..base import Recommender
        from .networks import quantize_network

        q = quantize_network(Recommender.load(args.model_dir))
        path = q.save(args.out_dir, overwrite=args.overwrite)
        print(json.dumps({"path": path, "model": type(q.model_).__name__,
                          "layers": len(q.int8_layers_), **{
                              f"{k}_bytes": v for k, v in q.network_bytes_.items()}}))
        return 0
    from ..encoders.text import TextEncoder
    from .onnx import export_onnx, sidecar_path

    if os.path.isfile(os.path.join(args.model, "maasrec.json")):
        from ..base import Recommender

        out = export_onnx(Recommender.load(args.model), opset=args.opset)
        path = out.save(args.out, overwrite=args.overwrite)
        print(json.dumps({"path": path, "model": out.onnx_meta_["kind"],
                          "onnx_bytes": out.onnx_bytes_, "sha256": out.onnx_meta_["sha256"]}))
        return 0

    enc = TextEncoder(args.model, pooling=args.pooling, max_length=args.max_length,
                      normalize=not args.no_normalize, cache_dir=False)
    out = export_onnx(enc, args.out, overwrite=args.overwrite, opset=args.opset)
    meta = json.loads(sidecar_path(out.path).read_text(encoding="utf-8"))
    print(json.dumps({"path": str(out.path), "sidecar": str(sidecar_path(out.path)),
                      "model": meta["model"], "sha256": meta["sha256"]}))
    return 0


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``maasrec compress ...`` on its own (``argv`` without the leading ``compress``).

    Parameters
    ----------
    argv : sequence of str, optional

    Returns
    -------
    int
        0 on success, 2 on a maasrec error (message on stderr).
    """
    p = argparse.ArgumentParser(prog="maasrec")
    add_compress_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["compress", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING)
    try:
        return args.func(args)
    except (MaasrecError, FileExistsError) as exc:
        print(f"maasrec: error: {exc}", file=sys.stderr)
        return 2
