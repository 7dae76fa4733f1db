"""Side features (categorical, multi-hot, numeric) -> one learned vector per row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._config import FromConfig
from ..data.features import Features
from ..data.vocab import IdVocab
from ..exceptions import DataError
from ._utils import as_index, check_int, check_seed, seeded

__all__ = ["FeatureEncoder"]

COMBINES = ("mean", "concat")


def _labels(values) -> list[str]:
    return [str(v) for v in values]


def _pick(available: Sequence[str], wanted, kind: str) -> list[str]:
    if wanted is None:
        return list(available)
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    for w in wanted:
        if w not in available:
            raise DataError(f"{kind} feature {w!r} is not in the features; available: "
                            f"{list(available)}")
    return wanted


class FeatureEncoder(FromConfig, nn.Module):
    """Learned vectors of categorical, multi-hot and numeric side features.

    Each field becomes a ``dim``-vector: a categorical label through an embedding
    table, a set of labels (genres, tags) through an :class:`torch.nn.EmbeddingBag`
    (mean of the label vectors), and the numeric columns -- standardised with the mean
    and standard deviation seen at construction, missing values set to 0 with a missing
    indicator -- through one linear layer. The fields are then averaged over the
    fields present in a row (``combine="mean"``) or concatenated and mapped to ``dim``
    (``combine="concat"``).

    The feature data live in the module's buffers (so a saved model needs no feature
    file to score); build it with :meth:`from_features`, and refresh the data for new
    ids with :meth:`set_data`.

    Parameters
    ----------
    n : int
        Number of rows (ids).
    dim : int
        Output size.
    categorical : dict of str -> list of str, optional
        Field name -> its labels (unknown labels count as missing).
    multi_hot : dict of str -> list of str, optional
        Field name -> its labels.
    numeric : list of str, optional
        Numeric column names.
    combine : {"mean", "concat"}, default "mean"
    random_state : int, optional
        Seed of the initialisation.

    Attributes
    ----------
    fields : list of str
        Field names in output order (``"numeric"`` stands for all numeric columns).
    """

    def __init__(self, n: int, dim: int, *, categorical: Mapping[str, Sequence[str]] | None = None,
                 multi_hot: Mapping[str, Sequence[str]] | None = None,
                 numeric: Sequence[str] | None = None, combine: str = "mean",
                 random_state: int | None = None):
        super().__init__()
        self.n = check_int("n", n, 1)
        self.dim = check_int("dim", dim, 1)
        if combine not in COMBINES:
            raise DataError(f"combine must be one of {COMBINES}, got {combine!r}")
        self.combine = combine
        self.random_state = None if random_state is None else check_seed(random_state)
        self.categorical = {str(k): _labels(v) for k, v in (categorical or {}).items()}
        self.multi_hot = {str(k): _labels(v) for k, v in (multi_hot or {}).items()}
        self.numeric = [str(c) for c in (numeric or [])]
        if not (self.categorical or self.multi_hot or self.numeric):
            raise DataError("FeatureEncoder needs at least one categorical, multi-hot or numeric "
                            "feature")
        for name, labels in {**self.categorical, **self.multi_hot}.items():
            if not labels:
                raise DataError(f"feature {name!r} has no labels")
        self.fields = ([f"cat:{k}" for k in self.categorical] + [f"multi:{k}" for k in self.multi_hot]
                       + (["numeric"] if self.numeric else []))
        k = len(self.numeric)
        with seeded(self.random_state):
            self.cat_embeddings = nn.ModuleList(
                nn.Embedding(len(labels) + 1, self.dim, padding_idx=len(labels))
                for labels in self.categorical.values())
            self.bag_embeddings = nn.ModuleList(
                nn.EmbeddingBag(len(labels), self.dim, mode="mean")
                for labels in self.multi_hot.values())
            self.numeric_linear = nn.Linear(2 * k, self.dim) if k else None
            self.output = (nn.Linear(len(self.fields) * self.dim, self.dim)
                           if combine == "concat" else None)
        for i, labels in enumerate(self.categorical.values()):
            self.register_buffer(f"cat_codes_{i}", torch.full((self.n,), len(labels),
                                                              dtype=torch.long))
        for i in range(len(self.multi_hot)):
            self.register_buffer(f"bag_indptr_{i}", torch.zeros(self.n + 1, dtype=torch.long))
            self.register_buffer(f"bag_indices_{i}", torch.zeros(0, dtype=torch.long))
        if k:
            self.register_buffer("numeric_values", torch.full((self.n, k), float("nan")))
            self.register_buffer("numeric_mean", torch.zeros(k))
            self.register_buffer("numeric_std", torch.ones(k))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_features(cls, features: Features, dim: int, *, categorical=None, multi_hot=None,
                      numeric=None, vocab: IdVocab | None = None, combine: str = "mean",
                      random_state: int | None = None) -> FeatureEncoder:
        """Build an encoder for (a selection of) the blocks of a features object.

        Parameters
        ----------
        features : ItemFeatures or UserFeatures
        dim : int
        categorical, multi_hot, numeric : list of str, optional
            Which fields to use (default: all of that kind).
        vocab : IdVocab, optional
            Align rows to this vocabulary first (ids without features become missing rows).
        combine : {"mean", "concat"}, default "mean"
        random_state : int, optional

        Returns
        -------
        FeatureEncoder
            With the data set and the numeric statistics fitted.
        """
        if not isinstance(features, Features):
            raise DataError(f"features must be an ItemFeatures/UserFeatures, got "
                            f"{type(features).__name__}")
        if vocab is not None:
            features = features.align(vocab)
        cat = _pick(list(features.categorical), categorical, "categorical")
        mh = _pick(list(features.multi_hot), multi_hot, "multi-hot")
        num = _pick(list(features.numeric), numeric, "numeric")
        enc = cls(features.n, dim,
                  categorical={c: features.categorical[c][1] for c in cat},
                  multi_hot={c: features.multi_hot[c][1] for c in mh},
                  numeric=num, combine=combine, random_state=random_state)
        if num:
            values = np.stack([features.numeric[c] for c in num], axis=1).astype(np.float64)
            with np.errstate(all="ignore"):
                mean = np.nanmean(values, axis=0)
                std = np.nanstd(values, axis=0)
            mean = np.where(np.isfinite(mean), mean, 0.0)
            std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
            enc.numeric_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            enc.numeric_std.copy_(torch.from_numpy(std.astype(np.float32)))
        return enc.set_data(features)

    def set_data(self, features: Features) -> FeatureEncoder:
        """Replace the per-row data (same fields; labels unseen at construction are missing).

        Parameters
        ----------
        features : ItemFeatures or UserFeatures
            With ``n`` rows (align it to the vocabulary first).

        Returns
        -------
        self
        """
        if features.n != self.n:
            raise DataError(f"features have {features.n} rows, this encoder {self.n}; align them "
                            f"to the same vocabulary")
        device = self._device()
        for i, (name, labels) in enumerate(self.categorical.items()):
            if name not in features.categorical:
                raise DataError(f"categorical feature {name!r} missing from {features!r}")
            codes, their = features.categorical[name]
            pos = {lab: j for j, lab in enumerate(labels)}
            remap = np.asarray([pos.get(str(lab), len(labels)) for lab in their] + [len(labels)],
                               dtype=np.int64)
            mapped = remap[np.where(codes >= 0, codes, len(their))]
            getattr(self, f"cat_codes_{i}").copy_(torch.from_numpy(mapped).to(device))
        for i, (name, labels) in enumerate(self.multi_hot.items()):
            if name not in features.multi_hot:
                raise DataError(f"multi-hot feature {name!r} missing from {features!r}")
            m, their = features.multi_hot[name]
            pos = {lab: j for j, lab in enumerate(labels)}
            remap = np.asarray([pos.get(str(lab), -1) for lab in their], dtype=np.int64)
            m = m.tocsr()
            cols = remap[m.indices] if len(remap) else np.zeros(0, dtype=np.int64)
            keep = cols >= 0
            kept_before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
            indptr = kept_before[m.indptr]
            setattr(self, f"bag_indices_{i}", torch.from_numpy(cols[keep].copy()).to(device))
            getattr(self, f"bag_indptr_{i}").copy_(torch.from_numpy(indptr).to(device))
        if self.numeric:
            missing = [c for c in self.numeric if c not in features.numeric]
            if missing:
                raise DataError(f"numeric features {missing} missing from {features!r}")
            values = np.stack([features.numeric[c] for c in self.numeric], axis=1)
            self.numeric_values.copy_(torch.from_numpy(values.astype(np.float32)).to(device))
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # bag indices have a data-dependent length: take the incoming one
        for i in range(len(self.multi_hot)):
            key = f"{prefix}bag_indices_{i}"
            if key in state_dict:
                current = getattr(self, f"bag_indices_{i}")
                setattr(self, f"bag_indices_{i}", torch.zeros(
                    state_dict[key].shape, dtype=current.dtype, device=current.device))
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- forward --------------------------------------------------------------------------
    @property
    def output_dim(self) -> int:
        """int: output size."""
        return self.dim

    def _device(self) -> torch.device:
        return next(iter(self.buffers())).device

    def _bag(self, i: int, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        indptr = getattr(self, f"bag_indptr_{i}")
        indices = getattr(self, f"bag_indices_{i}")
        bag = self.bag_embeddings[i]
        if rows is None:
            counts = indptr[1:] - indptr[:-1]
            return bag(indices, indptr[:-1]), counts > 0
        starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        flat = (torch.repeat_interleave(starts - offsets, counts) +
                torch.arange(total, device=indptr.device))
        return bag(indices[flat], offsets), counts > 0

    def field_outputs(self, idx=None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-field vectors and masks (useful as separate fusion modalities).

        Parameters
        ----------
        idx : array-like of int, optional
            Rows (default all).

        Returns
        -------
        vectors : dict of str -> torch.Tensor (m, dim)
            Zero rows where the field is missing.
        masks : dict of str -> torch.Tensor of bool (m,)
        """
        rows = as_index(idx, self.n, self._device())
        vectors: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.categorical):
            codes = getattr(self, f"cat_codes_{i}")
            codes = codes if rows is None else codes[rows]
            vectors[f"cat:{name}"] = self.cat_embeddings[i](codes)
            masks[f"cat:{name}"] = codes != self.cat_embeddings[i].padding_idx
        for i, name in enumerate(self.multi_hot):
            vectors[f"multi:{name}"], masks[f"multi:{name}"] = self._bag(i, rows)
        if self.numeric:
            x = self.numeric_values if rows is None else self.numeric_values[rows]
            present = ~torch.isnan(x)
            z = torch.where(present, (x - self.numeric_mean) / self.numeric_std, torch.zeros_like(x))
            vectors["numeric"] = self.numeric_linear(torch.cat([z, (~present).float()], dim=1))
            masks["numeric"] = present.any(dim=1)
        return vectors, masks

    def forward(self, idx=None) -> torch.Tensor:
        """Feature vectors of the given rows (all rows when ``idx`` is None).

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor, shape (m, dim)
            Zero for rows without any feature (see :meth:`mask`) with ``combine="mean"``.
        """
        vectors, masks = self.field_outputs(idx)
        if self.combine == "concat":
            parts = [torch.where(masks[f].unsqueeze(1), vectors[f], torch.zeros_like(vectors[f]))
                     for f in self.fields]
            return self.output(torch.cat(parts, dim=1))
        stacked = torch.stack([vectors[f] for f in self.fields], dim=1)
        m = torch.stack([masks[f] for f in self.fields], dim=1).to(stacked.dtype)
        return (stacked * m.unsqueeze(-1)).sum(dim=1) / m.sum(dim=1, keepdim=True).clamp(min=1.0)

    def mask(self, idx=None) -> torch.Tensor:
        """Rows with at least one feature present.

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor of bool, shape (m,)
        """
        with torch.no_grad():
            _, masks = self.field_outputs(idx)
        return torch.stack(list(masks.values()), dim=1).any(dim=1)
