"""The served model and its atomic replacement (hot reload).

A request takes one :class:`ModelState` snapshot when it starts and uses only that
snapshot, so a reload never changes the model under a request: in-flight requests finish
on the old model, new requests see the new one. A reload loads and checks the new model
completely (in the caller's thread) before swapping one reference under a lock; a
directory that fails to load or to answer a probe request is refused and the old model
keeps serving.
"""

from __future__ import annotations

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

__all__ = ["ModelHolder", "ModelState"]

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
        Where it was loaded from (None for an in-memory model).
    info : dict
        The ``GET /v1/model`` body.
    """

    model: Recommender
    version: int
    model_dir: str | None
    info: dict = field(repr=False)


def _describe(model: Recommender, model_dir: str | None, version: int) -> dict:
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
        "model_dir": model_dir,
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
        A saved model directory, or an already fitted model (then ``reload`` needs an
        explicit directory).
    """

    def __init__(self, source: str | os.PathLike | Recommender):
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        if isinstance(source, Recommender):
            if not source.is_fitted:
                raise MaasrecError(f"cannot serve an unfitted {type(source).__name__}")
            model, model_dir = source, None
        else:
            model_dir = os.path.abspath(os.fspath(source))
            model = load_checked(model_dir)
        self._state = ModelState(model, 1, model_dir, _describe(model, model_dir, 1))

    @property
    def state(self) -> ModelState:
        """ModelState: the current model (take it once per request)."""
        return self._state

    def reload(self, model_dir: str | os.PathLike | None = None) -> tuple[ModelState, ModelState]:
        """Load a model directory and make it the served model.

        Runs in the caller's thread (the app calls it in a worker thread); concurrent
        reloads are serialised.

        Parameters
        ----------
        model_dir : path, optional
            Default: the directory of the current model.

        Returns
        -------
        old, new : ModelState

        Raises
        ------
        ModelFormatError
            If the directory cannot be loaded or fails its probe; the current model
            stays in place.
        """
        with self._reload_lock:
            current = self._state
            if model_dir is None:
                if current.model_dir is None:
                    raise ModelFormatError("this server was started from an in-memory model; "
                                           "give model_dir to reload")
                model_dir = current.model_dir
            path = os.path.abspath(os.fspath(model_dir))
            model = load_checked(path)
            version = current.version + 1
            new = ModelState(model, version, path, _describe(model, path, version))
            with self._swap_lock:
                old, self._state = self._state, new
        logger.info("reloaded %s from %s (model version %d -> %d)", new.info["class"], path,
                    old.version, new.version)
        return old, new
