"""Ranking and rating losses (BPR, BCE, sampled and full softmax, MSE)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..exceptions import DataError

__all__ = ["LOSSES", "bce_loss", "bpr_loss", "get_loss", "mse_loss", "sampled_softmax_loss",
           "softmax_loss"]


def _as_2d(neg: torch.Tensor) -> torch.Tensor:
    return neg.unsqueeze(1) if neg.dim() == 1 else neg


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Bayesian personalised ranking: ``-log σ(s_pos - s_neg)``, averaged.

    Parameters
    ----------
    pos : torch.Tensor, shape (b,)
        Scores of the positive items.
    neg : torch.Tensor, shape (b,) or (b, k)
        Scores of ``k`` negatives per positive.
    mask : torch.Tensor of bool, shape (b, k), optional
        Negatives to use (False: ignored, e.g. accidental hits).

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    neg = _as_2d(neg)
    terms = -torch.nn.functional.logsigmoid(pos.unsqueeze(1) - neg)
    if mask is None:
        return terms.mean()
    m = mask.to(terms.dtype)
    return (terms * m).sum() / m.sum().clamp(min=1.0)


def bce_loss(pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Binary cross-entropy with negatives (NCF's pointwise log loss).

    ``-log σ(s_pos) - Σ_j log(1 - σ(s_neg_j))`` per positive, averaged over positives,
    so each positive and its ``k`` negatives weigh as in He et al. (2017).

    Parameters
    ----------
    pos : torch.Tensor, shape (b,)
    neg : torch.Tensor, shape (b,) or (b, k)
    mask : torch.Tensor of bool, shape (b, k), optional

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    neg = _as_2d(neg)
    f = torch.nn.functional
    pos_term = -f.logsigmoid(pos)
    neg_terms = -f.logsigmoid(-neg)
    if mask is not None:
        neg_terms = neg_terms * mask.to(neg_terms.dtype)
    return (pos_term + neg_terms.sum(dim=1)).mean()


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, *,
                         log_q_pos: torch.Tensor | None = None,
                         log_q_neg: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None,
                         temperature: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy of each positive against sampled negatives.

    With ``log_q`` given (the log-probability that the sampler draws an item), logits
    are corrected by ``s - log q`` (the logQ correction of Bengio & Senécal 2008 and Yi
    et al. 2019), which makes the sampled loss an unbiased-in-the-limit estimate of the
    full softmax under popularity or in-batch sampling.

    Parameters
    ----------
    pos : torch.Tensor, shape (b,)
    neg : torch.Tensor, shape (b, k)
    log_q_pos : torch.Tensor, shape (b,), optional
    log_q_neg : torch.Tensor, shape (b, k) or (k,), optional
    mask : torch.Tensor of bool, shape (b, k), optional
        Negatives to use (False: excluded from the softmax, e.g. in-batch accidental
        hits of the positive itself).
    temperature : float, default 1.0
        Logits are divided by it.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    neg = _as_2d(neg)
    pos = pos / temperature
    neg = neg / temperature
    if log_q_pos is not None:
        pos = pos - log_q_pos
    if log_q_neg is not None:
        neg = neg - log_q_neg
    if mask is not None:
        neg = neg.masked_fill(~mask, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def softmax_loss(scores: torch.Tensor, targets: torch.Tensor,
                 weights: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Full cross-entropy over the catalogue.

    Two forms:

    - ``targets`` of shape ``(b,)`` (int): one target item per row (next-item
      prediction): the mean of ``-log softmax(scores)[r, targets[r]]``;
    - ``targets`` of int item indices with ``rows`` (same length): several targets per
      row (a user's items, the multinomial likelihood of Mult-VAE/DAE): the sum of
      ``-weights * log softmax`` over the pairs, divided by the number of rows.

    Parameters
    ----------
    scores : torch.Tensor, shape (b, n_items)
    targets : torch.Tensor of int64
    weights : torch.Tensor, optional
        Per-pair weights (default 1).
    rows : torch.Tensor of int64, optional
        Row of each target (multi-target form).
    label_smoothing : float, default 0.0
        One-target form without ``weights`` only: the target distribution puts
        ``1 - label_smoothing`` on the target and spreads ``label_smoothing`` evenly over
        the whole catalogue (as ``torch.nn.functional.cross_entropy``).

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    logp = torch.log_softmax(scores.float(), dim=1)
    if label_smoothing and (rows is not None or weights is not None):
        raise ValueError(f"label_smoothing={label_smoothing!r} needs the one-target form "
                         "without weights")
    if rows is None:
        if weights is None:
            nll = torch.nn.functional.nll_loss(logp, targets)
            if label_smoothing:
                eps = float(label_smoothing)
                return (1.0 - eps) * nll - eps * logp.mean(dim=1).mean()
            return nll
        picked = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
        return -(picked * weights).sum() / weights.sum().clamp(min=1e-12)
    picked = logp[rows, targets]
    if weights is not None:
        picked = picked * weights
    return -picked.sum() / max(int(scores.shape[0]), 1)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (explicit ratings).

    Parameters
    ----------
    pred, target : torch.Tensor, same shape

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    return torch.nn.functional.mse_loss(pred.float(), target.float())


#: Loss functions by name. ``"softmax"`` is the full cross-entropy over the catalogue.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "bpr": bpr_loss,
    "bce": bce_loss,
    "sampled_softmax": sampled_softmax_loss,
    "softmax": softmax_loss,
    "mse": mse_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function called ``name``.

    Parameters
    ----------
    name : {"bpr", "bce", "sampled_softmax", "softmax", "mse"}

    Returns
    -------
    callable

    Raises
    ------
    DataError
        For an unknown name.
    """
    if name not in LOSSES:
        raise DataError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]
