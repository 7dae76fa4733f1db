"""Tests of maasrec.scorers: the component contract, full ranking vs pairs, chunking."""

from __future__ import annotations

import pytest
import torch

from maasrec.exceptions import DataError
from maasrec.scorers import (
    SCORERS,
    AttentionScorer,
    DotScorer,
    NeuMFScorer,
    Scorer,
    make_scorer,
)
from maasrec.testing.components import iter_component_checks

G = torch.Generator().manual_seed(0)
U = torch.randn(4, 8, generator=G)
V = torch.randn(7, 8, generator=G)
H = torch.randn(4, 5, 8, generator=G)
M = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]).bool()

FACTORIES = {
    "dot": (lambda: DotScorer(n_items=7, item_bias=True), (U, V)),
    "dot-plain": (lambda: DotScorer(), (U, V)),
    "neumf": (lambda: NeuMFScorer(8, mlp_layers=(16, 8), n_items=7, item_bias=True,
                                  random_state=0), (U, V)),
    "neumf-mlp-only": (lambda: NeuMFScorer(8, gmf_dim=0, mlp_layers=(4,), random_state=1),
                       (U, V)),
    "attention": (lambda: AttentionScorer(8, n_items=7, item_bias=True, random_state=0),
                  ((H, M, U), V)),
}
CASES = [(name, check_name, check)
         for name, (factory, inputs) in FACTORIES.items()
         for check_name, check in iter_component_checks(factory, inputs, n_rows=4, output_dim=7,
                                                        seeded=name != "dot-plain")]


@pytest.mark.parametrize("name, check_name, check", CASES,
                         ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_component_contract(name, check_name, check):
    if name == "dot-plain" and check_name == "check_gradient_flow":
        pytest.skip("a bias-free dot product has no parameters")
    check()


def _user(s: Scorer):
    return (H, M, U) if s.needs_history else U


@pytest.mark.parametrize("name", list(FACTORIES))
def test_score_all_agrees_with_score_pairs_and_chunks(name):
    s = FACTORIES[name][0]().eval()
    user = _user(s)
    with torch.no_grad():
        full = s.score_all(user, V)
        assert full.shape == (4, 7)
        torch.testing.assert_close(s.score_all(user, V, chunk_size=1), full)
        idx = torch.tensor([0, 3, 6, 2])
        one = s.score_pairs(user, V[idx], item_idx=idx)
        torch.testing.assert_close(one, full[torch.arange(4), idx], rtol=1e-5, atol=1e-5)
        many = torch.randint(7, (4, 3), generator=torch.Generator().manual_seed(1))
        k = s.score_pairs(user, V[many], item_idx=many)
        torch.testing.assert_close(k, full.gather(1, many), rtol=1e-5, atol=1e-5)
        sub = torch.tensor([5, 1])
        torch.testing.assert_close(s.score_all(user, V[sub], item_idx=sub), full[:, sub])


def test_dot_vectors_reproduce_the_ranking_scores():
    s = DotScorer(n_items=7, item_bias=True, n_users=4, user_bias=True, global_bias=True,
                  temperature=0.5)
    with torch.no_grad():
        s.item_bias.copy_(torch.arange(7.0))
        s.user_bias.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0]))
        s.global_bias.fill_(0.3)
        uid = torch.arange(4)
        full = s.score_all(U, V, user_idx=uid)
        approx = s.user_vectors(U, uid) @ s.item_vectors(V).T
        # the user and global biases shift a row uniformly: the ranking is the same
        diff = full - approx
        assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-5)
        cold = s.score_all(U, V, user_idx=torch.full((4,), -1))
        torch.testing.assert_close(cold, U @ V.T / 0.5 + s.item_bias + 0.3)


def test_extend_items_and_config_roundtrip():
    for s in (DotScorer(n_items=7, item_bias=True),
              NeuMFScorer(8, n_items=7, item_bias=True, random_state=0),
              AttentionScorer(8, n_items=7, item_bias=True, random_state=0)):
        with torch.no_grad():
            s.item_bias.copy_(torch.arange(7.0))
        s.extend_items(2)
        assert s.item_bias.shape == (9,) and s.item_bias[-1].item() == pytest.approx(3.0)
        rebuilt = type(s).from_config(s.get_config())
        rebuilt.load_state_dict(s.state_dict())
        V2 = torch.cat([V, torch.randn(2, 8, generator=G)])
        with torch.no_grad():
            torch.testing.assert_close(rebuilt.eval().score_all(_user(s), V2),
                                       s.eval().score_all(_user(s), V2))


def test_attention_empty_history_and_target_weights():
    s = AttentionScorer(8, random_state=0).eval()
    empty = torch.zeros(2, 3, dtype=torch.bool)
    Hs = torch.randn(2, 3, 8, generator=G)
    with torch.no_grad():
        out = s.score_all((Hs, empty), V)
        assert torch.equal(out, torch.zeros(2, 7))
        static = torch.randn(2, 8, generator=G)
        torch.testing.assert_close(s.score_all((Hs, empty, static), V), static @ V.T)
        # one history item: the pooled vector is that item (softmax over one position)
        one = torch.tensor([[True, False, False], [True, False, False]])
        expected = (s.value(Hs[:, 0]) * 1.0) @ V.T
        torch.testing.assert_close(s.score_all((Hs, one), V), expected, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="n_items"):
        DotScorer(item_bias=True)
    with pytest.raises(DataError, match="temperature"):
        DotScorer(temperature=0)
    with pytest.raises(DataError, match="gmf_dim"):
        NeuMFScorer(8, gmf_dim=9)
    with pytest.raises(DataError, match="dropout"):
        AttentionScorer(8, dropout=1.5)
    with pytest.raises(DataError, match="columns"):
        DotScorer().score_all(U, torch.randn(3, 5))
    with pytest.raises(DataError, match="history"):
        AttentionScorer(8).score_all(U, V)
    with pytest.raises(DataError, match="item_idx"):
        DotScorer(n_items=7, item_bias=True).score_pairs(U, V[:4])
    assert isinstance(make_scorer("neumf", dim=8), NeuMFScorer)
    assert set(SCORERS) == {"dot", "neumf", "attention"}
    with pytest.raises(DataError, match="cosine"):
        make_scorer("cosine")
    with pytest.raises(DataError, match="bogus"):
        make_scorer("dot", bogus=1)
