"""Compression of fitted models: quantized tables and encoders, ONNX Runtime encoders.

Every function takes a fitted model (or a text encoder) and returns a fitted one that
is used, saved, loaded and served like any other: see ``docs/compression.rst``.

- :func:`quantize`: int8 (per-row scale) or float16/bfloat16 storage of the factor and
  item-vector tables of ``ALS``, ``BPRMF``, ``PureSVD``, ``EASE`` and
  ``HybridRecommender`` (:class:`QuantizedRecommender`).
- :func:`quantize_encoder`: int8 weights and activations for the Linear layers of a
  :class:`~maasrec.encoders.TextEncoder` (:class:`QuantizedTextEncoder`).
- :func:`quantize_network`: int8 Linear layers for the network of a fitted ``LMRanker``
  (its cross-encoder) or ``SequentialRecommender`` (its transformer)
  (:class:`Int8Recommender`).
- :func:`export_onnx` / :class:`OnnxTextEncoder` / :class:`OnnxRecommender`: a
  TextEncoder, or the network of a fitted ``LMRanker`` or ``SequentialRecommender``,
  exported to ONNX and run with ONNX Runtime (extra ``onnx``; onnxruntime is imported
  only when a graph runs).
"""

import importlib
from typing import Any

#: Public name -> submodule; imported on first use, so that ``maasrec compress --help``
#: (which imports :mod:`maasrec.compress.cli`) does not load torch.
_LAZY = {
    "CODECS": "tables", "QuantizedRecommender": "tables", "dequantize_table": "tables",
    "quantize": "tables", "quantize_table": "tables",
    "QuantizedTextEncoder": "encoders", "quantize_encoder": "encoders",
    "Int8Linear": "linear", "quantize_linear_layers": "linear",
    "OnnxTextEncoder": "onnx", "export_onnx": "onnx",
    "Int8Recommender": "networks", "quantize_network": "networks",
    "OnnxRecommender": "onnx_models",
    "prune": "pruning", "sparsity": "pruning", "PRUNE_METHODS": "pruning",
    "distill": "distillation", "DISTILL_MODES": "distillation",
    "candidate_lists": "distillation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
