#!/usr/bin/env python
"""Tune a peer library's models on a validation split under a wall-time budget.

Runs inside the peer's own venv (implicit or cornac, with optuna installed there);
driven by ``benchmarks/peers/tune_peers.py``, which writes the split and scores the
lists this script writes with maasrec's own evaluation code.

Input folder: ``train.csv``, ``valid.csv`` (columns ``u,i``: integer indices into the
train vocabularies) and ``meta.json`` (``n_users``, ``n_items``, ``test_users``).
Search, the same shape as ``maasrec.tune``'s ``"spread"`` strategy without the halving:
each model's defaults first, then the time left is shared equally by the models, each
running Optuna's TPE (seeded) over its own space. A trial starts only when it is
expected (the model's last fit time, scaled by its epochs) to end within the budget.
Selection by NDCG@10 on valid (full ranking, train items excluded). Output:
``result.json`` (every trial: model, params, valid NDCG@10 computed here, seconds) and,
for each model's best trial, ``<model>_valid.npy`` / ``<model>_test.npy``: the top-10
item indices of the valid users (train excluded) and of the test users (train and
valid excluded), from the model fitted on train.

Usage: ``<peer venv>/bin/python tune_worker.py --lib implicit --dir D --budget 600``.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc

THREADS = pc.early_threads()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

K = 10

# -- spaces (constructor names of each library; defaults are the library's own) ---------
SPACES = {
    "implicit-als": {"factors": ("int", 16, 256, True), "regularization": ("float", 1e-3, 100.0, True),
                     "alpha": ("float", 0.1, 100.0, True), "iterations": ("int", 5, 30, False)},
    "implicit-bpr": {"factors": ("int", 16, 256, True), "learning_rate": ("float", 1e-3, 0.3, True),
                     "regularization": ("float", 1e-5, 0.1, True),
                     "iterations": ("int", 50, 400, True)},
    "cornac-bivaecf": {"k": ("int", 10, 100, True),
                       "encoder_structure": ("choice", [[20], [40], [100], [200]]),
                       "act_fn": ("choice", ["tanh", "sigmoid", "relu"]),
                       "likelihood": ("choice", ["pois", "bern", "gaus"]),
                       "n_epochs": ("int", 50, 400, True), "batch_size": ("choice", [64, 128, 256]),
                       "learning_rate": ("float", 1e-4, 1e-2, True)},
    "cornac-ease": {"lamb": ("float", 1.0, 1e5, True)},
}
EPOCHS = {"implicit-als": "iterations", "implicit-bpr": "iterations",
          "cornac-bivaecf": "n_epochs"}
DEFAULT_EPOCHS = {"implicit-als": 15, "implicit-bpr": 100, "cornac-bivaecf": 100}
LIBS = {"implicit": ["implicit-als", "implicit-bpr"], "cornac": ["cornac-ease", "cornac-bivaecf"]}


def suggest(trial, space):
    p = {}
    for name, spec in space.items():
        if spec[0] == "int":
            p[name] = trial.suggest_int(name, spec[1], spec[2], log=spec[3])
        elif spec[0] == "float":
            p[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[3])
        else:
            idx = trial.suggest_categorical(name, list(range(len(spec[1]))))
            p[name] = spec[1][idx]
    return p


class Fitted:
    """A fitted peer model and a scorer of users over all items."""

    def __init__(self, name, params, X, seed):
        self.name = name
        if name.startswith("implicit-"):
            from implicit.cpu.als import AlternatingLeastSquares
            from implicit.cpu.bpr import BayesianPersonalizedRanking
            from threadpoolctl import threadpool_limits

            cls = AlternatingLeastSquares if name == "implicit-als" \
                else BayesianPersonalizedRanking
            m = cls(**params, num_threads=THREADS, random_state=seed)
            with threadpool_limits(1, "blas"):
                m.fit(X, show_progress=False)
            self.U, self.V = np.asarray(m.user_factors), np.asarray(m.item_factors)
        else:
            import cornac
            from cornac.data import Dataset

            coo = X.tocoo()
            uir = list(zip(coo.row.astype(str), coo.col.astype(str),
                           np.ones(coo.nnz, dtype=float)))
            ds = Dataset.from_uir(uir, seed=seed)
            if name == "cornac-ease":
                m = cornac.models.EASE(**params, verbose=False, seed=seed)
            else:
                import torch

                torch.set_num_threads(THREADS)
                m = cornac.models.BiVAECF(**params, use_gpu=False, seed=seed)
            m.fit(ds)
            self.m = m
            # cornac's inner ids -> our indices
            self.uinner = np.empty(X.shape[0], dtype=np.int64)
            for raw, inner in ds.uid_map.items():
                self.uinner[int(raw)] = inner
            # our item j at cornac's inner position; -1: an item of the vocabulary
            # without a train row (only in valid/test), which cornac cannot score
            self.iorder = np.full(X.shape[1], -1, dtype=np.int64)
            for raw, inner in ds.iid_map.items():
                self.iorder[int(raw)] = inner

    def scores(self, users):
        if self.name.startswith("implicit-"):
            return self.U[users] @ self.V.T
        out = np.full((len(users), len(self.iorder)), -np.inf, dtype=np.float64)
        known = self.iorder >= 0
        for r, u in enumerate(users):
            s = np.asarray(self.m.score(int(self.uinner[u])), dtype=np.float64).ravel()
            out[r, known] = s[self.iorder[known]]
        return out


def top_k(model, users, seen, k=K, batch=1000):
    """Top-k item indices of ``users``, ``seen`` (csr) items excluded."""
    out = np.empty((len(users), k), dtype=np.int64)
    for s in range(0, len(users), batch):
        u = users[s:s + batch]
        sc = model.scores(u).astype(np.float64)
        sub = seen[u]
        rows = np.repeat(np.arange(len(u)), np.diff(sub.indptr))
        sc[rows, sub.indices] = -np.inf
        part = np.argpartition(-sc, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1, kind="stable")
        out[s:s + batch] = np.take_along_axis(part, order, 1)
    return out


def ndcg(lists, users, truth):
    disc = 1.0 / np.log2(np.arange(2, K + 2))
    vals = []
    for row, u in zip(lists, users):
        t = truth[u]
        hits = np.isin(row, t)
        idcg = disc[:min(K, len(t))].sum()
        vals.append(float((hits * disc).sum() / idcg))
    return float(np.mean(vals))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, choices=list(LIBS))
    ap.add_argument("--dir", required=True)
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default=None,
                    help="comma-separated subset of the library's models (default: all)")
    a = ap.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.monotonic()
    deadline = t0 + a.budget
    meta = json.load(open(os.path.join(a.dir, "meta.json")))
    n_u, n_i = meta["n_users"], meta["n_items"]

    def csr(df):
        return sp.csr_matrix((np.ones(len(df), np.float32), (df.u.to_numpy(), df.i.to_numpy())),
                             shape=(n_u, n_i))

    tr = pd.read_csv(os.path.join(a.dir, "train.csv"))
    va = pd.read_csv(os.path.join(a.dir, "valid.csv"))
    X, V = csr(tr), csr(va)
    X.data[:] = 1.0
    vusers = np.unique(va.u.to_numpy())
    truth = {u: g.to_numpy() for u, g in va.groupby("u").i}
    trials, best = [], {}
    last = {}  # model -> (seconds, epochs) of its last fit

    def expected(name, params):
        if name not in last:
            return 0.0
        sec, ep = last[name]
        key = EPOCHS.get(name)
        return sec * (params[key] / ep) if key and ep else sec

    def run(name, params, tag):
        t = time.monotonic()
        try:
            m = Fitted(name, params, X, a.seed)
            v = ndcg(top_k(m, vusers, X), vusers, truth)
        except Exception as exc:  # a parameter set that cannot be fitted
            trials.append({"model": name, "params": params, "error": repr(exc)[:300]})
            return None
        sec = time.monotonic() - t
        key = EPOCHS.get(name)
        last[name] = (sec, params.get(key, DEFAULT_EPOCHS.get(name)) if key else None)
        trials.append({"model": name, "params": params, "valid_ndcg@10": v,
                       "seconds": round(sec, 2), "kind": tag})
        print(f"{name:15s} {tag:8s} {v:.4f} {sec:6.1f}s {json.dumps(params)}", flush=True)
        if name not in best or v > best[name][0]:
            best[name] = (v, params, m)
        return v

    names = LIBS[a.lib] if not a.models else [m for m in LIBS[a.lib]
                                              if m in a.models.split(",")]
    for name in names:  # the library's defaults first
        if time.monotonic() < deadline:
            run(name, {}, "default")
    left = deadline - time.monotonic()
    for j, name in enumerate(names):
        share_end = time.monotonic() + (deadline - time.monotonic()) / (len(names) - j)
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=a.seed))
        misses = 0
        while time.monotonic() < share_end and misses < 3:
            trial = study.ask()
            params = suggest(trial, SPACES[name])
            if time.monotonic() + expected(name, params) > share_end:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                misses += 1
                continue
            misses = 0
            v = run(name, params, "tpe")
            study.tell(trial, v if v is not None else None,
                       state=None if v is not None else optuna.trial.TrialState.FAIL)
    elapsed = time.monotonic() - t0
    Xv = (X + V).tocsr()
    tusers = np.asarray(meta["test_users"], dtype=np.int64)
    out = {"lib": a.lib, "budget": a.budget, "elapsed": round(elapsed, 1), "threads": THREADS,
           "trials": trials, "best": {}}
    for name, (v, params, m) in best.items():
        np.save(os.path.join(a.dir, f"{name}_valid.npy"), top_k(m, vusers, X))
        np.save(os.path.join(a.dir, f"{name}_test.npy"), top_k(m, tusers, Xv))
        out["best"][name] = {"params": params, "valid_ndcg@10_own": v,
                             "n_trials": sum(1 for t in trials if t["model"] == name)}
    out["valid_users"] = vusers.tolist()
    out["left_after_defaults"] = round(left, 1)
    out["models"] = names
    json.dump(out, open(os.path.join(a.dir, f"result_{a.lib}.json"), "w"))


if __name__ == "__main__":
    main()
