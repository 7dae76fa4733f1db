"""The texts an :class:`~maasrec.lm_ranker.LMRanker` reads: item texts and user profiles."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.features import ItemFeatures, UserFeatures
from ..exceptions import DataError
from .text import profile_text

__all__ = ["item_texts", "user_profiles"]


def item_texts(vocab, item_features: ItemFeatures | None, missing_text: str) -> np.ndarray:
    """The text of every item of ``vocab`` (an object array of str).

    Parameters
    ----------
    vocab : Vocabulary
    item_features : ItemFeatures or None
    missing_text : {"raise", "id"}
        Items without text: a DataError naming them, or ``"item <id>"``.

    Returns
    -------
    np.ndarray of str, shape (len(vocab),)
    """
    texts = np.empty(len(vocab), dtype=object)
    present = np.zeros(len(vocab), dtype=bool)
    if item_features is not None:
        if not isinstance(item_features, ItemFeatures):
            raise DataError(f"item_features must be an ItemFeatures, got "
                            f"{type(item_features).__name__}")
        if item_features.has_text:
            f = item_features.align(vocab)
            texts[:] = f.text
            present = np.asarray(f.text_mask, dtype=bool)
    missing = np.flatnonzero(~present)
    if len(missing):
        if missing_text == "raise":
            where = ("no item_features were given" if item_features is None else
                     "item_features has no text" if not item_features.has_text else
                     f"{len(missing)} of {len(vocab)} items have no text, e.g. ids "
                     f"{vocab.ids[missing[:5]].tolist()}")
            raise DataError(
                f"LMRanker reads item texts but {where}; pass item_features="
                f"ItemFeatures.from_pandas(..., text=...) with a text for every item, or "
                f"missing_text='id' to use 'item <id>' for items without one")
        texts[missing] = [f"item {x}" for x in vocab.ids[missing].tolist()]
    return texts


def user_profiles(user_vocab, user_features: UserFeatures | None,
                  profile_fields: list | tuple | None) -> np.ndarray | None:
    """The profile text of every user of ``user_vocab`` (None without features).

    Parameters
    ----------
    user_vocab : Vocabulary
    user_features : UserFeatures or None
    profile_fields : sequence of str or None
        The feature names shown, in this order (None: all).

    Returns
    -------
    np.ndarray of str or None
    """
    if user_features is None:
        return None
    if not isinstance(user_features, UserFeatures):
        raise DataError(f"user_features must be a UserFeatures, got "
                        f"{type(user_features).__name__}")
    f = user_features.align(user_vocab)
    columns: dict[str, Any] = {}
    if f.text is not None:
        columns["text"] = [t if m else None for t, m in zip(f.text, f.text_mask)]
    for name, values in f.numeric.items():
        columns[name] = [None if v != v else f"{float(v):g}" for v in values]
    for name, (codes, labels) in f.categorical.items():
        columns[name] = [None if c < 0 else str(labels[c]) for c in codes]
    for name, (m, labels) in f.multi_hot.items():
        columns[name] = [", ".join(str(labels[j]) for j in m.indices[m.indptr[r]:m.indptr[r + 1]])
                         or None for r in range(m.shape[0])]
    names = list(columns) if profile_fields is None else list(profile_fields)
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise DataError(f"profile_fields {unknown} are not user features; available: "
                        f"{list(columns)}")
    out = np.empty(len(user_vocab), dtype=object)
    out[:] = [profile_text([(n, columns[n][u]) for n in names if columns[n][u] is not None])
              for u in range(len(user_vocab))]
    return out
