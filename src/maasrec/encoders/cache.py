"""The on-disk embedding cache: text vectors keyed by model fingerprint and text hash.

Layout under the cache root (``MAASREC_CACHE``, default ``~/.cache/maasrec/embeddings``)::

    <namespace>/key.json                 what the namespace is (model, pooling, ...), for people
    <namespace>/shard-<unique>.safetensors   "keys" uint8 [m, 32] (sha256 of each text)
                                             "vectors" float32 [m, d]
    _filehash/<stat-digest>              memo of large weight-file hashes (by path+size+mtime)

The namespace is the sha256 of everything that changes a vector: the model fingerprint
(name, config, weights, tokenizer), pooling, ``max_length``, ``normalize`` and the compute
precision. A changed model or setting therefore lands in another namespace and never
reads stale vectors.

Shards are written to a hidden temporary file in the same folder and renamed into place
(``os.replace``, atomic on POSIX and Windows), each under a name no other writer uses, so
concurrent writers -- threads or processes -- never corrupt each other and readers only
ever see complete shards. Duplicated keys across shards are harmless (same vector).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError, MaasrecWarning

__all__ = [
    "CACHE_ENV",
    "CACHE_FORMAT",
    "EmbeddingCache",
    "default_cache_dir",
    "file_sha256",
    "path_fingerprint",
    "resolve_cache_dir",
    "text_keys",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the embedding cache folder.
CACHE_ENV = "MAASREC_CACHE"
#: Version of the cache layout (part of every namespace).
CACHE_FORMAT = 1
_KEY_BYTES = 32
_MEMO_MIN_BYTES = 1 << 20
_HASH_CHUNK = 1 << 22
_SKIP_FILES = {".gitattributes", ".gitignore"}
_OTHER_FRAMEWORKS = {".onnx", ".h5", ".msgpack", ".ot", ".tflite", ".mlmodel", ".xml"}
_ST_MODULE_DIR = re.compile(r"^\d+_")  # sentence-transformers modules: 1_Pooling, 2_Dense...
_file_hash_memo: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def default_cache_dir() -> Path:
    """The default embedding cache folder.

    Returns
    -------
    Path
        ``$MAASREC_CACHE`` when set, else ``~/.cache/maasrec/embeddings``.
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "maasrec" / "embeddings"


def resolve_cache_dir(cache_dir: str | os.PathLike | bool | None) -> Path | None:
    """Turn a ``cache_dir`` parameter into a folder (or None when caching is off).

    Parameters
    ----------
    cache_dir : str, path, bool or None
        None or True: :func:`default_cache_dir`; False: no cache; else the folder.

    Returns
    -------
    Path or None

    Raises
    ------
    DataError
        For a value of another type.
    """
    if cache_dir is None or cache_dir is True:
        return default_cache_dir()
    if cache_dir is False:
        return None
    if isinstance(cache_dir, (str, os.PathLike)):
        if not os.fspath(cache_dir):
            raise DataError("cache_dir is an empty string; pass a folder, None or False")
        return Path(cache_dir).expanduser()
    raise DataError(
        f"cache_dir must be a folder, None (default folder) or False (no cache), got "
        f"{type(cache_dir).__name__} {cache_dir!r}"
    )


def text_keys(texts: Iterable[str]) -> list[bytes]:
    """sha256 digests of texts (UTF-8), the per-text cache keys.

    Parameters
    ----------
    texts : iterable of str

    Returns
    -------
    list of bytes
        32 bytes each.
    """
    return [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def file_sha256(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file's content, memoised by (path, size, mtime, inode).

    Large files are hashed once per process, and once per machine when ``memo_dir`` is
    given (the digest is stored there under a name derived from the file's stat data,
    the way ``git`` trusts its index).

    Parameters
    ----------
    path : str or path
    memo_dir : str or path, optional

    Returns
    -------
    str
        Hex digest.
    """
    p = Path(path)
    key = _stat_key(p)
    with _memo_lock:
        if key in _file_hash_memo:
            return _file_hash_memo[key]
    memo_file = None
    if memo_dir is not None and key[1] >= _MEMO_MIN_BYTES:
        name = hashlib.sha256(repr(key).encode()).hexdigest()
        memo_file = Path(memo_dir) / "_filehash" / name
        try:
            digest = memo_file.read_text(encoding="ascii").strip()
            if len(digest) == 64:
                with _memo_lock:
                    _file_hash_memo[key] = digest
                return digest
        except OSError:
            pass
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with _memo_lock:
        _file_hash_memo[key] = digest
    if memo_file is not None:
        with contextlib.suppress(OSError):
            _atomic_write_bytes(memo_file, digest.encode("ascii"))
    return digest


def path_fingerprint(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """Content hash of a model file or directory (config, weights, tokenizer files).

    Every file that can change the vectors is hashed with its relative name: the
    top-level files (config, weights, tokenizer) and those of sentence-transformers
    module folders (``1_Pooling/``...). Hidden files, README files and exports for other
    runtimes (``onnx/``, ``*.h5``...) are skipped. A changed config, weight file or
    vocabulary changes the fingerprint; moving the folder does not.

    Parameters
    ----------
    path : str or path
        A directory (``save_pretrained`` output) or one file (``.gguf``).
    memo_dir : str or path, optional
        Where to memoise large-file hashes (see :func:`file_sha256`).

    Returns
    -------
    str
        Hex digest.
    """
    p = Path(path)
    if p.is_file():
        return file_sha256(p, memo_dir)
    entries = {}
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p)
        if not f.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if f.name in _SKIP_FILES or f.name.lower().startswith("readme"):
            continue
        if len(rel.parts) > 1 and not _ST_MODULE_DIR.match(rel.parts[0]):
            continue  # onnx/, openvino/...: exports transformers does not load
        if f.suffix.lower() in _OTHER_FRAMEWORKS:
            continue
        entries[rel.as_posix()] = file_sha256(f, memo_dir)
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _as_key_list(keys: Sequence[bytes] | np.ndarray) -> list[bytes]:
    if isinstance(keys, np.ndarray):
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != _KEY_BYTES:
            raise DataError(f"keys must be uint8 of shape (n, {_KEY_BYTES}), got {keys.dtype} "
                            f"{keys.shape}")
        raw = keys.tobytes()
        return [raw[i:i + _KEY_BYTES] for i in range(0, len(raw), _KEY_BYTES)]
    out = list(keys)
    for i, k in enumerate(out):
        if not isinstance(k, bytes) or len(k) != _KEY_BYTES:
            raise DataError(f"keys[{i}] = {k!r} is not a {_KEY_BYTES}-byte digest (see text_keys)")
    return out


class EmbeddingCache:
    """A folder of vectors keyed by 32-byte text digests, for one namespace.

    Parameters
    ----------
    root : str or path
        The cache folder (see :func:`default_cache_dir`).
    key : mapping
        JSON-compatible description of everything that determines the vectors (model
        fingerprint, pooling, ...). Its canonical JSON hash names the namespace.
    shard_rows : int, default 65536
        Most vectors per shard file.
    compact_after : int, default 64
        Merge the shards into one when a write leaves more than this many.

    Attributes
    ----------
    namespace : str
        32 hex characters.
    path : Path
        ``root / namespace``.
    hits, misses : int
        Lookups found / not found since creation.

    Notes
    -----
    Safe for concurrent use by several threads and processes: every write goes to a new,
    uniquely named shard through an atomic rename, and readers skip files that vanish
    under them (compaction) by rescanning.
    """

    def __init__(self, root: str | os.PathLike, key: Mapping[str, Any], *,
                 shard_rows: int = 65536, compact_after: int = 64):
        if not isinstance(key, Mapping):
            raise DataError(f"key must be a mapping, got {type(key).__name__}")
        if int(shard_rows) < 1:
            raise DataError(f"shard_rows must be >= 1, got {shard_rows!r}")
        self.root = Path(root)
        self.key = {"cache_format": CACHE_FORMAT, **dict(key)}
        canonical = json.dumps(self.key, sort_keys=True, default=str)
        self.namespace = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
        self.path = self.root / self.namespace
        self.shard_rows = int(shard_rows)
        self.compact_after = int(compact_after)
        self.hits = 0
        self.misses = 0
        self._index: dict[bytes, tuple[str, int]] = {}
        self._shards: set[str] = set()
        self._bad: set[str] = set()
        self._dim: int | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r}, entries={len(self)})"

    # -- reading -----------------------------------------------------------------
    def _list_shards(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.path)
                          if e.name.startswith("shard-") and e.name.endswith(".safetensors"))
        except FileNotFoundError:
            return []

    def _read(self, name: str, tensor: str) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(str(self.path / name), framework="numpy") as f:
            return f.get_tensor(tensor)

    def _refresh(self) -> None:
        names = self._list_shards()
        current = set(names)
        vanished = self._shards - current
        if vanished:
            self._index = {k: v for k, v in self._index.items() if v[0] not in vanished}
            self._shards -= vanished
            # keys that lived only in vanished shards may be in new (compacted) ones
        for name in names:
            if name in self._shards or name in self._bad:
                continue
            try:
                keys = self._read(name, "keys")
                vec_dim = self._shard_dim(name)
            except FileNotFoundError:
                continue
            except Exception as exc:  # a corrupt or foreign file: never fatal
                warnings.warn(f"embedding cache: ignoring unreadable shard "
                              f"{str(self.path / name)!r} ({type(exc).__name__}: {exc})",
                              MaasrecWarning, stacklevel=3)
                self._bad.add(name)
                continue
            if keys.ndim != 2 or keys.shape[1] != _KEY_BYTES or (
                    self._dim is not None and vec_dim != self._dim):
                warnings.warn(f"embedding cache: ignoring shard {str(self.path / name)!r} "
                              f"with unexpected shape (keys {keys.shape}, dim {vec_dim})",
                              MaasrecWarning, stacklevel=3)
                self._bad.add(name)
                continue
            self._dim = vec_dim
            for row, k in enumerate(_as_key_list(np.ascontiguousarray(keys))):
                self._index.setdefault(k, (name, row))
            self._shards.add(name)

    def _read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of a shard's vectors, touching only their pages (memory-mapped).

        Uses the safetensors layout (8-byte header length, JSON header, raw data).
        """
        path = self.path / name
        with open(path, "rb") as f:
            n_header = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n_header))
        info = header["vectors"]
        if info.get("dtype") != "F32" or len(info.get("shape", ())) != 2:
            return self._read(name, "vectors")[rows]
        start, _ = info["data_offsets"]
        table = np.memmap(path, dtype="<f4", mode="r", offset=8 + n_header + start,
                          shape=tuple(info["shape"]))
        return np.asarray(table[rows], dtype=np.float32)

    def _shard_dim(self, name: str) -> int:
        from safetensors import safe_open

        with safe_open(str(self.path / name), framework="numpy") as f:
            shape = f.get_slice("vectors").get_shape()
        if len(shape) != 2:
            raise ValueError(f"vectors have shape {shape}")
        return int(shape[1])

    def get(self, keys: Sequence[bytes] | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Look vectors up.

        Parameters
        ----------
        keys : sequence of 32-byte digests, or uint8 array (n, 32)
            See :func:`text_keys`.

        Returns
        -------
        found : np.ndarray of bool, shape (n,)
        vectors : np.ndarray of float32, shape (n, d), or None
            Rows of keys not found are zero; None when nothing was found.
        """
        keys = _as_key_list(keys)
        n = len(keys)
        with self._lock:
            for _attempt in range(3):
                self._refresh()
                found = np.zeros(n, dtype=bool)
                by_shard: dict[str, tuple[list[int], list[int]]] = {}
                for i, k in enumerate(keys):
                    loc = self._index.get(k)
                    if loc is not None:
                        found[i] = True
                        rows, pos = by_shard.setdefault(loc[0], ([], []))
                        rows.append(loc[1])
                        pos.append(i)
                if not found.any():
                    self.misses += n
                    return found, None
                out = np.zeros((n, self._dim or 0), dtype=np.float32)
                try:
                    for name, (rows, pos) in by_shard.items():
                        out[np.asarray(pos)] = self._read_rows(name, np.asarray(rows))
                except FileNotFoundError:
                    continue  # compacted away under us: rescan
                except (OSError, ValueError, KeyError, IndexError) as exc:
                    warnings.warn(f"embedding cache: ignoring unreadable shard "
                                  f"{str(self.path / name)!r} ({type(exc).__name__}: {exc})",
                                  MaasrecWarning, stacklevel=2)
                    self._bad.add(name)
                    self._shards.discard(name)
                    self._index = {k: v for k, v in self._index.items() if v[0] != name}
                    continue
                self.hits += int(found.sum())
                self.misses += int(n - found.sum())
                return found, out
        self.misses += n
        return np.zeros(n, dtype=bool), None

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            self._refresh()
            return key in self._index

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._index)

    @property
    def n_shards(self) -> int:
        """int: number of shard files."""
        return len(self._list_shards())

    # -- writing -----------------------------------------------------------------
    def _write_key_file(self) -> None:
        f = self.path / "key.json"
        if not f.exists():
            _atomic_write_bytes(f, json.dumps(self.key, indent=1, sort_keys=True,
                                              default=str).encode("utf-8"))

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> str:
        from safetensors.numpy import save_file

        name = f"shard-{time.time_ns():x}-{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
        tmp = self.path / f".tmp-{uuid.uuid4().hex}.safetensors"
        try:
            save_file({"keys": np.ascontiguousarray(keys, dtype=np.uint8),
                       "vectors": np.ascontiguousarray(vectors, dtype=np.float32)},
                      str(tmp), metadata={"cache_format": str(CACHE_FORMAT),
                                          "namespace": self.namespace})
            os.replace(tmp, self.path / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return name

    def put(self, keys: Sequence[bytes] | np.ndarray, vectors: np.ndarray) -> int:
        """Store vectors (rows with non-finite values are skipped).

        Parameters
        ----------
        keys : sequence of 32-byte digests, or uint8 array (n, 32)
        vectors : array-like of float, shape (n, d)

        Returns
        -------
        int
            Number of vectors written.

        Raises
        ------
        DataError
            On mismatched lengths or a dimension differing from the stored vectors.
        OSError
            When the folder cannot be written.
        """
        klist = _as_key_list(keys)
        vec = np.asarray(vectors, dtype=np.float32)
        if vec.ndim != 2 or vec.shape[0] != len(klist):
            raise DataError(f"vectors must have shape ({len(klist)}, d), got {vec.shape}")
        ok = np.isfinite(vec).all(axis=1)
        if not ok.all():
            warnings.warn(f"embedding cache: not storing {int((~ok).sum())} non-finite vectors",
                          MaasrecWarning, stacklevel=2)
        with self._lock:
            if self._dim is None:
                self._refresh()
            if self._dim is not None and vec.shape[1] != self._dim:
                raise DataError(f"vectors have dimension {vec.shape[1]} but this cache namespace "
                                f"holds dimension {self._dim}")
            fresh = [i for i in np.flatnonzero(ok) if klist[i] not in self._index]
            # one entry per key, even if the same key appears twice in this call
            seen: dict[bytes, int] = {}
            for i in fresh:
                seen.setdefault(klist[i], int(i))
            rows = np.fromiter(seen.values(), dtype=np.int64, count=len(seen))
            if len(rows) == 0:
                return 0
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_key_file()
            raw = np.frombuffer(b"".join(klist[i] for i in rows), dtype=np.uint8).reshape(-1, 32)
            for start in range(0, len(rows), self.shard_rows):
                sl = slice(start, start + self.shard_rows)
                name = self._write_shard(raw[sl], vec[rows[sl]])
                for r, i in enumerate(rows[sl]):
                    self._index.setdefault(klist[i], (name, r))
                self._shards.add(name)
            self._dim = vec.shape[1]
            if len(self._list_shards()) > self.compact_after:
                self.compact()
            return len(rows)

    def compact(self) -> None:
        """Merge all shards into one (safe under concurrent readers and writers).

        Shards written while this runs are left alone; if another process compacts at
        the same time, the loser stops quietly.
        """
        with self._lock:
            self._refresh()
            names = sorted(self._shards)
            if len(names) <= 1:
                return
            keys, vecs = [], []
            try:
                for name in names:
                    keys.append(self._read(name, "keys"))
                    vecs.append(self._read(name, "vectors"))
            except FileNotFoundError:
                return
            k = np.concatenate(keys)
            v = np.concatenate(vecs)
            _, first = np.unique(k.view(f"V{_KEY_BYTES}").ravel(), return_index=True)
            first.sort()
            for start in range(0, len(first), self.shard_rows):
                sel = first[start:start + self.shard_rows]
                self._write_shard(k[sel], v[sel])
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / name)
            self._index.clear()
            self._shards.clear()
            self._refresh()
            logger.debug("embedding cache %s: compacted %d shards", self.namespace, len(names))

    def clear(self) -> None:
        """Delete this namespace's folder."""
        with self._lock:
            shutil.rmtree(self.path, ignore_errors=True)
            self._index.clear()
            self._shards.clear()
            self._bad.clear()
            self._dim = None

    def info(self) -> dict[str, Any]:
        """Summary: path, namespace, entries, shards, hits, misses.

        Returns
        -------
        dict
        """
        return {"path": str(self.path), "namespace": self.namespace, "entries": len(self),
                "shards": self.n_shards, "hits": self.hits, "misses": self.misses}
