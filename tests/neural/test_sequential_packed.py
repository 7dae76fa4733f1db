"""Packed scoring of SequentialRecommender (``neural/_sasrec_infer.py``): sequences of mixed
lengths in one pass give each sequence the state a pass over it alone gives (up to float
rounding), in the input order, whatever the chunking; batched and one-user ``recommend``
agree. Tiny models, one thread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from maasrec import Interactions
from maasrec.neural import SequentialRecommender
from maasrec.neural._sasrec_infer import _chunks, packed_last_hidden
from maasrec.neural.sasrec import SASRecNetwork

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _interactions(n_users: int = 80, n_items: int = 30, seed: int = 0) -> Interactions:
    """Users walking a cycle of items from a random start, 1 to 20 steps (some longer than
    the model's ``max_len``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(int(rng.integers(1, 21))):
            rows.append((f"u{u}", 100 + (start + t * (1 + u % 3)) % n_items, t))
    return Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


@pytest.fixture(scope="module")
def fitted():
    X = _interactions()
    model = SequentialRecommender(max_len=12, dim=32, n_layers=2, n_heads=2, dropout=0.1,
                                  epochs=8, batch_size=32, learning_rate=0.01,
                                  random_state=0, verbose=False).fit(X)
    return X, model


def _alone(net, seqs, table) -> torch.Tensor:
    """Each sequence's state from a pass over that sequence alone (no padding)."""
    net.eval()
    with torch.no_grad():
        return torch.stack([net.hidden(torch.from_numpy(s)[None], table)[0, -1] for s in seqs])


def _mixed_sequences(n_items: int, max_len: int, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([[1, max_len, 2, max_len - 1], rng.integers(1, max_len + 1, n)])
    return [rng.integers(0, n_items, int(m)).astype(np.int64) for m in lengths]


def test_packed_state_equals_a_pass_over_each_sequence_alone(fitted):
    _, model = fitted
    net, table = model.network_, model._table()
    seqs = _mixed_sequences(net.n_items, int(model.max_len), 40, seed=1)
    ref = _alone(net, seqs, table)
    got = packed_last_hidden(net, seqs, table)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert (got - ref).abs().max().item() < TOL
    # one sequence, and the state does not move with the company it is scored in
    for i in (0, 1, 5):
        one = packed_last_hidden(net, [seqs[i]], table)
        assert (one[0] - ref[i]).abs().max().item() < TOL
    # a different set of other sequences changes nothing beyond rounding
    other = packed_last_hidden(net, [seqs[7], *seqs[20:]], table)
    assert (other[0] - got[7]).abs().max().item() < TOL


def test_chunked_passes_keep_the_input_order(fitted):
    _, model = fitted
    net, table = model.network_, model._table()
    seqs = _mixed_sequences(net.n_items, int(model.max_len), 60, seed=2)
    whole = packed_last_hidden(net, seqs, table)
    for max_rows, max_positions in ((3, 2**15), (64, 20), (1, 1)):
        part = packed_last_hidden(net, seqs, table, max_positions=max_positions,
                                  max_rows=max_rows)
        assert (part - whole).abs().max().item() < TOL, (max_rows, max_positions)


@pytest.mark.parametrize("max_rows,max_positions", [(64, 2**15), (4, 2**15), (64, 30), (2, 7)])
def test_chunks_cover_every_sequence_once_within_the_limits(max_rows, max_positions):
    lengths = np.random.default_rng(3).integers(1, 13, 50)
    chunks = _chunks(lengths, max_positions, max_rows)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(50))
    for c in chunks:
        assert len(c) <= max_rows
        assert len(c) == 1 or len(c) * lengths[c].max() <= max_positions
    if max_rows >= 50 and 50 * lengths.max() <= max_positions:
        assert len(chunks) == 1


def test_pruned_block_shapes_and_bf16_autocast():
    # blocks of other head counts and FFN widths (compress.prune), one block, and bf16
    gen = torch.Generator().manual_seed(0)
    for shapes in ([(1, 16), (2, 40)], [(2, 8)]):
        net = SASRecNetwork(n_items=40, dim=16, max_len=10, n_layers=len(shapes), n_heads=2,
                            ffn_dim=32, dropout=0.0, block_shapes=shapes)
        net.reset_parameters(gen)
        with torch.no_grad():  # weights large enough for attention to matter
            for p in net.parameters():
                p.mul_(25.0)
        table = net.item_table().detach()
        seqs = _mixed_sequences(40, 10, 20, seed=4)
        ref = _alone(net, seqs, table)
        assert (packed_last_hidden(net, seqs, table) - ref).abs().max().item() < 1e-4
        bf = packed_last_hidden(net, seqs, table, amp=torch.bfloat16)
        assert bf.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(bf, ref).min().item() > 0.98


def test_batched_and_single_user_recommend_agree(fitted):
    X, model = fitted
    users = list(X.user_vocab.ids)
    ids_b, sc_b = model.recommend(users, k=5)
    for i, u in enumerate(users):
        ids1, sc1 = model.recommend([u], k=5)
        assert np.abs(sc1[0] - sc_b[i]).max() < TOL
        if not np.array_equal(ids1[0], ids_b[i]):  # only where scores tie within rounding
            diff = ids1[0] != ids_b[i]
            assert np.abs(sc1[0][diff] - sc_b[i][diff]).max() < TOL
    # history= sequences of mixed lengths, in one call and one by one
    hist = [[100 + (3 * j) % 30 for j in range(m)] for m in (1, 4, 12, 15, 2)]
    _, sc_h = model.recommend(history=hist, k=5)
    for i, h in enumerate(hist):
        assert np.abs(model.recommend(history=[h], k=5)[1][0] - sc_h[i]).max() < TOL
