"""Items added after fit to a :class:`~maasrec.neural.HybridRecommender` (``add_items``).

A new item has no id embedding: its vector comes from the item tower (and the history
tower, when untied) with the id modality missing -- the path ``id_dropout`` trained --
from its text vector (encoded now with the fit's language model, checked by
fingerprint) and its features. The fitted arrays, the scorer's item rows, the vocabulary
and ``seen_`` grow by the new items.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ..data.features import ItemFeatures
from ..data.vocab import IdVocab
from ..exceptions import DataError, MaasrecWarning, ModelFormatError
from ._hybrid_towers import encode_texts, new_item_vectors

__all__ = ["add_items"]

logger = logging.getLogger("maasrec.neural.hybrid")


def add_items(model, item_features: ItemFeatures, stacklevel: int = 3) -> None:
    """Append the items of ``item_features`` unknown to the fitted ``model``.

    ``stacklevel`` is the warning's (new items without text or features), counted from
    here.
    """
    if not isinstance(item_features, ItemFeatures):
        raise DataError(f"item_features must be an ItemFeatures, got "
                        f"{type(item_features).__name__}")
    content = [m for m in model.modalities_["item"] if m != "id"]
    if not content:
        raise DataError("this HybridRecommender uses item ids only; new items need text or "
                        "features (fit with item_encoders including 'text' or 'features')")
    ids = item_features.vocab.ids
    new_ids = ids[model.item_vocab_.index(ids, unknown="ignore") < 0]
    if len(new_ids) == 0:
        logger.info("add_items: every item is already known; nothing added")
        return
    feats = item_features.align(IdVocab(new_ids, name="item"))
    n_new = len(new_ids)
    inputs, masks = _new_item_inputs(model, feats, n_new)
    towers = [model.item_tower_] + ([model.history_tower_] if getattr(
        model, "history_tower_", None) is not None else [])
    vectors, present = new_item_vectors(towers, feats, n_new, inputs, masks, content)
    if not bool(present.all()):
        missing = new_ids[~present.numpy()][:5].tolist()
        warnings.warn(f"add_items: {int((~present).sum())} new item(s) have no text or "
                      f"features (e.g. {missing}); they are scored by their bias only",
                      MaasrecWarning, stacklevel=stacklevel)
    V_new = vectors[0]
    if len(vectors) > 1:
        model.history_repr_ = np.vstack([model.history_repr_, vectors[1]]).astype(np.float32)
    model.item_repr_ = np.vstack([model.item_repr_, V_new]).astype(np.float32)
    model.item_has_id_ = np.concatenate([model.item_has_id_, np.zeros(n_new, dtype=bool)])
    model.scorer_.extend_items(n_new)
    model.config_["scorer_options"]["n_items"] = model.config_["scorer_options"].get(
        "n_items") and len(model.item_repr_)
    model.item_vocab_ = model.item_vocab_.extend(new_ids)
    seen = sp.csr_matrix(model.seen_)
    model.seen_ = sp.csr_matrix((seen.data, seen.indices, seen.indptr),
                                shape=(seen.shape[0], len(model.item_vocab_)))
    model._pop_cache = None
    model._vectors_cache = None
    logger.info("add_items: %d new items (catalogue now %d)", n_new, len(model.item_vocab_))


def _new_item_inputs(model, feats: ItemFeatures, n_new: int) -> tuple[dict, dict]:
    """The id (missing) and text inputs of ``n_new`` new items of ``feats``."""
    inputs: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    dims = model.item_tower_.input_dims
    if "id" in dims:
        inputs["id"] = torch.zeros(n_new, dims["id"])
        masks["id"] = torch.zeros(n_new, dtype=torch.bool)
    if "text" in dims:
        if not feats.has_text:
            text = np.zeros((n_new, dims["text"]), dtype=np.float32)
            tmask = np.zeros(n_new, dtype=bool)
        else:
            enc = model._text_encoder()
            fp = enc.cache_key()["fingerprint"]
            if model.text_fingerprint_ is not None and fp != model.text_fingerprint_:
                raise ModelFormatError(
                    f"the text encoder ({getattr(model, 'text_model_', '?')}) now has "
                    f"fingerprint {fp[:12]}..., but the model was trained with "
                    f"{model.text_fingerprint_[:12]}...: new item vectors would not match")
            text, tmask = encode_texts(enc, feats, verbose=bool(model.verbose))
        inputs["text"] = torch.from_numpy(text)
        masks["text"] = torch.from_numpy(tmask)
    return inputs, masks
