"""Faithfulness and latency of ``Recommender.explain`` (issue 20): classical and neural.

The deletion test (:func:`maasrec.explain.deletion_test`): MovieLens 1M, per-user random
8:1:1 split (seed 0), every model fitted on train with its defaults; for each of
``--users`` sampled train users (seeded) with at least 6 train items, the model's top-1
recommendation for the user's train history is explained; the 3 history items with the
largest weights are removed, against 3 random history items (3 draws), and the item's
rank (among the items not in the history) and score are computed again on the reduced
history (``recommend(history=...)``). Reported per model: mean rank drop (top vs
random) and their ratio (goal >= 2), relative score drops and their ratio, the share of
users for whom the top removal dropped the rank more, and explain latency (p50/p99 over
the sampled users, a known user's ``explain(user, item)``).

BPRMF cannot score a history (``supports_history`` is False): removing history items
cannot change its scores, so it has no deletion test; only its latency is measured.
Popularity's scores do not depend on the history: its drops are 0 by construction.

The neural models (``--neural``; results in ``benchmarks/results/explain_neural.json``)
are fitted on the same split with their defaults except a capped number of epochs
(``--epochs``, default 10; MultVAE and LightGCN 5x that), no held-out validation
(``validation_fraction=None``: one fit of the capped epochs) and the CPU. Hybrid is the
default ``HybridRecommender()`` without item text (MovieLens has titles and genres; the
default "auto" encoders use ids when no item features are given). SequentialRecommender,
BERT4Rec and LMRanker are tested on time-ordered histories and remove history
*positions*. LMRanker (MiniLM-L6 cross-encoder, ``head="mean"``, listwise, one epoch
over ``--lm-positives`` training groups, ``n_candidates=--lm-candidates``,
``history_len=5``, over EASE; ``--lm-users`` users) explains its LM logit: the deletion
test ranks among the first stage's candidates of the full history. Its latency is
measured with and without ``tokens=True`` (Captum, 10 users).

MovieLens 1M as stored in the shared data folder has timestamps for 250,440 of its
1,000,209 ratings (``ratings_partial_with_timestamps.dat.gz``: the latest 200,042 ratings
of the whole set, ts >= 975768738, plus 10 random rows per user). The models that read
order (SequentialRecommender, BERT4Rec, LMRanker) get each user's ratings in the order
available: the ratings without a timestamp first, in file order (by MovieID), then the
timestamped ones by time (ties by MovieID), since 200,042 of the timestamped ratings
are later than any untimed one. It is the order of ``_ordered_interactions``: order
keys, not real times. The other models get the interactions as loaded (no order). When
the interactions have real timestamps throughout (ML-100K, a full ML-1M
``ratings.dat``) they are used as they are. ``--fit-users N`` fits and tests on a seeded
sample of ``N`` training users (all their training rows) to keep a fit affordable.

Run (CPU; the numbers go to ``benchmarks/results/explain.json``)::

    OMP_NUM_THREADS=1 python -m benchmarks.bench_explain --users 500
    OMP_NUM_THREADS=1 python -m benchmarks.bench_explain --neural --data 100k --users 300 \
        --models Hybrid,NeuMF,MultVAE,LightGCN,Sequential,BERT4Rec,LMRanker
    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.bench_explain --neural --data 1m \
        --users 300 --epochs 10 --fit-users 2000 --models Sequential --merge
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "explain.json"
#: Models that read each user's history in time order.
ORDERED = ("Sequential", "BERT4Rec", "LMRanker")


def _models(bpr_epochs: int) -> dict:
    from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD

    return {
        "EASE": lambda: EASE(),
        "ItemKNN": lambda: ItemKNN(),
        "PureSVD": lambda: PureSVD(random_state=0),
        "ALS": lambda: ALS(random_state=0, device="cpu"),
        "BPRMF": lambda: BPRMF(random_state=0, epochs=bpr_epochs, device="cpu"),
        "Popularity": lambda: Popularity(),
    }


def _neural_models(epochs: int) -> dict:
    from maasrec.neural import (
        BERT4Rec,
        HybridRecommender,
        LightGCN,
        MultVAE,
        NeuMF,
        RecVAE,
        SequentialRecommender,
    )

    common = dict(random_state=0, device="cpu", validation_fraction=None)
    return {
        "Hybrid": lambda: HybridRecommender(epochs=epochs, **common),
        "NeuMF": lambda: NeuMF(epochs=epochs, **common),
        "MultVAE": lambda: MultVAE(epochs=5 * epochs, **common),
        "LightGCN": lambda: LightGCN(epochs=5 * epochs, **common),
        "RecVAE": lambda: RecVAE(epochs=epochs, **common),  # an epoch: 3 + 1 passes
        "Sequential": lambda: SequentialRecommender(epochs=epochs, **common),
        "BERT4Rec": lambda: BERT4Rec(epochs=epochs, **common),
        "LMRanker": None,  # built in _fit_lmranker (needs the item texts)
    }


def _fit_lmranker(ds, train, args):
    from maasrec.lm_ranker import LMRanker
    from maasrec.models import EASE

    model = LMRanker(first_stage=EASE(), model="sentence-transformers/all-MiniLM-L6-v2",
                     head="mean", loss="listwise", n_candidates=args.lm_candidates,
                     history_len=5, max_length=96, epochs=1, max_positives=args.lm_positives,
                     negatives_per_positive=4,
                     random_negatives=1, random_state=0, verbose=False)
    return model.fit(train, item_features=ds.item_features)


def _ordered_interactions(ds, data: str, data_home):
    """``ds.interactions`` in the order available (module docstring): unchanged when
    they have timestamps; for MovieLens 1M without them, order keys from the timestamped
    subset (untimed ratings first in file order, then the timed ones by time)."""
    import pandas as pd

    from maasrec.data.interactions import Interactions

    X = ds.interactions
    if X.has_timestamps:
        return X, "timestamps"
    if data != "1m":
        return X, "file order (no timestamps)"
    path = Path(data_home) / "ml-1m" / "ratings_partial_with_timestamps.dat.gz"
    ts = pd.read_csv(path, sep="::", engine="python", names=["user", "item", "rating", "ts"])
    df = X.to_pandas().merge(ts[["user", "item", "ts"]], on=["user", "item"], how="left")
    timed = df["ts"].notna().to_numpy()
    pos = np.arange(len(df), dtype=np.int64)
    key = np.where(timed, df["ts"].fillna(0).to_numpy(np.int64),
                   int(ts["ts"].min()) - len(df) + pos)  # before every real time
    out = Interactions.from_arrays(df["user"].to_numpy(), df["item"].to_numpy(),
                                   df["rating"].to_numpy(), key)
    return out, (f"timestamps where present ({int(timed.sum()):,} of {len(df):,} ratings); "
                 "the others first, in file order (MovieID)")


def _user_sample(train, n: int | None, seed: int = 0):
    """A seeded sample of ``n`` users of ``train`` with all their rows (None: all)."""
    if n is None or n >= train.n_users:
        return train
    from maasrec.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    users = set(rng.choice(train.user_vocab.ids, size=n, replace=False).tolist())
    df = train.to_pandas()
    df = df[df["user"].isin(users)]
    return Interactions.from_pandas(df, user_col="user", item_col="item",
                                    rating_col="rating" if "rating" in df else None,
                                    timestamp_col="timestamp" if "timestamp" in df else None)


def _merge(path: Path, key: str, name: str, run: dict) -> None:
    """Put one model's run under ``key`` / ``name`` of the results file at ``path``."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.setdefault(key, {})[name] = run
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _latency(model, train, n_users: int, seed: int, **kwargs) -> dict:
    """p50/p99 milliseconds of ``explain(user, top-1 item)`` for sampled known users."""
    rng = np.random.default_rng(seed)
    users = rng.choice(train.user_vocab.ids, size=min(n_users, train.n_users), replace=False)
    ids, _ = model.recommend(list(users), k=1)
    times = []
    for u, item in zip(users, ids[:, 0]):
        t0 = time.perf_counter()
        model.explain(u, item, n=5, **kwargs)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {"explain_ms_p50": float(np.percentile(ms, 50)),
            "explain_ms_p99": float(np.percentile(ms, 99)), "latency_users": len(ms)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="1m", help="MovieLens variant (default 1m)")
    ap.add_argument("--data-home", default=os.environ.get("MAASREC_DATA"))
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--models", default=None,
                    help="comma-separated (default: all of the chosen family)")
    ap.add_argument("--bpr-epochs", type=int, default=20,
                    help="BPRMF epochs (latency only; its default is 100)")
    ap.add_argument("--neural", action="store_true",
                    help="the neural models and LMRanker (default names below)")
    ap.add_argument("--epochs", type=int, default=10, help="epoch cap of the neural models")
    ap.add_argument("--latency-users", type=int, default=200)
    ap.add_argument("--lm-users", type=int, default=30,
                    help="LMRanker: users of the deletion test and the latency")
    ap.add_argument("--lm-candidates", type=int, default=20, help="LMRanker n_candidates")
    ap.add_argument("--lm-positives", type=int, default=300,
                    help="LMRanker max_positives (training groups)")
    ap.add_argument("--fit-users", type=int, default=None,
                    help="fit and test on a seeded sample of this many training users")
    ap.add_argument("--merge", action="store_true",
                    help="merge each model's run into explain_neural.json under "
                         "'ml-<data>' / model (with --neural)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import warnings

    from maasrec import datasets
    from maasrec.data.split import random_split
    from maasrec.exceptions import ColdStartWarning
    from maasrec.explain import NotExplainableError, deletion_test

    from .bench_classical import machine

    ds = datasets.load_movielens(args.data, data_home=args.data_home, download=False)
    X = ds.interactions
    splits = {}

    def split_for(name: str):
        ordered = args.neural and name in ORDERED
        if ordered not in splits:
            data, order = _ordered_interactions(ds, args.data, args.data_home) if ordered \
                else (X, None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ColdStartWarning)
                tr, _, _ = random_split(data, (0.8, 0.1, 0.1), random_state=0)
            splits[ordered] = (_user_sample(tr, args.fit_users), order)
        return splits[ordered]
    factories = _neural_models(args.epochs) if args.neural else _models(args.bpr_epochs)
    models = args.models or ",".join(factories)
    out_path = args.out or str(RESULTS if not args.neural
                               else RESULTS.with_name("explain_neural.json"))
    out = {"machine": machine(), "data": f"movielens-{args.data} train (per-user 8:1:1, seed 0)",
           "users": args.users, "k_remove": 3, "n_random": 3,
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "models": {}}
    if args.neural:
        out["epochs_cap"] = args.epochs
    if args.fit_users is not None:
        out["fit_users"] = args.fit_users
    for name in models.split(","):
        train, order = split_for(name)
        t0 = time.perf_counter()
        model = (_fit_lmranker(ds, train, args) if name == "LMRanker"
                 else factories[name]().fit(train))
        row: dict = {"fit_s": round(time.perf_counter() - t0, 2)}
        if args.neural and name != "LMRanker":
            row["params"] = {k: v for k, v in model.get_params().items()
                             if isinstance(v, (int, float, str, bool, type(None)))}
        n_users = args.lm_users if name == "LMRanker" else args.users
        row.update(_latency(model, train, min(n_users, args.latency_users), seed=1))
        if name == "LMRanker":
            tok = _latency(model, train, min(n_users, 10), seed=1, tokens=True)
            row.update({f"tokens_{k}": v for k, v in tok.items()})
        t0 = time.perf_counter()
        try:
            res = deletion_test(model, train if args.neural else None, n_users=n_users,
                                k_remove=3, n_random=3, random_state=0)
            row.update(res.to_dict())
        except NotExplainableError as exc:
            row["deletion_test"] = f"not applicable: {exc}"
        row["deletion_s"] = round(time.perf_counter() - t0, 1)
        if order is not None:
            row["history_order"] = order
        row["train_users"], row["train_interactions"] = train.n_users, train.nnz
        out["models"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
        with open("/proc/loadavg") as fh:
            out["loadavg_at_end"] = fh.read().split()[:3]
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        if args.merge and args.neural:
            _merge(Path(out_path), f"ml-{args.data}", name,
                   {**out, "models": {name: row}})
        else:
            Path(out_path).write_text(json.dumps(out, indent=1) + "\n")  # after every model
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
