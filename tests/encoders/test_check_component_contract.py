"""check_component itself: passes good modules, names what is wrong with bad ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maasrec.testing.components import (
    COMPONENT_CHECKS,
    check_component,
    iter_component_checks,
    tiny_text_model,
)

X = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))


class Good(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lin = nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(x)


class Unseeded(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(x)


class AlwaysDropout(Good):
    def forward(self, x):
        return nn.functional.dropout(self.lin(x), 0.5, training=True)


class Float64(Good):
    def forward(self, x):
        return self.lin(x).double()


class DeadParameter(Good):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(2))


class HiddenState(Good):
    """Output depends on a tensor that the state dict does not carry."""

    def __init__(self):
        super().__init__()
        self.register_buffer("offset", torch.zeros(4), persistent=False)

    def forward(self, x):
        return self.lin(x) + self.offset


class Frozen(Good):
    def __init__(self):
        super().__init__()
        self.lin.requires_grad_(False)


class ReturnsTuple(Good):
    def forward(self, x):
        return self.lin(x), None


def test_a_good_module_passes():
    done = check_component(Good, inputs=(X,), n_rows=5, output_dim=4)
    assert done == [fn.__name__ for fn in COMPONENT_CHECKS]
    names = [name for name, _ in iter_component_checks(Good, (X,))]
    assert names == done


def test_frozen_module_passes_when_expected_frozen():
    check_component(Frozen, inputs=(X,), trainable=False)
    with pytest.raises(AssertionError, match="check_gradient_flow"):
        check_component(Frozen, inputs=(X,), trainable=True)


@pytest.mark.parametrize("factory, kwargs, check", [
    (Unseeded, {}, "check_seeded_init"),
    (AlwaysDropout, {}, "check_eval_determinism"),
    (Float64, {}, "check_forward_shape"),
    (Good, {"n_rows": 6}, "check_forward_shape"),
    (Good, {"output_dim": 3}, "check_forward_shape"),
    (DeadParameter, {}, "check_gradient_flow"),
    (HiddenState, {}, "check_state_dict_roundtrip"),
    (ReturnsTuple, {}, "check_forward_shape"),
])
def test_bad_modules_are_caught(factory, kwargs, check):
    with pytest.raises(AssertionError, match=check):
        check_component(factory, inputs=(X,), **kwargs)


def test_not_a_module():
    with pytest.raises(AssertionError, match=r"not a torch\.nn\.Module"):
        check_component(lambda: "nope", inputs=(X,))
    with pytest.raises(TypeError):
        check_component("nope", inputs=(X,))


def test_tiny_text_models():
    model, tok = tiny_text_model("bert")
    assert tok.pad_token == "[PAD]" and model.config.hidden_size == 32
    _, gtok = tiny_text_model("gpt2", padding_side="left")
    assert gtok.pad_token is None and gtok.padding_side == "left"
    a, _ = tiny_text_model("gpt2", seed=3)
    b, _ = tiny_text_model("gpt2", seed=3)
    assert torch.equal(a.wte.weight, b.wte.weight)
    with pytest.raises(ValueError, match="kind"):
        tiny_text_model("t5")
