"""Benchmark: TextEncoder vs the hand-written transformers loop, and the embedding cache.

Encodes every MovieLens 1M title with its genres ("Toy Story (1995) | Animation,
Children's, Comedy"; 3883 texts) with all-MiniLM-L6-v2 on the CPU, and reports, in one
run:

- throughput (texts/s) of ``TextEncoder.encode`` (cache off) against the loop of the
  model card (same model instance type, batch size, ``max_length``; batches in input
  order, ``torch.no_grad``), timed alternately, median of ``--repeats``;
- the padding each strategy computes (why length-sorted batches are faster);
- a cached re-encode: same encoder object, and a fresh process with a fresh encoder
  (which, on a full hit, never loads the weights);
- peak memory of each way (RSS sampled during the call, in separate processes, and
  Python-heap peak by ``tracemalloc``);
- the largest difference between the two ways' vectors.

Usage::

    MAASREC_DATA=/path/to/data python benchmarks/bench_encoders.py [--threads 2]
    python benchmarks/bench_encoders.py --data-home /path/to/data --quick

Writes ``benchmarks/results/encoders.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# -- data -----------------------------------------------------------------------------------

def load_texts(data_home: str | None, limit: int | None = None) -> list[str]:
    """MovieLens 1M titles + genres, in file order."""
    home = data_home or os.environ.get("MAASREC_DATA")
    if not home:
        sys.exit("no data: pass --data-home or set MAASREC_DATA (a folder holding ml-1m/)")
    path = Path(home).expanduser() / "ml-1m" / "movies.dat"
    if not path.is_file():
        sys.exit(f"{path} not found")
    texts = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            _, title, genres = line.split("::")
            texts.append(f"{title} | {genres.replace('|', ', ')}")
    return texts[:limit] if limit else texts


# -- the two ways ----------------------------------------------------------------------------

def load_plain(model_name: str):
    """Model and tokenizer the way a user would (resolving the packaged copy like maasrec)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from maasrec.encoders.hub import resolve_model

    src = resolve_model(model_name)
    tok = AutoTokenizer.from_pretrained(src.path)
    model = AutoModel.from_pretrained(src.path, dtype=torch.float32).eval()
    return model, tok


def plain_encode(model, tok, texts, batch_size, max_length):
    """The loop of the all-MiniLM-L6-v2 model card: batches in input order."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt")
        with torch.no_grad():
            output = model(**enc)
        tokens = output[0]
        mask = enc["attention_mask"].unsqueeze(-1).expand(tokens.size()).float()
        emb = torch.sum(tokens * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
        out.append(F.normalize(emb, p=2, dim=1).numpy())
    return np.concatenate(out)


def make_encoder(model_name, batch_size, max_length, cache_dir=False):
    from maasrec.encoders import TextEncoder

    return TextEncoder(model_name, batch_size=batch_size, max_length=max_length,
                       cache_dir=cache_dir, device="cpu")


def padding_stats(tok, texts, batch_size, max_length):
    """Token positions computed by unsorted vs length-sorted batches."""
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    real = sum(lengths)

    def computed(ls):
        return sum(max(ls[i:i + batch_size]) * len(ls[i:i + batch_size])
                   for i in range(0, len(ls), batch_size))

    unsorted = computed(lengths)
    sorted_ = computed(sorted(lengths, reverse=True))
    return {"real_tokens": real, "mean_length": real / len(lengths), "max_length": max(lengths),
            "positions_unsorted": unsorted, "positions_sorted": sorted_,
            "padding_share_unsorted": 1 - real / unsorted,
            "padding_share_sorted": 1 - real / sorted_}


# -- memory workers (separate processes) ------------------------------------------------------

def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples the resident set size every 2 ms while active."""

    def __enter__(self):
        self.start = _rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def worker(args) -> dict:
    """One measurement in this (fresh) process; prints JSON.

    The timed call runs with an RSS sampler only; the Python-heap peak comes from a
    second call under ``tracemalloc`` (which slows Python code down).
    """
    import torch

    torch.set_num_threads(args.threads)
    texts = load_texts(args.data_home, args.limit)
    out: dict = {"method": args.worker}
    t0 = time.perf_counter()
    import transformers.models.auto.modeling_auto  # noqa: F401  (one-time imports, not timed)
    from transformers import AutoConfig  # noqa: F401

    import maasrec.encoders  # noqa: F401

    out["imports_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.worker == "plain":
        model, tok = load_plain(args.model)

        def run():
            return plain_encode(model, tok, texts, args.batch_size, args.max_length)
    elif args.worker == "maasrec":
        enc = make_encoder(args.model, args.batch_size, args.max_length).load_model()

        def run():
            return enc.encode(texts)
    else:  # cached: a fresh encoder per call, as in a new process
        encoders = []

        def run():
            encoders.append(make_encoder(args.model, args.batch_size, args.max_length,
                                         cache_dir=args.cache_dir))
            return encoders[-1].encode(texts)
    out["setup_s"] = time.perf_counter() - t0
    if args.worker != "cached":
        run()  # warm-up (lazy kernels); the cached way must stay a cold first call
    with PeakRSS() as rss:
        t = time.perf_counter()
        run()
        out["seconds"] = time.perf_counter() - t
    out["rss_before_mb"] = rss.start / 2**20
    out["rss_peak_mb"] = rss.peak / 2**20
    out["rss_increase_mb"] = (rss.peak - rss.start) / 2**20
    if args.worker == "cached":
        out["weights_loaded"] = bool(encoders[0].is_loaded)
    tracemalloc.start()
    run()
    out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(json.dumps(out))
    return out


def run_worker(args, method: str, cache_dir: str | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method,
           "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length), "--model", args.model]
    if args.data_home:
        cmd += ["--data-home", args.data_home]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if cache_dir:
        cmd += ["--cache-dir", cache_dir]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- main --------------------------------------------------------------------------------------

def machine_info(threads: int) -> dict:
    import torch
    import transformers

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": threads,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "load_average_at_start": load}


def run_suite(args, threads: int, texts: list[str]) -> dict:
    """All measurements at one torch thread count."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    args.threads = threads  # the memory workers use the same count
    info = machine_info(threads)
    n = len(texts)
    print(f"\n== {n} texts, model {args.model}, batch {args.batch_size}, max_length "
          f"{args.max_length}, torch threads {threads}, CPU {info['cpu']} "
          f"({info['logical_cpus']} logical), load average {info['load_average_at_start']}")

    model, tok = load_plain(args.model)
    enc = make_encoder(args.model, args.batch_size, args.max_length).load_model()
    pad = padding_stats(tok, texts, args.batch_size, args.max_length)
    plain_encode(model, tok, texts[:args.batch_size], args.batch_size, args.max_length)  # warm-up
    enc.encode(texts[:args.batch_size])

    plain_t, ours_t = [], []
    for r in range(args.repeats):  # alternate, so machine noise hits both alike
        order = [("plain", plain_t), ("maasrec", ours_t)]
        for name, bucket in (order if r % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            if name == "plain":
                ref = plain_encode(model, tok, texts, args.batch_size, args.max_length)
            else:
                ours = enc.encode(texts)
            bucket.append(time.perf_counter() - t)
            print(f"  repeat {r + 1}: {name:8s} {bucket[-1]:7.2f} s")
    max_diff = float(np.abs(ref - ours).max())

    with tempfile.TemporaryDirectory(prefix="maasrec-bench-cache-") as cache_dir:
        cached = make_encoder(args.model, args.batch_size, args.max_length, cache_dir=cache_dir)
        t = time.perf_counter()
        cold = cached.encode(texts)
        cold_s = time.perf_counter() - t
        warm = []
        for _ in range(5):
            t = time.perf_counter()
            again = cached.encode(texts)
            warm.append(time.perf_counter() - t)
        assert np.array_equal(cold, again)
        fresh = None if args.no_memory else run_worker(args, "cached", cache_dir)
        shards = len(list(Path(cache_dir).glob("*/shard-*.safetensors")))
        size_mb = sum(f.stat().st_size for f in Path(cache_dir).rglob("*/shard-*")
                      if f.is_file()) / 2**20

    memory = {}
    if not args.no_memory:
        for method in ("plain", "maasrec"):
            memory[method] = run_worker(args, method)
        memory["cached_fresh_process"] = fresh

    plain_med, ours_med = statistics.median(plain_t), statistics.median(ours_t)
    warm_med = statistics.median(warm)
    result = {
        "torch_threads": threads,
        "machine": {**info, "load_average_at_end": os.getloadavg()
                    if hasattr(os, "getloadavg") else None},
        "padding": pad,
        "throughput": {
            "plain_loop_seconds": plain_t, "maasrec_seconds": ours_t,
            "plain_loop_texts_per_s": n / plain_med, "maasrec_texts_per_s": n / ours_med,
            "speedup": plain_med / ours_med, "goal_speedup": 1.3,
            "max_abs_diff_vs_plain": max_diff,
        },
        "cache": {
            "cold_encode_with_write_s": cold_s, "warm_reencode_s": warm,
            "warm_speedup_vs_uncached": ours_med / warm_med,
            "fresh_process_reencode_s": fresh["seconds"] if fresh else None,
            "fresh_process_speedup_vs_uncached": ours_med / fresh["seconds"] if fresh else None,
            "fresh_process_loaded_weights": fresh["weights_loaded"] if fresh else None,
            "goal_speedup": 100, "shards": shards, "size_mb": size_mb,
        },
        "memory": memory,
    }

    print(f"\n{'':34s}{'seconds':>10s}{'texts/s':>10s}{'speedup':>10s}")
    print(f"{'plain transformers loop':34s}{plain_med:10.2f}{n / plain_med:10.0f}{1.0:10.2f}")
    print(f"{'TextEncoder.encode (no cache)':34s}{ours_med:10.2f}{n / ours_med:10.0f}"
          f"{plain_med / ours_med:10.2f}")
    print(f"{'cached re-encode, same object':34s}{warm_med:10.4f}{n / warm_med:10.0f}"
          f"{ours_med / warm_med:10.0f}  (vs TextEncoder without cache)")
    if fresh:
        print(f"{'cached re-encode, fresh process':34s}{fresh['seconds']:10.4f}"
              f"{n / fresh['seconds']:10.0f}{ours_med / fresh['seconds']:10.0f}"
              f"  (weights loaded: {fresh['weights_loaded']})")
    print(f"padding computed: {pad['padding_share_unsorted']:.0%} of positions unsorted, "
          f"{pad['padding_share_sorted']:.0%} length-sorted; max |diff| vs plain {max_diff:.1e}")
    print(f"cache: cold encode + write {cold_s:.2f} s, {shards} shard(s), {size_mb:.1f} MB")
    if memory:
        print(f"\n{'memory (separate processes)':34s}{'RSS before':>12s}{'RSS peak':>10s}"
              f"{'+RSS':>8s}{'py heap':>9s}")
        for k, m in memory.items():
            print(f"{k:34s}{m['rss_before_mb']:10.0f}MB{m['rss_peak_mb']:8.0f}MB"
                  f"{m['rss_increase_mb']:6.0f}MB{m['tracemalloc_peak_mb']:7.1f}MB")
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-home", default=None, help="folder holding ml-1m/ (or MAASREC_DATA)")
    p.add_argument("--threads", type=int, nargs="+", default=[min(2, os.cpu_count() or 1)],
                   help="torch thread count(s); one full run per value")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="only the first N titles")
    p.add_argument("--quick", action="store_true", help="1 repeat, 1000 titles")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--output", default=str(HERE / "results" / "encoders.json"))
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--worker", choices=["plain", "maasrec", "cached"], help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.limit = 1, args.limit or 1000
    if args.worker:
        args.threads = args.threads[0]
        return worker(args)
    texts = load_texts(args.data_home, args.limit)
    runs = [run_suite(args, t, texts) for t in args.threads]
    result = {
        "benchmark": "encoders",
        "data": {"dataset": "MovieLens 1M movies.dat (title | genres)", "n_texts": len(texts)},
        "settings": {"model": args.model, "batch_size": args.batch_size,
                     "max_length": args.max_length, "repeats": args.repeats},
        "runs": runs,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
