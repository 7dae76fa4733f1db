#!/usr/bin/env python
"""Benchmark adapter for RecBole (tested with 1.2.1, torch 2.13.0 CPU, numpy 1.26).

Models: bpr, neumf, lightgcn (general recommenders), sasrec and bert4rec (sequential).
Params JSON = RecBole config keys (model hyperparameters and training
settings), e.g. '{"embedding_size":64,"epochs":50,"learning_rate":0.001,
"train_batch_size":2048}'.  They override RecBole's defaults for the model.

How the adapter makes RecBole train on exactly the given train rows
-------------------------------------------------------------------
It writes RecBole atomic files into a temporary data_path and uses RecBole's
``benchmark_filename: [train, valid, test]`` mode (pre-split files: RecBole
concatenates them for the id remapping and then cuts them back apart, no
re-splitting, no filtering because user/item_inter_num_interval = [0,inf)).
* ``bench.train.inter``: general models -> every train row (user_id, item_id
  [, timestamp]).  SASRec -> RecBole's own sequence augmentation done here:
  for each user (rows ordered by timestamp, else file order) one row per
  position t>=1 with target item_t and ``item_id_list`` = the previous <=
  MAX_ITEM_LIST_LENGTH items (``alias_of_item_id: [item_id_list]`` makes the
  list share the item vocabulary).
* ``bench.valid.inter`` = ``bench.test.inter``: ONE row per warm test user,
  whose item is a train item the user has not interacted with (a placeholder:
  RecBole needs every scored user in the test loader; the placeholder is never
  trained on).  For SASRec the row carries the user's last train items as
  ``item_id_list``.  So the user/item vocabularies are exactly the train ones
  and the negative sampler only ever sees train items.
Training: ``trainer.fit(train_data, valid_data=None, saved=False)`` -> no
validation/early stopping, no checkpoint (torch>=2.6 ``weights_only`` issue
avoided), exactly ``epochs`` epochs.  Per-epoch wall times come from a timing
wrapper around ``trainer._train_epoch``.
Recommendation: ``recbole.utils.case_study.full_sort_scores`` (calls
``model.full_sort_predict``) in user batches; the adapter then sets the
[PAD] item and all train items of the user to -inf itself (RecBole does not
mask history for sequential models) and takes the top-k; ``--exclude`` items are
masked the same way.

Example:
  /tmp/maasrec-peers/recbole/bin/python run_recbole.py --train train.csv --test test.csv --model bpr \
      --params '{"embedding_size":64,"epochs":20}' --threads 2 --out recs.csv
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc

THREADS = pc.early_threads()

import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
warnings.filterwarnings("ignore")

import recbole  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_seed  # noqa: E402
from recbole.utils.case_study import full_sort_scores  # noqa: E402

MODELS = {"bpr": "BPR", "neumf": "NeuMF", "lightgcn": "LightGCN", "sasrec": "SASRec",
          "bert4rec": "BERT4Rec"}
SEQUENTIAL = {"sasrec", "bert4rec"}


def write_atomic(workdir, train, users, model, max_len, has_ts):
    """Write bench.{train,valid,test}.inter; returns the list of warm users."""
    d = os.path.join(workdir, "bench")
    os.makedirs(d, exist_ok=True)
    train_items = np.sort(train.item.unique())
    known_users = set(train.user.unique().tolist())
    warm = [int(u) for u in users if int(u) in known_users]
    hist = train.groupby("user")["item"].apply(list).to_dict()

    # placeholder target per warm user: smallest train item not in its history
    placeholder = {}
    for u in warm:
        h = set(hist[u])
        for it in train_items:  # almost always the first few items
            if it not in h:
                placeholder[u] = int(it)
                break
        else:
            placeholder[u] = int(train_items[0])  # user has every item: nothing to rank

    if model not in SEQUENTIAL:
        cols = ["user_id:token", "item_id:token"] + (["timestamp:float"] if has_ts else [])
        tr = train[["user", "item"] + (["timestamp"] if has_ts else [])]
        tr.to_csv(os.path.join(d, "bench.train.inter"), sep="\t", index=False, header=cols)
        te = pd.DataFrame({"user": warm, "item": [placeholder[u] for u in warm]})
        if has_ts:
            te["timestamp"] = float(train.timestamp.max()) + 1.0
        for part in ("valid", "test"):
            te.to_csv(os.path.join(d, f"bench.{part}.inter"), sep="\t", index=False, header=cols)
    else:
        # sequences ordered by timestamp (read_inputs sorted by user,timestamp)
        lines_tr = ["user_id:token\titem_id:token\titem_id_list:token_seq"]
        lines_te = list(lines_tr)
        for u, items in hist.items():
            for t in range(1, len(items)):
                seq = items[max(0, t - max_len):t]
                lines_tr.append(f"{u}\t{items[t]}\t{' '.join(map(str, seq))}")
        for u in warm:
            seq = hist[u][-max_len:]
            lines_te.append(f"{u}\t{placeholder[u]}\t{' '.join(map(str, seq))}")
        with open(os.path.join(d, "bench.train.inter"), "w") as f:
            f.write("\n".join(lines_tr) + "\n")
        for part in ("valid", "test"):
            with open(os.path.join(d, f"bench.{part}.inter"), "w") as f:
                f.write("\n".join(lines_te) + "\n")
    return np.asarray(warm, dtype=np.int64)


def base_config(model, workdir, seed, has_ts, params):
    cfg = {
        "data_path": workdir,
        "dataset": "bench",
        "benchmark_filename": ["train", "valid", "test"],
        "field_separator": "\t",
        "seq_separator": " ",
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "RATING_FIELD": None,
        "TIME_FIELD": "timestamp" if (has_ts and model not in SEQUENTIAL) else None,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "rm_dup_inter": None,
        "device": "cpu",
        "use_gpu": False,
        "gpu_id": "",
        "seed": seed,
        "reproducibility": True,
        "checkpoint_dir": os.path.join(workdir, "saved"),
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user",
                      "order": "TO" if model in SEQUENTIAL else "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "eval_batch_size": 4096,
        "state": "WARNING",
    }
    if model in SEQUENTIAL:
        cfg["load_col"] = {"inter": ["user_id", "item_id", "item_id_list"]}
        cfg["alias_of_item_id"] = ["item_id_list"]
        cfg["MAX_ITEM_LIST_LENGTH"] = params.get("MAX_ITEM_LIST_LENGTH", 50)
        cfg["train_neg_sample_args"] = None  # CE loss (RecBole default for SASRec)
        cfg["loss_type"] = "CE"
    else:
        cfg["load_col"] = {"inter": ["user_id", "item_id"] + (["timestamp"] if has_ts else [])}
        cfg["train_neg_sample_args"] = {"distribution": "uniform", "sample_num": 1,
                                        "dynamic": False, "candidate_num": 0}
    cfg.update(params)
    return cfg


def recbole_own_metrics(config, rec_items, users, test_df, k):
    """RecBole's evaluator metric classes (recbole.evaluator.metrics.NDCG /
    Recall .metric_info(pos_index, pos_len)) applied to the produced top-k lists.
    pos_index[u, r] = rec r is a test item; pos_len[u] = |T_u| (all test items).
    RecBole Recall = hits/|T|; NDCG ideal over min(|T|, k)."""
    from recbole.evaluator.metrics import NDCG, Recall

    truth = test_df.groupby("user")["item"].apply(lambda s: set(s.tolist())).to_dict()
    rows, lens = [], []
    for u, row in zip(users, rec_items):
        t = truth.get(int(u))
        if not t:
            continue
        rows.append([int(x) in t for x in row[:k]] + [False] * (k - len(row[:k])))
        lens.append(len(t))
    pos_index = np.asarray(rows, dtype=bool)
    pos_len = np.asarray(lens, dtype=np.int64)
    nd = NDCG(config).metric_info(pos_index, pos_len)[:, k - 1]
    rc = Recall(config).metric_info(pos_index, pos_len)[:, k - 1]
    return {f"ndcg@{k}": float(nd.mean()), f"recall@{k}": float(rc.mean()),
            "n_users_evaluated": len(lens),
            "note": "recbole.evaluator.metrics NDCG/Recall metric_info on the output lists"}


def main():
    ap = pc.base_parser(__doc__.splitlines()[1], list(MODELS))
    ap.add_argument("--workdir", default=None, help="where to write atomic files (default: tmp)")
    ap.add_argument("--keep-workdir", action="store_true")
    ap.add_argument("--user-batch", type=int, default=1024)
    args = ap.parse_args()
    params = pc.parse_params(args.params)
    meta_path = args.meta or args.out + ".json"
    logging.getLogger().setLevel(logging.WARNING)

    train, users, test_df = pc.read_inputs(args.train, args.test)
    has_ts = "timestamp" in train.columns
    workdir = args.workdir or tempfile.mkdtemp(prefix="recbole_bench_")
    t_ds = time.perf_counter()
    max_len = int(params.get("MAX_ITEM_LIST_LENGTH", 50))
    warm = write_atomic(workdir, train, users, args.model, max_len, has_ts)

    cfg = base_config(args.model, workdir, args.seed, has_ts, params)
    sys.argv = sys.argv[:1]  # RecBole's Config parses --key=value command-line args itself
    config = Config(model=MODELS[args.model], dataset="bench", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's Config/init_seed may reset torch threads; enforce ours
    torch.set_num_threads(THREADS)
    logging.getLogger().setLevel(logging.WARNING)
    dataset = create_dataset(config)
    train_data, _valid_data, test_data = data_preparation(config, dataset)
    ds_s = time.perf_counter() - t_ds

    n_items_vocab = dataset.item_num - 1  # minus [PAD]
    if args.model not in SEQUENTIAL:
        assert n_items_vocab == train.item.nunique(), (n_items_vocab, train.item.nunique())

    epoch_times = []

    def build_and_fit():
        epoch_times.clear()
        init_seed(config["seed"] + 0, config["reproducibility"])
        torch.set_num_threads(THREADS)
        m = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, m)
        orig_epoch = trainer._train_epoch

        def timed_epoch(*a, **kw):
            t = time.perf_counter()
            r = orig_epoch(*a, **kw)
            epoch_times.append(time.perf_counter() - t)
            return r

        trainer._train_epoch = timed_epoch
        trainer.fit(train_data, valid_data=None, saved=False, show_progress=False,
                    verbose=False)
        return m

    with pc.PhasePeak() as fit_mem:
        model, fit_times = pc.fit_repeated(build_and_fit, args.fit_repeats, args.repeat_budget_s)
    fit_s = min(fit_times)

    # internal ids
    uid_tok = dataset.field2token_id[dataset.uid_field]
    iid_tok = dataset.field2token_id[dataset.iid_field]
    id2item = np.array([int(x) if x != "[PAD]" else -1
                        for x in dataset.field2id_token[dataset.iid_field]], dtype=np.int64)
    hist = train.groupby("user")["item"].apply(list).to_dict()
    ex = pc.read_exclude(args.exclude)
    ex = ex[ex.user.isin(warm)]
    for u, items in pc.exclude_lists(ex).items():
        hist[u] = hist[u] + items

    model.eval()
    rec_mem = pc.PhasePeak().__enter__()
    t0 = time.perf_counter()
    out_items = np.full((len(warm), args.k), -1, dtype=np.int64)
    out_scores = np.full((len(warm), args.k), -np.inf)
    with torch.no_grad():
        for s in range(0, len(warm), args.user_batch):
            bu = warm[s:s + args.user_batch]
            uids = np.array([uid_tok[str(u)] for u in bu], dtype=np.int64)
            sc = full_sort_scores(uids, model, test_data, device=torch.device("cpu"))
            sc = sc.detach().cpu().numpy().astype(np.float64)
            sc[:, 0] = -np.inf
            for r, u in enumerate(bu):
                sc[r, [iid_tok[str(i)] for i in hist[int(u)] if str(i) in iid_tok]] = -np.inf
            idx, val = pc.topk_from_scores(sc, args.k)
            out_items[s:s + len(bu)] = np.where(idx >= 0, id2item[np.clip(idx, 0, None)], -1)
            out_scores[s:s + len(bu)] = val
    rec_s = time.perf_counter() - t0
    rec_mem.__exit__(None, None, None)
    n_rows = pc.write_recs(args.out, warm, out_items, out_scores, args.k)

    eff = {k: config[k] for k in ("embedding_size", "hidden_size", "epochs", "learning_rate",
                                   "train_batch_size", "n_layers", "reg_weight",
                                   "mf_embedding_size", "mlp_embedding_size",
                                   "mlp_hidden_size", "dropout_prob", "n_heads",
                                   "MAX_ITEM_LIST_LENGTH", "loss_type", "weight_decay",
                                   "train_neg_sample_args", "learner")
           if k in config.final_config_dict}
    meta = {
        "library": "recbole",
        "library_version": recbole.__version__,
        "frameworks": {"torch": torch.__version__, "numpy": np.__version__,
                       "pandas": pd.__version__},
        "model": args.model,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "params": params,
        "effective_config": eff,
        "threads": THREADS,
        "torch_threads": torch.get_num_threads(),
        "n_train_rows": len(train),
        "n_train_rows_recbole": len(train_data._dataset.inter_feat),
        "n_users_vocab": int(dataset.user_num - 1),
        "n_items_vocab": int(n_items_vocab),
        "n_users_recommended": len(warm),
        "n_cold_users_skipped": int(len(users) - len(warm)),
        "n_rec_rows": n_rows,
        "dataset_build_time_s": ds_s,
        "n_exclude_rows": len(ex),
        "fit_time_s": fit_s,
        "fit_times_s": fit_times,
        "fit_peak_extra_mib": fit_mem.extra_mib,
        "recommend_peak_extra_mib": rec_mem.extra_mib,
        "epoch_times_s": epoch_times,
        "per_epoch_s": float(np.median(epoch_times)) if epoch_times else None,
        "per_epoch_source": "timed Trainer._train_epoch",
        "recommend_time_s": rec_s,
        "workdir": workdir if args.keep_workdir else None,
    }
    if test_df is not None and not args.no_metrics:
        meta["own_metrics"] = recbole_own_metrics(config, out_items, warm, test_df, args.metric_k)
        meta["reference_metrics"] = pc.reference_metrics(out_items, warm, test_df, args.metric_k)
    pc.write_meta(meta_path, meta)
    if not args.keep_workdir and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"recbole {args.model}: fit {fit_s:.3f}s recommend {rec_s:.3f}s -> {args.out}")


if __name__ == "__main__":
    main()
