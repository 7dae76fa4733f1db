"""Fixtures for encoder tests: tiny in-memory language models, an isolated cache, a
forward-pass counter. Nothing here touches the network."""

from __future__ import annotations

import pytest
import torch

from maasrec.testing.components import tiny_text_model


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Keep the default cache in the test's folder and transformers offline; run tiny
    models on one thread (OpenMP threads only add synchronisation cost at this size)."""
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def bert_pair():
    """A tiny random BERT and its WordPiece tokenizer."""
    return tiny_text_model("bert", seed=0)


@pytest.fixture
def gpt2_pair():
    """A tiny random GPT-2 and a byte-level tokenizer without pad token."""
    return tiny_text_model("gpt2", seed=0)


class ForwardCounter:
    """Counts forward calls of a module and the rows they processed."""

    def __init__(self, module):
        self.calls = 0
        self.rows = 0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.rows += int(ids.shape[0]) if ids is not None else 0

    def reset(self):
        self.calls = 0
        self.rows = 0

    def remove(self):
        self._handle.remove()


@pytest.fixture
def count_forward():
    """``count_forward(module) -> ForwardCounter``."""
    counters = []

    def make(module):
        c = ForwardCounter(module)
        counters.append(c)
        return c

    yield make
    for c in counters:
        c.remove()
