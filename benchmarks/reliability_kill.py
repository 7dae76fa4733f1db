"""SIGKILL a process while it saves a model: the path must always hold a loadable model.

A child process (forked, so it starts in milliseconds with the fitted models in memory)
saves two EASE models, A and B, alternately to one path with ``overwrite=True``; the
parent kills it with SIGKILL after a seeded-random delay, then checks that

1. the path holds a loadable model whose recommendations are exactly A's or B's (or, in a
   round that starts with no model, that the path is either absent or such a model);
2. after the next save to the path, no ``.NAME.tmp-*`` / ``.NAME.old-*`` sibling is left.

A fraction of the rounds (``--first``) starts with no model at the path, so the kill can
land in a first save. The delay is uniform over ``[0, 3 x median save time]`` (``[0, 1.5 x]``
for first saves), so kills land while files are written, hashed and fsynced, during the
directory exchange and while the old model is removed.

Usage (Linux)::

    python benchmarks/reliability_kill.py --n 50                  # the documented run
    python benchmarks/reliability_kill.py --n 20 --items 1500 --json out.json
    python benchmarks/reliability_kill.py --n 50 --two-renames    # the fallback, for contrast

``--two-renames`` makes the child use the fallback of systems without
``renameat2(RENAME_EXCHANGE)`` (move the old model aside, then the new one in), to show the
window that the exchange closes: there a kill can leave no model at the path, which is
reported (``missing_after_kill``) rather than counted as a failure.

Exit status 0 when every check passed; the summary is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def _data(n_users: int, n_items: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    # long-tail item popularity (power law over a random item order)
    p = (np.arange(n_items) + 1.0) ** -0.7
    p = p[rng.permutation(n_items)] / p.sum()
    per_user = 30
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.choice(n_items, size=n_users * per_user, p=p)
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                      shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


def _siblings(target: Path) -> list[str]:
    pattern = re.compile(rf"\.{re.escape(target.name)}\..*")
    return sorted(n for n in os.listdir(target.parent) if pattern.fullmatch(n))


def _child(write_fd: int, models, target: Path, two_renames: bool) -> None:  # pragma: no cover
    try:
        if two_renames:
            import maasrec.persistence as persistence

            persistence._exchange = lambda a, b: False
        os.write(write_fd, b"R")
        i = 0
        while True:
            models[i % 2].save(target, overwrite=True)
            os.write(write_fd, b"s")
            i += 1
    finally:
        os._exit(3)  # only reached on an exception: the parent sees no kill


def run(n: int = 50, *, items: int = 3000, users: int = 4000, seed: int = 0,
        first: float = 0.3, two_renames: bool = False, workdir: str | None = None) -> dict:
    """Run ``n`` kill rounds; return the summary (``failures`` empty when all checks held)."""
    from maasrec import Recommender
    from maasrec.models import EASE

    rng = np.random.default_rng(seed)
    X = _data(users, items, seed)
    t0 = time.perf_counter()
    models = [EASE(l2=50.0).fit(X), EASE(l2=5000.0).fit(X)]
    fit_s = time.perf_counter() - t0
    probe = list(range(0, users, max(1, users // 50)))
    expected = [m.recommend(probe, k=10)[0] for m in models]
    if np.array_equal(expected[0], expected[1]):
        raise RuntimeError("models A and B recommend the same lists; the check could not tell "
                           "them apart")
    root = Path(workdir or tempfile.mkdtemp(prefix="maasrec-kill-"))
    root.mkdir(parents=True, exist_ok=True)
    target = root / "model"
    if target.exists():
        shutil.rmtree(target)
    save_times = []
    for i in range(5):
        t = time.perf_counter()
        models[i % 2].save(target, overwrite=True)
        save_times.append(time.perf_counter() - t)
    save_s = statistics.median(save_times)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())

    rounds, failures = [], []
    counts = {"first": 0, "overwrite": 0, "loadable_old_or_new": 0, "missing_after_kill": 0,
              "orphans_after_kill": 0, "orphans_after_next_save": 0,
              "killed_mid_write": 0, "killed_after_complete_write": 0,
              "killed_between_saves": 0}
    for i in range(n):
        mode = "first" if rng.random() < first else "overwrite"
        counts[mode] += 1
        if mode == "first" and target.exists():
            shutil.rmtree(target)
        delay = float(rng.uniform(0.0, (1.5 if mode == "first" else 3.0) * save_s))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            _child(w, models, target, two_renames)
        os.close(w)
        if os.read(r, 1) != b"R":
            failures.append(f"round {i}: child did not start")
            continue
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        saves_done = 0
        while chunk := os.read(r, 4096):
            saves_done += chunk.count(b"s")
        os.close(r)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if not killed:
            failures.append(f"round {i}: child ended by itself (status {status})")
        left = _siblings(target)
        counts["orphans_after_kill"] += len(left)
        tmps = [root / s for s in left if ".tmp-" in s or ".old-" in s]
        if not tmps:
            counts["killed_between_saves"] += 1
        elif any((t / "maasrec.json").exists() for t in tmps):
            counts["killed_after_complete_write"] += 1
        else:
            counts["killed_mid_write"] += 1
        outcome = None
        if not target.exists():
            counts["missing_after_kill"] += 1
            outcome = "missing"
            if not (two_renames or (mode == "first" and saves_done == 0)):
                failures.append(f"round {i} ({mode}, {saves_done} saves done, delay "
                                f"{delay * 1e3:.1f} ms): no model at the path after the kill")
        else:
            try:
                got = Recommender.load(target).recommend(probe, k=10)[0]
                outcome = next((name for name, e in zip("AB", expected)
                                if np.array_equal(got, e)), None)
                if outcome is None:
                    failures.append(f"round {i}: the model at the path is neither A nor B")
                else:
                    counts["loadable_old_or_new"] += 1
            except Exception as exc:  # any failure to load is the finding
                failures.append(f"round {i} ({mode}, delay {delay * 1e3:.1f} ms): "
                                f"{type(exc).__name__}: {exc}")
        models[i % 2].save(target, overwrite=True)  # the next save cleans up
        after = _siblings(target)
        counts["orphans_after_next_save"] += len(after)
        if after:
            failures.append(f"round {i}: orphans after the next save: {after}")
        rounds.append({"mode": mode, "delay_ms": round(delay * 1e3, 2), "saves_done": saves_done,
                       "siblings_after_kill": left, "model": outcome})
    shutil.rmtree(root, ignore_errors=True)
    return {"kills": n, "two_renames": two_renames, "items": items, "users": users,
            "seed": seed, "model_bytes": size, "fit_s": round(fit_s, 2),
            "save_ms_median": round(save_s * 1e3, 1),
            "save_ms": [round(t * 1e3, 1) for t in save_times],
            **counts, "failures": failures, "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="number of SIGKILLs (default 50)")
    ap.add_argument("--items", type=int, default=3000, help="EASE catalogue size (default 3000)")
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=float, default=0.3,
                    help="fraction of rounds that start with no model at the path")
    ap.add_argument("--two-renames", action="store_true",
                    help="use the fallback without RENAME_EXCHANGE (shows the window)")
    ap.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    ap.add_argument("--json", default=None, help="also write the summary here")
    ap.add_argument("--rounds", action="store_true", help="print every round")
    args = ap.parse_args(argv)
    if not hasattr(os, "fork"):
        print("needs os.fork (Linux)", file=sys.stderr)
        return 2
    t = time.perf_counter()
    summary = run(args.n, items=args.items, users=args.users, seed=args.seed, first=args.first,
                  two_renames=args.two_renames, workdir=args.dir)
    summary["wall_s"] = round(time.perf_counter() - t, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    shown = summary if args.rounds else {k: v for k, v in summary.items() if k != "rounds"}
    print(json.dumps(shown, indent=1))
    return 0 if not summary["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
