"""TextEASE: EASE whose Gram matrix also sees the items' text, embedded by a language model."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, ClassVar

import numpy as np

from .._validation import check_number
from ..data.interactions import Interactions
from ..exceptions import ColdStartWarning, DataError
from .ease import EASE, KEEP_INVERSE_MAX_ITEMS, _ease_weights

__all__ = ["TextEASE"]

logger = logging.getLogger(__name__)


class TextEASE(EASE):
    """EASE with item text as side information: a closed-form, language-model-aware model.

    The items' texts (title, description, categories...) are embedded by a
    :class:`~maasrec.encoders.TextEncoder` (MiniLM by default: the ``text`` extra),
    normalised to unit length, and their dimensions join the interaction matrix as
    extra "users" (collective EASE, Jeunen et al. 2020): the Gram matrix becomes
    ``X^T X + text_weight * c * T T^T``, where ``T T^T`` is the items' text cosine
    similarity and ``c`` the mean number of interactions per item (the mean diagonal of
    ``X^T X``, so that ``text_weight`` means the same on small and large data), and
    EASE's closed form is solved on it. Two
    items with similar text then support each other even when few users have both,
    which matters for sparse and long-tail items; with ``text_weight=0`` the model is
    exactly :class:`EASE`. Scores, persistence, ``explain`` (exact history
    contributions) and ``partial_fit`` (the exact Woodbury update; the text term does
    not change) are EASE's. Items announced after ``fit`` join from their text with
    :meth:`add_items` (exact, without a refit).

    Parameters
    ----------
    l2 : float, default 500.0
        EASE's L2 regularisation (> 0).
    text_weight : float, default 1.0
        Weight of the text similarity in the Gram matrix (>= 0), relative to the mean
        number of interactions per item: 1.0 weighs a pair of identical texts like an
        item pair that the average item's users all share. Chosen on the validation
        parts of MovieLens 100K and 1M (``benchmarks/bench_text_ease.py``: the best
        absolute weights there, 50 and 200, are 1.04 and 0.92 times their mean item
        counts); tune it with :func:`maasrec.tune.tune` (``search_space``) on data
        unlike these.
    text_encoder : TextEncoder or str, optional
        The encoder, or a model name for :class:`~maasrec.encoders.TextEncoder`;
        None: ``TextEncoder()`` (MiniLM, offline from the ``text`` extra).
    implicit : bool, default True
        As for :class:`EASE`.

    Attributes
    ----------
    B_ : np.ndarray of float32, shape (n_items, n_items)
        Item-item weights.
    side_ : np.ndarray of float32, shape (n_items, d)
        The unit-length text vectors times ``sqrt(text_weight * c)`` (zeros for items
        without text), kept so that ``partial_fit`` solves the same problem as a refit.
        ``c`` is fixed at ``fit``: ``partial_fit`` keeps the text term of the fit.

    Notes
    -----
    ``fit`` needs ``item_features`` with text (:class:`~maasrec.data.ItemFeatures`);
    items without text get no text term (a :class:`~maasrec.exceptions.ColdStartWarning`
    says how many). Cost: EASE's, plus encoding each item text once (cached on disk by
    the encoder) and one ``n_items x n_items x d`` product.

    References
    ----------
    O. Jeunen, J. Van Balen, B. Goethals. Closed-Form Models for Collaborative Filtering
    with Side-Information. RecSys 2020 (late-breaking results).
    """

    #: What :func:`maasrec.tune.tune` searches: EASE's regulariser and the text weight.
    search_space: ClassVar[dict] = {"l2": ("float", 10.0, 1e5, "log"),
                                    "text_weight": ("float", 0.01, 100.0, "log")}

    def __init__(self, l2: float = 500.0, text_weight: float = 1.0,
                 text_encoder: Any = None, implicit: bool = True):
        self.l2 = l2
        self.text_weight = text_weight
        self.text_encoder = text_encoder
        self.implicit = implicit

    def _validate_params(self) -> None:
        super()._validate_params()
        check_number("text_weight", self.text_weight, low=0, high=float("inf"),
                     high_inclusive=False)

    def _params_for_save(self) -> dict:
        # the text is encoded in fit only: a saved model keeps the encoder's model name
        # when it has one (in-memory language models are not saved)
        params = super()._params_for_save()
        enc = params.get("text_encoder")
        if enc is not None and not isinstance(enc, str):
            name = getattr(enc, "model", None)
            params["text_encoder"] = name if isinstance(name, str) else None
        return params

    def _encoder(self):
        from ..encoders.text import resolve_text_encoder

        return resolve_text_encoder(self.text_encoder)

    def _side_vectors(self, data: Interactions, item_features, X) -> np.ndarray:
        from ..data.features import ItemFeatures

        if not isinstance(item_features, ItemFeatures) or not item_features.has_text:
            raise DataError(
                f"TextEASE needs item_features with text (ItemFeatures.from_pandas(frame, "
                f"'item', text='title')); got {item_features!r}")
        f = item_features.align(data.item_vocab)
        mask = np.asarray(f.text_mask, dtype=bool)
        if not mask.any():
            raise DataError(f"none of the {len(mask)} items has text in item_features")
        texts = [t for t, m in zip(f.texts(), mask) if m]
        vec = np.asarray(self._encoder().encode(texts), dtype=np.float64)
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        vec = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
        if (~mask).any():
            warnings.warn(f"TextEASE: {int((~mask).sum())} of {len(mask)} items have no "
                          "text (EASE alone for them)", ColdStartWarning, stacklevel=4)
        side = np.zeros((len(mask), vec.shape[1]), dtype=np.float32)
        mean_count = float(X.multiply(X).sum()) / max(X.shape[1], 1)
        side[mask] = np.sqrt(float(self.text_weight) * mean_count) * vec
        return side

    def _fit(self, data: Interactions, *, item_features=None, **_) -> None:
        t0 = time.perf_counter()
        X = self._matrix(data.to_csr()).astype(np.float64)
        self.side_ = self._side_vectors(data, item_features, X)
        n = X.shape[1]
        P = np.empty((n, n)) if n <= KEEP_INVERSE_MAX_ITEMS else None
        self.B_ = _ease_weights(X, self.l2, inverse=P, side=self.side_)
        self._inverse = None if P is None else (self.B_, P)  # for partial_fit (not saved)
        logger.info("TextEASE: fitted in %.2fs", time.perf_counter() - t0)

    def _ease_side(self) -> np.ndarray | None:
        return self.side_

    def add_items(self, item_features) -> TextEASE:
        """Add items unknown to the model, from their text, without a refit.

        A new item has no interactions; its text links it to the catalogue through the
        Gram matrix's text term. The kept inverse is extended by its Schur complement
        (``O(n_items^2 * m)`` for ``m`` new items), so the model equals a fit in which
        the new items were in the catalogue with their text and no interactions (with
        the text scale ``c`` of the fit), up to rounding; the known items' weights change
        slightly too, as in that fit. New items are then recommended (and scored) like
        any other item; with no interactions their scores stay small, so they reach a
        user's top 10 rarely (MovieLens 1M: ``benchmarks/bench_cold_items.py``).

        Parameters
        ----------
        item_features : ItemFeatures
            Text of the new items (items already known are skipped). New items without
            text get a :class:`~maasrec.exceptions.ColdStartWarning` and score 0.

        Returns
        -------
        TextEASE
            self, with ``item_vocab_``, ``B_``, ``side_`` and ``seen_`` grown.

        Raises
        ------
        DataError
            If ``item_features`` is not an ItemFeatures, or the encoder's vectors do not
            match the fit's.
        """
        from ._text_ease_items import add_text_items

        self._check_fitted()
        add_text_items(self, item_features)
        return self

    def _check_loaded(self) -> None:
        super()._check_loaded()
        self._loaded_float("side_", (self.n_items_, None))
