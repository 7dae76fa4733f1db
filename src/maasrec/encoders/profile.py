"""Profiles: every kind of side information of a user (or item), fused into one vector."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._config import FromConfig
from ..data.features import Features
from ..data.vocab import IdVocab
from ..exceptions import DataError
from ._utils import as_index, check_int, check_seed
from .features import FeatureEncoder
from .precomputed import PrecomputedEncoder

__all__ = ["ItemProfileEncoder", "ProfileEncoder", "UserProfileEncoder"]

logger = logging.getLogger(__name__)


def _sub_seed(random_state: int | None, k: int) -> int | None:
    return None if random_state is None else random_state + 7919 * k


class ProfileEncoder(FromConfig, nn.Module):
    """Side features + free text + precomputed vectors -> one ``[n, dim]`` tensor.

    Each modality gets its own encoder -- ``"features"``: a :class:`FeatureEncoder` of
    the categorical, multi-hot and numeric fields; ``"text"``: the text vectors of a
    :class:`~maasrec.encoders.TextEncoder` (computed once, frozen, through a trainable
    projection); ``"vectors:<name>"``: each block of precomputed vectors -- and a fusion
    module (:mod:`maasrec.fusion`) combines them, ignoring the modalities a row lacks.

    Build it with :meth:`from_features`; the constructor only shapes an empty module
    (to rebuild a saved one before ``load_state_dict``).

    Parameters
    ----------
    n : int
        Number of rows (users or items).
    dim : int
        Output size.
    features : dict, optional
        ``FeatureEncoder`` arguments: ``categorical``, ``multi_hot``, ``numeric``,
        ``combine``.
    text_dim : int, optional
        Size of the text vectors (None: no text modality).
    vectors : dict of str -> int, optional
        Precomputed vector blocks and their sizes.
    fusion : {"gated", "concat", "attention"}, default "gated"
    fusion_options : dict, optional
        More arguments of the fusion module (``num_heads``, ``dropout``, ``hidden``).
    random_state : int, optional

    Attributes
    ----------
    encoders : torch.nn.ModuleDict
        Modality name -> encoder.
    fusion_module : maasrec.fusion.Fusion
    """

    def __init__(self, n: int, dim: int, *, features: Mapping[str, Any] | None = None,
                 text_dim: int | None = None, vectors: Mapping[str, int] | None = None,
                 fusion: str = "gated", fusion_options: Mapping[str, Any] | None = None,
                 random_state: int | None = None):
        super().__init__()
        self.n = check_int("n", n, 1)
        self.dim = check_int("dim", dim, 1)
        self.random_state = None if random_state is None else check_seed(random_state)
        self.features = dict(features) if features else None
        self.text_dim = None if text_dim is None else check_int("text_dim", text_dim, 1)
        self.vectors = {str(k): check_int(f"vectors[{k!r}]", v, 1)
                               for k, v in (vectors or {}).items()}
        self.fusion = fusion
        self.fusion_options = dict(fusion_options or {})
        encoders: dict[str, nn.Module] = {}
        if self.features:
            encoders["features"] = FeatureEncoder(self.n, self.dim, **self.features,
                                                  random_state=_sub_seed(self.random_state, 1))
        if self.text_dim:
            encoders["text"] = PrecomputedEncoder(self.n, self.text_dim, self.dim,
                                                  random_state=_sub_seed(self.random_state, 2))
        for k, (name, d) in enumerate(self.vectors.items()):
            encoders[f"vectors:{name}"] = PrecomputedEncoder(
                self.n, d, self.dim, random_state=_sub_seed(self.random_state, 3 + k))
        if not encoders:
            raise DataError("a profile needs at least one of features, text_dim or vectors")
        self.encoders = nn.ModuleDict(encoders)
        from ..fusion import make_fusion  # here: maasrec.fusion imports maasrec.encoders

        self.fusion_module = make_fusion(fusion, {k: self.dim for k in encoders}, self.dim,
                                         random_state=self.random_state, **self.fusion_options)

    @classmethod
    def from_features(cls, features: Features, dim: int, *, text_encoder=None,
                      vocab: IdVocab | None = None, categorical: Sequence[str] | None = None,
                      multi_hot: Sequence[str] | None = None, numeric: Sequence[str] | None = None,
                      vectors: Sequence[str] | None = None, combine: str = "mean",
                      fusion: str = "gated", fusion_options: Mapping[str, Any] | None = None,
                      random_state: int | None = None,
                      show_progress: bool = False) -> ProfileEncoder:
        """Build the profile encoder of a features object.

        Parameters
        ----------
        features : UserFeatures or ItemFeatures
        dim : int
        text_encoder : TextEncoder, optional
            Encodes the text block (present rows only, through its cache). Without it
            the text block is not used.
        vocab : IdVocab, optional
            Align rows to this vocabulary first.
        categorical, multi_hot, numeric, vectors : list of str, optional
            Which fields to use (default all).
        combine : {"mean", "concat"}, default "mean"
            How the feature fields are combined (see :class:`FeatureEncoder`).
        fusion : {"gated", "concat", "attention"}, default "gated"
        fusion_options : dict, optional
            More arguments of the fusion module.
        random_state : int, optional
        show_progress : bool, default False
            Progress bar while encoding texts.

        Returns
        -------
        ProfileEncoder
        """
        if not isinstance(features, Features):
            raise DataError(f"features must be an ItemFeatures/UserFeatures, got "
                            f"{type(features).__name__}")
        if vocab is not None:
            features = features.align(vocab)

        def pick(available, wanted, kind):
            if wanted is None:
                return list(available)
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            bad = [w for w in wanted if w not in available]
            if bad:
                raise DataError(f"{kind} features {bad} are not in the features; available: "
                                f"{list(available)}")
            return wanted

        cat = pick(features.categorical, categorical, "categorical")
        mh = pick(features.multi_hot, multi_hot, "multi-hot")
        num = pick(features.numeric, numeric, "numeric")
        vec = pick(features.vectors, vectors, "vectors")
        feat_cfg = None
        if cat or mh or num:
            feat_cfg = {"categorical": {c: [str(x) for x in features.categorical[c][1]]
                                        for c in cat},
                        "multi_hot": {c: [str(x) for x in features.multi_hot[c][1]] for c in mh},
                        "numeric": num, "combine": combine}
        text_vectors = None
        if features.has_text and text_encoder is not None:
            present = np.asarray(features.text_mask, dtype=bool)
            texts = [str(t) for t in features.text[present]]
            encoded = text_encoder.encode(texts, show_progress=show_progress) if texts else None
            width = text_encoder.output_dim
            text_vectors = np.full((features.n, width), np.nan, dtype=np.float32)
            if encoded is not None:
                text_vectors[present] = encoded
        elif features.has_text:
            logger.info("profile: the features have text but no text_encoder was given; the "
                        "text is not used")
        enc = cls(features.n, dim, features=feat_cfg,
                  text_dim=None if text_vectors is None else text_vectors.shape[1],
                  vectors={v: features.vectors[v].shape[1] for v in vec}, fusion=fusion,
                  fusion_options=fusion_options, random_state=random_state)
        if feat_cfg:  # same seed and configuration as the placeholder: same initial weights
            enc.encoders["features"] = FeatureEncoder.from_features(
                features, dim, categorical=cat, multi_hot=mh, numeric=num, combine=combine,
                random_state=_sub_seed(enc.random_state, 1))
        if text_vectors is not None:
            enc.encoders["text"].set_vectors(text_vectors)
        for v in vec:
            enc.encoders[f"vectors:{v}"].set_vectors(features.vectors[v])
        return enc

    @property
    def output_dim(self) -> int:
        """int: output size."""
        return self.dim

    @property
    def modalities(self) -> list[str]:
        """list of str: modality names, in the order of :attr:`last_weights` columns."""
        return list(self.encoders)

    @property
    def last_weights(self) -> torch.Tensor | None:
        """torch.Tensor or None: per-modality weights ``[n, M]`` of the last forward pass."""
        return self.fusion_module.last_weights

    def _inputs(self, idx):
        device = next(iter(self.buffers())).device
        rows = as_index(idx, self.n, device)
        inputs = {k: e(rows) for k, e in self.encoders.items()}
        masks = {k: e.mask(rows) for k, e in self.encoders.items()}
        return inputs, masks

    def forward(self, idx=None) -> torch.Tensor:
        """Profile vectors of the given rows (all rows when ``idx`` is None).

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor, shape (m, dim)
        """
        inputs, masks = self._inputs(idx)
        return self.fusion_module(inputs, masks)

    def mask(self, idx=None) -> torch.Tensor:
        """Rows with at least one modality present.

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        torch.Tensor of bool, shape (m,)
        """
        with torch.no_grad():
            _, masks = self._inputs(idx)
        return torch.stack(list(masks.values()), dim=1).any(dim=1)

    def modality_weights(self, idx=None) -> dict[str, torch.Tensor]:
        """How much each modality contributes to each row's vector (for explanations).

        Parameters
        ----------
        idx : array-like of int, optional

        Returns
        -------
        dict of str -> torch.Tensor (m,)
        """
        inputs, masks = self._inputs(idx)
        return self.fusion_module.modality_weights(inputs, masks)

class UserProfileEncoder(ProfileEncoder):
    """A :class:`ProfileEncoder` for users: age, gender, occupation, free-text profile...

    Typical use with MovieLens-style user features::

        uf = UserFeatures.from_pandas(users, "user", categorical=["gender", "occupation"],
                                      numeric=["age"], text=["gender", "occupation"])
        enc = UserProfileEncoder.from_features(uf, dim=64, text_encoder=TextEncoder(),
                                               vocab=train.user_vocab, random_state=0)
        vectors = enc()          # [n_users, 64]
    """


class ItemProfileEncoder(ProfileEncoder):
    """A :class:`ProfileEncoder` for items: genres, year, description text, image vectors..."""
