"""Diagnostic for issue 10: does the cross-encoder learn with a mean-pooling head and more data?

The main LMRanker benchmark (``bench_lmranker.py``) trained on 600 groups: every listwise loss
stayed at ln 5 (the LM learned next to nothing). all-MiniLM-L6-v2 was trained with mean
pooling, so its ``[CLS]`` state (what the default sequence-classification head reads) is not
its sentence vector. This script fine-tunes LMRanker with ``head="mean"`` (a linear head on the
mean of the token states), LoRA, the listwise loss, more training groups
(``positives_per_user`` last items of every user, no subsampling) and easier negatives
(``random_negatives`` of 4 uniform), and reports on the same validation users as
``bench_lmranker.py`` (MovieLens 100K leave-last-out, 200 seeded users, EASE l2=100 first
stage): the loss curve (mean step loss per tenth of the epoch) and validation NDCG@10 for
every blend weight alpha. Validation only: a run is tested only through ``bench_lmranker.py``.

The model is passed as an in-memory ``(AutoModel, tokenizer)`` pair of the packaged
all-MiniLM-L6-v2 weights (``maasrec[text]``).

Usage::

    MAASREC_DATA=/path/to/data python benchmarks/bench_lmranker_heads.py --positives-per-user 3

Writes (merges by label into) ``benchmarks/results/lmranker_heads.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head", default="mean")
    p.add_argument("--positives-per-user", type=int, default=3)
    p.add_argument("--random-negatives", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "lmranker_heads.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModel, AutoTokenizer

    from benchmarks import bench_lmranker as B
    from maasrec.data.datasets import load_movielens
    from maasrec.data.split import leave_last_out
    from maasrec.encoders.hub import resolve_model

    src = resolve_model(B.MODEL)
    pair = (AutoModel.from_pretrained(src.path), AutoTokenizer.from_pretrained(src.path))
    ds = load_movielens("100k", download=False)
    X = B.implicit(ds.interactions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, valid, _ = leave_last_out(X, 1, 1)
    # the settings of bench_lmranker.py's validation runs, but every user's last
    # positives_per_user training items (no max_positives subsample)
    bargs = argparse.Namespace(history_len=3, max_length=96, max_item_tokens=20, batch_size=30,
                               max_positives=None, seed=0)
    vusers = B.subset_users(valid, 200, 0)
    label = (f"lora-listwise-{args.head}-ppu{args.positives_per_user}"
             f"-rneg{args.random_negatives}" + (f"-lr{args.learning_rate:g}"
                                                 if args.learning_rate else ""))
    extra = dict(loss="listwise", peft="lora", head=args.head,
                 positives_per_user=args.positives_per_user,
                 random_negatives=args.random_negatives)
    if args.learning_rate:
        extra["learning_rate"] = args.learning_rate
    B.MODEL = pair
    r, model = B.validation_run(bargs, ds, train, valid, vusers, 100.0, label, **extra)
    steps = np.asarray(model.training_log_["step_loss"])
    r["training_groups"] = int(len(steps) * max(1, 30 // 5))
    r["step_loss_by_tenth"] = [round(float(c.mean()), 4) for c in np.array_split(steps, 10)]
    r["ln5"] = round(float(np.log(5)), 4)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.is_file() else {
        "benchmark": "lmranker heads (validation diagnostic)",
        "protocol": "MovieLens 100K leave-last-out; LM fine-tuned on train (LoRA r8, listwise, "
                    "1 epoch, history_len 3, max_length 96); validation NDCG@10 of 200 seeded "
                    "users over EASE(l2=100)'s top 50 (same users as bench_lmranker.py)",
        "runs": []}
    res["runs"] = [x for x in res["runs"] if x["label"] != label] + [r]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, default=str))
    os.replace(tmp, out)
    print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
