"""Federated BPR-MF (Flower simulation) against centralised BPRMF on the same split.

Data: MovieLens (``--data``, default ``ml-1m``), per-user random 8:1:1 split (seed 0).
Centralised: ``BPRMF(random_state=seed)`` with its defaults (100 epochs, Adam 0.003),
fitted on train. Federated: :func:`maasrec.privacy.train_federated` on the same train
part, for each ``--clients`` setting (``N`` or ``N/K``: N clients, K trained per round),
evaluated on the validation part every ``--every`` rounds (the curve) and on the test
part at the end (every evaluated model is what the devices would hold if training stopped
there: the aggregated item side, each client's user factors fitted to it). NDCG@10 with full ranking (seen items excluded). The JSON keeps, per
run, the rounds, the serialized bytes per round and per client, the wall time and the
ratio of federated to centralised test NDCG@10; ``rounds_to_90`` is the first evaluated
round whose validation NDCG@10 reached 90% of the centralised validation NDCG@10.

Run: ``python benchmarks/bench_federated.py`` (ML-1M, about 30-40 minutes on 2 busy
cores); writes
``benchmarks/results/federated.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.machine import machine_info  # noqa: E402


def _ndcg(model, train, part) -> float:
    from maasrec.metrics.evaluation import evaluate

    return float(evaluate(model, train, part, k=10, metrics=["ndcg"], n_bootstrap=0)["ndcg@10"])


def _clients(spec: str) -> tuple[int, int | None, int | None]:
    spec, _, bs = spec.partition("@")
    n, _, k = spec.partition("/")
    return int(n), (int(k) if k else None), (int(bs) if bs else None)


def run(args) -> dict:
    from maasrec import datasets
    from maasrec.data.split import random_split
    from maasrec.models import BPRMF
    from maasrec.privacy.federated import train_federated

    X = datasets.load_movielens(args.data).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cold items in the evaluation parts (kept, unscorable)
        train, valid, test = random_split(X, (0.8, 0.1, 0.1), random_state=0)
    out = {"machine": machine_info(), "data": args.data, "split": "per-user random 8:1:1, seed 0",
           "metric": "NDCG@10, full ranking, seen items excluded", "runs": []}
    for seed in args.seeds:
        t0 = time.perf_counter()
        central = BPRMF(random_state=seed).fit(train)
        c = {"seed": seed, "model": "BPRMF() defaults (100 epochs)",
             "fit_seconds": time.perf_counter() - t0,
             "valid_ndcg@10": _ndcg(central, train, valid),
             "test_ndcg@10": _ndcg(central, train, test)}
        print("centralised", c, flush=True)
        for spec in args.clients:
            n, k, bs = _clients(spec)
            curve = []

            def on_round(rnd, model, curve=curve, spec=spec):
                if rnd % args.every == 0 or rnd == args.rounds:
                    v = _ndcg(model, train, valid)
                    curve.append((rnd, v))
                    print(f"  {spec} round {rnd}: valid NDCG@10 {v:.4f}", flush=True)
                    return {"valid_ndcg@10": v}
                return None

            params = {"n_clients": n, "clients_per_round": k, "rounds": args.rounds,
                      "learning_rate": args.lr, "batch_size": bs or args.batch_size,
                      "local_epochs": args.local_epochs, "factors": 64}
            res = train_federated(train, random_state=seed, on_round=on_round, **params)
            test_v = _ndcg(res.model, train, test)
            valid_v = _ndcg(res.model, train, valid)
            target = 0.9 * c["valid_ndcg@10"]
            reached = next((r for r, v in curve if v >= target), None)
            rounds = res.rounds
            f = {"seed": seed, "clients": spec, "params": params,
                 "seconds": res.seconds,
                 "seconds_per_round": sum(r["seconds"] for r in rounds) / len(rounds),
                 "bytes_per_client_round_each_way": res.bytes_per_client_round,
                 "bytes_per_round_down": rounds[0]["bytes_down"],
                 "bytes_per_round_up": rounds[0]["bytes_up"],
                 "bytes_total": sum(r["bytes_down"] + r["bytes_up"] for r in rounds)
                 + res.final_round["bytes_down"],
                 "final_round": res.final_round,
                 "valid_curve": curve, "rounds_to_90": reached,
                 "valid_ndcg@10": valid_v, "test_ndcg@10": test_v,
                 "test_ratio_to_centralised": test_v / c["test_ndcg@10"],
                 "valid_ratio_to_centralised": valid_v / c["valid_ndcg@10"]}
            print("federated", {k_: v for k_, v in f.items() if k_ != "valid_curve"}, flush=True)
            out["runs"].append({"centralised": c, "federated": f})
            if args.out:  # after every run, so a long suite keeps what it measured
                Path(args.out).write_text(json.dumps({**out, "args": vars(args)}, indent=1) + "\n")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml-1m")
    p.add_argument("--clients", nargs="+", default=["100", "1000/100@64"],
                   help="N (all N clients every round) or N/K (K of N per round), then "
                        "optionally @B: local batch size B for this setting")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--local-epochs", type=int, default=3)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default=str(HERE / "results" / "federated.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = run(args)
    result["args"] = vars(args)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
