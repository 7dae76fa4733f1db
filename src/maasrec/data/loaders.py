"""Loaders for a user's own files: interactions (CSV/TSV/Parquet) and item side information.

:func:`load_interactions` reads ``user item [rating] [timestamp]`` tables with a header
(columns found by their common names, or named by the caller) or without one (columns
taken in that order), checks them as the MovieLens loaders are checked, and returns a
:class:`~maasrec.data.datasets.Dataset`. :func:`load_item_features` reads an item table
(title, genres, ...) into :class:`~maasrec.data.ItemFeatures` aligned to a vocabulary.

Every problem with a file is a :class:`~maasrec.exceptions.DataError` naming the file and
what to pass instead: a missing column (with the columns found), a wrong separator (one
column found), a rating that is not a number (with its row and value), missing ids,
duplicate (user, item) rows (with their rows and the ``duplicates=`` choices), an empty
file.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError
from .features import ItemFeatures
from .interactions import Interactions
from .vocab import IdVocab

__all__ = ["COLUMN_NAMES", "load_interactions", "load_item_features", "read_table"]

#: Column names recognised without being named, by role, in order of preference; matched
#: ignoring case, ``_``, ``-``, ``.`` and spaces (``user_id`` = ``userId`` = ``UserID``).
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "uid", "u", "user_name", "username", "customer_id",
             "customer", "visitor_id", "reviewer_id", "member_id", "account_id", "session_id"),
    "item": ("item", "item_id", "iid", "i", "movie_id", "movie", "artist_id", "artist",
             "track_id", "track", "song_id", "song", "product_id", "product", "asin",
             "book_id", "isbn", "business_id", "article_id", "video_id", "content_id",
             "anime_id", "game_id", "recipe_id"),
    "rating": ("rating", "ratings", "weight", "score", "count", "plays", "play_count",
               "playcount", "value", "stars", "clicks", "quantity", "implicit"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "unix_review_time",
                  "unix_time", "event_time", "created_at"),
}
_OPTION = {"user": "user_col", "item": "item_col", "rating": "rating_col",
           "timestamp": "timestamp_col"}
_CLI = {"user": "--user-col", "item": "--item-col", "rating": "--rating-col",
        "timestamp": "--timestamp-col"}
_SEPARATORS = (",", "\t", ";", "|", " ")
_SEP_NAMES = {",": "','", "\t": "'\\t' (tab)", ";": "';'", "|": "'|'", " ": "' ' (space)",
              "::": "'::'"}
_DUPLICATES = ("raise", "last", "first", "sum", "mean", "max", "keep")


def _norm(name: Any) -> str:
    return re.sub(r"[\s_.\-]", "", str(name)).lower()


def _sep_name(sep: str | None) -> str:
    return _SEP_NAMES.get(sep, repr(sep)) if sep is not None else "None"


# -- reading the table -------------------------------------------------------------------
def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq", ".parq"))


def _head_text(path: Path, n_bytes: int = 65536) -> str:
    """The first ``n_bytes`` of a (possibly compressed) text file, decoded leniently."""
    import bz2
    import gzip
    import lzma

    low = path.name.lower()
    opener = (gzip.open if low.endswith(".gz") else bz2.open if low.endswith(".bz2")
              else lzma.open if low.endswith((".xz", ".lzma")) else open)
    try:
        with opener(path, "rb") as f:
            raw = f.read(n_bytes)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return raw.decode("utf-8", errors="replace")


def _guess_sep(path: Path, head: str) -> str:
    """The separator of a delimited text file: by extension, else by sniffing its head."""
    low = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zip"):
        low = low.removesuffix(suffix)
    if low.endswith((".tsv", ".tab")):
        return "\t"
    lines = [ln for ln in head.splitlines()[:50] if ln.strip()]
    if lines and all("::" in ln for ln in lines[:20]):
        return "::"  # MovieLens 1M style
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters="".join(_SEPARATORS)).delimiter
    except csv.Error:
        counts = {s: sum(ln.count(s) for ln in lines[:50]) for s in _SEPARATORS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_table(path: str | os.PathLike, sep: str | None = None, header: bool | None = None,
               *, names: Sequence[str] = ("user", "item", "rating", "timestamp")
               ) -> tuple[pd.DataFrame, dict]:
    """Read a CSV, TSV or Parquet file into a frame of strings/numbers, checked for shape.

    Parameters
    ----------
    path : str or path-like
        ``.parquet`` (needs ``pyarrow``), else delimited text (``.gz``/``.bz2``/``.xz``
        compressed too).
    sep : str, optional
        The separator; None: tab for ``.tsv``/``.tab``, else sniffed among ``,`` tab
        ``;`` ``|`` space and ``::``.
    header : bool, optional
        Whether the first line names the columns; None: it does unless every field of
        the first line is a number.
    names : sequence of str
        Names of the columns of a file without a header, in order.

    Returns
    -------
    frame : pandas.DataFrame
    info : dict
        ``{"sep": ..., "header": ...}`` as used.

    Raises
    ------
    DataError
        Missing or unreadable file, empty file, header without rows, a separator that
        yields a single column (the message names the separator the file seems to use),
        rows with more fields than the header, Parquet without ``pyarrow``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"no such file: {p}" + (" (it is a folder)" if p.is_dir() else ""))
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty: at least one (user, item) row is needed")
    if _is_parquet(p):
        if importlib.util.find_spec("pyarrow") is None:
            raise DataError(f"reading the Parquet file {p} needs pyarrow, which is not "
                            f"installed: pip install pyarrow (or save the table as CSV)")
        try:
            df = pd.read_parquet(p, engine="pyarrow")
        except Exception as exc:  # pyarrow raises its own error types
            raise DataError(f"cannot read the Parquet file {p}: {exc}") from exc
        if len(df) == 0:
            raise DataError(f"{p} holds no rows: at least one (user, item) row is needed")
        return df, {"sep": None, "header": True}
    head = _head_text(p)
    if not head.strip():
        raise DataError(f"{p} is empty: at least one (user, item) row is needed")
    guessed = sep is None
    if guessed:
        sep = _guess_sep(p, head)
    elif not isinstance(sep, str) or not sep:
        raise DataError(f"sep must be a non-empty string, got {sep!r}")
    first = next(ln for ln in head.splitlines() if ln.strip())
    if header is None:
        fields = [f.strip().strip('"') for f in first.split(sep)]
        header = not all(_looks_numeric(f) for f in fields if f) or len(fields) < 2
    engine = "python" if len(sep) > 1 else "c"
    try:
        df = pd.read_csv(p, sep=sep, header=0 if header else None, engine=engine,
                         skipinitialspace=sep != " ", dtype=str if not header else None,
                         keep_default_na=True)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p} is empty: at least one (user, item) row is needed") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise DataError(f"cannot parse {p} with separator {_sep_name(sep)}: {msg}; check "
                        f"the separator (sep=...) and that every row has the same number "
                        f"of fields") from exc
    if df.shape[1] < 2:
        counts = {s: first.count(s) for s in (*_SEPARATORS, "::") if s != sep}
        seems = max(counts, key=counts.get)
        hint = (f"; the first line looks separated by {_sep_name(seems)}: pass "
                f"sep={seems!r}" if counts[seems] else "")
        how = "guessed" if guessed else "given"
        raise DataError(f"{p}: only one column found ({next(iter(df.columns))!r}) with the "
                        f"{how} separator {_sep_name(sep)}; a (user, item) table needs at "
                        f"least two columns{hint} (maasrec fit: --sep)")
    if not header:
        if df.shape[1] > len(names):
            raise DataError(f"{p} has no header and {df.shape[1]} columns; without a header "
                            f"the columns are read as {list(names)}: add a header line "
                            f"naming them, or pass header=True")
        df.columns = list(names[:df.shape[1]])
    if len(df) == 0:
        raise DataError(f"{p} has a header ({list(df.columns)}) but no rows")
    return df, {"sep": sep, "header": bool(header)}


# -- columns -----------------------------------------------------------------------------
def _find_column(df: pd.DataFrame, given: str | None, role: str, source: str,
                 required: bool, taken: set[str]) -> str | None:
    cols = [str(c) for c in df.columns]
    if given is not None:
        if given in cols:
            return given
        lower = [c for c in cols if _norm(c) == _norm(given)]
        if len(lower) == 1:
            return lower[0]
        raise DataError(f"{source}: {role} column {given!r} not found; the columns are "
                        f"{cols}")
    by_norm: dict[str, str] = {}
    for c in cols:
        by_norm.setdefault(_norm(c), c)
    for cand in COLUMN_NAMES[role]:
        c = by_norm.get(_norm(cand))
        if c is not None and c not in taken:
            return c
    if required:
        raise DataError(f"{source}: no {role} column found among the columns {cols}; pass "
                        f"{_OPTION[role]}='...' ({_CLI[role]} on the command line). Names "
                        f"recognised: {', '.join(COLUMN_NAMES[role][:8])}...")
    return None


def _row_label(df: pd.DataFrame, pos: int, header: bool | None) -> str:
    line = pos + 1 + (1 if header else 0)
    return f"row {pos + 1}" + (f" (line {line})" if header is not None else "")


def _check_ids(df: pd.DataFrame, col: str, role: str, source: str, header: bool | None) -> None:
    missing = df[col].isna().to_numpy()
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        raise DataError(f"{source}: {role} column {col!r} is empty on "
                        f"{_row_label(df, pos, header)} ({int(missing.sum())} empty in all); "
                        f"drop those rows")


def _numeric_column(df: pd.DataFrame, col: str, role: str, source: str,
                    header: bool | None) -> np.ndarray:
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) | ~np.isfinite(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: {role} column {col!r} holds a value that is not a finite "
                        f"number on {_row_label(df, pos, header)}: {_plain(raw.iloc[pos])!r} "
                        f"({int(bad.sum())} such value(s)); fix or drop those rows, or pass "
                        f"{_OPTION[role]}= another column")
    return values


def _timestamps(df: pd.DataFrame, col: str, source: str, header: bool | None) -> np.ndarray:
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    if not num.isna().any():
        arr = num.to_numpy()
        return arr if arr.dtype.kind in "iu" or not np.all(arr == np.round(arr)) else \
            arr.astype(np.int64)
    try:
        dates = pd.to_datetime(raw, errors="coerce", format="mixed")
    except (TypeError, ValueError):
        dates = pd.Series(pd.NaT, index=raw.index)
    bad = dates.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: timestamp column {col!r} holds a value that is neither a "
                        f"number nor a date on {_row_label(df, pos, header)}: "
                        f"{raw.iloc[pos]!r}; fix those rows or pass timestamp_col= another "
                        f"column")
    return dates.to_numpy()


def _ids(series: pd.Series) -> np.ndarray:
    """Raw ids: int64 when every id is an integer, else strings."""
    if series.dtype.kind in "iu":
        return series.to_numpy(dtype=np.int64)
    if series.dtype.kind == "f":
        arr = series.to_numpy()
        if np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
    as_int = pd.to_numeric(series, errors="coerce")
    if not as_int.isna().any() and np.all(as_int == np.round(as_int)) and \
            series.astype(str).str.fullmatch(r"\s*[+-]?\d+\s*").all():
        return as_int.to_numpy().astype(np.int64)
    return series.astype(str).str.strip().to_numpy(dtype=object)


def _check_duplicates(users: np.ndarray, items: np.ndarray, policy: str, source: str,
                      df: pd.DataFrame, header: bool | None) -> None:
    if policy != "raise":
        return
    key = pd.MultiIndex.from_arrays([users, items])
    dup = key.duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup)
        u, i = users[rows[0]], items[rows[0]]
        same = rows[(users[rows] == u) & (items[rows] == i)][:2]
        where = " and ".join(_row_label(df, int(r), header) for r in same)
        raise DataError(
            f"{source}: user {_plain(u)!r} and item {_plain(i)!r} appear more than once "
            f"({where}; {int(key.duplicated().sum())} repeated row(s) in all); choose what "
            f"a repeat means: duplicates='sum' (add the ratings, e.g. play counts), 'last', "
            f"'first', 'mean', 'max', or 'keep' (an event log for sequential models) "
            f"(maasrec fit: --duplicates)")


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


# -- the loaders -------------------------------------------------------------------------
def load_interactions(path: str | os.PathLike, user_col: str | None = None,
                      item_col: str | None = None, rating_col: str | None = None,
                      timestamp_col: str | None = None, sep: str | None = None, *,
                      header: bool | None = None, duplicates: str = "raise",
                      user_vocab: IdVocab | None = None, item_vocab: IdVocab | None = None,
                      unknown: str = "raise", name: str | None = None):
    """Load ``user item [rating] [timestamp]`` interactions from a CSV, TSV or Parquet file.

    Parameters
    ----------
    path : str or path-like
        A delimited text file (``.csv``, ``.tsv``, ``.txt``, ``.dat``, optionally
        ``.gz``/``.bz2``/``.xz``) or a ``.parquet`` file (needs ``pyarrow``).
    user_col, item_col : str, optional
        Column names; None finds a common name (:data:`COLUMN_NAMES`, matched ignoring
        case and ``_``: ``user``, ``userId``, ``user_id``, ``userID``...; ``item``,
        ``itemId``, ``movieId``, ``artistID``, ``product_id``, ``asin``...).
    rating_col, timestamp_col : str, optional
        Optional columns; None finds ``rating``/``weight``/``score``/``count``/``plays``...
        and ``timestamp``/``time``/``ts``/``date``... when present. Timestamps are numbers
        or dates.
    sep : str, optional
        The separator; None: tab for ``.tsv``, else sniffed (``,`` tab ``;`` ``|`` space
        ``::``).
    header : bool, optional
        None: the file has a header unless its first line is all numbers; a file without
        a header is read as ``user item [rating] [timestamp]`` in that order.
    duplicates : {"raise", "sum", "last", "first", "mean", "max", "keep"}, default "raise"
        What a repeated (user, item) row means: an error naming the rows, or how to merge
        them (``"keep"`` keeps every row, e.g. an event log for sequential models).
    user_vocab, item_vocab : IdVocab, optional
        Map ids through these vocabularies (e.g. a fitted model's ``user_vocab_``).
    unknown : {"raise", "ignore"}, default "raise"
        With vocabularies: an error for an id outside them, or drop those rows.
    name : str, optional
        The data set's name (default: the file name without extensions).

    Returns
    -------
    Dataset
        ``interactions`` (ratings and timestamps when the file has them), ``source`` the
        file, ``metadata``: ``columns`` (role -> column used), ``sep``, ``header``.

    Raises
    ------
    DataError
        A missing file or column (the message lists the columns found and the option to
        pass), a separator that finds one column, a rating that is not a number or an
        empty id (naming the row and value), duplicate rows with ``duplicates="raise"``,
        an empty file, Parquet without ``pyarrow``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from maasrec.data.loaders import load_interactions
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "plays.csv"
    >>> _ = f.write_text("userID,artistID,weight\\n2,51,13883\\n2,52,11690\\n3,51,228\\n")
    >>> ds = load_interactions(f)
    >>> ds.metadata["columns"]
    {'user': 'userID', 'item': 'artistID', 'rating': 'weight', 'timestamp': None}
    >>> ds.interactions.nnz
    3
    """
    from .datasets import Dataset

    if duplicates not in _DUPLICATES:
        raise DataError(f"duplicates={duplicates!r} is not one of {list(_DUPLICATES)}")
    p = Path(path).expanduser()
    df, info = read_table(p, sep, header)
    source = str(p)
    hdr = info["header"] if info["sep"] is not None else None
    taken: set[str] = set()
    cols: dict[str, str | None] = {}
    for role, given, required in (("user", user_col, True), ("item", item_col, True),
                                  ("rating", rating_col, False),
                                  ("timestamp", timestamp_col, False)):
        c = _find_column(df, given, role, source, required, taken)
        if c is not None and c in taken:
            raise DataError(f"{source}: column {c!r} cannot be both the {role} and another "
                            f"column; the columns are {[str(x) for x in df.columns]}")
        cols[role] = c
        if c is not None:
            taken.add(c)
    for role in ("user", "item"):
        _check_ids(df, cols[role], role, source, hdr)
    users, items = _ids(df[cols["user"]]), _ids(df[cols["item"]])
    values = (_numeric_column(df, cols["rating"], "rating", source, hdr)
              if cols["rating"] else None)
    ts = _timestamps(df, cols["timestamp"], source, hdr) if cols["timestamp"] else None
    _check_duplicates(users, items, duplicates, source, df, hdr)
    X = Interactions.from_arrays(users, items, values, ts,
                                 duplicates="keep" if duplicates == "raise" else duplicates,
                                 user_vocab=user_vocab, item_vocab=item_vocab, unknown=unknown)
    label = name or p.name.split(".")[0]
    used = ", ".join(f"{r}={c!r}" for r, c in cols.items() if c)
    desc = (f"{X.nnz:,} interactions of {X.n_users:,} users with {X.n_items:,} items read "
            f"from {p.name} ({used}"
            + (f"; separator {_sep_name(info['sep'])}" if info["sep"] else "") + ").")
    return Dataset(label, X, description=desc, license="the file's own terms",
                   source=source, metadata={"columns": cols, **info})


def load_item_features(path: str | os.PathLike, vocab: IdVocab | None = None, *,
                       item_col: str | None = None, text_cols: Sequence[str] | str | None = None,
                       categorical: Sequence[str] | str | None = None,
                       multi_hot: Sequence[str] | str | None = None,
                       numeric: Sequence[str] | str | None = None, sep: str | None = None,
                       label_sep: str = "|") -> tuple[ItemFeatures, pd.Series | None]:
    """Load an item table (one row per item) as :class:`ItemFeatures` and titles.

    Parameters
    ----------
    path : str or path-like
        CSV/TSV/Parquet with a header, e.g. ``movieId,title,genres``.
    vocab : IdVocab, optional
        Align the rows to this vocabulary (e.g. ``interactions.item_vocab``); items
        missing from the file get no text/labels.
    item_col : str, optional
        The id column; None finds a common item column name.
    text_cols : str or sequence of str, optional
        Columns joined into each item's text (``"title. genres"``, empty values skipped);
        None: ``title``/``name``/``description`` columns when present.
    categorical, multi_hot, numeric : str or sequence of str, optional
        Further columns; ``multi_hot`` values are split on ``label_sep``.
    sep : str, optional
        As in :func:`load_interactions`.
    label_sep : str, default "|"

    Returns
    -------
    features : ItemFeatures
    titles : pandas.Series or None
        The first text column by item id (for printing recommendations).

    Raises
    ------
    DataError
        Missing file or columns (listing the columns found), duplicated item ids, no text
        column found when none was named and no other feature was asked for.
    """
    p = Path(path).expanduser()
    df, _ = read_table(p, sep, True)
    source = str(p)
    ic = _find_column(df, item_col, "item", source, True, set())
    cols = [str(c) for c in df.columns]

    def as_list(v: Any) -> list[str]:
        if v is None:
            return []
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else list(v)

    text = as_list(text_cols)
    if text_cols is None:
        text = [c for c in cols if _norm(c) in ("title", "name", "description", "text")]
    extra = as_list(categorical) + as_list(multi_hot) + as_list(numeric)
    for c in text + extra:
        if c not in cols:
            raise DataError(f"{source}: column {c!r} not found; the columns are {cols}")
    if not text and not extra:
        raise DataError(f"{source}: no text column found (looked for title, name, "
                        f"description, text) among {cols}; pass text_cols=... "
                        f"(--text-cols on the command line)")
    frame = pd.DataFrame({"item": _ids(df[ic])})
    if text:
        parts = df[text].astype("string").fillna("")
        frame["text"] = [". ".join(v for v in row if v.strip()) or None
                         for row in parts.itertuples(index=False)]
    for c in as_list(categorical):
        frame[c] = df[c].astype(str)
    for c in as_list(multi_hot):
        frame[c] = [[s for s in str(v).split(label_sep) if s] if pd.notna(v) else []
                    for v in df[c]]
    for c in as_list(numeric):
        frame[c] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
    feats = ItemFeatures.from_pandas(
        frame, "item", text="text" if text else None,
        categorical=as_list(categorical) or None,
        multi_hot={c: label_sep for c in as_list(multi_hot)} or None,
        numeric=as_list(numeric) or None, vocab=vocab)
    titles = None
    if text:
        titles = pd.Series(df[text[0]].astype(str).to_numpy(),
                           index=pd.Index(frame["item"].to_numpy(), name="item"), name="title")
    return feats, titles
