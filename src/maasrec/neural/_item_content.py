"""Item content of :class:`~maasrec.neural.SequentialRecommender`: text and side labels.

- language-model vectors of the item texts (``item_text``), their use as initial item
  embeddings (principal components) and the ridge map from text to trained embeddings
  that embeds items added later;
- the item x label matrix of categorical and multi-hot fields (``item_side="fuse"``);
- the item rows of a network: initialised at fit time, appended by ``add_items``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..data.features import ItemFeatures
from ..exceptions import ColdStartWarning, DataError, ModelFormatError
from .sasrec import INIT_STD, SASRecNetwork

__all__ = ["add_item_content", "append_item_rows", "check_loaded_content",
           "embed_cold_from_text", "fit_content", "init_item_rows", "side_rows", "text_encoder",
           "text_vectors"]


def text_encoder(spec: Any):
    """A :class:`~maasrec.encoders.TextEncoder` from ``text_encoder`` (None: the default)."""
    from ..encoders.text import resolve_text_encoder

    return resolve_text_encoder(spec)


def text_vectors(encoder, features: ItemFeatures | None, vocab, what: str, mode: str,
                 stacklevel: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Text vectors ``[len(vocab), d]`` (zeros where missing) and the has-text mask.

    Warns (:class:`~maasrec.exceptions.ColdStartWarning`) how many items have no text;
    raises a :class:`~maasrec.exceptions.DataError` when none has, or there are no texts
    (``mode`` is the ``item_text`` named in the message). ``stacklevel`` is the
    warning's, counted from here.
    """
    if features is None or not getattr(features, "has_text", False):
        raise DataError(f"item_text={mode!r} needs item_features with text for {what}; got "
                        f"{features!r}")
    f = features.align(vocab)
    mask = np.asarray(f.text_mask, dtype=bool)
    if not mask.any():
        raise DataError(f"none of the {len(vocab)} items of {what} has text")
    texts = [t for t, m in zip(f.texts(), mask) if m]
    vec = np.asarray(encoder.encode(texts), dtype=np.float32)
    out = np.zeros((len(vocab), vec.shape[1]), dtype=np.float32)
    out[mask] = vec
    if (~mask).any():
        warnings.warn(f"{int((~mask).sum())} of {len(vocab)} items of {what} have no text",
                      ColdStartWarning, stacklevel=stacklevel)
    return out, mask


def fit_content(model, data, item_features, stacklevel: int = 4
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Set ``text_dim_``, ``text_map_``, ``side_labels_``, ``side_items_`` of ``model`` at fit
    time; return the text vectors of the training items and their has-text mask (None
    without ``item_text``). ``stacklevel`` is the missing-text warning's, counted from here.
    """
    text = mask = None
    model.text_dim_ = 0
    model.text_map_ = None
    if model.item_text != "none":
        text, mask = text_vectors(model._encoder(), item_features, data.item_vocab, "fit",
                                  model.item_text, stacklevel=stacklevel + 1)
        model.text_dim_ = int(text.shape[1])
    model.side_labels_ = []
    model.side_items_ = None
    if model.item_side == "fuse":
        model.side_items_, model.side_labels_ = side_rows(item_features, data.item_vocab, "fit")
        if not model.side_labels_:
            raise DataError("item_side='fuse': no item of fit has a categorical or "
                            "multi-hot label")
    return text, mask


def side_rows(features: ItemFeatures | None, vocab, what: str,
              labels: list | None = None) -> tuple[sp.csr_matrix, list]:
    """Item x label matrix of the categorical and multi-hot fields of ``features``.

    Labels are ``"<field>=<value>"``; with ``labels`` given (the fitted ones), values
    outside them are ignored (new labels have no learned vector).
    """
    if not (isinstance(features, ItemFeatures)
            and (features.categorical or features.multi_hot)):
        raise DataError(f"item_side='fuse' needs item_features with categorical or "
                        f"multi-hot fields for {what}; got {features!r}")
    f = features.align(vocab)
    rows, keys = [], []
    for name, (codes, values) in f.categorical.items():
        r = np.nonzero(codes >= 0)[0]
        rows.append(r)
        keys += [f"{name}={values[c]}" for c in codes[r]]
    for name, (m, values) in f.multi_hot.items():
        coo = sp.coo_matrix(m)
        rows.append(coo.row.astype(np.int64))
        keys += [f"{name}={values[c]}" for c in coo.col]
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    if labels is None:
        labels = sorted(set(keys))
    index = {k: j for j, k in enumerate(labels)}
    cols = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    keep = cols >= 0
    m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32),
                       (rows[keep], cols[keep])), shape=(len(vocab), len(labels)))
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m, labels


# -- item rows of the network ----------------------------------------------------------------

def init_item_rows(net: SASRecNetwork, *, item_text: str, text: np.ndarray | None,
                   mask: np.ndarray | None, untrained: np.ndarray,
                   side_items: sp.csr_matrix | None) -> None:
    """Item rows of a freshly initialised network from the item content.

    ``item_text="init"``: items with text start from the principal components of the
    text vectors. ``"fuse"``: the text vectors are set, and items never interacted with
    get a zero id vector (text only, as :func:`append_item_rows`). With side labels
    (``side_items``), items never interacted with that have labels get a zero id
    vector too (unless they start from their text).
    """
    if item_text == "init":
        with torch.no_grad():
            net.item_emb[torch.from_numpy(mask)] = torch.from_numpy(
                _pca_init(text[mask], int(net.item_emb.shape[1])))
    elif item_text == "fuse":
        net.text_vectors.copy_(torch.from_numpy(text))
        with torch.no_grad():  # items never interacted with: text only, like add_items
            net.item_emb[torch.from_numpy(untrained & mask)] = 0.0
    if side_items is not None:
        zero = untrained & (np.diff(side_items.indptr) > 0)
        if item_text == "init":
            zero &= ~mask  # those start from their text
        with torch.no_grad():  # never interacted with: labels (and text) only
            net.item_emb[torch.from_numpy(zero)] = 0.0


def embed_cold_from_text(net: SASRecNetwork, table: np.ndarray, text: np.ndarray,
                         mask: np.ndarray, untrained: np.ndarray) -> np.ndarray | None:
    """``item_text="init"`` after training: the ridge map from text to trained vectors.

    Items with text but no training interaction (never a target) are embedded from
    their text with it, as :func:`append_item_rows` does for added items.

    Returns
    -------
    np.ndarray or None
        The map ``[text_dim + 1, dim]``; None when no trained item has text.
    """
    fit_rows = mask & ~untrained
    if not fit_rows.any():
        return None
    text_map = _ridge_map(text[fit_rows], table[fit_rows])
    cold = mask & untrained
    if cold.any():
        rows = _apply_map(text[cold], text_map)
        with torch.no_grad():
            net.item_emb[torch.from_numpy(cold).to(net.item_emb.device)] = (
                torch.from_numpy(rows).to(net.item_emb))
    return text_map


def append_item_rows(net: SASRecNetwork, n_new: int, *, item_text: str,
                     text: np.ndarray | None = None, mask: np.ndarray | None = None,
                     text_map: np.ndarray | None = None) -> None:
    """Append ``n_new`` item rows: zero id vectors, or (``item_text="init"``) the text
    mapped by ``text_map`` (zero without text); ``"fuse"`` also appends the text vectors.
    """
    dim = int(net.item_emb.shape[1])
    if item_text == "none":
        net.grow(torch.zeros(n_new, dim))
    elif item_text == "init":
        if text_map is None:
            raise DataError("no trained item had text at fit time, so there is no map from "
                            "text to item vectors")
        rows = _apply_map(text, text_map)
        rows[~mask] = 0.0
        net.grow(torch.from_numpy(rows.astype(np.float32)))
    else:
        net.grow(torch.zeros(len(text), dim), torch.from_numpy(text))


def add_item_content(net: SASRecNetwork, features: ItemFeatures, new_vocab, *, item_text: str,
                     encoder, side_labels: list | None, text_map: np.ndarray | None
                     ) -> tuple[sp.csr_matrix | None, int]:
    """Append the rows of the new items ``new_vocab`` (``add_items``) from their content.

    Parameters
    ----------
    net : SASRecNetwork
    features : ItemFeatures
    new_vocab : Vocabulary
        The new items, in the order of their rows.
    item_text : str
    encoder : callable
        Returns the text encoder (called only with ``item_text``).
    side_labels : list of str or None
        The fitted labels (``item_side="fuse"``), else None.
    text_map : np.ndarray or None

    Returns
    -------
    side : scipy.sparse.csr_matrix or None
        The new items' label rows (the caller appends them and calls ``set_side``).
    n_text : int
        New items with text.
    """
    side = None
    if side_labels is not None:
        side, _ = side_rows(features, new_vocab, "add_items", labels=side_labels)
    text = mask = None
    if item_text != "none":
        text, mask = text_vectors(encoder(), features, new_vocab, "add_items", item_text,
                                  stacklevel=4)
    append_item_rows(net, len(new_vocab), item_text=item_text, text=text, mask=mask,
                     text_map=text_map)
    return side, 0 if mask is None else int(mask.sum())


def check_loaded_content(model, where: str) -> None:
    """Check a loaded model's ``text_dim_``, ``text_map_``, ``side_labels_`` and
    ``side_items_`` against its parameters (:class:`~maasrec.exceptions.ModelFormatError`)."""
    from .._loadcheck import check_json_int

    n_items = model.n_items_
    text_dim = check_json_int(where, "text_dim_", getattr(model, "text_dim_", None))
    if model.item_text == "fuse" and text_dim < 1:
        raise ModelFormatError(f"{where}: item_text='fuse' needs text_dim_ >= 1, got "
                               f"{text_dim}")
    if getattr(model, "text_map_", None) is not None:
        model._loaded_float("text_map_", (None, int(model.dim)))
    labels = getattr(model, "side_labels_", None)
    if labels is None:
        labels = []
    if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ModelFormatError(f"{where}: side_labels_ must be a list of strings")
    side = getattr(model, "side_items_", None)
    if model.item_side == "fuse":
        if not labels:
            raise ModelFormatError(f"{where}: item_side='fuse' but no side_labels_")
        if not sp.issparse(side) or tuple(side.shape) != (n_items, len(labels)):
            raise ModelFormatError(
                f"{where}: side_items_ must be a sparse {n_items} x {len(labels)} matrix, "
                f"got {getattr(side, 'shape', type(side).__name__)}")


# -- text maps ------------------------------------------------------------------------------

def _pca_init(text: np.ndarray, dim: int) -> np.ndarray:
    """Principal components of text vectors, scaled to the initial embedding size."""
    x = text - text.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    k = min(dim, len(s))
    z = np.zeros((len(x), dim))
    z[:, :k] = u[:, :k] * s[:k]
    z *= INIT_STD / max(float(z[:, :k].std()), 1e-12)
    return z.astype(np.float32)


def _apply_map(text: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Item vectors from text vectors with a map from :func:`_ridge_map`."""
    return (np.hstack([text, np.ones((len(text), 1), dtype=np.float32)]) @ w).astype(np.float32)


def _ridge_map(text: np.ndarray, emb: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Ridge regression ``[text, 1] @ W ~ emb`` (the constant is not penalised)."""
    x = np.hstack([text, np.ones((len(text), 1), dtype=np.float32)]).astype(np.float64)
    reg = alpha * np.eye(x.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(x.T @ x + reg, x.T @ emb.astype(np.float64))
    return w.astype(np.float32)
