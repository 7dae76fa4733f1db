"""Explanations of recommendations, and how faithful they are.

:meth:`Recommender.explain <maasrec.base.Recommender.explain>` answers "why this item
for this user?" with an :class:`Explanation`: the user's history items that contributed
to the item's score, with signed weights, the score, how the weights were obtained
(``method``) and a one-line reason ("Because you watched Alien and Blade Runner").

A model explains by implementing one hook,
``_explain_history(row, item_idx, user_idx) -> ExplainTerms``, where ``row`` is the
user's interactions as a 1 x n_items CSR matrix (the training row of a known user, or
the binary row of a ``history=``) and ``item_idx`` the explained item's index. Models
that read a history in order (SequentialRecommender, BERT4Rec, LMRanker) implement
``_explain_sequence(seq, item_idx, user_idx, **options) -> ExplainTerms`` instead, where
``seq`` is the history as item indices, oldest first, repeats kept (a known user's stored
sequence, or a ``history=`` in the given order); their weights are per history
*position*. Models without either hook raise :class:`NotExplainableError`.

:func:`deletion_test` measures faithfulness: removing the top explanatory history items
should lower the explained item's score and rank more than removing as many random ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import check_int
from .exceptions import DataError, MaasrecError

__all__ = [
    "Contribution",
    "DeletionResult",
    "ExplainTerms",
    "Explanation",
    "NotExplainableError",
    "deletion_test",
    "explain",
]

#: Longest title (characters) shown in a reason; longer texts are cut with an ellipsis.
TITLE_CHARS = 80


class NotExplainableError(MaasrecError, NotImplementedError):
    """The model has no ``explain`` (or cannot explain this kind of input)."""


@dataclass(frozen=True)
class ExplainTerms:
    """What a model's ``_explain_history`` hook returns (index level, all history items).

    Attributes
    ----------
    score : float
        The explained item's score under this decomposition.
    items : np.ndarray of int64
        Item indices of the contributing history items.
    weights : np.ndarray of float64
        One signed weight per entry of ``items``.
    method : str
        ``"exact"`` (``score == baseline + weights.sum()``), ``"leave-one-out"`` (each
        weight is the score minus the score without that history item or position),
        ``"approximation"`` or ``"popularity"``.
    baseline : float or None
        The part of the score no history item accounts for (None where the weights do
        not add up to the score).
    note : str
        What the weights mean, for this model.
    positions : np.ndarray of int64, optional
        For sequence explanations: the position of each entry of ``items`` in the
        history (0 = oldest).
    modalities : mapping of str to float, optional
        Contributions of the explained item's modalities (e.g. ``"id"``, ``"text"``).
    extras : mapping of str to np.ndarray, optional
        Further per-history-item values aligned with ``items`` (e.g.
        ``"text_similarity"``).
    details : mapping, optional
        Anything else worth returning, JSON-ready (e.g. token attributions).
    """

    score: float
    items: np.ndarray
    weights: np.ndarray
    method: str
    baseline: float | None
    note: str
    positions: np.ndarray | None = None
    modalities: Mapping[str, float] = field(default_factory=dict)
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contribution:
    """One history item's contribution to an explained score.

    Attributes
    ----------
    item : object
        Raw id of the history item.
    weight : float
        Signed weight (positive: pushed the explained item up).
    title : str or None
        Its title, when titles were given.
    position : int or None
        Its position in the history (0 = oldest) for models that read the history in
        order; None otherwise.
    extras : mapping of str to float
        Further per-item values of the model (e.g. ``"text_similarity"`` for
        HybridRecommender); empty for most models.
    """

    item: Any
    weight: float
    title: str | None = None
    position: int | None = None
    extras: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{"item", "weight", "title"}`` (plus ``"position"`` and ``"extras"`` when
        set) with JSON-ready values."""
        out = {"item": _json_id(self.item), "weight": float(self.weight), "title": self.title}
        if self.position is not None:
            out["position"] = int(self.position)
        if self.extras:
            out["extras"] = {str(k): float(v) for k, v in self.extras.items()}
        return out


@dataclass(frozen=True)
class Explanation:
    """Why a model scores an item as it does for one user.

    Attributes
    ----------
    item : object
        Raw id of the explained item.
    score : float
        Its score under the explanation's decomposition (see ``method``).
    contributions : tuple of Contribution
        The ``n`` history items with the largest ``|weight|``, largest first.
    method : str
        ``"exact"``: the weights of *all* history items plus ``baseline`` sum to
        ``score`` (EASE, ItemKNN, PureSVD, ALS, LightGCN); ``"leave-one-out"``: each
        weight is the score minus the score with that history item (or position) left
        out (HybridRecommender, NeuMF, MultVAE, SequentialRecommender, BERT4Rec,
        LMRanker); ``"approximation"``: the weights rank the history items (BPRMF:
        cosine similarity in factor space) but do not add up to the score;
        ``"popularity"``: the score does not depend on the history.
    reason : str
        One line, e.g. ``"Because you watched Alien and Blade Runner"``.
    baseline : float or None
        The part of the score no history item accounts for (0 for the linear models,
        the whole score for Popularity, None for approximations).
    user : object or None
        Raw user id, or None for a ``history=``.
    model : str
        The model's class name.
    n_history : int
        Number of history items that were weighted (all of them, not only the ``n`` shown).
    modalities : dict
        Contributions of the explained item's modalities (HybridRecommender: its id
        embedding, text and features parts, and the bias); empty for other models.
    note : str
        What the weights mean for this model.
    details : dict
        Model-specific extras, JSON-ready (LMRanker with ``tokens=True``: token
        attributions under ``"tokens"``).
    """

    item: Any
    score: float
    contributions: tuple[Contribution, ...]
    method: str
    reason: str
    baseline: float | None = None
    user: Any = None
    model: str = ""
    n_history: int = 0
    modalities: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The explanation as JSON-ready Python values (``details`` only when not empty).

        Returns
        -------
        dict
        """
        return {
            "item": _json_id(self.item),
            "score": float(self.score),
            "contributions": [c.to_dict() for c in self.contributions],
            "method": self.method,
            "reason": self.reason,
            "baseline": None if self.baseline is None else float(self.baseline),
            "user": _json_id(self.user),
            "model": self.model,
            "n_history": int(self.n_history),
            "modalities": {str(k): float(v) for k, v in self.modalities.items()},
            "note": self.note,
        } | ({"details": dict(self.details)} if self.details else {})


def _json_id(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _single_id(x: Any, what: str) -> Any:
    if x is None or isinstance(x, (list, tuple, set, dict, np.ndarray)) or sp.issparse(x):
        raise DataError(f"{what}= must be one raw id, got {type(x).__name__} {x!r}")
    return x


class _Titles:
    """Titles of raw item ids from a mapping, a pandas Series or ItemFeatures' text."""

    def __init__(self, spec: Any):
        from .data.features import Features

        self._features = None
        self._map = None
        if spec is None:
            return
        if isinstance(spec, Features):
            if not spec.has_text:
                raise DataError("item_titles= is an ItemFeatures without text; give features "
                                "with text, or a {item id: title} mapping")
            self._features = spec
        elif isinstance(spec, Mapping) or (hasattr(spec, "to_dict") and hasattr(spec, "index")):
            self._map = spec  # a dict or a pandas Series indexed by raw item id
        else:
            raise DataError(f"item_titles= must be a {{item id: title}} mapping, a pandas Series "
                            f"or ItemFeatures with text, got {type(spec).__name__}")

    def __call__(self, item: Any) -> str | None:
        if self._features is not None:
            idx = int(self._features.vocab.index([item], unknown="ignore")[0])
            if idx < 0 or not self._features.text_mask[idx]:
                return None
            t = str(self._features.text[idx]).strip().splitlines()[0] if str(
                self._features.text[idx]).strip() else ""
        elif self._map is not None:
            try:
                t = self._map.get(item)
            except TypeError:  # unhashable or a Series of another index type
                t = None
            if t is None or (isinstance(t, float) and math.isnan(t)):
                return None
            t = str(t).strip()
        else:
            return None
        if not t:
            return None
        return t if len(t) <= TITLE_CHARS else t[: TITLE_CHARS - 1].rstrip() + "…"


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _reason(method: str, contributions: tuple[Contribution, ...], score: float,
            n_history: int, verb: str, note: str) -> str:
    if method == "popularity":
        return f"Popular with {score:g} users" if score > 0 else "Not popular: no user had it"
    support, named = [], set()
    for c in contributions:  # a sequence may hold an item twice: name it once
        if c.weight > 0 and c.item not in named:
            named.add(c.item)
            support.append(c)
    support = support[:2]
    if not support:
        if n_history == 0:
            return "No history to explain from: the score comes from the model alone"
        return "No item in the history supports it"
    names = [c.title if c.title else f"item {c.item}" for c in support]
    return f"Because you {verb} {_names(names)}"


def explain(model, user=None, item=None, *, history=None, n: int = 5, item_titles=None,
            verb: str = "watched", options: Mapping[str, Any] | None = None) -> Explanation:
    """Explain ``model``'s score of ``item`` for a user (see :meth:`Recommender.explain`).

    Parameters
    ----------
    model : Recommender
    user, item, history, n, item_titles, verb
        As in :meth:`Recommender.explain <maasrec.base.Recommender.explain>`.
    options : mapping, optional
        Model-specific keyword options passed to its hook (LMRanker: ``tokens``).

    Returns
    -------
    Explanation
    """
    model._check_fitted()
    name = type(model).__name__
    seq_hook = getattr(model, "_explain_sequence", None)
    hook = getattr(model, "_explain_history", None)
    if hook is None and seq_hook is None:
        raise NotExplainableError(
            f"{name} has no explain(): only models that can attribute a score to history "
            f"items explain")
    n = check_int("n", n, low=1)
    if not isinstance(verb, str) or not verb.strip():
        raise DataError(f"verb= must be a non-empty string, got {verb!r}")
    titles = _Titles(item_titles)
    item = _single_id(item, "item")
    item_idx = int(model.item_vocab_.index([item])[0])
    if (user is None) == (history is None):
        raise DataError("give exactly one of user=... (a known user id) or history=... "
                        "(a sequence of raw item ids)")
    user_idx = None
    seq = None
    if history is not None:
        if not model.supports_history:
            raise NotExplainableError(
                f"{name} cannot score a history (supports_history is False), so it cannot "
                f"explain one; explain a user known at fit time with user=...")
        if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
            raise DataError(f"history= must be a sequence of raw item ids, got {history!r}")
        seqs = model._history_indices([list(history)])
        row = model._history_matrix([list(history)], seqs)
        seq = np.asarray(seqs[0], dtype=np.int64)
    else:
        user = _single_id(user, "user")
        user_idx = int(model.user_vocab_.index([user])[0])
        row = sp.csr_matrix(model.seen_[user_idx])
        if seq_hook is not None:
            seq = _stored_sequence(model, user_idx)
    if item_idx in set(row.indices.tolist()) or (seq is not None and item_idx in set(
            seq.tolist())):
        who = f"user {_json_id(user)!r}'s" if user is not None else "the given"
        raise DataError(f"item {item!r} is already in {who} history; explain an item the "
                        f"user has not interacted with")
    opts = dict(options or {})
    if seq_hook is not None:
        terms = seq_hook(seq, item_idx, user_idx, **opts)
    else:
        if opts:
            raise DataError(f"{name}.explain takes no options, got {sorted(opts)}")
        terms = hook(row, item_idx, user_idx)
    return _explanation(model, terms, item, user, n, titles, verb.strip())


def _stored_sequence(model, user_idx: int) -> np.ndarray:
    """A known user's history as the model stored it (item indices, oldest first).

    Models that keep ordered histories (``history_indptr_``/``history_items_``) give
    those; others the user's row of ``seen_`` (in index order).
    """
    ip = getattr(model, "history_indptr_", None)
    items = getattr(model, "history_items_", None)
    if ip is not None and items is not None:
        return np.asarray(items[ip[user_idx]:ip[user_idx + 1]], dtype=np.int64)
    R = sp.csr_matrix(model.seen_[user_idx])
    return np.asarray(R.indices, dtype=np.int64)


def _explanation(model, terms: ExplainTerms, item, user, n: int, titles: _Titles,
                 verb: str) -> Explanation:
    w = np.asarray(terms.weights, dtype=np.float64)
    idx = np.asarray(terms.items, dtype=np.int64)
    pos = None if terms.positions is None else np.asarray(terms.positions, dtype=np.int64)
    # by |weight| descending, ties by position (sequences) or index
    order = np.lexsort((idx if pos is None else pos, -np.abs(w)))[:n]
    ids = model.item_vocab_.ids[idx[order]]
    extras = {k: np.asarray(v, dtype=np.float64) for k, v in terms.extras.items()}
    contributions = tuple(
        Contribution(_json_id(i), float(w[o]), titles(_json_id(i)),
                     None if pos is None else int(pos[o]),
                     {k: float(v[o]) for k, v in extras.items() if math.isfinite(v[o])})
        for i, o in zip(ids, order))
    reason = _reason(terms.method, contributions, terms.score, len(idx), verb, terms.note)
    return Explanation(item=_json_id(item), score=float(terms.score), contributions=contributions,
                       method=terms.method, reason=reason, baseline=terms.baseline,
                       user=_json_id(user), model=type(model).__name__, n_history=len(idx),
                       modalities={str(k): float(v) for k, v in terms.modalities.items()},
                       note=terms.note, details=dict(terms.details))


# -- faithfulness ---------------------------------------------------------------------
@dataclass(frozen=True)
class DeletionResult:
    """The deletion test of one model (see :func:`deletion_test`).

    Attributes
    ----------
    model : str
    n_users : int
        Users tested.
    k_remove : int
    rank_drop_top, rank_drop_random : float
        Mean fall in rank of the explained item (1 = top) after removing the top
        ``k_remove`` explanatory history items / ``k_remove`` random ones (averaged over
        ``n_random`` draws per user).
    score_drop_top, score_drop_random : float
        Mean fall of its score, relative to the score on the full history.
    rank_ratio, score_ratio : float
        ``*_drop_top / *_drop_random`` (inf when the random drop is 0 and the top one is
        not; nan when both are 0).
    top_wins : float
        Share of users whose rank fell more with the top items removed than with the
        random ones (ties count half).
    median_rank_drop_top, median_rank_drop_random : float
    rank_ratio_se, score_ratio_se : float
        Standard errors of the ratios over the sampled users (delta method for a ratio
        of two means of paired per-user drops; nan with fewer than 2 users or a random
        drop of 0).
    """

    model: str
    n_users: int
    k_remove: int
    rank_drop_top: float
    rank_drop_random: float
    rank_ratio: float
    score_drop_top: float
    score_drop_random: float
    score_ratio: float
    top_wins: float
    median_rank_drop_top: float
    median_rank_drop_random: float
    rank_ratio_se: float = float("nan")
    score_ratio_se: float = float("nan")

    def to_dict(self) -> dict:
        """The result as JSON-ready values (inf/nan as strings)."""
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            out[k] = v
        return out


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return float("nan") if a == 0 else math.copysign(float("inf"), a)


def _ratio_se(top: list[float], rand: list[float]) -> float:
    """Delta-method standard error of ``mean(top) / mean(rand)`` over paired users."""
    x = np.asarray(top, dtype=np.float64)
    y = np.asarray(rand, dtype=np.float64)
    n = len(x)
    b = float(y.mean()) if n else 0.0
    if n < 2 or b <= 0:
        return float("nan")
    a = float(x.mean())
    c = np.cov(x, y, ddof=1)
    var = (c[0, 0] / b**2 - 2 * a * c[0, 1] / b**3 + a**2 * c[1, 1] / b**4) / n
    return float(np.sqrt(max(var, 0.0)))


def _scores_of(model, seqs: list[np.ndarray], items: np.ndarray) -> np.ndarray:
    """Scores ``[len(seqs), len(items)]`` of ``items`` for users given by histories (item
    indices; in order for order-aware models), through the model's own history scoring."""
    hook = getattr(model, "_explain_scores", None)
    if hook is not None:  # e.g. a two-stage model: its second stage's scores
        return np.asarray(hook(seqs, items), dtype=np.float64)
    if model.ordered_history:
        out = model._score_sequences([np.asarray(s, dtype=np.int64) for s in seqs])
    else:
        out = model._score_history(model._history_matrix([None] * len(seqs), list(seqs)))
    if hasattr(out, "cpu"):
        out = out.float().cpu().numpy()
    return np.asarray(out, dtype=np.float64)[:, items]


def _terms_of(model, h: np.ndarray, item_idx: int) -> ExplainTerms:
    """The explanation terms of ``item_idx`` for the history ``h`` (index level)."""
    if getattr(model, "_explain_sequence", None) is not None:
        return model._explain_sequence(h, item_idx, None)
    return model._explain_history(model._history_matrix([None], [h]), item_idx, None)


def _rank(scores: np.ndarray, target: int) -> int:
    return 1 + int(np.count_nonzero(scores > scores[target]))


def _deletion_one(model, h: np.ndarray, k_remove: int, n_random: int,
                  rng: np.random.Generator) -> tuple[int, float, float, float]:
    """Rank and relative score drops of one user's top-1 item: top removal, random mean."""
    cand_hook = getattr(model, "_explain_candidates", None)
    cand = (np.asarray(cand_hook(h), dtype=np.int64) if cand_hook is not None
            else np.setdiff1d(np.arange(model.n_items_), h))
    full = _scores_of(model, [h], cand)[0]
    t = int(np.argmax(full))
    terms = _terms_of(model, h, int(cand[t]))
    w = np.asarray(terms.weights, dtype=np.float64)
    top = np.lexsort((np.arange(len(w)), -w))[:k_remove]
    keep = np.ones(len(h), dtype=bool)
    if terms.positions is not None:  # weights per position: remove those positions
        keep[np.asarray(terms.positions, dtype=np.int64)[top]] = False
    else:  # weights per item: remove every occurrence
        keep &= ~np.isin(h, np.asarray(terms.items, dtype=np.int64)[top])
    variants = [h[keep]]
    for _ in range(n_random):
        k = np.ones(len(h), dtype=bool)
        k[rng.choice(len(h), k_remove, replace=False)] = False
        variants.append(h[k])
    S = _scores_of(model, variants, cand)
    denom = abs(full[t]) if full[t] != 0 else 1.0
    ranks = [_rank(s, t) - 1 for s in S]
    sdrops = [float((full[t] - s[t]) / denom) for s in S]
    return (ranks[0], float(np.mean(ranks[1:])), sdrops[0], float(np.mean(sdrops[1:])))


def _histories(model, data) -> list[np.ndarray]:
    """Each user's history (item indices of the model; in time order for models that
    explain sequences) from ``data``, or from the model itself when ``data`` is None."""
    ordered = getattr(model, "_explain_sequence", None) is not None
    if data is None:
        if ordered:
            return [_stored_sequence(model, u) for u in range(model.n_users_)]
        R = sp.csr_matrix(model.seen_)
        R.sum_duplicates()
        return [R.indices[R.indptr[u]:R.indptr[u + 1]].astype(np.int64)
                for u in range(R.shape[0])]
    from .data.interactions import as_interactions

    data = as_interactions(data)
    cols_of = model.item_vocab_.index(data.item_vocab.ids, unknown="ignore")
    if ordered:
        out = []
        for s in data.sequences():
            c = cols_of[s]
            out.append(c[c >= 0].astype(np.int64))
        return out
    C = data.to_csr().tocoo()
    cols = cols_of[C.col]
    keep = cols >= 0
    R = sp.csr_matrix((C.data[keep], (C.row[keep], cols[keep])),
                      shape=(C.shape[0], model.n_items_))
    R.sum_duplicates()
    return [R.indices[R.indptr[u]:R.indptr[u + 1]].astype(np.int64) for u in range(R.shape[0])]


def deletion_test(model, data=None, *, n_users: int = 500, k_remove: int = 3,
                  n_random: int = 3, min_history: int | None = None,
                  random_state=None) -> DeletionResult:
    """Faithfulness of ``model.explain``: remove the top explanatory items vs random ones.

    For each sampled user: the history ``h`` (their items in ``data``), the model's top-1
    recommendation ``t`` for ``history=h`` (among items not in ``h``), its explanation
    over all of ``h``; then ``t``'s score and rank (among the items not in ``h``) when
    the ``k_remove`` history items with the largest positive weights are removed,
    against removing ``k_remove`` random history items (``n_random`` draws). A faithful
    explanation makes the first drop larger.

    Models that explain history *positions* (SequentialRecommender, BERT4Rec, LMRanker)
    are tested on time-ordered histories, and the top and random removals are
    positions. A two-stage model (LMRanker) is tested on what it explains, its second
    stage's score: ``t`` and the ranks are taken among the first stage's candidates for
    the full history, which stay fixed while history items are removed.

    Parameters
    ----------
    model : Recommender
        Fitted, with ``explain`` and ``supports_history`` (scores a history).
    data : Interactions, optional
        Where the users' histories come from (items the model does not know are left
        out; in time order for the models above). Default: the model's training data
        (``seen_``, or the ordered histories the model stored).
    n_users : int, default 500
        Users sampled (without replacement) among those with at least ``min_history``
        items.
    k_remove : int, default 3
    n_random : int, default 3
        Random removals per user (their drops are averaged).
    min_history : int, optional
        Default ``2 * k_remove``.
    random_state : int, numpy.random.Generator or None
        Seeds the user sample and the random removals.

    Returns
    -------
    DeletionResult

    Raises
    ------
    NotExplainableError
        The model cannot explain, or cannot score a history (its scores would not move).
    DataError
        No user has ``min_history`` items.
    """
    from ._rng import seed_from

    model._check_fitted()
    name = type(model).__name__
    if not model.supports_history:
        raise NotExplainableError(
            f"{name} cannot score a history (supports_history is False): removing history "
            f"items cannot change its scores, so the deletion test does not apply")
    if getattr(model, "_explain_history", None) is None and getattr(
            model, "_explain_sequence", None) is None:
        raise NotExplainableError(f"{name} has no explain()")
    n_users = check_int("n_users", n_users, low=1)
    k_remove = check_int("k_remove", k_remove, low=1)
    n_random = check_int("n_random", n_random, low=1)
    min_history = check_int("min_history", 2 * k_remove if min_history is None else min_history,
                            low=k_remove + 1)
    rng = np.random.default_rng(seed_from(random_state))
    hists = _histories(model, data)
    lengths = np.array([len(h) for h in hists], dtype=np.int64)
    eligible = np.flatnonzero(lengths >= min_history)
    if len(eligible) == 0:
        raise DataError(f"no user has at least min_history={min_history} items")
    users = rng.choice(eligible, size=min(n_users, len(eligible)), replace=False)
    rt, rr, st, sr, wins = [], [], [], [], []
    for u in users:
        h = hists[u]
        r_top, r_rand, s_top, s_rand = _deletion_one(model, h, k_remove, n_random, rng)
        rt.append(r_top)
        rr.append(r_rand)
        st.append(s_top)
        sr.append(s_rand)
        wins.append(1.0 if r_top > r_rand else 0.5 if r_top == r_rand else 0.0)
    m = {k: float(np.mean(v)) for k, v in (("rt", rt), ("rr", rr), ("st", st), ("sr", sr))}
    return DeletionResult(
        model=name, n_users=len(users), k_remove=k_remove,
        rank_drop_top=m["rt"], rank_drop_random=m["rr"], rank_ratio=_ratio(m["rt"], m["rr"]),
        score_drop_top=m["st"], score_drop_random=m["sr"], score_ratio=_ratio(m["st"], m["sr"]),
        top_wins=float(np.mean(wins)), median_rank_drop_top=float(np.median(rt)),
        median_rank_drop_random=float(np.median(rr)), rank_ratio_se=_ratio_se(rt, rr),
        score_ratio_se=_ratio_se(st, sr))
