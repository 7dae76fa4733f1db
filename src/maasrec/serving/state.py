"""The served model and its atomic replacement (hot reload).

A request takes one :class:`ModelState` snapshot when it starts and uses only that
snapshot, so a reload never changes the model under a request: in-flight requests finish
on the old model, new requests see the new one. A reload loads and checks the new model
completely (in the caller's thread) before swapping one reference under a lock; a
directory that fails to load or to answer a probe request is refused and the old model
keeps serving.

Model root
----------
A reload may only load a directory inside the server's *model root* (default: the parent
directory of the model served at start). A ``model_dir`` given to a reload is taken
relative to the root (an absolute path is accepted too), resolved with
:func:`os.path.realpath` (so ``..`` and symbolic links cannot leave the root), and must
then be a directory inside the root holding a ``maasrec.json``. Every path that fails
these checks -- outside the root, missing, not a directory, no ``maasrec.json`` -- is
refused with the same message, so a reload cannot be used to probe the server's file
system. The served model is described by its *name*, its path relative to the root
(never an absolute path).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..base import Recommender
from ..exceptions import MaasrecError, ModelFormatError

__all__ = ["ModelHolder", "ModelRoot", "ModelState", "ReloadRefusedError"]

logger = logging.getLogger(__name__)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    return repr(value)


@dataclass(frozen=True)
class ModelState:
    """One loaded model and what ``GET /v1/model`` says about it.

    Attributes
    ----------
    model : Recommender
    version : int
        1 for the first model, +1 per successful reload.
    model_dir : str or None
        Where it was loaded from, as given (absolute, symbolic links not resolved, so a
        reload of the current directory follows a re-pointed link); None for an
        in-memory model. Never shown to clients.
    name : str or None
        ``model_dir`` relative to the model root: what clients see.
    info : dict
        The ``GET /v1/model`` body.
    """

    model: Recommender
    version: int
    model_dir: str | None
    name: str | None
    info: dict = field(repr=False)

    def with_model(self, model: Recommender) -> ModelState:
        """This state serving ``model`` instead (an update of the same version: new events
        or items); ``info``'s user and item counts are ``model``'s.

        Parameters
        ----------
        model : Recommender

        Returns
        -------
        ModelState
        """
        info = {**self.info, "n_users": len(model.user_vocab_),
                "n_items": len(model.item_vocab_)}
        return dataclasses.replace(self, model=model, info=info)


class ReloadRefusedError(ModelFormatError):
    """A reload named a path that is not a model directory inside the model root."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class ModelRoot:
    """The directory that reloads may load models from.

    Parameters
    ----------
    root : path
        An existing directory.

    Raises
    ------
    MaasrecError
        If ``root`` is not an existing directory.
    """

    def __init__(self, root: str | os.PathLike):
        self.abs = os.path.abspath(os.fspath(root))
        self.real = os.path.realpath(self.abs)
        if not os.path.isdir(self.real):
            raise MaasrecError(f"the model root {self.abs!r} is not a directory")

    def __repr__(self) -> str:
        return f"ModelRoot({self.abs!r})"

    def resolve(self, model_dir: str | os.PathLike) -> tuple[str, str, str]:
        """Check a model directory named by a client.

        Parameters
        ----------
        model_dir : path
            Relative to the root, or absolute.

        Returns
        -------
        given : str
            The absolute path, symbolic links not resolved.
        real : str
            The resolved path (load from this one: a link changed later cannot
            redirect the load outside the root).
        name : str
            The path relative to the root.

        Raises
        ------
        ReloadRefusedError
            With one message for every reason (outside the root, missing, not a
            directory, no ``maasrec.json``): the answer never tells whether a path
            exists.
        """
        text = os.fspath(model_dir)
        refused = ReloadRefusedError(
            f"reload refused: {str(text)[:200]!r} is not a model directory inside this "
            f"server's model root (give a path relative to the root, e.g. the name "
            f"GET /v1/model shows); the old model keeps serving")
        if not isinstance(text, str) or not text or "\x00" in text:
            raise refused
        given = os.path.abspath(os.path.join(self.abs, text))
        real = os.path.realpath(given)
        if not _inside(real, self.real):
            raise refused
        if not (os.path.isdir(real) and os.path.isfile(os.path.join(real, "maasrec.json"))):
            raise refused
        name = os.path.relpath(given, self.abs)
        if name.startswith(os.pardir):  # lexically outside, really inside (links)
            name = os.path.relpath(real, self.real)
        if name == os.curdir:
            name = os.path.basename(self.real) or os.sep
        return given, real, name

    def scrub(self, message: str) -> str:
        """``message`` with the root's absolute path replaced by ``<model root>``."""
        for p in sorted({self.real, self.abs}, key=len, reverse=True):
            message = message.replace(p, "<model root>")
        return message


def _describe(model: Recommender, model_dir: str | None, version: int,
              name: str | None = None) -> dict:
    meta: dict = {}
    if model_dir is not None:
        try:
            with open(Path(model_dir) / "maasrec.json", encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):  # already loaded successfully; describe what we can
            meta = {}
    cls = type(model)
    return {
        "class": meta.get("class") or f"{cls.__module__}.{cls.__qualname__}",
        "params": meta.get("params") if isinstance(meta.get("params"), dict)
        else _jsonable(model.get_params(deep=False)),
        "maasrec_version": meta.get("maasrec_version") if meta else __version__,
        "server_maasrec_version": __version__,
        "n_users": len(model.user_vocab_),
        "n_items": len(model.item_vocab_),
        "user_id_kind": model.user_vocab_.id_kind,
        "item_id_kind": model.item_vocab_.id_kind,
        "fitted_at": getattr(model, "fitted_at_", None),
        "saved_at": meta.get("saved_at"),
        "loaded_at": _now(),
        "model_name": name,
        "model_version": version,
        "supports_history": bool(getattr(model, "supports_history", False)),
    }


def load_checked(model_dir: str | os.PathLike) -> Recommender:
    """Load a model directory and check that it answers a probe request.

    Parameters
    ----------
    model_dir : path

    Returns
    -------
    Recommender

    Raises
    ------
    ModelFormatError
        For any failure, with the reason: not a model directory, corrupt files, a newer
        format, or a model that fails its probe ``recommend`` call.
    """
    path = str(model_dir)
    try:
        model = Recommender.load(path)
    except ModelFormatError:
        raise
    except Exception as exc:  # corrupt files surface as many error types
        raise ModelFormatError(f"cannot load the model in {path!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
    try:
        if len(model.user_vocab_):
            model.recommend(model.user_vocab_.ids[:1], k=1)
    except Exception as exc:
        raise ModelFormatError(f"the model in {path!r} loads but fails a probe "
                               f"recommend call: {type(exc).__name__}: {exc}") from exc
    return model


class ModelHolder:
    """Holds the current :class:`ModelState`; reloads swap it atomically.

    Parameters
    ----------
    source : path or Recommender
        A saved model directory, or an already fitted model.
    model_root : path, optional
        The directory reloads may load from (see the module docstring). Default: the
        parent directory of ``source``; for an in-memory model, no root (a reload then
        needs one configured).

    Raises
    ------
    MaasrecError
        ``source`` is not inside ``model_root``, or ``model_root`` is not a directory.
    ModelFormatError
        ``source`` cannot be loaded.
    """

    def __init__(self, source: str | os.PathLike | Recommender,
                 model_root: str | os.PathLike | None = None):
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        if isinstance(source, Recommender):
            if not source.is_fitted:
                raise MaasrecError(f"cannot serve an unfitted {type(source).__name__}")
            self.root = ModelRoot(model_root) if model_root is not None else None
            model, given, name = source, None, None
        else:
            path = os.path.abspath(os.fspath(source))
            self.root = ModelRoot(model_root if model_root is not None
                                  else os.path.dirname(path))
            try:
                given, real, name = self.root.resolve(path)
            except ReloadRefusedError:
                raise MaasrecError(
                    f"cannot serve {path!r}: not a model directory inside the model root "
                    f"{self.root.abs!r} (set the model root to a directory that holds it)"
                ) from None
            model = load_checked(real)
        self._state = ModelState(model, 1, given, name, _describe(model, given, 1, name))

    @property
    def state(self) -> ModelState:
        """ModelState: the current model (take it once per request)."""
        return self._state

    def reload(self, model_dir: str | os.PathLike | None = None) -> tuple[ModelState, ModelState]:
        """Load a model directory inside the model root and make it the served model.

        Runs in the caller's thread (the app calls it in a worker thread); concurrent
        reloads are serialised.

        Parameters
        ----------
        model_dir : path, optional
            Relative to the model root (or absolute, inside it). Default: the directory
            of the current model, looked up again (a re-pointed symbolic link is
            followed, as long as it stays inside the root).

        Returns
        -------
        old, new : ModelState

        Raises
        ------
        ModelFormatError
            If the directory is outside the model root, cannot be loaded or fails its
            probe (:class:`ReloadRefusedError` for paths that are not a model directory
            inside the root, with one message whatever the reason); the current model
            stays in place. Messages never hold the root's absolute path.
        """
        with self._reload_lock:
            current = self._state
            if model_dir is None:
                if current.model_dir is None:
                    raise ModelFormatError("this server was started from an in-memory model; "
                                           "give model_dir to reload")
                model_dir = current.model_dir
            if self.root is None:
                raise ModelFormatError("reload refused: this server has no model root "
                                       "(create_app(..., model_root=DIR)); the old model "
                                       "keeps serving")
            given, real, name = self.root.resolve(model_dir)
            try:
                model = load_checked(real)
            except ModelFormatError as exc:
                raise ModelFormatError(self.root.scrub(str(exc))) from exc
            version = current.version + 1
            new = ModelState(model, version, given, name, _describe(model, real, version, name))
            with self._swap_lock:
                old, self._state = self._state, new
        logger.info("reloaded %s from %s (model version %d -> %d)", new.info["class"], real,
                    old.version, new.version)
        return old, new
