"""Quality and speed of maasrec's HybridRecommender and NeuMF (issue 7, hybrid part).

Commands (each writes ``benchmarks/results/neural_<command>.json``, merges it into
``benchmarks/results/neural.json`` and prints a table):

``quality``
    MovieLens 1M, per-user random 8:1:1 split (``--seeds``, default 0). Every model is
    fitted on train (neural models early-stop on the validation part) and evaluated by
    full ranking on test with ``maasrec.metrics.evaluate`` (train and validation items
    excluded): NDCG@10, Recall@10 with bootstrap intervals, and NDCG@10 on the users
    with at most 20 training interactions. Models: HybridRecommender with the
    defaults (id + all-MiniLM-L6-v2 item text), the same without text (id only), the
    previous default with a tied history (``TIED_SETTING``), NeuMF (full ranking, and
    ``protocol="sampled"`` with 99 negatives as in the NCF paper), and the classical baselines with their validation-tuned parameters
    (``benchmarks/results/classical_tune.json``): EASE, ALS, BPRMF, ItemKNN, PureSVD,
    Popularity. ``--models`` reruns some of them and keeps the other rows of the previous
    ``neural_quality.json`` (marked ``kept_from``).
``coldstart``
    Cold items: ``cold_item_split`` holds out 10% of the items (all their
    interactions); the rest is split per user 8:1:1. The hybrid is fitted on the warm
    train part (its item vocabulary has no cold item), then ``add_items`` adds the cold
    items from their text. Reported: NDCG@10 of the cold items ranked among the cold
    items, and among the whole catalogue; the warm test part; baselines: random
    scores, popularity (cold items have none: every cold item ties), and a
    content-only scorer (cosine of the item's MiniLM vector with the mean vector of the
    user's training items).
``speed``
    MovieLens 1M, defaults: seconds per epoch and training throughput (training
    interactions processed per second), text encoding time (empty cache vs cached),
    ``recommend`` top-10 for all 6,040 users, ``add_items`` of 370 items, repeated
    ``--repeats`` times (min and median reported, with the load average: the machine is
    shared).
``sparse``
    Users with at most 20 training interactions: the default hybrid with and without
    text, the previous default (tied history, ``TIED_SETTING``), and tuned EASE and
    ALS; validation and test NDCG@10 of those users and test NDCG@10 of all users,
    bootstrap intervals and paired tests of the default hybrid against each (about 15
    minutes).
``tune``
    The validation grids behind the defaults (``--grid`` picks a named grid; ``history``
    is the tie_history / dim / weight decay / tanh grid, with the validation NDCG@10 of
    the sparse users as well).

Data: ``maasrec.datasets.load_movielens("1m")`` with ``$MAASREC_DATA`` (or
``--data-home``). Text vectors come from the embedding cache (``$MAASREC_CACHE``).

Run: ``python benchmarks/bench_neural.py quality`` (about 30 minutes on 2 busy cores),
``coldstart`` (10 minutes), ``speed`` (15 minutes), ``tune`` (hours).

The sequential part (SASRec vs RecBole) is ``benchmarks/bench_sequential.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
K = 10
SPARSE_MAX = 20

logger = logging.getLogger("bench_neural")


# -- helpers -------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent))
    try:
        from benchmarks.machine import machine_info

        return machine_info()
    except Exception:  # pragma: no cover - run outside the checkout
        return {"loadavg": list(os.getloadavg())}


def _load(data_home: str | None):
    from maasrec.datasets import load_movielens

    return load_movielens("1m", data_home=data_home)


def _split(X, seed: int):
    from maasrec.data.split import random_split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return random_split(X, (0.8, 0.1, 0.1), random_state=seed)


def _eval(model, train, test, valid=None, users=None, protocol="full") -> dict[str, Any]:
    from maasrec.metrics import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate(model, train, test, k=K, metrics=["ndcg", "recall", "hit"], exclude=valid,
                       users=users, protocol=protocol, n_bootstrap=500, random_state=0)
    return {"ndcg@10": res["ndcg@10"], "ndcg@10_ci": list(res.ci["ndcg@10"]),
            "recall@10": res["recall@10"], "hit@10": res["hit@10"], "n_users": res.n_users}


def _tuned_classical() -> dict[str, dict]:
    """The validation-tuned parameters of the classical models (bench_classical tune)."""
    path = RESULTS / "classical_tune.json"
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    d = json.loads(path.read_text())
    for name, runs in d.get("results", {}).get("1m", {}).items():
        if name.startswith("implicit"):
            continue
        best = max(runs, key=lambda r: r.get("valid_ndcg@10", -1))
        out[name] = best.get("full_params", best.get("params", {}))
    return out


def _write(name: str, payload: dict) -> Path:
    """Write ``neural_<name>.json`` and merge the payload into ``neural.json`` (one file
    with the latest run of every command)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"neural_{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    logger.info("wrote %s", path)
    combined = RESULTS / "neural.json"
    merged: dict[str, Any] = {}
    if combined.is_file():
        try:
            merged = json.loads(combined.read_text())
        except ValueError:
            merged = {}
    merged[name] = payload
    combined.write_text(json.dumps(merged, indent=1, default=float) + "\n")
    return path


def _kept_rows(name: str, rows: list[dict]) -> list[dict]:
    """Rows of the previous ``neural_<name>.json`` for models not in ``rows`` (a partial
    rerun with ``--models`` keeps the others, marked with ``kept_from``)."""
    path = RESULTS / f"neural_{name}.json"
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    done = {(r["model"], r.get("seed")) for r in rows}
    kept = []
    for r in old.get("rows", []):
        if (r["model"], r.get("seed")) not in done:
            kept.append({**r, "kept_from": r.get("kept_from", old.get("finished"))})
    return kept


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return "" if v is None else str(v)

    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols),
             "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(fmt(r.get(c)).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


# -- model factories -----------------------------------------------------------------------
#: The HybridRecommender defaults are what `quality` measures; extra settings of the
#: runs are only the epoch budget and the seed.
HYBRID_RUN: dict[str, Any] = {}
NEUMF_RUN: dict[str, Any] = {}


def _hybrid(seed: int, **kw):
    from maasrec.neural import HybridRecommender

    return HybridRecommender(random_state=seed, **{**HYBRID_RUN, **kw})


def _neumf(seed: int, **kw):
    from maasrec.neural import NeuMF

    return NeuMF(random_state=seed, **{**NEUMF_RUN, **kw})


def _classical(name: str, params: dict, seed: int):
    from maasrec import models

    cls = getattr(models, name)
    params = {k: v for k, v in params.items() if k in cls._get_param_names()}
    if "random_state" in cls._get_param_names():
        params["random_state"] = seed
    return cls(**params)


# -- quality ---------------------------------------------------------------------------------
def _quality_seed(seed: int, X, feats, tuned: dict, args) -> list[dict]:
    rows: list[dict] = []
    train, valid, test = _split(X, seed)
    counts = train.user_counts()
    sparse_users = train.user_vocab.ids[(counts > 0) & (counts <= SPARSE_MAX)]
    specs: list[tuple[str, Any, dict]] = [
        ("HybridRecommender (id + text)", lambda: _hybrid(seed), {"item_features": feats}),
        ("HybridRecommender (id only)", lambda: _hybrid(seed), {}),
        ("HybridRecommender (id + text, previous default: tied, linear, dim 64)",
         lambda: _hybrid(seed, **TIED_SETTING), {"item_features": feats}),
        ("NeuMF", lambda: _neumf(seed), {}),
    ]
    for name in ("EASE", "ALS", "BPRMF", "ItemKNN", "PureSVD", "Popularity"):
        if args.models and name not in args.models:
            continue
        specs.append((f"{name} (tuned)", lambda name=name: _classical(
            name, tuned.get(name, {}), seed), {}))
    for label, factory, fit_kw in specs:
        if args.models and not any(m in label for m in args.models):
            continue
        model = factory()
        neural = hasattr(model, "training_log_") or "item_encoders" in model.get_params()
        t = time.perf_counter()
        if neural:
            model.fit(train, validation=valid, **fit_kw)
        else:
            model.fit(train, **fit_kw)
        fit_s = time.perf_counter() - t
        row = {"model": label, "seed": seed, "fit_s": round(fit_s, 1),
               **{f"test_{k}": v for k, v in _eval(model, train, test, valid).items()}}
        row["sparse_ndcg@10"] = _eval(model, train, test, valid, users=sparse_users)["ndcg@10"]
        if neural:
            h = model.training_log_
            row.update(valid_ndcg=h.get("best_metric"), best_epoch=h.get("best_epoch"),
                       epochs=len(h.get("losses", [])),
                       s_per_epoch=float(np.median(h["seconds"])) if h.get("seconds") else None,
                       params={k: v for k, v in model.get_params(deep=False).items()
                               if isinstance(v, (int, float, str, bool, type(None)))})
        if label == "NeuMF":
            sampled = _eval(model, train, test, valid, protocol="sampled")
            row["sampled_ndcg@10"] = sampled["ndcg@10"]
            row["sampled_hit@10"] = sampled["hit@10"]
        logger.info("%s", json.dumps(row, default=float))
        rows.append(row)
    return rows


def cmd_quality(args) -> dict:
    ds = _load(args.data_home)
    X, feats = ds.interactions, ds.item_features
    tuned = _tuned_classical()
    rows = []
    for seed in args.seeds:
        rows += _quality_seed(seed, X, feats, tuned, args)
    kept = _kept_rows("quality", rows) if args.models else []
    rows += kept
    payload = {"benchmark": "neural quality",
               "protocol": ("MovieLens 1M, per-user random 8:1:1 (seeds " +
                            ", ".join(map(str, args.seeds)) + "); neural models early-stop on "
                            "validation NDCG@10; test NDCG@10 by full ranking excluding train "
                            "and validation items; 'sparse' = users with <= 20 training "
                            "interactions; NeuMF also with protocol='sampled' (99 negatives)"),
               "machine": _machine(), "rows": rows, "argv": sys.argv[1:],
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if kept:
        payload["kept_rows"] = ("rows with 'kept_from' were not rerun (--models); they come "
                                "from the earlier run named there")
    cols = ["model", "seed", "test_ndcg@10", "test_recall@10", "sparse_ndcg@10",
            "valid_ndcg", "fit_s"]
    print(_table(rows, cols))
    neu = [r for r in rows if r["model"] == "NeuMF"]
    if neu:
        print("\nNeuMF sampled protocol (99 negatives): " + ", ".join(
            f"NDCG@10 {r['sampled_ndcg@10']:.4f} HR@10 {r['sampled_hit@10']:.4f}" for r in neu))
    payload["table"] = _table(rows, cols).splitlines()
    _write("quality", payload)
    return payload


# -- cold start ------------------------------------------------------------------------------
class _View:
    """A scoring view of a model restricted to some item columns (for evaluate)."""

    def __init__(self, model, cols: np.ndarray, item_vocab, score_fn=None):
        self.model = model
        self.cols = cols
        self.user_vocab_ = model.user_vocab_
        self.item_vocab_ = item_vocab
        self.score_fn = score_fn

    def _score_users(self, idx):
        s = self.score_fn(idx) if self.score_fn is not None else self.model._score_users(idx)
        return np.ascontiguousarray(np.asarray(s)[:, self.cols], dtype=np.float32)


def _coldstart_seed(seed: int, X, feats) -> list[dict]:
    from maasrec.data import Interactions
    from maasrec.data.split import cold_item_split
    from maasrec.data.vocab import IdVocab
    from maasrec.encoders import TextEncoder
    from maasrec.metrics import evaluate

    rows: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm_all, cold_test = cold_item_split(X, test_size=0.1, random_state=seed)
        # the warm part with its own vocabulary: the model never sees a cold item id
        warm_all = Interactions.from_pandas(warm_all.to_pandas())
        train, valid, test_warm = _split(warm_all, seed)
    cold_ids = np.setdiff1d(X.item_vocab.ids, warm_all.item_vocab.ids)
    t = time.perf_counter()
    model = _hybrid(seed).fit(train, item_features=feats, validation=valid)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    model.add_items(feats)
    add_s = time.perf_counter() - t
    iv = model.item_vocab_
    cold_cols = iv.index(cold_ids)
    cold_vocab = IdVocab(cold_ids, name="item")
    ctest = cold_test.with_vocab(model.user_vocab_, iv, unknown="ignore")
    train_m = train.with_vocab(model.user_vocab_, iv)
    valid_m = valid.with_vocab(model.user_vocab_, iv)
    ctest_cold = cold_test.with_vocab(model.user_vocab_, cold_vocab, unknown="ignore")

    def ev(scorer, among_cold=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if among_cold:
                # train has no cold item: aligned to the cold items it excludes nothing
                return evaluate(scorer, train_m, ctest_cold, k=K, metrics=["ndcg", "recall"],
                                n_bootstrap=500, random_state=0)
            return evaluate(scorer, train_m, ctest, k=K, metrics=["ndcg", "recall"],
                            exclude=valid_m, n_bootstrap=500, random_state=0)

    rng = np.random.default_rng(seed)
    n_items = len(iv)

    def random_scores(idx):
        return rng.random((len(idx), n_items), dtype=np.float32)

    pop = np.asarray((model.seen_ > 0).sum(axis=0), dtype=np.float32).ravel()

    def pop_scores(idx):
        return np.broadcast_to(pop, (len(idx), n_items))

    enc = TextEncoder()
    tv = np.zeros((n_items, enc.hidden_size), dtype=np.float32)
    aligned = feats.align(iv)
    mask = aligned.text_mask
    tv[mask] = enc.encode_base([str(x) for x in aligned.text[mask]])
    seen = model.seen_

    def content_scores(idx):
        prof = seen[idx] @ tv
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-9)
        return prof @ tv.T

    result = {"seed": seed, "n_cold_items": len(cold_ids), "fit_s": round(fit_s, 1),
              "add_items_s": round(add_s, 3), "cold_test_users": len(np.unique(
                  ctest_cold.user_indices))}
    for label, fn in (("HybridRecommender", None), ("random", random_scores),
                      ("popularity", pop_scores), ("content (MiniLM cosine)",
                                                    content_scores)):
        r_cold = ev(_View(model, cold_cols, cold_vocab, fn))
        r_full = ev(_View(model, np.arange(n_items), iv, fn), among_cold=False)
        row = {"model": label, "seed": seed,
               "cold_among_cold_ndcg@10": r_cold["ndcg@10"],
               "cold_among_cold_ci": list(r_cold.ci["ndcg@10"]),
               "cold_among_all_ndcg@10": r_full["ndcg@10"],
               "cold_among_cold_recall@10": r_cold["recall@10"]}
        if label == "HybridRecommender":
            row["warm_test_ndcg@10"] = _eval(model, train_m, test_warm.with_vocab(
                model.user_vocab_, iv, unknown="ignore"), valid_m)["ndcg@10"]
        rows.append(row)
        logger.info("%s", json.dumps(row, default=float))
    rows[-4]["info"] = result
    return rows


def cmd_coldstart(args) -> dict:
    ds = _load(args.data_home)
    X, feats = ds.interactions, ds.item_features
    rows = []
    for seed in args.seeds:
        rows += _coldstart_seed(seed, X, feats)
    cols = ["model", "seed", "cold_among_cold_ndcg@10", "cold_among_all_ndcg@10",
            "warm_test_ndcg@10"]
    print(_table(rows, cols))
    payload = {"benchmark": "neural coldstart",
               "protocol": ("MovieLens 1M; cold_item_split(test_size=0.1) holds out 10% of the "
                            "items with all their interactions; the rest is split per user 8:1:1 "
                            "(warm train/valid/test); HybridRecommender defaults fitted on warm "
                            "train (early stopping on warm valid), cold items added with "
                            "add_items from their text. cold_among_cold: each test user's cold "
                            "items ranked among the cold items only; cold_among_all: among the "
                            "whole catalogue (train and validation items excluded)"),
               "machine": _machine(), "rows": rows, "table": _table(rows, cols).splitlines(),
               "argv": sys.argv[1:], "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write("coldstart", payload)
    return payload


# -- speed -------------------------------------------------------------------------------------
def cmd_speed(args) -> dict:
    import torch

    from maasrec.encoders import TextEncoder

    ds = _load(args.data_home)
    X, feats = ds.interactions, ds.item_features
    train, _, _ = _split(X, 0)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "runs": []}
    texts = [str(t) for t in feats.align(train.item_vocab).text]
    with tempfile.TemporaryDirectory() as d:
        enc = TextEncoder(cache_dir=d)
        t = time.perf_counter()
        enc.encode_base(texts)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        enc.encode_base(texts)
        warm = time.perf_counter() - t
    out["text_encoding"] = {"items": len(texts), "empty_cache_s": round(cold, 2),
                            "cached_s": round(warm, 3), "loadavg": list(os.getloadavg())}
    users = list(train.user_vocab.ids)
    for label, factory, fit_kw in (
            ("HybridRecommender (id + text)", lambda: _hybrid(0, epochs=args.epochs,
                                                              patience=None),
             {"item_features": feats}),
            ("NeuMF", lambda: _neumf(0, epochs=max(1, args.epochs // 2), patience=None), {})):
        for rep in range(args.repeats):
            model = factory()
            load0 = list(os.getloadavg())
            t = time.perf_counter()
            model.fit(train, **fit_kw)
            fit_s = time.perf_counter() - t
            h = model.training_log_
            spe = float(np.median(h["seconds"]))
            t = time.perf_counter()
            model.recommend(users, k=K)
            rec_s = time.perf_counter() - t
            run = {"model": label, "repeat": rep, "fit_s": round(fit_s, 2),
                   "epochs": len(h["losses"]), "s_per_epoch": round(spe, 3),
                   "interactions_per_s": round(train.nnz / spe),
                   "recommend_all_users_s": round(rec_s, 3), "loadavg": load0}
            if label.startswith("Hybrid"):
                few = feats.align(X.item_vocab)
                t = time.perf_counter()
                model.add_items(few)  # every item is known: the cost of the no-op path
                run["add_items_known_s"] = round(time.perf_counter() - t, 4)
            out["runs"].append(run)
            logger.info("%s", json.dumps(run))
    rows = []
    for label in sorted({r["model"] for r in out["runs"]}):
        rs = [r for r in out["runs"] if r["model"] == label]
        rows.append({"model": label,
                     "s/epoch min": min(r["s_per_epoch"] for r in rs),
                     "s/epoch median": float(np.median([r["s_per_epoch"] for r in rs])),
                     "interactions/s max": max(r["interactions_per_s"] for r in rs),
                     "top-10 all users s min": min(r["recommend_all_users_s"] for r in rs),
                     "load": rs[0]["loadavg"][0]})
    cols = list(rows[0])
    print(_table(rows, cols))
    print(f"text encoding of {len(texts)} items: {out['text_encoding']}")
    payload = {"benchmark": "neural speed",
               "protocol": ("MovieLens 1M train part (805k interactions) of the 8:1:1 split; "
                            f"{args.epochs} epochs without validation; {args.repeats} repeats; "
                            "interactions/s = training interactions / median epoch time"),
               "machine": _machine(), **out, "table": _table(rows, cols).splitlines(),
               "argv": sys.argv[1:], "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write("speed", payload)
    return payload


# -- sparse users ------------------------------------------------------------------------------
#: The previous default (a tied history: users pool the scored item vectors, linear
#: user layer, dim 64), measured beside the defaults by ``quality`` and ``sparse``.
TIED_SETTING: dict[str, Any] = {"tie_history": True, "history_activation": "linear", "dim": 64}


def _sparse_eval(model, train, valid, test, sparse_users):
    from maasrec.metrics import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = evaluate(model, train, valid, k=K, metrics=["ndcg"], users=sparse_users,
                     n_bootstrap=0)
        r = evaluate(model, train, test, k=K, metrics=["ndcg"], exclude=valid,
                     users=sparse_users, n_bootstrap=500, random_state=0)
        full = evaluate(model, train, test, k=K, metrics=["ndcg"], exclude=valid,
                        n_bootstrap=500, random_state=0)
    return v, r, full


def cmd_sparse(args) -> dict:
    from maasrec.metrics import paired_test

    ds = _load(args.data_home)
    X, feats = ds.interactions, ds.item_features
    tuned = _tuned_classical()
    rows = []
    ref = "HybridRecommender (id + text, defaults)"
    for seed in args.seeds:
        train, valid, test = _split(X, seed)
        counts = train.user_counts()
        sparse_users = train.user_vocab.ids[(counts > 0) & (counts <= SPARSE_MAX)]
        results, full_results = {}, {}
        specs = [
            (ref, lambda seed=seed: _hybrid(seed), {"item_features": feats}),
            ("HybridRecommender (id only, defaults)", lambda seed=seed: _hybrid(seed), {}),
            ("HybridRecommender (id + text, previous default: tied, linear, dim 64)",
             lambda seed=seed: _hybrid(seed, **TIED_SETTING), {"item_features": feats}),
            ("EASE (tuned)", lambda seed=seed: _classical("EASE", tuned.get("EASE", {}), seed), None),
            ("ALS (tuned)", lambda seed=seed: _classical("ALS", tuned.get("ALS", {}), seed), None),
        ]
        for label, factory, fit_kw in specs:
            model = factory()
            load_before = os.getloadavg()[0]
            t = time.perf_counter()
            if fit_kw is None:
                model.fit(train)
            else:
                model.fit(train, validation=valid, **fit_kw)
            fit_s = time.perf_counter() - t
            v, r, full = _sparse_eval(model, train, valid, test, sparse_users)
            results[label], full_results[label] = r, full
            row = {"model": label, "seed": seed, "sparse_users": int(r.n_users),
                   "valid_sparse_ndcg@10": v["ndcg@10"], "test_sparse_ndcg@10": r["ndcg@10"],
                   "test_sparse_ci": list(r.ci["ndcg@10"]), "test_ndcg@10": full["ndcg@10"],
                   "test_ci": list(full.ci["ndcg@10"]), "fit_s": round(fit_s, 1),
                   "load_at_fit": round(load_before, 2)}
            if hasattr(model, "training_log_"):
                row.update(valid_ndcg=model.training_log_.get("best_metric"),
                           best_epoch=model.training_log_.get("best_epoch"))
            rows.append(row)
            logger.info("%s", json.dumps(row, default=float))
        for other in [lab for lab, *_ in specs if lab != ref]:
            for part, res in (("sparse", results), ("all", full_results)):
                pt = paired_test(res[ref], res[other], "ndcg@10", random_state=0)
                rows.append({"model": f"paired ({part} users): hybrid defaults - {other}",
                             "seed": seed, "mean_diff": pt.mean_diff, "diff_ci": list(pt.ci),
                             "t_pvalue": pt.t_pvalue, "wilcoxon_pvalue": pt.wilcoxon_pvalue})
                logger.info("%s", json.dumps(rows[-1], default=float))
    cols = ["model", "seed", "valid_sparse_ndcg@10", "test_sparse_ndcg@10", "test_ndcg@10",
            "mean_diff", "t_pvalue"]
    print(_table(rows, cols))
    payload = {"benchmark": "neural sparse users",
               "protocol": ("MovieLens 1M, per-user random 8:1:1; NDCG@10 (full ranking) on the "
                            f"users with <= {SPARSE_MAX} training interactions, on validation "
                            "and on test (train+validation excluded), and on all test users; "
                            "paired tests per user on test"),
               "setting": {"defaults": "HybridRecommender()", "tied": TIED_SETTING},
               "machine": _machine(), "rows": rows,
               "table": _table(rows, cols).splitlines(), "argv": sys.argv[1:],
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write("sparse", payload)
    return payload


# -- tune -------------------------------------------------------------------------------------
GRIDS: dict[str, list[dict]] = {
    "hybrid": [
        {"learning_rate": lr, "weight_decay": wd, "dim": dim}
        for lr in (1e-3, 3e-3) for wd in (0.0, 1e-5, 3e-5) for dim in (64, 128)],
    # the history-tower runs behind tie_history (validation only; neural_tune_history.json)
    "history": [
        {"tie_history": False},
        {"tie_history": False, "dim": 128},
        {"tie_history": False, "dim": 256},
        {"tie_history": False, "history_activation": "tanh"},
        {"tie_history": False, "weight_decay": 1e-4},
        {"tie_history": False, "dim": 128, "weight_decay": 1e-4},
        {"tie_history": False, "history_activation": "tanh", "dim": 128},
        {"tie_history": False, "weight_decay": 3e-4},
        {"tie_history": False, "weight_decay": 1e-3},
        {"tie_history": False, "history_activation": "tanh", "dim": 128, "weight_decay": 1e-4},
    ],
    "neumf": [
        {"learning_rate": lr, "dim": dim, "n_negatives": nn}
        for lr in (1e-3, 3e-3) for dim in (32, 64) for nn in (4, 8)],
}


def cmd_tune(args) -> dict:
    from maasrec.metrics import evaluate

    ds = _load(args.data_home)
    X, feats = ds.interactions, ds.item_features
    train, valid, _ = _split(X, 0)
    counts = train.user_counts()
    sparse_users = train.user_vocab.ids[(counts > 0) & (counts <= SPARSE_MAX)]
    rows = []
    grid = GRIDS[args.grid]
    for params in grid:
        t = time.perf_counter()
        if args.grid in ("hybrid", "history"):
            model = _hybrid(0, **params)
            model.fit(train, item_features=feats, validation=valid)
        else:
            model = _neumf(0, **params)
            model.fit(train, validation=valid)
        h = model.training_log_
        row = {"params": params, "valid_ndcg@10": h.get("best_metric"),
               "best_epoch": h.get("best_epoch"), "epochs": len(h["losses"]),
               "s_per_epoch": float(np.median(h["seconds"])),
               "fit_s": round(time.perf_counter() - t, 1), "load": list(os.getloadavg())}
        if args.grid == "history":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["valid_sparse_ndcg@10"] = evaluate(
                    model, train, valid, k=K, metrics=["ndcg"], users=sparse_users,
                    n_bootstrap=0)["ndcg@10"]
        rows.append(row)
        logger.info("%s", json.dumps(row))
    payload = {"benchmark": f"neural tune ({args.grid})",
               "protocol": ("MovieLens 1M per-user random 8:1:1 (seed 0); validation NDCG@10 "
                            "(all users; 'sparse': users with <= 20 training interactions)"),
               "machine": _machine(), "rows": rows, "argv": sys.argv[1:],
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write(f"tune_{args.grid}", payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("quality", "coldstart", "speed", "sparse", "tune"):
        s = sub.add_parser(name)
        s.add_argument("--data-home", default=None)
        s.add_argument("--seeds", type=int, nargs="+", default=[0])
        if name == "quality":
            s.add_argument("--models", nargs="*", default=None,
                           help="substrings of the model labels to run (default all)")
        if name == "speed":
            s.add_argument("--repeats", type=int, default=3)
            s.add_argument("--epochs", type=int, default=5)
        if name == "tune":
            s.add_argument("--grid", choices=sorted(GRIDS), default="hybrid")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("maasrec.metrics").setLevel(logging.WARNING)
    {"quality": cmd_quality, "coldstart": cmd_coldstart, "speed": cmd_speed,
     "sparse": cmd_sparse, "tune": cmd_tune}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
