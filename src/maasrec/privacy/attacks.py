"""Privacy attacks used as evaluation helpers: how much does a model give away?

:func:`membership_inference` runs a loss-threshold membership-inference attack (Yeom et
al., 2018, "Privacy risk in machine learning") at the level of users: given a fitted
model, the users it was trained on (``train``) and users it never saw (``holdout``), it
scores every user by how well the model predicts that user's own items from that user's
own history, and reports the ROC-AUC of "this user was in the training set" over the
two groups. 0.5 means the attacker learns nothing from the threshold; 1.0 means the
training users are perfectly told apart. A differentially private model bounds any such
attack (at epsilon, an attack's true-positive rate is at most ``exp(epsilon)`` times its
false-positive rate plus delta), so this is a check, not a proof: a low AUC for this
attack does not rule out a better one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.interactions import Interactions, as_interactions
from ..exceptions import DataError, NotFittedError

__all__ = ["MembershipInferenceResult", "membership_inference"]

_STATISTICS = ("loglik", "rank")
_TARGETS = ("all", "last")


@dataclass
class MembershipInferenceResult:
    """What :func:`membership_inference` returns.

    Attributes
    ----------
    auc : float
        ROC-AUC of the attack (training users are the positives; higher score = guessed
        member). 0.5: no better than chance.
    member_scores, nonmember_scores : numpy.ndarray of float
        The attack score of every scored training / held-out user.
    member_users, nonmember_users : numpy.ndarray
        Their raw ids, aligned with the scores.
    statistic, target : str
        How the users were scored (see :func:`membership_inference`).
    """

    auc: float
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    member_users: np.ndarray
    nonmember_users: np.ndarray
    statistic: str
    target: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary (AUC, counts, mean scores) as a JSON-ready dict."""
        return {"auc": float(self.auc), "statistic": self.statistic, "target": self.target,
                "n_members": len(self.member_scores),
                "n_nonmembers": len(self.nonmember_scores),
                "member_mean": float(np.mean(self.member_scores)),
                "nonmember_mean": float(np.mean(self.nonmember_scores)), **self.extra}


def _user_rows(data: Interactions, known_items, target: str, max_users: int | None,
               rng: np.random.Generator) -> tuple[list, list[np.ndarray], list[np.ndarray]]:
    """(raw user ids, histories, targets) of the users with something to score."""
    seqs = data.sequences(as_ids=True)
    users = data.user_vocab.ids_of(np.arange(data.n_users))
    out_u, out_h, out_t = [], [], []
    for u, seq in zip(users, seqs):
        seq = np.asarray([i for i in seq if i in known_items], dtype=object)
        if target == "all":
            if len(seq) == 0:
                continue
            hist, tgt = seq, np.unique(seq)
        else:
            if len(seq) < 2:
                continue
            hist, tgt = seq[:-1], seq[-1:]
        out_u.append(u)
        out_h.append(hist)
        out_t.append(tgt)
    if max_users is not None and len(out_u) > max_users:
        keep = np.sort(rng.choice(len(out_u), size=int(max_users), replace=False))
        out_u = [out_u[i] for i in keep]
        out_h = [out_h[i] for i in keep]
        out_t = [out_t[i] for i in keep]
    return out_u, out_h, out_t


def _score_users(model, histories: list[np.ndarray], targets: list[np.ndarray],
                 statistic: str, batch_size: int) -> np.ndarray:
    n_items = len(model.item_vocab_)
    out = np.empty(len(histories), dtype=np.float64)
    for s in range(0, len(histories), batch_size):
        hist = [list(h) for h in histories[s:s + batch_size]]
        ids, scores = model.recommend(None, k=n_items, exclude_seen=False, history=hist)
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores).astype(np.float64)
        for r, tgt in enumerate(targets[s:s + batch_size]):
            row_ids, row = ids[r], scores[r]
            finite = np.isfinite(row)
            pos = {i: j for j, i in enumerate(row_ids.tolist())}
            where = np.asarray([pos[t] for t in tgt.tolist()], dtype=np.int64)
            if statistic == "loglik":
                z = row[finite]
                m = z.max()
                lse = m + np.log(np.exp(z - m).sum())
                out[s + r] = float(np.mean(row[where] - lse))
            else:  # rank: 1 = the user's items ranked first, 0 = last
                n = max(int(finite.sum()) - 1, 1)
                out[s + r] = float(np.mean(1.0 - where / n))
    return out


def membership_inference(model, train, holdout, *, statistic: str = "loglik",
                         target: str = "all", max_users: int | None = 2000,
                         random_state: Any = 0, batch_size: int = 256
                         ) -> MembershipInferenceResult:
    """Loss-threshold membership inference over users: ROC-AUC of members vs non-members.

    Every user of ``train`` (members: the model was fitted on them) and of ``holdout``
    (non-members: users the model never saw) is scored the same way, through the
    model's public ``recommend(history=...)``: the user's items are given as history
    and the model ranks the whole catalogue; the attack score is how well the model
    predicts the user's own items (a low loss means "member"). A model that memorised its
    training users predicts their items better than those of new users.

    Parameters
    ----------
    model : Recommender
        A fitted model that serves users from a history (``supports_history``):
        HybridRecommender, SequentialRecommender, ItemKNN, EASE, ...
    train : Interactions
        Interactions of the training users (usually the data the model was fitted on, or
        a sample of its users).
    holdout : Interactions
        Interactions of users the model never saw (e.g. from
        :func:`maasrec.data.split.cold_user_split`). Items unknown to the model are
        dropped from the histories.
    statistic : {"loglik", "rank"}, default "loglik"
        ``"loglik"``: the mean log-softmax of the user's items over the catalogue's
        scores (minus the cross-entropy loss, the Yeom et al. attack); ``"rank"``: their
        mean rank percentile (1 = ranked first), scale-free.
    target : {"all", "last"}, default "all"
        ``"all"``: the user's items given all of them; ``"last"``: the user's last item
        given the earlier ones (next-item models).
    max_users : int or None, default 2000
        Score at most this many users per group (a seeded sample).
    random_state : int, default 0
        Seeds that sample.
    batch_size : int, default 256
        Users ranked per call.

    Returns
    -------
    MembershipInferenceResult

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    DataError
        A model that cannot score users from a history, a bad ``statistic``/``target``,
        a user found in both groups, or a group with no user left to score.
    """
    if not getattr(model, "is_fitted", False):
        raise NotFittedError(f"membership_inference needs a fitted model, got an unfitted "
                             f"{type(model).__name__}")
    if not getattr(model, "supports_history", False):
        raise DataError(f"membership_inference scores users from their history; "
                        f"{type(model).__name__} cannot (supports_history is False)")
    if statistic not in _STATISTICS:
        raise DataError(f"statistic must be one of {list(_STATISTICS)}, got {statistic!r}")
    if target not in _TARGETS:
        raise DataError(f"target must be one of {list(_TARGETS)}, got {target!r}")
    if max_users is not None and (isinstance(max_users, bool) or not isinstance(
            max_users, (int, np.integer)) or max_users < 1):
        raise DataError(f"max_users must be a positive integer or None, got {max_users!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    train, holdout = as_interactions(train), as_interactions(holdout)
    both = set(train.user_vocab.ids_of(train.users_with_interactions()).tolist()) & set(
        holdout.user_vocab.ids_of(holdout.users_with_interactions()).tolist())
    if both:
        raise DataError(f"membership_inference: {len(both)} users are in both train and "
                        f"holdout (e.g. {sorted(map(str, both))[:3]}); the groups must be "
                        "disjoint")
    rng = np.random.default_rng(random_state)
    known = set(model.item_vocab_.ids_of(np.arange(len(model.item_vocab_))).tolist())
    groups = []
    for name, data in (("train", train), ("holdout", holdout)):
        users, hist, tgt = _user_rows(data, known, target, max_users, rng)
        if not users:
            raise DataError(f"membership_inference: no user of {name} has an item the model "
                            "knows" + (" and 2 or more interactions" if target == "last"
                                       else ""))
        groups.append((np.asarray(users, dtype=object),
                       _score_users(model, hist, tgt, statistic, int(batch_size))))
    from ..metrics.classification import roc_auc

    (mu, ms), (nu, ns) = groups
    y = np.r_[np.ones(len(ms)), np.zeros(len(ns))]
    auc = float(roc_auc(y, np.r_[ms, ns]))
    return MembershipInferenceResult(auc, ms, ns, mu, nu, statistic, target)
