"""How :class:`~maasrec.encoders.TextEncoder` runs its language model over many texts.

:class:`BatchingMixin` holds the encoding engine: tokenise every text once, sort by
length so that batches carry little padding, pad (left or right, with positions counted
from the first real token), run the model under autocast, pool and normalise, and put
the rows back in input order; frozen encoders look each distinct text up in the disk
cache first and store what they computed. The encoder class keeps its parameters, the
lazy loading of the model, the torch-module plumbing and the public ``encode*`` methods.
Subclasses (e.g. :class:`~maasrec.compress.OnnxTextEncoder`) override
:meth:`~BatchingMixin._forward_batch`.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

from ..exceptions import MaasrecWarning
from .cache import text_keys

__all__ = ["BatchingMixin"]

logger = logging.getLogger("maasrec.encoders.text")


class BatchingMixin:
    """Tokenise, batch, run and cache (private methods of ``TextEncoder``)."""

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        tok = self._tokenizer
        enc = tok(texts, truncation=True, max_length=int(self.max_length),
                  add_special_tokens=True, return_attention_mask=False,
                  return_token_type_ids=False)
        ids = [list(x) for x in enc["input_ids"]]
        filler = next((t for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
                       if t is not None), 0)
        return [x if x else [filler] for x in ids]  # an empty text still gets one token

    def _pad(self, seqs: list[list[int]], device: torch.device):
        tok = self._tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        left = self._meta["is_decoder"] and getattr(tok, "padding_side", "right") == "left"
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            if left:
                ids[r, width - len(s):] = s
                mask[r, width - len(s):] = 1
            else:
                ids[r, :len(s)] = s
                mask[r, :len(s)] = 1
        return (torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device), left)

    def _forward_batch(self, seqs: list[list[int]], device: torch.device) -> torch.Tensor:
        from .text import pool_hidden_states  # the public pooling rule lives with the class

        ids, mask, left = self._pad(seqs, device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if left and "position_ids" in self._forward_kwargs:
            # positions count real tokens only, so left padding does not shift them
            kwargs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
        if self._meta["is_decoder"] and "use_cache" in self._forward_kwargs:
            kwargs["use_cache"] = False
        with self._autocast():
            out = self._backbone_module()(**kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        pooled = pool_hidden_states(hidden.float(), mask, self._meta["pooling"])
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def _run(self, texts: list[str], *, grad: bool, progress: bool = False):
        """Pooled vectors of ``texts`` (length-sorted batches, input order restored)."""
        meta = self._ensure_meta()
        self._load_weights(meta["source"])
        device = self._compute_device()
        seqs = self._tokenize(texts)
        order = np.argsort(-np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs)),
                           kind="stable")
        bs = int(self.batch_size)
        starts = range(0, len(order), bs)
        if progress:
            from ..training.progress import tqdm_class

            tqdm = tqdm_class()
            starts = tqdm(starts, desc="encoding", unit="batch")
        if grad:
            pieces = [self._forward_batch([seqs[i] for i in order[s:s + bs]], device)
                      for s in starts]
            inverse = torch.from_numpy(np.argsort(order)).to(device)
            return torch.cat(pieces)[inverse]
        out = np.empty((len(texts), meta["hidden_size"]), dtype=np.float32)
        with torch.inference_mode():
            for s in starts:
                sel = order[s:s + bs]
                out[sel] = self._forward_batch([seqs[i] for i in sel], device).cpu().numpy()
        return out

    def _frozen_vectors(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Pooled vectors as numpy, through the disk cache when there is one."""
        meta = self._ensure_meta()
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        uniq = [str(t) for t in uniq]
        out = np.zeros((len(uniq), meta["hidden_size"]), dtype=np.float32)
        todo = np.arange(len(uniq))
        self._ensure_cache()
        keys = None
        if self._cache is not None:
            keys = text_keys(uniq)
            try:
                found, vecs = self._cache.get(keys)
            except OSError as exc:
                self._cache_unusable(exc)
                found, vecs = np.zeros(len(uniq), dtype=bool), None
            if vecs is not None:
                out[found] = vecs[found]
            todo = np.flatnonzero(~found)
            logger.debug("text cache: %d of %d texts found", len(uniq) - len(todo), len(uniq))
        if len(todo):
            backbone_mode = None
            if "backbone" in self._modules:
                backbone_mode = self._modules["backbone"].training
                self._modules["backbone"].eval()
            try:
                chunk = max(int(self.batch_size) * 64, 8192)
                for s in range(0, len(todo), chunk):
                    sel = todo[s:s + chunk]
                    out[sel] = self._run([uniq[i] for i in sel], grad=False, progress=progress)
                    if self._cache is not None:
                        try:
                            self._cache.put([keys[i] for i in sel], out[sel])
                        except OSError as exc:
                            self._cache_unusable(exc)
            finally:
                if backbone_mode is not None:
                    self._modules["backbone"].train(backbone_mode)
        return out[np.asarray(inverse).reshape(-1)]

    def _cache_unusable(self, exc: OSError) -> None:
        warnings.warn(f"embedding cache at {str(self._cache.path)!r} is not usable "
                      f"({exc}); encoding without it", MaasrecWarning, stacklevel=4)
        self._cache = None
        self._cache_failed = True

    def _run_eval(self, texts: list[str], progress: bool) -> np.ndarray:
        if not texts:
            return np.empty((0, self.hidden_size), dtype=np.float32)
        self.load_model()
        backbone = self._modules["backbone"]
        mode = backbone.training
        backbone.eval()
        try:
            return self._run(texts, grad=False, progress=progress)
        finally:
            backbone.train(mode)
