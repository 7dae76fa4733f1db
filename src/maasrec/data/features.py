"""Side information for items and users, aligned to an :class:`IdVocab`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import DataError
from .vocab import IdVocab

__all__ = ["Features", "ItemFeatures", "UserFeatures"]


def _as_list(cols: str | Sequence[str] | None) -> list[str]:
    if cols is None:
        return []
    if isinstance(cols, str):
        return [cols]
    return list(cols)


class Features:
    """Per-entity side information: text, categorical, multi-hot, numeric, vectors.

    Every block has one row per id in :attr:`vocab`. Rows for ids without data are
    marked missing (``text_mask`` False, categorical code -1, numeric NaN, vector
    mask False), so encoders can mask them instead of guessing.

    Parameters
    ----------
    vocab : IdVocab
        The ids, in row order.
    text : sequence of str or None, optional
        One text per id (None/NaN for missing).
    categorical : dict of str -> array-like, optional
        One category label per id (None/NaN for missing).
    multi_hot : dict of str -> sequence of sequences, optional
        A list of labels per id (e.g. genres).
    numeric : dict of str -> array-like of float, optional
        One number per id (NaN for missing).
    vectors : dict of str -> array-like, shape (n, d), optional
        Precomputed embeddings (e.g. of images); rows of NaN are missing.

    Attributes
    ----------
    text : np.ndarray of object or None
        Texts (``""`` where missing).
    text_mask : np.ndarray of bool or None
    categorical : dict of str -> (np.ndarray of int64 codes, np.ndarray of labels)
    multi_hot : dict of str -> (scipy.sparse.csr_matrix, np.ndarray of labels)
    numeric : dict of str -> np.ndarray of float32
    vectors : dict of str -> np.ndarray of float32
    """

    kind = "entity"

    def __init__(self, vocab: IdVocab, text=None, categorical: Mapping[str, Any] | None = None,
                 multi_hot: Mapping[str, Any] | None = None,
                 numeric: Mapping[str, Any] | None = None,
                 vectors: Mapping[str, Any] | None = None):
        if not isinstance(vocab, IdVocab):
            vocab = IdVocab(vocab, name=self.kind)
        self.vocab = vocab
        n = len(vocab)
        self.text = None
        self.text_mask = None
        if text is not None:
            t = pd.Series(list(text), dtype=object)
            if len(t) != n:
                raise DataError(f"text has {len(t)} entries for {n} ids")
            mask = ~t.isna().to_numpy() & (t.astype(str).str.strip() != "").to_numpy()
            self.text = np.where(mask, t.astype(str).to_numpy(), "").astype(object)
            self.text_mask = mask
        self.categorical: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, col in (categorical or {}).items():
            s = pd.Series(list(col), dtype=object)
            if len(s) != n:
                raise DataError(f"categorical feature {name!r} has {len(s)} entries for {n} ids")
            codes, labels = pd.factorize(s, sort=True, use_na_sentinel=True)
            self.categorical[name] = (codes.astype(np.int64), np.asarray(labels, dtype=object))
        self.multi_hot: dict[str, tuple[sp.csr_matrix, np.ndarray]] = {}
        for name, col in (multi_hot or {}).items():
            lists = list(col)
            if len(lists) != n:
                raise DataError(f"multi-hot feature {name!r} has {len(lists)} entries for {n} ids")
            lists = [[] if (x is None or (isinstance(x, float) and np.isnan(x))) else list(x)
                     for x in lists]
            labels = np.asarray(sorted({str(v) for row in lists for v in row}), dtype=object)
            pos = {v: j for j, v in enumerate(labels)}
            indptr = np.cumsum([0] + [len(set(map(str, row))) for row in lists])
            indices = np.fromiter((pos[v] for row in lists for v in sorted(set(map(str, row)))),
                                  dtype=np.int64, count=int(indptr[-1]))
            m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                              shape=(n, len(labels)))
            self.multi_hot[name] = (m, labels)
        self.numeric: dict[str, np.ndarray] = {}
        for name, col in (numeric or {}).items():
            try:
                a = np.asarray(pd.to_numeric(pd.Series(list(col)), errors="raise"), dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise DataError(f"numeric feature {name!r} is not numeric: {exc}") from exc
            if a.shape != (n,):
                raise DataError(f"numeric feature {name!r} has shape {a.shape}, expected ({n},)")
            if np.isinf(a).any():
                raise DataError(f"numeric feature {name!r} contains inf")
            self.numeric[name] = a
        self.vectors: dict[str, np.ndarray] = {}
        for name, arr in (vectors or {}).items():
            a = np.asarray(arr, dtype=np.float32)
            if a.ndim != 2 or a.shape[0] != n:
                raise DataError(f"vectors {name!r} must have shape ({n}, d), got {a.shape}")
            self.vectors[name] = a

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_pandas(cls, df: pd.DataFrame, id_col: str, *,
                    text: str | Sequence[str] | Callable[[pd.Series], str] | None = None,
                    categorical: str | Sequence[str] | None = None,
                    multi_hot: Mapping[str, str] | Sequence[str] | str | None = None,
                    numeric: str | Sequence[str] | None = None,
                    vectors: Mapping[str, Any] | None = None,
                    vocab: IdVocab | None = None):
        """Build features from a frame with one row per id.

        Parameters
        ----------
        df : pandas.DataFrame
        id_col : str
            Column holding the raw ids.
        text : str, list of str or callable, optional
            A text column; several columns (joined as ``"col: value. "``); or a function
            of a row returning the text.
        categorical : str or list of str, optional
            Columns with one label per row.
        multi_hot : dict of column -> separator, or list of columns, optional
            Columns holding several labels, either as lists or as strings split on the
            separator (default ``"|"``).
        numeric : str or list of str, optional
            Numeric columns.
        vectors : dict of str -> array (n_rows, d), optional
            Precomputed vectors in the frame's row order.
        vocab : IdVocab, optional
            Align the rows to this vocabulary (ids not in the frame become missing rows;
            rows with ids outside it are dropped). Default: the frame's ids in order.

        Returns
        -------
        Features
        """
        if id_col not in df.columns:
            raise DataError(f"id column {id_col!r} not in the frame; columns are {list(df.columns)}")
        if df[id_col].duplicated().any():
            dup = df.loc[df[id_col].duplicated(), id_col].head(5).tolist()
            raise DataError(f"feature frame has duplicated ids in {id_col!r}: {dup}")
        for c in _as_list(categorical) + _as_list(numeric) + (
                list(multi_hot) if isinstance(multi_hot, (Mapping, list, tuple)) else _as_list(multi_hot)):
            if c not in df.columns:
                raise DataError(f"feature column {c!r} not in the frame; columns are {list(df.columns)}")
        if vocab is None:
            vocab = IdVocab(df[id_col].to_numpy(), name=cls.kind)
            rows = np.arange(len(df))
        else:
            rows = pd.Index(df[id_col].to_numpy()).get_indexer(vocab.ids)
        present = rows >= 0

        def take(values: np.ndarray) -> np.ndarray:
            out = np.empty(len(vocab), dtype=object)
            out[:] = None
            out[present] = values[rows[present]]
            return out

        text_values = None
        if text is not None:
            if callable(text):
                tv = np.asarray([text(r) for _, r in df.iterrows()], dtype=object)
            else:
                cols = _as_list(text)
                for c in cols:
                    if c not in df.columns:
                        raise DataError(f"text column {c!r} not in the frame; columns are {list(df.columns)}")
                if len(cols) == 1:
                    tv = df[cols[0]].to_numpy(dtype=object)
                else:
                    tv = np.asarray([
                        ". ".join(f"{c}: {r[c]}" for c in cols if pd.notna(r[c]) and str(r[c]) != "")
                        for _, r in df[cols].iterrows()], dtype=object)
            text_values = take(tv)
        cat = {c: take(df[c].to_numpy(dtype=object)) for c in _as_list(categorical)}
        mh: dict[str, Any] = {}
        if multi_hot is not None:
            spec = multi_hot if isinstance(multi_hot, Mapping) else {c: "|" for c in _as_list(multi_hot)}
            for c, sep in spec.items():
                col = df[c].to_numpy(dtype=object)
                lists = np.empty(len(col), dtype=object)
                lists[:] = [
                    [] if v is None or (isinstance(v, float) and np.isnan(v))
                    else ([s for s in str(v).split(sep) if s] if isinstance(v, str) else list(v))
                    for v in col]
                vals = take(lists)
                mh[c] = [[] if v is None else v for v in vals]
        num = {}
        for c in _as_list(numeric):
            try:
                v = pd.to_numeric(df[c], errors="raise").to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"numeric feature column {c!r} is not numeric: {exc}") from exc
            out = np.full(len(vocab), np.nan)
            out[present] = v[rows[present]]
            num[c] = out
        vec = {}
        for name, arr in (vectors or {}).items():
            a = np.asarray(arr, dtype=np.float32)
            if a.ndim != 2 or a.shape[0] != len(df):
                raise DataError(f"vectors {name!r} must have shape ({len(df)}, d), got {a.shape}")
            out = np.full((len(vocab), a.shape[1]), np.nan, dtype=np.float32)
            out[present] = a[rows[present]]
            vec[name] = out
        return cls(vocab, text=text_values, categorical=cat, multi_hot=mh, numeric=num, vectors=vec)

    # -- alignment --------------------------------------------------------------
    def align(self, vocab: IdVocab) -> Features:
        """Reorder (and pad) every block to ``vocab``'s order.

        Ids of ``vocab`` absent here become missing rows; ids here but not in ``vocab``
        are dropped.

        Parameters
        ----------
        vocab : IdVocab

        Returns
        -------
        Features
            ``self`` when the vocabularies are already equal.
        """
        if vocab == self.vocab:
            return self
        if len(self.vocab) == 0:
            raise DataError("cannot align features that have no rows")
        rows = self.vocab.index(vocab.ids, unknown="ignore")
        present = rows >= 0
        safe = np.where(present, rows, 0)
        new = object.__new__(type(self))
        new.vocab = vocab
        if self.text is not None:
            new.text = np.where(present, self.text[safe], "").astype(object)
            new.text_mask = present & self.text_mask[safe]
        else:
            new.text, new.text_mask = None, None
        new.categorical = {k: (np.where(present, c[safe], -1), labels)
                           for k, (c, labels) in self.categorical.items()}
        new.multi_hot = {}
        for k, (m, labels) in self.multi_hot.items():
            sel = m[safe].tolil()
            for r in np.flatnonzero(~present):
                sel.rows[r], sel.data[r] = [], []
            new.multi_hot[k] = (sel.tocsr(), labels)
        new.numeric = {k: np.where(present, v[safe], np.nan).astype(np.float32)
                       for k, v in self.numeric.items()}
        new.vectors = {}
        for k, v in self.vectors.items():
            out = v[safe].copy()
            out[~present] = np.nan
            new.vectors[k] = out
        return new

    @property
    def n(self) -> int:
        """int: number of rows (ids)."""
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def has_text(self) -> bool:
        """bool: whether a text block is present."""
        return self.text is not None

    def texts(self) -> list[str]:
        """Texts as a list (``""`` for missing).

        Returns
        -------
        list of str
        """
        return [] if self.text is None else [str(t) for t in self.text]

    def __repr__(self) -> str:
        parts = [f"n={self.n}"]
        if self.text is not None:
            parts.append(f"text ({int(self.text_mask.sum())} present)")
        for label, block in (("categorical", self.categorical), ("multi_hot", self.multi_hot),
                             ("numeric", self.numeric), ("vectors", self.vectors)):
            if block:
                parts.append(f"{label}={list(block)}")
        return f"{type(self).__name__}({', '.join(parts)})"


class ItemFeatures(Features):
    """Item side information (title/description text, genres, year, image vectors...).

    See :class:`Features` for parameters.
    """

    kind = "item"


class UserFeatures(Features):
    """User side information (age, gender, occupation, free-text profile...).

    See :class:`Features` for parameters.
    """

    kind = "user"
