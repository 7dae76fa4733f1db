"""PrivateALS's local user solves: the table and the gathered paths give the same sums."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from maasrec.privacy.dp_als import _solve_fixed, _user_grams_gather, _user_grams_table


def _assemble(blocks, n, f):
    G = torch.full((n, f, f), np.nan, dtype=torch.float64)
    b = torch.full((n, f), np.nan, dtype=torch.float64)
    for s, e, Gs, bs in blocks:
        G[s:e], b[s:e] = Gs, bs
    return G, b


def test_gathered_user_grams_equal_the_table():
    g = np.random.default_rng(0)
    n, m, f = 100, 300, 128  # 2**22 / 128² = 256 interactions a block; user 7: 300
    R = sp.random(n, m, density=0.05, format="lil", random_state=1, dtype=np.float32)
    R[7, :] = 1.0  # a long history
    R[8, :] = 0.0  # an empty one
    R = sp.csr_matrix(R)
    R.eliminate_zeros()
    R.data[:] = 1.0
    R.sort_indices()
    Yd = torch.from_numpy(g.normal(size=(m, f)))
    Gt, bt = _assemble(_user_grams_table(R, Yd), n, f)
    Gg, bg = _assemble(_user_grams_gather(R, Yd), n, f)
    assert (7, 8) in [blk[:2] for blk in _user_grams_gather(R, Yd)]  # alone in a block
    assert len(list(_user_grams_gather(R, Yd))) > 4
    torch.testing.assert_close(Gg, Gt, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bg, bt, rtol=1e-10, atol=1e-10)
    assert (Gg[8] == 0).all() and (bg[8] == 0).all()
    Rd = R.toarray()
    np.testing.assert_allclose(Gg[3].numpy(), (Yd.numpy()[Rd[3] > 0]).T @ Yd.numpy()[Rd[3] > 0],
                               atol=1e-10)


def test_solve_fixed_large_table_takes_the_gathered_path():
    """A table above 256 MiB (n_items x factors² x 8 bytes) is not built; same solves."""
    g = np.random.default_rng(1)
    m, f = 2100, 128  # 2100 x 128² x 8 B = 275 MB > 256 MiB
    R = sp.random(50, m, density=0.01, format="csr", random_state=2, dtype=np.float32)
    R.data[:] = 1.0
    R.sort_indices()
    Y = torch.from_numpy(g.normal(size=(m, f)).astype(np.float32)) / f ** 0.5
    X = _solve_fixed(R, Y, 2.0, 0.1, 0.3)
    Yd = Y.double()
    for u in (0, 17):
        items = R[u].indices
        W = Yd.T @ Yd + 2.0 * Yd[items].T @ Yd[items]
        rhs = 3.0 * Yd[items].sum(0)
        x = torch.linalg.solve(W[1:, 1:] + 0.1 * torch.eye(f - 1, dtype=torch.float64),
                               rhs[1:] - 0.3 * W[1:, 0])
        np.testing.assert_allclose(X[u, 1:].numpy(), x.numpy(), rtol=1e-4, atol=1e-5)
        assert X[u, 0] == np.float32(0.3)
