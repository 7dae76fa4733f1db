"""Exceptions and warnings raised by maasrec.

Every error maasrec raises on purpose derives from :class:`MaasrecError`, and also from
the built-in class a scikit-learn user would expect (``ValueError``, ``KeyError``,
``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ColdStartWarning",
    "DataError",
    "DecryptionError",
    "DeviceError",
    "EncryptionKeyError",
    "MaasrecError",
    "MaasrecWarning",
    "ModelFormatError",
    "NotFittedError",
    "UnknownIdError",
]


class MaasrecError(Exception):
    """Base class of every error raised by maasrec."""


class DataError(MaasrecError, ValueError):
    """Input data is malformed: empty, NaN/inf values, mismatched lengths, wrong shape or type."""


class UnknownIdError(MaasrecError, KeyError):
    """A raw user or item id is not in the vocabulary the model was fitted on.

    Parameters
    ----------
    message : str
        Human-readable message naming the id(s).
    ids : list, optional
        The unknown raw ids (at most the first few are named in the message).
    kind : str, optional
        ``"user"`` or ``"item"``.
    """

    def __init__(self, message: str, ids=None, kind: str | None = None):
        super().__init__(message)
        self.ids = list(ids) if ids is not None else []
        self.kind = kind

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class NotFittedError(MaasrecError, ValueError, AttributeError):
    """A model or component was used before ``fit`` was called.

    Like scikit-learn's, it is also a ``ValueError`` and an ``AttributeError`` (so
    ``hasattr(model, "n_items_")`` is False on an unfitted model).
    """


class DeviceError(MaasrecError, RuntimeError):
    """A requested compute device is not available or not understood."""


class ModelFormatError(MaasrecError, ValueError):
    """A directory is not a maasrec model, is corrupt, or was written by a newer format."""


class EncryptionKeyError(MaasrecError, ValueError):
    """An encryption key is malformed (not 32 bytes, or not hex/base64 text of 32 bytes)."""


class DecryptionError(ModelFormatError):
    """An encrypted model cannot be opened: no key, the wrong key, or a damaged file.

    A :class:`~maasrec.exceptions.ModelFormatError`, so code that handles corrupt model
    directories handles this too.
    """


class MaasrecWarning(UserWarning):
    """Base class of maasrec warnings."""


class ColdStartWarning(MaasrecWarning):
    """Users or items appear in an evaluation part but not in the training part."""
