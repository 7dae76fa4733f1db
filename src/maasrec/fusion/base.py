"""The shared part of the fusion modules: input checking, masks, modality weights."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import torch
from torch import nn

from .._config import FromConfig
from ..encoders._utils import check_seed
from ..exceptions import DataError

__all__ = ["Fusion"]


def _check_dims(input_dims: Mapping[str, int], dim: int) -> dict[str, int]:
    if not isinstance(input_dims, Mapping) or not input_dims:
        raise DataError(f"input_dims must be a non-empty dict of modality name -> size, got "
                        f"{input_dims!r}")
    out = {}
    for name, d in input_dims.items():
        if not isinstance(name, str) or not name:
            raise DataError(f"modality names must be non-empty strings, got {name!r}")
        if isinstance(d, bool) or not isinstance(d, Integral) or d < 1:
            raise DataError(f"input_dims[{name!r}] must be a positive integer, got {d!r}")
        out[name] = int(d)
    if isinstance(dim, bool) or not isinstance(dim, Integral) or dim < 1:
        raise DataError(f"dim must be a positive integer, got {dim!r}")
    return out


class Fusion(FromConfig, nn.Module):
    """Base class: a dict of modality tensors ``{name: [n, d_name]}`` -> one ``[n, dim]`` tensor.

    Subclasses implement ``_fuse(xs, mask) -> (out [n, dim], weights [n, M])`` where
    ``xs`` are the inputs in :attr:`modalities` order (missing rows zeroed) and ``mask``
    is ``[n, M]`` bool.

    Parameters
    ----------
    input_dims : dict of str -> int
        Modality name -> input size; the order fixes :attr:`modalities`.
    dim : int
        Output size.
    random_state : int, optional
        Seed of every initialisation.

    Attributes
    ----------
    modalities : list of str
    last_weights : torch.Tensor or None
        Per-modality weights ``[n, M]`` of the last forward pass (detached): each row
        sums to 1 over its present modalities and is 0 for missing ones (all zero when a
        row has no modality at all). Use them to explain which signal drove a vector.
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int, *,
                 random_state: int | None = None):
        super().__init__()
        self.input_dims = _check_dims(input_dims, dim)
        self.modalities = list(self.input_dims)
        self.dim = int(dim)
        self.random_state = check_seed(random_state)
        self.last_weights: torch.Tensor | None = None

    @property
    def output_dim(self) -> int:
        """int: output size."""
        return self.dim

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def _prepare(self, inputs: Mapping[str, torch.Tensor],
                 masks: Mapping[str, torch.Tensor] | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        if not isinstance(inputs, Mapping):
            raise DataError(f"inputs must be a dict of modality -> tensor, got "
                            f"{type(inputs).__name__}")
        unknown = [k for k in inputs if k not in self.input_dims]
        if unknown:
            raise DataError(f"unknown modalities {unknown}; this module fuses {self.modalities}")
        if not inputs:
            raise DataError(f"inputs is empty; give at least one of {self.modalities}")
        masks = dict(masks or {})
        unknown = [k for k in masks if k not in self.input_dims]
        if unknown:
            raise DataError(f"masks name unknown modalities {unknown}; this module fuses "
                            f"{self.modalities}")
        n = None
        for name, x in inputs.items():
            if not isinstance(x, torch.Tensor) or x.dim() != 2:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise DataError(f"inputs[{name!r}] must be a 2-d tensor [n, {self.input_dims[name]}]"
                                f", got {shape}")
            if x.shape[1] != self.input_dims[name]:
                raise DataError(f"inputs[{name!r}] has {x.shape[1]} columns, expected "
                                f"{self.input_dims[name]}")
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise DataError(f"inputs[{name!r}] has {x.shape[0]} rows, other modalities {n}")
        device = next(iter(inputs.values())).device
        dtype = torch.get_default_dtype()
        xs, ms = [], []
        for name in self.modalities:
            x = inputs.get(name)
            if x is None:  # modality absent for every row
                xs.append(torch.zeros(n, self.input_dims[name], device=device, dtype=dtype))
                ms.append(torch.zeros(n, dtype=torch.bool, device=device))
                continue
            m = masks.get(name)
            if m is None:
                m = torch.ones(n, dtype=torch.bool, device=device)
            else:
                m = torch.as_tensor(m, device=device)
                if m.dtype != torch.bool or m.shape != (n,):
                    raise DataError(f"masks[{name!r}] must be a bool tensor of shape ({n},), got "
                                    f"{m.dtype} {tuple(m.shape)}")
            x = x.to(dtype)
            xs.append(torch.where(m.unsqueeze(1), x, torch.zeros_like(x)))
            ms.append(m)
        return xs, torch.stack(ms, dim=1)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Fuse the modalities.

        Parameters
        ----------
        inputs : dict of str -> torch.Tensor (n, d_name)
            A modality left out counts as missing for every row.
        masks : dict of str -> torch.Tensor of bool (n,), optional
            Rows where a modality is present (default: all). Values of missing rows are
            ignored (they may be NaN).

        Returns
        -------
        torch.Tensor, shape (n, dim)

        Raises
        ------
        DataError
            Unknown modality, wrong shape or mask.
        """
        xs, mask = self._prepare(inputs, masks)
        out, weights = self._fuse(xs, mask)
        self.last_weights = weights.detach()
        return out

    def _fuse(self, xs: list[torch.Tensor], mask: torch.Tensor):
        raise NotImplementedError

    def modality_weights(self, inputs: Mapping[str, torch.Tensor],
                         masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-modality weights of each row (see :attr:`last_weights`), without gradients.

        Parameters
        ----------
        inputs, masks
            As for :meth:`forward`.

        Returns
        -------
        dict of str -> torch.Tensor (n,)
        """
        with torch.no_grad():
            self.forward(inputs, masks)
        return {name: self.last_weights[:, j] for j, name in enumerate(self.modalities)}
