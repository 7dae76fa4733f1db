"""Helpers of ``bench_prune_distill.py distill-lm``: the teacher's cached pass, list metrics.

The teacher (an ``LMRanker`` two-stage) is fitted once, ranks its candidate lists of
every user twice -- on train (what the students learn from) and on train + validation
(the test-time lists) -- and is saved with both sets of lists under ``--teacher-cache``,
so that the students (variants, seeds, the validation grid) train without a cross-encoder
pass and a rerun skips the teacher.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def lm_params(args, model_name: str) -> dict:
    return dict(model=model_name, n_candidates=args.candidates, history_len=args.history_len,
                max_length=96, max_item_tokens=20, epochs=args.lm_epochs, batch_size=30,
                negatives_per_positive=4, random_negatives=2, positives_per_user=6,
                max_positives=args.max_positives, loss="listwise", peft="lora",
                head="mean", alpha=0.5, random_state=args.seed)


def teacher_stage(args, ds, train, train_full, first_stage, model_name: str, loadavg):
    """The fitted teacher (refreshed on ``train_full``), its lists and timings; cached."""
    import maasrec
    from maasrec.compress.distillation import candidate_lists
    from maasrec.lm_ranker import LMRanker

    params = lm_params(args, model_name)
    tag = (f"{args.first_stage}-s{args.seed}-c{args.candidates}-p{args.max_positives}"
           f"-e{args.lm_epochs}-h{args.history_len}")
    root = Path(args.teacher_cache) / f"distill_lm_teacher_{tag}"
    if (root / "info.json").exists():
        z = np.load(root / "lists.npz")
        info = json.loads((root / "info.json").read_text())
        print(f"teacher loaded from {root}", flush=True)
        return maasrec.load(root / "model"), params, {k: z[k] for k in z.files}, info
    root.mkdir(parents=True, exist_ok=True)
    # each step is saved as it ends, so that a stopped run resumes where it was
    part = root / "partial.json"
    info = json.loads(part.read_text()) if part.exists() else {
        "threads": args.threads, "loadavg_before": loadavg()}
    if (root / "model_train").exists():
        teacher = maasrec.load(root / "model_train")
        print("teacher (fitted on train) loaded", flush=True)
    else:
        t0 = time.perf_counter()
        teacher = LMRanker(first_stage=first_stage(), **params).fit(
            train, item_features=ds.item_features)
        info["fit_s"] = time.perf_counter() - t0
        print(f"teacher fitted in {info['fit_s']:.0f} s", flush=True)
        teacher.save(root / "model_train", overwrite=True)
        part.write_text(json.dumps(info, indent=1))
    if (root / "train_lists.npz").exists():
        z = np.load(root / "train_lists.npz")
        train_items, train_scores = z["items"], z["scores"]
    else:
        t0 = time.perf_counter()
        train_items, train_scores = candidate_lists(teacher, train)
        info["rank_train_lists_s"] = time.perf_counter() - t0
        print(f"teacher's train lists in {info['rank_train_lists_s']:.0f} s", flush=True)
        np.savez(root / "train_lists.npz", items=train_items, scores=train_scores)
        part.write_text(json.dumps(info, indent=1))
    teacher.refresh(train_full)
    t0 = time.perf_counter()
    test_items, test_scores = candidate_lists(teacher, train_full)
    info["rank_test_lists_s"] = time.perf_counter() - t0
    info["loadavg_after"] = loadavg()
    teacher.save(root / "model", overwrite=True)
    lists = {"train_items": train_items, "train_scores": train_scores,
             "test_items": test_items, "test_scores": test_scores}
    np.savez(root / "lists.npz", **lists)
    (root / "info.json").write_text(json.dumps(info, indent=1))
    return teacher, params, lists, info


def target_items(model, split) -> np.ndarray:
    """The held-out item index of every user of ``model`` (-1 where none)."""
    x = split.with_vocab(model.user_vocab_, model.item_vocab_, unknown="ignore")
    out = np.full(len(model.user_vocab_), -1, dtype=np.int64)
    out[x.user_indices] = x.item_indices
    return out


def ndcg_of_lists(order: np.ndarray, target: np.ndarray, user_ids, k: int = 10) -> dict:
    """Per-user NDCG@k (one held-out item) of ranked item-index rows, by raw user id."""
    top = order[:, :k]
    hit = (top == target[:, None]) & (target[:, None] >= 0)
    gain = np.where(hit, 1.0 / np.log2(np.arange(2, k + 2)), 0.0).sum(1)
    return {user_ids[u]: float(gain[u]) for u in np.flatnonzero(target >= 0)}


def rerank(scores_full: np.ndarray, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cands`` re-ordered by ``scores_full`` (users x items); their scores (-inf pads)."""
    s = np.take_along_axis(scores_full, np.maximum(cands, 0), axis=1).astype(np.float64)
    s[cands < 0] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(cands, order, axis=1), s


def agreement(teacher_scores: np.ndarray, cands: np.ndarray, other: np.ndarray) -> dict:
    """How well ``other`` (scores of the candidates) reproduces the teacher's order.

    The teacher's lists are best first: mean Kendall tau-b over users, top-1 agreement
    (the other's best candidate is the teacher's) and top-10 overlap.
    """
    from scipy.stats import kendalltau

    taus, top1, top10 = [], [], []
    for u in np.flatnonzero((cands >= 0).sum(1) >= 2):
        ok = cands[u] >= 0
        t, o = teacher_scores[u, ok], other[u, ok]
        tau = kendalltau(t, o).statistic
        taus.append(0.0 if np.isnan(tau) else tau)
        top1.append(float(np.argmax(o) == 0))
        top10.append(len(set(np.argsort(-o, kind="stable")[:10].tolist()) & set(range(10)))
                     / 10)
    n = len(taus)
    return {"users": n, "kendall_tau": float(np.mean(taus)),
            "kendall_tau_se": float(np.std(taus, ddof=1) / np.sqrt(n)),
            "top1_agreement": float(np.mean(top1)), "top10_overlap": float(np.mean(top10))}


def paired(a: dict, b: dict) -> dict:
    """Mean per-user ``a - b`` over common users with the SE of the paired difference."""
    users = sorted(set(a) & set(b), key=str)
    d = np.array([a[u] for u in users]) - np.array([b[u] for u in users])
    return {"users": len(users), "gain": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(len(d)))}


def seed_mean(per_seed: list[dict]) -> dict:
    """Per-user mean over seeds of per-user NDCG dicts."""
    users = set.intersection(*(set(p) for p in per_seed))
    return {u: float(np.mean([p[u] for p in per_seed])) for u in users}


def reblend(final: np.ndarray, first: np.ndarray, cands: np.ndarray, alpha_fit: float,
            alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's lists with another first-stage blend weight, best first.

    ``final = (1 - alpha_fit) * z(second) + alpha_fit * z(first)`` (``blend_scores``) with
    ``first`` the first stage's scores of ``cands``: ``z(second)`` is recovered and blended
    again at ``alpha`` -- no cross-encoder pass. Returns (items, scores; 0 on padding).
    """
    from maasrec.lm_ranker.two_stage import _standardise

    valid = cands >= 0
    z1 = _standardise(np.where(valid, first, 0.0), valid)
    z2 = (np.where(valid, final, 0.0) - alpha_fit * z1) / (1.0 - alpha_fit)
    out = np.where(valid, (1.0 - alpha) * z2 + alpha * z1, -np.inf)
    order = np.argsort(-out, axis=1, kind="stable")
    items = np.take_along_axis(cands, order, axis=1)
    scores = np.take_along_axis(out, order, axis=1)
    return items, np.where(items >= 0, scores, 0.0).astype(np.float32)


def gather(full: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Scores (users x items) of each row's candidates (0 on -1 padding)."""
    s = np.take_along_axis(full, np.maximum(cands, 0), axis=1).astype(np.float64)
    return np.where(cands >= 0, s, 0.0)


def choose_blend(args, lists, alpha_fit, fs_train, fs_test, valid_target, target, user_ids,
                 base) -> tuple[dict, list]:
    """The teacher's first-stage weight chosen on the validation item (its train-time
    lists rank the validation item); every weight's validation and test NDCG reported."""
    rows, best = [], None
    for a in args.teacher_blends:
        tr = reblend(lists["train_scores"], fs_train, lists["train_items"], alpha_fit, a)
        te = reblend(lists["test_scores"], fs_test, lists["test_items"], alpha_fit, a)
        v = float(np.mean(list(ndcg_of_lists(tr[0], valid_target, user_ids).values())))
        nd = ndcg_of_lists(te[0], target, user_ids)
        rows.append({"blend_alpha": a, "valid_ndcg@10": v,
                     "test_ndcg@10": float(np.mean(list(nd.values()))),
                     "test_gain_over_first_stage": paired(nd, base)})
        if best is None or v > best[0]:
            best = (v, a, tr, te)
    _, a, tr, te = best
    return {"blend_alpha": a, "train_items": tr[0], "train_scores": tr[1],
            "test_items": te[0], "test_scores": te[1]}, rows
