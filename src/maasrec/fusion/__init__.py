"""Fusion: a dict of modality tensors ``{name: [n, d_name]}`` -> one ``[n, dim]`` tensor.

Every module takes ``(input_dims, dim, ...)``, accepts per-modality row masks (a
modality missing for some rows, or left out entirely), and records per-modality
weights for explanations in ``last_weights`` / :meth:`Fusion.modality_weights`.

>>> import torch
>>> from maasrec.fusion import GatedFusion
>>> fuse = GatedFusion({"text": 384, "id": 32}, dim=64, random_state=0)
>>> out = fuse({"text": torch.randn(5, 384), "id": torch.randn(5, 32)},
...            masks={"text": torch.tensor([True, True, False, True, True])})
>>> out.shape, fuse.last_weights.shape
(torch.Size([5, 64]), torch.Size([5, 2]))
"""

from .base import Fusion
from .modules import FUSIONS, AttentionFusion, ConcatFusion, GatedFusion, make_fusion

__all__ = ["FUSIONS", "AttentionFusion", "ConcatFusion", "Fusion", "GatedFusion", "make_fusion"]
