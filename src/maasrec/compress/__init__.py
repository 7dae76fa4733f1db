"""Compression of fitted models: quantized tables and encoders, ONNX Runtime encoders.

Every function takes a fitted model (or a text encoder) and returns a fitted one that
is used, saved, loaded and served like any other: see ``docs/compression.rst``.

- :func:`quantize`: int8 (per-row scale) or float16/bfloat16 storage of the factor and
  item-vector tables of ``ALS``, ``BPRMF``, ``PureSVD``, ``EASE`` and
  ``HybridRecommender`` (:class:`QuantizedRecommender`).
- :func:`quantize_encoder`: int8 weights and activations for the Linear layers of a
  :class:`~maasrec.encoders.TextEncoder` (:class:`QuantizedTextEncoder`).
- :func:`export_onnx` / :class:`OnnxTextEncoder`: a TextEncoder exported to ONNX and run
  with ONNX Runtime (extra ``onnx``; onnxruntime is imported only when a graph runs).
"""

from .encoders import QuantizedTextEncoder, quantize_encoder
from .linear import Int8Linear, quantize_linear_layers
from .onnx import OnnxTextEncoder, export_onnx
from .tables import CODECS, QuantizedRecommender, dequantize_table, quantize, quantize_table

__all__ = ["CODECS", "Int8Linear", "OnnxTextEncoder", "QuantizedRecommender",
           "QuantizedTextEncoder", "dequantize_table", "export_onnx", "quantize",
           "quantize_encoder", "quantize_linear_layers", "quantize_table"]
