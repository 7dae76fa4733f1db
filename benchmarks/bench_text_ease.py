"""TextEASE vs EASE: does item text in EASE's Gram matrix help? (issue 21)

``python benchmarks/bench_text_ease.py [--datasets ml-1m ml-100k] [--seeds 0 1 2]``

Protocol: the standard suite's ``random_split(ratios=(0.8, 0.1, 0.1), per_user=True)``
per seed; item text = the data set's ``"<title>. Genres: ..."`` (MiniLM, the ``text``
extra). ``text_weight`` is chosen on the validation part of the first seed from a grid
(0 = EASE), then EASE and TextEASE (chosen weight, and the default) are fitted on train
and scored on test (train and validation items excluded), every seed, in one run, with
EASE's default ``l2``. NDCG@10 full ranking. Results: ``results/text_ease.json``.
Needs ``MAASREC_DATA``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "text_ease.json"
GRID = (0.0, 0.25, 1.0, 4.0)  # relative to the mean interactions per item


def _ndcg(model, train, part, exclude=None) -> float:
    from maasrec.metrics import evaluate

    r = evaluate(model, train, part, k=10, metrics=["ndcg"], n_bootstrap=0, exclude=exclude)
    return float(r["ndcg@10"])


def run(dataset: str, seeds: list[int]) -> dict:
    from maasrec import datasets
    from maasrec.data.split import random_split
    from maasrec.models import EASE, TextEASE

    d = datasets.load_movielens(dataset)
    out: dict = {"dataset": dataset, "grid": {}, "seeds": {}}
    for i, seed in enumerate(seeds):
        train, valid, test = random_split(d.interactions, (0.8, 0.1, 0.1), per_user=True,
                                          random_state=seed)
        if i == 0:
            for w in GRID:
                t = time.perf_counter()
                m = (TextEASE(text_weight=w) if w else EASE()).fit(
                    train, item_features=d.item_features)
                out["grid"][str(w)] = {"valid_ndcg@10": _ndcg(m, train, valid),
                                       "fit_seconds": time.perf_counter() - t}
                print(dataset, "grid", w, out["grid"][str(w)], flush=True)
            chosen = max(GRID, key=lambda w: out["grid"][str(w)]["valid_ndcg@10"])
            out["chosen_text_weight"] = chosen
        row = {}
        for name, model in (("EASE", EASE()), ("TextEASE(default)", TextEASE()),
                            ("TextEASE(chosen)", TextEASE(text_weight=chosen or 0.0))):
            t = time.perf_counter()
            model.fit(train, item_features=d.item_features)
            row[name] = {"test_ndcg@10": _ndcg(model, train, test, exclude=valid),
                         "fit_seconds": time.perf_counter() - t}
        out["seeds"][str(seed)] = row
        print(dataset, seed, json.dumps(row), flush=True)
    for name in ("EASE", "TextEASE(default)", "TextEASE(chosen)"):
        vals = [out["seeds"][str(s)][name]["test_ndcg@10"] for s in seeds]
        out[f"mean_{name}"] = sum(vals) / len(vals)
    out["load_average"] = os.getloadavg()[0]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", nargs="+", default=["ml-1m", "ml-100k"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a = p.parse_args()
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for ds in a.datasets:
        res[ds] = run(ds, a.seeds)
        RESULTS.write_text(json.dumps(res, indent=1) + "\n")
        print(ds, {k: v for k, v in res[ds].items() if k.startswith("mean_")}, flush=True)


if __name__ == "__main__":
    main()
