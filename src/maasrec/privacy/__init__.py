"""Privacy and data protection: encrypted models, pseudonymous ids, masked text.

- :mod:`~maasrec.privacy.crypto` / :mod:`~maasrec.privacy.sealed`: AES-256-GCM encryption
  at rest of saved models (``model.save(path, encryption_key=...)``; extra ``privacy``).
- :mod:`~maasrec.privacy.pseudonymise`: keyed HMAC-SHA256 pseudonyms for raw user/item
  ids, with a mapping the data owner keeps apart from any model.
- :mod:`~maasrec.privacy.masking`: e-mail addresses, phone numbers and URLs masked in text
  features before they reach a language model.

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

__all__ = ["KEY_ENV", "DecryptionError", "EncryptionKeyError", "PseudonymMap", "Pseudonymiser",
           "TextMasker", "find_pii", "generate_key", "is_encrypted", "key_from_env", "key_id",
           "load_encrypted", "mask_features", "mask_text", "parse_key", "save_encrypted"]
