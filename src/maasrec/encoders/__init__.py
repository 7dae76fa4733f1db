"""Encoders: text, ids, side features and precomputed vectors -> one tensor per modality.

Every encoder returns ``[n, d]`` float32 tensors aligned to a vocabulary (or to its
input texts), and those whose rows can lack data expose ``mask(idx)`` (True where a row
has data), which the fusion modules take.

- :class:`TextEncoder` (:class:`BertEncoder`, :class:`GPTEncoder`): any Hugging Face
  model, batched, cached on disk, frozen or fine-tuned.
- :class:`IdEmbedding`: a learned vector per id.
- :class:`FeatureEncoder`: categorical / multi-hot / numeric side features.
- :class:`PrecomputedEncoder`: user-supplied vectors (image embeddings...).
- :class:`UserProfileEncoder` / :class:`ItemProfileEncoder`: all of a profile, fused.
"""

from .cache import EmbeddingCache, default_cache_dir
from .features import FeatureEncoder
from .hub import ModelNotAvailableError, packaged_models, resolve_model
from .id import IdEmbedding
from .precomputed import PrecomputedEncoder
from .profile import ItemProfileEncoder, ProfileEncoder, UserProfileEncoder
from .text import BertEncoder, GPTEncoder, TextEncoder, pool_hidden_states

__all__ = [
    "BertEncoder",
    "EmbeddingCache",
    "FeatureEncoder",
    "GPTEncoder",
    "IdEmbedding",
    "ItemProfileEncoder",
    "ModelNotAvailableError",
    "PrecomputedEncoder",
    "ProfileEncoder",
    "TextEncoder",
    "UserProfileEncoder",
    "default_cache_dir",
    "packaged_models",
    "pool_hidden_states",
    "resolve_model",
]
