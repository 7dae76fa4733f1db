"""Encrypted model directories: a saved model packed into one authenticated file.

An encrypted model is still a directory, written atomically like any other
(:class:`maasrec.persistence.atomic_directory`)::

    maasrec.json   {"format": "maasrec-encrypted-model", "format_version": 1,
                    "encryption": {"algorithm": ..., "key_id": ...}, "files": {manifest}}
    model.enc      the plain model directory, packed, then encrypted (see
                   :mod:`maasrec.privacy.crypto`)

Nothing about the model (class, parameters, ids, sizes of its parts) is readable without
the key. Saving writes the plain model into a private temporary directory (mode 0700)
first; loading decrypts into one, **authenticates the whole file before the model is
read**, loads it, and removes the directory before returning, whatever happens. The
private directory is made on ``/dev/shm`` (memory) when it has room, else in
:func:`tempfile.gettempdir` (which honours ``$TMPDIR``): point ``TMPDIR`` at a memory
or encrypted file system if plaintext must never touch a disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._version import __version__
from ..exceptions import ModelFormatError
from ..persistence import META_FILE, atomic_directory, read_json
from .crypto import (
    KEY_ENV,
    DecryptionError,
    decrypt_stream,
    encrypt_stream,
    key_from_env,
    key_id,
    parse_key,
)

__all__ = ["ENCRYPTED_FILE", "ENCRYPTED_FORMAT", "is_encrypted", "load_encrypted",
           "save_encrypted"]

ENCRYPTED_FORMAT = "maasrec-encrypted-model"
ENCRYPTED_FORMAT_VERSION = 1
ENCRYPTED_FILE = "model.enc"
_PACK_MAGIC = b"MAASREC-DIR1\n"
_MAX_INDEX = 64 << 20
_SHM = "/dev/shm"


# -- packing a directory into one stream ------------------------------------------------
def _tree(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        if rel != ".":
            dirs.append(rel)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise ModelFormatError(f"{full!r} is not a regular file; a model directory "
                                       f"to encrypt holds only files and directories")
            files.append(((name if rel == "." else f"{rel}/{name}"), st.st_size))
    return dirs, files


class _PackReader:
    """File-like ``read(n)`` over the packed form of a directory."""

    def __init__(self, root: Path):
        dirs, files = _tree(root)
        index = json.dumps({"dirs": dirs, "files": files}, separators=(",", ":")).encode()
        self._head = _PACK_MAGIC + struct.pack(">Q", len(index)) + index
        self._root = root
        self._files = iter(files)
        self._current = None
        self._left = 0

    def read(self, n: int) -> bytes:
        out = bytearray()
        if self._head:
            out += self._head[:n]
            self._head = self._head[n:]
        while len(out) < n:
            if self._current is None:
                nxt = next(self._files, None)
                if nxt is None:
                    break
                self._current = open(self._root / nxt[0], "rb")
                self._left = nxt[1]
            data = self._current.read(min(n - len(out), self._left))
            self._left -= len(data)
            out += data
            if self._left == 0 or not data:
                if self._left:
                    raise ModelFormatError(f"{self._current.name!r} changed size while it "
                                           f"was being encrypted")
                self._current.close()
                self._current = None
        return bytes(out)


def _check_rel(rel: Any, where: str) -> str:
    parts = rel.split("/") if isinstance(rel, str) else [""]
    if (not isinstance(rel, str) or rel.startswith("/") or "\\" in rel or "\0" in rel
            or any(p in ("", ".", "..") for p in parts)):
        raise DecryptionError(f"{where}: the packed model names the path {rel!r}, which is "
                              f"not inside the model directory")
    return rel


class _Unpacker:
    """Sink for :func:`decrypt_stream`: writes the packed directory under ``root``."""

    def __init__(self, root: Path, where: str):
        self.root, self.where = root, where
        self._buf = bytearray()
        self._files: list | None = None
        self._fd: int | None = None
        self._left = 0

    def _parse_index(self) -> bool:
        n0 = len(_PACK_MAGIC) + 8
        if len(self._buf) < n0:
            return False
        if bytes(self._buf[:len(_PACK_MAGIC)]) != _PACK_MAGIC:
            raise DecryptionError(f"{self.where}: the decrypted content is not a packed model")
        n = struct.unpack(">Q", bytes(self._buf[len(_PACK_MAGIC):n0]))[0]
        if n > _MAX_INDEX:
            raise DecryptionError(f"{self.where}: the packed model's index is too large")
        if len(self._buf) < n0 + n:
            return False
        try:
            index = json.loads(bytes(self._buf[n0:n0 + n]))
            dirs, files = index["dirs"], [(f[0], f[1]) for f in index["files"]]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DecryptionError(f"{self.where}: the packed model's index is corrupt: "
                                  f"{exc}") from None
        del self._buf[:n0 + n]
        os.mkdir(self.root, 0o700)
        for d in dirs:
            os.makedirs(self.root / _check_rel(d, self.where), mode=0o700, exist_ok=True)
        for rel, size in files:
            _check_rel(rel, self.where)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise DecryptionError(f"{self.where}: file {rel!r} has size {size!r}")
        self._files = list(reversed(files))
        return True

    def _open_next(self) -> bool:
        if not self._files:
            return False
        rel, size = self._files.pop()
        self._fd = os.open(self.root / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                           | getattr(os, "O_NOFOLLOW", 0), 0o600)
        self._left = size
        return True

    def __call__(self, chunk: bytes) -> None:
        self._buf += chunk
        if self._files is None and not self._parse_index():
            return
        view = memoryview(self._buf)
        pos = 0
        while pos < len(view):
            if self._fd is None and not self._open_next():
                raise DecryptionError(f"{self.where}: the packed model holds more bytes "
                                      f"than its index lists")
            take = min(self._left, len(view) - pos)
            if take:
                os.write(self._fd, view[pos:pos + take])  # writes a regular file in full
            pos += take
            self._left -= take
            if self._left == 0:
                os.close(self._fd)
                self._fd = None
        view.release()
        self._buf.clear()

    def finish(self) -> None:
        """Check that every listed file was written in full."""
        if self._fd is None and self._files is not None:
            while self._files and self._files[-1][1] == 0:  # empty files at the end
                self._open_next()
                os.close(self._fd)
                self._fd = None
        if self._files is None or self._files or self._fd is not None:
            raise DecryptionError(f"{self.where}: the packed model ends before its last file")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- private scratch space ---------------------------------------------------------------
def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return 0
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def _private_dir(need: int) -> Iterator[Path]:
    """A fresh mode-0700 directory, on /dev/shm when it has room for ``need`` bytes."""
    base = None
    if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) and _free_bytes(_SHM) > 2 * need:
        base = _SHM
    d = tempfile.mkdtemp(prefix="maasrec-plain-", dir=base)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class _HashingWriter:
    def __init__(self, f):
        self._f, self.size, self._h = f, 0, hashlib.sha256()

    def write(self, b: bytes) -> int:
        self._f.write(b)
        self._h.update(b)
        self.size += len(b)
        return len(b)

    def entry(self) -> dict:
        return {"size": self.size, "sha256": self._h.hexdigest()}


def _meta(path: Path) -> dict | None:
    try:
        with open(path / META_FILE, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_encrypted(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a model saved with an encryption key.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
    """
    meta = _meta(Path(path))
    return meta is not None and meta.get("format") == ENCRYPTED_FORMAT


def save_encrypted(model, path: str | os.PathLike, encryption_key, *,
                   overwrite: bool = False) -> str:
    """Save a fitted model as an encrypted, authenticated model directory.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    path : str or Path
    encryption_key : bytes or str
        32 raw bytes, or hex/base64 text (see :func:`maasrec.privacy.parse_key`).
    overwrite : bool, default False
        As in ``model.save``: replace a model directory (encrypted or not) atomically.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    EncryptionKeyError
        A malformed key (checked before anything is written).
    """
    raw = parse_key(encryption_key)
    for need in (0, 1 << 62):  # /dev/shm first; TMPDIR when the model does not fit there
        with _private_dir(need) as priv:
            plain = priv / "model"
            try:
                model.save(plain)
            except OSError as exc:
                if exc.errno == errno.ENOSPC and need == 0 and str(priv).startswith(_SHM):
                    continue
                raise
            return _seal(plain, path, raw, overwrite)
    raise AssertionError("unreachable")  # pragma: no cover


def _seal(plain: Path, path, raw: bytes, overwrite: bool) -> str:
    with atomic_directory(path, overwrite=overwrite) as tmp:
        with open(tmp / ENCRYPTED_FILE, "wb") as f:
            w = _HashingWriter(f)
            header = encrypt_stream(_PackReader(plain), w, raw)
        meta = {"format": ENCRYPTED_FORMAT, "format_version": ENCRYPTED_FORMAT_VERSION,
                "maasrec_version": __version__,
                "encryption": {"algorithm": header["algorithm"], "key_id": header["key_id"]},
                "files": {ENCRYPTED_FILE: w.entry()}}
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
    return str(path)


def _encrypted_meta(p: Path) -> dict:
    if not p.is_dir() or not (p / META_FILE).is_file():
        raise ModelFormatError(f"{str(p)!r} is not a maasrec model directory: it has no "
                               f"{META_FILE}")
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != ENCRYPTED_FORMAT:
        raise ModelFormatError(f"{str(p)!r} is not an encrypted maasrec model")
    version = meta.get("format_version")
    if version != ENCRYPTED_FORMAT_VERSION:
        raise ModelFormatError(f"{str(p / META_FILE)!r}: encrypted format version {version!r}; "
                               f"this maasrec ({__version__}) reads version "
                               f"{ENCRYPTED_FORMAT_VERSION}")
    enc = meta.get("encryption")
    entry = (meta.get("files") or {}).get(ENCRYPTED_FILE) if isinstance(meta.get("files"),
                                                                         dict) else None
    if not isinstance(enc, dict) or not isinstance(entry, dict) \
            or not isinstance(entry.get("size"), int):
        raise ModelFormatError(f"{str(p / META_FILE)!r} is corrupt: no encryption header or "
                               f"no manifest entry for {ENCRYPTED_FILE}")
    return meta


def load_encrypted(path: str | os.PathLike, encryption_key=None, *,
                   loader: Callable[[str], Any] | None = None):
    """Load a model saved with an encryption key.

    The whole file is authenticated before the model is read; nothing is returned (and
    no model object is built) unless every byte is intact and the key is right.

    Parameters
    ----------
    path : str or Path
    encryption_key : bytes or str, optional
        Default: ``$MAASREC_MODEL_KEY``.
    loader : callable, optional
        Loads the decrypted plain model directory (default ``Recommender.load``).

    Returns
    -------
    Recommender

    Raises
    ------
    DecryptionError
        No key given or in the environment; the wrong key; a truncated, tampered or
        extended file. (A :class:`~maasrec.exceptions.ModelFormatError`.)
    EncryptionKeyError
        A malformed key.
    ModelFormatError
        Not an encrypted model directory, or the decrypted model itself is invalid.
    """
    p = Path(path)
    meta = _encrypted_meta(p)
    kid = meta["encryption"].get("key_id")
    if encryption_key is None:
        raw = key_from_env(required=False)
        if raw is None:
            raise DecryptionError(f"{str(p)!r} is an encrypted model (key id {kid}): pass "
                                  f"encryption_key=... or set ${KEY_ENV}")
    else:
        raw = parse_key(encryption_key)
    if kid != key_id(raw):
        raise DecryptionError(f"{str(p)!r} was encrypted with another key (key id {kid}; the "
                              f"key given has id {key_id(raw)})")
    enc = p / ENCRYPTED_FILE
    where = repr(str(enc))
    try:
        size = os.stat(enc).st_size
    except OSError:
        raise DecryptionError(f"{where} is missing") from None
    want = meta["files"][ENCRYPTED_FILE]["size"]
    if size != want:
        raise DecryptionError(f"{where} has {size} bytes, but {META_FILE} says {want}: the "
                              f"file is truncated or was changed after saving")
    if loader is None:
        from ..base import Recommender

        loader = Recommender.load
    with _private_dir(size) as priv:
        plain = priv / "model"
        unpack = _Unpacker(plain, where)
        try:
            with open(enc, "rb") as f:
                decrypt_stream(f, unpack, raw, where)
            unpack.finish()
        finally:
            unpack.close()
        try:
            return loader(str(plain))
        except ModelFormatError as exc:  # name the encrypted model, not the scratch copy
            raise ModelFormatError(str(exc).replace(str(plain), str(p))) from None

