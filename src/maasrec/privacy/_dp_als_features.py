"""Public item side information for :class:`maasrec.privacy.PrivateALS` (a shared prior).

The item factors of private ALS are solved from the noisy released statistics: the global
Gram ``G`` (``f x f``) and each item's right-hand side ``b_i``. Without features every item
is shrunk toward 0: ``y_i = (G + λ I)⁻¹ b_i``. With public item attributes ``A`` (items x
attributes, each row scaled to unit L2 norm) the items are tied to the attributes:

    minimise  Σ_i [ y_iᵀ G y_i - 2 b_iᵀ y_i + λ ||y_i - A_i W||² ] + λ_W ||W||²

over ``Y`` and ``W`` (attributes x factors): each item is shrunk toward the mean of its
attributes' vectors, which pool the statistics of every item that shares them. With
``G = V diag(w) Vᵀ`` the problem separates per eigen-direction ``k``; eliminating ``Y``,

    (w_k AᵀA + λ_W (w_k + λ) / λ · I) W̃_k = Aᵀ b̃_k,     ỹ_ik = (b̃_ik + λ A_i W̃_k) / (w_k + λ)

(``b̃ = B V``, ``Y = Ỹ Vᵀ``), solved exactly with one eigen-decomposition of ``AᵀA``.
Everything here is computed from the released (noisy) statistics and the public ``A``:
post-processing, so the privacy guarantee and its accounting are unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..data.features import ItemFeatures
from ..exceptions import DataError


def feature_matrix(item_features, item_vocab) -> sp.csr_matrix:
    """Items x attributes indicator of ``item_features`` in ``item_vocab``'s order.

    Every multi-hot block and every categorical block (one column per label) is used;
    each item's row is scaled to unit L2 norm (an item without attributes: a zero row).

    Parameters
    ----------
    item_features : ItemFeatures
    item_vocab : IdVocab
        The fitted item vocabulary.

    Returns
    -------
    scipy.sparse.csr_matrix of float64, shape (n_items, n_attributes)

    Raises
    ------
    DataError
        Not an :class:`~maasrec.data.ItemFeatures`, or without multi-hot or categorical
        blocks, or no item of the data has any attribute.
    """
    if not isinstance(item_features, ItemFeatures):
        raise DataError(f"item_features must be an ItemFeatures, got "
                        f"{type(item_features).__name__}")
    f = item_features.align(item_vocab)
    n = len(item_vocab)
    blocks = [m for m, _ in f.multi_hot.values()]
    for codes, labels in f.categorical.values():
        ok = codes >= 0
        blocks.append(sp.csr_matrix((np.ones(int(ok.sum())), (np.flatnonzero(ok), codes[ok])),
                                    shape=(n, max(len(labels), 1))))
    if not blocks:
        raise DataError("item_features has no multi-hot or categorical block for the item "
                        f"prior of PrivateALS (feature_regularization); got {item_features!r}")
    A = sp.hstack(blocks, format="csr", dtype=np.float64)
    A.data[:] = 1.0
    A.sum_duplicates()
    A.data[:] = 1.0
    A = A[:, np.flatnonzero(A.getnnz(axis=0))]  # attributes of these items only
    if A.nnz == 0:
        raise DataError("no item of the training data has an attribute in item_features")
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
    A = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ A
    return sp.csr_matrix(A)


class FeaturePrior:
    """The attribute side of the item solve: ``AᵀA``'s eigen-decomposition, computed once.

    Parameters
    ----------
    A : scipy.sparse matrix, shape (n_items, n_attributes)
        From :func:`feature_matrix`.
    strength : float
        ``λ_W`` (> 0), the L2 penalty of the attribute vectors ``W``.
    """

    def __init__(self, A: sp.csr_matrix, strength: float):
        self.A = sp.csr_matrix(A, dtype=np.float64)
        self.strength = float(strength)
        s, U = np.linalg.eigh((self.A.T @ self.A).toarray())
        self.s = torch.from_numpy(np.clip(s, 0.0, None))
        self.U = torch.from_numpy(U)
        self.W_: torch.Tensor | None = None  # attribute vectors of the last solve

    def solve(self, G: torch.Tensor, rhs: torch.Tensor, reg: float) -> torch.Tensor:
        """Item factors (float64, n_items x f) from the noisy Gram ``G`` and ``rhs``."""
        w, V = torch.linalg.eigh(G)
        w = torch.clamp(w, min=0.0)
        reg = float(reg) + 1e-8
        bt = rhs @ V  # items x f, in G's eigenbasis
        P = self.U.T @ torch.from_numpy(self.A.T @ bt.numpy())  # attributes x f
        denom = w[None, :] * self.s[:, None] + self.strength * (w[None, :] + reg) / reg
        Wt = self.U @ (P / denom)  # attributes x f, eigenbasis
        self.W_ = Wt @ V.T
        prior = torch.from_numpy(self.A @ Wt.numpy())
        return ((bt + reg * prior) / (w + reg)) @ V.T
