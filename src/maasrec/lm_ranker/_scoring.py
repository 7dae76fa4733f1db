"""Token pairs to logits: the padded batches and inference passes of an LMRanker."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..device import amp_dtype
from ..training import progress, threads_for
from .network import CrossEncoder
from .text import PairBuilder

__all__ = ["PairScorer"]


class PairScorer:
    """A cross-encoder with its tokenizer's padding rules: collates and scores pairs.

    Parameters
    ----------
    enc : CrossEncoder
    tok : tokenizer
    builder : PairBuilder
    device : torch.device

    Attributes
    ----------
    types : bool
        Whether batches carry ``token_type_ids`` (BERT-style sentence pairs).
    pad_id : int
        The padding token (the tokenizer's pad, else its end-of-sequence token).
    left : bool
        Left padding (a decoder whose tokenizer pads on the left).
    """

    def __init__(self, enc: CrossEncoder, tok, builder: PairBuilder, device: torch.device):
        self.enc = enc
        self.device = device
        self.types = builder.uses_token_types and enc.accepts_token_types()
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.left = enc.is_decoder and getattr(tok, "padding_side", "right") == "left"

    def collate(self, seqs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Padded ``input_ids``, ``attention_mask`` (and ``token_type_ids``) on the device."""
        width = max(len(s[0]) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        types = np.zeros((len(seqs), width), dtype=np.int64) if self.types else None
        for r, (s, t) in enumerate(seqs):
            sl = slice(width - len(s), width) if self.left else slice(0, len(s))
            ids[r, sl] = s
            mask[r, sl] = 1
            if types is not None:
                types[r, sl] = t
        device = self.device
        out = {"input_ids": torch.from_numpy(ids).to(device),
               "attention_mask": torch.from_numpy(mask).to(device)}
        if types is not None:
            out["token_type_ids"] = torch.from_numpy(types).to(device)
        return out

    def logits(self, seqs: list[tuple[list[int], list[int]]], batch_size: int, work: int,
               verbose: bool = False) -> np.ndarray:
        """LM logits of token sequences: length-sorted batches, inference mode, AMP on CUDA.

        ``work`` (elements per kernel) sets the CPU threads; a progress bar is shown
        with ``verbose`` for 50 batches or more.
        """
        out = np.empty(len(seqs), dtype=np.float32)
        if not seqs:
            return out
        lengths = np.fromiter((len(s[0]) for s in seqs), dtype=np.int64, count=len(seqs))
        order = np.argsort(-lengths, kind="stable")
        bs = int(batch_size)
        device = self.device
        amp = amp_dtype(device) if device.type == "cuda" else None
        enc = self.enc
        enc.eval()
        starts = range(0, len(order), bs)
        bar = progress(starts, desc="LMRanker scoring", unit="batch",
                       verbose=bool(verbose) and len(starts) >= 50)
        with torch.inference_mode(), _autocast(amp), threads_for(work, device):
            for start in bar:
                sel = order[start:start + bs]
                batch = self.collate([seqs[i] for i in sel])
                out[sel] = enc(**batch).float().cpu().numpy()
        return out


def _autocast(dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)
