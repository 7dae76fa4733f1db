"""The interaction matrix as the item-based classical models read it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..exceptions import DataError


def implicit_binary(m: sp.csr_matrix) -> sp.csr_matrix:
    """A float32 copy of ``m`` with 1 where the value is > 0, the other entries dropped.

    How implicit-feedback models read an interaction matrix (a user's ``seen_`` row
    included): a value <= 0 (a negative rating, a zero weight) is not a positive
    interaction (see :meth:`maasrec.base.Recommender.fit`).
    """
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    if m.nnz:
        m.data = (m.data > 0).astype(np.float32)
        m.eliminate_zeros()
    return m


class ImplicitMatrixMixin:
    """``_matrix``: a float32 copy of an interaction matrix, binarised when ``implicit``
    (values > 0 become 1, the others are dropped).

    Used by models whose scores are linear in the user's row (``ItemKNN``, ``PureSVD``), so
    that fitting and scoring a history read the matrix the same way.
    """

    implicit: bool

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        if self.implicit:
            return implicit_binary(m)
        return sp.csr_matrix(m, dtype=np.float32, copy=True)

    def _signal_matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """:meth:`_matrix` without explicit zeros; a clear error when nothing is left."""
        X = self._matrix(m)
        X.eliminate_zeros()
        if X.nnz == 0:
            raise DataError(f"every interaction value is zero, so {type(self).__name__} has no "
                            "signal; use implicit=True to treat every interaction as a positive")
        return X
