"""int8 Linear layers for inference: per-channel int8 weights, per-token int8 activations.

:class:`Int8Linear` replaces a frozen ``torch.nn.Linear``: its weight is stored as int8
with one scale per output channel, and every input row (token) is quantized on the fly
with its own scale; the product is an exact int8 x int8 -> int32 matrix product
(``torch._int_mm``, the CPU's VNNI/AMX kernels) rescaled to float. Per-token activation
scales keep the error small on transformer activations, whose outlier channels make the
per-tensor activation scale of ``torch.ao.quantization.quantize_dynamic`` lose accuracy
(on all-MiniLM-L6-v2: mean cosine to float32 0.997 here against 0.94 with
``quantize_dynamic``; benchmarks/bench_compress.py).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..exceptions import DataError

__all__ = ["SCHEMES", "Int8Linear", "quantize_linear_layers"]

#: ``"per_token"``: :class:`Int8Linear`; ``"torch_dynamic"``: torch's own dynamic int8
#: quantization (``torch.ao.quantization.quantize_dynamic``, per-tensor activations).
SCHEMES = ("per_token", "torch_dynamic")


def _has_int_mm() -> bool:
    return hasattr(torch, "_int_mm")


class Int8Linear(nn.Module):
    """A frozen Linear layer computing with int8 weights and int8 per-token activations.

    Parameters
    ----------
    weight_codes : torch.Tensor of int8, shape (out_features, in_features)
    weight_scales : torch.Tensor of float32, shape (out_features,)
    bias : torch.Tensor of float32, shape (out_features,), optional

    Notes
    -----
    ``y = (q(x) @ W_q.T) * s_x * s_w + b`` with ``q(x) = round(x / s_x)``,
    ``s_x = max|x_row| / 127`` per row and ``s_w = max|W_row| / 127`` per output channel.
    """

    def __init__(self, weight_codes: torch.Tensor, weight_scales: torch.Tensor,
                 bias: torch.Tensor | None = None):
        super().__init__()
        if weight_codes.dtype != torch.int8 or weight_codes.dim() != 2:
            raise DataError(f"weight_codes must be a 2-d int8 tensor, got "
                            f"{weight_codes.dtype} of shape {tuple(weight_codes.shape)}")
        self.out_features, self.in_features = (int(s) for s in weight_codes.shape)
        # stored transposed ([in, out], contiguous): the layout torch._int_mm takes
        self.register_buffer("weight_t", weight_codes.t().contiguous())
        self.register_buffer("weight_scales", weight_scales.detach().float().reshape(1, -1))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantize a float Linear layer (per output channel, symmetric).

        Parameters
        ----------
        linear : torch.nn.Linear

        Returns
        -------
        Int8Linear
        """
        w = linear.weight.detach().float().cpu()
        scales = w.abs().amax(dim=1) / 127.0
        safe = torch.where(scales > 0, scales, torch.ones_like(scales))
        codes = torch.clamp(torch.round(w / safe[:, None]), -127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().float().cpu()
        return cls(codes, scales, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : torch.Tensor, shape (..., in_features)

        Returns
        -------
        torch.Tensor of float32, shape (..., out_features)
        """
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()
        scale = x2.abs().amax(dim=1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).div_(127.0)
        q = torch.round(x2 / scale).to(torch.int8)
        if _has_int_mm() and q.device.type == "cpu":
            y = torch._int_mm(q, self.weight_t).to(torch.float32)
        else:  # exact in float32 too: |sum| < 2**24 for in_features < 1040
            y = q.float() @ self.weight_t.float()
        # in place: one allocation of the output (large blocks are page-faulted afresh)
        y.mul_(scale).mul_(self.weight_scales)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, int8 per-token")


def _swap(module: nn.Module, skip: tuple[str, ...], prefix: str = "") -> int:
    n = 0
    for name, child in list(module.named_children()):
        full = f"{prefix}{name}"
        if isinstance(child, nn.Linear) and not any(s in full for s in skip):
            setattr(module, name, Int8Linear.from_linear(child))
            n += 1
        else:
            n += _swap(child, skip, f"{full}.")
    return n


def quantize_linear_layers(module: nn.Module, scheme: str = "per_token", *,
                           skip: tuple[str, ...] = ()) -> tuple[nn.Module, int]:
    """A copy of ``module`` whose ``nn.Linear`` layers compute in int8 (for inference).

    Parameters
    ----------
    module : torch.nn.Module
        Left unchanged (it is deep-copied).
    scheme : {"per_token", "torch_dynamic"}, default "per_token"
        See :data:`SCHEMES`.
    skip : tuple of str
        Layers whose qualified name contains one of these strings stay float.

    Returns
    -------
    (torch.nn.Module, int)
        The quantized copy (in eval mode, on the CPU) and the number of layers replaced.

    Raises
    ------
    DataError
        An unknown scheme, or a module with no Linear layer to quantize.
    """
    if scheme not in SCHEMES:
        raise DataError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)
             and not any(s in n for s in skip)]
    if not names:
        raise DataError(f"{type(module).__name__} has no torch.nn.Linear layer to quantize "
                        f"(GPT-2 style models use Conv1D layers, which are not quantized)")
    out = copy.deepcopy(module).cpu().eval()
    if scheme == "torch_dynamic":
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as exc:  # removed from recent torch releases
            raise DataError("scheme='torch_dynamic' needs torch.ao.quantization, which this "
                            "torch does not have; use scheme='per_token'") from exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = quantize_dynamic(out, {n: torch.ao.quantization.default_dynamic_qconfig
                                         for n in names}, dtype=torch.qint8)
        return out, len(names)
    n = _swap(out, tuple(skip))
    return out.requires_grad_(False), n
