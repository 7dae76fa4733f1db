"""``maasrec.tune.tune`` under a time budget: which model it picks, and its test score.

On a per-user random 8:1:1 split (seed 0) of MovieLens 100K and latest-small
(``maasrec.data.split.random_split``, as ``bench_new_models.py`` and
``bench_classical.py``), ``tune(train, valid, models="auto", budget=B, random_state=0)``
searches on train/valid (``strategy="auto"``: every family's defaults, then successive
halving over the leading families); the chosen model (as returned: fitted on train, or on
train + valid with ``--refit``) is scored by NDCG@10 and Recall@20 on test, full
ranking, train and validation items excluded. Beside it, in the same run: ALS with its
defaults (fitted on train, or on train + valid with ``--refit``) scored the same way, and
the best default of the search by validation (``defaults``: every family's default
trial on validation, the best one fitted again on train and scored on test), so the
gain of tuning is read at equal load; the other defaults' test scores are in
``results/new_models_test.json``. ``--data beauty``: Amazon Beauty, the same per-user
random split.

Reports the chosen model and parameters, trials per model and state, the budget held
(elapsed, overrun, trials stopped by it) and the 1-minute load average before, after and
every 15 s during the search (``load_during``: mean, min, max).
Results are merged into ``benchmarks/results/tune.json`` under ``<data>@<budget>``.

Run with one thread: ``OMP_NUM_THREADS=1 python benchmarks/bench_tune.py --data 100k
--budget 3min`` (``--models EASE,ALS`` narrows the search, ``--refit`` refits,
``--no-confirm`` returns the validation leader without the finalists' second fold).
``selection`` in the output: the finalists, their validation and second-fold values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _split(name: str, seed: int = 0):
    from maasrec import datasets
    from maasrec.data.split import random_split
    from maasrec.exceptions import ColdStartWarning

    if name == "beauty":
        data = datasets.load_amazon_sequences("beauty", download=False).interactions
    else:
        data = datasets.load_movielens(name, download=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        return random_split(data, (0.8, 0.1, 0.1), random_state=seed)


def _test(model, train, valid, test, refit: bool) -> dict:
    from maasrec.metrics import evaluate
    from maasrec.tune.search import _union

    seen = _union(train, valid) if refit else train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(model, seen, test, metrics=["ndcg@10", "recall@20"], n_bootstrap=0,
                      exclude=None if refit else valid)
    return {"test_ndcg@10": float(ev["ndcg@10"]), "test_recall@20": float(ev["recall@20"])}


class _LoadSampler:
    """The 1-minute load average every 15 s while the search runs (mean, min, max)."""

    def __init__(self, every: float = 15.0):
        import threading

        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, args=(every,), daemon=True)
        self._t.start()

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        s = self.samples
        return {"mean": round(sum(s) / len(s), 2), "min": round(min(s), 2),
                "max": round(max(s), 2), "n_samples": len(s)}


def _defaults(res, train, valid, test) -> dict:
    """Each family's default trial (the first trial of each model) on valid, and the test
    score of the best of them (fitted again on train with the same parameters)."""
    lb = res.leaderboard.sort_values("trial")
    first = lb[lb.state == "COMPLETE"].groupby("model", sort=False).head(1)
    n_models = lb.model.nunique()
    first = first[first.trial < n_models]  # the defaults ran first, one per model
    out = {m: float(v) for m, v in zip(first.model, first["ndcg@10"])}
    if not out:
        return {"valid_ndcg@10": out}
    best = max(out, key=out.get)
    row = first[first.model == best].iloc[0]
    import maasrec.tune._models as tm

    cand = next(iter(tm.resolve_models([best])))
    params = {**row.params}
    names = set(cand.cls._get_param_names())
    if "random_state" in names:
        params["random_state"] = 0
    if res.best_model_name == best and not res.refit and all(
            res.best_params.get(k) == v for k, v in params.items() if k != "random_state"):
        # the best default is the search's answer: the same fitted model
        return {"valid_ndcg@10": out, "best": best, "best_valid_ndcg@10": out[best],
                "best_test": {**_test(res.best_model, train, valid, test, False),
                              "same_as_tuned": True}}
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cand.cls(**params)
        model.fit(train, **({"validation": valid} if cand.cls.__module__.startswith(
            "maasrec.neural") else {}))
    return {"valid_ndcg@10": out, "best": best, "best_valid_ndcg@10": out[best],
            "best_test": {**_test(model, train, valid, test, False),
                          "fit_seconds": round(time.perf_counter() - t, 2)}}


def _leader(res, train, valid, test, refit: bool) -> dict | None:
    """When the finalists' second fold chose another family than the validation leader:
    the leader's trial parameters fitted again (as the chosen model is) and scored on
    test, to read what the rule changed."""
    sel = res.selection
    if not sel or next(iter(sel["finalists"])) == sel["chosen"]:
        return None
    import maasrec.tune._models as tm
    from maasrec.tune.search import _union

    name = next(iter(sel["finalists"]))
    row = res.leaderboard[res.leaderboard.trial == sel["finalists"][name]["trial"]].iloc[0]
    cand = next(iter(tm.resolve_models([name])))
    params = {**row.params}
    if "random_state" in set(cand.cls._get_param_names()):
        params["random_state"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cand.cls(**params).fit(_union(train, valid) if refit else train)
    return {"model": name, "params": params, "valid_ndcg@10": sel["finalists"][name]["valid"],
            **_test(model, train, valid, test, refit)}


def run(data: str, budget: str, models: str, refit: bool, confirm: bool = True) -> dict:
    from maasrec.models import ALS
    from maasrec.tune import tune

    train, valid, test = _split(data)
    load0 = os.getloadavg()[0]
    sampler = _LoadSampler()
    t0 = time.perf_counter()
    res = tune(train, valid, models="auto" if models == "auto" else models.split(","),
               metric="ndcg@10", budget=budget, random_state=0, refit=refit, verbose=True,
               confirm=confirm)
    wall = time.perf_counter() - t0
    load = sampler.stop()
    load1 = os.getloadavg()[0]
    out = {"data": data, "budget": budget, "budget_seconds": res.budget_seconds,
           "models": models, "refit": refit, "best_model": res.best_model_name,
           "best_params": res.to_dict()["best_params"], "valid_ndcg@10": res.best_value,
           **_test(res.best_model, train, valid, test, refit),
           "elapsed_seconds": round(res.elapsed_seconds, 1),
           "wall_seconds_with_refit": round(wall, 1),
           "overrun_seconds": round(res.overrun_seconds, 1),
           "budget_exhausted": res.budget_exhausted,
           "stopped_by_budget": res.stopped_by_budget, "n_trials": res.n_trials,
           "trials": {f"{m} {s}": n for (m, s), n in sorted(Counter(
               zip(res.leaderboard.model.astype(str), res.leaderboard.state)).items())},
           "leaderboard_top": res.to_dict()["leaderboard"][:8],
           "load_1min": [round(load0, 2), round(load1, 2)], "load_during": load,
           "trials_per_model": dict(Counter(res.leaderboard.model.astype(str))),
           "message": res.message, "confirm": confirm,
           "selection": res.to_dict()["selection"]}
    out["defaults"] = _defaults(res, train, valid, test)
    out["validation_leader"] = _leader(res, train, valid, test, refit)
    t = time.perf_counter()
    if refit:  # the same protocol as the tuned model: fitted on train + valid
        from maasrec.tune.search import _union

        als = ALS(random_state=0).fit(_union(train, valid))
    else:
        als = ALS(random_state=0).fit(train)
    out["same_run_ALS_defaults"] = {**_test(als, train, valid, test, refit),
                                    "fitted_on": "train+valid" if refit else "train",
                                    "fit_seconds": round(time.perf_counter() - t, 2)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="100k", choices=["100k", "latest-small", "1m", "beauty"])
    p.add_argument("--budget", default="3min")
    p.add_argument("--models", default="auto")
    p.add_argument("--refit", action="store_true")
    p.add_argument("--no-confirm", action="store_true",
                   help="return the validation leader (tune(confirm=False))")
    a = p.parse_args(argv)
    out = run(a.data, a.budget, a.models, a.refit, not a.no_confirm)
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "tune.json"
    allres = json.loads(path.read_text()) if path.exists() else {}
    key = f"{a.data}@{a.budget}" + ("+refit" if a.refit else "") + (
        "" if a.models == "auto" else f"[{a.models}]") + ("+noconfirm" if a.no_confirm else "")
    allres[key] = out
    path.write_text(json.dumps(allres, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
