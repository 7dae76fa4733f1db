"""Splits made once by maasrec and written to CSV, so that every library trains on the same rows.

Files of one split (``<work>/<suite>/<experiment>/seed<k>/split/``):

``train.csv``, ``valid.csv``, ``test.csv``
    The parts exactly as :mod:`maasrec.data.split` returned them: columns
    ``user,item[,rating][,timestamp]`` with raw ids, rows in maasrec's order (user, then
    time, then input order). Reading them back gives the same interactions
    (:func:`read_interactions`).
``test_relevant.csv`` / ``valid_relevant.csv``
    What is scored: the test (validation) pairs that are not in the user's train (and,
    for test, validation) part, restricted to users and items that occur in train --
    no library can recommend an item it never saw, and every library's catalogue is
    the train items. The rows left out are counted in ``split.json``.
``item_text.csv``
    ``item,text`` of the train items, when the data set has item text (text-aware peers).
``item_attributes.csv``
    ``item,field,label`` of the train items' categorical and multi-hot fields, written
    (by :func:`item_attributes`) when a model asks for them; its SHA-256 is kept apart
    from the split files' (``item_attributes_sha256``), so adding it to an existing split
    does not change the split's identity.
``split.json``
    The spec, maasrec's split report, counts and the SHA-256 of every file; a later run
    with the same spec reuses the files instead of splitting again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import DatasetSpec, ExperimentSpec, SplitSpec

PARTS = ("train", "valid", "test")


# ---------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------
def load_dataset(spec: DatasetSpec, data_home: str | None = None, seed: int = 0):
    """Load a data set through :mod:`maasrec.datasets` (and apply ``min_rating``)."""
    from maasrec import datasets
    from maasrec.data.interactions import Interactions

    if spec.name == "beauty":
        ds = datasets.load_amazon_sequences("beauty", data_home=data_home)
    elif spec.name == "synthetic":
        params = dict(spec.params)
        params.setdefault("seed", seed)
        ds = datasets.make_synthetic(**params)
    else:
        ds = datasets.load_movielens(spec.name, data_home=data_home)
    if spec.min_rating is not None:
        X = ds.interactions
        if not X.has_values:
            raise ValueError(f"min_rating given but {spec.name} has no ratings")
        keep = X.values >= spec.min_rating
        X = X.subset(keep)
        ds.interactions = Interactions.from_pandas(X.to_pandas(), duplicates="keep")
    return ds


def make_split(X, spec: SplitSpec, seed: int):
    """Call the ``maasrec.data.split`` function named by ``spec`` (seeded when it takes one)."""
    from maasrec.data import split as split_mod

    fn = getattr(split_mod, spec.method)
    kwargs = dict(spec.args)
    if spec.seeded:
        kwargs["random_state"] = seed
    if "ratios" in kwargs:
        kwargs["ratios"] = tuple(kwargs["ratios"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cold-start notes: counted in split.json instead
        return fn(X, **kwargs)


# ---------------------------------------------------------------------------
# CSV round trip
# ---------------------------------------------------------------------------
def interactions_frame(X) -> pd.DataFrame:
    """Rows of an :class:`~maasrec.data.interactions.Interactions` with raw ids, in order."""
    df = X.to_pandas()
    if "rating" in df.columns:
        df["rating"] = df["rating"].astype(np.float64)  # exact decimal repr of the float32
    return df


def write_frame(df: pd.DataFrame, path: Path) -> str:
    """Write a frame as CSV (shortest round-trip float repr); return its SHA-256."""
    df.to_csv(path, index=False)
    return sha256_file(path)


def read_frame(path: Path | str) -> pd.DataFrame:
    """Read a split CSV back (ids as written; ratings float64; timestamps int64)."""
    return pd.read_csv(path)


def read_interactions(path: Path | str, duplicates: str = "keep"):
    """Read a split CSV into :class:`Interactions` (vocabularies from this file only)."""
    from maasrec.data.interactions import Interactions

    df = read_frame(path)
    return Interactions.from_pandas(
        df, "user", "item", "rating" if "rating" in df.columns else None,
        "timestamp" if "timestamp" in df.columns else None, duplicates=duplicates)


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pair_keys(df: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([df["user"].to_numpy(), df["item"].to_numpy()])


def relevant_rows(target: pd.DataFrame, train: pd.DataFrame,
                  seen: list[pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Pairs of ``target`` that can be scored: warm user, train item, not already seen.

    Returns the ``user,item`` frame (distinct pairs, in target order) and counts of the
    rows left out.
    """
    t = target[["user", "item"]]
    n0 = len(t)
    t = t.drop_duplicates()
    counts = {"rows": n0, "duplicate_rows": n0 - len(t)}
    warm_u = t["user"].isin(pd.unique(train["user"]))
    counts["rows_cold_user"] = int((~warm_u).sum())
    t = t[warm_u]
    warm_i = t["item"].isin(pd.unique(train["item"]))
    counts["rows_cold_item"] = int((~warm_i).sum())
    t = t[warm_i]
    seen_keys = pair_keys(pd.concat([s[["user", "item"]] for s in seen], ignore_index=True))
    was_seen = pair_keys(t).isin(seen_keys)
    counts["rows_seen_before"] = int(was_seen.sum())
    t = t[~was_seen].reset_index(drop=True)
    counts["relevant_rows"] = len(t)
    counts["users"] = int(t["user"].nunique())
    return t, counts


# ---------------------------------------------------------------------------
# one split on disk
# ---------------------------------------------------------------------------
@dataclass
class SplitFiles:
    """Paths and facts of one split written to disk."""

    dir: Path
    train: Path
    test: Path
    test_relevant: Path
    valid: Path | None = None
    valid_relevant: Path | None = None
    item_text: Path | None = None
    item_attributes: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def split_key(exp: ExperimentSpec, seed: int) -> dict[str, Any]:
    """What determines the split files (used to decide whether they can be reused)."""
    from maasrec import __version__

    return {
        "dataset": {"name": exp.dataset.name, "params": exp.dataset.params,
                    "min_rating": exp.dataset.min_rating},
        "split": {"method": exp.split.method, "args": exp.split.args},
        "seed": seed if exp.split.seeded else None,
        "maasrec": __version__,
        "format": 1,
    }


def _files(d: Path, has_valid: bool, has_text: bool) -> SplitFiles:
    return SplitFiles(
        dir=d, train=d / "train.csv", test=d / "test.csv",
        test_relevant=d / "test_relevant.csv",
        valid=d / "valid.csv" if has_valid else None,
        valid_relevant=d / "valid_relevant.csv" if has_valid else None,
        item_text=d / "item_text.csv" if has_text else None,
    )


def _cached(d: Path, key: dict[str, Any]) -> SplitFiles | None:
    meta = d / "split.json"
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text())
    except ValueError:
        return None
    if info.get("key") != json.loads(json.dumps(key)):
        return None
    for name, digest in info.get("sha256", {}).items():
        p = d / name
        if not p.is_file() or sha256_file(p) != digest:
            return None
    files = _files(d, info.get("has_valid", False), info.get("has_text", False))
    files.info = info
    return files


def _dataset(exp: ExperimentSpec, seed: int, data_home: str | None, dataset_cache: dict | None):
    """The experiment's data set, loaded once per run (``dataset_cache``)."""
    key = split_key(exp, seed)
    cache_key = (json.dumps(key["dataset"], sort_keys=True)
                 + f"|{seed if exp.dataset.name == 'synthetic' else ''}")
    ds = None if dataset_cache is None else dataset_cache.get(cache_key)
    if ds is None:
        ds = load_dataset(exp.dataset, data_home, seed)
        if dataset_cache is not None:
            dataset_cache[cache_key] = ds
    return ds


def item_attributes(exp: ExperimentSpec, seed: int, files: SplitFiles,
                    data_home: str | None = None, dataset_cache: dict | None = None
                    ) -> Path | None:
    """Write (once) ``item_attributes.csv`` beside a split and record it in ``files``.

    Rows ``item,field,label``: every label of the categorical and multi-hot fields of the
    data set's item features, for the items in train. Returns the path, or None when the
    data set has no such fields.
    """
    path = files.dir / "item_attributes.csv"
    if not path.is_file():
        feats = getattr(_dataset(exp, seed, data_home, dataset_cache), "item_features", None)
        cat = dict(getattr(feats, "categorical", {}) or {})
        multi = dict(getattr(feats, "multi_hot", {}) or {})
        if not (cat or multi):
            return None
        ids = np.asarray(feats.vocab.ids)
        parts = []
        for name, (codes, labels) in cat.items():
            r = np.nonzero(codes >= 0)[0]
            parts.append(pd.DataFrame({"item": ids[r], "field": name,
                                       "label": labels[codes[r]].astype(str)}))
        for name, (m, labels) in multi.items():
            coo = m.tocoo()
            parts.append(pd.DataFrame({"item": ids[coo.row], "field": name,
                                       "label": labels[coo.col].astype(str)}))
        df = pd.concat(parts, ignore_index=True)
        train_items = pd.unique(pd.read_csv(files.train, usecols=["item"])["item"])
        df = df[df["item"].isin(train_items)].sort_values(["item", "field", "label"],
                                                          kind="stable")
        write_frame(df, path)
    files.item_attributes = path
    files.info["item_attributes_sha256"] = sha256_file(path)
    return path


def prepare_split(exp: ExperimentSpec, seed: int, split_dir: Path, data_home: str | None = None,
                  dataset_cache: dict | None = None, log=print) -> SplitFiles:
    """Make (or reuse) the split of ``exp`` for ``seed`` in ``split_dir``."""
    key = split_key(exp, seed)
    cached = _cached(split_dir, key)
    if cached is not None:
        log(f"  split: reusing {split_dir}")
        cached.info["reused"] = True
        return cached
    ds = _dataset(exp, seed, data_home, dataset_cache)
    X = ds.interactions
    res = make_split(X, exp.split, seed)
    parts = list(res)
    has_valid = len(parts) == 3
    split_dir.mkdir(parents=True, exist_ok=True)
    frames = {"train": interactions_frame(parts[0]), "test": interactions_frame(parts[-1])}
    if has_valid:
        frames["valid"] = interactions_frame(parts[1])
    digests = {}
    for name, df in frames.items():
        digests[f"{name}.csv"] = write_frame(df, split_dir / f"{name}.csv")
    train = frames["train"]
    seen_test = [train] + ([frames["valid"]] if has_valid else [])
    test_rel, test_counts = relevant_rows(frames["test"], train, seen_test)
    digests["test_relevant.csv"] = write_frame(test_rel, split_dir / "test_relevant.csv")
    counts = {"test": test_counts}
    if has_valid:
        valid_rel, valid_counts = relevant_rows(frames["valid"], train, [train])
        digests["valid_relevant.csv"] = write_frame(valid_rel, split_dir / "valid_relevant.csv")
        counts["valid"] = valid_counts
    has_text = False
    feats = getattr(ds, "item_features", None)
    if feats is not None and getattr(feats, "text", None) is not None:
        ids = np.asarray(feats.vocab.ids)
        text = pd.DataFrame({"item": ids, "text": feats.texts()})
        text = text[text["item"].isin(pd.unique(train["item"]))]
        digests["item_text.csv"] = write_frame(text, split_dir / "item_text.csv")
        has_text = True
    report = getattr(res, "report", {}) or {}
    info = {
        "key": json.loads(json.dumps(key)),
        "experiment": exp.name,
        "dataset": ds.name,
        "dataset_description": getattr(ds, "description", ""),
        "protocol": exp.split.describe(),
        "seed": seed,
        "n_rows": {name: len(df) for name, df in frames.items()},
        "n_users_train": int(train["user"].nunique()),
        "n_items_train": int(train["item"].nunique()),
        "counts": counts,
        "maasrec_split_report": json.loads(json.dumps(report, default=str)),
        "sha256": digests,
        "has_valid": has_valid,
        "has_text": has_text,
        "columns": list(train.columns),
    }
    (split_dir / "split.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    files = _files(split_dir, has_valid, has_text)
    files.info = info
    return files
