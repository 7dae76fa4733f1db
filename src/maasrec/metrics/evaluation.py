"""Evaluate a fitted recommender, or given top-k lists, on held-out interactions.

:func:`evaluate` ranks items with a fitted model (full ranking by default, sampled
ranking on request) and scores the lists; :func:`evaluate_lists` scores lists someone
else produced (e.g. another library) with the same code; :func:`evaluate_ratings`
scores a rating model's predicted ratings (RMSE, MAE). Both return an
:class:`EvaluationResult` with means, per-user values, bootstrap intervals and
metadata; :func:`maasrec.metrics.paired_test` compares two of them.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.interactions import Interactions, as_interactions
from ..data.vocab import IdVocab
from ..exceptions import ColdStartWarning, DataError, MaasrecWarning, NotFittedError
from ..rankers.topk import topk_indices
from .beyond import _check_n_items, _ild_multi, _normalise_rows, item_popularity, novelty
from .ranking import (
    RANKING_METRICS,
    _auc_rows,
    _to_object_matrix,
    check_ks,
    dedupe_rows,
    is_pad,
    lookup_hits,
    ranking_metrics_from_hits,
)
from .stats import _check_bootstrap, bootstrap_means, percentile_interval

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_METRICS",
    "METRICS",
    "RATING_METRICS",
    "EvaluationResult",
    "RatingEvaluationResult",
    "evaluate",
    "evaluate_lists",
    "evaluate_ratings",
]

logger = logging.getLogger(__name__)

#: Bytes of float32 scores held per chunk of users by :func:`evaluate` (128 MiB).
#: Chunk size is ``max(1, DEFAULT_MEMORY_BUDGET // (4 * n_items))`` users. Besides the
#: model's score block, one chunk needs about 0.7x of it more (full protocol: masks,
#: work blocks) or 1.5x (sampled: one random key per item to draw negatives); measured
#: peak on MovieLens-1M in one chunk: 145 MiB (full) / 211 MiB (sampled) for an 85 MiB block.
DEFAULT_MEMORY_BUDGET = 128 * 2**20

_BEYOND = ("coverage", "novelty", "diversity", "gini")
_GLOBAL = ("coverage", "gini")  # one value for the whole list set: no per-user values, no CI
_PER_K = RANKING_METRICS + _BEYOND
#: Every metric name :func:`evaluate` understands (all but ``auc`` take ``@k``).
METRICS = (*_PER_K, "auc")
#: Metrics computed when ``metrics=None`` (diversity costs more: ask for it).
DEFAULT_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hit", "auc", "coverage",
                   "novelty")
_PROTOCOLS = ("full", "sampled")


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------
class EvaluationResult(Mapping):
    """Metrics of one evaluation: a read-only mapping ``name -> mean value``.

    ``res["ndcg@10"]`` is the mean over evaluated users; iterate for the names.

    Attributes
    ----------
    per_user : dict of str -> np.ndarray
        Per-user values aligned with :attr:`users` (every metric except the list-set
        metrics ``coverage@k`` and ``gini@k``). NaN marks an undefined value (e.g. AUC
        of a user with no negative candidate); means leave NaN out.
    users : np.ndarray
        Raw ids of the evaluated users.
    ci : dict of str -> (float, float)
        Percentile bootstrap interval of each mean (users resampled with replacement,
        seeded); ``(nan, nan)`` for list-set metrics or ``n_bootstrap=0``.
    protocol : str
        ``"full"`` (every unseen item ranked), ``"sampled"`` (test items + sampled
        negatives) or ``"lists"`` (given lists, :func:`evaluate_lists`).
    k : tuple of int
    n_users, n_items : int
        Evaluated users; catalogue size.
    n_negatives : int or None
        Sampled negatives per user (sampled protocol only).
    counts : dict of str -> int
        What was dropped or left out, e.g. ``test_rows_unknown_user``,
        ``test_rows_unknown_item``, ``test_pairs_seen``, ``users_no_relevant``.
    elapsed, scoring_time : float
        Seconds in total, and inside the model's scoring.
    n_bootstrap : int
    confidence : float
    model : str or None
        Class name of the evaluated model.
    """

    def __init__(self, values: dict[str, float], per_user: dict[str, np.ndarray],
                 users: np.ndarray, ci: dict[str, tuple[float, float]], *, protocol: str,
                 k: tuple[int, ...], n_users: int, n_items: int, n_negatives: int | None,
                 counts: dict[str, int], elapsed: float, scoring_time: float,
                 n_bootstrap: int, confidence: float, model: str | None = None):
        self._values = dict(values)
        self.per_user = per_user
        self.users = users
        self.ci = ci
        self.protocol = protocol
        self.k = tuple(k)
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.n_negatives = n_negatives
        self.counts = dict(counts)
        self.elapsed = float(elapsed)
        self.scoring_time = float(scoring_time)
        self.n_bootstrap = int(n_bootstrap)
        self.confidence = float(confidence)
        self.model = model

    # -- mapping --------------------------------------------------------------
    def __getitem__(self, name: str) -> float:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(
                f"no metric {name!r} in this result; it holds {list(self._values)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def metrics(self) -> tuple[str, ...]:
        """tuple of str: metric names, in display order."""
        return tuple(self._values)

    # -- export ---------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Means and intervals as a frame.

        Returns
        -------
        pandas.DataFrame
            Index ``metric``; columns ``value``, ``ci_low``, ``ci_high``.
        """
        names = list(self._values)
        return pd.DataFrame(
            {
                "value": [self._values[n] for n in names],
                "ci_low": [self.ci[n][0] for n in names],
                "ci_high": [self.ci[n][1] for n in names],
            },
            index=pd.Index(names, name="metric"),
        )

    def per_user_frame(self) -> pd.DataFrame:
        """Per-user values as a frame (index: raw user ids, one column per metric).

        Returns
        -------
        pandas.DataFrame
        """
        return pd.DataFrame(self.per_user, index=pd.Index(self.users, name="user"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary: means, intervals and metadata (no per-user arrays).

        Returns
        -------
        dict
        """
        def num(x: float) -> float | None:
            return None if x is None or np.isnan(x) else float(x)

        return {
            "metrics": {n: num(v) for n, v in self._values.items()},
            "ci": {n: [num(lo), num(hi)] for n, (lo, hi) in self.ci.items()},
            "protocol": self.protocol,
            "k": list(self.k),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_negatives": self.n_negatives,
            "counts": {c: int(v) for c, v in self.counts.items()},
            "elapsed": self.elapsed,
            "scoring_time": self.scoring_time,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "model": self.model,
        }

    def _protocol_text(self) -> str:
        if self.protocol == "full":
            return f"full ranking over all {self.n_items} items (seen items excluded)"
        if self.protocol == "sampled":
            return (f"SAMPLED ranking: each user's test items + {self.n_negatives} random "
                    f"negatives (not comparable with full-ranking numbers)")
        return f"given top-k lists, catalogue of {self.n_items} items"

    def __repr__(self) -> str:
        head = (f"EvaluationResult({self.model + ', ' if self.model else ''}{self.n_users} users, "
                f"{self._protocol_text()}, {self.elapsed:.2f}s)")
        width = max([len(n) for n in self._values] + [6])
        pct = f"{self.confidence:.0%} CI"
        lines = [head, f"  {'metric':<{width}}  {'value':>8}  {pct}"]
        for n, v in self._values.items():
            lo, hi = self.ci[n]
            if n.split("@")[0] in _GLOBAL:
                ci = "(whole list set)"
            elif np.isnan(lo):
                ci = ""
            else:
                ci = f"[{lo:.4f}, {hi:.4f}]"
            lines.append(f"  {n:<{width}}  {v:>8.4f}  {ci}")
        notes = [f"{c.replace('_', ' ')}: {v}" for c, v in self.counts.items() if v]
        if notes:
            lines.append("  " + "; ".join(notes))
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------
def _parse_metrics(metrics: Any, ks: tuple[int, ...], default: Sequence[str],
                   allowed: Sequence[str]) -> list[tuple[str, int | None]]:
    """Metric names -> ordered unique list of (base, k or None)."""
    if metrics is None:
        metrics = list(default)
    elif isinstance(metrics, str):
        metrics = [metrics]
    elif not isinstance(metrics, Iterable):
        raise DataError(f"metrics must be a name or a list of names, got {metrics!r}")
    metrics = list(metrics)
    if not metrics:
        raise DataError(f"metrics must not be empty; valid names are {list(allowed)}")
    spec: dict[str, set[int | None]] = {}
    for m in metrics:
        if not isinstance(m, str):
            raise DataError(f"metric names must be strings, got {m!r}")
        base, _, at = m.strip().lower().partition("@")
        if base not in allowed:
            hint = ""
            if base == "auc" and "auc" not in allowed:
                hint = " (auc needs scores for every candidate: use evaluate())"
            raise DataError(
                f"unknown metric {m!r}{hint}; valid names are {list(allowed)}, "
                f"optionally with a cut-off like 'ndcg@10'"
            )
        if base == "auc":
            if at:
                raise DataError(f"'auc' takes no cut-off (got {m!r}): it ranks every candidate")
            spec.setdefault(base, set()).add(None)
            continue
        if at:
            try:
                kk = int(at)
            except ValueError:
                raise DataError(f"bad cut-off in metric {m!r}; write it like 'ndcg@10'") from None
            if kk <= 0:
                raise DataError(f"the cut-off in metric {m!r} must be a positive integer")
            spec.setdefault(base, set()).add(kk)
        else:
            spec.setdefault(base, set()).update(ks)
    return [(b, kk) for b, kset in spec.items()
            for kk in sorted(kset, key=lambda x: -1 if x is None else x)]


def _name(base: str, k: int | None) -> str:
    return base if k is None else f"{base}@{k}"


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _model_vocabs(model: Any) -> tuple[IdVocab, IdVocab]:
    name = type(model).__name__
    uv = getattr(model, "user_vocab_", None)
    iv = getattr(model, "item_vocab_", None)
    if iv is None or uv is None:
        raise NotFittedError(
            f"{name} is not fitted (it has no item_vocab_/user_vocab_); call fit() before "
            f"evaluate()"
        )
    if not _ranks_only(model) and not callable(getattr(model, "score_indices", None)) and not (
            callable(getattr(model, "_score_users", None))):
        raise DataError(f"{name} has no score_indices(user_idx) method; evaluate() needs one "
                        f"(every maasrec Recommender has it)")
    if _ranks_only(model) and not callable(getattr(model, "rank_indices", None)):
        raise DataError(f"{name} sets scores_all_items=False but has no rank_indices(user_idx, "
                        f"k, exclude=..., allow=...) method; evaluate() needs one")
    if not isinstance(uv, IdVocab) or not isinstance(iv, IdVocab):
        raise DataError(f"{name}.user_vocab_ and .item_vocab_ must be IdVocab objects")
    if len(iv) == 0:
        raise DataError(f"{name} knows no items")
    return uv, iv


def _ranks_only(model: Any) -> bool:
    """Whether the model ranks only candidates (no full-catalogue scores): a two-stage model."""
    return getattr(model, "scores_all_items", True) is False


def _align(X: Any, uv: IdVocab, iv: IdVocab, what: str) -> tuple[Interactions, int, int]:
    """Re-index ``X`` onto (uv, iv); also return rows dropped for unknown users / items."""
    try:
        X = as_interactions(X)
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from exc
    known_u = uv.index(X.user_vocab.ids, unknown="ignore") >= 0
    known_i = iv.index(X.item_vocab.ids, unknown="ignore") >= 0
    ru = known_u[X.user_indices]
    ri = known_i[X.item_indices]
    n_unknown_user = int((~ru).sum())
    n_unknown_item = int((ru & ~ri).sum())
    return X.with_vocab(uv, iv, unknown="ignore"), n_unknown_user, n_unknown_item


def _binary(X: Interactions) -> sp.csr_matrix:
    m = X.to_csr(binary=True)
    m.sort_indices()
    return m


def _union(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(a + b)
    m.data[:] = 1.0
    m.sort_indices()
    return m


def _minus(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """Binary a AND NOT b."""
    m = sp.csr_matrix(a - a.multiply(b))
    m.eliminate_zeros()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def _keys(m: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices.astype(np.int64)


# ---------------------------------------------------------------------------
# ranking kernels
# ---------------------------------------------------------------------------
def _topk_rows(S: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row (ties to the lower index, ``-1`` padding).

    The one top-k kernel of the package (:func:`maasrec.rankers.topk.topk_indices`), so
    ``evaluate`` ranks exactly as ``recommend`` does.
    """
    return topk_indices(S, k)[0]


class _Scorer:
    """Calls the model's public ``score_indices`` (or ``rank_indices``) and validates the result.

    An object that is not a maasrec model may offer ``_score_users`` instead (the older
    duck-typed protocol, e.g. a wrapper around a scoring function).
    """

    def __init__(self, model: Any, uv: IdVocab, n_items: int):
        self.model = model
        self.uv = uv
        self.n_items = n_items
        self.seconds = 0.0
        if callable(getattr(model, "score_indices", None)):
            self.fn, self.fn_name = model.score_indices, "score_indices"
        else:
            self.fn, self.fn_name = getattr(model, "_score_users", None), "_score_users"

    def rank(self, idx: np.ndarray, k: int, *, exclude=None, allow=None) -> np.ndarray:
        """Top-k item indices ``[len(idx), k]`` from ``model.rank_indices`` (-1 padding)."""
        t = time.perf_counter()
        top, _ = self.model.rank_indices(idx, k, exclude=exclude, allow=allow)
        self.seconds += time.perf_counter() - t
        top = np.asarray(top, dtype=np.int64)
        name = type(self.model).__name__
        if top.ndim != 2 or top.shape[0] != len(idx) or top.shape[1] > k:
            raise DataError(f"{name}.rank_indices returned shape {top.shape} for {len(idx)} "
                            f"users and k={k}")
        if top.size and (top.min() < -1 or top.max() >= self.n_items):
            raise DataError(f"{name}.rank_indices returned an item index outside "
                            f"-1..{self.n_items - 1}")
        if top.shape[1] < k:
            top = np.concatenate([top, np.full((len(idx), k - top.shape[1]), -1, np.int64)],
                                 axis=1)
        return top

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """Scores ``[len(idx), n_items]`` as float32.

        The model's own array is returned when it is a writable, C-contiguous float32
        array (no copy); callers that write into it must restore what they change.
        """
        t = time.perf_counter()
        out = self.fn(idx)
        self.seconds += time.perf_counter() - t
        if hasattr(out, "detach"):  # a torch tensor
            out = out.detach().cpu().numpy()
        name = f"{type(self.model).__name__}.{self.fn_name}"
        s = np.asarray(out)
        if s.shape != (len(idx), self.n_items):
            raise DataError(
                f"{name} returned shape {s.shape} for {len(idx)} users; expected "
                f"({len(idx)}, {self.n_items})"
            )
        if not (s.dtype == np.float32 and s.flags.c_contiguous and s.flags.writeable):
            s = np.array(s, dtype=np.float32, order="C")
        finite = np.isfinite(s)
        if not finite.all():
            r = int(np.flatnonzero(~finite.all(axis=1))[0])
            raise DataError(
                f"{name} returned NaN/inf scores for user "
                f"{self.uv.ids[idx[r]]!r}; scores must be finite"
            )
        return s


def _full_chunk(scorer: _Scorer, idx: np.ndarray, seen: sp.csr_matrix, rel: sp.csr_matrix,
                rel_keys: np.ndarray, kmax: int, want_auc: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    b = len(idx)
    S = scorer(idx)
    sc = seen[idx]
    n_seen = np.diff(sc.indptr)
    sr, scol = np.repeat(np.arange(b), n_seen), sc.indices
    saved = S[sr, scol]  # S may be the model's array: put its values back afterwards
    S[sr, scol] = -np.inf
    try:
        top = _topk_rows(S, kmax)
        hits = lookup_hits(idx, top, rel_keys, S.shape[1])
        auc = None
        if want_auc:
            rc = rel[idx]
            n_pos = np.diff(rc.indptr)
            pr = np.repeat(np.arange(b), n_pos)
            auc = _auc_rows(S, pr, S[pr, rc.indices], n_pos, n_seen)
    finally:
        S[sr, scol] = saved
    return top, hits, auc


def _sampled_candidates(idx: np.ndarray, forbid: sp.csr_matrix, rel: sp.csr_matrix,
                        n_negatives: int, rng: np.random.Generator):
    """Each user's relevant items then ``n_negatives`` sampled ones: ``C [b, P + N]`` (-1 pads)."""
    b = len(idx)
    n_items = forbid.shape[1]
    # negatives: the n_negatives largest of i.i.d. uniforms over allowed items = a uniform
    # sample without replacement; the stream is consumed row by row (chunking-invariant)
    R = rng.random((b, n_items), dtype=np.float32)
    fc = forbid[idx]
    R[np.repeat(np.arange(b), np.diff(fc.indptr)), fc.indices] = -np.inf
    neg = _topk_rows(R, n_negatives)
    del R
    rc = rel[idx]
    n_pos = np.diff(rc.indptr)
    pr = np.repeat(np.arange(b), n_pos)
    slot = np.arange(rc.nnz) - rc.indptr[pr]
    pos = np.full((b, int(n_pos.max()) if b else 0), -1, dtype=np.int64)
    pos[pr, slot] = rc.indices
    C = np.concatenate([pos, neg], axis=1)
    return C, pos, n_pos, pr, slot


def _sampled_chunk(scorer: _Scorer, idx: np.ndarray, forbid: sp.csr_matrix, rel: sp.csr_matrix,
                   n_negatives: int, rng: np.random.Generator, kmax: int, want_auc: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    b = len(idx)
    C, pos, n_pos, pr, slot = _sampled_candidates(idx, forbid, rel, n_negatives, rng)
    S = scorer(idx)
    V = np.take_along_axis(S, np.maximum(C, 0), axis=1)
    del S
    V[C < 0] = -np.inf
    order = np.lexsort((C, -V), axis=1)  # score descending, then lower item index
    width = min(kmax, C.shape[1])
    top = np.take_along_axis(C, order[:, :width], axis=1)
    top[np.isneginf(np.take_along_axis(V, order[:, :width], axis=1))] = -1
    is_pos = np.zeros(C.shape, dtype=bool)
    is_pos[:, : pos.shape[1]] = pos >= 0
    hits = np.take_along_axis(is_pos, order[:, :width], axis=1)
    if width < kmax:
        top = np.concatenate([top, np.full((b, kmax - width), -1, dtype=np.int64)], axis=1)
        hits = np.concatenate([hits, np.zeros((b, kmax - width), dtype=bool)], axis=1)
    auc = None
    if want_auc:
        auc = _auc_rows(V, pr, V[pr, slot], n_pos, np.count_nonzero(C < 0, axis=1))
    return top, hits, auc


def _ranked_chunk(scorer: _Scorer, idx: np.ndarray, seen: sp.csr_matrix, rel_keys: np.ndarray,
                  kmax: int, protocol: str, sampled: tuple | None
                  ) -> tuple[np.ndarray, np.ndarray, None]:
    """Top lists of a model that ranks only candidates (``rank_indices``; no AUC).

    Full protocol: the model ranks with the user's train/exclude items excluded.
    Sampled: it ranks within the user's sampled candidates ``C`` (an allow-list).
    """
    n_items = seen.shape[1]
    if protocol == "full":
        top = scorer.rank(idx, kmax, exclude=seen[idx])
    else:
        C = sampled[0]
        rows = np.repeat(np.arange(len(idx)), C.shape[1]).reshape(C.shape)
        ok = C >= 0
        allow = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32), (rows[ok], C[ok])),
                              shape=(len(idx), n_items))
        top = scorer.rank(idx, kmax, allow=allow)
    return top, lookup_hits(idx, top, rel_keys, n_items), None


# ---------------------------------------------------------------------------
# shared scoring of lists
# ---------------------------------------------------------------------------
def _gini_from_counts(counts: np.ndarray, n_items: int) -> float:
    """Gini over ``n_items`` items given the non-zero counts (the rest are 0)."""
    c = np.sort(counts[counts > 0]).astype(np.float64)
    total = c.sum()
    if total == 0:
        return float("nan")
    i = np.arange(n_items - len(c) + 1, n_items + 1, dtype=np.float64)
    return float(np.sum((2.0 * i - n_items - 1.0) * c) / (n_items * total))


def _score(spec: list[tuple[str, int | None]], top: np.ndarray, hits: np.ndarray,
           n_rel: np.ndarray, auc: np.ndarray | None, n_items: int,
           popularity: Any, vectors: Any, n_bootstrap: int, confidence: float,
           rng: np.random.Generator) -> tuple[dict, dict, dict]:
    """Means, per-user arrays and intervals for ``spec`` from the top-k lists."""
    per_user: dict[str, np.ndarray] = {}
    values: dict[str, float] = {}
    rank_names = sorted({b for b, _ in spec if b in RANKING_METRICS})
    rank_ks = sorted({k for b, k in spec if b in RANKING_METRICS})
    ranked = (ranking_metrics_from_hits(hits, n_rel, rank_ks, rank_names)
              if rank_names and len(n_rel) else {})
    pop = vec = None
    for base, k in spec:
        name = _name(base, k)
        lists = top[:, :k] if k is not None else top
        if base in RANKING_METRICS:
            per_user[name] = ranked.get(name, np.zeros(0))
        elif base == "auc":
            per_user[name] = auc if auc is not None else np.zeros(0)
        elif base in ("coverage", "gini"):
            valid = lists[lists >= 0]
            counts = np.bincount(valid, minlength=0) if valid.size else np.zeros(0, np.int64)
            if base == "coverage":
                values[name] = float(np.count_nonzero(counts) / n_items)
            else:
                values[name] = _gini_from_counts(counts, n_items)
        elif base == "novelty":
            pop = popularity() if pop is None else pop
            per_user[name] = novelty(lists, pop)
        elif base == "diversity":
            if vec is None:
                vn, norms = _normalise_rows(vectors())
                div_ks = sorted({kk for b, kk in spec if b == "diversity"})
                vec = _ild_multi(top, div_ks, vn, norms)
            per_user[name] = vec[k]
    names = [n for n in per_user]
    for n in names:
        x = per_user[n]
        values[n] = float(np.nanmean(x)) if len(x) and not np.isnan(x).all() else float("nan")
    ci: dict[str, tuple[float, float]] = {}
    if n_bootstrap > 0 and names and len(n_rel):
        X = np.column_stack([per_user[n] for n in names])
        lo, hi = percentile_interval(bootstrap_means(X, n_bootstrap, rng), confidence)
        ci = {n: (float(lo[j]), float(hi[j])) for j, n in enumerate(names)}
    ordered = {_name(b, k): values[_name(b, k)] for b, k in spec}
    full_ci = {n: ci.get(n, (float("nan"), float("nan"))) for n in ordered}
    return ordered, per_user, full_ci


def _vectors_from(item_vectors: Any, iv: IdVocab, train_items_by_user: sp.csr_matrix | None,
                  top: np.ndarray) -> Any:
    """Item vectors aligned with ``iv`` (default: item columns of the training matrix)."""
    if item_vectors is None:
        if train_items_by_user is None:
            raise DataError("diversity needs item_vectors, or train= to use co-occurrence")
        return sp.csr_matrix(train_items_by_user.T)
    if isinstance(item_vectors, pd.DataFrame):
        frame = item_vectors.reindex(pd.Index(iv.ids))
        missing = frame.isna().all(axis=1).to_numpy()
        used = np.unique(top[top >= 0])
        bad = used[missing[used]]
        if len(bad):
            raise DataError(
                f"item_vectors has no row for recommended item(s) "
                f"{iv.ids[bad[:5]].tolist()} ({len(bad)} in all)"
            )
        return frame.fillna(0.0).to_numpy(dtype=np.float64)
    shape = item_vectors.shape if hasattr(item_vectors, "shape") else np.shape(item_vectors)
    if len(shape) != 2 or shape[0] != len(iv):
        raise DataError(
            f"item_vectors must have one row per item of the model ({len(iv)}), got shape "
            f"{shape}; or pass a DataFrame indexed by raw item id"
        )
    return item_vectors


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------
@dataclass
class _Targets:
    """What :func:`evaluate` ranks against, on the model's vocabularies."""

    train: Interactions  #: train rows the model knows
    seen: sp.csr_matrix  #: binary train (+ exclude) items per user: never ranked
    test: sp.csr_matrix  #: binary test items per user
    rel: sp.csr_matrix  #: relevant items: test minus seen
    users: np.ndarray  #: indices of the users evaluated (each has a relevant item)
    n_rel: np.ndarray  #: relevant items of each evaluated user


def _evaluate_spec(model: Any, metrics: Any, ks: tuple[int, ...], protocol: str
                   ) -> tuple[list, IdVocab, IdVocab, bool]:
    """The metrics to compute, the model's vocabularies, and whether it ranks only."""
    default = DEFAULT_METRICS if protocol == "full" else tuple(
        m for m in DEFAULT_METRICS if m not in _BEYOND)
    spec = _parse_metrics(metrics, ks, default, METRICS)
    uv, iv = _model_vocabs(model)
    ranks_only = _ranks_only(model)
    if ranks_only and any(b == "auc" for b, _ in spec):
        if metrics is not None:
            raise DataError(
                f"'auc' needs a score for every item, but {type(model).__name__} ranks only its "
                f"first stage's candidates (scores_all_items=False); ask for ranking metrics "
                f"at cut-offs up to its n_candidates")
        spec = [(b, kk) for b, kk in spec if b != "auc"]  # not in the default for such models
    return spec, uv, iv, ranks_only


def _aligned_parts(model: Any, uv: IdVocab, iv: IdVocab, train: Any, test: Any, exclude: Any,
                   counts: dict[str, int]) -> tuple[Interactions, sp.csr_matrix, sp.csr_matrix]:
    """Train, seen (train + exclude, binary) and test (binary) on the model's vocabularies.

    Counts the rows left out; warns (at :func:`evaluate`'s caller, through
    :func:`_evaluation_targets`) about unknown test rows.
    """
    train_a, tu, ti = _align(train, uv, iv, "train")
    counts["train_rows_unknown"] = tu + ti
    test_a, su, si = _align(test, uv, iv, "test")
    counts["test_rows_unknown_user"] = su
    counts["test_rows_unknown_item"] = si
    if su or si:
        warnings.warn(
            f"{su} test row(s) with a user and {si} with an item unknown to "
            f"{type(model).__name__} are left out of the evaluation (cold start; see "
            f"result.counts)",
            ColdStartWarning, stacklevel=4,  # evaluate -> _evaluation_targets -> here
        )
    if test_a.nnz == 0:
        raise DataError(
            f"no test row has a user and an item known to {type(model).__name__} "
            f"(model ids look like {uv.ids[:3].tolist()} / {iv.ids[:3].tolist()})"
        )
    seen = _binary(train_a)
    n_excl_unknown = 0
    if exclude is not None:
        parts = exclude if isinstance(exclude, (list, tuple)) else [exclude]
        for part in parts:
            ex_a, eu, ei = _align(part, uv, iv, "exclude")
            n_excl_unknown += eu + ei
            seen = _union(seen, _binary(ex_a))
    counts["exclude_rows_unknown"] = n_excl_unknown
    return train_a, seen, _binary(test_a)


def _evaluation_targets(model: Any, uv: IdVocab, iv: IdVocab, train: Any, test: Any,
                        exclude: Any, users: Any, counts: dict[str, int]) -> _Targets:
    """The relevant items and the users to evaluate (warnings point at evaluate's caller)."""
    train_a, seen, test_bin = _aligned_parts(model, uv, iv, train, test, exclude, counts)
    rel = _minus(test_bin, seen)
    counts["test_pairs_seen"] = int(test_bin.nnz - rel.nnz)
    has_test = np.diff(test_bin.indptr) > 0
    has_rel = np.diff(rel.indptr) > 0
    if users is not None:
        req = uv.index(users, unknown="ignore")
        counts["users_requested_unknown"] = int((req < 0).sum())
        if counts["users_requested_unknown"]:
            warnings.warn(
                f"{counts['users_requested_unknown']} of the requested users are unknown to "
                f"{type(model).__name__} and are skipped", ColdStartWarning, stacklevel=3,
            )
        mask = np.zeros(len(uv), dtype=bool)
        mask[req[req >= 0]] = True
        counts["users_requested_without_test"] = int((mask & ~has_test).sum())
        has_test &= mask
        has_rel &= mask
    counts["users_no_relevant"] = int((has_test & ~has_rel).sum())
    eval_users = np.flatnonzero(has_rel).astype(np.int64)
    if len(eval_users) == 0:
        raise DataError(
            "no user has a relevant test item left to evaluate (test items the user has in "
            "train/exclude are not relevant)"
        )
    n_rel = np.diff(rel.indptr)[eval_users].astype(np.int64)
    return _Targets(train_a, seen, test_bin, rel, eval_users, n_rel)


def _rank_targets(scorer: _Scorer, t: _Targets, spec: list[tuple[str, int | None]], *,
                  protocol: str, ranks_only: bool, batch_size: int | None, n_negatives: int,
                  rng: np.random.Generator, show_progress: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Top-``kmax`` lists (``kmax``: the largest cut-off of ``spec``), their hits and the
    AUCs (when ``spec`` asks for ``auc``) of every evaluated user, ``batch_size`` users
    (default: a chunk within :data:`DEFAULT_MEMORY_BUDGET`) at a time."""
    n_eval = len(t.users)
    # lists never hold more than n_items entries; larger cut-offs see empty slots
    kmax = min(scorer.n_items, max([k for _, k in spec if k is not None], default=1))
    want_auc = any(b == "auc" for b, _ in spec)
    chunk = batch_size or max(1, DEFAULT_MEMORY_BUDGET // (4 * scorer.n_items))
    forbid = _union(t.seen, t.test) if protocol == "sampled" else None
    rel_keys = _keys(t.rel)
    top = np.empty((n_eval, kmax), dtype=np.int64)
    hits = np.empty((n_eval, kmax), dtype=bool)
    auc = np.empty(n_eval) if want_auc else None
    logger.debug("evaluate: %d users in chunks of %d, %d items", n_eval, chunk, scorer.n_items)
    bar = None
    if show_progress:
        from ..training.progress import tqdm_class

        tqdm = tqdm_class()
        bar = tqdm(total=n_eval, desc="evaluate", unit="user")
    try:
        for a in range(0, n_eval, chunk):
            idx = t.users[a:a + chunk]
            if ranks_only:
                drawn = (_sampled_candidates(idx, forbid, t.rel, n_negatives, rng)
                         if protocol == "sampled" else None)
                t_, h_, a_ = _ranked_chunk(scorer, idx, t.seen, rel_keys, kmax, protocol, drawn)
            elif protocol == "full":
                t_, h_, a_ = _full_chunk(scorer, idx, t.seen, t.rel, rel_keys, kmax, want_auc)
            else:
                t_, h_, a_ = _sampled_chunk(scorer, idx, forbid, t.rel, n_negatives, rng,
                                            kmax, want_auc)
            top[a:a + len(idx)] = t_
            hits[a:a + len(idx)] = h_
            if auc is not None:
                auc[a:a + len(idx)] = a_
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return top, hits, auc


def _check_evaluate_args(k: Any, protocol: str, n_negatives: Any, batch_size: Any,
                         n_bootstrap: Any) -> tuple:
    """:func:`evaluate`'s scalar arguments checked: ``(ks, n_negatives, batch_size,
    n_bootstrap, confidence)``; a bad one raises :class:`DataError` naming it."""
    ks = check_ks(k)
    if protocol not in _PROTOCOLS:
        raise DataError(f"protocol must be one of {list(_PROTOCOLS)}, got {protocol!r}")
    n_negatives = _check_positive_int(n_negatives, "n_negatives")
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size")
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, 0.95)
    return ks, n_negatives, batch_size, n_bootstrap, confidence


def evaluate(model: Any, train: Any, test: Any, k: int | Sequence[int] = (10, 20),
             metrics: str | Sequence[str] | None = None, *, protocol: str = "full",
             n_negatives: int = 99, exclude: Any = None, users: Any = None,
             batch_size: int | None = None, n_bootstrap: int = 1000, random_state: Any = 0,
             item_vectors: Any = None, show_progress: bool = False) -> EvaluationResult:
    """Evaluate a fitted recommender on held-out interactions.

    For every test user (a user with at least one test row, or the users given), the
    model scores items with its public ``model.score_indices(user_idx)``; the top
    ``max(k)`` items become the user's list, and each metric is computed per user and
    averaged over users.

    **Protocols.** Full ranking (``protocol="full"``, the default) ranks every item except
    the user's items in ``train`` and ``exclude``; sampled ranking ranks the user's test
    items among ``n_negatives`` seeded random items (much easier, and not comparable with
    full ranking). Two-stage models (``scores_all_items`` False) are asked for their lists
    (``rank_indices``). Ties go to the lower item index; users are scored in memory-bounded
    chunks. Details (relevant sets, counts, draws, two-stage models, chunk sizes):
    :doc:`/evaluation` ("Protocols in detail").

    Parameters
    ----------
    model : fitted recommender
        Needs ``user_vocab_``, ``item_vocab_`` and ``score_indices(user_idx)`` returning
        finite float scores of shape ``[len(user_idx), n_items]`` (every maasrec
        :class:`~maasrec.base.Recommender`; another object may offer
        ``_score_users(user_idx)`` instead), or, with ``scores_all_items = False``,
        ``rank_indices(user_idx, k, exclude=, allow=)``.
    train : Interactions, pandas.DataFrame or scipy.sparse matrix
        What the model was trained on: these items are excluded from each user's
        ranking, and give item popularity (novelty) and default item vectors (diversity).
    test : Interactions, pandas.DataFrame or scipy.sparse matrix
        Held-out interactions; every row is relevant (filter the frame first for a
        rating threshold). Rows whose user or item the model does not know are dropped
        with a :class:`~maasrec.exceptions.ColdStartWarning` and counted.
    k : int or sequence of int, default (10, 20)
        Cut-offs.
    metrics : str or sequence of str, optional
        Names from :data:`METRICS`, each optionally with a cut-off (``"ndcg@5"``); a
        name without one is computed at every ``k``. Default :data:`DEFAULT_METRICS`
        (for the sampled protocol, without coverage and novelty, which would describe
        lists of sampled candidates).
    protocol : {"full", "sampled"}, default "full"
    n_negatives : int, default 99
        Negatives per user for the sampled protocol.
    exclude : Interactions, frame, or a sequence of them, optional
        More interactions to exclude from rankings and relevance (e.g. validation).
    users : sequence of raw user ids, optional
        Evaluate only these users (those without a relevant test item are skipped and
        counted; ids the model does not know are counted with a warning).
    batch_size : int, optional
        Users per chunk (overrides the memory budget).
    n_bootstrap : int, default 1000
        Bootstrap resamples for the intervals (0 skips them).
    random_state : int, numpy.random.Generator or None, default 0
        Seeds the sampled negatives and the bootstrap.
    item_vectors : array-like, sparse matrix or DataFrame, optional
        For diversity: one row per model item (in ``item_vocab_`` order) or a frame
        indexed by raw item id. Default: the item columns of the binary training matrix.
    show_progress : bool, default False
        Show a tqdm progress bar over users.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    NotFittedError
        If the model has no ``item_vocab_``/``user_vocab_``.
    DataError
        On a bad ``k``, metric name, protocol, ``n_negatives`` or ``batch_size``; empty
        test data; a test set with no row the model knows; non-finite model scores.

    Examples
    --------
    >>> res = evaluate(model, train, test, k=10)  # doctest: +SKIP
    >>> res["ndcg@10"], res.ci["ndcg@10"]  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    ks, n_negatives, batch_size, n_bootstrap, confidence = _check_evaluate_args(
        k, protocol, n_negatives, batch_size, n_bootstrap)
    spec, uv, iv, ranks_only = _evaluate_spec(model, metrics, ks, protocol)
    n_items = len(iv)
    counts: dict[str, int] = {}
    targets = _evaluation_targets(model, uv, iv, train, test, exclude, users, counts)
    n_eval = len(targets.users)
    sample_rng, boot_rng = np.random.default_rng(random_state).spawn(2)
    scorer = _Scorer(model, uv, n_items)
    top, hits, auc = _rank_targets(
        scorer, targets, spec, protocol=protocol, ranks_only=ranks_only,
        batch_size=batch_size, n_negatives=n_negatives, rng=sample_rng,
        show_progress=show_progress)

    def popularity() -> np.ndarray:
        return item_popularity(_binary(targets.train), n_items)

    def vectors() -> Any:
        return _vectors_from(item_vectors, iv, _binary(targets.train), top)

    values, per_user, ci = _score(spec, top, hits, targets.n_rel, auc, n_items, popularity,
                                  vectors, n_bootstrap, confidence, boot_rng)
    elapsed = time.perf_counter() - t0
    logger.info("evaluate: %d users, %s protocol, %.2fs (%.2fs scoring)", n_eval, protocol,
                elapsed, scorer.seconds)
    return EvaluationResult(
        values, per_user, uv.ids[targets.users], ci, protocol=protocol, k=ks, n_users=n_eval,
        n_items=n_items, n_negatives=n_negatives if protocol == "sampled" else None,
        counts=counts, elapsed=elapsed, scoring_time=scorer.seconds, n_bootstrap=n_bootstrap,
        confidence=confidence, model=type(model).__name__,
    )


# ---------------------------------------------------------------------------
# evaluate_lists
# ---------------------------------------------------------------------------
def _split_recommended(recommended: Any) -> tuple[np.ndarray, np.ndarray | None]:
    scores = None
    if (isinstance(recommended, tuple) and len(recommended) == 2
            and np.ndim(recommended[1]) == 2
            and np.shape(recommended[0]) == np.shape(recommended[1])):
        recommended, scores = recommended
        scores = np.asarray(scores, dtype=np.float64)
        if np.isnan(scores).any():
            raise DataError("recommended scores contain NaN; use -inf to mark padding")
    if isinstance(recommended, pd.DataFrame):
        recommended = recommended.to_numpy()
    if isinstance(recommended, np.ndarray):
        ids = recommended
        if ids.ndim != 2:
            raise DataError(f"recommended must be 2-d [n_users, k], got shape {ids.shape}")
    elif isinstance(recommended, Iterable) and not isinstance(recommended, (str, bytes)):
        rows = list(recommended)
        for i, r in enumerate(rows):
            if isinstance(r, (str, bytes)) or not isinstance(r, Iterable):
                raise DataError(f"recommended[{i}] must be a list of item ids, got {r!r}")
        ids = _to_object_matrix(rows)
    else:
        raise DataError(f"recommended must be a 2-d array or a list of lists, got {recommended!r}")
    return ids, scores


def _lists_metrics(metrics: Any, ks: tuple[int, ...], train: Any, item_vectors: Any) -> list:
    """The metrics :func:`evaluate_lists` computes (no ``auc``; what needs train checked)."""
    default = tuple(m for m in DEFAULT_METRICS if m != "auc" and (train is not None
                                                                   or m != "novelty"))
    spec = _parse_metrics(metrics, ks, default, _PER_K)
    if train is None and any(b == "novelty" for b, _ in spec):
        raise DataError("novelty needs train= (item popularity among training users)")
    if train is None and item_vectors is None and any(b == "diversity" for b, _ in spec):
        raise DataError("diversity needs item_vectors=, or train= for co-occurrence vectors")
    return spec


def _lists_vocabs(rec_ids: np.ndarray, user_vocab: IdVocab, test_i: Interactions,
                  train_i: Interactions | None) -> tuple[IdVocab, IdVocab]:
    """User and item vocabularies covering the lists, test and train (in that order).

    Warns (at :func:`evaluate_lists`' caller) when no recommended id occurs in the data.
    """
    iv = train_i.item_vocab if train_i is not None else test_i.item_vocab
    if train_i is not None:
        iv = iv.extend(test_i.item_vocab.ids)
    if len(rec_ids) and not (iv.index(rec_ids, unknown="ignore") >= 0).any():
        warnings.warn(
            f"none of the recommended item ids (e.g. {rec_ids[:3].tolist()}) occurs in "
            f"{'train or ' if train_i is not None else ''}test (ids like "
            f"{iv.ids[:3].tolist()}); do the id types match?",
            MaasrecWarning, stacklevel=3,
        )
    iv = iv.extend(pd.unique(pd.Series(rec_ids, dtype=object)) if rec_ids.dtype == object
                   else pd.unique(rec_ids))
    uv = user_vocab.extend(test_i.user_vocab.ids)
    if train_i is not None:
        uv = uv.extend(train_i.user_vocab.ids)
    return uv, iv


def _lists_matrix(ids: np.ndarray, pad: np.ndarray, iv: IdVocab, spec: list) -> np.ndarray:
    """The lists as item indices ``[n_lists, kmax]``: repeats and padding -> -1."""
    n_lists, width = ids.shape
    top_all = np.full((n_lists, width), -1, dtype=np.int64)
    top_all[~pad] = iv.index(ids[~pad])
    top_all = dedupe_rows(top_all)
    kmax = max(1, min(width, max(kk for _, kk in spec if kk is not None)))
    if width >= kmax:
        return top_all[:, :kmax]
    return np.concatenate(
        [top_all, np.full((n_lists, kmax - width), -1, dtype=np.int64)], axis=1)


def _lists_n_items(n_items: Any, top_all: np.ndarray, iv: IdVocab) -> int:
    """The catalogue size: given (at least the distinct items recommended), else ``len(iv)``."""
    n_distinct_rec = int(np.unique(top_all[top_all >= 0]).size)
    if n_items is None:
        return len(iv)
    n_items = _check_n_items(n_items)
    if n_items < n_distinct_rec:
        raise DataError(
            f"n_items={n_items} is smaller than the {n_distinct_rec} distinct items "
            f"recommended"
        )
    return n_items


def _lists_targets(test_i: Interactions, train_i: Interactions | None, uv: IdVocab,
                   iv: IdVocab, n_lists: int, counts: dict[str, int]
                   ) -> tuple[sp.csr_matrix | None, sp.csr_matrix, np.ndarray]:
    """Binary train, relevant items, and the lists (rows) with a relevant item.

    Warns (at :func:`evaluate_lists`' caller) about test users without a list.
    """
    test_bin = _binary(test_i.with_vocab(uv, iv))
    if train_i is not None:
        train_bin = _binary(train_i.with_vocab(uv, iv))
        rel = _minus(test_bin, train_bin)
    else:
        train_bin = None
        rel = test_bin
    counts["test_pairs_seen"] = int(test_bin.nnz - rel.nnz)
    has_test = np.diff(test_bin.indptr) > 0
    has_rel = np.diff(rel.indptr) > 0
    counts["users_without_test"] = int((~has_test[:n_lists]).sum())
    counts["users_no_relevant"] = int((has_test[:n_lists] & ~has_rel[:n_lists]).sum())
    missing = int(has_rel[n_lists:].sum())
    counts["test_users_without_list"] = missing
    if missing:
        warnings.warn(
            f"{missing} test user(s) with relevant items have no recommendation list and are "
            f"not evaluated; leaving them out flatters the result",
            MaasrecWarning, stacklevel=3,
        )
    rows = np.flatnonzero(has_rel[:n_lists]).astype(np.int64)
    if len(rows) == 0:
        raise DataError("none of the given users has a relevant test item")
    return train_bin, rel, rows


def evaluate_lists(recommended: Any, users: Any, test: Any, *, train: Any = None,
                   k: int | Sequence[int] = (10, 20), metrics: str | Sequence[str] | None = None,
                   n_items: int | None = None, item_vectors: Any = None,
                   n_bootstrap: int = 1000, random_state: Any = 0) -> EvaluationResult:
    """Score given top-k lists of raw item ids with the same code as :func:`evaluate`.

    Use it to score another library's recommendations so every library is measured by
    one implementation.

    Parameters
    ----------
    recommended : 2-d array, list of lists, or (item_ids, scores)
        One ranked list (best first) per user, raw item ids. Padding entries (None, NaN,
        ``""``, ``-1``, or a score of ``-inf`` when scores are given, as returned by
        ``recommend``) are empty slots; a repeated id counts only at its first rank.
        Lists shorter than k are padded with empty slots (precision still divides by k).
    users : sequence of raw user ids
        The user of each list (distinct).
    test : Interactions, pandas.DataFrame or scipy.sparse matrix
        Held-out interactions; every row is relevant. Users in ``users`` without a
        relevant test item are skipped; test users without a list are counted (and
        warned about: leaving them out flatters the result).
    train : Interactions, pandas.DataFrame or scipy.sparse matrix, optional
        When given, as in :func:`evaluate`: test items the user has in train are not
        relevant, and train gives popularity (novelty) and default item vectors
        (diversity). Needed for novelty, and for diversity without ``item_vectors``.
    k : int or sequence of int, default (10, 20)
    metrics : str or sequence of str, optional
        As in :func:`evaluate`, except ``auc`` (it needs scores for every candidate).
        Default: :data:`DEFAULT_METRICS` without ``auc`` (and without ``novelty`` when
        no ``train`` is given).
    n_items : int, optional
        Catalogue size for coverage and Gini. Default: the number of distinct items in
        train, test and the lists. Must cover every distinct recommended item.
    item_vectors : DataFrame indexed by raw item id, optional
        For diversity.
    n_bootstrap : int, default 1000
    random_state : int, numpy.random.Generator or None, default 0

    Returns
    -------
    EvaluationResult
        With ``protocol="lists"``.

    Raises
    ------
    DataError
        On mismatched lengths, duplicated users, bad ``k``/metric names, ``auc``, or
        metrics that need ``train`` without it.

    Examples
    --------
    >>> import pandas as pd
    >>> test = pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "c"]})
    >>> res = evaluate_lists([["a", "x"], ["y", "c"]], [1, 2], test, k=2,
    ...                      metrics=["hit", "recall"], n_bootstrap=0)
    >>> res["hit@2"], res["recall@2"]
    (1.0, 0.75)
    """
    t0 = time.perf_counter()
    ks = check_ks(k)
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, 0.95)
    spec = _lists_metrics(metrics, ks, train, item_vectors)
    ids, scores = _split_recommended(recommended)
    user_vocab = IdVocab(users if not isinstance(users, (pd.Series, pd.Index)) else
                         users.to_numpy(), name="user")
    n_lists = len(user_vocab)
    if ids.shape[0] != n_lists:
        raise DataError(f"recommended has {ids.shape[0]} lists but users has {n_lists} ids")
    test_i = as_interactions(test)
    train_i = as_interactions(train) if train is not None else None
    pad = is_pad(ids)
    if scores is not None:
        pad |= np.isneginf(scores)
    uv, iv = _lists_vocabs(ids[~pad], user_vocab, test_i, train_i)
    top_all = _lists_matrix(ids, pad, iv, spec)
    n_items = _lists_n_items(n_items, top_all, iv)
    counts: dict[str, int] = {}
    train_bin, rel, rows = _lists_targets(test_i, train_i, uv, iv, n_lists, counts)
    top = top_all[rows]
    n_rel = np.diff(rel.indptr)[rows].astype(np.int64)
    hits = lookup_hits(rows, top, _keys(rel), len(iv))
    rng = np.random.default_rng(random_state)
    _, boot_rng = rng.spawn(2)

    def popularity() -> np.ndarray:
        return item_popularity(train_bin, len(iv))

    def vectors() -> Any:
        return _vectors_from(item_vectors, iv, train_bin, top)

    values, per_user, ci = _score(spec, top, hits, n_rel, None, n_items, popularity, vectors,
                                  n_bootstrap, confidence, boot_rng)
    return EvaluationResult(
        values, per_user, user_vocab.ids[rows], ci, protocol="lists", k=ks, n_users=len(rows),
        n_items=n_items, n_negatives=None, counts=counts, elapsed=time.perf_counter() - t0,
        scoring_time=0.0, n_bootstrap=n_bootstrap, confidence=confidence, model=None,
    )


# ---------------------------------------------------------------------------
# evaluate_ratings
# ---------------------------------------------------------------------------
#: Metrics :func:`evaluate_ratings` computes.
RATING_METRICS = ("rmse", "mae")
_UNKNOWN_RATING_POLICIES = ("skip", "fallback", "raise")


class RatingEvaluationResult(Mapping):
    """What :func:`evaluate_ratings` returns: pooled rating errors and their intervals.

    A read-only mapping ``{"rmse": float, "mae": float}`` (the metrics asked for).

    Attributes
    ----------
    ci : dict of str to (float, float)
        Percentile bootstrap interval of each metric over resampled test ratings
        (NaN when ``n_bootstrap=0``).
    n_ratings : int
        Test ratings predicted.
    counts : dict of str to int
        ``test_rows_unknown_user`` / ``test_rows_unknown_item``: test rows whose user
        (item) the model does not know (skipped, or predicted by the model's fallback).
    model : str
        Class name of the evaluated model.
    elapsed : float
        Seconds.
    """

    def __init__(self, values: dict[str, float], ci: dict[str, tuple[float, float]], *,
                 n_ratings: int, counts: dict[str, int], model: str, elapsed: float,
                 unknown: str):
        self._values = dict(values)
        self.ci = ci
        self.n_ratings = int(n_ratings)
        self.counts = dict(counts)
        self.model = model
        self.elapsed = float(elapsed)
        self.unknown = unknown

    def __getitem__(self, name: str) -> float:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"{name!r} was not computed; available: {list(self._values)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: values, intervals, counts."""
        return {"values": dict(self._values), "ci": {k: list(v) for k, v in self.ci.items()},
                "n_ratings": self.n_ratings, "counts": dict(self.counts), "model": self.model,
                "unknown": self.unknown, "elapsed": self.elapsed}

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4f}" for k, v in self._values.items())
        return f"RatingEvaluationResult({vals}; {self.n_ratings} ratings, model={self.model})"


def _rating_metric_names(metrics: Any) -> list[str]:
    if metrics is None:
        return list(RATING_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    elif not isinstance(metrics, Iterable):
        raise DataError(f"metrics must be a name or a list of names, got {metrics!r}")
    names: list[str] = []
    for m in metrics:
        name = m.strip().lower() if isinstance(m, str) else m
        if name not in RATING_METRICS:
            raise DataError(f"unknown metric {m!r} for evaluate_ratings; valid names are "
                            f"{list(RATING_METRICS)} (ranking metrics: use evaluate())")
        if name not in names:
            names.append(name)
    if not names:
        raise DataError(f"metrics must not be empty; valid names are {list(RATING_METRICS)}")
    return names


def _rating_test(model: Any, uv: IdVocab, iv: IdVocab, test: Any, unknown: str
                 ) -> tuple[list, list, np.ndarray, dict[str, int]]:
    """Raw ids and ratings of the test rows to predict, with the unknown-row counts."""
    try:
        test = as_interactions(test)
    except DataError as exc:
        raise DataError(f"test: {exc}") from exc
    if not test.has_values:
        raise DataError("test has no rating column: evaluate_ratings compares predicted with "
                        "true ratings (give a frame with a 'rating' column)")
    if unknown == "raise":
        uv.index(test.user_vocab.ids)
        iv.index(test.item_vocab.ids)
    ku = (uv.index(test.user_vocab.ids, unknown="ignore") >= 0)[test.user_indices]
    ki = (iv.index(test.item_vocab.ids, unknown="ignore") >= 0)[test.item_indices]
    counts = {"test_rows_unknown_user": int((~ku).sum()),
              "test_rows_unknown_item": int((ku & ~ki).sum())}
    keep = np.ones(test.nnz, dtype=bool) if unknown == "fallback" else ku & ki
    n_unknown = counts["test_rows_unknown_user"] + counts["test_rows_unknown_item"]
    if n_unknown and unknown == "skip":
        warnings.warn(f"{n_unknown} of {test.nnz} test rows have a user or item unknown to "
                      f"{type(model).__name__} and are skipped (unknown='fallback' predicts "
                      f"them with the model's fallback)", ColdStartWarning, stacklevel=3)
    if not keep.any():
        raise DataError(f"no test row has a user and an item known to {type(model).__name__}")
    users = test.user_vocab.ids[test.user_indices[keep]].tolist()
    items = test.item_vocab.ids[test.item_indices[keep]].tolist()
    return users, items, np.asarray(test.values, dtype=np.float64)[keep], counts


def evaluate_ratings(model: Any, test: Any, metrics: str | Sequence[str] | None = None, *,
                     unknown: str = "skip", n_bootstrap: int = 1000, confidence: float = 0.95,
                     random_state: Any = 0) -> RatingEvaluationResult:
    """Evaluate a fitted rating model's predictions on held-out ratings (RMSE, MAE).

    Every test row ``(user, item, rating)`` is predicted with ``model.predict(users,
    items)`` and the errors are pooled over ratings (not averaged per user), as
    Surprise and LensKit's ``ByRating`` report them.

    Parameters
    ----------
    model : fitted rating model
        Needs ``user_vocab_``, ``item_vocab_`` and ``predict(users, items)`` (e.g.
        :class:`~maasrec.models.rating_mf.BiasedMF`); with ``unknown="fallback"``,
        ``predict(users, items, unknown="mean")``.
    test : Interactions, pandas.DataFrame or scipy.sparse matrix
        Held-out ratings (a rating column is required).
    metrics : str or sequence of str, optional
        Names from :data:`RATING_METRICS`; default both.
    unknown : {"skip", "fallback", "raise"}, default "skip"
        Test rows whose user or item the model does not know: ``"skip"`` leaves them
        out with a :class:`~maasrec.exceptions.ColdStartWarning` (as :func:`evaluate`
        does), ``"fallback"`` predicts them with the model's own fallback (Surprise's
        cross-validation counts them this way), ``"raise"`` raises
        :class:`~maasrec.exceptions.UnknownIdError`. Counted either way.
    n_bootstrap : int, default 1000
        Resamples of the test ratings for the intervals (0 skips them).
    confidence : float, default 0.95
    random_state : int, numpy.random.Generator or None, default 0
        Seeds the bootstrap.

    Returns
    -------
    RatingEvaluationResult

    Raises
    ------
    NotFittedError
    DataError
        A model without ``predict`` (one that cannot predict ratings), an unknown metric
        or policy, test data without ratings or with no known row, non-finite
        predictions.
    UnknownIdError
        With ``unknown="raise"``.

    Examples
    --------
    >>> res = evaluate_ratings(BiasedMF().fit(train), test)  # doctest: +SKIP
    >>> res["rmse"], res.ci["rmse"]  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    names = _rating_metric_names(metrics)
    if unknown not in _UNKNOWN_RATING_POLICIES:
        raise DataError(f"unknown must be one of {list(_UNKNOWN_RATING_POLICIES)}, got "
                        f"{unknown!r}")
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, confidence)
    uv, iv = _model_vocabs(model)
    if not getattr(model, "predicts_ratings", callable(getattr(model, "predict", None))):
        raise DataError(f"{type(model).__name__} cannot predict ratings (it has no "
                        f"predict(users, items)); evaluate_ratings needs a rating model such "
                        f"as BiasedMF; use evaluate() for ranking metrics")
    users, items, truth, counts = _rating_test(model, uv, iv, test, unknown)
    kwargs = {"unknown": "mean"} if unknown == "fallback" else {}
    pred = np.asarray(model.predict(users, items, **kwargs), dtype=np.float64)
    if pred.shape != truth.shape:
        raise DataError(f"{type(model).__name__}.predict returned shape {pred.shape} for "
                        f"{len(truth)} pairs")
    if not np.isfinite(pred).all():
        raise DataError(f"{type(model).__name__}.predict returned non-finite ratings")
    err = pred - truth
    per = {"rmse": err * err, "mae": np.abs(err)}
    post = {"rmse": np.sqrt, "mae": lambda x: x}
    values = {m: float(post[m](per[m].mean())) for m in names}
    ci = {m: (float("nan"), float("nan")) for m in names}
    if n_bootstrap:
        rng = np.random.default_rng(random_state)
        cols = np.stack([per[m] for m in names], axis=1)
        means = bootstrap_means(cols, n_bootstrap, rng)
        lo, hi = percentile_interval(means, confidence)
        ci = {m: (float(post[m](lo[j])), float(post[m](hi[j]))) for j, m in enumerate(names)}
    return RatingEvaluationResult(values, ci, n_ratings=len(truth), counts=counts,
                                  model=type(model).__name__,
                                  elapsed=time.perf_counter() - t0, unknown=unknown)
