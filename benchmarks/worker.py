"""Run one maasrec model in its own process: ``python -m benchmarks.worker JOB.json``.

The harness starts one worker per model run (so peak memory is per run) with the
thread variables already set. Job kinds:

``lists`` (default)
    Fit on ``train`` (``fit_repeats`` fresh fits, timed; with ``item_features`` built
    from ``item_text`` and ``validation=`` the rows of ``validation`` when those are
    given), recommend ``k`` items to every
    user of ``target`` excluding the user's train items and the ``exclude`` rows (the
    validation part), write ``user,rank,item,score`` -- the same path as the peers --
    and, when ``consistency`` is given, also run :func:`maasrec.metrics.evaluate` on the
    fitted model (its per-user values go to ``per_user_out``).
``scaling_fit``
    Fit on synthetic arrays (``.npz``) and report fit times and the fit's peak memory.
``scaling_recommend``
    Load a saved model and recommend to its first ``n_users`` users: peak memory.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .machine import PhasePeak, loadavg, peak_rss_mib, rss_mib


def resolve_model_class(name: str) -> type:
    """A maasrec recommender class by name (``maasrec.models``, ``maasrec.neural``, ``maasrec``)."""
    tried = []
    for mod_name in ("maasrec.models", "maasrec.neural", "maasrec"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            tried.append(f"{mod_name} ({exc})")
            continue
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "recommend"):
            return cls
        tried.append(mod_name)
    import maasrec.models as models

    raise LookupError(f"maasrec has no recommender class {name!r} (looked in {tried}); "
                      f"maasrec.models has {list(models.__all__)}")


def build_model(name: str, params: dict[str, Any], seed: int):
    """Instantiate ``name`` with ``params`` (``random_state`` = seed unless given)."""
    cls = resolve_model_class(name)
    p = dict(params)
    names = cls._get_param_names() if hasattr(cls, "_get_param_names") else []
    if "random_state" in names and "random_state" not in p:
        p["random_state"] = seed
    return cls(**p)


def _read(path: str | None):
    import pandas as pd

    return None if path is None else pd.read_csv(path)


def _train_interactions(df):
    from maasrec.data.interactions import Interactions

    return Interactions.from_pandas(
        df, "user", "item", "rating" if "rating" in df.columns else None,
        "timestamp" if "timestamp" in df.columns else None, duplicates="last")


def _fit_extras(job: dict[str, Any]) -> dict[str, Any]:
    """``item_features`` (item text and/or attributes) and ``validation`` keyword arguments
    of ``fit``."""
    import pandas as pd

    from maasrec.data.features import ItemFeatures

    extras: dict[str, Any] = {}
    frame, fields = None, []
    if job.get("item_text"):
        frame = pd.read_csv(job["item_text"], keep_default_na=False)
    if job.get("item_attributes"):
        attrs = pd.read_csv(job["item_attributes"], keep_default_na=False,
                            dtype={"field": str, "label": str})
        fields = sorted(attrs["field"].unique())
        # one row per item, a list of labels per field (NaN where an item has none, or
        # for text-only items after the merge: ItemFeatures reads NaN as missing)
        wide = (attrs.groupby(["item", "field"], sort=True)["label"].agg(list)
                .unstack("field").reset_index())
        frame = wide if frame is None else frame.merge(wide, on="item", how="outer")
    if frame is not None:
        extras["item_features"] = ItemFeatures.from_pandas(
            frame, "item", text="text" if job.get("item_text") else None,
            multi_hot=fields or None)
    if job.get("validation"):
        extras["validation"] = _train_interactions(_read(job["validation"]))
    return extras


def _fit_repeated(job: dict[str, Any], X) -> tuple[Any, list[float], float | None]:
    extras = _fit_extras(job)
    repeats = int(job.get("fit_repeats", 1))
    budget = float(job.get("repeat_budget_s", float("inf")))
    times: list[float] = []
    extra: float | None = None
    model = None
    for _ in range(max(1, repeats)):
        model = build_model(job["model"], job.get("params", {}), int(job.get("seed", 0)))
        with PhasePeak() as mem:
            t0 = time.perf_counter()
            model.fit(X, **extras)
            times.append(time.perf_counter() - t0)
        if mem.extra_mib is not None:
            extra = max(extra or 0.0, mem.extra_mib)
        if sum(times) >= budget:
            break
    return model, times, extra


def run_lists(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    import maasrec

    train_df = _read(job["train"])
    target_df = _read(job["target"])
    exclude_df = _read(job.get("exclude"))
    X = _train_interactions(train_df)
    rss_loaded = rss_mib()
    model, fit_times, fit_extra = _fit_repeated(job, X)

    iv = model.item_vocab_
    known_u = model.user_vocab_.index(pd.unique(target_df["user"]), unknown="ignore") >= 0
    users = pd.unique(target_df["user"])[known_u]
    excl: dict[Any, list] = {}
    if exclude_df is not None and len(exclude_df):
        ex = exclude_df[["user", "item"]]
        ex = ex[ex["item"].isin(iv.ids) & ex["user"].isin(users)].drop_duplicates()
        excl = {u: g.tolist() for u, g in ex.groupby("user")["item"]}
    k = int(job["k"])
    with PhasePeak() as rec_mem:
        t0 = time.perf_counter()
        ids, scores = model.recommend(users, k=k,
                                      exclude=[excl.get(u, []) for u in users] if excl else None)
        rec_s = time.perf_counter() - t0
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(scores)
    n = len(users)
    recs = pd.DataFrame({
        "user": np.repeat(users, k)[keep.ravel()],
        "rank": np.tile(np.arange(1, k + 1), n)[keep.ravel()],
        "item": np.asarray(ids).ravel()[keep.ravel()],
        "score": scores.ravel()[keep.ravel()],
    })
    recs.to_csv(job["out"], index=False, float_format="%.9g")

    meta: dict[str, Any] = {
        "library": "maasrec",
        "library_version": maasrec.__version__,
        "model": job["model"],
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "params": json.loads(json.dumps(model.get_params(), default=str)),
        "threads": job.get("threads"),
        "n_train_rows": int(X.nnz),
        "n_users": int(X.n_users),
        "n_items": int(X.n_items),
        "n_users_recommended": int(n),
        "n_cold_users_skipped": int((~known_u).sum()),
        "n_rec_rows": len(recs),
        "n_exclude_rows": int(sum(len(v) for v in excl.values())),
        "fit_time_s": min(fit_times),
        "fit_times_s": fit_times,
        "recommend_time_s": rec_s,
        "rss_after_load_mib": rss_loaded,
        "fit_peak_extra_mib": fit_extra,
        "recommend_peak_extra_mib": rec_mem.extra_mib,
    }
    log = getattr(model, "training_log_", None)  # every trained model's fitted log
    if isinstance(log, dict):  # how long they trained, where they stopped
        meta["training_log"] = {c: log.get(c) for c in (
            "epochs_run", "best_epoch", "stopped_early", "best_metric", "n_windows")
            if c in log}
        losses = log.get("losses")
        if losses:
            meta["training_log"].update(epochs_trained=len(losses), last_loss=losses[-1],
                                        seconds=sum(x or 0.0 for x in log.get("seconds", [])))
    cons = job.get("consistency")
    if cons:
        from maasrec import metrics
        from maasrec.exceptions import ColdStartWarning

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ColdStartWarning)
            res = metrics.evaluate(model, train_df, target_df, k=tuple(cons["k"]),
                                   metrics=list(cons["metrics"]), exclude=exclude_df,
                                   n_bootstrap=0)
        meta["evaluate"] = {"metrics": {m: float(v) for m, v in res.items()},
                            "counts": {c: int(v) for c, v in res.counts.items()},
                            "n_users": res.n_users, "seconds": time.perf_counter() - t0}
        if job.get("per_user_out"):
            res.per_user_frame().to_csv(job["per_user_out"], float_format="%.17g")
    return meta


def run_scaling_fit(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from maasrec.data.interactions import Interactions

    with np.load(job["data"]) as d:
        users, items = d["users"], d["items"]
    X = Interactions.from_arrays(users, items)
    del users, items
    rss_loaded = rss_mib()
    model, fit_times, fit_extra = _fit_repeated(job, X)
    if job.get("save_to"):
        model.save(job["save_to"], overwrite=True)
    return {"library": "maasrec", "model": job["model"], "nnz": int(X.nnz),
            "n_users": int(X.n_users), "n_items": int(X.n_items),
            "fit_time_s": min(fit_times), "fit_times_s": fit_times,
            "rss_after_load_mib": rss_loaded, "fit_peak_extra_mib": fit_extra}


def run_scaling_recommend(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from maasrec.base import Recommender

    model = Recommender.load(job["model_dir"])
    users = model.user_vocab_.ids[: int(job["n_users"])]
    k = int(job.get("k", 10))
    model.recommend(users[:1], k=k)  # first call: lazy imports and caches, not measured
    rss0 = rss_mib()
    with PhasePeak() as mem:
        t0 = time.perf_counter()
        ids, scores = model.recommend(users, k=k)
        seconds = time.perf_counter() - t0
    out_mib = (np.asarray(ids).nbytes + np.asarray(scores).nbytes) / 2**20
    block = getattr(model, "_block_size", None)
    return {"library": "maasrec", "model": type(model).__name__, "n_users": len(users), "k": k,
            "n_items": int(model.n_items_),
            "block_users": None if block is None else int(block(None)),
            "recommend_time_s": seconds, "rss_before_mib": rss0,
            "recommend_peak_extra_mib": mem.extra_mib, "output_mib": out_mib}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    logging.basicConfig(level=logging.WARNING)
    load0 = loadavg()
    kind = job.get("kind", "lists")
    runners = {"lists": run_lists, "scaling_fit": run_scaling_fit,
               "scaling_recommend": run_scaling_recommend}
    if kind not in runners:
        print(f"unknown job kind {kind!r}", file=sys.stderr)
        return 2
    meta = runners[kind](job)
    meta["peak_rss_mib"] = peak_rss_mib()
    meta["loadavg_start"] = load0
    meta["loadavg_end"] = loadavg()
    Path(job["meta"]).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    print(f"maasrec {job['model']}: done ({kind})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
