"""Ready-to-use data sets: MovieLens, Amazon Beauty sequences and planted synthetic data.

Where data come from
--------------------
:func:`load_movielens` and :func:`load_amazon_sequences` look for a data set folder
(``ml-latest-small``, ``ml-100k``, ``ml-1m`` or ``amazon-beauty``, holding the original
files under their original names) in this order:

1. the ``data_home`` argument (a folder holding the data set folder, or the data set
   folder itself);
2. the folder named by the environment variable ``MAASREC_DATA`` (same layout);
3. for MovieLens latest-small only: the copy embedded in the package (offline, verified
   against its ``SHA256SUMS``);
4. the download cache, ``$MAASREC_CACHE`` or else ``~/.cache/maasrec``;
5. with ``download=True``: a download from the official source into the cache. Every
   downloaded file is checked against a pinned SHA-256 digest (a mismatch deletes it and
   raises :class:`~maasrec.exceptions.DataError`), and the data files inside the
   MovieLens zips are checked again against their known digests.

MovieLens 100K and 1M may not be redistributed (GroupLens license), so they are never
shipped; point ``MAASREC_DATA`` at a folder holding them or let them download.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_int, check_number
from ..exceptions import DataError
from .features import ItemFeatures, UserFeatures
from .interactions import Interactions
from .vocab import IdVocab

__all__ = [
    "DOWNLOADS",
    "Dataset",
    "load_amazon_sequences",
    "load_movielens",
    "make_synthetic",
]

logger = logging.getLogger(__name__)

_EMBEDDED = Path(__file__).resolve().parent.parent / "datasets_data" / "ml-latest-small"

_ML_LICENSE_SMALL = (
    "MovieLens usage license (GroupLens Research, University of Minnesota): research use; no "
    "commercial use without permission; no implied endorsement; cite F. M. Harper and J. A. "
    "Konstan, The MovieLens Datasets: History and Context, ACM TiiS 5(4), 2015. Redistribution "
    "(including transformations) allowed under the same terms. Full text: README.txt beside "
    "the data.")
_ML_LICENSE = (
    "MovieLens usage license (GroupLens Research, University of Minnesota): research use only; "
    "no commercial use; no redistribution without permission; cite F. M. Harper and J. A. "
    "Konstan, The MovieLens Datasets: History and Context, ACM TiiS 5(4), 2015. Full text: the "
    "data set's README.")
_BEAUTY_LICENSE = (
    "Sequences: S3Rec/ICLRec preprocessing of the Amazon review data (ICLRec repository: "
    "BSD-3-Clause, Copyright 2021 Salesforce.com; see LICENSE-ICLRec.txt). Attributes: "
    "RUCAIBox/CIKM2020-S3Rec (no license file). Underlying Amazon data: McAuley lab, research "
    "use; cite He & McAuley (WWW 2016) and McAuley et al. (SIGIR 2015).")


# -- the Dataset object ----------------------------------------------------------------
@dataclass(repr=False)
class Dataset:
    """A loaded data set: interactions plus side information, description and license.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"ml-100k"``.
    interactions : Interactions
    item_features : ItemFeatures or None
        Aligned to ``interactions.item_vocab`` (one row per item index).
    user_features : UserFeatures or None
        Aligned to ``interactions.user_vocab``.
    description : str
        What the data are, counts, and caveats (e.g. missing timestamps).
    license : str
        Terms of use; read them before publishing or shipping anything built on the data.
    item_titles : pandas.Series or None
        Human-readable item names indexed by raw item id (every item of the catalogue,
        rated or not), for printing recommendations.
    source : str
        Where the files were read from (a folder, or ``"embedded"``/``"generated"``).
    metadata : dict
        Extra facts, e.g. the planted structure of :func:`make_synthetic`.
    """

    name: str
    interactions: Interactions
    item_features: ItemFeatures | None = None
    user_features: UserFeatures | None = None
    description: str = ""
    license: str = ""
    item_titles: pd.Series | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        X = self.interactions
        extra = [w for w, ok in (("ratings", X.has_values), ("timestamps", X.has_timestamps))
                 if ok]
        s = (f"Dataset({self.name!r}: {X.n_users:,} users, {X.n_items:,} items, "
             f"{X.nnz:,} interactions")
        if extra:
            s += " with " + " and ".join(extra)
        for label, feats in (("item features", self.item_features),
                             ("user features", self.user_features)):
            if feats is not None:
                s += f"; {label} {_feature_names(feats)}"
        return s + ")"


def _feature_names(f: Any) -> list[str]:
    names = ["text"] if f.text is not None else []
    for block in (f.categorical, f.multi_hot, f.numeric, f.vectors):
        names.extend(block)
    return names


# -- where the files are ---------------------------------------------------------------
@dataclass(frozen=True)
class Archive:
    """A zip download: its URL and SHA-256, plus digests of members checked after extraction.

    ``members`` maps a file name to ``("sha256", hex)`` or ``("git-blob", hex)`` (the SHA-1
    git computes for a file, used where only that is known).
    """

    url: str
    sha256: str
    members: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteFile:
    """One downloaded file: its URL and SHA-256."""

    url: str
    sha256: str


_GL = "https://files.grouplens.org/datasets/movielens/"
_ICLREC = "https://raw.githubusercontent.com/salesforce/ICLRec/2890e6c3ff6a22c6699fc19cb863b66786c1cde4/"
_S3REC = ("https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/"
          "2a81540ae18615d88ef88227b0c066e5b74781e5/")

#: Download sources by folder name. Zip digests are the ones recorded by
#: tensorflow_datasets (url_checksums/movielens.txt); member digests are those of the
#: official files (see each data set's SOURCE.txt in the project's data notes).
DOWNLOADS: dict[str, Archive | dict[str, RemoteFile]] = {
    "ml-latest-small": Archive(
        _GL + "ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        {"ratings.csv": ("sha256", "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646"),
         "movies.csv": ("sha256", "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07")}),
    "ml-100k": Archive(
        _GL + "ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        {"u.data": ("sha256", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
         "u.item": ("sha256", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
         "u.user": ("sha256", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c")}),
    "ml-1m": Archive(
        _GL + "ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        {"ratings.dat": ("git-blob", "77a7c4b150f588c23bb9e1f068aa996c0b413695"),
         "movies.dat": ("sha256", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"),
         "users.dat": ("sha256", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3")}),
    "amazon-beauty": {
        "Beauty.txt": RemoteFile(
            _ICLREC + "data/Beauty.txt",
            "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),
        "Beauty_item2attributes.json": RemoteFile(
            _S3REC + "data/Beauty_item2attributes.json",
            "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4"),
        "LICENSE-ICLRec.txt": RemoteFile(
            _ICLREC + "LICENSE.txt",
            "0f3764c856b8d4e6e1aa275bce9f34925a7b0612172c6b57713b5c0f1dab0a6e"),
    },
    # the other S3Rec/ICLRec sequence files (digests of the pinned ICLRec commit's files)
    "amazon-sports": {
        "Sports_and_Outdoors.txt": RemoteFile(
            _ICLREC + "data/Sports_and_Outdoors.txt",
            "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2"),
        "LICENSE-ICLRec.txt": RemoteFile(
            _ICLREC + "LICENSE.txt",
            "0f3764c856b8d4e6e1aa275bce9f34925a7b0612172c6b57713b5c0f1dab0a6e"),
    },
    "amazon-toys": {
        "Toys_and_Games.txt": RemoteFile(
            _ICLREC + "data/Toys_and_Games.txt",
            "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f"),
        "LICENSE-ICLRec.txt": RemoteFile(
            _ICLREC + "LICENSE.txt",
            "0f3764c856b8d4e6e1aa275bce9f34925a7b0612172c6b57713b5c0f1dab0a6e"),
    },
    "yelp": {
        "Yelp.txt": RemoteFile(
            _ICLREC + "data/Yelp.txt",
            "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed"),
        "LICENSE-ICLRec.txt": RemoteFile(
            _ICLREC + "LICENSE.txt",
            "0f3764c856b8d4e6e1aa275bce9f34925a7b0612172c6b57713b5c0f1dab0a6e"),
    },
}

# files a folder must hold (any one of each tuple), by folder name
_REQUIRED: dict[str, list[tuple[str, ...]]] = {
    "ml-latest-small": [("ratings.csv", "ratings.csv.gz"), ("movies.csv", "movies.csv.gz")],
    "ml-100k": [("u.data",), ("u.item",)],
    "ml-1m": [("ratings.dat", "ratings.dat.gz", "ratings_complete_no_timestamp.dat.gz"),
              ("movies.dat",)],
    "amazon-beauty": [("Beauty.txt",)],
    "amazon-sports": [("Sports_and_Outdoors.txt",)],
    "amazon-toys": [("Toys_and_Games.txt",)],
    "yelp": [("Yelp.txt",)],
}

_ML_NAMES = {"latest-small": "ml-latest-small", "ml-latest-small": "ml-latest-small",
             "100k": "ml-100k", "ml-100k": "ml-100k", "1m": "ml-1m", "ml-1m": "ml-1m"}
#: The S3Rec/ICLRec sequence data sets by folder: (file stem, title, underlying data).
_SEQUENCE_SETS = {
    "amazon-beauty": ("Beauty", "Amazon Beauty", "amazon"),
    "amazon-sports": ("Sports_and_Outdoors", "Amazon Sports and Outdoors", "amazon"),
    "amazon-toys": ("Toys_and_Games", "Amazon Toys and Games", "amazon"),
    "yelp": ("Yelp", "Yelp", "yelp"),
}
_AMAZON_NAMES = {alias: folder for folder, (stem, _, _) in _SEQUENCE_SETS.items()
                 for alias in (folder, stem.lower(), folder.split("-")[-1])}


def _cache_root() -> Path:
    env = os.environ.get("MAASREC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "maasrec"


def _has_files(folder: Path, name: str) -> bool:
    return folder.is_dir() and all(any((folder / f).is_file() for f in alts)
                                   for alts in _REQUIRED[name])


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_blob_file(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest(path: Path, algo: str) -> str:
    if algo == "sha256":
        return _sha256_file(path)
    if algo == "git-blob":
        return _git_blob_file(path)
    raise DataError(f"unknown digest algorithm {algo!r}; expected 'sha256' or 'git-blob'")


def _verify_embedded() -> None:
    sums = (_EMBEDDED / "SHA256SUMS").read_text().split("\n")
    for line in filter(None, (s.strip() for s in sums)):
        expected, fname = line.split(maxsplit=1)
        actual = _sha256_file(_EMBEDDED / fname)
        if actual != expected:
            raise DataError(
                f"the embedded MovieLens latest-small file {fname} is corrupt (sha256 {actual}, "
                f"expected {expected}); reinstall maasrec, or set MAASREC_DATA to a folder "
                f"holding ml-latest-small/")


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file; rename only if the digest matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    logger.info("downloading %s", url)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        out.write(chunk)
                        h.update(chunk)
            except (urllib.error.URLError, OSError) as exc:
                raise DataError(
                    f"could not download {url}: {exc}. Without network access, fetch the file "
                    f"elsewhere and set MAASREC_DATA to the folder holding the data set folder"
                ) from exc
        actual = h.hexdigest()
        if actual != sha256.lower():
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}; "
                f"the downloaded file was deleted")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fetch(folder: str) -> Path:
    """Download ``folder`` into the cache (verified, all or nothing) and return its path.

    Everything is fetched and checked in a temporary folder inside the cache; only then
    are the files moved (atomic renames) into ``<cache>/<folder>``.
    """
    spec = DOWNLOADS[folder]
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}-"))
    try:
        files = work / "files"
        files.mkdir()
        if isinstance(spec, Archive):
            zpath = work / "archive.zip"
            _download(spec.url, zpath, spec.sha256)
            try:
                with zipfile.ZipFile(zpath) as z:
                    for info in z.infolist():
                        p = PurePosixPath(info.filename)
                        if info.is_dir() or "__MACOSX" in p.parts or p.name.startswith("."):
                            continue
                        with z.open(info) as src, open(files / p.name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
            except zipfile.BadZipFile as exc:
                raise DataError(f"{spec.url} is not a valid zip file: {exc}") from exc
            for member, (algo, expected) in spec.members.items():
                path = files / member
                if not path.is_file():
                    raise DataError(f"{spec.url} does not contain the expected file {member}")
                actual = _digest(path, algo)
                if actual != expected.lower():
                    raise DataError(
                        f"checksum mismatch for {member} inside {spec.url}: expected {algo} "
                        f"{expected.lower()}, got {actual}; nothing was kept")
        else:
            for fname, remote in spec.items():
                _download(remote.url, files / fname, remote.sha256)
        target = root / folder
        target.mkdir(exist_ok=True)
        for path in sorted(files.iterdir()):
            os.replace(path, target / path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("stored %s in %s", folder, target)
    return target


def _locate(folder: str, data_home: Any, download: bool, label: str
            ) -> tuple[Path | None, str]:
    """Find (or fetch) a data set folder. Returns (path or None for embedded, source text)."""
    searched: list[str] = []
    bases: list[tuple[str, Path]] = []
    if data_home is not None:
        bases.append(("data_home", Path(data_home).expanduser()))
    env = os.environ.get("MAASREC_DATA")
    if env:
        bases.append(("MAASREC_DATA", Path(env).expanduser()))
    for what, base in bases:
        for cand in (base / folder, base):
            searched.append(f"{cand} ({what})")
            if _has_files(cand, folder):
                return cand, str(cand)
    if folder == "ml-latest-small":
        if _has_files(_EMBEDDED, folder):
            _verify_embedded()
            return None, "embedded"
        searched.append(f"{_EMBEDDED} (embedded copy, missing)")
    cache = _cache_root() / folder
    searched.append(f"{cache} (cache)")
    if _has_files(cache, folder):
        return cache, str(cache)
    spec = DOWNLOADS.get(folder)
    if download and spec is not None:
        path = _fetch(folder)
        if not _has_files(path, folder):  # pragma: no cover - a source changed its layout
            raise DataError(f"the download of {label} did not provide the files "
                            f"{_REQUIRED[folder]} in {path}")
        return path, str(path)
    need = " and ".join("/".join(alts) for alts in _REQUIRED[folder])
    hint = "" if download else "; or call with download=True"
    raise DataError(
        f"data set {label} not found. Searched: {'; '.join(searched)}. Provide it by setting "
        f"the MAASREC_DATA environment variable (or data_home=) to a folder holding "
        f"{folder}/ with {need}{hint}.")


def _open(folder: Path | None, name: str) -> io.BufferedIOBase:
    """Open ``name`` (or ``name.gz``) from a folder or from the embedded copy, decompressing."""
    base = _EMBEDDED if folder is None else folder
    if (base / name).is_file():
        return open(base / name, "rb")
    if (base / (name + ".gz")).is_file():
        return gzip.open(base / (name + ".gz"), "rb")
    raise DataError(f"{name} is missing from {base}")


def _exists(folder: Path | None, name: str) -> bool:
    base = _EMBEDDED if folder is None else folder
    return (base / name).is_file() or (base / (name + ".gz")).is_file()


# -- MovieLens -------------------------------------------------------------------------
_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]
_ML1M_AGES = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55",
              56: "56+"}
_ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]
_NO_GENRE = {"(no genres listed)", "unknown", ""}


def _year_of(title: str) -> float:
    m = _YEAR.search(title.strip())
    return float(m.group(1)) if m else np.nan


def item_text(title: str, genres: list[str]) -> str:
    """The item text template of the MovieLens loaders.

    ``"<title>. Genres: <g1>, <g2>"``, or just the title when there are no genres, e.g.
    ``"Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy"``.

    Parameters
    ----------
    title : str
    genres : list of str

    Returns
    -------
    str
    """
    return f"{title}. Genres: {', '.join(genres)}" if genres else title


def _movie_features(ids: np.ndarray, titles: list[str], genres: list[list[str]],
                    vocab: IdVocab, years: np.ndarray | None = None
                    ) -> tuple[ItemFeatures, pd.Series]:
    genres = [[g for g in gs if g not in _NO_GENRE] for gs in genres]
    if years is None:
        years = np.array([_year_of(t) for t in titles], dtype=np.float64)
    frame = pd.DataFrame({
        "item": ids,
        "text": [item_text(t, g) for t, g in zip(titles, genres)],
        "year": years,
    })
    frame["genres"] = pd.Series(genres, dtype=object)
    feats = ItemFeatures.from_pandas(frame, "item", text="text", multi_hot=["genres"],
                                     numeric=["year"], vocab=vocab)
    titles_s = pd.Series(titles, index=pd.Index(ids, name="item"), name="title", dtype=object)
    return feats, titles_s


def _read_delimited_ints(raw: bytes, sep: bytes, names: list[str]) -> pd.DataFrame:
    if sep != b"\t":
        raw = raw.replace(sep, b"\t")
    return pd.read_csv(io.BytesIO(raw), sep="\t", header=None, names=names, dtype=np.int64,
                       engine="c")


def _load_latest_small(folder: Path | None) -> tuple[Interactions, ItemFeatures, pd.Series]:
    with _open(folder, "ratings.csv") as f:
        r = pd.read_csv(f, dtype={"userId": np.int64, "movieId": np.int64,
                                  "rating": np.float64, "timestamp": np.int64})
    with _open(folder, "movies.csv") as f:
        m = pd.read_csv(f, dtype={"movieId": np.int64, "title": str, "genres": str},
                        keep_default_na=False, na_filter=False, encoding="utf-8")
    X = Interactions.from_arrays(r["userId"].to_numpy(), r["movieId"].to_numpy(),
                                 r["rating"].to_numpy(), r["timestamp"].to_numpy())
    feats, titles = _movie_features(m["movieId"].to_numpy(), m["title"].tolist(),
                                    [g.split("|") for g in m["genres"]], X.item_vocab)
    return X, feats, titles


def _load_100k(folder: Path) -> tuple[Interactions, ItemFeatures, pd.Series, UserFeatures | None]:
    with _open(folder, "u.data") as f:
        r = _read_delimited_ints(f.read(), b"\t", ["user", "item", "rating", "timestamp"])
    X = Interactions.from_arrays(r["user"].to_numpy(), r["item"].to_numpy(),
                                 r["rating"].to_numpy(np.float64), r["timestamp"].to_numpy())
    with _open(folder, "u.item") as f:
        m = pd.read_csv(f, sep="|", header=None, encoding="latin-1", dtype=str,
                        keep_default_na=False, na_filter=False)
    ids = m[0].astype(np.int64).to_numpy()
    titles = m[1].tolist()
    flags = m.iloc[:, 5:24].astype(np.int64).to_numpy()
    genres = [[_ML100K_GENRES[j] for j in np.flatnonzero(row)] for row in flags]
    years = np.array([_year_of(t) for t in titles], dtype=np.float64)
    release = pd.to_datetime(m[2], format="%d-%b-%Y", errors="coerce")
    years = np.where(np.isnan(years), release.dt.year.to_numpy(dtype=np.float64), years)
    feats, titles_s = _movie_features(ids, titles, genres, X.item_vocab, years)
    users = None
    if _exists(folder, "u.user"):
        with _open(folder, "u.user") as f:
            u = pd.read_csv(f, sep="|", header=None, names=["user", "age", "gender",
                                                            "occupation", "zip"],
                            dtype={"user": np.int64, "age": np.float64, "gender": str,
                                   "occupation": str, "zip": str}, keep_default_na=False)
        users = UserFeatures.from_pandas(u, "user", numeric=["age"],
                                         categorical=["gender", "occupation", "zip"],
                                         vocab=X.user_vocab)
    return X, feats, titles_s, users


def _load_1m(folder: Path) -> tuple[Interactions, ItemFeatures, pd.Series, UserFeatures | None,
                                    bool]:
    if _exists(folder, "ratings.dat"):
        with _open(folder, "ratings.dat") as f:
            r = _read_delimited_ints(f.read(), b"::", ["user", "item", "rating", "timestamp"])
        ts: np.ndarray | None = r["timestamp"].to_numpy()
    else:
        with _open(folder, "ratings_complete_no_timestamp.dat") as f:
            r = _read_delimited_ints(f.read(), b"::", ["user", "item", "rating"])
        ts = None
    X = Interactions.from_arrays(r["user"].to_numpy(), r["item"].to_numpy(),
                                 r["rating"].to_numpy(np.float64), ts)
    with _open(folder, "movies.dat") as f:
        lines = f.read().decode("latin-1").splitlines()
    ids, titles, genres = [], [], []
    for line in filter(None, lines):
        mid, rest = line.split("::", 1)
        title, g = rest.rsplit("::", 1)
        ids.append(int(mid))
        titles.append(title)
        genres.append(g.split("|"))
    feats, titles_s = _movie_features(np.asarray(ids, dtype=np.int64), titles, genres,
                                      X.item_vocab)
    users = None
    if _exists(folder, "users.dat"):
        with _open(folder, "users.dat") as f:
            rows = [line.split("::") for line in f.read().decode("latin-1").splitlines() if line]
        u = pd.DataFrame(rows, columns=["user", "gender", "age", "occupation", "zip"])
        u["user"] = u["user"].astype(np.int64)
        u["age"] = [_ML1M_AGES.get(int(a), a) for a in u["age"]]
        u["occupation"] = [_ML1M_OCCUPATIONS[int(o)] if o.isdigit() and int(o) < 21 else o
                           for o in u["occupation"]]
        users = UserFeatures.from_pandas(u, "user",
                                         categorical=["gender", "age", "occupation", "zip"],
                                         vocab=X.user_vocab)
    return X, feats, titles_s, users, ts is not None


def _normalise(name: Any, table: dict[str, str], what: str) -> str:
    key = str(name).strip().lower() if isinstance(name, str) else None
    if key not in table:
        raise DataError(f"unknown {what} data set {name!r}; expected one of {sorted(table)}")
    return table[key]


def load_movielens(name: str = "latest-small", data_home: str | os.PathLike | None = None, *,
                   download: bool = True) -> Dataset:
    """Load a MovieLens data set with ratings, item text/genres/year and user demographics.

    Parameters
    ----------
    name : {"latest-small", "100k", "1m"}, default "latest-small"
        Also accepted: ``"ml-latest-small"``, ``"ml-100k"``, ``"ml-1m"``.
    data_home : path, optional
        A folder holding ``ml-latest-small/``, ``ml-100k/`` or ``ml-1m/`` with the original
        files (or the data set folder itself). See the module docstring for the search
        order: ``data_home`` -> ``$MAASREC_DATA`` -> embedded copy (latest-small) -> cache
        (``$MAASREC_CACHE`` or ``~/.cache/maasrec``) -> verified download.
    download : bool, default True
        Download from files.grouplens.org into the cache when not found locally.

    Returns
    -------
    Dataset
        * ``interactions``: explicit ratings with the original integer user/movie ids;
          timestamps (unix seconds) when every rating has one.
        * ``item_features`` (aligned to the rated movies): ``text`` from
          :func:`item_text`, e.g. ``"Toy Story (1995). Genres: Adventure, Animation,
          Children, Comedy, Fantasy"``; multi-hot ``genres`` (the "unknown" /
          "(no genres listed)" markers become no genre); numeric ``year`` parsed from the
          title (100K: from the release date when the title has none; NaN if unknown).
        * ``item_titles``: title of every movie in the catalogue by raw id.
        * ``user_features``: 100K: numeric ``age``, categorical ``gender``,
          ``occupation``, ``zip``; 1M: categorical ``gender``, ``age`` (the bucket label,
          e.g. ``"25-34"``), ``occupation`` (name), ``zip``; latest-small: None.

    Notes
    -----
    ml-1m: with the official ``ratings.dat`` (as in ml-1m.zip) the ratings carry
    timestamps. A folder holding only ``ratings_complete_no_timestamp.dat.gz`` (all
    1,000,209 ratings, rebuilt without timestamps) gives interactions **without**
    timestamps; none are invented, so temporal and leave-last-out protocols are not
    available on it (the description says so).

    Raises
    ------
    DataError
        Unknown name; data not found and ``download=False`` (the message lists the folders
        searched and how to provide the data); a failed or corrupt download.
    """
    folder = _normalise(name, _ML_NAMES, "MovieLens")
    path, source = _locate(folder, data_home, download, f"MovieLens {folder}")
    logger.info("loading MovieLens %s from %s", folder, source)
    users = None
    if folder == "ml-latest-small":
        X, feats, titles = _load_latest_small(path)
        desc = (f"MovieLens latest-small (September 2018 release): {X.nnz:,} ratings (0.5-5 "
                f"stars, half-star steps) with timestamps by {X.n_users:,} users on "
                f"{X.n_items:,} movies ({len(titles):,} in the catalogue). Users rated at least "
                f"20 movies. No user demographics. GroupLens calls it a development data set "
                f"that may change over time: use 100K/1M for comparable published results.")
        lic = _ML_LICENSE_SMALL
    elif folder == "ml-100k":
        assert path is not None
        X, feats, titles, users = _load_100k(path)
        desc = (f"MovieLens 100K (1998): {X.nnz:,} ratings (1-5 stars) with timestamps by "
                f"{X.n_users:,} users on {X.n_items:,} movies; each user rated at least 20 "
                f"movies. Users have age, gender, occupation and zip code.")
        lic = _ML_LICENSE
    else:
        assert path is not None
        X, feats, titles, users, has_ts = _load_1m(path)
        desc = (f"MovieLens 1M (2003): {X.nnz:,} ratings (1-5 stars) by {X.n_users:,} users "
                f"on {X.n_items:,} movies; each user rated at least 20 movies. Users have "
                f"gender, age bucket, occupation and zip code.")
        if has_ts:
            desc += " Ratings have timestamps."
        else:
            desc += (" These ratings have NO timestamps (the complete rating set was loaded "
                     "from ratings_complete_no_timestamp.dat.gz; none were invented): random "
                     "and per-user ratio splits work, but temporal splits, leave-last-out and "
                     "sequential protocols are unavailable; use the official ratings.dat "
                     "(ml-1m.zip) for them.")
        lic = _ML_LICENSE
    return Dataset(folder, X, feats, users, desc, lic, item_titles=titles, source=source)


# -- Amazon / Yelp sequences (S3Rec/ICLRec format) ------------------------------------------
_YELP_LICENSE = (
    "Sequences: ICLRec preprocessing of the Yelp Open Dataset (ICLRec repository: "
    "BSD-3-Clause, Copyright 2021 Salesforce.com; see LICENSE-ICLRec.txt). Underlying data: "
    "the Yelp Dataset terms of use (https://www.yelp.com/dataset), academic and "
    "non-commercial use.")
_PATH_LICENSE = "the file's own terms (read them before publishing results built on it)"
_NOT_SEQUENCE_FILES = ("license", "readme", "source", "sha256sums", "notice")


def _parse_sequences(text: str, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``user item1 item2 ...`` lines -> (users, items, positions), repeats kept.

    Every token must be an integer id; a user may appear on one line only and needs at
    least one item. Errors name the file, the line and the token.
    """
    users_l: list[int] = []
    seqs: list[np.ndarray] = []
    first_line: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        try:
            ids = np.asarray([int(t) for t in tok], dtype=np.int64)
        except (ValueError, OverflowError):
            bad = next(t for t in tok if not re.fullmatch(r"[+-]?\d{1,18}", t))
            raise DataError(
                f"{source}, line {lineno}: {bad!r} is not an integer id; the S3Rec/ICLRec "
                f"format is one user per line, `user item1 item2 ...` separated by spaces "
                f"(use maasrec.data.loaders.load_interactions for user,item tables)") from None
        if len(ids) < 2:
            raise DataError(f"{source}, line {lineno}: user {ids[0]} has no items; each "
                            f"line is `user item1 item2 ...`")
        user = int(ids[0])
        if user in first_line:
            raise DataError(f"{source}: user {user} appears on lines {first_line[user]} and "
                            f"{lineno}; each user's sequence must be on one line")
        first_line[user] = lineno
        users_l.append(user)
        seqs.append(ids[1:])
    if not seqs:
        raise DataError(f"{source} holds no sequences (empty file); each line is "
                        f"`user item1 item2 ...`")
    lengths = np.fromiter((len(q) for q in seqs), dtype=np.int64, count=len(seqs))
    users = np.repeat(np.asarray(users_l, dtype=np.int64), lengths)
    items = np.concatenate(seqs)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return users, items, np.arange(len(items), dtype=np.int64) - starts


def _is_path(name: Any) -> bool:
    if isinstance(name, os.PathLike):
        return True
    return isinstance(name, str) and (os.sep in name or "/" in name
                                      or name.lower().endswith((".txt", ".txt.gz")))


def _sequence_file(path: Path) -> tuple[Path, str]:
    """The sequence file named by a path (a file, or a folder holding exactly one)."""
    if path.is_file():
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        return path.parent, name
    if not path.is_dir():
        raise DataError(f"no such file or folder: {path}; pass a data set name "
                        f"({sorted(set(_AMAZON_NAMES))}) or the path of a sequence file")
    for stem, _, _ in _SEQUENCE_SETS.values():
        if _exists(path, f"{stem}.txt"):
            return path, f"{stem}.txt"
    cands = sorted({f.name.removesuffix(".gz") for f in path.iterdir()
                    if f.name.endswith((".txt", ".txt.gz"))
                    and not f.name.lower().startswith(_NOT_SEQUENCE_FILES)})
    if len(cands) != 1:
        raise DataError(f"{path} holds {len(cands)} candidate sequence files {cands}; pass "
                        f"the path of the one to load")
    return path, cands[0]


def load_amazon_sequences(name: str | os.PathLike = "beauty",
                          data_home: str | os.PathLike | None = None, *,
                          download: bool = True) -> Dataset:
    """Load user sequences in the S3Rec/ICLRec format (implicit, time-ordered).

    The format: one line per user, ``user item1 item2 ...`` (integer ids separated by
    spaces, items in chronological order), optionally with a
    ``<Name>_item2attributes.json`` file beside it mapping item ids to attribute ids.

    Parameters
    ----------
    name : str or path-like, default "beauty"
        A data set of the S3Rec/ICLRec papers by name: ``"beauty"``, ``"sports"``
        (``"sports_and_outdoors"``), ``"toys"`` (``"toys_and_games"``), ``"yelp"``
        (also ``"amazon-beauty"``, ``"amazon-sports"``, ``"amazon-toys"``; any case);
        or the path of a file in this format (``.txt`` or ``.txt.gz``) or of a folder
        holding one. A string counts as a path when it holds a ``/`` or ends in ``.txt``.
    data_home : path, optional
        For a name: a folder holding the data set folder (``amazon-beauty/Beauty.txt``,
        ``amazon-sports/Sports_and_Outdoors.txt``, ``amazon-toys/Toys_and_Games.txt``,
        ``yelp/Yelp.txt``), or that folder itself. Same search order as
        :func:`load_movielens` (there is no embedded copy).
    download : bool, default True
        For a name: download the files from the pinned ICLRec (and, for Beauty's
        attributes, S3Rec) GitHub commits, verified by SHA-256, when not found.

    Returns
    -------
    Dataset
        * ``interactions``: implicit feedback, one row per (user, item) event; repeats are
          kept (``duplicates="keep"``). ``timestamps`` are the position within the user's
          chronological sequence (0, 1, 2, ...), so time order is explicit and
          :func:`~maasrec.data.split.leave_last_out` holds out the last item(s).
        * ``item_features``: multi-hot ``attributes`` (S3Rec attribute ids, from
          categories and brand) when the ``*_item2attributes.json`` file is present
          (downloaded for Beauty); there is **no item text** in this format.
        * ``user_features``: None.

    Raises
    ------
    DataError
        Unknown name; data not found with ``download=False``; a failed or corrupt
        download; a malformed file (a token that is not an integer, a user without
        items or on two lines, an empty file: the message names the line).
    """
    if _is_path(name):
        folder_path, fname = _sequence_file(Path(name).expanduser())
        folder, title, kind, source = None, Path(fname).stem, "path", str(folder_path / fname)
    else:
        folder = _normalise(name, _AMAZON_NAMES, "Amazon/S3Rec sequence")
        stem, title, kind = _SEQUENCE_SETS[folder]
        label = f"Amazon {folder}" if kind == "amazon" else f"{title} ({folder})"
        found, source = _locate(folder, data_home, download, label)
        assert found is not None
        folder_path, fname = found, f"{stem}.txt"
    logger.info("loading %s sequences from %s", title, source)
    with _open(folder_path, fname) as f:
        text = f.read().decode("utf-8", errors="replace")
    users, items, positions = _parse_sequences(text, str(folder_path / fname))
    X = Interactions.from_arrays(users, items, None, positions, duplicates="keep")
    feats = None
    attr_name = fname.removesuffix(".txt") + "_item2attributes.json"
    if _exists(folder_path, attr_name):
        with _open(folder_path, attr_name) as f:
            try:
                attrs = json.loads(f.read().decode("utf-8"))
            except ValueError as exc:
                raise DataError(f"{folder_path / attr_name} is not valid JSON: {exc}") from exc
        if not isinstance(attrs, dict):
            raise DataError(f"{folder_path / attr_name} must map item ids to attribute "
                            f"lists, got {type(attrs).__name__}")
        lists = [attrs.get(str(i), []) for i in X.item_vocab.ids]
        feats = ItemFeatures(X.item_vocab, multi_hot={"attributes": lists})
    desc = _sequence_description(title, kind, X, feats)
    lic = {"amazon": _BEAUTY_LICENSE, "yelp": _YELP_LICENSE}.get(kind, _PATH_LICENSE)
    return Dataset(folder or title, X, feats, None, desc, lic, item_titles=None, source=source)


def _sequence_description(title: str, kind: str, X: Interactions,
                          feats: ItemFeatures | None) -> str:
    origin = {"amazon": f"{title} (S3Rec/ICLRec preprocessing of the 2014 Amazon reviews, "
                        f"5-core)",
              "yelp": "Yelp (ICLRec preprocessing of the Yelp Open Dataset)"}.get(
        kind, f"{title} (a file in the S3Rec/ICLRec sequence format)")
    n_attr = 0 if feats is None else feats.multi_hot["attributes"][1].size
    return (f"{origin}: {X.nnz:,} interactions of {X.n_users:,} users with {X.n_items:,} "
            f"items, as chronological sequences. No ratings and no real timestamps: the "
            f"timestamp of a row is its position in the user's sequence. "
            + (f"Items have {n_attr} multi-hot attributes; " if feats is not None else "")
            + "no item text. Standard protocol: leave_last_out (last item test, "
              "second-to-last validation).")


# -- synthetic -------------------------------------------------------------------------
_CONSONANTS = list("bdfgklmnprstvz")
_VOWELS = list("aeiou")


def _pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct made-up words of 2-3 consonant-vowel syllables."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(_CONSONANTS[int(rng.integers(len(_CONSONANTS)))]
                    + _VOWELS[int(rng.integers(len(_VOWELS)))] for _ in range(k))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def make_synthetic(n_users: int = 1000, n_items: int = 500, density: float = 0.02,
                   n_factors: int = 8, *, seed: Any = None, with_text: bool = True,
                   with_timestamps: bool = True) -> Dataset:
    """Implicit feedback with planted low-rank (cluster) structure and popularity skew.

    The generative model:

    * items are split evenly at random into ``n_factors`` clusters; item ``i`` has factor
      vector ``e_{c_i}`` (one-hot of its cluster) and a log-normal popularity ``p_i``;
    * user ``u`` has factors ``theta_u ~ Dirichlet(0.3)`` (mostly one or two clusters) and
      a log-normal activity; the number of interactions is proportional to it, with mean
      ``density * n_items`` (at least 1, at most half the items);
    * each interaction picks a cluster ``k ~ theta_u`` and an item of ``k`` with
      probability ``p_i / sum_{j in k} p_j``, i.e. ``P(i | u) ∝ (theta_u · e_{c_i})
      p_i / Z_{c_i}`` -- increasing with the user-item dot product;
    * repeated (user, item) draws are merged and re-drawn (a few rounds), so ``nnz`` is
      close to, and at most, the planted counts.

    Sampling is vectorised (two ``searchsorted`` calls per round), so 10^7 interactions
    take seconds and a few hundred MB.

    Parameters
    ----------
    n_users, n_items : int
    density : float, default 0.02
        Target fraction of the user x item matrix that is filled, in (0, 0.5].
    n_factors : int, default 8
        Number of latent clusters (rank of the planted structure), <= n_items.
    seed : int, numpy Generator or None
        Everything is drawn from ``np.random.default_rng(seed)``.
    with_text : bool, default True
        Give every item a text made of 5 words from its cluster's own 12-word vocabulary
        and 2 words from a shared vocabulary, e.g. ``"kadomi rupe kadomi selu navo tibe
        molu"``, so a text encoder can recover the clusters.
    with_timestamps : bool, default True
        Give rows unix-second timestamps drawn uniformly over one year from 2020-01-01.

    Returns
    -------
    Dataset
        Raw ids are ``0..n_users-1`` and ``0..n_items-1`` (every item is in the vocabulary,
        even if never sampled). ``metadata`` holds the truth: ``item_cluster`` (int array),
        ``user_factors`` (``theta``, float array ``[n_users, n_factors]``),
        ``item_popularity`` and ``cluster_words``.
    """
    n_users = check_int("n_users", n_users, low=1)
    n_items = check_int("n_items", n_items, low=1)
    n_factors = check_int("n_factors", n_factors, low=1, high=n_items)
    density = check_number("density", density, low=0.0, high=0.5, low_inclusive=False)
    rng = np.random.default_rng(seed)  # one stream, drawn in this order by the steps below
    K = n_factors
    item_cluster, pop, theta, target = _planted_structure(rng, n_users, n_items, K, density)
    users, items = _sample_interactions(rng, item_cluster, pop, theta, target)
    ts = None
    if with_timestamps:
        users, items, ts = _synthetic_timestamps(rng, users, items)
    X = Interactions(users, items, IdVocab(np.arange(n_users), name="user"),
                     IdVocab(np.arange(n_items), name="item"), None, ts, _sorted=True)
    cluster_words, feats = _synthetic_text(rng, X.item_vocab, item_cluster, K, with_text)
    desc = (f"Synthetic implicit feedback: {X.nnz:,} interactions of {n_users:,} users with "
            f"{n_items:,} items in {K} planted clusters (user preferences Dirichlet(0.3), "
            f"log-normal item popularity and user activity); density {X.nnz / (n_users * n_items):.4f}"
            + ("; item text from cluster-specific words" if with_text else "")
            + ("; uniform random timestamps over 2020" if with_timestamps else "") + ".")
    meta = {"item_cluster": item_cluster, "user_factors": theta, "item_popularity": pop,
            "cluster_words": cluster_words, "seed": seed if isinstance(seed, int) else None}
    return Dataset("synthetic", X, feats, None, desc, "Generated data: no restrictions (CC0).",
                   item_titles=None, source="generated", metadata=meta)


def _planted_structure(rng: np.random.Generator, n_users: int, n_items: int, K: int,
                       density: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Item clusters and popularity, user preferences ``theta`` and interaction counts."""
    item_cluster = rng.permutation(np.arange(n_items) % K)
    pop = rng.lognormal(0.0, 1.0, size=n_items)
    theta = rng.dirichlet(np.full(K, 0.3), size=n_users)
    activity = rng.lognormal(0.0, 0.8, size=n_users)
    max_per_user = max(1, n_items // 2)
    target = np.clip(np.round(activity / activity.mean() * density * n_items), 1,
                     max_per_user).astype(np.int64)
    return item_cluster, pop, theta, target


def _sample_interactions(rng: np.random.Generator, item_cluster: np.ndarray, pop: np.ndarray,
                         theta: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs, ``target[u]`` per user at most, sorted by user then item.

    Each draw picks a cluster ``k ~ theta_u``, then an item of ``k`` in proportion to its
    popularity; repeats are merged and the shortfall re-drawn (four rounds at most).
    """
    n_users, K = theta.shape
    n_items = len(item_cluster)
    # per-user cluster CDFs, shifted by the user index; per-cluster item CDFs, by cluster
    user_cdf = (np.cumsum(theta, axis=1) + np.arange(n_users)[:, None]).ravel()
    user_cdf[K - 1::K] = np.arange(1, n_users + 1)  # exact right edges
    by_cluster = np.argsort(item_cluster, kind="stable")
    sizes = np.bincount(item_cluster, minlength=K)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    cl = item_cluster[by_cluster]
    cum0 = np.r_[0.0, np.cumsum(pop[by_cluster])]
    lo, hi = cum0[starts], cum0[starts + sizes]
    item_cdf = (cum0[1:] - lo[cl]) / (hi - lo)[cl] + cl
    item_cdf[starts + sizes - 1] = np.arange(1, K + 1)  # exact right edges

    def draw(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        k = np.searchsorted(user_cdf, users + rng.random(len(users)), side="right")
        k = np.minimum(k, len(user_cdf) - 1) - users * K
        pos = np.searchsorted(item_cdf, k + rng.random(len(users)), side="right")
        pos = np.minimum(pos, n_items - 1)
        return users, by_cluster[pos]

    keys = np.empty(0, dtype=np.int64)
    need = target.copy()
    for _ in range(4):
        u, i = draw(need)
        keys = np.concatenate([keys, u * n_items + i])
        keys.sort(kind="stable")  # sort-based dedup: much faster than np.unique's hashing at 10^7 rows
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        have = np.bincount(keys // n_items, minlength=n_users)
        need = np.maximum(target - have, 0)
        if not need.any():
            break
    # each round draws only the shortfall: never above target
    return keys // n_items, keys % n_items


def _synthetic_timestamps(rng: np.random.Generator, users: np.ndarray, items: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform unix-second times over 2020; rows reordered as Interactions keeps them."""
    offset = rng.integers(0, 365 * 86_400, size=len(users))  # < 2**25
    # the order Interactions keeps (user, time, then input order), by one int64 sort
    order = np.argsort((users << 25) | offset, kind="stable")
    return users[order], items[order], 1_577_836_800 + offset[order]


def _synthetic_text(rng: np.random.Generator, item_vocab: IdVocab, item_cluster: np.ndarray,
                    K: int, with_text: bool) -> tuple[np.ndarray, ItemFeatures | None]:
    """Each cluster's 12 words and, with ``with_text``, 7-word item texts (5 from the
    item's cluster, 2 shared, shuffled)."""
    n_items = len(item_cluster)
    words_per_cluster, n_shared = 12, 30
    vocab_words = _pseudo_words(K * words_per_cluster + n_shared, rng)
    cluster_words = np.asarray(vocab_words[:K * words_per_cluster], dtype=object).reshape(
        K, words_per_cluster)
    shared = np.asarray(vocab_words[K * words_per_cluster:], dtype=object)
    if not with_text:
        return cluster_words, None
    cw = cluster_words[item_cluster[:, None], rng.integers(0, words_per_cluster, (n_items, 5))]
    sw = shared[rng.integers(0, n_shared, (n_items, 2))]
    allw = np.concatenate([cw, sw], axis=1)
    order = np.argsort(rng.random(allw.shape), axis=1)
    allw = np.take_along_axis(allw, order, axis=1)
    return cluster_words, ItemFeatures(item_vocab, text=[" ".join(row) for row in allw])

