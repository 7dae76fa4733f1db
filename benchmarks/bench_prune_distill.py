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
    ItemKNN or ALS; also the baseline of the teacher's gain) proposes ``--candidates``
    items, the all-MiniLM-L6-v2 cross-encoder (LoRA, listwise, mean head, history of
    ``--history-len`` titles, 96 tokens, blended with the first stage at alpha 0.5)
    re-ranks them; fine-tuned on train for ``--lm-epochs`` over ``--max-positives``
    groups. The teacher ranks its lists once on train (what the students learn from,
    ``candidate_lists``) and once on train + validation (the test-time lists, whose top
    10 give its NDCG@10); model and lists are saved under ``--teacher-cache`` and reused.
    Students: ``SequentialRecommender`` (width 64, 2 blocks, ``max_len`` 50), early-stopped
    on validation, three variants -- ``control`` (alpha 0: the next-item loss alone, no
    teacher), ``distilled`` (both terms) and ``teacher-only`` (alpha 1: the teacher's
    lists alone) -- the weight and temperature chosen on the validation item (seed 0,
    ``--alphas`` x ``--temperatures``), then ``--student-seeds`` seeds each. Each student is
    tested over the whole catalogue and as a re-ranker of the teacher's test-time
    candidates (the first stage's; no cross-encoder), and its order of those candidates
    is compared with the teacher's (Kendall tau-b, top-1 agreement, top-10 overlap; the
    first stage's own order as the reference). Gains over the first stage and
    differences from the control: per-user means over seeds, with the standard error of
    the paired difference. Speed: top-10 of ``--speed-users`` users, one thread, the
    teacher and the seed-0 distilled student alternating.
``distill-seq``
    MovieLens 100K as above: a wide ``SequentialRecommender`` teacher (width 128, 2
    blocks) and a narrow student (width 32, 1 block) distilled at every position over the
    whole catalogue (``mode="positions"``), beside the same narrow model trained alone.

Run: ``python benchmarks/bench_prune_distill.py prune`` (about 45 minutes on 2 busy cores),
``... distill-lm`` (``--first-stage popularity --candidates 50 --max-positives 1000
--epochs 20 --threads 2``: about 60 minutes on busy cores, 20 with the teacher cached), ``... distill-seq`` (about 20).
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


def _student_row(m, lists, target, user_ids, train_full, valid, test, seed) -> dict:
    """A fitted student on test: over the catalogue, re-ranking the teacher's test-time
    candidates (the first stage's), and its agreement with the teacher's order of them."""
    from benchmarks import _distill_lm as dl

    m.extend_history(valid)
    cat = _test(m, train_full, None, test, seed)
    cands = lists["test_items"]
    full = np.asarray(m.score_indices(np.arange(len(user_ids))), dtype=np.float64)
    order, s = dl.rerank(full, cands)
    rer = dl.ndcg_of_lists(order, target, user_ids)
    return {"catalogue": cat.pop("_per_user"), "rerank": rer, "test": cat,
            "rerank_ndcg@10": float(np.mean(list(rer.values()))),
            "agreement": dl.agreement(lists["test_scores"], cands, s),
            "best_epoch": m.training_log_.get("best_epoch"),
            "valid_ndcg@10": m.training_log_.get("best_metric")}


def cmd_distill_lm(args) -> int:
    import torch

    from benchmarks import _distill_lm as dl
    from benchmarks.bench_lmranker import MODEL
    from maasrec.compress.distillation import distill
    from maasrec.neural import SequentialRecommender

    torch.set_num_threads(args.threads)
    ds, train, valid, test, train_full = _ml100k(args.data_home)
    teacher, lm_params, lists, info = dl.teacher_stage(
        args, ds, train, train_full, lambda: _first_stage(args.first_stage, args.seed), MODEL,
        loadavg)
    user_ids = list(teacher.user_vocab_.ids)
    target = dl.target_items(teacher, test)
    # the first stage on train + validation: the baseline, and its scores of the candidates
    first = _first_stage(args.first_stage, args.seed).fit(train_full)
    fs = _test(first, train_full, None, test, args.seed)
    base = fs.pop("_per_user")
    every = np.arange(len(user_ids))
    fs_full = np.asarray(first.score_indices(every), dtype=np.float64)
    fitted_nd = dl.ndcg_of_lists(lists["test_items"], target, user_ids)
    blends = None
    if args.teacher_blends:  # the first-stage weight of the blend, chosen on validation
        fs_train = _first_stage(args.first_stage, args.seed).fit(train).score_indices(every)
        lists, blends = dl.choose_blend(
            args, lists, float(lm_params["alpha"]),
            dl.gather(np.asarray(fs_train, dtype=np.float64), lists["train_items"]),
            dl.gather(fs_full, lists["test_items"]), dl.target_items(teacher, valid), target,
            user_ids, base)
        teacher.alpha = lists["blend_alpha"]
        print("teacher blends", blends, flush=True)
    fs_order, fs_s = dl.rerank(fs_full, lists["test_items"])
    # the teacher's NDCG from its test-time lists (their top 10 is its recommend(k=10));
    # the same computation on the first stage's own order checks it against evaluate()
    teacher_nd = dl.ndcg_of_lists(lists["test_items"], target, user_ids)
    fs_check = float(np.mean(list(dl.ndcg_of_lists(fs_order, target, user_ids).values())))
    gain = dl.paired(teacher_nd, base)
    print("teacher test gain", gain, "first stage", fs["ndcg@10"], "check", fs_check,
          flush=True)
    ranked = (lists["train_items"], lists["train_scores"])

    def fit(alpha, temperature, seed):
        t0 = time.perf_counter()
        m = distill(teacher, SequentialRecommender(**_seq_params(args, random_state=seed)),
                    train, validation=valid, mode="lists", alpha=alpha,
                    temperature=temperature, lists=ranked)
        return m, time.perf_counter() - t0

    # the distillation weight and temperature, chosen on validation (seed 0) only
    grid = {}
    for label, alphas in (("distilled", args.alphas), ("teacher-only", [1.0])):
        for alpha in alphas:
            for temp in args.temperatures:
                m, sec = fit(alpha, temp, args.seed)
                grid[(label, alpha, temp)] = (m, sec)
                print(f"grid {label} alpha={alpha} T={temp}: valid "
                      f"{m.training_log_['best_metric']:.4f} ({sec:.0f} s)", flush=True)
    chosen = {"control": (0.0, 1.0)}
    for label in ("distilled", "teacher-only"):
        best = max((k for k in grid if k[0] == label),
                   key=lambda k: grid[k][0].training_log_["best_metric"])
        chosen[label] = best[1:]
    seeds = [args.seed + i for i in range(args.student_seeds)]
    runs = {label: [] for label in chosen}
    for label, (alpha, temp) in chosen.items():
        for seed in seeds:
            if seed == args.seed and (label, alpha, temp) in grid:
                m, sec = grid[(label, alpha, temp)]
            else:
                m, sec = fit(alpha, temp, seed)
            row = _student_row(m, lists, target, user_ids, train_full, valid, test,
                               args.seed)
            row.update(seed=seed, alpha=alpha, temperature=temp, distill_s=sec, model=m)
            runs[label].append(row)
            print(label, seed, row["test"]["ndcg@10"], row["rerank_ndcg@10"],
                  row["agreement"]["kendall_tau"], flush=True)
    rows = {f"{args.first_stage} (first stage)": {
                "test": fs, "ndcg@10_from_its_lists": fs_check,
                "agreement_with_teacher": dl.agreement(lists["test_scores"],
                                                       lists["test_items"], fs_s)},
            "lmranker two-stage": {"test_ndcg@10": float(np.mean(list(teacher_nd.values()))),
                                   "gain_over_first_stage": gain, **info,
                                   "blend_alpha": float(teacher.alpha),
                                   "as_fitted": {"blend_alpha": float(lm_params["alpha"]),
                                                 "test_ndcg@10": float(np.mean(list(
                                                     fitted_nd.values())))},
                                   "blends_tried": blends}}
    control = {k: dl.seed_mean([r[k] for r in runs["control"]])
               for k in ("catalogue", "rerank")}
    for label, rs in runs.items():
        summary = {"alpha": rs[0]["alpha"], "temperature": rs[0]["temperature"],
                   "seeds": seeds}
        for k in ("catalogue", "rerank"):
            mean = dl.seed_mean([r[k] for r in rs])
            g = dl.paired(mean, base)
            summary[k] = {"ndcg@10": float(np.mean(list(mean.values()))),
                          "gain_over_first_stage": g,
                          "gain_kept": g["gain"] / gain["gain"] if gain["gain"] > 0 else None,
                          "vs_control": dl.paired(mean, control[k]),
                          "per_seed_gain": [dl.paired(r[k], base)["gain"] for r in rs]}
        summary["agreement"] = {
            key: float(np.mean([r["agreement"][key] for r in rs]))
            for key in ("kendall_tau", "top1_agreement", "top10_overlap")}
        summary["agreement"]["kendall_tau_per_seed"] = [r["agreement"]["kendall_tau"]
                                                        for r in rs]
        summary["runs"] = [{k: v for k, v in r.items()
                            if k not in ("catalogue", "rerank", "model")} for r in rs]
        rows[f"student {label}"] = summary
    tuning = [{"variant": k[0], "alpha": k[1], "temperature": k[2],
               "valid_ndcg@10": v[0].training_log_["best_metric"],
               "best_epoch": v[0].training_log_.get("best_epoch"), "distill_s": v[1]}
              for k, v in grid.items()]
    rng = np.random.default_rng(args.seed)
    users = list(rng.choice(test.user_vocab.ids[test.users_with_interactions()],
                            size=args.speed_users, replace=False))
    load_before = loadavg()
    speed = _speed_pair({"lmranker": teacher, "student": runs["distilled"][0]["model"]},
                        users, args.repeats)
    d = rows["student distilled"]
    # a share of a gain within the noise means nothing: the teacher's gain must stand two
    # paired standard errors above zero before "kept" is judged
    significant = bool(gain["gain"] > 2 * gain["se"])
    goal = {"goal": "distilled student of the LMRanker two-stage: >= 10x faster per user, "
                    ">= 80% of the LMRanker's NDCG@10 gain over its first stage",
            "first_stage": args.first_stage,
            "lmranker_gain_over_first_stage": gain["gain"], "lmranker_gain_se": gain["se"],
            "gain_beyond_se": bool(gain["gain"] > gain["se"]),
            "teacher_gain_significant": significant,
            "gain_kept": {f"{lab} {k}": rows[f"student {lab}"][k]["gain_kept"]
                          for lab in runs for k in ("catalogue", "rerank")},
            "users_per_s": speed, "speedup": speed["student"] / speed["lmranker"],
            "met": bool(significant and (d["catalogue"]["gain_kept"] or 0) >= 0.8
                        and speed["student"] / speed["lmranker"] >= 10)}
    key = "distill_lm" if args.first_stage == "ease" else f"distill_lm_{args.first_stage}"
    if args.tag:
        key = f"{key}_{args.tag}"
    _store(key, {"dataset": "movielens-100k leave-last-out (implicit)",
                 "first_stage": args.first_stage, "teacher_params": lm_params,
                 "teacher_scale": f"{args.max_positives} training groups, {args.lm_epochs} "
                                  f"epoch(s), {args.candidates} candidates, CPU",
                 "student_params": _seq_params(args), "threads": args.threads,
                 "tuning_on_validation": tuning, "speed_users": len(users),
                 "speed_repeats": args.repeats, "loadavg_before_speed": load_before,
                 "loadavg_after": loadavg(), "rows": rows, "goal": goal})
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
            p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.8],
                           help="distillation weights tried (chosen on validation)")
            p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0],
                           help="temperatures tried (chosen on validation)")
            p.add_argument("--student-seeds", type=int, default=3)
            p.add_argument("--teacher-blends", type=float, nargs="*",
                           default=[0.0, 0.25, 0.5, 0.75],
                           help="first-stage weights of the teacher's blend tried on "
                                "validation from its cached lists (none: as fitted)")
            p.add_argument("--tag", default="",
                           help="suffix of the results key (keeps runs of other settings)")
            p.add_argument("--teacher-cache", default=tempfile.gettempdir(),
                           help="folder of the teacher's saved model and lists (reused)")
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
