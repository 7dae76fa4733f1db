"""Speed and quality of ``SequentialRecommender`` (SASRec-style), side by side with RecBole.

Two commands (each writes ``benchmarks/results/sequential_<command>.json`` and prints a
table):

``speed``
    Amazon Beauty (S3Rec preprocessing), leave-last-out train part: seconds per
    training epoch of maasrec's ``SequentialRecommender`` and of RecBole 1.2.1's
    ``SASRec`` with the same hyperparameters (2 blocks, 2 heads, hidden 64, inner 256,
    dropout 0.5, ``max_len`` 50, Adam at 0.001, full softmax cross-entropy over the
    catalogue, CPU, float32, same thread count). An epoch is the same set of
    next-item targets for both: every train interaction after a user's first. RecBole
    feeds one (prefix, target) pair per example (``train_batch_size`` 2048 pairs);
    maasrec feeds whole sequences and predicts at every position (``--batch-size``
    sequences, default 256, i.e. about 1,500 targets per step -- fewer than RecBole's
    2,048). The two libraries alternate, ``--repeats`` times, each in a fresh
    subprocess under ``OMP_WAIT_POLICY=PASSIVE`` (two spinning OpenMP threads on a
    busy machine run many times slower); the 1-minute load average is recorded before
    every run, and a fixed matrix-product calibration next to it. The ratio that counts
    is maasrec / RecBole from the same repeat (median epoch of each run; RecBole's
    first epoch carries its lazy-import cost, so its median needs >= 3 epochs).
``quality``
    Leave-last-out (last item test, second-to-last validation), full ranking over the
    whole catalogue excluding the user's train and validation items. Protocol (as in
    SASRec / S3Rec): fit on train with early stopping on validation NDCG@10, then
    ``extend_history(valid)`` so each user's history ends with the validation item,
    then test. Amazon Beauty (ID only) and MovieLens 100K (ID only and with
    MiniLM title-initialised item embeddings, ``item_text="init"``); the settings are
    the ones chosen on validation (``CONFIGS``).

RecBole must live in its own virtual environment (numpy<2): pass its interpreter with
``--recbole-python`` (default ``/tmp/peers/recbole/bin/python``); the adapter is
``benchmarks/peers/run_recbole.py``.

Run: ``python benchmarks/bench_sequential.py speed --epochs 3 --repeats 2`` (about an
hour on 2 busy cores: a RecBole epoch on Beauty is several minutes), ``... quality``
(hours on 2 busy cores; ``--datasets ml100k`` for the short part).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

from benchmarks.machine import calibrate, loadavg, machine_info, thread_env  # noqa: E402

#: RecBole SASRec hyperparameters (its defaults, made explicit) and maasrec's equivalents.
RECBOLE_PARAMS = {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
                  "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu",
                  "MAX_ITEM_LIST_LENGTH": 50, "learning_rate": 0.001,
                  "train_batch_size": 2048, "loss_type": "CE", "weight_decay": 0.0}
MAASREC_PARAMS = {"dim": 64, "ffn_dim": 256, "n_layers": 2, "n_heads": 2, "dropout": 0.5,
                  "max_len": 50, "learning_rate": 0.001, "loss": "ce", "weight_decay": 0.0}

#: Settings chosen on the validation part (see the module docstring); test numbers use them.
CONFIGS = {
    "beauty": {"id": dict(dropout=0.5, epochs=200, eval_every=2, patience=5)},
    "ml100k": {"id": dict(max_len=200, dropout=0.2, epochs=200, eval_every=2, patience=5),
               "title-init": dict(max_len=200, dropout=0.2, epochs=200, eval_every=2,
                                  patience=5, item_text="init")},
}


def _load(name: str, data_home: str | None):
    from maasrec import datasets

    if name == "beauty":
        return datasets.load_amazon_sequences("beauty", data_home=data_home, download=False)
    return datasets.load_movielens("100k", data_home=data_home, download=False)


def _split(name: str, data_home: str | None):
    from maasrec.data.split import leave_last_out

    ds = _load(name, data_home)
    return ds, leave_last_out(ds.interactions, n_valid=1, n_test=1)


# -- speed --------------------------------------------------------------------------------
def _maasrec_worker(args: argparse.Namespace) -> int:
    """Runs in a subprocess: fit ``epochs`` epochs, print the per-epoch seconds as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from maasrec.neural import SequentialRecommender

    _, (train, _, _) = _split("beauty", args.data_home)
    params = dict(MAASREC_PARAMS, epochs=args.epochs, batch_size=args.batch_size,
                  random_state=0, verbose=False, device="cpu")
    t0 = time.perf_counter()
    model = SequentialRecommender(**params).fit(train)
    fit_s = time.perf_counter() - t0
    print(json.dumps({"epoch_times_s": model.training_log_["seconds"], "fit_s": fit_s,
                      "params": params, "torch_threads": torch.get_num_threads(),
                      "n_windows": model.training_log_["n_windows"]}))
    return 0


def _write_recbole_inputs(folder: Path, data_home: str | None) -> tuple[Path, Path]:
    _, (train, _, _) = _split("beauty", data_home)
    df = train.to_pandas()[["user", "item", "timestamp"]]
    tr = folder / "train.csv"
    df.to_csv(tr, index=False)
    te = folder / "test_users.csv"  # a few users: RecBole's recommend phase is not timed here
    df[["user"]].drop_duplicates().head(64).to_csv(te, index=False)
    return tr, te


def _run(cmd: list[str], env: dict, log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return rc, time.perf_counter() - t0


def cmd_speed(args: argparse.Namespace) -> int:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-seq-"))
    work.mkdir(parents=True, exist_ok=True)
    env = thread_env(args.threads)
    env["OMP_WAIT_POLICY"] = args.wait_policy
    if args.data_home:
        env["MAASREC_DATA"] = args.data_home
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    train_csv, users_csv = _write_recbole_inputs(work, args.data_home)
    runs = []
    for rep in range(args.repeats):
        order = ["maasrec", "recbole"] if rep % 2 == 0 else ["recbole", "maasrec"]
        for lib in order:
            if lib == "recbole" and args.skip_recbole:
                continue
            rec = {"library": lib, "repeat": rep, "loadavg_before": loadavg(),
                   "calibration_before": calibrate()}
            log = work / f"{lib}_{rep}.log"
            if lib == "maasrec":
                cmd = [sys.executable, str(Path(__file__).resolve()), "_worker",
                       "--epochs", str(args.epochs), "--threads", str(args.threads),
                       "--batch-size", str(args.batch_size)]
                if args.data_home:
                    cmd += ["--data-home", args.data_home]
                rc, wall = _run(cmd, env, log)
                lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
                out = json.loads(lines[-1]) if rc == 0 and lines else {}
            else:
                meta = work / f"recbole_{rep}.json"
                params = dict(RECBOLE_PARAMS, epochs=args.epochs)
                cmd = [args.recbole_python, str(HERE / "peers" / "run_recbole.py"),
                       "--train", str(train_csv), "--test", str(users_csv), "--model", "sasrec",
                       "--params", json.dumps(params), "--threads", str(args.threads),
                       "--no-metrics", "--out", str(work / f"recbole_{rep}.csv"),
                       "--meta", str(meta)]
                rc, wall = _run(cmd, env, log)
                out = json.loads(meta.read_text()) if rc == 0 and meta.exists() else {}
                out = {"epoch_times_s": out.get("epoch_times_s"), "fit_s": out.get("fit_time_s"),
                       "n_train_rows_recbole": out.get("n_train_rows_recbole"),
                       "torch_threads": out.get("torch_threads"),
                       "effective_config": out.get("effective_config")}
            rec.update(out)
            rec.update({"returncode": rc, "wall_s": wall, "loadavg_after": loadavg(),
                        "log": str(log)})
            times = rec.get("epoch_times_s") or []
            rec["median_epoch_s"] = float(np.median(times)) if times else None
            rec["min_epoch_s"] = float(np.min(times)) if times else None
            runs.append(rec)
            print(f"[repeat {rep}] {lib}: epochs {[round(t, 1) for t in times]} s, load "
                  f"{rec['loadavg_before']} -> {rec['loadavg_after']}, rc={rc}", flush=True)
    ratios = []
    for rep in range(args.repeats):
        m = [r for r in runs if r["repeat"] == rep and r["library"] == "maasrec"]
        b = [r for r in runs if r["repeat"] == rep and r["library"] == "recbole"]
        if m and b and m[0]["median_epoch_s"] and b[0]["median_epoch_s"]:
            ratios.append({"repeat": rep, "maasrec_median_epoch_s": m[0]["median_epoch_s"],
                           "recbole_median_epoch_s": b[0]["median_epoch_s"],
                           "ratio": m[0]["median_epoch_s"] / b[0]["median_epoch_s"]})
    result = {"command": "speed", "dataset": "amazon-beauty leave-last-out train part",
              "epochs": args.epochs, "threads": args.threads, "wait_policy": args.wait_policy,
              "maasrec_params": dict(MAASREC_PARAMS, batch_size=args.batch_size),
              "recbole_params": RECBOLE_PARAMS, "machine": machine_info(), "runs": runs,
              "ratios": ratios,
              "ratio_median": float(np.median([r["ratio"] for r in ratios])) if ratios else None}
    _write("sequential_speed.json", result, args.out)
    print("\nrepeat  maasrec s/epoch  RecBole s/epoch  ratio")
    for r in ratios:
        print(f"{r['repeat']:>6}  {r['maasrec_median_epoch_s']:>15.1f}  "
              f"{r['recbole_median_epoch_s']:>15.1f}  {r['ratio']:>5.3f}")
    return 0


# -- quality ------------------------------------------------------------------------------
def cmd_quality(args: argparse.Namespace) -> int:
    import warnings

    import torch

    from maasrec.exceptions import ColdStartWarning
    from maasrec.metrics import evaluate
    from maasrec.neural import SequentialRecommender

    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        ds, (train, valid, test) = _split(name, args.data_home)
        for label, params in CONFIGS[name].items():
            for seed in args.seeds:
                p = dict(params, random_state=seed, verbose=False)
                t0 = time.perf_counter()
                model = SequentialRecommender(**p).fit(train, item_features=ds.item_features,
                                                       validation=valid)
                fit_s = time.perf_counter() - t0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ColdStartWarning)
                    val = evaluate(model, train, valid, k=(10, 20), metrics=["ndcg", "hit"],
                                   n_bootstrap=0)
                    model.extend_history(valid)
                    res = evaluate(model, train, test, k=(10, 20), metrics=["ndcg", "hit"],
                                   exclude=valid, n_bootstrap=1000, random_state=seed)
                log = model.training_log_
                row = {"dataset": name, "model": label, "seed": seed, "params": p,
                       "valid": dict(val), "test": dict(res),
                       "test_ci": {k: list(v) for k, v in res.ci.items()},
                       "best_epoch": log["best_epoch"], "epochs_run": log["epochs_run"],
                       "median_epoch_s": float(np.median(log["seconds"])), "fit_s": fit_s,
                       "n_test_users": res.n_users, "loadavg": loadavg()}
                rows.append(row)
                print(f"{name:7s} {label:10s} seed {seed}: valid NDCG@10 {val['ndcg@10']:.4f} "
                      f"| test NDCG@10 {res['ndcg@10']:.4f} HR@10 {res['hit@10']:.4f} "
                      f"NDCG@20 {res['ndcg@20']:.4f} HR@20 {res['hit@20']:.4f} "
                      f"(best epoch {log['best_epoch']}, {fit_s:.0f}s)", flush=True)
    _write("sequential_quality.json", {"command": "quality", "machine": machine_info(),
                                       "configs": CONFIGS, "rows": rows}, args.out)
    return 0


def _write(name: str, obj: dict, out: str | None) -> None:
    path = Path(out) if out else RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=float) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed", help="epoch time vs RecBole SASRec on Amazon Beauty")
    s.add_argument("--epochs", type=int, default=3)
    s.add_argument("--repeats", type=int, default=2)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE"])
    s.add_argument("--recbole-python", default="/tmp/peers/recbole/bin/python")
    s.add_argument("--skip-recbole", action="store_true")
    s.add_argument("--work", default=None)
    s.add_argument("--data-home", default=None)
    s.add_argument("--out", default=None)
    s.set_defaults(func=cmd_speed)
    q = sub.add_parser("quality", help="leave-last-out test NDCG/HR with validation-chosen "
                                       "settings")
    q.add_argument("--datasets", nargs="+", default=["beauty", "ml100k"],
                   choices=["beauty", "ml100k"])
    q.add_argument("--seeds", nargs="+", type=int, default=[0])
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--data-home", default=None)
    q.add_argument("--out", default=None)
    q.set_defaults(func=cmd_quality)
    w = sub.add_parser("_worker", help=argparse.SUPPRESS)
    w.add_argument("--epochs", type=int, required=True)
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--batch-size", type=int, required=True)
    w.add_argument("--data-home", default=None)
    w.set_defaults(func=_maasrec_worker)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
