"""The common contract of maasrec components (encoders, fusion modules), as plain checks.

Every torch building block -- :class:`~maasrec.encoders.IdEmbedding`,
:class:`~maasrec.encoders.TextEncoder`, the fusion modules, your own -- should pass::

    from maasrec.testing import check_component
    check_component(lambda: GatedFusion({"text": 8, "id": 4}, dim=6, random_state=0),
                    inputs=({"text": torch.randn(5, 8), "id": torch.randn(5, 4)},))

or, in pytest, one test per check::

    @pytest.mark.parametrize("name, check", list(iter_component_checks(factory, inputs)))
    def test_component(name, check):
        check()

The checks need no pytest and raise ``AssertionError`` naming what broke. This module
also builds tiny, random, fully in-memory BERT and GPT-2 models with tokenizers
(:func:`tiny_text_model`), so tests of text models never download anything.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .._rng import manual_seeded
from ..base import Component, clone
from ..device import cuda_available

__all__ = [
    "COMPONENT_CHECKS",
    "check_component",
    "iter_component_checks",
    "tiny_text_model",
]

Factory = Callable[[], nn.Module]


# -- tiny language models ------------------------------------------------------------------

def _tiny_bert_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = ["the", "star", "war", "love", "story", "movie", "comedy", "drama", "action",
             "toy", "heat", "space", "music", "horror", "film", "night"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars),
             *words]
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def _tiny_gpt2_tokenizer(padding_side: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # byte-level, no merges
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", padding_side=padding_side)


def tiny_text_model(kind: str = "bert", *, hidden_size: int = 32, num_layers: int = 2,
                    padding_side: str = "right", seed: int = 0):
    """A tiny random language model and its tokenizer, built in memory (no download).

    Parameters
    ----------
    kind : {"bert", "gpt2"}
        "bert": a BERT encoder with a character-level WordPiece tokenizer (lower case,
        ``[CLS] ... [SEP]``). "gpt2": a GPT-2 decoder with a byte-level BPE tokenizer
        that has **no pad token** (like GPT-2's own).
    hidden_size : int, default 32
    num_layers : int, default 2
    padding_side : {"right", "left"}, default "right"
        The tokenizer's padding side (GPT-2 only).
    seed : int, default 0
        Seed of the random weights.

    Returns
    -------
    model : transformers.PreTrainedModel
        In eval mode.
    tokenizer : transformers.PreTrainedTokenizerFast
    """
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    with manual_seeded(seed):
        if kind == "bert":
            tokenizer = _tiny_bert_tokenizer()
            config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                                num_hidden_layers=num_layers, num_attention_heads=4,
                                intermediate_size=2 * hidden_size, max_position_embeddings=128,
                                pad_token_id=tokenizer.pad_token_id)
            model = BertModel(config)
        elif kind == "gpt2":
            tokenizer = _tiny_gpt2_tokenizer(padding_side)
            config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=hidden_size,
                                n_layer=num_layers, n_head=4,
                                bos_token_id=tokenizer.eos_token_id,
                                eos_token_id=tokenizer.eos_token_id)
            model = GPT2Model(config)
        else:
            raise ValueError(f"kind must be 'bert' or 'gpt2', got {kind!r}")
    return model.eval(), tokenizer


# -- helpers -------------------------------------------------------------------------------

def _move(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: _move(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [_move(v, device) for v in obj]
        return type(obj)(moved) if isinstance(obj, tuple) else moved
    return obj


def _args(inputs) -> tuple:
    value = inputs() if callable(inputs) else inputs
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


def _output(module: nn.Module, args: tuple) -> torch.Tensor:
    out = module(*args)
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{type(module).__name__}(...) returned {type(out).__name__}, "
                             f"expected a torch.Tensor")
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return torch.equal(a, b)


def _param_device(module: nn.Module) -> torch.device | None:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None


class _Spec:
    def __init__(self, factory: Factory, inputs, n_rows, output_dim, trainable, atol, seeded):
        if not callable(factory):
            raise TypeError(f"factory must be a callable returning a module, got {factory!r}")
        self.factory = factory
        self.inputs = inputs
        self.n_rows = n_rows
        self.output_dim = output_dim
        self.trainable = trainable
        self.atol = atol
        self.seeded = seeded

    def build(self) -> nn.Module:
        module = self.factory()
        if not isinstance(module, nn.Module):
            raise AssertionError(f"factory returned {type(module).__name__}, not a torch.nn.Module")
        return module


# -- the checks ----------------------------------------------------------------------------

def check_forward_shape(spec: _Spec) -> None:
    """Eval-mode forward returns a finite float32 tensor [n, d] on the module's device."""
    module = spec.build().eval()
    with torch.no_grad():
        out = _output(module, _args(spec.inputs))
    assert out.dim() == 2, f"output has shape {tuple(out.shape)}, expected 2-d [n, d]"
    assert out.dtype == torch.float32, f"output dtype is {out.dtype}, expected torch.float32"
    if spec.n_rows is not None:
        assert out.shape[0] == spec.n_rows, f"output has {out.shape[0]} rows, expected {spec.n_rows}"
    expected_dim = spec.output_dim
    if expected_dim is None:
        expected_dim = getattr(module, "output_dim", None)
    if expected_dim is not None:
        assert out.shape[1] == expected_dim, (
            f"output has {out.shape[1]} columns, expected output_dim={expected_dim}")
    assert torch.isfinite(out).all(), "output holds NaN or inf"
    dev = _param_device(module)
    if dev is not None:
        assert out.device == dev, f"output is on {out.device}, the module on {dev}"


def check_eval_determinism(spec: _Spec) -> None:
    """Two eval-mode forward passes give identical outputs."""
    module = spec.build().eval()
    args = _args(spec.inputs)
    with torch.no_grad():
        a = _output(module, args)
        b = _output(module, args)
    assert torch.equal(a, b), (
        f"eval-mode outputs differ between two calls (max |diff| {(a - b).abs().max().item():.3g})")


def check_seeded_init(spec: _Spec) -> None:
    """Two modules from the (seeded) factory have identical weights and outputs."""
    if not spec.seeded:
        return
    m1, m2 = spec.build().eval(), spec.build().eval()
    args = _args(spec.inputs)
    with torch.no_grad():
        a, b = _output(m1, args), _output(m2, args)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys(), "two seeded modules have different state-dict keys"
    for k in s1:
        assert _same(s1[k], s2[k]), (
            f"weights {k!r} differ between two modules from the same factory: seed every "
            f"random initialisation (random_state)")
    assert torch.equal(a, b), "two seeded modules give different outputs"


def check_device_moves(spec: _Spec) -> None:
    """``.to(device)`` returns the module, moves the outputs, and changes no values."""
    module = spec.build().eval()
    args = _args(spec.inputs)
    with torch.no_grad():
        ref = _output(module, args)
    assert module.to(torch.device("cpu")) is module, ".to() must return the module itself"
    with torch.no_grad():
        out = _output(module, _move(args, torch.device("cpu")))
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, ref.cpu(), atol=spec.atol, rtol=1e-5)
    if cuda_available():
        cuda = torch.device("cuda")
        module.to(cuda)
        with torch.no_grad():
            out = _output(module, _move(args, cuda))
        assert out.device.type == "cuda", f"after .to('cuda') the output is on {out.device}"
        torch.testing.assert_close(out.float().cpu(), ref.cpu(), atol=max(spec.atol, 2e-2),
                                   rtol=2e-2)
        module.to(torch.device("cpu"))
        with torch.no_grad():
            back = _output(module, args)
        assert back.device.type == "cpu", "moving back to the CPU did not move the output"


def check_train_eval_modes(spec: _Spec) -> None:
    """``train()``/``eval()`` return the module and set every submodule's flag."""
    module = spec.build()
    assert module.train() is module and all(m.training for m in module.modules())
    assert module.eval() is module and not any(m.training for m in module.modules())


def check_gradient_flow(spec: _Spec) -> None:
    """In train mode a loss reaches every trainable parameter; frozen modules stay frozen."""
    module = spec.build().train()
    args = _args(spec.inputs)
    out = _output(module, args)
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    trainable = spec.trainable if spec.trainable is not None else bool(params)
    if not trainable:
        assert not params, f"module is expected frozen, but {[n for n, _ in params][:5]} train"
        assert not out.requires_grad, "a frozen module's output requires grad"
        return
    assert params, "module is expected trainable, but it has no parameter requiring grad"
    assert out.requires_grad, "output does not require grad: the graph is cut somewhere"
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(out.shape, generator=gen).to(out.device)
    (out.float() * weights).sum().backward()
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient reached parameters {missing[:8]}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad[:8]}"
    assert any(p.grad.abs().sum() > 0 for _, p in params), "all gradients are zero"


def check_state_dict_roundtrip(spec: _Spec) -> None:
    """The state dict survives safetensors and restores identical outputs in a new module."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    module = spec.build().eval()
    args = _args(spec.inputs)
    with torch.no_grad():
        ref = _output(module, args)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    blob = st_save(state) if state else b""
    fresh = spec.build().eval()
    with torch.no_grad():  # make sure loading, not the seed, restores the values
        for t in (*fresh.parameters(), *fresh.buffers()):
            if t.is_floating_point():
                t.add_(0.5)
    restored = st_load(blob) if blob else {}
    result = fresh.load_state_dict(restored, strict=True)
    if result is not None:
        assert not result.missing_keys and not result.unexpected_keys, result
    with torch.no_grad():
        out = _output(fresh, args)
    torch.testing.assert_close(out, ref, atol=spec.atol, rtol=1e-5,
                               msg="outputs differ after a state-dict round trip")


def check_component_params(spec: _Spec) -> None:
    """maasrec Components keep their parameters through get_params/clone."""
    module = spec.build()
    if not isinstance(module, Component):
        return
    params = module.get_params(deep=False)
    copy = clone(module)
    assert type(copy) is type(module)
    for k, v in params.items():
        if isinstance(v, (str, int, float, bool, type(None))):
            assert copy.get_params(deep=False)[k] == v, f"clone changed parameter {k}"
    repr(module)


#: The checks, in the order they run.
COMPONENT_CHECKS: tuple[Callable[[_Spec], None], ...] = (
    check_forward_shape,
    check_eval_determinism,
    check_seeded_init,
    check_train_eval_modes,
    check_gradient_flow,
    check_state_dict_roundtrip,
    check_device_moves,
    check_component_params,
)


def iter_component_checks(factory: Factory, inputs=None, *, n_rows: int | None = None,
                          output_dim: int | None = None, trainable: bool | None = None,
                          atol: float = 1e-5, seeded: bool = True,
                          ) -> Iterator[tuple[str, Callable[[], None]]]:
    """The component checks as ``(name, zero-argument callable)`` pairs.

    Parameters are those of :func:`check_component`.

    Yields
    ------
    name : str
    check : callable
    """
    spec = _Spec(factory, inputs, n_rows, output_dim, trainable, atol, seeded)
    for fn in COMPONENT_CHECKS:
        yield fn.__name__, (lambda fn=fn: fn(spec))


def check_component(factory: Factory, inputs=None, *, n_rows: int | None = None,
                    output_dim: int | None = None, trainable: bool | None = None,
                    atol: float = 1e-5, seeded: bool = True) -> list[str]:
    """Run the common component contract.

    Checks: output shape, dtype (float32) and finiteness; determinism in eval mode;
    identical weights from a seeded factory; ``train``/``eval`` flags; gradient flow to
    every trainable parameter (or none, for a frozen module); a safetensors state-dict
    round trip into a fresh module; device moves (CPU, and CUDA when available);
    parameter handling for maasrec Components.

    Parameters
    ----------
    factory : callable
        Returns a fresh, seeded module each call.
    inputs : tuple, object or callable, optional
        Positional arguments of ``forward`` (a non-tuple is one argument; a callable
        returns them). Tensors inside are moved along with the module.
    n_rows : int, optional
        Expected number of output rows.
    output_dim : int, optional
        Expected number of output columns (default: the module's ``output_dim``
        attribute, when it has one).
    trainable : bool, optional
        Whether gradients must flow (default: whether any parameter requires grad).
    atol : float, default 1e-5
        Tolerance of the round-trip and device-move comparisons.
    seeded : bool, default True
        Whether two modules from the factory must be identical.

    Returns
    -------
    list of str
        Names of the checks run.

    Raises
    ------
    AssertionError
        Naming the first check that failed and why.
    """
    done = []
    for name, check in iter_component_checks(factory, inputs, n_rows=n_rows,
                                             output_dim=output_dim, trainable=trainable,
                                             atol=atol, seeded=seeded):
        try:
            check()
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
        done.append(name)
    return done
