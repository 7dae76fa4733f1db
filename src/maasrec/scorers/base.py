"""The interface shared by the scorers: user and item representations -> scores."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._config import FromConfig
from ..encoders._utils import check_int
from ..exceptions import DataError

__all__ = ["SCORE_CHUNK_BYTES", "Scorer", "UserRepr"]

#: Memory budget (bytes) of the per-chunk intermediate tensors of ``score_all`` for
#: scorers that cannot factorise (NeuMF's MLP, target attention).
SCORE_CHUNK_BYTES = 64 * 2**20

#: A user representation: a ``[b, d]`` tensor (dot, NeuMF) or, for history-attending
#: scorers, ``(history [b, L, d], mask [b, L])`` or ``(history, mask, static [b, d])``.
UserRepr = Any


def check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise DataError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def chunk_rows(per_row_bytes: int, n: int, chunk_size: int | None) -> int:
    """Rows per chunk so that one chunk's intermediates fit :data:`SCORE_CHUNK_BYTES`."""
    if chunk_size is not None:
        return check_int("chunk_size", chunk_size)
    return max(1, min(n, SCORE_CHUNK_BYTES // max(1, per_row_bytes)))


def check_2d(name: str, x, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{name} must be a 2-d tensor [n, d], got {shape}")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"{name} has {x.shape[1]} columns, expected {dim}")
    return x


class Scorer(FromConfig, nn.Module):
    """Base class: scores of users for items from their representations.

    A scorer never sees ids, only representations made by encoders and fusion (plus
    optional per-id biases), so the same scorer ranks known items, cold items added
    later, known users and cold users alike.

    Subclasses implement:

    - :meth:`score_all` ``(user, items) -> [b, n]``: every item for every user (full
      ranking; scorers that cannot factorise work in item chunks bounded by
      :data:`SCORE_CHUNK_BYTES`);
    - :meth:`score_pairs` ``(user, items) -> [b]`` or ``[b, k]``: one item per user
      (``items`` ``[b, d]``) or ``k`` items per user (``[b, k, d]``), for training.

    ``forward`` is :meth:`score_all`.

    Attributes
    ----------
    needs_history : bool
        True when the user representation is a history of item representations
        (see :data:`UserRepr`) rather than one vector.
    """

    needs_history: bool = False

    def score_all(self, user: UserRepr, items: torch.Tensor, *,
                  user_idx: torch.Tensor | None = None, item_idx: torch.Tensor | None = None,
                  chunk_size: int | None = None) -> torch.Tensor:
        """Scores of every item for every user.

        Parameters
        ----------
        user : UserRepr
            ``b`` users.
        items : torch.Tensor, shape (n, d)
        user_idx, item_idx : torch.Tensor of int64, optional
            Ids of the rows, for scorers with per-id biases (``item_idx`` defaults to
            ``0..n-1``).
        chunk_size : int, optional
            Items per chunk (default: from :data:`SCORE_CHUNK_BYTES`).

        Returns
        -------
        torch.Tensor, shape (b, n)
        """
        raise NotImplementedError

    def score_pairs(self, user: UserRepr, items: torch.Tensor, *,
                    user_idx: torch.Tensor | None = None,
                    item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of given items for each user.

        Parameters
        ----------
        user : UserRepr
            ``b`` users.
        items : torch.Tensor, shape (b, d) or (b, k, d)
        user_idx : torch.Tensor of int64, shape (b,), optional
        item_idx : torch.Tensor of int64, shape (b,) or (b, k), optional

        Returns
        -------
        torch.Tensor, shape (b,) or (b, k)
        """
        raise NotImplementedError

    def forward(self, user: UserRepr, items: torch.Tensor, user_idx: torch.Tensor | None = None,
                item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`score_all`.

        Parameters
        ----------
        user : UserRepr
        items : torch.Tensor, shape (n, d)
        user_idx, item_idx : torch.Tensor, optional

        Returns
        -------
        torch.Tensor, shape (b, n)
        """
        return self.score_all(user, items, user_idx=user_idx, item_idx=item_idx)

    # -- vectors for approximate retrieval (inner-product scorers only) ------------------
    def item_vectors(self, items: torch.Tensor, item_idx: torch.Tensor | None = None
                     ) -> torch.Tensor | None:
        """Item vectors whose inner product with :meth:`user_vectors` is the score.

        Returns None for scorers that are not inner products (NeuMF, attention).

        Parameters
        ----------
        items : torch.Tensor, shape (n, d)
        item_idx : torch.Tensor, optional

        Returns
        -------
        torch.Tensor or None
        """
        return None

    def user_vectors(self, user: UserRepr, user_idx: torch.Tensor | None = None
                     ) -> torch.Tensor | None:
        """User vectors (see :meth:`item_vectors`), or None.

        Parameters
        ----------
        user : UserRepr
        user_idx : torch.Tensor, optional

        Returns
        -------
        torch.Tensor or None
        """
        return None

    def extend_items(self, n_new: int) -> None:
        """Make room for ``n_new`` more item ids.

        Scorers with per-item biases (an ``item_bias`` parameter) give the new items the
        mean of the existing biases and grow ``n_items``; others have nothing to extend.

        Parameters
        ----------
        n_new : int
        """
        n_new = check_int("n_new", n_new, 0)
        if getattr(self, "n_items", None) is not None:
            self.n_items += n_new
        bias = getattr(self, "item_bias", None)
        if bias is None or n_new == 0:
            return
        with torch.no_grad():
            fill = bias.mean().expand(n_new)
            self.item_bias = nn.Parameter(torch.cat([bias.detach(), fill]))
