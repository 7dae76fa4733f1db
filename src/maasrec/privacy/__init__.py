"""Privacy and data protection: encrypted models, pseudonymous ids, masked text.

- :mod:`~maasrec.privacy.crypto` / :mod:`~maasrec.privacy.sealed`: AES-256-GCM encryption
  at rest of saved models (``model.save(path, encryption_key=...)``; extra ``privacy``).
- :mod:`~maasrec.privacy.pseudonymise`: keyed HMAC-SHA256 pseudonyms for raw user/item
  ids, with a mapping the data owner keeps apart from any model.
- :mod:`~maasrec.privacy.masking`: e-mail addresses, phone numbers and URLs masked in text
  features before they reach a language model.
- :mod:`~maasrec.privacy.dp`: user-level DP-SGD (``dp=`` of HybridRecommender, NeuMF and
  SequentialRecommender; Opacus, extra ``privacy``).
- :mod:`~maasrec.privacy.dp_als`: :class:`PrivateALS` (private alternating least squares:
  joint user-level DP of the released item factors; Gaussian mechanism, exact GDP
  accounting).
- :mod:`~maasrec.privacy.attacks`: :func:`membership_inference` (ROC-AUC of a
  loss-threshold attack on training vs held-out users).
- :mod:`~maasrec.privacy.federated`: :func:`train_federated` (Flower simulation, extra
  ``federated``).

See ``docs/privacy.rst``.
"""

from .crypto import (
                     KEY_ENV,
                     DecryptionError,
                     EncryptionKeyError,
                     generate_key,
                     key_from_env,
                     key_id,
                     parse_key,
)
from .masking import TextMasker, find_pii, mask_features, mask_text
from .pseudonymise import Pseudonymiser, PseudonymMap
from .sealed import is_encrypted, load_encrypted, save_encrypted

# imported on first use: they pull in the models and, when run, their extras
_LAZY = {"MembershipInferenceResult": "attacks", "membership_inference": "attacks",
         "FederatedResult": "federated", "train_federated": "federated",
         "PrivateALS": "dp_als"}

__all__ = ["KEY_ENV", "DecryptionError", "EncryptionKeyError", "FederatedResult",
           "MembershipInferenceResult", "PrivateALS", "PseudonymMap", "Pseudonymiser",
           "TextMasker", "find_pii", "generate_key", "is_encrypted", "key_from_env", "key_id",
           "load_encrypted", "mask_features", "mask_text", "membership_inference",
           "parse_key", "save_encrypted", "train_federated"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
