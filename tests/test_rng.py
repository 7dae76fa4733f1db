"""The one seeded-RNG helper (maasrec._rng, re-exported by maasrec.training.rng)."""

from __future__ import annotations

import pytest
import torch

import maasrec.training as training
from maasrec._rng import manual_seeded, seed_from, seeded
from maasrec.encoders import FeatureEncoder, PrecomputedEncoder
from maasrec.exceptions import DataError
from maasrec.fusion import AttentionFusion, ConcatFusion, GatedFusion
from maasrec.scorers import AttentionScorer, NeuMFScorer


def test_manual_seeded_is_torch_manual_seed_inside_the_block_only():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with manual_seeded(7) as s:
        a = torch.rand(5)
    assert s == 7 and torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)
    assert torch.equal(a, torch.rand(5))


def test_manual_seeded_none_uses_and_advances_the_global_rng():
    torch.manual_seed(3)
    with manual_seeded(None) as s:
        a = torch.rand(4)
    b = torch.rand(4)
    torch.manual_seed(3)
    assert s is None and torch.equal(a, torch.rand(4)) and torch.equal(b, torch.rand(4))


@pytest.mark.parametrize("bad", [True, 1.5, "3", 2**64, -(2**63) - 1])
def test_manual_seeded_refuses_bad_seeds(bad):
    with pytest.raises(DataError, match="seed must be an integer"):
        with manual_seeded(bad):
            pass


def test_seeded_derives_the_seed_and_is_the_same_helper():
    with seeded(5) as s:
        a = torch.rand(3)
    assert s == seed_from(5)
    with manual_seeded(seed_from(5)):
        assert torch.equal(a, torch.rand(3))
    assert training.rng.manual_seeded is manual_seeded and training.manual_seeded is manual_seeded
    from maasrec.encoders._utils import seeded as enc_seeded
    assert enc_seeded is manual_seeded


FACTORIES = [
    lambda rs: PrecomputedEncoder(10, 6, 4, random_state=rs),
    lambda rs: FeatureEncoder(10, 4, categorical={"g": ["a", "b"]}, numeric=["x"],
                              random_state=rs),
    lambda rs: ConcatFusion({"a": 3, "b": 5}, 4, random_state=rs),
    lambda rs: GatedFusion({"a": 3, "b": 5}, 4, random_state=rs),
    lambda rs: AttentionFusion({"a": 3, "b": 5}, 4, num_heads=2, random_state=rs),
    lambda rs: AttentionScorer(4, random_state=rs),
]


@pytest.mark.parametrize("factory", FACTORIES)
def test_blocks_build_under_torch_manual_seed_of_their_random_state(factory):
    """random_state=s builds what torch.manual_seed(s) then random_state=None builds, and
    leaves the caller's RNG alone; None draws from (and advances) the global RNG."""
    torch.manual_seed(99)
    state = torch.get_rng_state()
    seeded_block = factory(11)
    assert torch.equal(torch.get_rng_state(), state), "a seeded block moved the global RNG"
    torch.manual_seed(11)
    plain = factory(None)
    assert not torch.equal(torch.get_rng_state(), torch.manual_seed(11).get_state())
    a, b = seeded_block.state_dict(), plain.state_dict()
    for k in a:  # bit for bit (NaN buffers mark missing numeric values)
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True)


def test_neumf_scorer_seed_is_one_draw_from_its_random_state():
    seed = int(torch.randint(2**31, (1,), generator=torch.Generator().manual_seed(4)))
    torch.manual_seed(seed)
    plain = NeuMFScorer(8, random_state=None)
    a, b = NeuMFScorer(8, random_state=4).state_dict(), plain.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
