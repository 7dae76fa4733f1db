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
every blend weight alpha. ``--test ALPHA`` then runs the test protocol of
``bench_lmranker.py`` on the same fitted LM: first stage and histories renewed on train +
validation (``LMRanker.refresh``), all test users, the test item ranked among EASE's top
50 re-ranked with blend weight ALPHA (chosen on validation), per-user NDCG@10 against EASE
alone, paired tests and a bootstrap interval of the ratio. The fitted model is saved under
``benchmarks/_work/lmranker/heads/<label>``.

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
    p.add_argument("--test", type=float, default=None, metavar="ALPHA",
                   help="also evaluate on test with this blend weight (chosen on validation)")
    p.add_argument("--out", default=str(HERE / "results" / "lmranker_heads.json"))
    p.add_argument("--click-only", action="store_true",
                   help="only the click-prediction section, on the saved model of the run")
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
    out = Path(args.out)
    if args.click_only:
        from maasrec import load

        res = json.loads(out.read_text())
        r = next(x for x in res["runs"] if x["label"] == label)
        model = load(HERE / "_work" / "lmranker" / "heads" / label)
        r["click_prediction"] = click_run(B, model, X, valid, vusers,
                                          r.get("test", {}).get("alpha", 0.0))
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1, default=str))
        os.replace(tmp, out)
        print(json.dumps(r["click_prediction"], default=str))
        return 0
    B.MODEL = pair
    r, model = B.validation_run(bargs, ds, train, valid, vusers, 100.0, label, **extra)
    steps = np.asarray(model.training_log_["step_loss"])
    r["training_groups"] = int(len(steps) * max(1, 30 // 5))
    r["step_loss_by_tenth"] = [round(float(c.mean()), 4) for c in np.array_split(steps, 10)]
    r["ln5"] = round(float(np.log(5)), 4)
    model.save(HERE / "_work" / "lmranker" / "heads" / label, overwrite=True)
    if args.test is not None:
        r["test"] = test_run(B, model, X, args.test)
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


def _refreshed_for_test(model, X, alpha: float):
    """(train + validation, test) of the leave-last-out split; ``model`` blended with
    ``alpha`` and its first stage and histories refreshed on train + validation."""
    from maasrec.data.split import leave_last_out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_full, test = leave_last_out(X, 0, 1)
    model.set_params(alpha=alpha)
    model.refresh(train_full)
    return train_full, test


def click_run(B, model, X, valid, vusers, alpha: float, n_users: int = 150) -> dict:
    """bench_lmranker.py's click-prediction section for a saved (train-fitted) model.

    Per user: the held-out item, one hard negative (first stage's top 50), one random
    unseen item; the F1-best threshold is chosen on validation pairs (train histories),
    then the model is refreshed on train + validation and scored on test pairs.
    """
    from maasrec.metrics import classification_report, roc_auc
    from maasrec.metrics import f1 as f1_score
    from maasrec.models import EASE

    model.set_params(verbose=False)
    Uv, Iv_, Yv = B.click_pairs(model, valid, vusers[:n_users], np.random.default_rng(2))
    pv = model.predict_proba(model.user_vocab_.ids[Uv], model.item_vocab_.ids[Iv_])
    grid = np.unique(np.quantile(pv, np.linspace(0.02, 0.98, 49)))
    threshold = float(max(grid, key=lambda t: f1_score(Yv, pv, threshold=float(t))))
    train_full, test = _refreshed_for_test(model, X, alpha)
    users = np.unique(test.user_indices)
    tusers = users[np.random.default_rng(1).permutation(len(users))][:n_users]
    U, Iv, Y = B.click_pairs(model, test, tusers, np.random.default_rng(0))
    proba = model.predict_proba(model.user_vocab_.ids[U], model.item_vocab_.ids[Iv])
    ease = EASE(l2=100.0).fit(train_full)
    ease_auc = roc_auc(Y, ease.score(ease.user_vocab_.ids[U], ease.item_vocab_.ids[Iv]))
    return {"pairs": len(Y), "positives": int(Y.sum()),
            "lmranker": classification_report(Y, proba).to_dict(),
            "lmranker_validation_threshold": classification_report(
                Y, proba, threshold=threshold).to_dict(),
            "threshold": threshold, "ease_roc_auc": round(float(ease_auc), 4),
            "note": "as bench_lmranker.py: per test user the test item, one hard negative "
                    "(EASE top 50), one random unseen item; listwise logits are not "
                    "calibrated probabilities"}


def test_run(B, model, X, alpha: float) -> dict:
    """bench_lmranker.py's test protocol for a fitted LM (all test users)."""
    import time

    from scipy import stats

    _, test = _refreshed_for_test(model, X, alpha)
    users = np.unique(test.user_indices)
    tmap = dict(zip(test.user_indices.tolist(), test.item_indices.tolist()))
    target = np.array([tmap[u] for u in users])
    t0 = time.perf_counter()
    cand, first, second, rel = B.cached_scores(model, users, target)
    spent = time.perf_counter() - t0
    lm = B.per_user_metrics(cand, first, second, target, alpha, rel)["ndcg"]
    lm0 = B.per_user_metrics(cand, first, second, target, 0.0, rel)["ndcg"]
    ease = B.per_user_metrics(cand, first, second, target, 1.0, rel)["ndcg"]
    d = lm - ease
    rng = np.random.default_rng(7)
    idx = rng.integers(len(d), size=(2000, len(d)))
    ratios = lm[idx].mean(axis=1) / ease[idx].mean(axis=1)
    nz = d[d != 0]
    return {"users": len(users), "users_with_test_item_in_top50": len(rel),
            "alpha": alpha, "lmranker_ndcg@10": round(float(lm.mean()), 5),
            "lm_alone_ndcg@10": round(float(lm0.mean()), 5),
            "ease_ndcg@10": round(float(ease.mean()), 5),
            "ratio": round(float(lm.mean() / ease.mean()), 4),
            "ratio_bootstrap_ci95": [round(float(x), 4) for x in np.percentile(ratios, [2.5, 97.5])],
            "t_pvalue": float(stats.ttest_rel(lm, ease).pvalue),
            "wilcoxon_pvalue": float(stats.wilcoxon(nz).pvalue) if len(nz) else 1.0,
            "users_better": int((d > 0).sum()), "users_worse": int((d < 0).sum()),
            "score_seconds": round(spent, 1)}


if __name__ == "__main__":
    sys.exit(main())
