"""Command line: ``maasrec demo``, ``fit``, ``split``, ``recommend``, ``evaluate``, ``serve``, ``train``, ``bench``, ``compress``, ``tune``.

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

from . import _cli_data
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
#: Models left out of the demo unless the data set is time-ordered.
_SEQUENTIAL_ONLY = {"sequential"}
#: The default demo (about a minute on 2 cores): the popularity floor every model must
#: beat, the strong neighbourhood and factor baselines, ALS. ``--full`` adds EASE (an
#: n_items^2 Gram inverse: minutes at 9.7k items), BPR-MF, the HybridRecommender (item
#: text through the MiniLM encoder when maasrec[text] is installed: 2 minutes of encoding
#: on 2 cores the first time) and NeuMF, and on Beauty the SequentialRecommender.
_DEFAULT_DEMO = ("popularity", "itemknn", "puresvd", "als")


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


def _demo_models(args: argparse.Namespace, zoo: dict) -> list[str]:
    """The model names the demo runs: ``--models``, ``--full`` (all) or the default list."""
    if args.models and args.full:
        raise MaasrecError("--models and --full exclude each other: --full runs every model")
    if args.models:
        names = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    elif args.full:
        names = [m for m in zoo if m not in _SEQUENTIAL_ONLY or args.dataset == "beauty"]
    else:
        names = [m for m in _DEFAULT_DEMO if m in zoo]
        if args.dataset == "beauty":
            names.append("sequential")
    unknown = [m for m in names if m not in zoo]
    if unknown:
        raise MaasrecError(f"unknown model(s) {unknown}; available: {sorted(zoo)}")
    return names


def _ci(res, key: str) -> str:
    lo, hi = res.ci.get(key, (float("nan"), float("nan")))
    return f"{res[key]:.4f} [{lo:.4f}, {hi:.4f}]"


def _demo_row(model, res, k: int, fit_s: float) -> dict:
    return {"model": type(model).__name__,
            f"NDCG@{k} [95% CI]": _ci(res, f"ndcg@{k}"),
            f"Recall@{k} [95% CI]": _ci(res, f"recall@{k}"),
            f"HR@{k}": f"{res[f'hit@{k}']:.4f}",
            f"Coverage@{k}": f"{res[f'coverage@{k}']:.3f}",
            "fit s": f"{fit_s:.1f}",
            "_ndcg": res[f"ndcg@{k}"]}


def _demo_split(args: argparse.Namespace, X):
    from .data.split import leave_last_out, random_split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)  # summarised below instead
        if args.dataset == "beauty":
            return ("leave-last-out (per user: last item test, second-to-last validation)",
                    leave_last_out(X, n_valid=1, n_test=1))
        return "per-user random 80/10/10", random_split(X, (0.8, 0.1, 0.1),
                                                        random_state=args.seed)


def _demo_fit_eval(name: str, zoo: dict, ds, train, valid, test, args):
    """Fit one demo model and evaluate it (full ranking, bootstrap CIs)."""
    from . import metrics

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
        res = metrics.evaluate(model, train, test, k=(args.k,), exclude=valid,
                               random_state=args.seed, n_bootstrap=200)
    return model, res, fit_s


def _print_examples(ds, X, train, model, out) -> None:
    """One user's last items and the model's top 5, with titles where the data has them."""
    titles = _titles(ds)
    seqs = train.sequences(as_ids=True)
    counts = train.user_counts()
    candidates = np.flatnonzero(counts >= 5)
    user_idx = int(candidates[0]) if len(candidates) else int(np.argmax(counts))
    user = X.user_vocab.ids[user_idx]
    user = user.item() if hasattr(user, "item") else user
    ids, scores = model.recommend(user, k=5)
    print(f"\nuser {user!r} recently interacted with:", file=out)
    for i in list(seqs[user_idx][-3:]):
        print(f"  - {titles.get(i, f'item {i}')}", file=out)
    print(f"{type(model).__name__} recommends:", file=out)
    for rank, (i, s) in enumerate(zip(ids, scores), 1):
        print(f"  {rank}. {titles.get(i, f'item {i}')}  (score {s:.3f})", file=out)


def cmd_demo(args: argparse.Namespace) -> int:
    """Train and evaluate on a real data set: a leaderboard with 95% CIs, titled examples."""
    from .training.progress import tqdm_class

    tqdm = tqdm_class()
    out = sys.stdout
    t0 = time.perf_counter()
    zoo = _model_zoo("", args.seed)
    names = _demo_models(args, zoo)
    ds = _load(args.dataset, args.data_home)
    X = ds.interactions
    print(f"maasrec {__version__} demo: {ds.name}: {X.n_users:,} users, {X.n_items:,} items, "
          f"{X.nnz:,} interactions", file=out)
    protocol, split = _demo_split(args, X)
    train, valid, test = split
    print(f"split: {protocol}, seed {args.seed}: train {train.nnz:,} / valid {valid.nnz:,} / "
          f"test {test.nnz:,}", file=out)
    cold_items = split.report.get("cold_items", {}).get("test", 0)
    if cold_items:
        print(f"note: {cold_items:,} test items have no train interaction; they stay in the "
              f"test set (every model here misses them)", file=out)
    print(f"evaluation: full ranking over all {X.n_items:,} items, excluding each user's "
          f"train and validation items; 95% CIs from 200 bootstrap resamples of the test "
          f"users\n", file=out)

    rows, fitted = [], {}
    bar = tqdm(names, desc="models", disable=args.no_progress, file=sys.stderr, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        model, res, fit_s = _demo_fit_eval(name, zoo, ds, train, valid, test, args)
        fitted[name] = (model, res)
        rows.append(_demo_row(model, res, args.k, fit_s))
    bar.close()
    rows.sort(key=lambda r: -r["_ndcg"])
    print(_format_table(rows, [c for c in rows[0] if not c.startswith("_")]), file=out)
    best = max(fitted, key=lambda n: fitted[n][1][f"ndcg@{args.k}"])
    model, res = fitted[best]
    lo, hi = res.ci[f"ndcg@{args.k}"]
    print(f"\nbest: {type(model).__name__}, NDCG@{args.k} {res[f'ndcg@{args.k}']:.4f} "
          f"(95% CI {lo:.4f}-{hi:.4f}, {len(res.users):,} test users); overlapping intervals "
          f"are not a significant difference (maasrec.metrics.paired_test tests it)", file=out)
    _print_examples(ds, X, train, model, out)
    more = "" if args.full or args.models else (
        " `maasrec demo --full` adds EASE, BPR-MF and the neural models (minutes).")
    print(f"\ndone in {time.perf_counter() - t0:.1f}s.{more} Benchmarks against implicit, "
          f"LensKit, Cornac and RecBole: benchmarks/RESULTS.md", file=out)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit any registered model on a file of interactions and save it."""
    from ._cli_data import model_class, parse_params, read_interactions, read_item_features

    cls = model_class(args.model)
    params = parse_params(cls, args.param)
    key = _key_of(args.encryption_key_env) if args.encryption_key_env else None
    X = read_interactions(args.data, args).interactions
    fit_kw = {}
    feats = read_item_features(args, X.item_vocab)
    if feats is not None:
        fit_kw["item_features"] = feats
    if args.validation:
        fit_kw["validation"] = read_interactions(
            args.validation, args, user_vocab=X.user_vocab, item_vocab=X.item_vocab,
            unknown="ignore").interactions
    model = cls(**params)
    model.fit(X, **fit_kw)
    if key is None:
        model.save(args.output, overwrite=args.overwrite)
    else:
        from .persistence import save_encrypted

        save_encrypted(model, args.output, key, overwrite=args.overwrite)
    print(f"saved {model!r} to {args.output}{' (encrypted)' if key is not None else ''}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    """Split a file of interactions into train/validation/test CSV files (seeded)."""
    from pathlib import Path

    from ._cli_data import read_interactions, write_interactions
    from .data import split as splits

    X = read_interactions(args.data, args).interactions
    ratios = tuple(_ratios(args.ratios))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)  # counted in the report below
        if args.method == "random":
            parts = splits.random_split(X, ratios, per_user=False, random_state=args.seed)
        elif args.method == "user-random":
            parts = splits.random_split(X, ratios, per_user=True, random_state=args.seed)
        elif args.method == "temporal":
            parts = splits.temporal_split(X, ratios=ratios)
        else:
            parts = splits.leave_last_out(X, n_valid=args.n_valid, n_test=args.n_test)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": "train.csv", "valid": "validation.csv", "test": "test.csv"}
    existing = [f for n, f in files.items() if n in parts.names and (out / f).exists()]
    if existing and not args.overwrite:
        raise MaasrecError(f"{out} already holds {existing}; pass --overwrite to replace them")
    written = {}
    for name, part in zip(parts.names, parts):
        write_interactions(part, out / files[name])
        written[files[name]] = part.nnz
    report = {"method": args.method, "seed": args.seed, "files": written,
              "cold_users": parts.report.get("cold_users", {}),
              "cold_items": parts.report.get("cold_items", {})}
    print(json.dumps(report, default=int))
    return 0


def _ratios(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise MaasrecError(f"--ratios {text!r} must be 2 or 3 numbers separated by commas, "
                           f"e.g. 0.8,0.1,0.1") from None


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
    """Evaluate a saved model on train/test files with full ranking."""
    from . import metrics
    from ._cli_data import read_interactions

    model = _load_model(args)

    def read(path):
        return read_interactions(path, args, user_vocab=model.user_vocab_,
                                 item_vocab=model.item_vocab_, unknown="ignore").interactions

    train, test = read(args.train), read(args.test)
    exclude = read(args.exclude) if args.exclude else None
    res = metrics.evaluate(model, train, test, k=tuple(args.k), exclude=exclude)
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
    if args.events_db:
        if args.workers != 1:
            raise MaasrecError("--events-db needs --workers 1 (each worker would fold in only "
                               "its own events)")
        os.environ["MAASREC_EVENTS_DB"] = args.events_db
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
    _add_demo_parser(sub)
    _add_data_parsers(sub)
    _add_model_parsers(sub)
    _add_serve_parser(sub)
    _add_run_parsers(sub)

    from .compress.cli import add_compress_parser
    from .tune.cli import add_tune_parser

    add_compress_parser(sub)
    add_tune_parser(sub)
    return p


def _add_demo_parser(sub) -> None:
    """``maasrec demo``."""
    d = sub.add_parser("demo", help="train and evaluate on a real data set (offline by default)")
    d.add_argument("--dataset", choices=DATASETS, default="latest-small",
                   help="latest-small is embedded; the others come from MAASREC_DATA or --data-home")
    d.add_argument("--data-home", default=None, help="folder holding ml-100k/, ml-1m/, amazon-beauty/")
    d.add_argument("--models", default=None,
                   help="comma-separated model names (default: popularity, itemknn, "
                        "puresvd, als; plus sequential on beauty)")
    d.add_argument("--full", action="store_true",
                   help="run every model, the neural ones included (minutes)")
    d.add_argument("--k", type=int, default=10, help="cut-off of the metrics (default 10)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the split and models")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=cmd_demo)


def _add_data_parsers(sub) -> None:
    """``maasrec fit`` and ``maasrec split``."""
    f = sub.add_parser("fit", help="fit a model on a file of interactions and save it",
                       description="Fit any maasrec model on a CSV/TSV/Parquet file of "
                                   "(user, item[, rating][, timestamp]) rows and save it.")
    f.add_argument("--model", required=True,
                   help="model class name, any case: Popularity, ItemKNN, EASE, PureSVD, "
                        "ALS, BPRMF, HybridRecommender, NeuMF, SequentialRecommender, "
                        "LightGCN, MultVAE, LMRanker")
    f.add_argument("--data", required=True, help="CSV/TSV/Parquet file of interactions")
    f.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="constructor parameter, typed by the model's signature "
                        "(int/float/bool/str, else JSON); repeatable")
    f.add_argument("--validation", default=None, metavar="FILE",
                   help="held-out interactions for early stopping (neural models)")
    f.add_argument("--item-features", default=None, metavar="FILE",
                   help="item table (one row per item) for models that use text/features")
    f.add_argument("--text-cols", default=None, metavar="COL,COL",
                   help="columns of --item-features joined into the item text (default: "
                        "title/name/description)")
    f.add_argument("--item-features-id", default=None, metavar="NAME",
                   help="item id column of --item-features (default: found by name)")
    f.add_argument("--item-features-sep", default=None, metavar="SEP",
                   help="separator of --item-features (default: guessed)")
    _cli_data.add_column_options(f)
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--encryption-key-env", default=None, metavar="NAME",
                   help="save the model encrypted (AES-256-GCM) with the key held by the "
                        "environment variable NAME (maasrec[privacy])")
    f.add_argument("output", help="model directory to write")
    f.set_defaults(func=cmd_fit)

    sp = sub.add_parser("split", help="split interactions into train/validation/test CSVs",
                        description="Write OUTPUT/train.csv, validation.csv and test.csv "
                                    "(columns user,item[,rating][,timestamp]) for `maasrec "
                                    "fit` and `maasrec evaluate`.")
    sp.add_argument("--data", required=True, help="CSV/TSV/Parquet file of interactions")
    sp.add_argument("--method", default="user-random",
                    choices=["user-random", "random", "temporal", "leave-last-out"],
                    help="user-random: each user's rows by --ratios (default); random: all "
                         "rows; temporal: by time (global cut-offs at --ratios); "
                         "leave-last-out: each user's last rows")
    sp.add_argument("--ratios", default="0.8,0.1,0.1",
                    help="train,validation,test shares (or train,test), default 0.8,0.1,0.1")
    sp.add_argument("--n-valid", type=int, default=1, help="leave-last-out: validation rows "
                                                           "per user (0: none)")
    sp.add_argument("--n-test", type=int, default=1, help="leave-last-out: test rows per user")
    sp.add_argument("--seed", type=int, default=0, help="random seed (random splits)")
    _cli_data.add_column_options(sp)
    sp.add_argument("--overwrite", action="store_true")
    sp.add_argument("output", help="folder to write the files into")
    sp.set_defaults(func=cmd_split)


def _add_model_parsers(sub) -> None:
    """``maasrec recommend`` and ``maasrec evaluate``."""
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
    e.add_argument("--train", required=True,
                   help="file of the interactions the model was fitted on (excluded)")
    e.add_argument("--test", required=True, help="file of held-out interactions")
    e.add_argument("--exclude", default=None, metavar="FILE",
                   help="more interactions to exclude from the ranking, e.g. validation.csv")
    _cli_data.add_column_options(e)
    e.add_argument("-k", type=int, nargs="+", default=[10, 20])
    e.add_argument("--encryption-key-env", default="MAASREC_MODEL_KEY", metavar="NAME",
                   help="environment variable holding the key of an encrypted model (default "
                        "MAASREC_MODEL_KEY)")
    e.set_defaults(func=cmd_evaluate)


def _add_serve_parser(sub) -> None:
    """``maasrec serve``."""
    s = sub.add_parser("serve", help="serve a saved model over HTTP (extra: maasrec[serve])",
                       description="Keys: $MAASREC_API_KEYS / $MAASREC_ADMIN_KEYS "
                                   "(comma-separated) and/or key files. Without keys the "
                                   "server binds to loopback only. SIGHUP reloads the model.")
    s.add_argument("model_dir", help="model directory written by model.save")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes; each loads its own copy of the model")
    s.add_argument("--events-db", default=None, metavar="PATH",
                   help="SQLite event log of POST /v1/events (WAL; created when absent; "
                        "default $MAASREC_EVENTS_DB); needs --workers 1")
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


def _add_run_parsers(sub) -> None:
    """``maasrec train`` and ``maasrec bench``."""
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
