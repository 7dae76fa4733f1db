"""Authenticated encryption of model files: AES-256-GCM in fixed-size chunks.

An encrypted stream (the ``model.enc`` of an encrypted model directory, see
:func:`maasrec.persistence.save_encrypted`) is::

    magic       b"MAASREC-AEAD1\\n"          (14 bytes)
    length      4-byte big-endian length of the header
    header      canonical JSON: algorithm, chunk size, a random 32-byte salt, the key id
    chunks      AES-256-GCM ciphertext + 16-byte tag of each chunk of plaintext

Each save draws a fresh salt; the chunk key is HKDF-SHA256(master key, salt), so no
(key, nonce) pair is ever reused. Chunk ``i`` is sealed with the nonce
``i (11 bytes, big-endian) || last`` (``last`` = 1 on the final chunk only) and the
magic, length and header as associated data (the STREAM construction): a changed
header, a changed, dropped, reordered or appended chunk, and a file cut at any byte
fail authentication. The key id (an HMAC of a fixed label under the key) tells a wrong
key from a damaged file without revealing anything about the key.

Keys are 32 random bytes, given as ``bytes`` or as text: 64 hex digits, or base64
(standard or URL-safe, padding optional) of 32 bytes. :func:`generate_key` returns the
URL-safe base64 form; ``$MAASREC_MODEL_KEY`` is where :func:`key_from_env` looks.

Requires the ``privacy`` extra (``cryptography``): ``pip install "maasrec[privacy]"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import struct
from typing import BinaryIO

from ..exceptions import DecryptionError, EncryptionKeyError, MaasrecError

__all__ = ["DEFAULT_CHUNK_SIZE", "KEY_ENV", "DecryptionError", "EncryptionKeyError",
           "decrypt_stream", "encrypt_stream", "generate_key", "key_from_env", "key_id",
           "parse_key", "read_header"]

#: Environment variable holding the model key (text form) for ``load`` and ``maasrec serve``.
KEY_ENV = "MAASREC_MODEL_KEY"
KEY_BYTES = 32
#: Plaintext bytes per authenticated chunk.
DEFAULT_CHUNK_SIZE = 4 << 20
MAGIC = b"MAASREC-AEAD1\n"
ALGORITHM = "AES-256-GCM/HKDF-SHA256/STREAM"
_TAG = 16
_SALT = 32
_MAX_HEADER = 4096
_MAX_CHUNK = 64 << 20
_HKDF_INFO = b"maasrec model encryption v1"
_KEY_ID_LABEL = b"maasrec key id v1"


def _aead():
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        raise MaasrecError("encrypted models need the cryptography package: pip install "
                           "\"maasrec[privacy]\"") from None
    return AESGCM, HKDF, hashes, InvalidTag


def generate_key() -> str:
    """A new random 256-bit key, as URL-safe base64 text (44 characters).

    Store it in a secret manager, or in ``$MAASREC_MODEL_KEY`` for ``maasrec serve``.
    Losing it loses every model encrypted with it.

    Returns
    -------
    str

    Examples
    --------
    >>> len(parse_key(generate_key()))
    32
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(key: bytes | bytearray | memoryview | str, what: str = "encryption_key") -> bytes:
    """The 32 raw bytes of a key given as bytes or as hex/base64 text.

    Parameters
    ----------
    key : bytes or str
        32 raw bytes; or text: 64 hex digits, or standard/URL-safe base64 (padding
        optional) of 32 bytes. Surrounding whitespace is ignored.
    what : str, default "encryption_key"
        Name used in error messages (which never show the key itself).

    Returns
    -------
    bytes

    Raises
    ------
    EncryptionKeyError
        Any other type or length.
    """
    if isinstance(key, (bytearray, memoryview)):
        key = bytes(key)
    if isinstance(key, bytes):
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(f"{what} is {len(key)} bytes; an AES-256 key is "
                                     f"{KEY_BYTES} bytes (see maasrec.privacy.generate_key)")
        return key
    if not isinstance(key, str):
        raise EncryptionKeyError(f"{what} must be 32 bytes or hex/base64 text, got "
                                 f"{type(key).__name__}")
    text = key.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    raw = None
    if text and len(text) <= 4 * KEY_BYTES:
        padded = text + "=" * (-len(text) % 4)
        for decode in (base64.urlsafe_b64decode, base64.standard_b64decode):
            try:
                raw = decode(padded.encode("ascii"))
            except (binascii.Error, ValueError, UnicodeEncodeError):
                continue
            if len(raw) == KEY_BYTES and _b64_strict(raw, text):
                return raw
    raise EncryptionKeyError(
        f"{what} is text of {len(text)} characters that is neither 64 hex digits nor "
        f"base64 of {KEY_BYTES} bytes (maasrec.privacy.generate_key() makes one)")


def _b64_strict(raw: bytes, text: str) -> bool:
    """Whether ``text`` is exactly a base64 spelling of ``raw`` (no ignored characters)."""
    canon = {base64.urlsafe_b64encode(raw).decode(), base64.standard_b64encode(raw).decode()}
    return text in canon or text + "=" * (-len(text) % 4) in canon


def key_from_env(name: str = KEY_ENV, *, required: bool = True) -> bytes | None:
    """Read a key (text form) from an environment variable.

    Parameters
    ----------
    name : str, default "MAASREC_MODEL_KEY"
    required : bool, default True
        Raise when the variable is unset or empty; otherwise return None.

    Returns
    -------
    bytes or None

    Raises
    ------
    EncryptionKeyError
        Unset (when ``required``) or malformed.
    """
    value = os.environ.get(name, "")
    if not value.strip():
        if required:
            raise EncryptionKeyError(f"the environment variable {name} holds no key")
        return None
    return parse_key(value, what=f"${name}")


def key_id(key) -> str:
    """A public 16-hex-digit fingerprint of a key (HMAC-SHA256 of a fixed label).

    Stored in the header of an encrypted file so that a wrong key is named as such.

    Parameters
    ----------
    key : bytes or str

    Returns
    -------
    str
    """
    return hmac.new(parse_key(key), _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _chunk_cipher(key: bytes, salt: bytes):
    AESGCM, HKDF, hashes, _ = _aead()
    sub = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
               info=_HKDF_INFO).derive(key)
    return AESGCM(sub)


def _read_exact(src: BinaryIO, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        b = src.read(n - len(out))
        if not b:
            break
        out += b
    return bytes(out)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key, *,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict:
    """Encrypt everything readable from ``src`` into ``dst``.

    Parameters
    ----------
    src, dst : binary file objects
    key : bytes or str
        See :func:`parse_key`.
    chunk_size : int, default 4 MiB
        Plaintext bytes per authenticated chunk.

    Returns
    -------
    dict
        The header written (algorithm, chunk size, key id; the salt in base64).
    """
    raw = parse_key(key)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) \
            or not 1 <= chunk_size <= _MAX_CHUNK:
        raise MaasrecError(f"chunk_size must be an integer in 1..{_MAX_CHUNK}, got "
                           f"{chunk_size!r}")
    salt = secrets.token_bytes(_SALT)
    header = {"algorithm": ALGORITHM, "chunk_size": chunk_size,
              "salt": base64.b64encode(salt).decode("ascii"), "key_id": key_id(raw)}
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    prefix = MAGIC + struct.pack(">I", len(hbytes)) + hbytes
    dst.write(prefix)
    cipher = _chunk_cipher(raw, salt)
    buf = _read_exact(src, chunk_size)
    counter = 0
    while True:
        nxt = _read_exact(src, chunk_size)
        last = not nxt
        dst.write(cipher.encrypt(_nonce(counter, last), buf, prefix))
        if last:
            return header
        buf, counter = nxt, counter + 1


def read_header(src: BinaryIO, where: str) -> tuple[dict, bytes]:
    """Read and check the header of an encrypted stream.

    Parameters
    ----------
    src : binary file object
        Positioned at the start of the stream.
    where : str
        The file's name, for error messages.

    Returns
    -------
    header : dict
    prefix : bytes
        Magic, length and header bytes (the associated data of every chunk).

    Raises
    ------
    DecryptionError
        Not an encrypted maasrec stream, or a header this version cannot read.
    """
    magic = _read_exact(src, len(MAGIC))
    if magic != MAGIC:
        raise DecryptionError(f"{where} is not a maasrec encrypted file (bad magic bytes)")
    raw_len = _read_exact(src, 4)
    n = struct.unpack(">I", raw_len)[0] if len(raw_len) == 4 else -1
    if not 0 < n <= _MAX_HEADER:
        raise DecryptionError(f"{where}: the encryption header is truncated or corrupt")
    hbytes = _read_exact(src, n)
    try:
        header = json.loads(hbytes.decode("utf-8")) if len(hbytes) == n else None
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict):
        raise DecryptionError(f"{where}: the encryption header is truncated or corrupt")
    if header.get("algorithm") != ALGORITHM:
        raise DecryptionError(f"{where} is encrypted with {header.get('algorithm')!r}; this "
                              f"maasrec reads {ALGORITHM!r}")
    chunk = header.get("chunk_size")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= _MAX_CHUNK:
        raise DecryptionError(f"{where}: chunk_size {chunk!r} in the encryption header is "
                              f"invalid")
    try:
        salt = base64.b64decode(header.get("salt", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        salt = b""
    if len(salt) != _SALT or not isinstance(header.get("key_id"), str):
        raise DecryptionError(f"{where}: the encryption header is corrupt (salt or key id)")
    return header, magic + raw_len + hbytes


def decrypt_stream(src: BinaryIO, sink, key, where: str) -> dict:
    """Decrypt and authenticate a stream written by :func:`encrypt_stream`.

    Parameters
    ----------
    src : binary file object
    sink : callable
        Called with each authenticated plaintext chunk, in order. Everything it received
        is unauthenticated as a whole until this function returns: a caller must not use
        the plaintext before then (a later chunk can still fail).
    key : bytes or str
    where : str
        The file's name, for error messages.

    Returns
    -------
    dict
        The header.

    Raises
    ------
    DecryptionError
        Wrong key (by key id), or a tampered, truncated or extended file.
    """
    raw = parse_key(key)
    header, prefix = read_header(src, where)
    if not hmac.compare_digest(header["key_id"], key_id(raw)):
        raise DecryptionError(f"{where} was encrypted with another key (key id "
                              f"{header['key_id']}; the key given has id {key_id(raw)})")
    *_, InvalidTag = _aead()
    cipher = _chunk_cipher(raw, base64.b64decode(header["salt"]))
    size = header["chunk_size"] + _TAG
    block = _read_exact(src, size)
    counter = 0
    while True:
        nxt = _read_exact(src, size) if len(block) == size else b""
        last = not nxt
        if len(block) < _TAG:
            raise DecryptionError(f"{where} is truncated: chunk {counter} is incomplete")
        try:
            sink(cipher.decrypt(_nonce(counter, last), block, prefix))
        except InvalidTag:
            raise DecryptionError(
                f"{where} fails authentication at chunk {counter}: the file was truncated, "
                f"changed or tampered with after it was saved") from None
        if last:
            return header
        block, counter = nxt, counter + 1
