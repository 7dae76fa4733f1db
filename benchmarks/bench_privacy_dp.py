"""User-level differential privacy: the privacy-utility curve and membership inference
(issue 19).

``python benchmarks/bench_privacy_dp.py curve --dataset ml-1m --model hybrid
--eps 1 2 4 8 inf --seeds 0 1 2``

``--model private_als``: :class:`maasrec.privacy.PrivateALS` (joint user-level DP, the
released item factors); its non-private reference (``eps=inf``) is
:class:`maasrec.models.ALS` with its defaults, and a second ``eps=inf`` row is PrivateALS
with ``epsilon=None`` (the same procedure without noise or contribution bounds). The
``--split valid`` option scores on the validation part instead (for choosing settings).
``--item-features`` passes the data set's public item attributes (Beauty: S3Rec category
and brand attributes; MovieLens: genres) to PrivateALS's fit, for
``--set feature_regularization=...``.

* ``curve``: per-user 8:1:1 random split (MovieLens) or leave-last-out (Amazon Beauty,
  sequences); the non-private model (``eps=inf``: the model's defaults, early stopping on
  the validation part) and DP-SGD models at each epsilon (delta = 1 / n_users, no
  validation: a fixed number of epochs, ``--dp-epochs``), NDCG@10 / HR@10 on the test
  part with full ranking, fit seconds, the spent epsilon. The ratio to the non-private
  NDCG@10 of the same seed is the utility kept.
* ``mi``: membership inference (:func:`maasrec.privacy.attacks.membership_inference`):
  the users are split in two halves (``cold_user_split``); the model is fitted on the
  first; the attack tells its users from the second half's. Non-private vs each epsilon.

Results are appended to ``benchmarks/results/privacy_dp.json`` (one record per run, with
the machine's load average before and after: the machine is shared, so fit seconds are
only comparable inside one record). Needs ``MAASREC_DATA`` and the ``privacy`` extra
(opacus). Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results" / "privacy_dp.json"

#: Non-private defaults and the DP-SGD settings per model. ``dp_params`` replace model
#: defaults under DP. Hybrid's were chosen on ML-100K seed 0 at epsilon 8 (NDCG@10):
#: dim 32 + tie_history + lr 0.01: 0.177; the same at dim 16 and 20 epochs: 0.169; at
#: dp batch 48: 0.163; at lr 0.02: 0.151; dim 64 untied, lr 3e-3: 0.129 (= Popularity);
#: dim 64, dp batch 250, lr 0.01: 0.123; max_grad_norm 0.1 instead of 1: identical
#: (every user is clipped and Adam is scale-free).
MODELS = {
    "hybrid": dict(cls="HybridRecommender", params={},
                   dp_params=dict(dim=32, tie_history=True, learning_rate=1e-2,
                                  lr_schedule="constant", history_dropout=0.0,
                                  id_dropout=0.0, weight_decay=0.0)),
    "neumf": dict(cls="NeuMF", params={}, dp_params=dict(dim=32, id_dropout=0.0)),
    "sequential": dict(cls="SequentialRecommender", params={},
                       dp_params=dict(dropout=0.0)),
    # joint DP: settings in PrivateALS's defaults (chosen on ML-1M validation, seed 0)
    "private_als": dict(cls="PrivateALS", params={}, dp_params={}),
}


def _dataset(name: str):
    from maasrec.datasets import load_amazon_sequences, load_movielens

    if name == "beauty":
        return load_amazon_sequences("beauty", download=False)
    return load_movielens(name, download=False)


def _data(name: str):
    return _dataset(name).interactions


def _public_features(name: str):
    """The public item attributes (Beauty: categories and brand; MovieLens: genres)."""
    from maasrec.data import ItemFeatures

    f = _dataset(name).item_features
    return ItemFeatures(f.vocab, multi_hot={k: [list(labels[m[i].indices])
                                                  for i in range(m.shape[0])]
                                              for k, (m, labels) in f.multi_hot.items()})


def _split(name: str, X, seed: int):
    from maasrec.data.split import leave_last_out, random_split

    if name == "beauty":
        return leave_last_out(X, n_valid=1, n_test=1, assume_ordered=True)
    return random_split(X, (0.8, 0.1, 0.1), per_user=True, random_state=seed)


def _model(kind: str, seed: int, eps: float, args):
    import maasrec.neural as nn

    if kind == "private_als":
        return _private_als(seed, eps, args)
    spec = MODELS[kind]
    cls = getattr(nn, spec["cls"])
    params = dict(spec["params"], random_state=seed)
    if not math.isinf(eps):
        params.update(spec["dp_params"])
        params["epochs"] = args.dp_epochs
        dp = {"epsilon": float(eps), "max_grad_norm": args.max_grad_norm}
        if args.dp_batch is not None:
            dp["batch_size"] = args.dp_batch
        params["dp"] = dp
    elif args.max_epochs is not None:
        params["epochs"] = args.max_epochs
    if args.dp_lr is not None and not math.isinf(eps):
        params["learning_rate"] = args.dp_lr
    if args.dim is not None and not math.isinf(eps):
        params["dim"] = args.dim
    for kv in args.set if not math.isinf(eps) else ():
        k, _, v = kv.partition("=")
        params[k] = json.loads(v)
    return cls(**params)


def _private_als(seed: int, eps: float, args):
    from maasrec.models import ALS
    from maasrec.privacy import PrivateALS

    if eps is not None and math.isinf(eps):
        return ALS(random_state=seed)
    params = {"epsilon": None if eps is None else float(eps), "random_state": seed}
    for kv in args.set:
        k, _, v = kv.partition("=")
        params[k] = json.loads(v)
    return PrivateALS(**params)


def _eval(model, train, test, seed: int) -> dict:
    from maasrec.exceptions import ColdStartWarning
    from maasrec.metrics import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        res = evaluate(model, train, test, k=10, metrics=["ndcg", "hit"], n_bootstrap=0,
                       random_state=seed)
    return {"ndcg@10": float(res["ndcg@10"]), "hit@10": float(res["hit@10"]),
            "n_users": int(res.n_users)}


def _privacy(model) -> dict | None:
    rec = getattr(model, "training_log_", {}).get("privacy")
    if rec is None:
        return None
    return {k: rec[k] for k in ("epsilon", "delta", "noise_multiplier", "sample_rate",
                                "steps", "max_grad_norm", "n_users", "accountant",
                                "clipped_fraction_per_epoch", "median_grad_norm_per_epoch",
                                "mu", "iterations", "max_user_items", "noise_std",
                                "epsilon_zcdp_bound") if k in rec}


def _fit(model, train, validation=None, item_features=None) -> float:
    t0 = time.perf_counter()
    model.fit(train, item_features, validation=validation)
    return time.perf_counter() - t0


def run_curve(args) -> list[dict]:
    X = _data(args.dataset)
    feats = _public_features(args.dataset) if args.item_features else None
    rows = []
    for seed in args.seeds:
        train, valid, test = _split(args.dataset, X, seed)
        if args.split == "valid":
            test = valid
        base = None
        from maasrec.models import Popularity

        pop = Popularity()  # context: item counts, not private either
        rows.append({"dataset": args.dataset, "model": "Popularity", "seed": seed,
                     "fit_s": _fit(pop, train), "test": _eval(pop, train, test, seed)})
        print(json.dumps(rows[-1]), flush=True)
        eps_list = list(args.eps)
        if args.model == "private_als" and any(math.isinf(e) for e in eps_list):
            eps_list.insert(eps_list.index(math.inf) + 1, None)  # PrivateALS, no noise
        for eps in eps_list:
            model = _model(args.model, seed, eps, args)
            # the non-private model stops early on the validation part; DP models run a
            # fixed number of epochs (early stopping on private data is not accounted)
            early = eps is not None and math.isinf(eps) and args.model != "private_als"
            fit_s = _fit(model, train, valid if early else None,
                         feats if type(model).__name__ == "PrivateALS" else None)
            row = {"dataset": args.dataset, "model": type(model).__name__, "seed": seed,
                   "epsilon_target": None if eps is None or math.isinf(eps) else eps,
                   "fit_s": fit_s, "split": args.split,
                   "epochs_run": len(model.training_log_.get("losses", [])),
                   "params": {k: v for k, v in model.get_params().items()
                              if k in ("dim", "epochs", "learning_rate", "dp",
                                       "lr_schedule", "batch_size", "factors",
                                       "regularization", "user_regularization",
                                       "iterations", "max_user_items", "budget_shares",
                                       "alpha", "item_bias", "contribution",
                                       "normalize_users", "feature_regularization")},
                   "test": _eval(model, train, test, seed), "privacy": _privacy(model)}
            if eps is not None and math.isinf(eps):
                base = row["test"]["ndcg@10"]
            if base:
                row["ndcg_ratio_to_nonprivate"] = row["test"]["ndcg@10"] / base
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def run_mi(args) -> list[dict]:
    from maasrec.data.split import cold_user_split
    from maasrec.privacy.attacks import membership_inference

    X = _data(args.dataset)
    rows = []
    for seed in args.seeds:
        members, outsiders = cold_user_split(X, (0.5, 0.5), random_state=seed)
        for eps in args.eps:
            model = _model(args.model, seed, eps, args)
            fit_s = _fit(model, members)
            res = membership_inference(model, members, outsiders, max_users=args.mi_users,
                                       random_state=seed)
            rank = membership_inference(model, members, outsiders, statistic="rank",
                                        max_users=args.mi_users, random_state=seed)
            row = {"dataset": args.dataset, "model": type(model).__name__, "seed": seed,
                   "epsilon_target": None if math.isinf(eps) else eps, "fit_s": fit_s,
                   "mi_auc_loglik": res.auc, "mi_auc_rank": rank.auc,
                   "mi": res.to_dict(), "privacy": _privacy(model)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["curve", "mi"])
    p.add_argument("--dataset", default="ml-1m", choices=["ml-100k", "ml-1m", "beauty"])
    p.add_argument("--split", default="test", choices=["test", "valid"],
                   help="score on the test part, or on the validation part (tuning)")
    p.add_argument("--model", default="hybrid", choices=list(MODELS))
    p.add_argument("--eps", nargs="+", type=float, default=[1, 2, 4, 8, math.inf])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--dp-epochs", type=int, default=10)
    p.add_argument("--dp-batch", type=int, default=None)
    p.add_argument("--dp-lr", type=float, default=None)
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--max-epochs", type=int, default=None,
                   help="cap the non-private model's epochs")
    p.add_argument("--mi-users", type=int, default=1000)
    p.add_argument("--set", nargs="*", default=[], metavar="PARAM=JSON",
                   help="more parameters of the DP models")
    p.add_argument("--item-features", action="store_true",
                   help="pass the public item attributes (multi-hot blocks: Beauty's "
                        "categories and brand, MovieLens genres) to PrivateALS's fit")
    p.add_argument("--note", default="")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows = run_curve(args) if args.what == "curve" else run_mi(args)
    record = {"what": args.what, "args": {k: (None if isinstance(v, float) and math.isinf(v)
                                              else v) for k, v in vars(args).items()
                                          if k != "eps"},
              "eps": [None if math.isinf(e) else e for e in args.eps],
              "load_before": load0, "load_after": os.getloadavg()[0],
              "seconds": time.perf_counter() - t0, "rows": rows,
              "machine": f"{os.cpu_count()} CPUs, torch threads "
                         f"{torch.get_num_threads()}"}
    if not args.no_save:
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps([*old, record], indent=1) + "\n")


if __name__ == "__main__":
    main()
