"""Cost of encryption at rest: save/load of a ~380 MB model, encrypted vs plain, same run.

The model is ``EASE(l2=200)`` fitted on synthetic data with 9,750 items (the shape of
``bench_ease.py``: 1.94 users per item, 8.3 interactions per user, Zipf-like popularity),
whose item-item matrix ``B_`` is 9,750^2 float32 = 380 MB. Each round saves the model
plain (``model.save``) and encrypted (``persistence.save_encrypted``, AES-256-GCM), then
loads both, in alternating order, ``--rounds`` times; the table gives the medians and the
encrypted/plain ratios, and checks that both loaded models recommend the same lists. A
separate line times the cipher alone (the packed model through ``encrypt_stream`` into
memory-less sink) to split the cost into cipher and extra copies.

The fit is not timed. Run: ``python benchmarks/bench_privacy_crypto.py`` (about 2-4 minutes
on 2 cores); writes ``benchmarks/results/privacy_crypto.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.machine import machine_info  # noqa: E402


def _data(n_items: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    n_users = round(35_598 / 18_357 * n_items)
    nnz = round(296_337 / 35_598 * n_users)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p /= p.sum()
    rows = rng.integers(0, n_users, nnz)
    cols = rng.choice(n_items, nnz, p=p)
    cols[:n_items] = np.arange(n_items)
    X = sp.csr_matrix((np.ones(nnz, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


class _Null:
    def write(self, b) -> int:
        return len(b)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=9750)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "privacy_crypto.json"))
    ap.add_argument("--dir", default=None, help="where to write the models (default: a temp "
                                               "directory on the same disk as TMPDIR)")
    args = ap.parse_args(argv)

    from maasrec import Recommender
    from maasrec.models import EASE
    from maasrec.persistence import load_encrypted, save_encrypted
    from maasrec.privacy import generate_key
    from maasrec.privacy.crypto import encrypt_stream
    from maasrec.privacy.sealed import _PackReader

    X = _data(args.items)
    t0 = time.perf_counter()
    model = EASE(l2=200.0).fit(X)
    fit_s = time.perf_counter() - t0
    key = generate_key()
    root = Path(tempfile.mkdtemp(prefix="bench-crypto-", dir=args.dir))
    times = {k: [] for k in ("save_plain", "save_encrypted", "load_plain", "load_encrypted")}
    users = np.arange(0, X.shape[0], max(1, X.shape[0] // 50))
    try:
        for r in range(args.rounds):
            order = ("plain", "encrypted") if r % 2 == 0 else ("encrypted", "plain")
            for kind in order:
                path = root / kind
                t0 = time.perf_counter()
                if kind == "plain":
                    model.save(path, overwrite=True)
                else:
                    save_encrypted(model, path, key, overwrite=True)
                times[f"save_{kind}"].append(time.perf_counter() - t0)
            for kind in order:
                t0 = time.perf_counter()
                m = (Recommender.load(root / "plain") if kind == "plain"
                     else load_encrypted(root / "encrypted", key))
                times[f"load_{kind}"].append(time.perf_counter() - t0)
                if r == 0:
                    ids, _ = m.recommend(users, k=10)
                    ref, _ = model.recommend(users, k=10)
                    assert np.array_equal(ids, ref), f"{kind} load differs"
                del m
        sizes = {k: _dir_bytes(root / k) for k in ("plain", "encrypted")}
        cipher = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            encrypt_stream(_PackReader(root / "plain"), _Null(), key)
            cipher.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": machine_info(), "n_items": args.items, "n_users": X.shape[0],
        "nnz": int(X.nnz), "fit_s": fit_s, "rounds": args.rounds, "times_s": times,
        "median_s": med, "bytes": sizes,
        "ratio_save": med["save_encrypted"] / med["save_plain"],
        "ratio_load": med["load_encrypted"] / med["load_plain"],
        "cipher_only_s": statistics.median(cipher),
        "cipher_mb_per_s": sizes["plain"] / 1e6 / statistics.median(cipher),
        "scratch": "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    mb = sizes["plain"] / 1e6
    print(f"EASE {args.items} items: model {mb:.0f} MB plain, "
          f"{sizes['encrypted'] / 1e6:.0f} MB encrypted; fit {fit_s:.1f} s (not in the table)")
    print("| step | plain s | encrypted s | ratio |\n|---|---|---|---|")
    for step in ("save", "load"):
        print(f"| {step} | {med[f'{step}_plain']:.2f} | {med[f'{step}_encrypted']:.2f} | "
              f"{result[f'ratio_{step}']:.2f}x |")
    print(f"cipher alone (pack + AES-256-GCM, no disk write): {result['cipher_only_s']:.2f} s "
          f"= {result['cipher_mb_per_s']:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
