"""User-supplied vectors (image embeddings, frozen text vectors...) as an encoder."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._config import FromConfig
from ..data.features import Features
from ..data.vocab import IdVocab
from ..exceptions import DataError
from ._utils import as_index, check_int, check_seed, seeded

__all__ = ["PrecomputedEncoder"]


class PrecomputedEncoder(FromConfig, nn.Module):
    """Fixed vectors per row, optionally through a trainable linear projection.

    Rows whose vector is missing (all NaN, or masked out) are zero in the output and
    False in :meth:`mask`, so a fusion module can ignore them.

    Parameters
    ----------
    n : int
        Number of rows.
    input_dim : int
        Size of the stored vectors.
    dim : int, optional
        Output size of a trainable projection; None returns the vectors as they are
        (no trainable parameters).
    normalize : bool, default False
        L2-normalise the stored vectors first.
    random_state : int, optional
        Seed of the projection's initialisation.
    """

    def __init__(self, n: int, input_dim: int, dim: int | None = None, *,
                 normalize: bool = False, random_state: int | None = None):
        super().__init__()
        self.n = check_int("n", n, 1)
        self.input_dim = check_int("input_dim", input_dim, 1)
        self.dim = None if dim is None else check_int("dim", dim, 1)
        self.normalize = bool(normalize)
        self.random_state = None if random_state is None else check_seed(random_state)
        with seeded(self.random_state):
            self.projection = nn.Linear(self.input_dim, self.dim) if self.dim else None
        self.register_buffer("vectors", torch.zeros(self.n, self.input_dim))
        self.register_buffer("present", torch.zeros(self.n, dtype=torch.bool))

    @classmethod
    def from_vectors(cls, vectors, dim: int | None = None, *, mask=None, normalize: bool = False,
                     random_state: int | None = None) -> PrecomputedEncoder:
        """Build from an array of vectors.

        Parameters
        ----------
        vectors : array-like, shape (n, input_dim)
            Rows that are entirely NaN are missing.
        dim : int, optional
            Projection size (None: no projection).
        mask : array-like of bool, shape (n,), optional
            Rows present (default: rows without NaN).
        normalize : bool, default False
        random_state : int, optional

        Returns
        -------
        PrecomputedEncoder
        """
        v = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors,
                       dtype=np.float32)
        if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
            raise DataError(f"vectors must have shape (n, d) with n, d >= 1, got {v.shape}")
        enc = cls(v.shape[0], v.shape[1], dim, normalize=normalize, random_state=random_state)
        return enc.set_vectors(v, mask=mask)

    @classmethod
    def from_features(cls, features: Features, name: str, dim: int | None = None, *,
                      vocab: IdVocab | None = None, normalize: bool = False,
                      random_state: int | None = None) -> PrecomputedEncoder:
        """Build from a ``vectors`` block of item or user features.

        Parameters
        ----------
        features : ItemFeatures or UserFeatures
        name : str
            Key in ``features.vectors``.
        dim : int, optional
        vocab : IdVocab, optional
            Align rows to this vocabulary first.
        normalize : bool, default False
        random_state : int, optional

        Returns
        -------
        PrecomputedEncoder
        """
        if vocab is not None:
            features = features.align(vocab)
        if name not in features.vectors:
            raise DataError(f"vectors {name!r} not in the features; available: "
                            f"{list(features.vectors)}")
        return cls.from_vectors(features.vectors[name], dim, normalize=normalize,
                                random_state=random_state)

    def set_vectors(self, vectors, mask=None) -> PrecomputedEncoder:
        """Replace the stored vectors.

        Parameters
        ----------
        vectors : array-like, shape (n, input_dim)
        mask : array-like of bool, shape (n,), optional

        Returns
        -------
        self
        """
        v = np.array(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors,
                     dtype=np.float32, copy=True)
        if v.shape != (self.n, self.input_dim):
            raise DataError(f"vectors must have shape ({self.n}, {self.input_dim}), got {v.shape}")
        finite = np.isfinite(v)
        present = finite.any(axis=1)
        if mask is not None:
            m = np.asarray(mask)
            if m.shape != (self.n,) or m.dtype != bool:
                raise DataError(f"mask must be a bool array of shape ({self.n},), got {m.dtype} "
                                f"{m.shape}")
            present &= m
        partial = present & ~finite.all(axis=1)
        if partial.any():
            raise DataError(f"vectors of rows {np.flatnonzero(partial)[:5].tolist()} are partly "
                            f"NaN/inf; a row is either complete or all NaN (missing)")
        v[~present] = 0.0
        if self.normalize:
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        device = self.vectors.device
        self.vectors.copy_(torch.from_numpy(v).to(device))
        self.present.copy_(torch.from_numpy(present).to(device))
        return self

    @property
    def output_dim(self) -> int:
        """int: output size (``dim`` or ``input_dim``)."""
        return self.dim if self.dim is not None else self.input_dim

    def forward(self, idx=None) -> torch.Tensor:
        """Vectors of the given rows (all when ``idx`` is None); zero for missing rows.

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor, shape (m, output_dim)
        """
        rows = as_index(idx, self.n, self.vectors.device)
        v = self.vectors if rows is None else self.vectors[rows]
        if self.projection is None:
            return v
        present = self.present if rows is None else self.present[rows]
        out = self.projection(v)
        return torch.where(present.unsqueeze(1), out, torch.zeros_like(out))

    def mask(self, idx=None) -> torch.Tensor:
        """Rows with a vector.

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor of bool, shape (m,)
        """
        rows = as_index(idx, self.n, self.present.device)
        return self.present if rows is None else self.present[rows]
