"""ConcatFusion, GatedFusion, AttentionFusion: shapes, masks, weights, contract, learning."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.exceptions import DataError
from maasrec.fusion import FUSIONS, AttentionFusion, ConcatFusion, Fusion, GatedFusion, make_fusion
from maasrec.testing.components import check_component

DIMS = {"text": 6, "id": 3, "image": 5}
CLASSES = [ConcatFusion, GatedFusion, AttentionFusion]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_inputs(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, d, generator=g) for k, d in DIMS.items()}


MASKS = {"text": torch.tensor([True, True, False, True, False, True, False]),
         "image": torch.tensor([True, False, True, True, False, False, False]),
         "id": torch.tensor([True, True, True, False, False, True, False])}


def build(cls, **kw):
    return cls(DIMS, 8, random_state=0, **kw)


@pytest.mark.parametrize("cls", CLASSES)
def test_shapes_and_weights(cls):
    fuse = build(cls)
    out = fuse(make_inputs(), MASKS)
    assert out.shape == (7, 8) and out.dtype == torch.float32 and fuse.output_dim == 8
    assert fuse.modalities == ["text", "id", "image"]
    w = fuse.last_weights
    assert w.shape == (7, 3) and not w.requires_grad
    present = torch.stack([MASKS[m] for m in fuse.modalities], dim=1)
    assert (w[~present] == 0).all()
    assert (w >= 0).all()
    sums = w.sum(dim=1)
    torch.testing.assert_close(sums[present.any(1)], torch.ones(int(present.any(1).sum())))
    assert sums[4] == 0 and sums[6] == 0  # rows with nothing present
    named = fuse.modality_weights(make_inputs(), MASKS)
    assert list(named) == fuse.modalities and named["text"].shape == (7,)


@pytest.mark.parametrize("cls", [GatedFusion, AttentionFusion])
def test_rows_without_any_modality_are_zero(cls):
    out = build(cls)(make_inputs(), MASKS)
    assert (out[4] == 0).all() and (out[6] == 0).all()


@pytest.mark.parametrize("cls", CLASSES)
def test_values_of_missing_rows_are_ignored(cls):
    fuse = build(cls).eval()
    x = make_inputs()
    y = {k: v.clone() for k, v in x.items()}
    for k, m in MASKS.items():
        y[k][~m] = float("nan")  # garbage where the modality is missing
    torch.testing.assert_close(fuse(y, MASKS), fuse(x, MASKS))


@pytest.mark.parametrize("cls", CLASSES)
def test_an_absent_modality_is_missing_everywhere(cls):
    fuse = build(cls).eval()
    x = make_inputs()
    del x["image"]
    masks = {"image": torch.zeros(7, dtype=torch.bool)}
    full = make_inputs()
    torch.testing.assert_close(fuse(x), fuse(full, masks))
    assert (fuse.last_weights[:, 2] == 0).all()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CLASSES), st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()),
                                          min_size=1, max_size=9))
def test_weights_are_a_distribution_over_present_modalities(cls, rows):
    torch.set_num_threads(1)
    n = len(rows)
    masks = {name: torch.tensor([r[j] for r in rows]) for j, name in enumerate(DIMS)}
    fuse = build(cls).eval()
    with torch.no_grad():
        out = fuse(make_inputs(n, seed=n), masks)
    assert torch.isfinite(out).all()
    w = fuse.last_weights
    present = torch.stack([masks[m] for m in fuse.modalities], dim=1)
    assert (w[~present] == 0).all()
    any_present = present.any(1)
    torch.testing.assert_close(w.sum(1)[any_present], torch.ones(int(any_present.sum())))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("with_masks", [False, True])
def test_contract(cls, with_masks):
    inputs = (make_inputs(), MASKS) if with_masks else (make_inputs(),)
    check_component(lambda: build(cls), inputs=inputs, n_rows=7, output_dim=8)


@pytest.mark.parametrize("cls", CLASSES)
def test_config_round_trip(cls):
    fuse = build(cls, dropout=0.1)
    again = type(fuse).from_config(fuse.get_config())
    assert again.get_config() == fuse.get_config()
    again.load_state_dict(fuse.state_dict())
    torch.testing.assert_close(again.eval()(make_inputs(), MASKS), fuse.eval()(make_inputs(), MASKS))


@pytest.mark.parametrize("cls", [GatedFusion, AttentionFusion])
def test_learns_to_weight_the_informative_modality(cls):
    """Target depends on "text" only: after training, "text" weighs clearly the most."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n = 256
    x = {k: torch.randn(n, d, generator=g) for k, d in DIMS.items()}
    target = torch.tanh(x["text"] @ torch.randn(6, 8, generator=g))
    fuse = build(cls)
    opt = torch.optim.Adam(fuse.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = ((fuse(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
    w = {k: float(v.mean()) for k, v in fuse.eval().modality_weights(x).items()}
    assert w["text"] > 1.5 * max(w["id"], w["image"]), w


def test_concat_weights_follow_contribution():
    fuse = ConcatFusion({"a": 2, "b": 2}, 4, hidden=0, random_state=0)
    with torch.no_grad():
        fuse.first.weight.zero_()
        fuse.first.weight[:, :2] = 1.0  # only "a" reaches the output
    fuse({"a": torch.ones(3, 2), "b": torch.ones(3, 2)})
    torch.testing.assert_close(fuse.last_weights, torch.tensor([[1.0, 0.0]] * 3))


def test_make_fusion():
    assert set(FUSIONS) == {"concat", "gated", "attention"}
    assert isinstance(make_fusion("gated", DIMS, 8, random_state=0), GatedFusion)
    assert isinstance(make_fusion(AttentionFusion, DIMS, 8, num_heads=2), AttentionFusion)
    with pytest.raises(DataError, match="'sum'"):
        make_fusion("sum", DIMS, 8)
    assert issubclass(ConcatFusion, Fusion)


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_inputs_are_named(cls):
    fuse = build(cls)
    x = make_inputs()
    with pytest.raises(DataError, match="audio"):
        fuse({**x, "audio": torch.zeros(7, 2)})
    with pytest.raises(DataError, match=r"'id'.*columns"):
        fuse({**x, "id": torch.zeros(7, 4)})
    with pytest.raises(DataError, match="rows"):
        fuse({**x, "id": torch.zeros(6, 3)})
    with pytest.raises(DataError, match="2-d"):
        fuse({**x, "id": torch.zeros(7)})
    with pytest.raises(DataError, match=r"masks\['id'\]"):
        fuse(x, {"id": torch.ones(7)})
    with pytest.raises(DataError, match="audio"):
        fuse(x, {"audio": torch.ones(7, dtype=torch.bool)})
    with pytest.raises(DataError, match="empty"):
        fuse({})
    with pytest.raises(DataError, match="dict"):
        fuse([x["id"]])


@pytest.mark.parametrize("kwargs, match", [
    ({"input_dims": {}, "dim": 4}, "non-empty"),
    ({"input_dims": {"a": 0}, "dim": 4}, r"input_dims\['a'\]"),
    ({"input_dims": {"a": 2}, "dim": 0}, "dim"),
    ({"input_dims": {"a": 2}, "dim": 4, "random_state": -1}, "random_state"),
    ({"input_dims": {"a": 2}, "dim": 4, "dropout": 1.5}, "dropout"),
])
def test_bad_construction(kwargs, match):
    for cls in CLASSES:
        with pytest.raises(DataError, match=match):
            cls(**kwargs)


def test_attention_heads_must_divide_dim():
    with pytest.raises(DataError, match="num_heads=3"):
        AttentionFusion(DIMS, 8, num_heads=3)
    assert AttentionFusion(DIMS, 9, num_heads=3, random_state=0)(make_inputs()).shape == (7, 9)


def test_seeds():
    a = GatedFusion(DIMS, 8, random_state=5)
    b = GatedFusion(DIMS, 8, random_state=5)
    c = GatedFusion(DIMS, 8, random_state=6)
    assert torch.equal(a.gate.weight, b.gate.weight)
    assert not torch.equal(a.gate.weight, c.gate.weight)
    state = torch.random.get_rng_state()
    GatedFusion(DIMS, 8, random_state=5)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
