#!/usr/bin/env python
"""Benchmark adapter for Cornac (tested with 3.0.1).

Models: bpr     -> cornac.models.BPR      (Cython, OpenMP num_threads)
        neumf   -> cornac.models.NeuMF    (backend "pytorch" by default here; "tensorflow" works too)
        bivaecf -> cornac.models.BiVAECF  (PyTorch; use_gpu=False forced)
        ctr     -> cornac.models.CTR      (text-aware, pure numpy; needs --item-text)
        cdl     -> cornac.models.CDL      (text-aware, TensorFlow 2 compat.v1; needs --item-text)
        convmf  -> cornac.models.ConvMF   (text-aware, TensorFlow 2 compat.v1; needs --item-text)
Params JSON goes verbatim to the model constructor (e.g. BPR '{"k":64,"max_iter":200,
"learning_rate":0.01,"lambda_reg":0.01}'); seed from --seed unless given.

--item-text: CSV with columns item,text (raw item ids); used to build a
cornac.data.TextModality(max_vocab=8000 unless --max-vocab, max_doc_freq=0.5)
aligned to the train item map, attached with train_set.add_modalities(item_text=...).

Data: cornac.data.Dataset.from_uir(train rows with rating 1.0) -- binary
positives.  Scoring: model.score(user_idx) for all train items (exactly what
Recommender.rank()/cornac's ranking_eval do), train items set to -inf, top-k.

``--exclude`` items are set to -inf with the train items before the top-k.

Example:
  /tmp/maasrec-peers/cornac/bin/python run_cornac.py --train train.csv --test test.csv --model bpr \
      --params '{"k":64,"max_iter":100}' --threads 2 --out recs.csv
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc

THREADS = pc.early_threads()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import cornac  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from cornac.data import Dataset, TextModality  # noqa: E402
from cornac.metrics import NDCG, Recall  # noqa: E402

MODELS = ["bpr", "neumf", "bivaecf", "ctr", "cdl", "convmf"]
TEXT_MODELS = {"ctr", "cdl", "convmf"}
EPOCH_KEYS = {"bpr": "max_iter", "neumf": "num_epochs", "bivaecf": "n_epochs",
              "ctr": "max_iter", "cdl": "max_iter", "convmf": "n_epochs"}
EPOCH_DEFAULTS = {"bpr": 100, "neumf": 20, "bivaecf": 100, "ctr": 100, "cdl": 100,
                  "convmf": 50}


def set_framework_threads(model_name, params):
    info = {}
    if model_name in ("neumf", "bivaecf") or params.get("backend") == "pytorch":
        import torch

        torch.set_num_threads(THREADS)
        info["torch"] = torch.__version__
    if model_name in ("cdl", "convmf") or params.get("backend") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
        info["tensorflow"] = tf.__version__
    return info


def make_model(name, params, seed):
    p = dict(params)
    p.setdefault("seed", seed)
    if name == "bpr":
        p.setdefault("num_threads", THREADS)
        return cornac.models.BPR(**p), p
    if name == "neumf":
        p.setdefault("backend", "pytorch")
        p.setdefault("verbose", False)
        return cornac.models.NeuMF(**p), p
    if name == "bivaecf":
        p["use_gpu"] = False
        return cornac.models.BiVAECF(**p), p
    if name == "ctr":
        p.setdefault("verbose", False)
        return cornac.models.CTR(**p), p
    if name == "cdl":
        p.setdefault("verbose", False)
        return cornac.models.CDL(**p), p
    if name == "convmf":
        return cornac.models.ConvMF(**p), p
    raise ValueError(name)


def cornac_own_metrics(rec_items, users, test_df, k, train_items=None):
    """cornac.metrics.NDCG(k).compute / Recall(k).compute per user, averaged over
    users with >= 1 test item.  gt_pos = all the user's test items (raw ids).
    Cornac's own ranking_eval (exclude_unknowns=True) would instead drop test
    items unknown to train; that variant is reported as *_known_items."""
    ndcg, rec = NDCG(k=k), Recall(k=k)
    truth = test_df.groupby("user")["item"].apply(lambda s: np.asarray(s.to_numpy())).to_dict()
    known = None if train_items is None else set(train_items.tolist())
    res = {"nd": [], "rc": [], "nd_k": [], "rc_k": []}
    for u, row in zip(users, rec_items):
        gt = truth.get(int(u))
        if gt is None or len(gt) == 0:
            continue
        pd_rank = np.asarray([x for x in row if x >= 0])
        res["nd"].append(ndcg.compute(gt_pos=gt, pd_rank=pd_rank))
        res["rc"].append(rec.compute(gt_pos=gt, pd_rank=pd_rank))
        if known is not None:
            gk = np.asarray([x for x in gt if x in known])
            if len(gk):
                res["nd_k"].append(ndcg.compute(gt_pos=gk, pd_rank=pd_rank))
                res["rc_k"].append(rec.compute(gt_pos=gk, pd_rank=pd_rank))
    out = {
        f"ndcg@{k}": float(np.mean(res["nd"])),
        f"recall@{k}": float(np.mean(res["rc"])),
        "n_users_evaluated": len(res["nd"]),
        "note": "cornac.metrics.NDCG/Recall .compute(gt_pos, pd_rank); recall = hits/|T|",
    }
    if known is not None:
        out[f"ndcg@{k}_known_items"] = float(np.mean(res["nd_k"]))
        out[f"recall@{k}_known_items"] = float(np.mean(res["rc_k"]))
    return out


def main():
    ap = pc.base_parser(__doc__.splitlines()[1], MODELS)
    ap.add_argument("--item-text", default=None, help="CSV item,text for text-aware models")
    ap.add_argument("--max-vocab", type=int, default=8000)
    ap.add_argument("--rec-threads", type=int, default=1,
                    help="BLAS+OpenMP threads during the per-user scoring loop (default 1: "
                         "cornac's BPR.score uses an OpenMP prange over items (fast_dot) and "
                         "a parallel region per single user is slower, and pathological "
                         "on a loaded machine)")
    args = ap.parse_args()
    params = pc.parse_params(args.params)
    meta_path = args.meta or args.out + ".json"

    train, users, test_df = pc.read_inputs(args.train, args.test)
    fw = set_framework_threads(args.model, params if args.model != "neumf"
                               else {**params, "backend": params.get("backend", "pytorch")})

    t_ds = time.perf_counter()
    uir = list(zip(train.user.tolist(), train.item.tolist(), [1.0] * len(train)))
    train_set = Dataset.from_uir(uir, seed=args.seed)
    text_info = None
    if args.model in TEXT_MODELS:
        if not args.item_text:
            raise SystemExit(f"--item-text is required for {args.model}")
        txt = pd.read_csv(args.item_text)
        txt["item"] = txt["item"].astype(np.int64)
        txt = txt.drop_duplicates("item").set_index("item")["text"].fillna("").astype(str)
        ids = list(train_set.iid_map.keys())
        corpus = [txt.get(i, "") for i in ids]
        tm = TextModality(corpus=corpus, ids=ids, max_vocab=args.max_vocab, max_doc_freq=0.5)
        tm.build(id_map=train_set.iid_map)
        train_set.add_modalities(item_text=tm)
        if args.model == "cdl":
            # CDL's SDAE input width must equal the bag-of-words width
            # (vocab.size counts 4 special tokens that batch_bow() leaves out)
            params.setdefault("vocab_size", int(tm.batch_bow(np.arange(1)).shape[1]))
            params.setdefault("autoencoder_structure", [200])
        text_info = {"vocab_size": int(tm.vocab.size),
                     "items_without_text": int(sum(1 for i in ids if i not in txt.index))}
    ds_s = time.perf_counter() - t_ds

    eff = {}

    def build_and_fit():
        m, e = make_model(args.model, params, args.seed)
        eff.update(e)
        m.fit(train_set)
        return m

    with pc.PhasePeak() as fit_mem:
        model, fit_times = pc.fit_repeated(build_and_fit, args.fit_repeats, args.repeat_budget_s)
    fit_s = min(fit_times)

    # cornac item index -> raw id
    item_raw = np.empty(train_set.num_items, dtype=np.int64)
    for raw, idx in train_set.iid_map.items():
        item_raw[idx] = raw
    csr = train_set.matrix.tocsr()  # users x items, train interactions

    warm_mask = np.array([int(u) in train_set.uid_map for u in users], dtype=bool)
    wusers = users[warm_mask]
    ex = pc.read_exclude(args.exclude)
    ex = ex[ex.user.isin(wusers) & ex.item.isin(item_raw)]
    iid_map = train_set.iid_map
    ex_idx = {u: np.asarray([iid_map[int(i)] for i in items], dtype=np.int64)
              for u, items in pc.exclude_lists(ex).items()}
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits
        blas_ctx = threadpool_limits(args.rec_threads)  # blas + openmp
    except ImportError:  # pragma: no cover
        blas_ctx = nullcontext()
    blas_ctx.__enter__()
    rec_mem = pc.PhasePeak().__enter__()
    t0 = time.perf_counter()
    out_items = np.full((len(wusers), args.k), -1, dtype=np.int64)
    out_scores = np.full((len(wusers), args.k), -np.inf)
    for r, u in enumerate(wusers):
        uidx = train_set.uid_map[int(u)]
        s = np.asarray(model.score(uidx), dtype=np.float64).ravel()[: train_set.num_items].copy()
        s[csr.indices[csr.indptr[uidx]:csr.indptr[uidx + 1]]] = -np.inf
        if int(u) in ex_idx:
            s[ex_idx[int(u)]] = -np.inf
        idx, val = pc.topk_from_scores(s[None, :], args.k)
        out_items[r] = np.where(idx[0] >= 0, item_raw[np.clip(idx[0], 0, None)], -1)
        out_scores[r] = val[0]
    rec_s = time.perf_counter() - t0
    rec_mem.__exit__(None, None, None)
    blas_ctx.__exit__(None, None, None)
    n_rows = pc.write_recs(args.out, wusers, out_items, out_scores, args.k)

    n_ep = eff.get(EPOCH_KEYS[args.model], EPOCH_DEFAULTS[args.model])
    meta = {
        "library": "cornac",
        "library_version": cornac.__version__,
        "frameworks": fw,
        "model": args.model,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "params": eff,
        "threads": THREADS,
        "n_train_rows": len(train),
        "n_users": int(train_set.num_users),
        "n_items": int(train_set.num_items),
        "n_users_recommended": len(wusers),
        "n_cold_users_skipped": int((~warm_mask).sum()),
        "n_rec_rows": n_rows,
        "dataset_build_time_s": ds_s,
        "text_modality": text_info,
        "n_exclude_rows": len(ex),
        "fit_time_s": fit_s,
        "fit_times_s": fit_times,
        "fit_peak_extra_mib": fit_mem.extra_mib,
        "recommend_peak_extra_mib": rec_mem.extra_mib,
        "epoch_times_s": None,
        "per_epoch_s": fit_s / n_ep,
        "per_epoch_source": f"fit_time/{EPOCH_KEYS[args.model]} (cornac exposes no per-epoch hook)",
        "recommend_time_s": rec_s,
        "recommend_method": "per-user model.score(user_idx) + mask train items + top-k",
        "recommend_threads": args.rec_threads,
    }
    if test_df is not None and not args.no_metrics:
        meta["own_metrics"] = cornac_own_metrics(out_items, wusers, test_df, args.metric_k,
                                                 item_raw)
        meta["reference_metrics"] = pc.reference_metrics(out_items, wusers, test_df,
                                                         args.metric_k)
    pc.write_meta(meta_path, meta)
    print(f"cornac {args.model}: fit {fit_s:.3f}s recommend {rec_s:.3f}s -> {args.out}")


if __name__ == "__main__":
    main()
