"""A TextEncoder whose language model computes its Linear layers in int8."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..encoders.hub import ModelSource
from ..encoders.text import _DEFAULT_MODEL, TextEncoder
from ..exceptions import DataError
from .linear import SCHEMES, quantize_linear_layers

__all__ = ["QuantizedTextEncoder", "quantize_encoder"]


class QuantizedTextEncoder(TextEncoder):
    """A frozen :class:`~maasrec.encoders.TextEncoder` with int8 Linear layers (CPU).

    The language model is loaded as usual, then every ``torch.nn.Linear`` layer is
    replaced by an int8 one (:func:`~maasrec.compress.linear.quantize_linear_layers`).
    Vectors differ slightly from the float model's, so the embedding cache keeps them in
    their own namespace. It is a ``TextEncoder`` (a ``Component``): use it wherever one
    is used, e.g. as a ``HybridRecommender`` item encoder; it is saved by its parameters
    like a ``TextEncoder``.

    Parameters
    ----------
    model, pooling, max_length, batch_size, normalize, projection_dim, cache_dir, random_state, revision, local_files_only
        As for :class:`~maasrec.encoders.TextEncoder`.
    scheme : {"per_token", "torch_dynamic"}, default "per_token"
        ``"per_token"``: int8 weights per output channel and int8 activations per token
        (:class:`~maasrec.compress.linear.Int8Linear`); ``"torch_dynamic"``:
        ``torch.ao.quantization.quantize_dynamic`` (per-tensor activations; less
        accurate on MiniLM, kept for comparison).
    device : str, optional
        Only the CPU is supported (``None``, ``"cpu"``).

    Examples
    --------
    >>> enc = QuantizedTextEncoder("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> enc.encode(["Heat (1995)"]).shape                                     # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: Any = _DEFAULT_MODEL, pooling: str = "auto", max_length: int = 128,
                 batch_size: int = 64, normalize: bool = True, trainable: bool = False,
                 projection_dim: int | None = None, device: str | torch.device | None = None,
                 cache_dir: str | os.PathLike | bool | None = None,
                 random_state: int | None = None, revision: str | None = None,
                 local_files_only: bool | None = None, amp: bool = True,
                 scheme: str = "per_token"):
        self.scheme = scheme
        super().__init__(model=model, pooling=pooling, max_length=max_length,
                         batch_size=batch_size, normalize=normalize, trainable=trainable,
                         projection_dim=projection_dim, device=device, cache_dir=cache_dir,
                         random_state=random_state, revision=revision,
                         local_files_only=local_files_only, amp=amp)

    def _validate(self) -> None:
        super()._validate()
        if self.scheme not in SCHEMES:
            raise DataError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.trainable:
            raise DataError("a QuantizedTextEncoder is frozen (int8 layers do not train); got "
                            "trainable=True: fine-tune the TextEncoder first, then quantize it")
        if self.device is not None and torch.device(self.device).type != "cpu":
            raise DataError(f"QuantizedTextEncoder runs on the CPU; got device={self.device!r}")

    def _load_weights(self, source: ModelSource | None = None) -> None:
        if self.is_loaded:
            return
        super()._load_weights(source)
        module, n = quantize_linear_layers(self._frozen.module, self.scheme)
        self._frozen.module = module
        self.n_quantized_layers_ = n

    def cache_key(self) -> dict[str, Any]:
        """The :class:`~maasrec.encoders.TextEncoder` key, in a namespace of its own.

        Returns
        -------
        dict
        """
        key = super().cache_key()
        key["encoder"] = f"maasrec.QuantizedTextEncoder/1:{self.scheme}"
        return key


def quantize_encoder(encoder: TextEncoder, scheme: str = "per_token") -> QuantizedTextEncoder:
    """An int8 copy of a frozen text encoder (same parameters, same projection head).

    Parameters
    ----------
    encoder : TextEncoder
        Frozen (``trainable=False``). Not modified.
    scheme : {"per_token", "torch_dynamic"}, default "per_token"

    Returns
    -------
    QuantizedTextEncoder

    Raises
    ------
    DataError
        Not a TextEncoder, a trainable one, an already quantized one, or a bad scheme.
    """
    if not isinstance(encoder, TextEncoder):
        raise DataError(f"quantize_encoder takes a TextEncoder, got {type(encoder).__name__}")
    if isinstance(encoder, QuantizedTextEncoder):
        raise DataError("the encoder is already quantized")
    if type(encoder).__name__ == "OnnxTextEncoder":
        raise DataError("an OnnxTextEncoder runs an exported graph; quantize the TextEncoder "
                        "it was exported from")
    params = TextEncoder.get_params(encoder, deep=False)
    out = QuantizedTextEncoder(**params, scheme=scheme)
    out._validate()
    if encoder.projection is not None:
        out.load_state_dict(encoder.state_dict())
    return out
