"""Command line: ``maasrec demo``, ``fit``, ``recommend``, ``evaluate``, ``serve``, ``bench``.

The CLI uses only the public API, so everything it does can be done in Python too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np

from ._version import __version__
from .exceptions import ColdStartWarning, MaasrecError, UnknownIdError

__all__ = ["main"]

logger = logging.getLogger("maasrec.cli")

DATASETS = ("latest-small", "100k", "1m", "beauty")


def _model_zoo(name: str, seed: int):
    """The models the demo fits, by name (lower case)."""
    from . import models

    zoo = {
        "popularity": lambda: models.Popularity(),
        "ease": lambda: models.EASE(),
    }
    for extra in ("ItemKNN", "PureSVD", "ALS", "BPRMF"):
        cls = getattr(models, extra, None)
        if cls is not None:
            params = cls._get_param_names()
            zoo[extra.lower()] = (lambda cls=cls, params=params:
                                  cls(random_state=seed) if "random_state" in params else cls())
    try:
        from .neural import SequentialRecommender
    except ImportError:  # pragma: no cover - torch missing
        SequentialRecommender = None
    if SequentialRecommender is not None:
        # next-item model: in the default list only for time-ordered data (beauty)
        zoo["sequential"] = lambda: SequentialRecommender(
            dropout=0.5, epochs=_DEMO_SEQ_EPOCHS, batch_size=256, random_state=seed,
            verbose=False)
    try:
        from .neural import HybridRecommender, NeuMF
    except ImportError:  # pragma: no cover - torch missing
        HybridRecommender = NeuMF = None
    if HybridRecommender is not None:
        # id + item text when the data set has text and the text model is installed
        # (maasrec[text]); id only otherwise. Both early-stop on the validation part.
        zoo["hybrid"] = lambda: HybridRecommender(
            item_encoders="auto" if _text_model_available() else ["id"],
            epochs=_DEMO_NEURAL_EPOCHS, random_state=seed)
        zoo["neumf"] = lambda: NeuMF(epochs=_DEMO_NEURAL_EPOCHS, random_state=seed)
    return zoo


def _text_model_available() -> bool:
    """Whether the default text model loads offline (installed, never downloaded here)."""
    try:
        from .encoders import resolve_model

        return bool(resolve_model("sentence-transformers/all-MiniLM-L6-v2").local)
    except Exception:  # any failure means "not available"
        return False


#: Epochs of the demo's SequentialRecommender (a full run early-stops near 100).
_DEMO_SEQ_EPOCHS = 20
#: Epoch budget of the demo's HybridRecommender and NeuMF (they early-stop on validation).
_DEMO_NEURAL_EPOCHS = 30
#: Models left out of the default demo list unless the data set is time-ordered.
_SEQUENTIAL_ONLY = {"sequential"}
#: Models the demo runs only when named (``--models neumf``): slower to train.
_OPT_IN = {"neumf"}


def _load(dataset: str, data_home: str | None):
    from . import datasets

    if dataset == "beauty":
        return datasets.load_amazon_sequences("beauty", data_home=data_home)
    return datasets.load_movielens(dataset, data_home=data_home)


def _titles(ds) -> dict:
    titles = getattr(ds, "item_titles", None)
    if titles is None:
        return {}
    return dict(zip(titles.index.tolist(), titles.tolist()))


def _format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    head = "  ".join(c.ljust(widths[c]) if i == 0 else c.rjust(widths[c])
                     for i, c in enumerate(columns))
    lines = [head, "  ".join("-" * widths[c] for c in columns)]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(widths[c]) if i == 0
                               else str(r.get(c, "")).rjust(widths[c])
                               for i, c in enumerate(columns)))
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    """Train and evaluate on a real data set, print metrics and example recommendations."""
    from tqdm.auto import tqdm

    from . import metrics
    from .data.split import leave_last_out, random_split

    out = sys.stdout
    zoo = _model_zoo("", args.seed)
    names = ([m.strip().lower() for m in args.models.split(",")] if args.models else
             [m for m in zoo if (m not in _SEQUENTIAL_ONLY or args.dataset == "beauty")
              and m not in _OPT_IN])
    unknown = [m for m in names if m not in zoo]
    if unknown:
        raise MaasrecError(f"unknown model(s) {unknown}; available: {sorted(zoo)}")

    t0 = time.perf_counter()
    ds = _load(args.dataset, args.data_home)
    X = ds.interactions
    print(f"maasrec {__version__} demo: {ds.name}: {X.n_users:,} users, {X.n_items:,} items, "
          f"{X.nnz:,} interactions", file=out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)  # summarised below instead
        if args.dataset == "beauty":
            protocol = "leave-last-out (per user: last item test, second-to-last validation)"
            split = leave_last_out(X, n_valid=1, n_test=1)
        else:
            protocol = "per-user random 80/10/10"
            split = random_split(X, (0.8, 0.1, 0.1), random_state=args.seed)
    train, valid, test = split
    print(f"split: {protocol}, seed {args.seed}: train {train.nnz:,} / valid {valid.nnz:,} / "
          f"test {test.nnz:,}", file=out)
    cold_items = split.report.get("cold_items", {}).get("test", 0)
    if cold_items:
        print(f"note: {cold_items:,} test items have no train interaction; they stay in the "
              f"test set (every model here misses them)", file=out)
    print(f"evaluation: full ranking over all {X.n_items:,} items, excluding each user's "
          f"train and validation items\n", file=out)

    rows, fitted = [], {}
    ks = (args.k,)
    bar = tqdm(names, desc="models", disable=args.no_progress, file=sys.stderr, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        model = zoo[name]()
        t = time.perf_counter()
        if "item_encoders" in model.get_params(deep=False):  # neural: text, early stopping
            model.fit(train, item_features=getattr(ds, "item_features", None), validation=valid)
        else:
            model.fit(train)
        fit_s = time.perf_counter() - t
        if hasattr(model, "extend_history"):  # sequential: the history ends with the
            model.extend_history(valid)        # validation item (not trained on), as in SASRec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ColdStartWarning)
            res = metrics.evaluate(model, train, test, k=ks, exclude=valid,
                                   random_state=args.seed, n_bootstrap=200)
        fitted[name] = (model, res)
        k = args.k
        rows.append({
            "model": type(model).__name__,
            f"NDCG@{k}": f"{res[f'ndcg@{k}']:.4f}",
            f"Recall@{k}": f"{res[f'recall@{k}']:.4f}",
            f"Precision@{k}": f"{res[f'precision@{k}']:.4f}",
            f"MAP@{k}": f"{res[f'map@{k}']:.4f}",
            f"HR@{k}": f"{res[f'hit@{k}']:.4f}",
            f"Coverage@{k}": f"{res[f'coverage@{k}']:.3f}",
            "fit s": f"{fit_s:.1f}",
        })
    bar.close()
    cols = ["model", f"NDCG@{args.k}", f"Recall@{args.k}", f"Precision@{args.k}",
            f"MAP@{args.k}", f"HR@{args.k}", f"Coverage@{args.k}", "fit s"]
    print(_format_table(rows, cols), file=out)
    best = max(fitted, key=lambda n: fitted[n][1][f"ndcg@{args.k}"])
    model, res = fitted[best]
    lo, hi = res.ci[f"ndcg@{args.k}"]
    print(f"\nbest: {type(model).__name__}, NDCG@{args.k} {res[f'ndcg@{args.k}']:.4f} "
          f"(95% CI {lo:.4f}-{hi:.4f}, {len(res.users):,} test users)", file=out)

    titles = _titles(ds)
    seqs = train.sequences(as_ids=True)
    counts = train.user_counts()
    candidates = np.flatnonzero(counts >= 5)
    user_idx = int(candidates[0]) if len(candidates) else int(np.argmax(counts))
    user = X.user_vocab.ids[user_idx]
    user = user.item() if hasattr(user, "item") else user
    liked = list(seqs[user_idx][-3:])
    ids, scores = model.recommend(user, k=5)
    print(f"\nuser {user!r} recently interacted with:", file=out)
    for i in liked:
        print(f"  - {titles.get(i, f'item {i}')}", file=out)
    print(f"{type(model).__name__} recommends:", file=out)
    for rank, (i, s) in enumerate(zip(ids, scores), 1):
        print(f"  {rank}. {titles.get(i, f'item {i}')}  (score {s:.3f})", file=out)
    print(f"\ndone in {time.perf_counter() - t0:.1f}s. Benchmarks against implicit, LensKit, "
          f"Cornac and RecBole: benchmarks/RESULTS.md", file=out)
    return 0


def _parse_params(pairs: Sequence[str]) -> dict:
    params = {}
    for p in pairs or []:
        if "=" not in p:
            raise MaasrecError(f"--param {p!r} must look like name=value")
        k, v = p.split("=", 1)
        try:
            params[k] = json.loads(v)
        except ValueError:
            params[k] = v
    return params


def _read_frame(path: str):
    import pandas as pd

    sep = "\t" if path.endswith((".tsv", ".tab")) else ","
    try:
        return pd.read_csv(path, sep=sep)
    except (OSError, ValueError) as exc:
        raise MaasrecError(f"cannot read interactions from {path!r}: {exc}") from exc


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit a model on a CSV of interactions and save it."""
    from . import models

    cls = getattr(models, args.model, None)
    if cls is None:
        raise MaasrecError(f"unknown model {args.model!r}; available: {models.__all__}")
    params = _parse_params(args.param)
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise MaasrecError(f"{args.model} has no parameter {unknown[0]!r}; its parameters are "
                           f"{cls._get_param_names()}")
    key = _key_of(args.encryption_key_env) if args.encryption_key_env else None
    model = cls(**params)
    model.fit(_read_frame(args.data))
    if key is None:
        model.save(args.output, overwrite=args.overwrite)
    else:
        from .persistence import save_encrypted

        save_encrypted(model, args.output, key, overwrite=args.overwrite)
    print(f"saved {model!r} to {args.output}{' (encrypted)' if key is not None else ''}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train from a TOML configuration (:mod:`maasrec.train`) and print its metrics."""
    from .train import load_config, run

    out = run(load_config(args.config))
    if out is not None:
        print(json.dumps(out))
    return 0


def _coerce_ids(values: Sequence[str], vocab) -> list:
    kind = {"int": int, "float": float}.get(vocab.id_kind)
    if kind is None:
        return list(values)
    out = []
    for v in values:
        try:
            out.append(kind(v))
        except ValueError:
            raise UnknownIdError(f"unknown {vocab.name} id {v!r}: the model's {vocab.name} ids "
                                 f"are {vocab.id_kind}s (ids like {vocab.ids[:3].tolist()})",
                                 ids=[v], kind=vocab.name) from None
    return out


def _key_of(env_name: str) -> bytes:
    """The model key held by the environment variable ``env_name``."""
    from .privacy.crypto import key_from_env

    return key_from_env(env_name)


def _load_model(args: argparse.Namespace):
    """Load ``args.model_dir``; an encrypted model with the key in ``$args.encryption_key_env``."""
    from .base import Recommender
    from .persistence import is_encrypted, load_encrypted

    if is_encrypted(args.model_dir):
        return load_encrypted(args.model_dir, _key_of(args.encryption_key_env))
    return Recommender.load(args.model_dir)


def cmd_recommend(args: argparse.Namespace) -> int:
    """Print top-k recommendations of a saved model as JSON lines."""
    model = _load_model(args)
    users = _coerce_ids(args.users, model.user_vocab_)
    ids, scores = model.recommend(users, k=args.k)
    for u, row, srow in zip(users, ids, scores):
        keep = np.isfinite(srow)
        print(json.dumps({"user": u, "items": row[keep].tolist(),
                          "scores": [round(float(s), 6) for s in srow[keep]]}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved model on train/test CSV files with full ranking."""
    from . import metrics
    from .data.interactions import Interactions

    model = _load_model(args)
    train = Interactions.from_pandas(_read_frame(args.train), user_vocab=model.user_vocab_,
                                     item_vocab=model.item_vocab_, unknown="ignore")
    test = Interactions.from_pandas(_read_frame(args.test), user_vocab=model.user_vocab_,
                                    item_vocab=model.item_vocab_, unknown="ignore")
    res = metrics.evaluate(model, train, test, k=tuple(args.k))
    print(res)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a saved model over HTTP (needs the ``serve`` extra)."""
    try:
        from .serving.server import run_server
    except ImportError as exc:
        raise MaasrecError(f"`maasrec serve` needs the serve extra: pip install "
                           f"'maasrec[serve]' ({exc})") from None
    from .privacy.crypto import KEY_ENV

    if args.encryption_key_env != KEY_ENV:  # the server (and its workers) read $MAASREC_MODEL_KEY
        value = os.environ.get(args.encryption_key_env, "")
        if not value.strip():
            raise MaasrecError(f"--encryption-key-env {args.encryption_key_env}: that "
                               f"environment variable holds no key")
        os.environ[KEY_ENV] = value
    return run_server(args.model_dir, host=args.host, port=args.port, workers=args.workers,
                      api_key_file=args.api_key_file, admin_key_file=args.admin_key_file,
                      insecure=args.insecure, max_batch=args.max_batch,
                      max_wait_ms=args.max_wait_ms, max_k=args.max_k, max_users=args.max_users,
                      max_body_bytes=args.max_body_bytes, model_threads=args.model_threads,
                      max_results=args.max_results,
                      log_level=args.log_level, access_log=not args.no_access_log,
                      model_root=args.model_root, ssl_certfile=args.ssl_certfile,
                      ssl_keyfile=args.ssl_keyfile)


def _benchmarks_root():
    """The source checkout holding ``benchmarks/`` (None for an installed maasrec)."""
    from pathlib import Path

    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file() and (root / "src" / "maasrec").is_dir():
            return root
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    """Forward to the benchmark suite (``python -m benchmarks``) of a source checkout."""
    root = _benchmarks_root()
    if root is None:
        raise MaasrecError(
            "the benchmarks live in the source repository, not in the installed package: "
            "clone it and run `maasrec bench run quick` (or `python -m benchmarks run quick`) "
            "from the checkout; results of the standard suite are in benchmarks/RESULTS.md")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.cli import main as bench_main

    return bench_main(list(args.bench_args) or ["--help"])


def build_parser() -> argparse.ArgumentParser:
    """The ``maasrec`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(prog="maasrec", description="maasrec: recommendation as a service")
    p.add_argument("--version", action="version", version=f"maasrec {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train and evaluate on a real data set (offline by default)")
    d.add_argument("--dataset", choices=DATASETS, default="latest-small",
                   help="latest-small is embedded; the others come from MAASREC_DATA or --data-home")
    d.add_argument("--data-home", default=None, help="folder holding ml-100k/, ml-1m/, amazon-beauty/")
    d.add_argument("--models", default=None, help="comma-separated model names (default: all)")
    d.add_argument("--k", type=int, default=10, help="cut-off of the metrics (default 10)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the split and models")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser("fit", help="fit a model on a CSV (user,item[,rating][,timestamp]) and save it")
    f.add_argument("--model", required=True, help="class name in maasrec.models, e.g. EASE")
    f.add_argument("--data", required=True, help="CSV/TSV of interactions with a header")
    f.add_argument("--param", action="append", help="constructor parameter name=value (repeatable)")
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--encryption-key-env", default=None, metavar="NAME",
                   help="save the model encrypted (AES-256-GCM) with the key held by the "
                        "environment variable NAME (maasrec[privacy])")
    f.add_argument("output", help="model directory to write")
    f.set_defaults(func=cmd_fit)

    r = sub.add_parser("recommend", help="top-k for users of a saved model, as JSON lines")
    r.add_argument("model_dir")
    r.add_argument("users", nargs="+")
    r.add_argument("-k", type=int, default=10)
    r.add_argument("--encryption-key-env", default="MAASREC_MODEL_KEY", metavar="NAME",
                   help="environment variable holding the key of an encrypted model (default "
                        "MAASREC_MODEL_KEY)")
    r.set_defaults(func=cmd_recommend)

    e = sub.add_parser("evaluate", help="full-ranking evaluation of a saved model")
    e.add_argument("model_dir")
    e.add_argument("--train", required=True, help="CSV of the interactions the model was fitted on")
    e.add_argument("--test", required=True, help="CSV of held-out interactions")
    e.add_argument("-k", type=int, nargs="+", default=[10, 20])
    e.add_argument("--encryption-key-env", default="MAASREC_MODEL_KEY", metavar="NAME",
                   help="environment variable holding the key of an encrypted model (default "
                        "MAASREC_MODEL_KEY)")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("serve", help="serve a saved model over HTTP (extra: maasrec[serve])",
                       description="Keys: $MAASREC_API_KEYS / $MAASREC_ADMIN_KEYS "
                                   "(comma-separated) and/or key files. Without keys the "
                                   "server binds to loopback only. SIGHUP reloads the model.")
    s.add_argument("model_dir", help="model directory written by model.save")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes; each loads its own copy of the model")
    s.add_argument("--api-key-file", help="file with one API key per line")
    s.add_argument("--admin-key-file", help="file with one admin key per line (reload)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without any API key")
    s.add_argument("--max-batch", type=int, default=64,
                   help="users per batched model call (1: no micro-batching)")
    s.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a request may wait for others when the model is idle "
                        "(default 0: requests arriving while the model is busy are batched)")
    s.add_argument("--max-k", type=int, default=1000)
    s.add_argument("--max-users", type=int, default=1000, help="users per request")
    s.add_argument("--max-body-bytes", type=int, default=1_048_576)
    s.add_argument("--max-results", type=int, default=100_000, help="users x k per answer")
    s.add_argument("--model-threads", type=int, default=1, help="threads running model calls")
    s.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    s.add_argument("--no-access-log", action="store_true", help="do not log every request")
    s.add_argument("--model-root", default=None,
                   help="the only directory admin reloads may load models from (default: "
                        "$MAASREC_MODEL_ROOT, else the parent directory of model_dir)")
    s.add_argument("--encryption-key-env", default="MAASREC_MODEL_KEY", metavar="NAME",
                   help="environment variable holding the key of an encrypted model (default "
                        "MAASREC_MODEL_KEY)")
    s.add_argument("--ssl-certfile", default=None, metavar="PEM",
                   help="serve HTTPS with this certificate (chain); needs --ssl-keyfile")
    s.add_argument("--ssl-keyfile", default=None, metavar="PEM",
                   help="private key of --ssl-certfile (password: "
                        "$MAASREC_SSL_KEYFILE_PASSWORD)")
    s.set_defaults(func=cmd_serve)

    t = sub.add_parser("train", help="train a model from a TOML file (under torchrun: "
                                     "data parallel); see python -m maasrec.train",
                       description="Train, save and evaluate a model as CONFIG.toml says; "
                                   "launch with `torchrun --nproc-per-node N -m maasrec.train "
                                   "CONFIG.toml` for distributed data parallel training.")
    t.add_argument("config", help="the TOML configuration ([data], [model], [train])")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="benchmark suite vs implicit, LensKit, Cornac, RecBole "
                                     "(source checkout only)",
                       description="Forwards to `python -m benchmarks` of a source checkout, "
                                   "e.g. `maasrec bench run quick`, `maasrec bench list`.")
    b.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="arguments of `python -m benchmarks` (run SUITE, tune, report, list)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``maasrec`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a maasrec error (message on stderr).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (MaasrecError, FileExistsError) as exc:
        print(f"maasrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
