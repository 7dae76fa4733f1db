"""How :func:`maasrec.tune.tune` spreads its trials over several model families.

One TPE sampler over ``model`` and every family's parameters crowds onto whichever
family led early: a 3-minute search of MovieLens 100K gave EASE 57 of its 90 trials and
ALS 7, and ended below ALS's own defaults on the test data. The ``"spread"`` strategy
instead

1. runs every family's **defaults** first, cheapest first in the order given (a neural
   default may use at most its share of the time left, ``left / (defaults to go +
   LEADERS)``, so that the rounds keep most of the budget -- one MultVAE default on Amazon
   Beauty took 403 of 600 s with ``left / (defaults to go + 1)`` -- and stops at the end of the epoch in which that share ends, with its best weights, or
   in the middle of an epoch half a share later, without a model);
2. ranks the families that can be searched (a space with something to try, a completed
   default) by their best validation value and keeps the :data:`LEADERS` best;
3. runs **rounds of successive halving** over them: each round has an equal part of what
   is left (time and trials), shared equally by the families still in it, each running
   TPE over its own parameters only (Optuna's ``PartialFixedSampler`` fixes ``model``);
   after each round the better half (rounded up) stays; the last family takes the rest.
   A family with few trials in a round (fewer than :data:`PROBE_BELOW` fit in its share
   of time or of ``n_trials``)
   starts its search with its defaults' neighbours, each log-scaled parameter divided
   and multiplied by 3 in turn (a coordinate line search): with a few trials, random
   points of a wide range rarely come near the best (EASE's ``l2`` is searched over
   10-100,000; on Amazon Beauty one fit takes 97 s, and ``l2`` 150 beats the default 500
   by 4% on validation).

Time-aware: the share of a family is recomputed from the time left when its turn comes
(a family that ended early leaves its time to the next), a classical trial starts only
when its expected duration (the family's shortest trial so far) fits in what is left of
its share -- except the round's leader, which may take one trial's time from what is
left of the budget when its share is shorter (else an expensive leader would never be
searched: one EASE fit on Amazon Beauty takes 120 s, a third of the rounds) -- and a
neural trial is stopped at the end of the epoch in which its share ends (mid-epoch half a share later: one epoch of MultVAE on Amazon Beauty took 558 s of a
10-minute budget on a loaded machine). The best trial of the study is returned (never
below the best default on the validation data), unless other families are within validation noise of it: then the
finalists' second fold decides (:mod:`maasrec.tune._confirm`; the time of their second
fits is held back from the rounds, :meth:`~maasrec.tune.search._Search.hold_back`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from ._models import default_params

__all__ = ["LEADERS", "family_best", "run_spread", "searchable"]

#: Families kept after the defaults (the first round of successive halving).
LEADERS = 4
#: A family with fewer trials than this in its share starts from its defaults' neighbours.
PROBE_BELOW = 4
#: The factor of a neighbour: each log-scaled parameter divided and multiplied by it.
PROBE_FACTOR = 3.0


def searchable(cand: Any) -> bool:
    """Whether a family's space has anything to try besides its defaults."""
    return any(p.kind != "fixed" for p in cand.params)


def family_best(study: Any, optuna: Any, maximize: bool) -> dict[str, float]:
    """Best completed validation value of each model family of ``study``."""
    best: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        m, v = t.params.get("model"), t.value
        if m is None or v is None or not math.isfinite(float(v)):
            continue
        if m not in best or (v > best[m] if maximize else v < best[m]):
            best[m] = float(v)
    return best


class _Left:
    """Trials this call may still run (None: no limit)."""

    def __init__(self, n: int | None):
        self.n = n

    def out(self) -> bool:
        return self.n is not None and self.n <= 0

    def take(self, k: int) -> None:
        if self.n is not None:
            self.n -= k


def _ranked(search: Any, names: list[str]) -> list[str]:
    best = family_best(search.study, search.optuna, search.maximize)
    names = [n for n in names if n in best]
    return sorted(names, key=lambda n: best[n], reverse=search.maximize)


def run_spread(search: Any, n_trials: int | None, base_sampler: Any) -> None:
    """Run the search of ``search`` (a ``_Search``) by the ``"spread"`` strategy.

    The caller has enqueued each family's defaults in the study.

    Parameters
    ----------
    search : maasrec.tune.search._Search
    n_trials : int or None
        Trials this call runs at most.
    base_sampler : optuna.samplers.BaseSampler
        The seeded TPE sampler the families' own searches use.
    """
    budget = search.budget
    left = _Left(n_trials)
    # 1. every family's defaults (the enqueued trials), in the order given
    pending = [t for t in search.study.get_trials(deepcopy=False)
               if t.state.name == "WAITING"]
    for i in range(len(pending)):
        if left.out() or budget.expired():
            return
        # the rounds keep LEADERS shares: a slow neural default may not eat their time
        share = budget.remaining() / (len(pending) - i + LEADERS)
        left.take(search.run_slice(None, 1, share, base_sampler))
    # 2. the leading families, 3. rounds of successive halving
    names = [c.name for c in search.cands.values() if searchable(c)]
    alive = _ranked(search, names)[:LEADERS]
    # time for the finalists' second fold (maasrec.tune._confirm), held back from the rounds
    search.hold_back()
    probed: set[str] = set()
    while alive and not left.out() and not budget.expired():
        rounds = math.ceil(math.log2(len(alive))) + 1
        round_end = time.monotonic() + budget.remaining() / rounds
        round_trials = None if left.n is None else left.n // rounds if rounds > 1 else left.n
        for j, name in enumerate(alive):
            if left.out() or budget.expired():
                return
            in_round = (round_end - time.monotonic()) if rounds > 1 else budget.remaining()
            share = in_round / (len(alive) - j) if rounds > 1 else in_round
            expected = budget.expected(name, _classical(search, name))
            if j == 0 and expected is not None and share < expected <= budget.remaining():
                share = expected * 1.1   # the leader gets one trial's time from what is left
            k = None if round_trials is None else round_trials // (len(alive) - j)
            if k is not None:
                if k <= 0:
                    continue
                round_trials -= k
            end = time.monotonic() + share
            ran = 0
            if name not in probed:
                probed.add(name)
                few = (k is not None and k < PROBE_BELOW) or (
                    expected is not None and expected * PROBE_BELOW > share)
                if few:
                    ran = _probe(search, name, k, end, base_sampler)
            if (k is None or ran < k) and not left.out():
                rest = end - time.monotonic()
                ran += search.run_slice(name, None if k is None else k - ran, rest,
                                        base_sampler) if rest > 0 else 0
            left.take(ran)
            if round_trials is not None and k is not None:
                round_trials += k - ran  # trials a family did not use go to the next
        if len(alive) == 1:
            return
        kept = [n for n in _ranked(search, alive) if n not in search.exhausted_models]
        alive = kept[:math.ceil(len(alive) / 2)]


def _classical(search: Any, name: str) -> bool:
    from .search import _is_classical

    cand = search.cands.get(name)
    return cand is not None and _is_classical(cand.cls)


def neighbours(cand: Any) -> list[dict[str, Any]]:
    """The defaults' neighbours of a family: for each log-scaled ``float``/``int``
    parameter in turn, its default divided and multiplied by :data:`PROBE_FACTOR`
    (within its range), every other parameter at its default. Study parameter names
    (``"EASE.l2"``); the defaults are the class's, updated by ``cand.base``."""
    fixed = default_params(cand)
    out: list[dict[str, Any]] = []
    for p in cand.params:
        key = f"{cand.name}.{p.name}"
        if p.kind not in ("float", "int") or not p.log or key not in fixed:
            continue
        v = fixed[key]
        for f in (1.0 / PROBE_FACTOR, PROBE_FACTOR):
            w = min(max(v * f, p.low), p.high)
            w = round(w) if p.kind == "int" else float(w)
            if w != v:
                out.append({**fixed, key: w})
    return out


def _probe(search: Any, name: str, k: int | None, end: float, base_sampler: Any) -> int:
    """Run the family's :func:`neighbours` one trial each (up to ``k`` trials, until
    ``end``); returns the number of trials run."""
    import warnings

    optuna = search.optuna
    ran = 0
    for fixed in neighbours(search.cands[name]):
        if (k is not None and ran >= k) or search.budget.expired():
            break
        rest = end - time.monotonic()
        if rest <= 0:
            break
        with warnings.catch_warnings():   # experimental in Optuna (stable since 2.4)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.PartialFixedSampler(fixed, base_sampler)
        got = search.run_slice(name, 1, rest, sampler)
        ran += got
        if got == 0:                      # the next one would not fit either
            break
    return ran
