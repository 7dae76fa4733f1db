"""Train a model from a TOML file, on one process or many: ``python -m maasrec.train``.

::

    python -m maasrec.train config.toml                          # one process
    maasrec train config.toml                                     # the same
    torchrun --nproc-per-node 2 -m maasrec.train config.toml      # 2 ranks (gloo/NCCL)

The configuration::

    [data]
    dataset = "ml-100k"        # a maasrec.datasets name ("latest-small", "ml-1m",
                               # "beauty", ...), or instead:
    # path = "ratings.csv"     # a CSV/TSV with the columns below (default: guessed)
    # user_col = "user"; item_col = "item"; rating_col = "rating"; timestamp_col = "ts"
    split = "random"           # "random" (per-user, ratios) or "leave_last_out"
    ratios = [0.8, 0.1, 0.1]   # train / validation / test (random only)
    seed = 0                   # the split's seed, and the model's random_state if unset

    [model]
    class = "HybridRecommender"   # any maasrec recommender
    [model.params]
    epochs = 20

    [train]
    checkpoint_dir = "ckpt"    # optional: checkpoint every epoch, resume from it
    output = "model"           # where rank 0 saves the fitted model
    overwrite = false
    k = 10                     # cut-off of the metrics printed
    recommend_dir = "recs"     # optional: top-recommend_k of every user, one part file
    recommend_k = 100          # per rank (maasrec.recommend_all)

Under ``torchrun`` every rank loads the data and builds the model; the
:class:`~maasrec.training.Trainer` shards each batch across the ranks and all-reduces
the gradients (:mod:`maasrec.training.distributed`); rank 0 validates, logs, writes the
checkpoints, saves the fitted model to ``output`` and prints the validation and test
metrics as one JSON line. With ``torchrun --max-restarts N`` a killed worker restarts
all ranks, which resume from ``checkpoint_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exceptions import DataError, MaasrecError

__all__ = ["load_config", "main", "run"]

_SECTIONS = {
    "data": {"dataset", "path", "user_col", "item_col", "rating_col", "timestamp_col",
             "split", "ratios", "seed", "data_home"},
    "model": {"class", "params"},
    "train": {"checkpoint_dir", "output", "overwrite", "k", "device", "recommend_dir",
              "recommend_k"},
}
_SPLITS = ("random", "leave_last_out")


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a training configuration (see the module docstring).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        ``{"data": {...}, "model": {...}, "train": {...}}`` with defaults filled in.

    Raises
    ------
    DataError
        An unreadable file, an unknown section or key, or a bad value, named.
    """
    tomllib = _toml()
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except OSError as exc:
        raise DataError(f"cannot read the training configuration {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(cfg) - set(_SECTIONS))
    if unknown:
        raise DataError(f"{str(path)!r}: unknown section [{unknown[0]}]; the sections are "
                        f"{sorted(_SECTIONS)}")
    for name, keys in _SECTIONS.items():
        sec = cfg.setdefault(name, {})
        if not isinstance(sec, dict):
            raise DataError(f"{str(path)!r}: {name} must be a [{name}] table")
        bad = sorted(set(sec) - keys)
        if bad:
            raise DataError(f"{str(path)!r}: unknown key {bad[0]!r} in [{name}]; its keys "
                            f"are {sorted(keys)}")
    data, model, train = cfg["data"], cfg["model"], cfg["train"]
    if ("dataset" in data) == ("path" in data):
        raise DataError(f"{str(path)!r}: [data] needs exactly one of 'dataset' and 'path'")
    data.setdefault("split", "random")
    if data["split"] not in _SPLITS:
        raise DataError(f"{str(path)!r}: [data] split must be one of {list(_SPLITS)}, got "
                        f"{data['split']!r}")
    data.setdefault("ratios", [0.8, 0.1, 0.1])
    r = data["ratios"]
    if not (isinstance(r, list) and len(r) in (2, 3)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)):
        raise DataError(f"{str(path)!r}: [data] ratios must be a list of 2 or 3 numbers, "
                        f"got {r!r}")
    data.setdefault("seed", 0)
    if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
        raise DataError(f"{str(path)!r}: [data] seed must be an integer, got {data['seed']!r}")
    if not isinstance(model.get("class"), str):
        raise DataError(f"{str(path)!r}: [model] needs class = \"ModelName\", got "
                        f"{model.get('class')!r}")
    model.setdefault("params", {})
    if not isinstance(model["params"], dict):
        raise DataError(f"{str(path)!r}: [model] params must be a table")
    if not isinstance(train.get("output"), str):
        raise DataError(f"{str(path)!r}: [train] needs output = \"DIR\" (where the fitted "
                        f"model is saved), got {train.get('output')!r}")
    train.setdefault("k", 10)
    if isinstance(train["k"], bool) or not isinstance(train["k"], int) or train["k"] < 1:
        raise DataError(f"{str(path)!r}: [train] k must be a positive integer, got "
                        f"{train['k']!r}")
    return cfg


def _model_class(name: str) -> type:
    import importlib

    from .base import Recommender

    for mod in ("maasrec.models", "maasrec.neural", "maasrec.lm_ranker", "maasrec"):
        try:
            cls = getattr(importlib.import_module(mod), name, None)
        except ImportError:  # pragma: no cover - optional parts
            continue
        if isinstance(cls, type) and issubclass(cls, Recommender):
            return cls
    from . import models, neural

    raise DataError(f"[model] class {name!r} is not a maasrec recommender; e.g. "
                    f"{sorted(models.__all__ + neural.__all__)}")


def _data(data: dict):
    from . import datasets
    from .data.interactions import Interactions
    from .data.split import leave_last_out, random_split

    if "dataset" in data:
        name = data["dataset"]
        try:
            if name == "beauty":
                X = datasets.load_amazon_sequences("beauty", data_home=data.get("data_home"))
            else:
                X = datasets.load_movielens(name, data_home=data.get("data_home"))
        except MaasrecError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"[data] dataset {name!r} cannot be loaded: {exc}") from None
        X = X.interactions
    else:
        from .cli import _read_frame

        X = Interactions.from_pandas(_read_frame(data["path"]), data.get("user_col"),
                                     data.get("item_col"), data.get("rating_col"),
                                     data.get("timestamp_col"))
    if data["split"] == "leave_last_out":
        parts = leave_last_out(X, n_valid=1, n_test=1)
    else:
        parts = random_split(X, tuple(data["ratios"]), random_state=int(data["seed"]))
    parts = list(parts)
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def run(config: dict[str, Any]) -> dict[str, Any] | None:
    """Train as ``config`` says (under torchrun: on every rank).

    Parameters
    ----------
    config : dict
        As returned by :func:`load_config`.

    Returns
    -------
    dict or None
        On rank 0: the validation (and test) metrics and where the model was saved;
        None on the other ranks.
    """
    from . import metrics
    from .recommend_all import recommend_all
    from .training.distributed import barrier, init_distributed, is_rank0, teardown

    data, mcfg, tcfg = config["data"], config["model"], config["train"]
    cls = _model_class(mcfg["class"])
    params = dict(mcfg["params"])
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise DataError(f"[model.params] {mcfg['class']} has no parameter {unknown[0]!r}; "
                        f"its parameters are {cls._get_param_names()}")
    names = cls._get_param_names()
    if "random_state" in names and params.get("random_state") is None:
        params["random_state"] = int(data["seed"])  # every rank: the same initial model
    device = init_distributed(tcfg.get("device") or params.get("device"))
    if "device" in names and device.type == "cuda":
        params["device"] = str(device)  # rank r on cuda:LOCAL_RANK
    if not is_rank0():
        logging.getLogger("maasrec").setLevel(logging.WARNING)
    try:
        train, valid, test = _data(data)
        model = cls(**params)
        model.fit(train, validation=valid, checkpoint_dir=tcfg.get("checkpoint_dir"))
        out = None
        if tcfg.get("recommend_dir"):  # every rank: its slice of the users
            recommend_all(model, tcfg["recommend_dir"], k=int(tcfg.get("recommend_k", 100)))
        if is_rank0():
            k = int(tcfg["k"])
            saved = model.save(tcfg["output"], overwrite=bool(tcfg.get("overwrite", False)))
            res = metrics.evaluate(model, train, valid, k=k)
            out = {"model": mcfg["class"], "output": str(saved),
                   "validation": {m: float(res[m]) for m in (f"ndcg@{k}", f"recall@{k}")}}
            if test is not None and test.nnz:
                res = metrics.evaluate(model, train, test, k=k, exclude=valid)
                out["test"] = {m: float(res[m]) for m in (f"ndcg@{k}", f"recall@{k}")}
        barrier()
        return out
    finally:
        teardown()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m maasrec.train CONFIG.toml``: train, save, print the metrics (JSON).

    Parameters
    ----------
    argv : sequence of str, optional
        ``[CONFIG.toml]`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on a maasrec error (message on stderr).
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m maasrec.train",
                                description="train a maasrec model from a TOML file "
                                            "(under torchrun: data parallel)")
    p.add_argument("config", help="the TOML configuration")
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run(load_config(Path(args.config)))
    except MaasrecError as exc:
        print(f"maasrec: error: {exc}", file=sys.stderr)
        return 2
    if out is not None:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
