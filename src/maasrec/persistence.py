"""Model directories: JSON + safetensors, no pickle, atomic writes.

A saved model is a directory::

    maasrec.json         format name and version, class, params, scalar attributes, and
                         the manifest ("files": size and SHA-256 of every other file)
    vocab.json           user and item id vocabularies
    arrays.safetensors   numpy arrays (dense, and the parts of sparse matrices)
    weights.safetensors  torch module state dicts (neural models)
    <attr>/              a nested fitted recommender (e.g. a first stage)

Loading reads JSON and safetensors only (no code runs from the directory), checks the
files against the manifest, resolves the class name against the recommenders maasrec
knows, and refuses a newer format. Saving is atomic (a directory exchange on Linux),
durable (fsync of files and directories) and never deletes files that are not the
model's own (see :class:`atomic_directory`).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._version import __version__
from .data.vocab import IdVocab
from .exceptions import ModelFormatError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "atomic_directory", "build_manifest", "is_encrypted",
           "load_encrypted", "read_json", "read_model_dir", "remove_stale", "save_encrypted",
           "verify_manifest", "write_model_dir"]

FORMAT_NAME = "maasrec-model"
FORMAT_VERSION = 1
META_FILE = "maasrec.json"
VOCAB_FILE = "vocab.json"
ARRAYS_FILE = "arrays.safetensors"
WEIGHTS_FILE = "weights.safetensors"
# what maasrec wrote into a model directory before manifests (overwrite of such a model)
_LEGACY_FILES = frozenset({META_FILE, VOCAB_FILE, ARRAYS_FILE, WEIGHTS_FILE})
_RETRIEVER_FILES = frozenset({"retriever.json", "index.faiss"})
_ENCRYPTED_FORMAT = "maasrec-encrypted-model"  # maasrec.privacy.sealed.ENCRYPTED_FORMAT


def _jsonable(value: Any, where: str) -> Any:
    """Check that ``value`` survives a JSON round trip; convert numpy scalars."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise ModelFormatError(
        f"{where} = {value!r} (type {type(value).__name__}) cannot be saved as JSON"
    )


_STALE_KINDS = ("tmp", "old")
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# renameat2's syscall number where libc has no wrapper (glibc < 2.28)
_SYS_RENAMEAT2 = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276, "riscv64": 276,
                  "i386": 353, "i686": 353, "armv7l": 382, "ppc64le": 357, "ppc64": 357,
                  "s390x": 347}
_renameat2_cache: list = []
_active = threading.local()  # temp directories this thread is writing (nested saves)


def _renameat2():
    """The libc ``renameat2`` wrapper or a ``syscall`` stand-in; None off Linux."""
    if _renameat2_cache:
        return _renameat2_cache[0]
    func = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            try:
                f = libc.renameat2
                f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                              ctypes.c_uint]
                f.restype = ctypes.c_int
                func = f
            except AttributeError:
                number = _SYS_RENAMEAT2.get(platform.machine().lower())
                if number is not None:
                    syscall = libc.syscall
                    syscall.restype = ctypes.c_long

                    def func(olddir, old, newdir, new, flags, _s=syscall, _n=number):
                        return _s(ctypes.c_long(_n), ctypes.c_int(olddir), ctypes.c_char_p(old),
                                  ctypes.c_int(newdir), ctypes.c_char_p(new),
                                  ctypes.c_uint(flags))
        except OSError:  # pragma: no cover - no libc to load
            func = None
    _renameat2_cache.append(func)
    return func


def _rename_flags(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False when the OS or file system lacks it."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # old kernel, or a file system without this flag
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directory entries ``a`` and ``b`` in one step (Linux ``RENAME_EXCHANGE``).

    Returns False, having changed nothing, where the OS or file system cannot."""
    return _rename_flags(a, b, _RENAME_EXCHANGE)


def _fsync_fd_of(path: Path, directory: bool) -> None:
    if directory:
        if os.name == "nt":  # pragma: no cover - Windows cannot open a directory
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    else:
        fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not directory or exc.errno not in (errno.EINVAL, errno.EBADF):
            raise  # a directory fsync some file systems refuse; a file's never
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every regular file and directory under ``root`` (children first)."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            f = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(f).st_mode):
                _fsync_fd_of(Path(f), directory=False)
        _fsync_fd_of(Path(dirpath), directory=True)


def _stale_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.(?:{'|'.join(_STALE_KINDS)})-[0-9a-f]{{8,32}}")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _remove(path: Path) -> None:
    """Remove a directory tree, or the link/file that a swap left at its name."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def remove_stale(path: str | os.PathLike) -> list[str]:
    """Remove the temporary siblings that killed saves to ``path`` left behind.

    A save writes into ``.NAME.tmp-<hex>`` next to ``path`` (and, where the OS cannot
    exchange two directories, moves the previous model to ``.NAME.old-<hex>``), holding an
    exclusive ``flock`` on that directory for the whole save. A sibling whose lock can be
    taken has no living owner: it is removed. Only directories whose name matches that
    exact pattern for ``path`` are considered; the directories of saves still running
    (locked) are kept. :meth:`atomic_directory.__exit__` calls this after every
    successful save, when the new model is already in place.

    Parameters
    ----------
    path : str or Path
        The model directory path (need not exist).

    Returns
    -------
    list of str
        The removed paths. Empty where ``fcntl`` is missing (Windows): there, stale
        siblings are left for the user to delete.
    """
    if fcntl is None:  # pragma: no cover - no way to tell a dead saver from a live one
        return []
    p = Path(path)
    pattern = _stale_pattern(p.name)
    removed = []
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    for name in sorted(names):
        if not pattern.fullmatch(name):
            continue
        cand = p.parent / name
        try:
            if not stat.S_ISDIR(os.lstat(cand).st_mode):
                continue  # never a file or a link, whatever its name
            fd = os.open(cand, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, or not ours to open
        try:
            if not _try_lock(fd):
                continue  # a save in progress owns it
            shutil.rmtree(cand, ignore_errors=True)
            removed.append(str(cand))
        finally:
            os.close(fd)  # releases the lock, after the removal
    return removed


def _model_meta(root: Path) -> dict | None:
    try:
        with open(root / META_FILE, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _legacy_foreign(root: Path, prefix: str) -> list[str]:
    """Entries of a model directory without a manifest that maasrec did not write."""
    foreign = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        rel = prefix + entry.name
        if entry.is_symlink():
            foreign.append(rel)
        elif entry.is_dir():
            sub = Path(entry.path)
            if (sub / META_FILE).is_file():  # a nested model (e.g. first_stage_/)
                foreign.extend(_foreign_entries(sub, rel + "/"))
            elif entry.name == "retriever":
                foreign.extend(rel + "/" + n for n in sorted(os.listdir(sub))
                               if n not in _RETRIEVER_FILES or not (sub / n).is_file())
            elif entry.name == "lm":  # a transformers folder: whatever save_pretrained wrote
                foreign.extend(rel + "/" + os.path.relpath(os.path.join(d, n), sub)
                               .replace(os.sep, "/")
                               for d, _, names in os.walk(sub) for n in names
                               if os.path.islink(os.path.join(d, n)))
            else:
                foreign.extend(_all_files(sub, rel + "/"))
        elif entry.name not in _LEGACY_FILES:
            foreign.append(rel)
    return foreign


def _all_files(root: Path, prefix: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(prefix + os.path.relpath(os.path.join(dirpath, n), root)
                       .replace(os.sep, "/"))
    return sorted(out)


def _foreign_entries(root: Path, prefix: str = "") -> list[str]:
    """Paths under the model directory ``root`` that are not the model's own files.

    A directory saved with a manifest (``files`` in ``maasrec.json``) owns exactly the
    files listed there and its ``maasrec.json``; an older one owns the names maasrec
    wrote before manifests existed. Empty directories hold nothing and are not reported.
    """
    meta = _model_meta(root)
    files = meta.get("files") if meta is not None else None
    if not isinstance(files, dict):
        return _legacy_foreign(root, prefix)
    own = set(files) | {META_FILE}
    return [prefix + rel for rel in _all_files(root, "") if rel not in own]


class atomic_directory:
    """Context manager: write into a temporary sibling, then swap it into place.

    Parameters
    ----------
    path : str or Path
        The final directory.
    overwrite : bool
        Replace an existing maasrec model directory at ``path``. Without it an
        existing ``path`` raises :class:`FileExistsError`. A directory is replaced only
        if it is empty or holds nothing but a maasrec model's own files (those listed in
        the manifest of its ``maasrec.json``; for models saved before manifests, the file
        names maasrec writes): otherwise :class:`FileExistsError` names the foreign
        files, and nothing is deleted.

    Notes
    -----
    The block writes into ``.NAME.tmp-<hex>`` next to ``path``, holding an exclusive
    ``flock`` on it. On success every file and directory in it is fsynced, then

    - on Linux (``renameat2`` with ``RENAME_EXCHANGE``) the new directory and the
      existing model are exchanged in one step: at every instant ``path`` holds a
      complete model, the old or the new; the old one, now at the temporary name, is
      removed;
    - where the exchange is unavailable (other systems, or a file system that refuses
      the flag) the old model is renamed to ``.NAME.old-<hex>`` and the new one renamed
      into place: a kill between those two renames leaves no model at ``path`` (the
      previous one survives as ``.NAME.old-<hex>``);
    - a first save (nothing at ``path``) is one rename (``RENAME_NOREPLACE`` on Linux).

    The parent directory is then fsynced, so the new model survives a power loss. Last,
    :func:`remove_stale` removes the siblings that killed saves to the same ``path`` left
    (those whose lock can be taken). If anything fails inside the block, the temporary
    directory is removed and ``path`` is left untouched. A save nested in another's
    temporary directory skips the fsyncs and the clean-up (the outer save does them).
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.tmp: Path | None = None
        self._fd: int | None = None
        self._nested = False

    def _check_target(self) -> bool:
        """Whether ``path`` exists (then replaceable), or raise FileExistsError."""
        p = self.path
        if not os.path.lexists(p):
            return False
        if not p.is_dir():
            raise FileExistsError(f"{str(p)!r} exists and is not a directory; choose another path")
        if not self.overwrite:
            raise FileExistsError(
                f"{str(p)!r} already exists; pass overwrite=True to replace it atomically"
            )
        if not (p / META_FILE).exists():
            if any(p.iterdir()):
                raise FileExistsError(
                    f"{str(p)!r} is a non-empty directory that is not a maasrec model; refusing "
                    f"to replace it"
                )
            return True
        foreign = _foreign_entries(p)
        if foreign:
            shown = ", ".join(repr(f) for f in foreign[:5])
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise FileExistsError(
                f"{str(p)!r} holds files that are not part of the maasrec model saved there "
                f"({shown}{more}); refusing to replace it: move them away or choose another path"
            )
        return True

    def __enter__(self) -> Path:
        p = self.path
        self._check_target()
        p.parent.mkdir(parents=True, exist_ok=True)
        active = getattr(_active, "dirs", None)
        self._nested = bool(active) and os.path.abspath(p.parent) in active
        # not tempfile.mkdtemp: its 0o700 mode would become the model directory's mode;
        # a plain mkdir honours the umask like any other directory the user creates
        while True:
            tmp = p.parent / f".{p.name}.tmp-{uuid.uuid4().hex[:12]}"
            try:
                tmp.mkdir()
            except FileExistsError:  # pragma: no cover - a uuid collision
                continue
            if self._nested or fcntl is None or self._lock(tmp):
                break
        self.tmp = tmp
        if not hasattr(_active, "dirs"):
            _active.dirs = set()
        _active.dirs.add(os.path.abspath(tmp))
        return self.tmp

    def _lock(self, tmp: Path) -> bool:
        """Lock the new temp directory; False if a concurrent clean-up took it first."""
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:  # removed by a clean-up between mkdir and open
            return False
        try:
            if _try_lock(fd) and os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                self._fd = fd
                return True
        except OSError:
            pass
        os.close(fd)  # a clean-up holds it, or removed it: try another name
        return False

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        tmp = self.tmp
        _active.dirs.discard(os.path.abspath(tmp))
        try:
            if exc_type is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            try:
                self._commit(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if not self._nested:
            remove_stale(self.path)

    def _commit(self, tmp: Path) -> None:
        p = self.path
        if not self._nested:
            _fsync_tree(tmp)
        exists = self._check_target()  # again: files may have appeared during the save
        if not exists:
            try:
                if not _rename_flags(tmp, p, _RENAME_NOREPLACE):
                    os.rename(tmp, p)
                self._sync_parent()
                return
            except FileExistsError:  # a concurrent save got there first
                if not self._check_target():
                    raise
        if _exchange(tmp, p):
            self._sync_parent()
            _remove(tmp)  # the previous model, now at the temporary name
        else:
            self._replace_by_two_renames(tmp)

    def _replace_by_two_renames(self, tmp: Path) -> None:
        p = self.path
        old = p.with_name(f".{p.name}.old-{uuid.uuid4().hex[:12]}")
        lock = None
        if fcntl is not None:  # keep a concurrent clean-up off the old model while aside
            with contextlib.suppress(OSError):
                lock = os.open(p, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                if not _try_lock(lock):
                    os.close(lock)
                    lock = None
        try:
            os.replace(p, old)
            try:
                os.replace(tmp, p)
            except BaseException:
                if not os.path.lexists(p):
                    os.replace(old, p)
                raise
            self._sync_parent()
            _remove(old)
        finally:
            if lock is not None:
                os.close(lock)

    def _sync_parent(self) -> None:
        if not self._nested:
            _fsync_fd_of(self.path.parent, directory=True)


def read_json(path: Path) -> dict:
    """Read a JSON file, turning any failure into :class:`ModelFormatError`.

    Parameters
    ----------
    path : Path

    Returns
    -------
    dict
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {str(path)!r}: {exc}") from exc


def _write_json(path: Path, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.write("\n")


_HASH_CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _file_entry(path: str | os.PathLike) -> dict:
    """``{"size": bytes, "sha256": hex}`` of one file."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            size += n
    return {"size": size, "sha256": h.hexdigest()}


def _nested_manifest(dirpath: str) -> dict | None:
    meta = _model_meta(Path(dirpath))
    if meta is None or meta.get("format") != FORMAT_NAME:
        return None
    files = meta.get("files")
    return files if isinstance(files, dict) else None


def build_manifest(root: str | os.PathLike) -> dict[str, dict]:
    """The file manifest of a model directory: every file except its own ``maasrec.json``.

    Parameters
    ----------
    root : str or Path
        A model directory (usually the temporary one, before ``maasrec.json`` is written).

    Returns
    -------
    dict
        ``{relative/posix/path: {"size": int, "sha256": hex}}`` for every regular file
        under ``root``, nested model directories included (their own manifests' hashes are
        reused for files of the same size instead of reading them twice).
    """
    root = os.fspath(root)
    files: dict[str, dict] = {}
    nested: dict[str, dict] = {}  # relative dir -> that nested model's manifest
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        if rel_dir:
            sub = _nested_manifest(dirpath)
            if sub is not None:
                nested[rel_dir] = sub
        for name in sorted(filenames):
            rel = rel_dir + name
            full = os.path.join(dirpath, name)
            if rel == META_FILE or not stat.S_ISREG(os.lstat(full).st_mode):
                continue  # maasrec writes no links; one would count as a foreign file
            entry = None
            for prefix, sub in nested.items():
                known = sub.get(rel[len(prefix):]) if rel.startswith(prefix) else None
                if (isinstance(known, dict) and known.get("size") == os.path.getsize(full)
                        and isinstance(known.get("sha256"), str)):
                    entry = {"size": known["size"], "sha256": known["sha256"]}
                    break
            files[rel] = entry if entry is not None else _file_entry(full)
    return dict(sorted(files.items()))


def _check_manifest(files: Any, where: str) -> None:
    if not isinstance(files, dict):
        raise ModelFormatError(f"{where}: 'files' is not a JSON object")
    for rel, e in files.items():
        parts = rel.split("/")
        if (not rel or rel.startswith("/") or "\\" in rel or ":" in parts[0]
                or any(part in ("", ".", "..") for part in parts)):
            raise ModelFormatError(f"{where}: manifest entry {rel!r} is not a relative path "
                                   f"inside the model directory")
        if (not isinstance(e, dict) or isinstance(e.get("size"), bool)
                or not isinstance(e.get("size"), int) or e["size"] < 0
                or not isinstance(e.get("sha256"), str) or not _SHA256_HEX.fullmatch(e["sha256"])):
            raise ModelFormatError(f"{where}: manifest entry {rel!r} = {e!r} is not "
                                   f"{{'size': bytes, 'sha256': 64 hex digits}}")


def verify_manifest(path: str | os.PathLike, *, include_nested: bool = True) -> bool:
    """Check the files of a model directory against the manifest in its ``maasrec.json``.

    Parameters
    ----------
    path : str or Path
        A saved model directory.
    include_nested : bool, default True
        Also check the files of nested model directories that carry their own manifest.
        ``False`` checks such a directory's ``maasrec.json`` only and leaves its files to
        its own check (what :func:`read_model_dir` does: loading the nested model checks
        them, so no file is hashed twice).

    Returns
    -------
    bool
        True if a manifest was found and every listed file matches; False if the
        directory has no manifest (saved by maasrec before manifests existed).

    Raises
    ------
    ModelFormatError
        Naming the first listed file that is missing, is not a regular file, or whose
        size or SHA-256 differs from the manifest; or if the manifest itself is malformed.
        Files not listed are ignored.
    """
    root = Path(path)
    meta = read_json(root / META_FILE)
    where = repr(str(root / META_FILE))
    if not isinstance(meta, dict) or "files" not in meta:
        return False
    files = meta["files"]
    _check_manifest(files, where)

    def check(rel: str, e: dict) -> None:
        full = root / rel
        try:
            st_ = os.lstat(full)
        except OSError:
            raise ModelFormatError(f"{str(full)!r} is missing: the model's manifest in {where} "
                                   f"lists it ({e['size']} bytes)") from None
        if not stat.S_ISREG(st_.st_mode):
            raise ModelFormatError(f"{str(full)!r} is not a regular file, but the model's "
                                   f"manifest in {where} lists it as one")
        if st_.st_size != e["size"]:
            raise ModelFormatError(f"{str(full)!r} has {st_.st_size} bytes, but the model's "
                                   f"manifest in {where} says {e['size']}: the file is "
                                   f"truncated or was changed after saving")
        try:
            got = _file_entry(full)["sha256"]
        except OSError as exc:
            raise ModelFormatError(f"cannot read {str(full)!r}: {exc}") from exc
        if got != e["sha256"]:
            raise ModelFormatError(f"{str(full)!r} does not match the model's manifest in "
                                   f"{where} (sha256 {got[:12]}..., expected "
                                   f"{e['sha256'][:12]}...): the file is corrupt or was "
                                   f"changed after saving")

    deferred: dict[str, dict] = {}
    done = set()
    if not include_nested:
        for rel in sorted(files):
            if rel.endswith("/" + META_FILE):
                check(rel, files[rel])  # first: its manifest is trusted below
                done.add(rel)
                sub = _nested_manifest(str((root / rel).parent))
                if sub is not None:
                    deferred[rel[: -len(META_FILE)]] = sub
    for rel, e in files.items():
        if rel in done or any(rel.startswith(prefix) and sub.get(rel[len(prefix):]) == e
                              for prefix, sub in deferred.items()):
            continue  # checked above, or when the nested model is read
        check(rel, e)
    return True


def write_model_dir(tmp: Path, *, class_name: str, params: dict, attributes: dict,
                    vocabs: dict[str, IdVocab], arrays: dict[str, np.ndarray],
                    weights: dict | None = None, extra: dict | None = None) -> None:
    """Write the files of a model directory into ``tmp``.

    Parameters
    ----------
    tmp : Path
        An empty directory (from :class:`atomic_directory`).
    class_name : str
        Registered class name of the model.
    params : dict
        JSON-compatible constructor parameters.
    attributes : dict
        JSON-compatible description of the fitted attributes.
    vocabs : dict of str -> IdVocab
    arrays : dict of str -> np.ndarray
        Numeric arrays (written with safetensors).
    weights : dict of str -> torch.Tensor, optional
        Module state (written with safetensors' torch writer).
    extra : dict, optional
        More JSON-compatible metadata.
    """
    from safetensors.numpy import save_file

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "maasrec_version": __version__,
        "class": class_name,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "params": _jsonable(params, "params"),
        "attributes": _jsonable(attributes, "attributes"),
    }
    if extra:
        meta.update(_jsonable(extra, "extra"))
    _write_json(tmp / VOCAB_FILE, {k: v.to_dict() for k, v in vocabs.items()})
    if arrays:
        clean = {}
        for k, a in arrays.items():
            a = np.asarray(a)
            if a.dtype == object:
                raise ModelFormatError(f"array {k!r} has dtype object and cannot be saved")
            clean[k] = np.ascontiguousarray(a)
        save_file(clean, str(tmp / ARRAYS_FILE))
    if weights:
        from safetensors.torch import save_file as save_torch

        save_torch({k: v.detach().cpu().contiguous() for k, v in weights.items()},
                   str(tmp / WEIGHTS_FILE))
    _honour_umask(tmp)
    # the manifest of every other file (nested models, retriever/, lm/ included), then
    # maasrec.json, written last: its presence marks a complete model
    meta["files"] = build_manifest(tmp)
    _write_json(tmp / META_FILE, meta)


def _current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def _honour_umask(root: Path) -> None:
    """Give every file under ``root`` the mode a plain ``open()`` would have given it.

    safetensors (0.8) writes its files with mode 0o600 whatever the umask, so a model
    saved by one user could not be read by another: a server running as another uid (the
    container image's), or a read-only model volume shared by several pods.
    """
    mode = 0o666 & ~_current_umask()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
                os.chmod(full, mode)


def read_model_dir(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """Read a model directory written by :func:`write_model_dir`.

    Parameters
    ----------
    path : str or Path
    verify : bool, default True
        Check the sizes and SHA-256 of the files listed in the manifest of
        ``maasrec.json`` (:func:`verify_manifest`) before reading them.

    Returns
    -------
    dict
        ``meta`` (maasrec.json), ``vocabs`` (dict of IdVocab), ``arrays`` (dict of
        np.ndarray), ``weights`` (dict of torch.Tensor, loaded lazily by the caller via
        ``weights_path``), ``path``.

    Raises
    ------
    ModelFormatError
        If ``path`` is not a maasrec model directory, is corrupt (including a file that
        differs from the manifest), or was written by a newer format version.
    """
    p = Path(path)
    if not p.is_dir():
        raise ModelFormatError(f"{str(p)!r} is not a directory; expected a saved maasrec model")
    if not (p / META_FILE).is_file():
        raise ModelFormatError(
            f"{str(p)!r} is not a maasrec model directory: it has no {META_FILE}"
        )
    meta = read_json(p / META_FILE)
    if isinstance(meta, dict) and meta.get("format") == _ENCRYPTED_FORMAT:
        from .privacy.crypto import KEY_ENV, DecryptionError

        kid = (meta.get("encryption") or {}).get("key_id") if isinstance(
            meta.get("encryption"), dict) else None
        raise DecryptionError(f"{str(p)!r} is an encrypted model (key id {kid}): load it with "
                              f"encryption_key=... or set ${KEY_ENV}")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{str(p / META_FILE)!r} is not a maasrec model description")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFormatError(f"{str(p)!r}: format_version {version!r} is not an integer")
    if version < 1:
        raise ModelFormatError(
            f"{str(p / META_FILE)!r}: format_version {version!r} is not a model format "
            f"(formats are numbered from 1 to {FORMAT_VERSION})"
        )
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{str(p)!r} was written in model format {version} by maasrec "
            f"{meta.get('maasrec_version')}; this maasrec ({__version__}) reads formats up to "
            f"{FORMAT_VERSION}: upgrade maasrec to load it"
        )
    if verify:
        # sizes and SHA-256 of the listed files (nested models check their own on load)
        verify_manifest(p, include_nested=False)
    vocabs = {}
    if (p / VOCAB_FILE).is_file():
        raw = read_json(p / VOCAB_FILE)
        try:
            vocabs = {k: IdVocab.from_dict(v) for k, v in raw.items()}
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ModelFormatError(f"{str(p / VOCAB_FILE)!r} is corrupt: {exc!r}") from exc
    arrays: dict[str, np.ndarray] = {}
    if (p / ARRAYS_FILE).is_file():
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(p / ARRAYS_FILE))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"cannot read {str(p / ARRAYS_FILE)!r}: {exc}") from exc
    return {"meta": meta, "vocabs": vocabs, "arrays": arrays, "path": p,
            "weights_path": p / WEIGHTS_FILE}


def csr_to_arrays(name: str, m: sp.spmatrix) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a sparse matrix into safetensors-friendly arrays.

    Parameters
    ----------
    name : str
    m : scipy.sparse matrix

    Returns
    -------
    attribute : dict
        JSON description (``{"type": "csr", "shape": [...]}``).
    arrays : dict of str -> np.ndarray
    """
    m = sp.csr_matrix(m)
    return ({"type": "csr", "shape": list(m.shape)},
            {f"{name}.data": m.data, f"{name}.indices": m.indices.astype(np.int64),
             f"{name}.indptr": m.indptr.astype(np.int64)})


def csr_from_arrays(name: str, attr: dict, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    """Inverse of :func:`csr_to_arrays`.

    Parameters
    ----------
    name : str
    attr : dict
    arrays : dict of str -> np.ndarray

    Returns
    -------
    scipy.sparse.csr_matrix
    """
    from ._loadcheck import check_csr_parts

    parts = [f"{name}.data", f"{name}.indices", f"{name}.indptr"]
    missing = [k for k in parts if k not in arrays]
    if missing or not isinstance(attr, dict):
        raise ModelFormatError(f"sparse attribute {name!r} is missing or corrupt: no "
                               f"{missing or 'description'}")
    data, indices, indptr = (arrays[k] for k in parts)
    # every part is checked before scipy sees it: its C code trusts indices and indptr
    shape = check_csr_parts(ARRAYS_FILE, name, attr.get("shape"), data, indices, indptr)
    try:
        m = sp.csr_matrix((data, indices.astype(np.int64, copy=False),
                           indptr.astype(np.int64, copy=False)), shape=shape)
    except ValueError as exc:
        raise ModelFormatError(f"sparse attribute {name!r} is missing or corrupt: {exc}") from exc
    m.has_sorted_indices = False  # re-check sortedness rather than trusting the flag
    return m


# -- encrypted models (maasrec.privacy.sealed; needs the ``privacy`` extra) ----------------
def is_encrypted(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a model saved with an encryption key.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
    """
    meta = _model_meta(Path(path))
    return meta is not None and meta.get("format") == _ENCRYPTED_FORMAT


def save_encrypted(model, path: str | os.PathLike, encryption_key, *,
                   overwrite: bool = False) -> str:
    """Save a fitted model encrypted with AES-256-GCM (``model.enc`` + ``maasrec.json``).

    What ``model.save(path, encryption_key=...)`` does; see
    :func:`maasrec.privacy.sealed.save_encrypted` for the format.

    Parameters
    ----------
    model : Recommender
    path : str or Path
    encryption_key : bytes or str
        32 raw bytes, 64 hex digits or base64 of 32 bytes
        (:func:`maasrec.privacy.generate_key`).
    overwrite : bool, default False

    Returns
    -------
    str
    """
    from .privacy.sealed import save_encrypted as _save

    return _save(model, path, encryption_key, overwrite=overwrite)


def load_encrypted(path: str | os.PathLike, encryption_key=None, *, cls=None):
    """Load a model written by :func:`save_encrypted`, authenticated before it is read.

    Parameters
    ----------
    path : str or Path
    encryption_key : bytes or str, optional
        Default: ``$MAASREC_MODEL_KEY``.
    cls : type, optional
        The class to load with (its ``load``); default ``Recommender``.

    Returns
    -------
    Recommender

    Raises
    ------
    maasrec.privacy.DecryptionError
        A ``ModelFormatError``: no key, the wrong key, a truncated or tampered file.
    """
    from .privacy.sealed import load_encrypted as _load

    return _load(path, encryption_key, loader=None if cls is None else cls.load)
