#!/usr/bin/env python
"""Benchmark adapter for `implicit` (Ben Frederickson), CPU models.

Models: als  -> implicit.cpu.als.AlternatingLeastSquares
        bpr  -> implicit.cpu.bpr.BayesianPersonalizedRanking
Params JSON is passed verbatim to the model constructor (e.g.
'{"factors":64,"iterations":15,"regularization":0.01,"alpha":1.0}'); num_threads
is taken from --threads and random_state from --seed unless given in params.

Lists exclude the user's train items and the ``--exclude`` rows (implicit's
``filter_already_liked_items`` with a filter matrix = train | exclude; for ALS and BPR
the ``user_items`` passed to ``recommend`` only filters, it does not change scores).

Example:
  /tmp/maasrec-peers/implicit/bin/python run_implicit.py --train train.csv --test test.csv \
      --model als --params '{"factors":64}' --threads 2 --out recs.csv
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc

THREADS = pc.early_threads()

import time  # noqa: E402

import implicit  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import threadpoolctl  # noqa: E402
from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402
from implicit.cpu.bpr import BayesianPersonalizedRanking  # noqa: E402
from implicit.evaluation import ranking_metrics_at_k  # noqa: E402

MODELS = {"als": AlternatingLeastSquares, "bpr": BayesianPersonalizedRanking}


def implicit_own_metrics(model, train_csr, users_idx, test_df, uid_map, iid_map, k):
    """implicit.evaluation.ranking_metrics_at_k on the listed users.

    It re-runs model.recommend(batch, filter[batch], N=k) (filter_already_liked_items
    default True); ``train_csr`` is the filter matrix (train | exclude) used for the
    written lists, so it scores exactly the lists written by this adapter.
    Test items unknown to the train vocabulary cannot be represented in implicit's
    matrix and are dropped (so |T| may shrink for a few users).  implicit returns
    ndcg (per-user mean, idcg over min(k,|T|)), map, auc and 'precision', which is
    sum(hits)/sum(min(k,|T|)) over users (micro-averaged capped recall), NOT p@k."""
    t = test_df[test_df.user.isin(uid_map.index) & test_df.item.isin(iid_map.index)]
    rows = uid_map.loc[t.user].to_numpy()
    cols = iid_map.loc[t.item].to_numpy()
    keep_users = np.zeros(train_csr.shape[0], dtype=bool)
    keep_users[users_idx] = True
    m = keep_users[rows]
    test_csr = sp.csr_matrix(
        (np.ones(m.sum(), dtype=np.float32), (rows[m], cols[m])), shape=train_csr.shape
    )
    r = ranking_metrics_at_k(model, train_csr, test_csr, K=k, show_progress=False,
                             num_threads=1)
    n_dropped = int(len(test_df) - len(t))
    return {
        f"ndcg@{k}": float(r["ndcg"]),
        f"precision_capped@{k}": float(r["precision"]),
        f"map@{k}": float(r["map"]),
        f"auc@{k}": float(r["auc"]),
        "n_test_rows_dropped_unknown": n_dropped,
        "note": "implicit.evaluation.ranking_metrics_at_k; implicit has no recall; "
                "'precision' = sum hits / sum min(k,|T|)",
    }


def main():
    ap = pc.base_parser(__doc__.splitlines()[1], list(MODELS))
    ap.add_argument("--batch-size", type=int, default=2000, help="users per recommend() call")
    args = ap.parse_args()
    params = pc.parse_params(args.params)
    meta_path = args.meta or args.out + ".json"

    train, users, test_df = pc.read_inputs(args.train, args.test)
    import pandas as pd

    uid = pd.Index(np.sort(train.user.unique()))
    iid = pd.Index(np.sort(train.item.unique()))
    uid_map = pd.Series(np.arange(len(uid)), index=uid)
    iid_map = pd.Series(np.arange(len(iid)), index=iid)
    rows = uid_map.loc[train.user].to_numpy()
    cols = iid_map.loc[train.item].to_numpy()
    # implicit >= 0.5 expects user_items (users x items) CSR; float32 values
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                      shape=(len(uid), len(iid)))

    params.setdefault("num_threads", THREADS)
    params.setdefault("random_state", args.seed)

    # filter matrix: train | exclude (exclude rows of unknown users/items cannot be
    # recommended anyway and are dropped)
    ex = pc.read_exclude(args.exclude)
    ex = ex[ex.user.isin(uid) & ex.item.isin(iid)]
    F = X
    if len(ex):
        E = sp.csr_matrix((np.ones(len(ex), dtype=np.float32),
                           (uid_map.loc[ex.user].to_numpy(), iid_map.loc[ex.item].to_numpy())),
                          shape=X.shape)
        F = (X + E).tocsr()
        F.data[:] = 1.0

    epoch_times = []

    def cb(iteration, elapsed, *rest):
        # implicit passes the wall time of this single iteration/epoch
        epoch_times.append(elapsed)

    # implicit recommends limiting BLAS to 1 thread during fit (it parallelises
    # itself with OpenMP num_threads); recommend() then uses BLAS with THREADS.
    def build_and_fit():
        epoch_times.clear()
        m = MODELS[args.model](**params)
        # ALS: callback(iteration, seconds_of_this_iteration, loss)
        # BPR: callback(epoch, seconds_of_this_epoch, n_correct, n_skipped)
        m.fit(X, show_progress=False, callback=cb)
        return m

    with threadpoolctl.threadpool_limits(1, "blas"), pc.PhasePeak() as fit_mem:
        model, fit_times = pc.fit_repeated(build_and_fit, args.fit_repeats,
                                           args.repeat_budget_s)
    fit_s = min(fit_times)

    with threadpoolctl.threadpool_limits(THREADS, "blas"), pc.PhasePeak() as rec_mem:
        warm = np.isin(users, uid)
        wusers = users[warm]
        uidx = uid_map.loc[wusers].to_numpy()
        t0 = time.perf_counter()
        all_ids, all_sc = [], []
        for s in range(0, len(uidx), args.batch_size):
            b = uidx[s:s + args.batch_size]
            ids, sc = model.recommend(b, F[b], N=args.k, filter_already_liked_items=True)
            all_ids.append(ids)
            all_sc.append(sc)
        ids = np.vstack(all_ids) if all_ids else np.zeros((0, args.k), dtype=np.int64)
        sc = np.vstack(all_sc) if all_sc else np.zeros((0, args.k))
        rec_s = time.perf_counter() - t0

    # implicit pads with id -1 / score -inf (or 0) when fewer than k candidates
    raw = np.where(ids >= 0, iid.to_numpy()[np.clip(ids, 0, None)], -1)
    n_rows = pc.write_recs(args.out, wusers, raw, sc, args.k)

    meta = {
        "library": "implicit",
        "library_version": implicit.__version__,
        "model": args.model,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "params": params,
        "threads": THREADS,
        "n_train_rows": int(X.nnz),
        "n_users": int(X.shape[0]),
        "n_items": int(X.shape[1]),
        "n_users_recommended": len(wusers),
        "n_cold_users_skipped": int((~warm).sum()),
        "n_rec_rows": n_rows,
        "n_exclude_rows": len(ex),
        "fit_time_s": fit_s,
        "fit_times_s": fit_times,
        "fit_peak_extra_mib": fit_mem.extra_mib,
        "recommend_peak_extra_mib": rec_mem.extra_mib,
        "epoch_times_s": epoch_times or None,
        "per_epoch_s": (float(np.median(epoch_times)) if epoch_times
                        else fit_s / params.get("iterations", 100)),
        "per_epoch_source": "fit callback" if epoch_times else "fit_time/iterations",
        "recommend_time_s": rec_s,
        "dtype": str(np.dtype(model.dtype)) if hasattr(model, "dtype") else None,
    }
    if test_df is not None and not args.no_metrics:
        meta["own_metrics"] = implicit_own_metrics(model, F, uidx, test_df, uid_map, iid_map,
                                                   args.metric_k)
        meta["reference_metrics"] = pc.reference_metrics(raw, wusers, test_df, args.metric_k)
    pc.write_meta(meta_path, meta)
    print(f"implicit {args.model}: fit {fit_s:.3f}s recommend {rec_s:.3f}s -> {args.out}")


if __name__ == "__main__":
    main()
