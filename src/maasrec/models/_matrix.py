"""The interaction matrix as the item-based classical models read it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..exceptions import DataError


class ImplicitMatrixMixin:
    """``_matrix``: a float32 copy of an interaction matrix, binarised when ``implicit``.

    Used by models whose scores are linear in the user's row (``ItemKNN``, ``PureSVD``), so
    that fitting and scoring a history read the matrix the same way.
    """

    implicit: bool

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        if self.implicit:
            m.data[:] = 1.0
        return m

    def _signal_matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """:meth:`_matrix` without explicit zeros; a clear error when nothing is left."""
        X = self._matrix(m)
        X.eliminate_zeros()
        if X.nnz == 0:
            raise DataError(f"every interaction value is zero, so {type(self).__name__} has no "
                            "signal; use implicit=True to treat every interaction as a positive")
        return X
