"""Items added after fit to a :class:`~maasrec.models.TextEASE` (``add_items``).

A new item has no interactions, so its column of ``X`` is zero and the Gram matrix
``X^T X + S S^T + l2 I`` grows by a border: the new items' text terms against the known
items (``b = S_old S_new^T``) and among themselves (``D = S_new S_new^T + l2 I``); the
known items' block does not change. The inverse of the bordered matrix follows from the
kept inverse ``P`` by the Schur complement ``Z = D - b^T P b`` (``O(n^2 m)`` for ``m`` new
items instead of the ``O(n^3)`` refit):

    [[P + P b Z^-1 b^T P,  -P b Z^-1],
     [-Z^-1 b^T P,          Z^-1     ]]

and ``B_`` is recomputed from it, so the model equals a fit in which the new items were
in the catalogue with their text and no interactions (with the fit's text scale ``c``),
up to rounding.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

from ..data.features import ItemFeatures
from ..data.vocab import IdVocab
from ..exceptions import ColdStartWarning, DataError, MaasrecError
from ..training import threads_for

__all__ = ["add_text_items"]

logger = logging.getLogger("maasrec.models.text_ease")


def _new_side(model, feats: ItemFeatures, stacklevel: int) -> np.ndarray:
    """The new items' side vectors, on the fit's scale ``sqrt(text_weight * c)``."""
    n_new = len(feats.vocab)
    side = np.zeros((n_new, model.side_.shape[1]), dtype=np.float32)
    mask = np.asarray(feats.text_mask, dtype=bool) if feats.has_text else np.zeros(n_new, bool)
    if (~mask).any():
        missing = feats.vocab.ids[~mask][:5].tolist()
        warnings.warn(f"TextEASE.add_items: {int((~mask).sum())} of {n_new} new items have "
                      f"no text (e.g. {missing}); nothing links them to the catalogue and "
                      "they score 0", ColdStartWarning, stacklevel=stacklevel)
    if not mask.any():
        return side
    # every known item with text has a side row of norm sqrt(text_weight * c) (the fit's
    # scale); the largest norm recovers it (0 when text_weight is 0)
    scale = float(np.linalg.norm(model.side_, axis=1).max()) if len(model.side_) else 0.0
    texts = [t for t, m in zip(feats.texts(), mask) if m]
    vec = np.asarray(model._encoder().encode(texts), dtype=np.float64)
    if vec.ndim != 2 or vec.shape[1] != side.shape[1]:
        raise DataError(f"TextEASE.add_items: the text encoder gives vectors of shape "
                        f"{vec.shape}, the model was fitted with {side.shape[1]} dimensions "
                        "(use the encoder of the fit)")
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    vec = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    side[mask] = scale * vec
    return side


def _bordered_inverse(P: np.ndarray, S_old: np.ndarray, S_new: np.ndarray,
                      l2: float) -> np.ndarray:
    """The inverse of ``[[G, b], [b^T, D]]`` from ``P = G^-1`` (see the module notes)."""
    n, m = P.shape[0], S_new.shape[0]
    S_old = np.asarray(S_old, dtype=np.float64)
    S_new = np.asarray(S_new, dtype=np.float64)
    b = S_old @ S_new.T                      # n x m
    D = S_new @ S_new.T
    D[np.diag_indices_from(D)] += float(l2)
    with threads_for(n * n * m):
        Pb = P @ b                           # n x m
        Z = D - b.T @ Pb                     # Schur complement, symmetric positive definite
        Z = (Z + Z.T) / 2
        try:
            L = np.linalg.cholesky(Z)
        except np.linalg.LinAlgError as err:
            raise MaasrecError("TextEASE.add_items: the bordered Gram matrix is not "
                               "numerically positive definite; refit the model with the "
                               "new items") from err
        Zi = np.linalg.inv(L)
        Zi = Zi.T @ Zi                       # Z^-1
        PbZ = Pb @ Zi                        # n x m
        out = np.empty((n + m, n + m))
        np.matmul(PbZ, Pb.T, out=out[:n, :n])
        out[:n, :n] += P
        out[:n, n:] = -PbZ
        out[n:, :n] = -PbZ.T
        out[n:, n:] = Zi
    return out


def add_text_items(model, item_features: ItemFeatures, stacklevel: int = 3) -> None:
    """Append the items of ``item_features`` unknown to the fitted TextEASE ``model``."""
    from ..online import apply_deferred, deferred_calls
    from ._online import _ease_inverse, _weights_from_inverse

    if not isinstance(item_features, ItemFeatures):
        raise DataError(f"item_features must be an ItemFeatures, got "
                        f"{type(item_features).__name__}")
    ids = item_features.vocab.ids
    new_ids = ids[model.item_vocab_.index(ids, unknown="ignore") < 0]
    if len(new_ids) == 0:
        logger.info("add_items: every item is already known; nothing added")
        return
    if deferred_calls(model):
        apply_deferred(model)  # the inverse below is that of the current seen_
    feats = item_features.align(IdVocab(new_ids, name="item"))
    S_new = _new_side(model, feats, stacklevel + 1)
    P = _ease_inverse(model, model.seen_)
    P_new = _bordered_inverse(P, model.side_, S_new, model.l2)
    model.B_ = _weights_from_inverse(P_new)
    model._inverse = (model.B_, P_new)
    model.side_ = np.vstack([model.side_, S_new]).astype(np.float32)
    model.item_vocab_ = model.item_vocab_.extend(new_ids)
    seen = sp.csr_matrix(model.seen_)
    model.seen_ = sp.csr_matrix((seen.data, seen.indices, seen.indptr),
                                shape=(seen.shape[0], len(model.item_vocab_)))
    model._pop_cache = None
    logger.info("add_items: %d new items (catalogue now %d)", len(new_ids),
                len(model.item_vocab_))
