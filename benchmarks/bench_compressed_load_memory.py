"""Resident memory of a process that loads a compressed LMRanker directory (ONNX, int8).

``build`` fits an all-MiniLM-L6-v2 ``LMRanker`` (no fine-tuning, ``epochs=0``: the
weights do not change what is measured) over a Popularity first stage (small state, so
that the language model's share shows) on MovieLens latest-small, and saves
its ONNX Runtime export and its int8 network beside the float model. ``measure`` then
loads each directory in a fresh Python process (``torch``, ``transformers``,
``onnxruntime`` and ``maasrec.compress`` imported first, so the baseline holds the
libraries) and reports the process's
resident set size (``VmRSS``) and peak (``VmHWM``) after the load and after scoring 20
users, minus the baseline measured before the load in the same process. Results go to
``benchmarks/results/compressed_load_memory.json`` under ``--label``.

Run: ``python benchmarks/bench_compressed_load_memory.py --label after`` (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "compressed_load_memory.json"

_CHILD = r"""
import json, sys
import torch
torch.set_num_threads(1)
import transformers, onnxruntime  # noqa: F401,E401
import maasrec.compress.networks, maasrec.compress.onnx_models, maasrec.lm_ranker  # noqa
from maasrec.base import Recommender

def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024.0
    return out

base = status()
m = Recommender.load(sys.argv[1])
loaded = status()
users = list(getattr(m, "model_", m).user_vocab_.ids[:20])
m.recommend(users, k=10)
scored = status()
print(json.dumps({"baseline_mib": base, "loaded_mib": loaded, "scored_mib": scored,
                  "load_rss_mib": loaded["VmRSS"] - base["VmRSS"],
                  "load_peak_mib": loaded["VmHWM"] - base["VmRSS"],
                  "scored_rss_mib": scored["VmRSS"] - base["VmRSS"]}))
"""


def build(folder: Path) -> dict:
    import warnings

    import torch

    from maasrec.compress import export_onnx, quantize_network
    from maasrec.datasets import load_movielens
    from maasrec.lm_ranker import LMRanker
    from maasrec.models import Popularity

    torch.set_num_threads(1)
    ds = load_movielens("latest-small")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranker = LMRanker(first_stage=Popularity(), n_candidates=20, history_len=3,
                          max_length=96, max_item_tokens=20, epochs=0, head="mean",
                          random_state=0).fit(ds.interactions, item_features=ds.item_features)
    paths = {"float": ranker.save(folder / "float"),
             "onnx": export_onnx(ranker, n_threads=1).save(folder / "onnx"),
             "int8": quantize_network(ranker).save(folder / "int8")}
    return {k: str(v) for k, v in paths.items()}


def measure(path: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, path], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="current")
    ap.add_argument("--folder", default=None, help="reuse (or keep) the built directories")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        if not (folder / "onnx").exists():
            build(folder)
        rows = {k: measure(str(folder / k)) for k in ("float", "onnx", "int8")}
    for k, v in rows.items():
        print(k, {kk: round(vv, 1) for kk, vv in v.items() if kk.endswith("_mib")
                  and not isinstance(vv, dict)}, flush=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[args.label] = rows
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
