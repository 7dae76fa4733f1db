"""What ``maasrec fit``, ``split`` and ``evaluate`` share: the model catalogue, typed
``--param`` values and reading a user's files through :mod:`maasrec.data.loaders`.

Only public API is used, so everything here can be done in Python too.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from typing import Any

from .exceptions import MaasrecError

#: Modules whose public Recommender classes ``maasrec fit --model`` knows. The first is
#: imported always; the others only when a name is not found there (they import torch).
_MODEL_MODULES = ("maasrec.models", "maasrec.neural", "maasrec.neural.lightgcn",
                  "maasrec.neural.vae", "maasrec.neural.recvae", "maasrec.lm_ranker")
#: Recommenders built from other fitted models (Python only: they take model objects).
_COMPOSITES = {"CandidateReranker", "TwoStage"}


def model_catalogue(need: str | None = None) -> dict[str, type]:
    """Public recommender classes by name: classical first, neural when needed.

    Parameters
    ----------
    need : str, optional
        Stop importing once a class of this name (any case) is found.

    Returns
    -------
    dict of str -> type
    """
    from .base import Recommender

    found: dict[str, type] = {}
    for modname in _MODEL_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:  # torch or an extra missing: those models are unavailable
            continue
        for name in getattr(mod, "__all__", dir(mod)):
            obj = getattr(mod, name, None)
            if (isinstance(obj, type) and issubclass(obj, Recommender) and obj is not Recommender
                    and not name.startswith("_") and name not in _COMPOSITES):
                found.setdefault(name, obj)
        if need is not None and need.lower() in {n.lower() for n in found}:
            break
    return found


def model_class(name: str) -> type:
    """The recommender class called ``name`` (case-insensitive), or a MaasrecError listing all."""
    cat = model_catalogue(name)
    by_lower = {n.lower(): c for n, c in cat.items()}
    cls = by_lower.get(name.lower())
    if cls is None:
        cat = model_catalogue()
        raise MaasrecError(f"unknown model {name!r}; available: {sorted(cat)}")
    return cls


# -- typed --param values ----------------------------------------------------------------
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _annotation_kinds(param: inspect.Parameter) -> set[str]:
    """``{"int", "None"}`` for ``int | None``; one opaque entry for ``Sequence[int]``."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return set()
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    return {t.strip() for t in str(text).split("|") if t.strip()}


def parse_value(cls: type, key: str, raw: str) -> Any:
    """``raw`` typed by the annotation of ``cls.__init__``'s parameter ``key``.

    ``int``, ``float``, ``bool`` (true/false/1/0/yes/no) and ``str`` as annotated,
    ``none``/``null`` where None is allowed, JSON for anything else (lists, dicts),
    falling back to the plain string.
    """
    param = inspect.signature(cls.__init__).parameters[key]
    kinds = _annotation_kinds(param)
    low = raw.strip().lower()
    if low in ("none", "null") and ("None" in kinds or param.default is None or not kinds):
        return None

    def bad(what: str) -> MaasrecError:
        return MaasrecError(f"--param {key}={raw}: {cls.__name__}'s {key} takes {what}, "
                            f"got {raw!r}")

    if kinds and kinds <= {"bool", "None"}:
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise bad("true or false")
    if kinds and kinds <= {"int", "None"}:
        try:
            return int(raw)
        except ValueError:
            raise bad("an integer") from None
    if kinds and kinds <= {"float", "int", "None"}:
        try:
            value = float(raw)
        except ValueError:
            raise bad("a number") from None
        return int(value) if "int" in kinds and value.is_integer() and "." not in raw else value
    if kinds and kinds <= {"str", "None"}:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_params(cls: type, pairs: list[str] | None) -> dict:
    """``--param name=value`` options as typed keyword arguments of ``cls``."""
    names = cls._get_param_names()
    params = {}
    for p in pairs or []:
        if "=" not in p:
            raise MaasrecError(f"--param {p!r} must look like name=value")
        key, raw = p.split("=", 1)
        key = key.strip()
        if key not in names:
            raise MaasrecError(f"{cls.__name__} has no parameter {key!r}; its parameters are "
                               f"{names}")
        params[key] = parse_value(cls, key, raw)
    return params


# -- files -------------------------------------------------------------------------------
def add_column_options(p: argparse.ArgumentParser) -> None:
    """The options naming the columns of interaction files."""
    g = p.add_argument_group("columns of the interaction files (found by common names "
                             "when not given)")
    g.add_argument("--user-col", default=None, metavar="NAME", help="user id column")
    g.add_argument("--item-col", default=None, metavar="NAME", help="item id column")
    g.add_argument("--rating-col", default=None, metavar="NAME",
                   help="rating / weight / count column (optional)")
    g.add_argument("--timestamp-col", default=None, metavar="NAME",
                   help="timestamp column, numbers or dates (optional)")
    g.add_argument("--sep", default=None, metavar="SEP",
                   help="field separator (default: tab for .tsv, else guessed); '\\t' for tab")
    g.add_argument("--duplicates", default="raise",
                   choices=["raise", "sum", "last", "first", "mean", "max", "keep"],
                   help="what a repeated (user, item) row means (default: an error)")


def _sep(value: str | None) -> str | None:
    return {"\\t": "\t", "tab": "\t", "space": " "}.get(value, value) if value else None


def read_interactions(path: str, args: argparse.Namespace, **kwargs: Any):
    """Load one interaction file with the column options of ``args``."""
    from .data.loaders import load_interactions

    return load_interactions(path, args.user_col, args.item_col, args.rating_col,
                             args.timestamp_col, _sep(args.sep), duplicates=args.duplicates,
                             **kwargs)


def read_item_features(args: argparse.Namespace, vocab):
    """The ``--item-features`` file as ItemFeatures aligned to ``vocab`` (None without one)."""
    if not getattr(args, "item_features", None):
        if getattr(args, "text_cols", None):
            raise MaasrecError("--text-cols names columns of --item-features FILE; pass it too")
        return None
    from .data.loaders import load_item_features

    feats, _ = load_item_features(args.item_features, vocab, item_col=args.item_features_id,
                                  text_cols=args.text_cols, sep=_sep(args.item_features_sep))
    return feats


def write_interactions(X, path) -> None:
    """Write interactions as CSV with the columns ``user,item[,rating][,timestamp]``."""
    X.to_pandas().to_csv(path, index=False)
