"""Fold-in quality of ``Recommender.partial_fit`` vs a full refit (issue 20, deliverable 3).

Protocol: MovieLens 100K, every rating an interaction, sorted by timestamp (ties by
user, item). The first 90% of events train the base model; the next 5% are *streamed*
into it with ``partial_fit`` in ``--chunks`` equal chunks (time order); the last 5% are
the *test* period. Compared on the same test rows, for users known to both models (in
the first 95%):

- ``fold_in``: base model + ``partial_fit`` of the stream;
- ``refit``: the same model class fitted on the first 95% (base + stream);
- ``stale``: the base model, nothing streamed in (how much the stream matters); it
  knows only the base period's users, so ``base_users`` repeats the three numbers over
  the test users who are in the base period.

Stream events on items the base model does not know are left out of the fold-in
(every model but Popularity refuses new items; the refit has them).

What each fold-in updates (issue 20): EASE the exact refit (Woodbury update of the
inverse Gram matrix), ALS a sweep restricted to the touched users and items, BPRMF
seeded epochs on the new events plus a replay sample, ItemKNN/PureSVD the histories only.
Times are wall seconds on a shared machine: ``load_avg_1min`` is recorded per model.
Each model recommends 10 items excluding everything it has seen (the first 95% for
both ``fold_in`` and ``refit``); NDCG@10 by :func:`maasrec.metrics.evaluate_lists`.
Reported per model: the three NDCG@10 values, ``fold_in / refit`` (goal >= 0.98), and
the seconds spent in ``partial_fit`` vs in the refit's ``fit``. Defaults for every model
(``random_state=0`` where it has one).

Run (CPU; numbers go to ``benchmarks/results/online.json``)::

    OMP_NUM_THREADS=1 python -m benchmarks.bench_online

Also here: :func:`hybrid_fold_in` (HybridRecommender fold-in settings over seeds, on a
validation slice and on this split: ``online_hybrid_{validation,test}.json``) and
:func:`freshness` (event acknowledged -> changed recommendation over HTTP, with the
model-wide update exact before the answer, deferred, or absent:
``online_freshness.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from maasrec import datasets
from maasrec.metrics import evaluate_lists
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD
from maasrec.neural import HybridRecommender, SequentialRecommender

MODELS = {
    "EASE": lambda: EASE(),
    "ItemKNN": lambda: ItemKNN(),
    "PureSVD": lambda: PureSVD(random_state=0),
    "ALS": lambda: ALS(random_state=0),
    "BPRMF": lambda: BPRMF(random_state=0),
    "Popularity": lambda: Popularity(),
    # neural (not in the default run: minutes each on a CPU; --models Hybrid Sequential)
    "Hybrid": lambda: HybridRecommender(random_state=0),
    "Sequential": lambda: SequentialRecommender(epochs=30, random_state=0),
}
DEFAULT_MODELS = ["EASE", "ItemKNN", "PureSVD", "ALS", "BPRMF", "Popularity"]


def temporal_parts(df, base=0.90, stream=0.05):
    df = df.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
    a, b = int(len(df) * base), int(len(df) * (base + stream))
    return df.iloc[:a], df.iloc[a:b], df.iloc[b:]


def ndcg(model, users, test) -> float:
    ids, _ = model.recommend(users, k=10)
    sub = test[test["user"].isin(users)]  # the other test users are measured elsewhere
    res = evaluate_lists(ids, users, sub, k=10, metrics=["ndcg"], n_bootstrap=0)
    return float(np.mean(res.per_user["ndcg@10"]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--dataset", default="100k", help="MovieLens name: 100k or latest-small")
    ap.add_argument("--base", type=float, default=0.90, help="share of events fitted first")
    ap.add_argument("--stream", type=float, default=0.05, help="share streamed in")
    ap.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--out", default="benchmarks/results/online.json")
    args = ap.parse_args(argv)
    df = datasets.load_movielens(args.dataset).interactions.to_pandas()
    df = df[["user", "item", "timestamp"]]
    base, stream, test = temporal_parts(df, args.base, args.stream)
    known = set(base["user"]) | set(stream["user"])
    test = test[test["user"].isin(known)]
    users = sorted(set(test["user"]))
    base_items = set(base["item"])
    base_users = sorted(set(test["user"]) & set(base["user"]))
    out = {"dataset": f"movielens-{args.dataset}", "protocol": f"by time: fit {args.base:.0%}, stream {args.stream:.0%} via "
                                       f"partial_fit, test the rest",
           "chunks": args.chunks, "n_base": len(base), "n_stream": len(stream),
           "n_test": len(test),
           "n_stream_new_item_events": int((~stream["item"].isin(base["item"])).sum()), "n_test_users": len(users), "n_test_users_in_base": len(base_users),
           "omp_threads": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
           "models": {}}
    for name in args.models:
        model = MODELS[name]().fit(base)
        stale = ndcg(model, base_users, test)
        t0 = time.perf_counter()
        for part in np.array_split(np.arange(len(stream)), args.chunks):
            chunk = stream.iloc[part]
            if name != "Popularity":  # the others refuse new items: those events wait
                chunk = chunk[chunk["item"].isin(base_items)]
            model.partial_fit(chunk)
        t_fold = time.perf_counter() - t0
        fold = ndcg(model, users, test)
        fold_b = ndcg(model, base_users, test)
        t0 = time.perf_counter()
        refit = MODELS[name]().fit(pd.concat([base, stream], ignore_index=True))
        t_refit = time.perf_counter() - t0
        full = ndcg(refit, users, test)
        full_b = ndcg(refit, base_users, test)
        row = {"fold_in": round(fold, 4), "refit": round(full, 4),
               "fold_in_over_refit": round(fold / full, 4) if full else None,
               "base_users": {"stale": round(stale, 4), "fold_in": round(fold_b, 4),
                              "refit": round(full_b, 4)},
               "partial_fit_s": round(t_fold, 3), "refit_s": round(t_refit, 3),
               "partial_fit_over_refit_time": round(t_fold / t_refit, 3),
               "load_avg_1min": round(os.getloadavg()[0], 2)}
        out["models"][name] = row
        print(name, row, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()


def hybrid_fold_in(argv=None) -> dict:
    """HybridRecommender fold-in variants vs a refit, over seeds (issue 20, deliverable 3).

    ``--split test``: the protocol of :func:`main` (fit 90%, stream the next 5% in 10
    chunks, test the rest). ``--split validation``: fit 75%, stream 75-80%, test 80-95%
    (the last 5% untouched), where the fold-in settings are chosen. Per seed: one base
    fit, one refit on base + stream, and each variant's fold-in from a copy of the base
    model (``HYB_FOLD_EPOCHS``, ``HYB_REPLAY`` of :mod:`maasrec.neural._online`);
    reported: NDCG@10 ratio fold-in / refit over the test users (and over those in the
    base period), per seed and the mean.

    Run::

        OMP_NUM_THREADS=1 python -c "from benchmarks.bench_online import hybrid_fold_in; hybrid_fold_in()"
    """
    import copy

    from maasrec.neural import _online as fold

    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["test", "validation"], default="test")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="*", default=["5:2", "2:8", "5:8", "0:0"],
                    help="EPOCHS:REPLAY of the fold-in")
    ap.add_argument("--out", default=None,
                    help="default: benchmarks/results/online_hybrid_<split>.json")
    args = ap.parse_args(argv)
    df = datasets.load_movielens("100k").interactions.to_pandas()[["user", "item", "timestamp"]]
    df = df.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
    n = len(df)
    a, b, c = (0.90, 0.95, 1.0) if args.split == "test" else (0.75, 0.80, 0.95)
    base, stream, test = (df.iloc[:int(a * n)], df.iloc[int(a * n):int(b * n)],
                          df.iloc[int(b * n):int(c * n)])
    test = test[test["user"].isin(set(base["user"]) | set(stream["user"]))]
    stream = stream[stream["item"].isin(set(base["item"]))]  # new items are refused
    users = sorted(set(test["user"]))
    base_users = sorted(set(test["user"]) & set(base["user"]))
    out = {"model": "HybridRecommender(random_state=seed)", "split": args.split,
           "protocol": f"fit {a:.0%}, stream to {b:.0%} in 10 chunks, test to {c:.0%}",
           "n_test_users": len(users), "n_test_users_in_base": len(base_users),
           "omp_threads": os.environ.get("OMP_NUM_THREADS"), "seeds": {}, "mean": {}}
    saved = fold.HYB_FOLD_EPOCHS, fold.HYB_REPLAY
    try:
        for seed in args.seeds:
            model = HybridRecommender(random_state=seed).fit(base)
            refit = HybridRecommender(random_state=seed).fit(pd.concat([base, stream]))
            full, full_b = ndcg(refit, users, test), ndcg(refit, base_users, test)
            row = {"refit": round(full, 4)}
            for v in args.variants:
                fold.HYB_FOLD_EPOCHS, fold.HYB_REPLAY = (int(x) for x in v.split(":"))
                m = copy.deepcopy(model)
                t0 = time.perf_counter()
                for part in np.array_split(np.arange(len(stream)), 10):
                    m.partial_fit(stream.iloc[part])
                row[v] = {"ratio": round(ndcg(m, users, test) / full, 4),
                          "ratio_base_users": round(ndcg(m, base_users, test) / full_b, 4),
                          "partial_fit_s": round(time.perf_counter() - t0, 2)}
            row["load_avg_1min"] = round(os.getloadavg()[0], 2)
            out["seeds"][str(seed)] = row
            print(seed, row, flush=True)
    finally:
        fold.HYB_FOLD_EPOCHS, fold.HYB_REPLAY = saved
    for v in args.variants:
        out["mean"][v] = {k: round(float(np.mean([r[v][k] for r in out["seeds"].values()])), 4)
                          for k in ("ratio", "ratio_base_users")}
    print(out["mean"], flush=True)
    path = Path(args.out or f"benchmarks/results/online_hybrid_{args.split}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _freshness_run(model, mode: str, concurrency: int, rounds: int, tmp: str) -> dict:
    """One server (uvicorn in this process) over ``model``; ``concurrency`` clients."""
    import copy
    import socket
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn

    from maasrec.client import Client
    from maasrec.serving import create_app
    from maasrec.serving.events import EventLog, events_frame

    db = os.path.join(tmp, f"events-{mode}.db")
    served = copy.copy(model)
    if mode == "history_only":
        served._partial_fit = lambda *a, **k: None  # seen_ is merged by online.partial_fit
    app = create_app(served, events_db=db)
    app.state.maasrec.events.defer = mode == "deferred"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    users = [int(u) for u in model.user_vocab_.ids[:concurrency]]
    pending = []

    def worker(w: int) -> list[tuple[float, float, bool]]:
        out = []
        with Client(url, retries=0, timeout=30) as c:
            for r in range(rounds):
                item = c.recommend(users[w], k=1).items[0]
                t0 = time.perf_counter()
                ack = c.events([{"user": users[w], "item": item, "event_id": f"f{w}-{r}"}])
                t1 = time.perf_counter()
                gone = item not in list(c.recommend(users[w], k=10).items)
                out.append((t1 - t0, time.perf_counter() - t0, gone))
                pending.append(ack.get("pending", 0))
        return out

    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        rows = [x for part in ex.map(worker, range(concurrency)) for x in part]
    wall = time.perf_counter() - t_start
    # the eventual model: one last event with sync=True, then compared with partial_fit
    t0 = time.perf_counter()
    with Client(url, retries=0, timeout=60) as c:
        c.events([{"user": users[0], "item": int(model.item_vocab_.ids[0]),
                   "event_id": "sync"}], sync=True)
    t_sync = time.perf_counter() - t0
    final = app.state.maasrec.holder.state.model
    server.should_exit = True
    thread.join(30)
    res = {"rows": rows, "wall": wall, "pending_max": int(max(pending)), "sync_s": t_sync,
           "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if mode != "history_only":
        exact = copy.copy(model).partial_fit(events_frame(EventLog(db).read()))
        res["diff"] = float(np.abs(final.B_ - exact.B_).max())
    return res


def _freshness_summary(mode: str, runs: list[dict]) -> dict:
    rows = [r for run in runs for r in run["rows"]]
    ack = np.array([r[0] for r in rows]) * 1000
    fresh = np.array([r[1] for r in rows]) * 1000
    res = {"mode": mode, "events": len(rows), "all_reflected": bool(all(r[2] for r in rows))}
    if "diff" in runs[0]:
        res["eventual_B_max_abs_diff_vs_partial_fit"] = max(run["diff"] for run in runs)
    res.update({
        "ack_ms_p50": round(float(np.percentile(ack, 50)), 2),
        "ack_ms_p99": round(float(np.percentile(ack, 99)), 2),
        "fresh_ms_p50": round(float(np.percentile(fresh, 50)), 2),
        "fresh_ms_p99": round(float(np.percentile(fresh, 99)), 2),
        # the measure: acknowledged (the answer to the event received) -> the
        # changed recommendation received
        "ack_to_fresh_ms_p50": round(float(np.percentile(fresh - ack, 50)), 2),
        "ack_to_fresh_ms_p99": round(float(np.percentile(fresh - ack, 99)), 2),
        "fresh_ms_p99_per_repeat": [round(float(np.percentile(
            np.array([r[1] for r in run["rows"]]) * 1000, 99)), 1) for run in runs],
        "events_per_s": round(len(rows) / sum(run["wall"] for run in runs), 1),
        "pending_groups_at_ack_max": max(run["pending_max"] for run in runs),
        "last_sync_ms_max": round(max(run["sync_s"] for run in runs) * 1000, 1),
        "load_avg_1min_per_repeat": [run["load"] for run in runs]})
    print(res, flush=True)
    return res


def freshness(argv=None) -> dict:
    """Event acknowledged -> changed recommendation, over HTTP on loopback.

    EASE (defaults) on MovieLens 100K served by uvicorn in this process with an event log
    in a temporary directory; ``--concurrency`` client threads each repeat: take a
    user's top item, post an event on it (``/v1/events``), ask ``/v1/recommend`` again
    and check that the item is gone (every round must see it gone). Reported per mode,
    all in one run (same model, same machine; load average before and after each):
    p50/p99 of the event round trip (sent -> acknowledged: durable and in the served
    histories), of sent -> the changed recommendation received, and of acknowledged ->
    the changed recommendation received (``ack_to_fresh``). The 16 client threads run in
    the server's process (one interpreter lock): the latencies include that contention.

    The modes run in turn ``--repeats`` times (the load of a shared machine drifts) and
    their latencies are pooled. Modes: ``exact`` (the model-wide Woodbury update of each group applied before the
    answer: the behaviour before deferral), ``deferred`` (the default service: the
    histories at once, the model-wide update batched in the background), and
    ``history_only`` (no model-wide update at all: the floor). For the first two, the
    model served after a last ``sync`` event is compared with ``partial_fit`` of the
    logged events (max |ΔB|).

    Run::

        OMP_NUM_THREADS=1 python -c "from benchmarks.bench_online import freshness; freshness()"
    """
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=20, help="events per client thread")
    ap.add_argument("--modes", nargs="*", default=["exact", "deferred", "history_only"])
    ap.add_argument("--repeats", type=int, default=3,
                    help="the modes run in turn this many times (pooled: the machine's "
                         "load drifts)")
    ap.add_argument("--out", default="benchmarks/results/online_freshness.json")
    args = ap.parse_args(argv)
    data = datasets.load_movielens("100k").interactions
    model = EASE().fit(data)
    out = {"model": "EASE() on MovieLens 100K", "concurrency": args.concurrency,
           "rounds": args.rounds, "repeats": args.repeats,
           "omp_threads": os.environ.get("OMP_NUM_THREADS"),
           "cpu_count": os.cpu_count(), "modes": {}}
    runs = {mode: [] for mode in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for mode in args.modes:
                sub = os.path.join(tmp, f"{rep}")
                os.makedirs(sub, exist_ok=True)
                runs[mode].append(_freshness_run(model, mode, args.concurrency, args.rounds,
                                                 sub))
    for mode in args.modes:
        out["modes"][mode] = _freshness_summary(mode, runs[mode])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out
