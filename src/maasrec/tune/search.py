""":func:`tune`: choose a model and its parameters on validation data with Optuna."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from typing import Any

import pandas as pd

from .._rng import seed_from
from ..data.interactions import Interactions, as_interactions
from ..exceptions import DataError, MaasrecError
from ..metrics.evaluation import METRICS
from ..models._interrupt import FitInterrupted, fit_deadline
from . import _confirm
from ._budget import Budget, parse_budget
from ._models import Candidate, default_params, resolve_models
from ._optuna import import_optuna, open_study, per_model_pruner, redact, storage_url
from ._schedule import run_spread
from .callbacks import BudgetExhausted, TrialCallback, trainer_callbacks
from .result import TuneBudgetError, TuneResult, leaderboard

__all__ = ["tune"]

logger = logging.getLogger(__name__)

#: Validation metrics the neural models' early stopping understands (``val_metric``).
_VAL_METRICS = ("ndcg", "hit", "recall", "precision", "map", "mrr")
#: Consecutive trials repeating earlier parameters after which the space counts as exhausted.
_MAX_REPEATS = 20
#: Consecutive trials not started for lack of time after which the search ends (it also
#: ends when every model was found too slow for the time left).
_MAX_SKIPS = 3


class _Skipped(Exception):
    """A trial not run (no time left for it, or its fit failed): recorded as FAIL."""


def _parse_metric(metric: Any) -> tuple[str, int, bool]:
    """``"ndcg@10"`` -> (``"ndcg@10"``, 10, maximize); names from maasrec.metrics."""
    if not isinstance(metric, str) or not metric.strip():
        raise DataError(f"metric must be a name such as 'ndcg@10', got {metric!r}")
    base, _, at = metric.strip().lower().partition("@")
    if base not in METRICS:
        raise DataError(f"unknown metric {metric!r}; valid names are {list(METRICS)}, "
                        f"with a cut-off like 'ndcg@10'")
    if base == "auc":
        if at:
            raise DataError(f"'auc' takes no cut-off, got {metric!r}")
        return "auc", 10, True
    k = 10
    if at:
        if not at.isdigit() or int(at) < 1:
            raise DataError(f"bad cut-off in metric {metric!r}; write it like 'ndcg@10'")
        k = int(at)
    return f"{base}@{k}", k, base != "gini"


def _check_n_trials(n_trials: Any) -> int | None:
    if n_trials is None:
        return None
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise DataError(f"n_trials must be a positive integer or None, got {n_trials!r}")
    return int(n_trials)


def _data(train: Any, valid: Any) -> tuple[Interactions, Interactions]:
    """Both as Interactions, ``valid`` on train's vocabularies (rows of unknown ids dropped)."""
    train = as_interactions(train)
    if isinstance(valid, pd.DataFrame):
        valid = Interactions.from_pandas(valid)
    valid = as_interactions(valid)
    aligned = valid.with_vocab(train.user_vocab, train.item_vocab, unknown="ignore")
    if aligned.nnz == 0:
        raise DataError("valid has no interaction of a user and an item present in train: "
                        "nothing to validate on")
    if aligned.nnz < valid.nnz:
        logger.info("tune: %d of %d validation rows name a user or item absent from train "
                    "and are left out", valid.nnz - aligned.nnz, valid.nnz)
    return train, aligned


def _union(train: Interactions, valid: Interactions) -> Interactions:
    """train + valid as one Interactions (raw ids, ratings and timestamps kept)."""
    both = pd.concat([train.to_pandas(), valid.to_pandas()], ignore_index=True)
    return Interactions.from_pandas(both)


def _is_classical(cls: type) -> bool:
    """Fitted without the Trainer (no per-epoch stop): maasrec.models and non-maasrec."""
    return not cls.__module__.startswith("maasrec.neural")


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _decode(cand: Candidate, trial_params: dict) -> dict:
    """Constructor parameters of a trial (its stored values mapped back to the space)."""
    params = dict(cand.base)
    for p in cand.params:
        key = f"{cand.name}.{p.name}"
        if p.kind == "fixed":
            params[p.name] = p.value
        elif key in trial_params:
            v = trial_params[key]
            if p.kind == "choice" and v not in p.choices:
                v = p.choices[[repr(c) for c in p.choices].index(v)]
            params[p.name] = v
    return params


class _Search:
    """The objective and bookkeeping of one :func:`tune` call."""

    def __init__(self, optuna, study, candidates: list[Candidate], train: Interactions,
                 valid: Interactions, metric: str, k: int, maximize: bool, budget: Budget,
                 seed: int, fit_kwargs: dict, bar):
        self.optuna, self.study, self.train, self.valid = optuna, study, train, valid
        self.cands = {c.name: c for c in candidates}
        self.metric, self.k, self.maximize, self.budget = metric, k, maximize, budget
        self.seed, self.fit_kwargs, self.bar = seed, fit_kwargs, bar
        self.best: tuple[float, int, Any] | None = None  # value, trial number, model
        self.ran = self.fitted = self.repeats = self.skips = 0
        self.exhausted = False
        self.too_slow: set[str] = set()  # models not started for lack of time
        # the "spread" strategy (_schedule.py): the family searched now and its share's end
        self.slice_model: str | None = None
        self.slice_end: float | None = None
        self.slice_len: float | None = None
        self.exhausted_models: set[str] = set()  # families whose space repeats itself
        # each family's best trial here: value, trial number, model, {user: value}
        self.family: dict[str, tuple[float, int, Any, dict]] = {}
        self.reserved = 0.0  # seconds held back from the search for the finalists' check
        self.confirm = False  # re-score the finalists on a second fold (_confirm.py)

    # -- parameters ---------------------------------------------------------------------
    def params_of(self, cand: Candidate, trial_params: dict) -> dict:
        """All the constructor parameters a trial fits with (searched, fixed, standard)."""
        params = _decode(cand, trial_params)
        names = set(cand.cls._get_param_names())
        searched = {p.name for p in cand.params}
        if "random_state" in names and params.get("random_state") is None:
            params["random_state"] = self.seed
        if "verbose" in names and "verbose" not in searched:
            params["verbose"] = False
        base = self.metric.partition("@")[0]
        if "val_metric" in names and "val_metric" not in searched \
                and "val_metric" not in cand.base and base in _VAL_METRICS:
            params["val_metric"] = self.metric
        return params

    def _repeat_of(self, trial) -> Any:
        for t in self.study.get_trials(deepcopy=False,
                                       states=(self.optuna.trial.TrialState.COMPLETE,)):
            if t.number != trial.number and t.params == trial.params:
                return t
        return None

    # -- the objective ------------------------------------------------------------------
    def __call__(self, trial) -> float:
        self.ran += 1
        trial.set_user_attr("worker", _worker())
        name = trial.suggest_categorical("model", list(self.cands))
        cand = self.cands[name]
        for p in cand.params:
            p.suggest(trial, name)
        same = self._repeat_of(trial)
        if same is not None:  # a discrete space tried already: no second fit
            self.repeats += 1
            trial.set_user_attr("note", f"same parameters as trial {same.number}")
            trial.set_user_attr("fit_seconds", 0.0)
            if self.repeats >= _MAX_REPEATS:
                self.exhausted = True
                if self.slice_model is not None:
                    self.exhausted_models.add(self.slice_model)
                self.study.stop()
            return float(same.value)
        self.repeats = 0
        ok, expected = self.budget.fits(name, _is_classical(cand.cls))
        if not ok:
            self.skips += 1
            left = max(0.0, self.budget.remaining())
            trial.set_user_attr("note", "not started: the budget ended" if expected is None
                                else f"not started: expected {expected:.0f} s, "
                                     f"{left:.0f} s left")
            trial.set_user_attr("budget", True)
            self.too_slow.add(name)
            if self.skips >= _MAX_SKIPS or self.budget.expired() \
                    or self.too_slow >= set(self.cands):
                self.study.stop()
            raise _Skipped("budget")
        self.skips = 0
        return self._run(trial, cand, self.params_of(cand, trial.params))

    def _run(self, trial, cand: Candidate, params: dict) -> float:
        from ..metrics.evaluation import evaluate

        classical = _is_classical(cand.cls)
        abort = self._abort_deadline()
        cb = TrialCallback(trial, self._deadline(), grace=self.budget.grace,
                           report=self.maximize, abort_deadline=abort)
        t0 = time.perf_counter()
        self.fitted += 1
        try:
            model = cand.cls(**params)
            # a classical fit (or one inside a neural model's) stops between two of its
            # blocks of work once the abort deadline and the grace have passed
            stop = None if abort is None else abort + self.budget.grace
            with trainer_callbacks(cb), fit_deadline(stop):
                if classical:
                    model.fit(self.train, **self.fit_kwargs)
                else:
                    model.fit(self.train, **self.fit_kwargs, validation=self.valid)
            ev = evaluate(model, self.train, self.valid, k=self.k, metrics=[self.metric],
                          n_bootstrap=0)
            value = float(ev[self.metric])
        except self.optuna.TrialPruned:
            self._record(trial, cand, cb, t0)
            raise
        except BudgetExhausted as exc:
            self._record(trial, cand, cb, t0)
            trial.set_user_attr("budget", True)
            trial.set_user_attr("note", str(exc))
            raise self.optuna.TrialPruned(str(exc)) from None
        except FitInterrupted as exc:
            raise self._interrupted(trial, cand, cb, t0, exc) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a parameter set that cannot be fitted: next trial
            self._record(trial, cand, cb, t0)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            logger.warning("tune: trial %d (%s) failed: %s: %s", trial.number, cand.name,
                           type(exc).__name__, exc)
            raise _Skipped("failed") from exc
        self._record(trial, cand, cb, t0, model)
        if not math.isfinite(value):
            trial.set_user_attr("error", f"{self.metric} is {value}")
            raise _Skipped("not finite")
        better = self.best is None or (value > self.best[0] if self.maximize
                                       else value < self.best[0])
        if better:
            self.best = (value, trial.number, model)
        fam = self.family.get(cand.name)
        if self.maximize and (fam is None or value > fam[0]):
            vals = ev.per_user.get(self.metric)
            per_user = {} if vals is None or len(vals) != len(ev.users) else dict(
                zip(ev.users.tolist(), [float(v) for v in vals]))
            self.family[cand.name] = (value, trial.number, model, per_user)
        return value

    def _interrupted(self, trial, cand: Candidate, cb: TrialCallback, t0: float,
                     exc: FitInterrupted) -> Exception:
        """Record a fit stopped between two blocks by the deadline (like a neural trial
        aborted mid-epoch: PRUNED, no model); the TrialPruned to raise."""
        seconds = time.perf_counter() - t0
        self._record(trial, cand, cb, t0, complete=False)
        if self._share_only():
            note = f"stopped at the end of its family's time share after {seconds:.0f} s"
        else:
            trial.set_user_attr("budget", True)
            note = f"stopped by the budget after {seconds:.0f} s"
        note += f" ({exc.where}, unfinished)" if exc.where else " (unfinished)"
        trial.set_user_attr("note", note)
        logger.info("tune: trial %d (%s) %s", trial.number, cand.name, note)
        return self.optuna.TrialPruned(note)

    def hold_back(self, share: float = 0.25) -> None:
        """Hold back from the search the time the finalists' second fits are expected to
        take (the families within ``Z + 1`` paired standard errors of the leader after
        the defaults, tuning may bring them closer; at most ``share`` of the time left):
        the budget's deadline moves earlier until :meth:`release`."""
        if not self.confirm or self.budget.deadline is None or not self.maximize:
            return
        names = _confirm.finalists(self, _confirm.Z + 1.0)
        if len(names) < 2:
            return
        need = 0.0
        for name in names:
            exp = self.budget.expected(name, True)
            need += exp if exp is not None else 0.0
        # fits and evaluations of the finalists, the fold's split: a margin of 50% + 2 s
        self.reserved = max(0.0, min(1.5 * need + 2.0, share * self.budget.remaining()))
        self.budget.deadline -= self.reserved

    def release(self) -> None:
        """Give the held-back time back to the budget."""
        if self.reserved and self.budget.deadline is not None:
            self.budget.deadline += self.reserved
        self.reserved = 0.0

    def _record(self, trial, cand: Candidate, cb: TrialCallback, t0: float,
                model: Any = None, complete: bool = True) -> None:
        seconds = time.perf_counter() - t0
        self.budget.record(cand.name, seconds, complete)
        trial.set_user_attr("fit_seconds", round(seconds, 3))
        log = getattr(model, "training_log_", None) or {}
        if cb.epochs:
            trial.set_user_attr("epochs", int(cb.epochs))
        if log.get("best_epoch") is not None:
            trial.set_user_attr("best_epoch", int(log["best_epoch"]))
        if cb.stopped_by_budget and model is not None:
            if self._share_only():
                trial.set_user_attr("note", f"stopped at the end of its family's time share "
                                            f"after epoch {cb.epochs} (best epoch "
                                            f"{log.get('best_epoch')})")
            else:
                trial.set_user_attr("budget", True)
                trial.set_user_attr("note", f"stopped by the budget after epoch {cb.epochs} "
                                            f"(best epoch {log.get('best_epoch')})")

    # -- the "spread" strategy ------------------------------------------------------------
    def _deadline(self) -> float | None:
        """When a trial must stop: the budget's end, or its family's share's end."""
        ends = [d for d in (self.budget.deadline, self.slice_end) if d is not None]
        return min(ends) if ends else None

    def _abort_deadline(self) -> float | None:
        """When a neural trial is stopped mid-epoch: the budget's end, or half its
        family's share past the share's end (an epoch longer than the share would
        otherwise take the time of the families after it)."""
        ends = [self.budget.deadline]
        if self.slice_end is not None and self.slice_len:
            ends.append(self.slice_end + 0.5 * self.slice_len)
        ends = [d for d in ends if d is not None]
        return min(ends) if ends else None

    def _share_only(self) -> bool:
        """A trial stopped by its family's share, not by the end of the whole budget."""
        return self.slice_end is not None and not self.budget.expired() and (
            self.budget.deadline is None or self.slice_end < self.budget.deadline)

    def run_slice(self, model: str | None, n_trials: int | None, seconds: float,
                  base_sampler) -> int:
        """Up to ``n_trials`` trials of ``model`` (TPE over its parameters only) within
        ``seconds``; returns the number of trials run."""
        optuna, study = self.optuna, self.study
        if model is None:
            study.sampler = base_sampler
        else:
            with warnings.catch_warnings():  # experimental in Optuna (stable since 2.4)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.sampler = optuna.samplers.PartialFixedSampler({"model": model},
                                                                    base_sampler)
        finite = seconds is not None and math.isfinite(seconds)
        cand = self.cands.get(model) if model is not None else None
        if cand is not None and finite and _is_classical(cand.cls):
            expected = self.budget.expected(model, True)
            if expected is not None and expected > seconds:
                logger.info("tune: %s not tried in this round: a fit takes about %.0f s, its "
                            "share is %.0f s", model, expected, seconds)
                return 0
        self.slice_model = model
        self.slice_end = time.monotonic() + max(0.0, seconds) if finite else None
        self.slice_len = max(0.0, seconds) if finite else None
        self.repeats = 0
        before = self.ran
        timeout = None
        if finite or self.budget.deadline is not None:
            timeout = max(0.0, min(seconds if finite else math.inf, self.budget.remaining()))
        try:
            study.optimize(self, n_trials=n_trials, timeout=timeout, catch=(_Skipped,),
                           callbacks=[self.on_trial_end], gc_after_trial=False)
        finally:
            self.slice_model = self.slice_end = None
        return self.ran - before

    def _share_spent(self) -> bool:
        """The next trial of the family searched now would not end within its share."""
        if self.slice_end is None or self.slice_model is None:
            return False
        left = self.slice_end - time.monotonic()
        cand = self.cands.get(self.slice_model)
        classical = cand is not None and _is_classical(cand.cls)
        expected = self.budget.expected(self.slice_model, classical)
        if left <= 0:
            return True
        if expected is None:
            return False
        # a classical fit would be stopped unfinished; a neural one stops at an epoch end
        return expected > left if classical else 0.5 * expected > left

    def on_trial_end(self, study, frozen) -> None:
        """Optuna callback: the progress bar; stop once the budget is spent."""
        if self.bar is not None:
            post: dict[str, Any] = {}
            if self.best is not None:
                post["best"] = f"{self.best[0]:.4f}"
                post["model"] = study.trials[self.best[1]].params.get("model") \
                    if self.best[1] < len(study.trials) else ""
            if self.budget.deadline is not None:
                post["left"] = f"{max(0.0, self.budget.remaining()):.0f}s"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        if self.budget.expired() or self._share_spent():
            study.stop()


def _enqueue_defaults(study, candidates: list[Candidate]) -> None:
    """Each model's own defaults go first (the sampler explores after them)."""
    done = {t.params.get("model") for t in study.get_trials(deepcopy=False)}
    for cand in candidates:
        if cand.name in done:
            continue
        params: dict[str, Any] = {"model": cand.name, **default_params(cand)}
        study.enqueue_trial(params, skip_if_exists=True)


def _make_sampler(optuna, seed: int, shared: bool):
    # workers sharing a study draw different start points (the process id is mixed in);
    # constant_liar keeps them from proposing the same point while both run
    s = (seed + (os.getpid() * 1_000_003 if shared else 0)) % (2**32)
    return optuna.samplers.TPESampler(seed=s, constant_liar=shared)


def _make_pruner(optuna, pruner: Any):
    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return per_model_pruner(optuna.pruners.MedianPruner(n_startup_trials=3,
                                                            n_warmup_steps=5))
    if isinstance(pruner, optuna.pruners.BasePruner):
        return per_model_pruner(pruner)
    raise DataError(f"pruner must be 'median', 'none', None or an optuna pruner, got "
                    f"{pruner!r}")


def tune(train: Any, valid: Any, models: Any = "auto", metric: str = "ndcg@10",
         budget: Any = None, n_trials: int | None = None, storage: Any = None,
         study_name: str | None = None, random_state: Any = None, refit: bool = False, *,
         item_features: Any = None, user_features: Any = None, pruner: Any = "median",
         strategy: str = "auto", confirm: bool = True, verbose: bool = False) -> TuneResult:
    """Choose a model and its parameters on validation data (Optuna's TPE search).

    Each trial picks a model family and its parameters, fits it on ``train`` and
    measures ``metric`` on ``valid`` by full ranking (``train`` items excluded). Each
    model's own defaults are tried first (not with ``storage=``, where workers may share
    the study), then the TPE sampler (seeded) explores: with several models and no
    ``storage``, family by family in rounds of successive halving over the leading
    families (``strategy="spread"``), so that no family crowds out the others. The best
    trial on ``valid`` is returned unless other families are within validation noise of
    it (``confirm``): then the finalists are re-scored on a second fold. Neural
    models report every epoch's validation value and are pruned when behind the median
    of their own earlier trials at that epoch.

    Parameters
    ----------
    train, valid : Interactions, pandas.DataFrame or scipy.sparse matrix
        Fit on ``train``, measure on ``valid`` (rows of users or items absent from
        ``train`` are left out).
    models : "auto", list or dict, default "auto"
        ``"auto"``: :data:`~maasrec.tune.AUTO_MODELS` (Popularity, ItemKNN, PureSVD,
        ALS, EASE, MultVAE). A list of names, classes or instances (an instance's
        parameters are where its trials start), or a dict ``{model: space}`` to
        override a declared space (None: the declared one). See
        :mod:`maasrec.tune.spaces` for how a space is written.
    metric : str, default "ndcg@10"
        A name of :data:`maasrec.metrics.METRICS` with its cut-off. ``gini`` is
        minimised, the others maximised. The neural models also early-stop on it when
        their ``val_metric`` allows (ndcg, hit, recall, precision, map, mrr).
    budget : float, str or None
        Wall time of the search: seconds, or a text like ``"90s"``, ``"10min"``,
        ``"1h"``. Default: ``"10min"`` when ``n_trials`` is None too, else no limit.
        A neural trial running when it ends stops at the end of its epoch (with its best
        epoch's weights) or, past a grace of 2% of the budget (at least 1 s), in the
        middle of it (then without a model); a classical trial starts only if it is
        expected to end in time, and one still running past the grace is stopped between
        two blocks of its fit (without a model). ``refit`` comes after the budget.
    n_trials : int, optional
        Trials this call runs (other processes sharing the study run their own).
    storage : str or path, optional
        Where the study lives: a database URL Optuna accepts (``"sqlite:///tune.db"``,
        ``"postgresql://user:pw@host/db"``) or the path of a SQLite file. Several
        processes (or machines) given the same storage and ``study_name`` share one
        study: each runs its own trials, the sampler sees them all. Default: in memory.
    study_name : str, optional
        Name of the study in ``storage`` (joined when it exists).
    random_state : int, numpy Generator or None
        Seeds the sampler and every model (``random_state`` of each trial). With a shared
        storage each process mixes its process id into the sampler seed (so that workers
        do not propose the same points), and the search is not reproducible.
    refit : bool, default False
        Fit the chosen parameters again on train + valid (neural models for the number
        of epochs their best trial took, without holding data out).
    item_features, user_features : optional
        Passed to every ``fit``.
    pruner : "median", "none", None or optuna pruner, default "median"
        ``"median"``: ``MedianPruner(n_startup_trials=3, n_warmup_steps=5)`` asked with
        the trials of the same model only.
    strategy : {"auto", "spread", "joint"}, default "auto"
        How the trials are shared among several models. ``"spread"``: every model's
        defaults, then the :data:`~maasrec.tune._schedule.LEADERS` best families by
        their defaults share the time in rounds of successive halving, each running TPE
        over its own parameters. ``"joint"``: one TPE sampler over the model and every
        parameter. ``"auto"``: ``"spread"`` for several models without ``storage``,
        else ``"joint"``. See the user guide, :doc:`/tuning`.
    confirm : bool, default True
        Decide between families within validation noise on more data: the families
        whose best trial is within 2 paired standard errors (per validation user) of
        the leader's (at most 3) are fitted again on ``train`` less a per-user random
        part the size of ``valid`` (plus ``valid``) and scored on that part; the best
        mean of the two folds wins. Only with ``storage=None`` and a maximised metric;
        the evidence and the time it takes are in :doc:`/tuning`; see
        ``TuneResult.selection``.
    verbose : bool, default False
        A progress bar over the trials (best value, model, time left).

    Returns
    -------
    TuneResult
        ``best_model`` (fitted), ``best_params``, ``best_value``, ``leaderboard`` (every
        trial of the study: model, params, metric, fit_seconds, epochs, state, note,
        worker), and whether the budget ended the search.

    Raises
    ------
    MaasrecError
        optuna is missing (``pip install "maasrec[tune]"``), the storage cannot be
        opened, or every trial failed.
    TuneBudgetError
        No trial completed within the budget (``.result`` holds what was tried).
    DataError
        An unknown metric or model, an invalid search space or budget.
    """
    optuna = import_optuna()
    metric, k, maximize = _parse_metric(metric)
    n_trials = _check_n_trials(n_trials)
    seconds = parse_budget("10min" if budget is None and n_trials is None else budget)
    _check_options(refit, confirm, strategy, storage)
    candidates = resolve_models(models)
    if strategy == "auto":
        strategy = "spread" if storage is None and len(candidates) > 1 else "joint"
    train, valid = _data(train, valid)
    pruner_obj = _make_pruner(optuna, pruner)
    seed = seed_from(random_state)
    budget_ = Budget(seconds, (train.n_users, train.n_items, train.nnz))
    verbosity = optuna.logging.get_verbosity()
    # failed and skipped trials are logged here, and recorded in the leaderboard
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return _search(optuna, candidates, train, valid, metric, k, maximize, budget_,
                       n_trials, storage, study_name, seed, pruner_obj, refit,
                       item_features, user_features, verbose, strategy,
                       confirm and storage is None)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _check_options(refit: Any, confirm: Any, strategy: Any, storage: Any) -> None:
    """Refuse :func:`tune`'s flags of the wrong type and a strategy that cannot run."""
    if not isinstance(refit, bool):
        raise DataError(f"refit must be True or False, got {refit!r}")
    if not isinstance(confirm, bool):
        raise DataError(f"confirm must be True or False, got {confirm!r}")
    if strategy not in ("auto", "spread", "joint"):
        raise DataError(f"strategy must be 'auto', 'spread' or 'joint', got {strategy!r}")
    if strategy == "spread" and storage is not None:
        raise DataError("strategy='spread' runs in one process (storage=None); workers "
                        "sharing a stored study search with strategy='joint'")


def _search(optuna, candidates, train, valid, metric, k, maximize, budget_, n_trials,
            storage, study_name, seed, pruner_obj, refit, item_features, user_features,
            verbose, strategy="joint", confirm=False) -> TuneResult:
    seconds = budget_.seconds
    sampler = _make_sampler(optuna, seed, storage is not None)
    study = open_study(optuna, storage, study_name, "maximize" if maximize else "minimize",
                       sampler, pruner_obj)
    if storage is None:
        # Each model's defaults first. Not in a stored study: several workers may share it,
        # and Optuna's hand-out of an enqueued trial is not atomic on SQLite (two workers ran
        # the same one; the second could not record it: "Cannot tell a COMPLETE trial").
        _enqueue_defaults(study, candidates)
    fit_kwargs = {k_: v for k_, v in (("item_features", item_features),
                                      ("user_features", user_features)) if v is not None}
    from ..training.progress import progress

    bar = progress(total=n_trials, desc="tune", verbose=verbose, unit="trial")
    search = _Search(optuna, study, candidates, train, valid, metric, k, maximize, budget_,
                     seed, fit_kwargs, bar)
    search.confirm = confirm
    try:
        if strategy == "spread":
            run_spread(search, n_trials, sampler)
        else:
            study.optimize(search, n_trials=n_trials, timeout=None if seconds is None
                           else max(0.0, budget_.remaining()), catch=(_Skipped,),
                           callbacks=[search.on_trial_end], gc_after_trial=False)
    finally:
        study.sampler = sampler
        bar.close()
    return _finish(optuna, search, refit, storage)


def _finish(optuna, search: _Search, refit: bool, storage: Any) -> TuneResult:
    """Pick the study's best trial, its fitted model (refitted if asked), the result."""
    study, budget = search.study, search.budget
    board = leaderboard(study, search.metric, search.maximize)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    stopped = sum(1 for t in study.get_trials(deepcopy=False)
                  if t.user_attrs.get("budget") and t.user_attrs.get("worker") == _worker())
    exhausted = budget.deadline is not None and (budget.expired() or stopped > 0)
    search.release()
    selection = None
    if search.confirm and complete:
        selection = _confirm.confirm(search)
    elapsed = time.monotonic() - budget.start
    result = TuneResult(
        best_model=None, best_params={}, best_model_name=None, best_value=math.nan,
        best_trial=None, metric=search.metric, leaderboard=board, n_trials=search.ran,
        elapsed_seconds=elapsed, budget_seconds=budget.seconds, budget_exhausted=exhausted,
        stopped_by_budget=stopped, overrun_seconds=budget.overrun(), refit=refit,
        study=study, selection=selection)
    if not complete:
        where = "" if storage is None else f" in {redact(storage_url(storage))!r}"
        if exhausted or stopped:
            result.message = (f"no trial completed within the budget of "
                              f"{budget.seconds:g} s{where} ({search.fitted} fit(s) started, "
                              f"{stopped} trial(s) stopped by the budget); give a larger "
                              f"budget or faster models")
            raise TuneBudgetError(result.message, result)
        errors = [t.user_attrs.get("error") for t in study.get_trials(deepcopy=False)
                  if t.user_attrs.get("error")]
        result.message = (f"no trial completed{where}: {len(errors)} failed"
                          + (f", the first with {errors[0]}" if errors else ""))
        raise MaasrecError(result.message)
    best = study.best_trial
    if selection is not None and selection["chosen"] != best.params.get("model"):
        best = study.trials[search.family[selection["chosen"]][1]]
    cand = search.cands.get(best.params.get("model"))
    if cand is None:  # another worker searched a model this call was not given
        raise MaasrecError(f"the best trial {best.number} of the study is a "
                           f"{best.params.get('model')}, not among this call's models "
                           f"{list(search.cands)}")
    params = search.params_of(cand, best.params)
    model, how = _best_model(search, best, cand, params, refit)
    result.best_model, result.best_params = model, params
    result.best_model_name, result.best_value = cand.name, float(best.value)
    result.best_trial = best.number
    chosen = ""
    if selection is not None:
        f2 = selection["finalists"][cand.name].get("fold2")
        chosen = (f", chosen among {len(selection['finalists'])} finalists within "
                  f"{_confirm.Z:g} standard errors ({', '.join(selection['finalists'])})"
                  + (f" by the mean of valid and a second fold ({f2:.4f})"
                     if f2 is not None else ""))
    result.message = (f"best {cand.name} {search.metric}={best.value:.4f} (trial "
                      f"{best.number} of {len(study.trials)}){how}{chosen}; "
                      + (f"the budget of {budget.seconds:g} s ended the search"
                         + (f", {stopped} trial(s) stopped by it" if stopped else "")
                         if exhausted else f"{search.ran} trial(s) run here"))
    if exhausted:
        logger.info("tune: %s", result.message)
    return result


def _best_model(search: _Search, best, cand: Candidate, params: dict, refit: bool
                ) -> tuple[Any, str]:
    """The fitted model of the best trial: the one in memory, or fitted again."""
    if refit:
        p = dict(params)
        names = set(cand.cls._get_param_names())
        best_epoch = best.user_attrs.get("best_epoch")
        if best_epoch and "epochs" in names and not _is_classical(cand.cls):
            p["epochs"] = int(best_epoch)
            if "validation_fraction" in names:
                p["validation_fraction"] = None
        model = cand.cls(**p)
        model.fit(_union(search.train, search.valid), **search.fit_kwargs)
        return model, ", refitted on train + valid"
    if search.best is not None and search.best[1] == best.number:
        return search.best[2], ""
    fam = search.family.get(cand.name)
    if fam is not None and fam[1] == best.number:
        return fam[2], ""
    # another worker's trial, or a repeat of one: fit its parameters here
    model = cand.cls(**params)
    if _is_classical(cand.cls):
        model.fit(search.train, **search.fit_kwargs)
    else:
        model.fit(search.train, **search.fit_kwargs, validation=search.valid)
    return model, f", fitted here from trial {best.number}'s parameters"
