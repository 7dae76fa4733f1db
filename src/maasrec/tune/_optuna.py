"""Optuna behind :func:`maasrec.tune.tune`: the lazy import, the study, the per-model pruner."""

from __future__ import annotations

import os
import random
import re
import time
import warnings
from typing import Any

from ..exceptions import DataError, MaasrecError

__all__ = ["import_optuna", "open_study", "per_model_pruner", "redact", "storage_url"]


#: Tries to open a storage whose tables another worker is creating at the same moment.
_OPEN_ATTEMPTS = 8
_RACES = ("already exists", "database is locked", "UNIQUE constraint", "Duplicate",
          "duplicate key")


def import_optuna():
    """The ``optuna`` module, or a :class:`MaasrecError` naming the extra."""
    try:
        import optuna
    except ImportError:
        raise MaasrecError('maasrec.tune needs the optuna package: pip install '
                           '"maasrec[tune]"') from None
    return optuna


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``user:secret@`` -> ``user:***@``)."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", str(url))


def storage_url(storage: Any) -> str | None:
    """A database URL from ``storage``: None stays None, a path becomes a SQLite URL.

    Parameters
    ----------
    storage : None, str or os.PathLike
        A database URL Optuna accepts (``sqlite:///x.db``, ``postgresql://...``,
        ``mysql+pymysql://...``) or the path of a SQLite file.

    Returns
    -------
    str or None
    """
    if storage is None:
        return None
    if isinstance(storage, os.PathLike):
        storage = os.fspath(storage)
    if not isinstance(storage, str) or not storage.strip():
        raise DataError(f"storage must be a database URL or the path of a SQLite file, got "
                        f"{storage!r}")
    if "://" in storage:
        return storage
    return "sqlite:///" + os.path.abspath(storage)


def _rdb_storage(optuna, url: str):
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes write one file: wait for the lock rather than fail at once
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    # heartbeats: a worker that dies leaves no trial RUNNING for ever (the next worker's
    # optimize marks it FAIL after the grace period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120,
                                          **kwargs)


def open_study(optuna, storage: Any, study_name: str | None, direction: str, sampler,
               pruner):
    """Create or join the study (``load_if_exists``): several processes share one.

    Raises
    ------
    MaasrecError
        The storage cannot be opened (the message names the URL, password redacted), or
        an existing study of that name optimises the other direction.
    """
    url = storage_url(storage)
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise DataError(f"study_name must be a non-empty string, got {study_name!r}")
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            rdb = None if url is None else _rdb_storage(optuna, url)
            study = optuna.create_study(storage=rdb, study_name=study_name, sampler=sampler,
                                        pruner=pruner, direction=direction,
                                        load_if_exists=True)
            break
        except (MaasrecError, KeyboardInterrupt):
            raise
        except Exception as exc:
            text = str(exc)
            # workers starting together on a new database race to create its tables
            if attempt + 1 < _OPEN_ATTEMPTS and any(w in text for w in _RACES):
                time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
                continue
            msg = redact(text.splitlines()[0] if text else type(exc).__name__)
            raise MaasrecError(f"cannot open the tuning storage {redact(url)!r}: "
                               f"{type(exc).__name__}: {msg}") from None
    if study.direction.name.lower() != direction:
        raise MaasrecError(f"study {study_name!r} in {redact(url)!r} is set to "
                           f"{study.direction.name.lower()} its objective, this metric needs "
                           f"{direction}: use another study_name")
    return study


class _ModelView:
    """A study seen through one model: ``get_trials`` keeps that model's trials only."""

    def __init__(self, study, model: Any):
        self._study = study
        self._model = model

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.params.get("model") == self._model]

    def __getattr__(self, name: str):
        return getattr(self._study, name)


def per_model_pruner(pruner):
    """``pruner`` asked with only the trials of the same model as the trial in question.

    A median rule over every model of a study would compare a VAE's epoch 5 with a
    graph model's epoch 5; each model is compared with its own earlier trials instead.

    Parameters
    ----------
    pruner : optuna.pruners.BasePruner

    Returns
    -------
    optuna.pruners.BasePruner
    """
    optuna = import_optuna()

    class PerModelPruner(optuna.pruners.BasePruner):
        def __init__(self, inner):
            self.inner = inner

        def prune(self, study, trial):
            return self.inner.prune(_ModelView(study, trial.params.get("model")), trial)

        def __repr__(self):
            return f"PerModelPruner({self.inner!r})"

    return PerModelPruner(pruner)
