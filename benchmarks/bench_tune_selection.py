"""Which family should ``tune`` return when the leaders are within validation noise?

Evidence for the finalist rule of :mod:`maasrec.tune._confirm`. On per-user random
8:1:1 splits (several seeds) of MovieLens 100K, latest-small and Amazon Beauty, each
family is "tuned" by a small grid on the validation fold (its best configuration by
validation NDCG@10, as a search would pick it), then three selection rules are compared
by the test NDCG@10 of the family they pick:

* ``valid``: the family with the best validation value (the old rule);
* ``fold2``: finalists (families within ``z`` paired standard errors of the leader on
  validation) re-scored on a second fold carved from train (per-user random, the size
  of valid), fitted on the rest of train + valid; the best on that fold wins;
* ``mean``: the finalists' mean of the validation and second-fold values.

``oracle`` is the best test value among the families (what no rule can beat). Results
go to ``benchmarks/results/tune_selection.json``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_tune_selection.py --data 100k
--seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

from benchmarks.bench_tune import _split  # noqa: E402  (the same split as bench_tune)

GRIDS = {
    "EASE": [{"l2": v} for v in (50.0, 150.0, 300.0, 500.0, 1000.0, 3000.0)],
    "ALS": [{"factors": f, "regularization": r, "alpha": a, "random_state": 0}
            for f in (64, 128) for r in (10.0, 30.0, 100.0) for a in (1.0, 2.0, 4.0)],
    "ItemKNN": [{"n_neighbors": n} for n in (20, 50, 200)],
    "PureSVD": [{"factors": f} for f in (32, 64, 128, 256)],
}
SMALL = {"EASE": GRIDS["EASE"][2:5], "ALS": GRIDS["ALS"][1::3], "ItemKNN": [{}],
         "PureSVD": [{"factors": 64}, {"factors": 256}]}


def _per_user(model, seen, target, exclude=None):
    from maasrec.metrics import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(model, seen, target, metrics=["ndcg@10"], n_bootstrap=0, k=10,
                      exclude=exclude)
    return dict(zip(ev.users.tolist(), ev.per_user["ndcg@10"].tolist()))


def run(data: str, seed: int, z: float) -> dict:
    import maasrec.models as mm
    from maasrec.tune._confirm import paired_gap, second_fold

    train, valid, test = _split(data, seed)
    grids = SMALL if data == "beauty" else GRIDS
    fams = {}
    for fam, grid in grids.items():
        best = None
        for p in grid:
            m = getattr(mm, fam)(**p).fit(train)
            pu = _per_user(m, train, valid)
            v = float(np.mean(list(pu.values())))
            if best is None or v > best[0]:
                best = (v, p, m, pu)
        v, p, m, pu = best
        t = float(np.mean(list(_per_user(m, train, test, exclude=valid).values())))
        fams[fam] = {"params": p, "valid": v, "test": t, "_pu": pu}
        print(f"{data} seed {seed} {fam:8s} {json.dumps(p):70s} valid {v:.4f} test {t:.4f}",
              flush=True)
    lead = max(fams, key=lambda f: fams[f]["valid"])
    finalists = [lead]
    for f in fams:
        if f != lead:
            gap, se = paired_gap(fams[lead]["_pu"], fams[f]["_pu"])
            fams[f]["gap_se"] = round(gap / se, 2) if se > 0 else None
            if gap <= z * se:
                finalists.append(f)
    fit2, fold2 = second_fold(train, valid, seed)
    for f in finalists:
        m = getattr(mm, f)(**fams[f]["params"]).fit(fit2)
        fams[f]["fold2"] = float(np.mean(list(_per_user(m, fit2, fold2).values())))
    pick = {"valid": lead,
            "fold2": max(finalists, key=lambda f: fams[f]["fold2"]),
            "mean": max(finalists, key=lambda f: fams[f]["valid"] + fams[f]["fold2"])}
    oracle = max(fams, key=lambda f: fams[f]["test"])
    for f in fams.values():
        f.pop("_pu")
    return {"data": data, "seed": seed, "z": z, "families": fams, "finalists": finalists,
            "pick": pick, "test_of_pick": {r: fams[f]["test"] for r, f in pick.items()},
            "oracle": oracle, "oracle_test": fams[oracle]["test"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="100k", choices=["100k", "latest-small", "beauty", "1m"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--z", type=float, default=2.0)
    a = p.parse_args(argv)
    path = RESULTS / "tune_selection.json"
    for seed in a.seeds:
        t = time.perf_counter()
        out = run(a.data, seed, a.z)
        out["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps({k: out[k] for k in ("finalists", "pick", "test_of_pick", "oracle")}),
              flush=True)
        allres = json.loads(path.read_text()) if path.exists() else {}
        allres[f"{a.data}/seed{seed}"] = out
        path.write_text(json.dumps(allres, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
