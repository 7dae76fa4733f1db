"""Model-corruption fuzzing: corrupt saved models of every registered class, then load them.

Each case copies a pristine saved model (a tiny model of one class, fitted on synthetic
data), corrupts one thing in it -- bytes of any file, one value / the dtype / the shape
of one safetensors tensor, a dropped or added tensor, one JSON value -- and, in a second
variant, rewrites the file manifest's hashes (``maasrec.json``'s ``files``) so that the
corruption reaches the semantic checks the way a crafted model would. Then it runs
``Recommender.load`` + ``recommend`` (a known user and a cold history) + ``score``.

A case passes when every step works or raises a :class:`maasrec.MaasrecError`. Cases run
in worker subprocesses (a batch each, one JSON line per case), so a segfault or a hang is
seen and reported with the case that was running, instead of killing the caller.

Usage::

    python -m benchmarks.reliability_fuzz --cases 1000 --seed 0 [--out results.json]

Outcomes: ``ok`` (loaded and served), ``maasrec`` (a MaasrecError), ``other`` (any other
exception: a bug), ``crash`` (the worker died: a bug), ``hang`` (per-case timeout: a bug).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import random
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

CLASSES = ["Popularity", "EASE", "ItemKNN", "PureSVD", "PureSVD+flat", "ALS", "ALS+faiss",
           "BPRMF", "BPRMF+ivf",
           "SequentialRecommender", "HybridRecommender", "HybridRecommender-attention",
           "NeuMF", "TwoStage", "LMRanker"]

KINDS = ["flip", "truncate", "extend", "st_value", "st_dtype", "st_shape", "st_drop",
         "st_add", "json"]
_KIND_WEIGHTS = [8, 5, 3, 30, 8, 8, 5, 3, 30]

BAD_NUMBERS = [-1, 0, 1, 2, 7, 29, 30, 31, 40, 41, 255, 2**31 - 1, 2**31, 2**53, 2**62,
               -(2**40), 10**18, 1e38, -1e38, 0.5, float("nan"), float("inf"), float("-inf")]
JSON_BAD = [None, True, False, "", "x", "maasrec.models.ease.EASE", [], [1, 2], {}, {"a": 1},
            -1, -7, 0, 1, 2, 3, 10**6, 10**18, 2**63, 1e308, -1e308, 0.5, float("nan"),
            float("inf")]


# -- model preparation (in the worker) ------------------------------------------------------
def _factories() -> dict:
    from maasrec.lm_ranker import LMRanker, TwoStage
    from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD
    from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender
    from maasrec.testing.components import tiny_text_model

    return {
        "Popularity": lambda: Popularity(),
        "EASE": lambda: EASE(l2=10.0),
        "ItemKNN": lambda: ItemKNN(n_neighbors=5),
        "PureSVD": lambda: PureSVD(factors=4, random_state=0),
        "ALS": lambda: ALS(factors=4, iterations=2, random_state=0),
        "ALS+faiss": lambda: ALS(factors=4, iterations=2, random_state=0),
        "PureSVD+flat": lambda: PureSVD(factors=4, random_state=0),
        "BPRMF+ivf": lambda: BPRMF(factors=4, epochs=1, random_state=0),
        "BPRMF": lambda: BPRMF(factors=4, epochs=1, random_state=0),
        "SequentialRecommender": lambda: SequentialRecommender(
            max_len=5, dim=8, n_layers=1, n_heads=1, epochs=1, verbose=False, random_state=0),
        "HybridRecommender": lambda: HybridRecommender(dim=4, epochs=1, random_state=0),
        "HybridRecommender-attention": lambda: HybridRecommender(
            scorer="attention", loss="bpr", dim=4, epochs=1, random_state=0),
        "NeuMF": lambda: NeuMF(dim=4, mlp_layers=(4,), epochs=1, random_state=0),
        "TwoStage": lambda: TwoStage(EASE(l2=10.0), ItemKNN(n_neighbors=5), n_candidates=10),
        "LMRanker": lambda: LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model("bert"),
                                     missing_text="id", history_len=2, max_length=32,
                                     max_positives=4, epochs=1, verbose=False,
                                     random_state=0),
    }


def prepare(base: Path, classes=CLASSES) -> None:
    """Fit and save one tiny model per class into ``base/<class>`` (skips existing ones)."""
    from maasrec.testing.checks import tiny_interactions

    data = None
    facts = _factories()
    for name in classes:
        target = base / name
        if (target / "maasrec.json").is_file():
            continue
        if data is None:
            data = tiny_interactions(n_users=20, n_items=16, per_user=4)
        model = facts[name]().fit(data)
        if "+" in name:
            from maasrec.rankers import FaissRetriever

            kind = {"faiss": "hnsw", "flat": "flat", "ivf": "ivf"}[name.split("+")[1]]
            opts = {"nlist": 4} if kind == "ivf" else {}
            model.set_retriever(FaissRetriever(index=kind, **opts))
        model.save(target, overwrite=True)


# -- case generation ------------------------------------------------------------------------
def random_case(rng: random.Random, case_id: int, classes=CLASSES) -> dict:
    """A concrete, JSON-able corruption: picks are fractions resolved against the files."""
    kind = rng.choices(KINDS, weights=_KIND_WEIGHTS)[0]
    model = rng.choice(list(classes))
    if "+" in model and rng.random() < 0.4:
        kind = "faiss"  # a structurally crafted index (consistent hashes)
    case = {"id": case_id, "model": model, "kind": kind,
            "file_pick": rng.random(), "pick": rng.random(), "pick2": rng.random(),
            "rehash": rng.random() < 0.7}
    if kind in ("flip", "extend"):
        case["byte"] = rng.randrange(1, 256)
        case["n"] = rng.choice([1, 1, 1, 2, 8, 64])
    elif kind == "st_value":
        case["value"] = rng.choice(BAD_NUMBERS)
    elif kind == "st_dtype":
        case["dtype"] = rng.choice(["float32", "float64", "float16", "int64", "int32", "uint8",
                                    "int8", "bool"])
    elif kind == "st_shape":
        case["op"] = rng.choice(["drop_last", "add_one", "reshape2", "flatten", "transpose",
                                 "empty", "scalar"])
    elif kind == "faiss":
        case["op"] = rng.choice(["neighbor", "entry", "level", "ivf_id", "ivf_move", "vector",
                                 "ntotal"])
        case["value"] = rng.choice([-2, -1, 16, 17, 1000, 2**31 - 1, float("nan")])
    elif kind == "json":
        case["op"] = rng.choice(["remove", "replace", "replace", "replace", "number"])
        case["value"] = rng.choice(JSON_BAD)
        case["number"] = rng.choice(BAD_NUMBERS)
        case["depth"] = rng.random()
    return case


def random_cases(n: int, seed: int, classes=CLASSES) -> list[dict]:
    rng = random.Random(seed)
    return [random_case(rng, i, classes) for i in range(n)]


# -- applying a case ------------------------------------------------------------------------
def _pick(seq, frac: float):
    seq = list(seq)
    return seq[min(len(seq) - 1, int(frac * len(seq)))] if seq else None


def _files(root: Path, suffix: str | None = None) -> list[Path]:
    out = sorted(p for p in root.rglob("*") if p.is_file())
    if suffix is not None:
        out = [p for p in out if p.name.endswith(suffix)]
    return out


def _st_read(path: Path) -> dict:
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def _st_write(path: Path, arrays: dict) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


def _set_value(a, frac: float, value):
    import numpy as np

    a = np.array(a, copy=True)
    if a.size == 0:
        return np.asarray([value]).astype(a.dtype if a.dtype.kind == "f" else np.float64)
    flat = a.reshape(-1)
    i = min(a.size - 1, int(frac * a.size))
    if a.dtype.kind == "f":
        flat[i] = value
    elif a.dtype.kind == "b":
        flat[i] = not flat[i]
    elif isinstance(value, float) and not math.isfinite(value):
        flat[i] = np.iinfo(a.dtype).max
    else:
        info = np.iinfo(a.dtype)
        flat[i] = int(min(max(int(value), info.min), info.max))
    return a


def _mutate_st(path: Path, case: dict) -> str:
    import numpy as np

    arrays = _st_read(path)
    name = _pick(sorted(arrays), case["pick"])
    kind = case["kind"]
    if name is None:
        return "empty safetensors"
    a = arrays[name]
    if kind == "st_value":
        arrays[name] = _set_value(a, case["pick2"], case["value"])
        what = f"{name}[{case['pick2']:.3f}] = {case['value']!r}"
    elif kind == "st_dtype":
        arrays[name] = a.astype(case["dtype"])
        what = f"{name}.dtype = {case['dtype']}"
    elif kind == "st_shape":
        op = case["op"]
        flat = a.reshape(-1)
        if op == "drop_last":
            b = flat[:-1] if a.ndim <= 1 else a[:-1]
        elif op == "add_one":
            b = (np.concatenate([flat, flat[:1] if flat.size else np.zeros(1, a.dtype)])
                 if a.ndim <= 1 else np.concatenate([a, a[:1]]))
        elif op == "reshape2":
            b = flat.reshape(1, -1)
        elif op == "flatten":
            b = flat
        elif op == "transpose":
            b = a.T.copy() if a.ndim >= 2 else flat.reshape(-1, 1)
        elif op == "empty":
            b = np.empty((0, *a.shape[1:]), a.dtype)
        else:
            b = np.asarray(flat[0] if flat.size else 0, dtype=a.dtype)
        arrays[name] = b
        what = f"{name}: {a.shape} -> {b.shape} ({op})"
    elif kind == "st_drop":
        del arrays[name]
        what = f"dropped {name}"
    else:
        extra = f"{name}.extra" if case["pick2"] < 0.5 else "zz_"
        arrays[extra] = np.zeros(3, np.float32)
        what = f"added {extra}"
    _st_write(path, arrays)
    return what


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k in obj:
            yield from _json_paths(obj[k], (*prefix, k))
    elif isinstance(obj, list):
        for i in range(min(len(obj), 4)):
            yield from _json_paths(obj[i], (*prefix, i))


def _mutate_json(path: Path, case: dict) -> str:
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    paths = [p for p in _json_paths(obj) if p]
    if not paths:
        return "no json path"
    # prefer well-known targets now and then
    special = [p for p in paths if p and p[0] in ("format_version", "class", "params", "files",
                                                 "attributes", "extra_state", "state")]
    pool = special if special and case["depth"] < 0.3 else paths
    target = _pick(pool, case["pick"])
    parent = obj
    for k in target[:-1]:
        parent = parent[k]
    last = target[-1]
    op = case["op"]
    if op == "remove":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
        what = f"removed {target}"
    elif op == "number":
        parent[last] = case["number"]
        what = f"{target} = {case['number']!r}"
    else:
        parent[last] = case["value"]
        what = f"{target} = {case['value']!r}"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    return what


def _mutate_bytes(path: Path, case: dict) -> str:
    data = bytearray(path.read_bytes())
    kind = case["kind"]
    if kind == "flip":
        if not data:
            return "empty file"
        for j in range(case["n"]):
            i = min(len(data) - 1, int(case["pick"] * len(data)) + j)
            data[i] ^= case["byte"]
        what = f"flip {case['n']} byte(s) at {case['pick']:.3f}"
    elif kind == "truncate":
        n = int(case["pick"] * len(data))
        data = data[:n]
        what = f"truncate to {n}"
    else:
        data += bytes([case["byte"]]) * case["n"]
        what = f"extend by {case['n']}"
    path.write_bytes(bytes(data))
    return what


def rehash(root: Path) -> bool:
    """Recompute every ``maasrec.json`` manifest (``meta["files"]``) under ``root``.

    Deepest directories first, so that a parent's manifest covers its nested models'
    rewritten ``maasrec.json``. Returns False when no manifest was found.
    """
    found = False
    metas = sorted(root.rglob("maasrec.json"), key=lambda p: -len(p.parts))
    for meta_path in metas:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, dict):
            continue
        found = True
        for rel, entry in files.items():
            f = meta_path.parent / rel
            if f.is_file() and isinstance(entry, dict):
                data = f.read_bytes()
                entry["size"] = len(data)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
        meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return found


def _mutate_faiss(path: Path, case: dict) -> str:
    """Change one structural value of a faiss index and write it back with faiss."""
    import faiss
    import numpy as np

    owner = faiss.read_index(str(path))  # keep a reference: the downcast view does not own it
    index = faiss.downcast_index(owner)
    op, value = case["op"], case["value"]
    ival = -1 if isinstance(value, float) else int(value)
    what = op
    if hasattr(index, "hnsw"):
        h = index.hnsw
        if op in ("neighbor", "ivf_id", "ivf_move"):
            nb = faiss.vector_to_array(h.neighbors)
            i = min(len(nb) - 1, int(case["pick"] * len(nb)))
            nb[i] = ival
            faiss.copy_array_to_vector(nb.astype(np.int32), h.neighbors)
            what = f"hnsw neighbour[{i}] = {ival}"
        elif op == "entry":
            h.entry_point = ival
            what = f"hnsw entry point = {ival}"
        elif op == "level":
            lv = faiss.vector_to_array(h.levels)
            lv[min(len(lv) - 1, int(case["pick"] * len(lv)))] = ival
            faiss.copy_array_to_vector(lv.astype(np.int32), h.levels)
            what = f"hnsw level = {ival}"
    elif hasattr(index, "invlists"):
        il = index.invlists
        lists = [i for i in range(il.nlist) if il.list_size(i)]
        li = lists[min(len(lists) - 1, int(case["pick"] * len(lists)))]
        if op in ("ivf_id", "neighbor", "entry", "level"):
            ids = faiss.rev_swig_ptr(il.get_ids(li), il.list_size(li))
            ids[0] = ival
            what = f"ivf list {li} id = {ival}"
        elif op == "ivf_move":
            faiss.downcast_index(index.quantizer).ntotal = max(0, ival)
            what = f"ivf quantizer ntotal = {ival}"
    if op == "vector":
        x = None if hasattr(index, "invlists") else index.ntotal
        what = "vector (no-op for ivf)" if x is None else "vector"
        if x is not None and hasattr(index, "storage"):
            st = faiss.downcast_index(index.storage)
            codes = faiss.vector_to_array(st.codes).view(np.float32)
            codes[min(len(codes) - 1, int(case["pick"] * len(codes)))] = float(value)
            faiss.copy_array_to_vector(codes.view(np.uint8), st.codes)
            what = f"stored vector value = {value}"
    elif op == "ntotal":
        index.ntotal = max(0, ival)
        what = f"ntotal = {ival}"
    faiss.write_index(owner, str(path))
    return what


def apply_case(model_dir: Path, case: dict) -> str:
    """Corrupt ``model_dir`` in place as ``case`` says; return a description."""
    kind = case["kind"]
    if kind == "faiss":
        path = model_dir / "retriever" / "index.faiss"
        what = _mutate_faiss(path, case)
    elif kind.startswith("st_"):
        files = _files(model_dir, ".safetensors")
        path = _pick(files, case["file_pick"])
        if path is None:
            return "no safetensors"
        what = _mutate_st(path, case)
    elif kind == "json":
        files = _files(model_dir, ".json")
        path = _pick(files, case["file_pick"])
        what = _mutate_json(path, case)
    else:
        path = _pick(_files(model_dir), case["file_pick"])
        what = _mutate_bytes(path, case)
    rel = path.relative_to(model_dir)
    if case.get("rehash"):
        what += " (hashes rewritten)" if rehash(model_dir) else " (no manifest to rewrite)"
    return f"{rel}: {what}"


def run_case(base: Path, scratch: Path, case: dict) -> dict:
    """Corrupt a copy of the model and exercise it; never raises."""
    import numpy as np

    from maasrec import MaasrecError, Recommender

    if case["kind"] == "crash":  # self-test of the parent's crash detection
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)
    if case["kind"] == "hang":  # self-test of the parent's timeout
        time.sleep(3600)
    target = scratch / f"case{case['id']}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base / case["model"], target)
    out = {"id": case["id"], "model": case["model"], "kind": case["kind"],
           "rehash": case.get("rehash", False)}
    stage = "corrupt"
    try:
        out["what"] = apply_case(target, case)
        stage = "load"
        model = Recommender.load(target)
        stage = "recommend"
        users = model.user_vocab_.ids
        items = model.item_vocab_.ids
        ids, scores = model.recommend(users[1], k=5)
        if model.supports_history:
            stage = "recommend(history)"
            model.recommend(history=[items[0], items[3]], k=5)
        stage = "score"
        model.score([users[0], users[1]], [items[2], items[-1]])
        if not np.isfinite(np.asarray(scores)[np.asarray(ids) != -1]).all():
            out["note"] = "non-finite scores"
        out["outcome"] = "ok"
    except MaasrecError as exc:
        out["outcome"] = "maasrec"
        out["exc"] = type(exc).__name__
        out["msg"] = str(exc)[:300]
        cause = exc.__cause__
        if stage == "load" and "cannot load the model in" in str(exc) and cause is not None:
            out["safety_net"] = f"{type(cause).__name__}: {str(cause)[:200]}"
    except Exception as exc:  # this is what the fuzzer looks for
        out["outcome"] = "other"
        out["exc"] = type(exc).__name__
        out["msg"] = str(exc)[:300]
        out["trace"] = traceback.format_exc()[-1500:]
    finally:
        shutil.rmtree(target, ignore_errors=True)
    out["stage"] = stage
    return out


# -- worker and parent ----------------------------------------------------------------------
def _worker(base: Path, cases_file: Path, memory_gb: float) -> None:
    if memory_gb > 0:
        import resource

        lim = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    cases = json.loads(cases_file.read_text())
    prepare(base, sorted({c["model"] for c in cases}))
    print(json.dumps({"ready": True}), flush=True)
    with tempfile.TemporaryDirectory(prefix="maasrec-fuzz-") as scratch:
        for case in cases:
            print(json.dumps({"start": case["id"]}), flush=True)
            res = run_case(base, Path(scratch), case)
            print(json.dumps(res, default=str), flush=True)


def run_cases(cases: list[dict], base: Path, *, timeout: float = 60.0,
              prepare_timeout: float = 600.0, memory_gb: float = 6.0,
              log=None) -> list[dict]:
    """Run ``cases`` in worker subprocesses; a crash or hang fails only its case.

    Returns one result per case (``outcome`` in ok / maasrec / other / crash / hang).
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    todo = list(cases)
    by_id = {c["id"]: c for c in cases}
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    while todo:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(todo, f)
            cases_file = Path(f.name)
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.reliability_fuzz", "--worker",
             "--base", str(base), "--cases-file", str(cases_file), "--memory-gb",
             str(memory_gb)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(root), env=env)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        running = None
        deadline = time.monotonic() + prepare_timeout
        buf = b""
        hung = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                hung = True
                break
            if not sel.select(timeout=left):
                continue
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "start" in msg:
                    running = msg["start"]
                    deadline = time.monotonic() + timeout
                elif "outcome" in msg:
                    results[msg["id"]] = msg
                    running = None
                    if log is not None:
                        log(msg)
                elif msg.get("ready"):
                    deadline = time.monotonic() + timeout
        if hung:
            proc.kill()
        proc.wait()
        stderr = proc.stderr.read().decode("utf-8", "replace")[-2000:]
        proc.stdout.close()
        proc.stderr.close()
        cases_file.unlink(missing_ok=True)
        if running is None and not hung and proc.returncode != 0:
            raise RuntimeError(f"fuzz worker failed before any case (exit {proc.returncode}):"
                               f"\n{stderr}")
        if running is not None:
            c = by_id[running]
            results[running] = {"id": running, "model": c["model"], "kind": c["kind"],
                                "rehash": c.get("rehash", False),
                                "outcome": "hang" if hung else "crash",
                                "exit_code": proc.returncode, "case": c, "stderr": stderr}
            if log is not None:
                log(results[running])
        elif hung:
            raise RuntimeError("fuzz worker hung while preparing the models")
        todo = [c for c in todo if c["id"] not in results]
    return [results[c["id"]] for c in cases]


def summarize(results: list[dict]) -> dict:
    """Counts of outcomes per class and in total."""
    per = collections.defaultdict(collections.Counter)
    for r in results:
        per[r["model"]][r["outcome"]] += 1
    total = collections.Counter(r["outcome"] for r in results)
    kinds = collections.defaultdict(collections.Counter)
    for r in results:
        kinds[r["kind"]][r["outcome"]] += 1
    return {"total": dict(total), "cases": len(results),
            "per_class": {k: dict(v) for k, v in sorted(per.items())},
            "per_kind": {k: dict(v) for k, v in sorted(kinds.items())},
            "rehashed": sum(1 for r in results if r.get("rehash")),
            "safety_net": sum(1 for r in results if r.get("safety_net"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--memory-gb", type=float, default=6.0,
                    help="address-space limit of a worker (0: none)")
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--base", default=None, help="folder of the pristine saved models")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cases-file", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(Path(args.base), Path(args.cases_file), args.memory_gb)
        return 0
    classes = [c for c in args.classes.split(",") if c]
    cases = random_cases(args.cases, args.seed, classes)
    base = Path(args.base) if args.base else Path(tempfile.mkdtemp(prefix="maasrec-fuzz-base-"))
    t0 = time.perf_counter()

    def log(r):
        if r["outcome"] in ("other", "crash", "hang"):
            print(json.dumps(r, default=str)[:2000], file=sys.stderr, flush=True)

    results = run_cases(cases, base, timeout=args.timeout, memory_gb=args.memory_gb, log=log)
    summary = summarize(results)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["seed"] = args.seed
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "results": results},
                                             indent=1, default=str))
    if not args.base:
        shutil.rmtree(base, ignore_errors=True)
    bad = sum(summary["total"].get(k, 0) for k in ("other", "crash", "hang"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
