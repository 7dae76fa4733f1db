"""Learned id embeddings: one trainable vector per user or item index."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._config import FromConfig
from ..exceptions import DataError
from ._utils import as_index, check_int, check_seed

__all__ = ["IdEmbedding"]


class IdEmbedding(FromConfig, nn.Module):
    """One learned vector per row of a vocabulary (the classic MF factor table).

    Parameters
    ----------
    n : int
        Number of ids (rows), e.g. ``len(item_vocab)``.
    dim : int
        Vector size.
    init_std : float, optional
        Standard deviation of the normal initialisation (default ``1 / sqrt(dim)``, so
        initial vectors have norm about 1).
    random_state : int, optional
        Seed of the initialisation (None: torch's global RNG).

    Examples
    --------
    >>> emb = IdEmbedding(100, 16, random_state=0)
    >>> emb().shape, emb(torch.tensor([3, 7])).shape
    (torch.Size([100, 16]), torch.Size([2, 16]))
    """

    def __init__(self, n: int, dim: int, *, init_std: float | None = None,
                 random_state: int | None = None):
        super().__init__()
        self.n = check_int("n", n, 1)
        self.dim = check_int("dim", dim, 1)
        if init_std is not None and (not isinstance(init_std, (int, float)) or not init_std > 0
                                     or not math.isfinite(init_std)):
            raise DataError(f"init_std must be a positive number, got {init_std!r}")
        self.init_std = init_std
        self.random_state = check_seed(random_state)
        self.embedding = nn.Embedding(self.n, self.dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the vectors (seeded by ``random_state``)."""
        std = self.init_std if self.init_std is not None else 1.0 / math.sqrt(self.dim)
        gen = None
        if self.random_state is not None:
            gen = torch.Generator().manual_seed(self.random_state)
        with torch.no_grad():
            w = torch.randn(self.embedding.weight.shape, generator=gen) * std
            self.embedding.weight.copy_(w.to(self.embedding.weight.device))

    @property
    def output_dim(self) -> int:
        """int: vector size."""
        return self.dim

    @property
    def weight(self) -> torch.Tensor:
        """torch.Tensor: the table, shape (n, dim)."""
        return self.embedding.weight

    def forward(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of the given rows (all rows when ``idx`` is None).

        Parameters
        ----------
        idx : array-like of int, optional
            Row indices in ``[0, n)``.

        Returns
        -------
        torch.Tensor, shape (len(idx) or n, dim)

        Raises
        ------
        DataError
            For indices out of range.
        """
        rows = as_index(idx, self.n, self.embedding.weight.device)
        if rows is None:
            return self.embedding.weight
        return self.embedding(rows)

    def mask(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Rows with data: always all True (every id has a vector).

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor of bool
        """
        device = self.embedding.weight.device
        rows = as_index(idx, self.n, device)
        return torch.ones(self.n if rows is None else len(rows), dtype=torch.bool, device=device)
