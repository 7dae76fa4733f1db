"""What :func:`maasrec.tune.tune` returns: the best model, its parameters, a leaderboard."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..exceptions import MaasrecError

__all__ = ["TuneBudgetError", "TuneResult", "leaderboard"]

#: Columns of :attr:`TuneResult.leaderboard` besides the metric's own column.
COLUMNS = ("trial", "model", "params", "fit_seconds", "epochs", "state", "note", "worker")


def _note(t: Any) -> str:
    a = t.user_attrs
    if a.get("note"):
        return str(a["note"])
    if t.state.name == "PRUNED":
        step = t.last_step
        return f"pruned at epoch {step}" if step is not None else "pruned"
    if t.state.name == "FAIL":
        return str(a.get("error", "failed"))
    if t.state.name == "WAITING":
        return "not run: the search ended first"
    return ""


def _value(t: Any) -> float:
    if t.value is not None:
        return float(t.value)
    if t.intermediate_values:  # a pruned or stopped neural trial: its best epoch so far
        vals = [v for v in t.intermediate_values.values() if v == v]
        return max(vals) if vals else math.nan
    return math.nan


def leaderboard(study: Any, metric: str, maximize: bool = True) -> pd.DataFrame:
    """One row per trial of ``study``, the best first.

    Parameters
    ----------
    study : optuna.Study
    metric : str
        Name of the value column.
    maximize : bool, default True

    Returns
    -------
    pandas.DataFrame
        ``trial`` (number in the study), ``model``, ``params`` (the searched parameters,
        by their constructor names), the metric on the validation data (for a pruned
        trial: its best epoch's validation value, in ``note`` why it stopped),
        ``fit_seconds`` (fit and validation), ``epochs`` (neural models), ``state``
        (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING`` for another worker's trial in
        progress, ``WAITING`` for a model's defaults queued but not reached), ``note``
        and ``worker`` (host:pid that ran it).
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        # a queued default trial the search ended before: its model is in the queue entry
        queued = t.system_attrs.get("fixed_params", {}) if t.state.name == "WAITING" else {}
        model = t.params.get("model", t.user_attrs.get("model", queued.get("model")))
        prefix = f"{model}."
        params = {k[len(prefix):]: v for k, v in t.params.items() if k.startswith(prefix)}
        params.update(t.user_attrs.get("decoded", {}))
        rows.append({"trial": t.number, "model": model, "params": params, metric: _value(t),
                     "fit_seconds": t.user_attrs.get("fit_seconds", math.nan),
                     "epochs": t.user_attrs.get("epochs"), "state": t.state.name,
                     "note": _note(t), "worker": t.user_attrs.get("worker")})
    df = pd.DataFrame(rows, columns=["trial", "model", "params", metric, *COLUMNS[3:]])
    if df.empty:
        return df
    df["_done"] = df["state"] != "COMPLETE"
    df = df.sort_values(["_done", metric, "trial"], ascending=[True, not maximize, True],
                        na_position="last", kind="stable").drop(columns="_done")
    return df.reset_index(drop=True)


@dataclass
class TuneResult:
    """The outcome of :func:`~maasrec.tune.tune`.

    Attributes
    ----------
    best_model : Recommender or None
        The best trial's model, fitted (on train + valid with ``refit=True``); None only
        when no trial completed (then :func:`~maasrec.tune.tune` raises
        :class:`TuneBudgetError`, which carries this result).
    best_params : dict
        Its constructor parameters (all of them, searched or not).
    best_model_name : str or None
    best_value : float
        Its metric on the validation data.
    best_trial : int or None
        Its number in the study.
    metric : str
    leaderboard : pandas.DataFrame
        Every trial of the study (see :func:`~maasrec.tune.result.leaderboard`).
    n_trials : int
        Trials this call ran.
    elapsed_seconds : float
        Wall time of the search (not counting ``refit``).
    budget_seconds : float or None
    budget_exhausted : bool
        The budget ended the search (rather than ``n_trials``).
    stopped_by_budget : int
        Trials stopped (or not started) because the budget ended; see ``leaderboard.note``.
    overrun_seconds : float
        How long the last trial ran past the deadline (a classical fit is never
        interrupted; a neural one ends its epoch).
    refit : bool
    study : optuna.Study
        The study itself (its storage, for distributed runs).
    message : str
        One line saying how the search ended.
    selection : dict or None
        How the returned family was chosen when several were within validation noise
        (``confirm=True``, see :mod:`maasrec.tune._confirm`): ``finalists`` (for each:
        ``trial``, ``valid``, ``fold2`` its value on a second fold carved from train,
        ``mean``), ``chosen``, ``fold_seed`` and ``rule``; None when the leader on valid had no
        finalist beside it (or ``confirm=False``).
    """

    best_model: Any
    best_params: dict
    best_model_name: str | None
    best_value: float
    best_trial: int | None
    metric: str
    leaderboard: pd.DataFrame
    n_trials: int
    elapsed_seconds: float
    budget_seconds: float | None
    budget_exhausted: bool
    stopped_by_budget: int
    overrun_seconds: float
    refit: bool
    study: Any = field(repr=False, default=None)
    message: str = ""
    selection: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the leaderboard as a list of rows)."""
        lb = self.leaderboard.copy()
        lb = lb.astype(object).where(lb.notna(), None)
        return {"best_model": self.best_model_name, "best_params": _jsonable(self.best_params),
                "best_value": self.best_value, "best_trial": self.best_trial,
                "metric": self.metric, "n_trials": self.n_trials,
                "elapsed_seconds": self.elapsed_seconds, "budget_seconds": self.budget_seconds,
                "budget_exhausted": self.budget_exhausted,
                "stopped_by_budget": self.stopped_by_budget,
                "overrun_seconds": self.overrun_seconds, "refit": self.refit,
                "message": self.message, "selection": _jsonable(self.selection),
                "leaderboard": _jsonable(lb.to_dict(orient="records"))}

    def __repr__(self) -> str:
        return (f"TuneResult(best={self.best_model_name} {self.metric}={self.best_value:.4f}, "
                f"params={self.best_params!r}, trials={self.n_trials}, "
                f"elapsed={self.elapsed_seconds:.0f}s{', budget exhausted' if self.budget_exhausted else ''})")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and callable(x.item):
        try:
            return _jsonable(x.item())
        except (TypeError, ValueError):
            return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


class TuneBudgetError(MaasrecError):
    """No trial completed within the budget.

    Attributes
    ----------
    result : TuneResult
        The search as it stood (``best_model`` None, the leaderboard of what was tried).
    """

    def __init__(self, message: str, result: TuneResult):
        super().__init__(message)
        self.result = result
