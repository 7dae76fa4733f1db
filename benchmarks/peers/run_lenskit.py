#!/usr/bin/env python
"""Benchmark adapter for LensKit for Python (>= 2025.1 API; tested with 2025.8.1).

Models: itemknn   -> lenskit.knn.ItemKNNScorer   (feedback="implicit" unless given)
        implicitmf-> lenskit.als.ImplicitMFScorer (ALS, Rust kernels in lenskit._accel)
        pop       -> lenskit.basic.PopScorer
Params JSON = the scorer's config fields, e.g. ItemKNN '{"max_nbrs":20,"min_nbrs":1}',
ImplicitMF '{"embedding_size":64,"epochs":15,"regularization":0.1,"weight":40}'.

Pipeline: lenskit.pipeline.topn_pipeline(scorer, n=k); recommendations with
lenskit.batch.recommend(pipeline, users, n=k, n_jobs=1).  The default top-N
pipeline's candidate selector excludes the user's training items
(UnratedTrainingItemsCandidateSelector) and only ranks training items.
Threads: lenskit.parallel.initialize(processes=1, threads=T, backend_threads=T)
(also sets torch threads and the Rust accelerator pool). Random state: --seed goes to
``pipeline.train(data, TrainingOptions(rng=seed))``.

Exclusions: the default candidate selector drops the user's training items; the
``--exclude`` items are removed by asking the pipeline for ``k + max_u |exclude_u|``
items and dropping the excluded ones before cutting at k. Scores of these scorers do not
depend on the candidate set, so this equals ranking with the excluded items removed.

Example:
  /tmp/maasrec-peers/lenskit/bin/python run_lenskit.py --train train.csv --test test.csv \
     --model implicitmf --params '{"embedding_size":64,"epochs":15}' --threads 2 --out recs.csv
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc

THREADS = pc.early_threads()

import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import lenskit  # noqa: E402
import numpy as np  # noqa: E402
from lenskit.parallel import initialize  # noqa: E402

initialize(processes=1, threads=THREADS, backend_threads=THREADS)

from lenskit import batch  # noqa: E402
from lenskit.als import ImplicitMFScorer  # noqa: E402
from lenskit.basic import PopScorer  # noqa: E402
from lenskit.data import ItemListCollection, from_interactions_df  # noqa: E402
from lenskit.knn import ItemKNNScorer  # noqa: E402
from lenskit.metrics import NDCG, LogRankWeight, Recall, RunAnalysis  # noqa: E402
from lenskit.pipeline import topn_pipeline  # noqa: E402
from lenskit.training import TrainingOptions  # noqa: E402

MODELS = {"itemknn": ItemKNNScorer, "implicitmf": ImplicitMFScorer, "pop": PopScorer}


def lenskit_own_metrics(recs_df, test_df, k):
    """lenskit.metrics.RunAnalysis(NDCG(n=k), Recall(n=k)) on the produced lists.

    NOTE LensKit's Recall@k = hits / min(|T|, k) (not hits/|T|).  LensKit's
    default NDCG weight LogRankWeight() *clips* ranks: discount(rank) =
    1/log2(max(rank, 2)) (ranks 1 and 2 both weigh 1, the original
    Jarvelin-Kekalainen form); the usual 1/log2(rank+1) is
    LogRankWeight(offset=1), reported as ndcg@k_offset1.  Ideal DCG over
    min(|T|, k), binary gain.  Lists are the adapter's
    output (user,item,rank,score); truth = all test items of those users."""
    recs = ItemListCollection.from_df(
        recs_df.rename(columns={"user": "user_id", "item": "item_id"}), ["user_id"]
    )
    truth = ItemListCollection.from_df(
        test_df[test_df.user.isin(recs_df.user.unique())].rename(
            columns={"user": "user_id", "item": "item_id"}
        ),
        ["user_id"],
    )
    ra = RunAnalysis()
    ra.add_metric(NDCG(n=k), f"ndcg@{k}")
    ra.add_metric(NDCG(n=k, weight=LogRankWeight(offset=1)), f"ndcg@{k}_offset1")
    ra.add_metric(Recall(n=k), f"recall@{k}")
    res = ra.measure(recs, truth)
    summ = res.list_summary()
    means = summ["mean"] if "mean" in summ.columns else summ.iloc[:, 0]
    out = {}
    for lab, v in means.items():
        out[str(lab).lower()] = float(v)
    out["note"] = ("lenskit.metrics.RunAnalysis; Recall@k = hits/min(|T|,k); default NDCG "
                   "discount 1/log2(max(rank,2)); *_offset1 uses 1/log2(rank+1)")
    return out


def main():
    ap = pc.base_parser(__doc__.splitlines()[1], list(MODELS))
    args = ap.parse_args()
    params = pc.parse_params(args.params)
    meta_path = args.meta or args.out + ".json"
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    train, users, test_df = pc.read_inputs(args.train, args.test)

    t_ds = time.perf_counter()
    ds = from_interactions_df(train[["user", "item"]], user_col="user", item_col="item")
    ds_s = time.perf_counter() - t_ds

    if args.model == "itemknn":
        params.setdefault("feedback", "implicit")

    epoch_times = []

    def instrument(scorer):
        if not hasattr(scorer, "create_trainer"):
            return
        orig = scorer.create_trainer

        def create_trainer(data, options):
            tr = orig(data, options)
            f = tr.train_epoch

            def timed_epoch():
                t = time.perf_counter()
                r = f()
                epoch_times.append(time.perf_counter() - t)
                return r

            tr.train_epoch = timed_epoch
            return tr

        scorer.create_trainer = create_trainer

    holder = {}

    def build_and_fit():
        epoch_times.clear()
        scorer = MODELS[args.model](**params)
        instrument(scorer)
        pipe = topn_pipeline(scorer, n=args.k)
        pipe.train(ds, TrainingOptions(rng=args.seed))
        holder["scorer"] = scorer
        return pipe

    with pc.PhasePeak() as fit_mem:
        pipe, fit_times = pc.fit_repeated(build_and_fit, args.fit_repeats, args.repeat_budget_s)
    fit_s = min(fit_times)
    scorer = holder["scorer"]

    known = set(train.user.unique().tolist())
    warm = np.array([u in known for u in users], dtype=bool)
    wusers = users[warm]
    ex = pc.read_exclude(args.exclude)
    ex = ex[ex.user.isin(wusers)]
    extra = int(ex.groupby("user").size().max()) if len(ex) else 0
    with pc.PhasePeak() as rec_mem:
        t0 = time.perf_counter()
        recs = batch.recommend(pipe, [int(u) for u in wusers], n=args.k + extra, n_jobs=1)
        rdf = recs.to_df().rename(columns={"user_id": "user", "item_id": "item"})
        if extra:
            rdf = rdf.merge(ex.assign(_ex=True), on=["user", "item"], how="left")
            rdf = rdf[rdf["_ex"].isna()].drop(columns="_ex")
        rdf = rdf.sort_values(["user", "rank"], kind="stable")
        rdf["rank"] = rdf.groupby("user").cumcount() + 1
        rdf = rdf[rdf["rank"] <= args.k]
        rec_s = time.perf_counter() - t0
    rdf[["user", "rank", "item", "score"]].to_csv(args.out, index=False, float_format="%.9g")

    meta = {
        "library": "lenskit",
        "library_version": lenskit.__version__,
        "model": args.model,
        "model_class": type(scorer).__module__ + "." + type(scorer).__name__,
        "params": params,
        "effective_config": getattr(scorer, "config", None).model_dump()
        if hasattr(getattr(scorer, "config", None), "model_dump") else str(getattr(scorer, "config", None)),
        "threads": THREADS,
        "n_train_rows": len(train),
        "n_users": int(ds.user_count),
        "n_items": int(ds.item_count),
        "n_users_recommended": len(wusers),
        "n_cold_users_skipped": int((~warm).sum()),
        "n_rec_rows": len(rdf),
        "dataset_build_time_s": ds_s,
        "n_exclude_rows": len(ex),
        "overfetch": extra,
        "fit_time_s": fit_s,
        "fit_times_s": fit_times,
        "fit_peak_extra_mib": fit_mem.extra_mib,
        "recommend_peak_extra_mib": rec_mem.extra_mib,
        "epoch_times_s": epoch_times or None,
        "per_epoch_s": float(np.median(epoch_times)) if epoch_times else None,
        "per_epoch_source": "timed ModelTrainer.train_epoch" if epoch_times else None,
        "recommend_time_s": rec_s,
    }
    if test_df is not None and not args.no_metrics:
        meta["own_metrics"] = lenskit_own_metrics(rdf, test_df, args.metric_k)
        items = (rdf.pivot(index="user", columns="rank", values="item")
                 .reindex(wusers).reindex(columns=range(1, args.k + 1)).fillna(-1)
                 .astype(np.int64).to_numpy())
        meta["reference_metrics"] = pc.reference_metrics(items, wusers, test_df, args.metric_k)
    pc.write_meta(meta_path, meta)
    print(f"lenskit {args.model}: fit {fit_s:.3f}s recommend {rec_s:.3f}s -> {args.out}")


if __name__ == "__main__":
    main()
