"""maasrec.privacy.crypto: key forms, the chunked AES-256-GCM stream, and its failures."""

from __future__ import annotations

import base64
import builtins
import io
import struct

import pytest

pytest.importorskip("cryptography", reason="encryption needs the 'privacy' extra")

from maasrec.exceptions import MaasrecError, ModelFormatError
from maasrec.privacy import crypto
from maasrec.privacy.crypto import (
    DecryptionError,
    EncryptionKeyError,
    decrypt_stream,
    encrypt_stream,
    generate_key,
    key_from_env,
    key_id,
    parse_key,
)

RAW = bytes(range(32))


def _seal(data: bytes, key=RAW, chunk: int = 16) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key, chunk_size=chunk)
    return out.getvalue()


def _open(blob: bytes, key=RAW) -> bytes:
    got = []
    decrypt_stream(io.BytesIO(blob), got.append, key, "'x.enc'")
    return b"".join(got)


def test_key_forms_agree():
    assert parse_key(RAW) == RAW
    assert parse_key(bytearray(RAW)) == RAW
    assert parse_key(RAW.hex()) == RAW
    assert parse_key(RAW.hex().upper()) == RAW
    assert parse_key(base64.urlsafe_b64encode(RAW).decode()) == RAW
    assert parse_key(base64.standard_b64encode(RAW).decode()) == RAW
    assert parse_key(base64.urlsafe_b64encode(RAW).decode().rstrip("=") + "\n") == RAW


def test_generate_key_is_random_and_parses():
    a, b = generate_key(), generate_key()
    assert a != b and len(parse_key(a)) == 32 and len(a) == 44


@pytest.mark.parametrize("bad", [b"short", RAW + b"x", "", "not a key at all",
                                 base64.b64encode(b"\x01" * 31).decode(), "zz" * 32, 12345,
                                 None, RAW.hex()[:-1]])
def test_malformed_keys_are_refused_without_echoing_them(bad):
    with pytest.raises(EncryptionKeyError) as err:
        parse_key(bad)
    assert isinstance(err.value, ValueError)
    if isinstance(bad, str) and len(bad) > 4:
        assert bad not in str(err.value)


def test_key_from_env(monkeypatch):
    monkeypatch.delenv(crypto.KEY_ENV, raising=False)
    assert key_from_env(required=False) is None
    with pytest.raises(EncryptionKeyError, match="MAASREC_MODEL_KEY"):
        key_from_env()
    monkeypatch.setenv(crypto.KEY_ENV, RAW.hex())
    assert key_from_env() == RAW
    monkeypatch.setenv(crypto.KEY_ENV, "garbage")
    with pytest.raises(EncryptionKeyError, match=r"\$MAASREC_MODEL_KEY"):
        key_from_env()


def test_key_id_is_stable_and_distinguishes_keys():
    assert key_id(RAW) == key_id(RAW.hex()) and len(key_id(RAW)) == 16
    assert key_id(RAW) != key_id(bytes(32))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 48, 100])
def test_round_trip_every_chunk_boundary(n):
    data = bytes((i * 7) % 251 for i in range(n))
    blob = _seal(data)
    assert data not in blob[60:] or n == 0
    assert _open(blob) == data


def test_each_save_uses_a_fresh_salt():
    assert _seal(b"same data") != _seal(b"same data")


def test_wrong_key_is_named_as_such():
    blob = _seal(b"payload" * 10)
    with pytest.raises(DecryptionError, match="another key") as err:
        _open(blob, key=bytes(32))
    assert isinstance(err.value, ModelFormatError)


def test_every_truncation_fails():
    data = bytes(range(50))
    blob = _seal(data)
    for cut in range(len(blob)):
        with pytest.raises(DecryptionError):
            _open(blob[:cut])


def test_every_flipped_byte_fails():
    blob = bytearray(_seal(bytes(range(40))))
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(DecryptionError):
            _open(bytes(bad))


def test_appended_dropped_and_reordered_chunks_fail():
    data = bytes(range(64))
    blob = _seal(data)
    n = struct.unpack(">I", blob[len(crypto.MAGIC):len(crypto.MAGIC) + 4])[0]
    head = len(crypto.MAGIC) + 4 + n
    chunks = [blob[i:i + 32] for i in range(head, len(blob), 32)]
    assert len(chunks) == 4  # 16-byte chunks + 16-byte tags
    prefix = blob[:head]
    for bad in (chunks + chunks[-1:], chunks[:-1], [chunks[1], chunks[0], *chunks[2:]],
                chunks[:1] + chunks[2:]):
        with pytest.raises(DecryptionError):
            _open(prefix + b"".join(bad))
    assert _open(prefix + b"".join(chunks)) == data


def test_nothing_reaches_the_sink_from_a_forged_chunk():
    blob = bytearray(_seal(bytes(range(64))))
    blob[-1] ^= 0x80  # the last chunk's tag
    got = []
    with pytest.raises(DecryptionError, match="fails authentication at chunk 3"):
        decrypt_stream(io.BytesIO(bytes(blob)), got.append, RAW, "'x'")
    assert len(got) == 3  # the authentic chunks before it, never the forged one


def test_not_an_encrypted_file():
    with pytest.raises(DecryptionError, match="not a maasrec encrypted file"):
        _open(b"PK\x03\x04 a zip file")


def test_bad_chunk_size():
    with pytest.raises(MaasrecError, match="chunk_size"):
        encrypt_stream(io.BytesIO(b""), io.BytesIO(), RAW, chunk_size=0)


def test_missing_extra_names_it(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("cryptography"):
            raise ImportError("No module named 'cryptography'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MaasrecError, match=r"maasrec\[privacy\]"):
        _seal(b"data")
