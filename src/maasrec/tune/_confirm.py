"""The finalists' second opinion: leaders within validation noise re-scored on a second fold.

The best validation value of a search is biased upward (it is the maximum over many
trials of noisy estimates), the more so for the family that ran the most trials, and
two families a fraction of a standard error apart on one validation fold are not
ordered by it. So after the search, :func:`maasrec.tune.tune` (``confirm=True``):

1. takes the best trial of each family and measures, per validation user, the paired
   difference of the leader and each other family; the **finalists** are the leader and
   the families within :data:`Z` paired standard errors of it (at most
   :data:`MAX_FINALISTS`);
2. carves a **second fold** out of ``train``: per user, at random (seeded), a share of
   the rows equal to ``valid``'s size relative to ``train`` (:func:`second_fold`); each
   finalist's parameters are fitted on the rest of ``train`` plus ``valid`` and scored
   on that fold, a fold no trial was chosen on;
3. returns the finalist with the best **mean of the two folds** (validation and second
   fold; two-fold cross-validation of the finalists only).

A finalist whose second fit would not end within the budget is left out of step 2 (the
leader then wins unless another finalist was scored); with one finalist nothing is
refitted. The fitted model returned is the finalist's trial model (fitted on ``train``),
or its refit on ``train + valid`` with ``refit=True``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

__all__ = ["MAX_FINALISTS", "Z", "confirm", "finalists", "fold_params", "paired_gap",
           "per_user_values", "second_fold"]

#: Families within ``Z`` paired standard errors of the leader on validation are finalists.
Z = 2.0
#: At most this many finalists (the leader included) get a second fold.
MAX_FINALISTS = 3


def per_user_values(model: Any, seen: Any, target: Any, metric: str, k: int
                    ) -> dict[Any, float]:
    """``{raw user id: metric}`` of ``model`` on ``target`` (``seen`` items excluded)."""
    from ..metrics.evaluation import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(model, seen, target, k=k, metrics=[metric], n_bootstrap=0)
    return dict(zip(ev.users.tolist(), np.asarray(ev.per_user[metric], float).tolist()))


def paired_gap(a: dict, b: dict) -> tuple[float, float]:
    """Mean per-user difference ``a - b`` over their common users, and its standard error."""
    users = [u for u in a if u in b]
    if len(users) < 2:
        return (math.nan, math.nan)
    d = np.array([a[u] - b[u] for u in users], dtype=float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def second_fold(train: Any, valid: Any, seed: int) -> tuple[Any, Any]:
    """``(fit_on, fold)``: a per-user random part of ``train`` the size of ``valid``
    relative to ``train`` (``fold``), and the rest of ``train`` plus ``valid``."""
    from ..data.split import random_split
    from ..exceptions import ColdStartWarning
    from .search import _union

    share = min(0.5, max(0.05, valid.nnz / max(1, train.nnz)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        rest, fold = random_split(train, (1.0 - share, share), random_state=seed)
    return _union(rest, valid), fold


def fold_params(cand: Any, params: dict, best_epoch: Any) -> dict:
    """Parameters of a fit without validation data: a neural model for the number of
    epochs its trial's best epoch took, without holding data out (as ``refit``)."""
    from .search import _is_classical

    p = dict(params)
    names = set(cand.cls._get_param_names())
    if best_epoch and "epochs" in names and not _is_classical(cand.cls):
        p["epochs"] = int(best_epoch)
        if "validation_fraction" in names:
            p["validation_fraction"] = None
    return p


def finalists(search: Any, z: float = Z) -> list[str]:
    """The leader by validation and the families within ``z`` paired standard errors
    of it (each family's best trial), the best first, at most :data:`MAX_FINALISTS`."""
    fam = search.family
    if not fam:
        return []
    lead = max(fam, key=lambda f: fam[f][0])
    out = []
    for f in sorted(fam, key=lambda f: fam[f][0], reverse=True):
        if f == lead:
            out.append(f)
            continue
        gap, se = paired_gap(fam[lead][3], fam[f][3])
        if math.isfinite(gap) and (gap <= z * se or gap <= 0):
            out.append(f)
    return out[:MAX_FINALISTS]


def confirm(search: Any) -> dict | None:
    """Re-score the finalists of ``search`` (a ``_Search``) on a second fold.

    Returns None when there is nothing to decide (one finalist, no per-user values, a
    minimised metric) or no time; else ``{"finalists": {family: {"trial", "valid",
    "fold2", "mean"}}, "chosen": family, "fold_seed": the seed of :func:`second_fold`,
    "rule": text}`` (a finalist whose fit would not
    end within the budget has no ``fold2`` and is not chosen).
    """
    from .search import _is_classical

    if not search.maximize or not getattr(search, "family", None):
        return None
    names = finalists(search)
    if len(names) < 2:
        return None
    budget = search.budget
    fit_on, fold = second_fold(search.train, search.valid, search.seed)
    rows: dict[str, dict] = {}
    for name in names:
        value, number, _, _ = search.family[name]
        cand = search.cands[name]
        rows[name] = {"trial": int(number), "valid": float(value)}
        ok, _ = budget.fits(name, True)  # a second fit runs to its end: it must fit in time
        if not ok:
            rows[name]["note"] = "no time left for a second fit"
            if name == names[0]:
                break  # without the leader's second value there is nothing to compare
            continue
        trial = search.study.trials[number]
        params = fold_params(cand, search.params_of(cand, trial.params),
                             trial.user_attrs.get("best_epoch"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = cand.cls(**params)
                model.fit(fit_on, **search.fit_kwargs)
            pu = per_user_values(model, fit_on, fold, search.metric, search.k)
        except Exception as exc:
            rows[name]["note"] = f"second fit failed: {type(exc).__name__}: {exc}"[:200]
            continue
        f2 = float(np.mean(list(pu.values()))) if pu else math.nan
        rows[name].update(fold2=f2, mean=(float(value) + f2) / 2)
        if not _is_classical(cand.cls):
            rows[name]["epochs"] = params.get("epochs")
    scored = [n for n in names if math.isfinite(rows.get(n, {}).get("mean", math.nan))]
    if names[0] not in scored or len(scored) < 2:
        return {"finalists": rows, "chosen": names[0], "fold_seed": int(search.seed),
                "rule": "the leader on valid (the finalists could not all be re-scored)"}
    chosen = max(scored, key=lambda n: rows[n]["mean"])
    return {"finalists": rows, "chosen": chosen, "fold_seed": int(search.seed),
            "rule": f"finalists within {Z:g} paired standard errors of the leader on "
                    f"valid, chosen by the mean of valid and a second fold"}
