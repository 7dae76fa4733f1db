"""HybridRecommender's towers: modalities -> item vectors, histories -> user vectors.

- :class:`Tower`: one ``nn.Module`` per side (item, user, history item tower) fusing
  the present modalities (id embedding, frozen text vectors, features, pooled history);
- :class:`ItemEncoder`: a tower together with the fit-time item inputs (text vectors,
  which items have an id) -> item vectors, with id dropout in training;
- :class:`UserEncoder`: history pairs, user ids and features -> the user tower's vector,
  or the padded history that the attention scorer reads;
- :func:`build_modules`: the towers and scorer of a ``config_`` (fit and load);
- the text and feature inputs of items (:func:`encode_texts`, :func:`new_item_inputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.features import UserFeatures
from ..encoders import FeatureEncoder, IdEmbedding, TextEncoder
from ..exceptions import DataError, ModelFormatError
from ..fusion import make_fusion
from ..scorers import make_scorer
from ._hybrid_config import UserOptions

logger = logging.getLogger("maasrec.neural.hybrid")


def sub_seed(random_state: int | None, k: int) -> int | None:
    """The ``k``-th seed derived from ``random_state`` (None stays None)."""
    return None if random_state is None else (random_state + 7919 * k) % (2**31)


class Tower(nn.Module):
    """Modalities -> one ``[m, dim]`` vector per row (fusion of the present modalities).

    ``config`` (JSON) names the modalities: ``{"id": {}, "text": {"input_dim": 384},
    "features": <FeatureEncoder config without n/dim>, "history": {}}``. The "history"
    and "text" modalities arrive as vectors (pooled item vectors, frozen text vectors);
    "id" and "features" are looked up by row. One modality of the output size passes
    through a linear layer (id: as is), several are fused.
    """

    def __init__(self, n: int, dim: int, config: Mapping[str, Any], fusion: str,
                 fusion_options: Mapping[str, Any], random_state: int | None):
        super().__init__()
        self.n, self.dim = int(n), int(dim)
        self.config = {k: dict(v) for k, v in config.items()}
        self.fusion_kind = fusion
        self.fusion_options = dict(fusion_options)
        self.random_state = random_state
        self.encoders = nn.ModuleDict()
        dims: dict[str, int] = {}
        for k, (name, cfg) in enumerate(self.config.items()):
            seed = sub_seed(random_state, k + 1)
            if name == "id":
                self.encoders["id"] = IdEmbedding(self.n, self.dim, random_state=seed,
                                                  init_std=cfg.get("init_std"))
                dims["id"] = self.dim
            elif name == "features":
                self.encoders["features"] = FeatureEncoder(self.n, self.dim, random_state=seed,
                                                           **cfg)
                dims["features"] = self.dim
            elif name in ("text", "history"):
                dims[name] = int(cfg.get("input_dim", self.dim))
            else:  # pragma: no cover - configs are built by HybridRecommender
                raise ModelFormatError(f"unknown modality {name!r} in a tower config")
        self.input_dims = dims
        self.fusion = None
        self.single = None
        self.residual = None
        if fusion == "residual" and len(dims) > 1:
            self._build_residual(dims, random_state)
        elif len(dims) == 1:
            name, d = next(iter(dims.items()))
            if name != "id":
                with torch.random.fork_rng(devices=[]):
                    if random_state is not None:
                        torch.manual_seed(random_state)
                    self.single = nn.Linear(d, self.dim)
        else:
            self.fusion = make_fusion(fusion, dims, self.dim, random_state=random_state,
                                      **self.fusion_options)

    def _build_residual(self, dims: dict[str, int], random_state: int | None) -> None:
        opts = dict(self.fusion_options)
        self.content_dropout = float(opts.pop("dropout", 0.0))
        init_scale = float(opts.pop("init_scale", 1.0))
        if opts:
            raise DataError(f"fusion 'residual' takes options 'dropout' and 'init_scale', "
                            f"got {sorted(opts)}")
        with torch.random.fork_rng(devices=[]):
            if random_state is not None:
                torch.manual_seed(random_state)
            self.residual = nn.ModuleDict()
            for name, d in dims.items():
                if name in ("text", "history"):
                    lin = nn.Linear(d, self.dim)
                    with torch.no_grad():
                        lin.weight.mul_(init_scale)
                        lin.bias.zero_()
                    self.residual[name] = lin
                elif name == "features":
                    self.residual[name] = nn.Identity()

    def forward(self, inputs: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fuse ``inputs`` (name -> [m, d_name]) with row masks (name -> [m] bool)."""
        if self.residual is not None:
            return self._residual(inputs, masks)
        if self.fusion is not None:
            return self.fusion(dict(inputs), dict(masks))
        name = next(iter(self.input_dims))
        x = inputs[name]
        if self.single is not None:
            x = self.single(x)
        m = masks.get(name)
        if m is not None:
            x = torch.where(m.unsqueeze(1), x, 0.0)
        return x

    def _residual(self, inputs, masks) -> torch.Tensor:
        """``id + sum_m W_m x_m`` over the present modalities (content dropout in training)."""
        out = None
        for name in self.input_dims:
            x = inputs[name]
            if name != "id":
                x = self.residual[name](x)
                if self.training and self.content_dropout > 0:
                    x = nn.functional.dropout(x, self.content_dropout, training=True)
            m = masks.get(name)
            if m is not None:
                x = torch.where(m.unsqueeze(1), x, 0.0)
            out = x if out is None else out + x
        return out

    def lookup(self, rows: torch.Tensor | None) -> tuple[dict, dict]:
        """Inputs and masks of the id/features modalities for table rows ``rows``.

        ``rows=None``: every row; the id modality is then the embedding table itself (no
        gather: neither a copy of the table forward nor a scatter into a zero table
        backward, the same values and gradients).
        """
        inputs, masks = {}, {}
        if "id" in self.encoders:
            inputs["id"] = self.encoders["id"](rows)
        if "features" in self.encoders:
            enc = self.encoders["features"]
            inputs["features"] = enc(rows)
            masks["features"] = enc.mask(rows)
        return inputs, masks


def build_modules(cfg: Mapping[str, Any]) -> dict[str, nn.Module]:
    """The towers and scorer described by a ``config_`` (fresh weights), by attribute."""
    rs, d = cfg["seed"], cfg["dim"]
    out: dict[str, nn.Module] = {"item_tower_": Tower(
        cfg["n_items"], d, cfg["item_tower"], cfg["fusion"], cfg["fusion_options"],
        sub_seed(rs, 10))}
    if cfg["user_tower"]:
        out["user_tower_"] = Tower(cfg["n_users"], d, cfg["user_tower"], cfg["fusion"],
                                   cfg["fusion_options"], sub_seed(rs, 20))
    if cfg.get("history_tower"):
        out["history_tower_"] = Tower(cfg["n_items"], d, cfg["history_tower"], cfg["fusion"],
                                      cfg["fusion_options"], sub_seed(rs, 30))
    out["scorer_"] = make_scorer(cfg["scorer"], **cfg["scorer_options"])
    return out


def csr_pairs(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch row, column, position in ``indices``) of every entry of CSR rows ``rows``."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts
    flat = torch.repeat_interleave(starts - offsets, counts) + torch.arange(
        total, device=indptr.device)
    batch_rows = torch.repeat_interleave(torch.arange(len(rows), device=indptr.device), counts)
    return batch_rows, indices[flat], flat


def csr_rows(H) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every entry of a scipy CSR matrix, as int64 tensors."""
    indptr = torch.from_numpy(H.indptr.astype(np.int64))
    indices = torch.from_numpy(H.indices.astype(np.int64))
    rows, cols, _ = csr_pairs(indptr, indices, torch.arange(H.shape[0]))
    return rows, cols


class ItemEncoder:
    """An item tower with the fit-time inputs of the items -> item vectors.

    Parameters
    ----------
    tower : Tower
    has_id : torch.Tensor of bool, shape (n_items,)
        Items whose id embedding is used.
    text, text_mask : torch.Tensor, optional
        The frozen text vectors of the items and which items have text.
    id_dropout : float
        Share of the id embeddings hidden in a training step (when ``drop`` is given).
    """

    def __init__(self, tower: Tower, has_id: torch.Tensor, text: torch.Tensor | None,
                 text_mask: torch.Tensor | None, id_dropout: Any):
        self.tower, self.has_id = tower, has_id
        self.text, self.text_mask = text, text_mask
        self.id_dropout = id_dropout
        # every item has its id vector (the usual fit): no mask, no where() over the table
        self.all_ids = bool(has_id.all())

    def __call__(self, rows: torch.Tensor | None = None, *,
                 drop: torch.Generator | None = None) -> torch.Tensor:
        """Vectors of all items, or of ``rows``; ``drop`` applies id dropout."""
        tower = self.tower
        has_id = self.has_id if rows is None else self.has_id[rows]
        masked = not self.all_ids
        if drop is not None and self.id_dropout > 0 and "id" in tower.input_dims \
                and len(tower.input_dims) > 1:
            keep = torch.rand(has_id.shape, generator=drop, device=has_id.device) \
                >= self.id_dropout
            has_id, masked = has_id & keep, True
        text = tmask = None
        if self.text is not None:
            text = self.text if rows is None else self.text[rows]
            tmask = self.text_mask if rows is None else self.text_mask[rows]
        if rows is None and "features" in tower.encoders:
            rows = torch.arange(tower.n, device=self.has_id.device)
        inputs, masks = tower.lookup(rows)
        if "id" in inputs and masked:
            masks["id"] = has_id
        if "text" in tower.input_dims:
            inputs["text"] = text
            masks["text"] = tmask
        return tower(inputs, masks)


class UserEncoder:
    """History pairs, ids and features of users -> the user tower's output.

    Parameters
    ----------
    tower : Tower or None
        The user tower (None: the user side has no modality besides an attended history).
    options : UserOptions
    """

    def __init__(self, tower: Tower | None, options: UserOptions):
        self.tower, self.options = tower, options

    def pool(self, V: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, b: int,
             weights: torch.Tensor | None = None, counts: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled history vectors ``[b, d]`` and a has-history mask.

        ``rows`` must be grouped (non-decreasing), as :func:`csr_pairs` makes them.
        """
        present = torch.bincount(rows, minlength=b)
        offsets = torch.cumsum(present, 0) - present
        pooled = torch.nn.functional.embedding_bag(
            cols, V, offsets, mode="sum", per_sample_weights=weights)
        if counts is None:
            counts = present.to(V.dtype)
        return self.normalise(pooled, counts), counts > 0

    def normalise(self, summed: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """A sum of ``counts`` history vectors divided by ``sqrt(n)`` or ``n``."""
        norm = counts.sqrt() if self.options.pooling == "sqrt" else counts
        return summed / norm.clamp(min=1.0).unsqueeze(1)

    def static(self, pooled, has_hist, user_rows, id_keep):
        """The user tower over history/id/features; None when it has no modality."""
        tower = self.tower
        if tower is None:
            return None
        b = len(user_rows)
        known = user_rows >= 0
        rows = user_rows.clamp(min=0)
        inputs, masks = tower.lookup(rows)
        if "id" in inputs:
            masks["id"] = known if id_keep is None else known & id_keep
        if "features" in inputs:
            masks["features"] = masks["features"] & known
        if "history" in tower.input_dims:
            if pooled is not None and self.options.activation == "tanh":
                pooled = torch.tanh(pooled)
            inputs["history"] = pooled if pooled is not None else torch.zeros(
                b, tower.input_dims["history"], device=rows.device)
            masks["history"] = has_hist if has_hist is not None else torch.zeros(
                b, dtype=torch.bool, device=rows.device)
        return tower(inputs, masks)

    def pools_history(self) -> bool:
        """Whether the user tower reads a pooled history."""
        return self.tower is not None and "history" in self.tower.input_dims

    def attended(self, V, rows, cols, b, static):
        """(history [b, L, d], mask [b, L][, static]) with the last ``max_history`` items."""
        L_max = self.options.max_history
        counts = torch.bincount(rows, minlength=b)
        # position from the end within each row (cols arrive grouped by row, in order)
        starts = torch.cumsum(counts, 0) - counts
        pos_from_end = counts[rows] - 1 - (torch.arange(len(rows), device=rows.device)
                                           - starts[rows])
        keep = pos_from_end < L_max
        L = int(min(L_max, int(counts.max()) if len(counts) and b else 1)) or 1
        slot = (L - 1 - pos_from_end[keep])
        H = torch.zeros(b, L, V.shape[1], device=V.device, dtype=V.dtype)
        M = torch.zeros(b, L, dtype=torch.bool, device=V.device)
        H[rows[keep], slot] = V[cols[keep]]
        M[rows[keep], slot] = True
        return (H, M) if static is None else (H, M, static)

    def id_keep(self, b: int, g: torch.Generator, device, id_dropout) -> torch.Tensor | None:
        """Which users keep their id embedding in a training step (None: all)."""
        tower = self.tower
        if id_dropout <= 0 or tower is None or "id" not in tower.input_dims \
                or len(tower.input_dims) < 2:
            return None
        return torch.rand(b, generator=g, device=device) >= id_dropout


def encode_texts(enc: TextEncoder, feats, *, verbose: bool) -> tuple[np.ndarray, np.ndarray]:
    """Frozen text vectors ``[n, width]`` of the items of ``feats`` and their text mask."""
    mask = np.asarray(feats.text_mask, dtype=bool)
    texts = [str(t) for t in feats.text[mask]]
    width = enc.hidden_size
    out = np.zeros((feats.n, width), dtype=np.float32)
    if texts:
        logger.info("HybridRecommender: encoding %d item texts with %s (cached on disk)",
                    len(texts), enc.model if isinstance(enc.model, str) else "a model")
        out[mask] = enc.encode_base(texts, show_progress=bool(verbose))
    if not mask.all():
        logger.info("HybridRecommender: %d of %d items have no text (masked)",
                    int((~mask).sum()), len(mask))
    return out, mask


def feature_config(features, dim: int, options: Mapping | None) -> dict:
    """The JSON config of a FeatureEncoder of ``features`` (without n, dim, seed)."""
    cfg = FeatureEncoder.from_features(features, dim, **(options or {})).get_config()
    for k in ("n", "dim", "random_state"):
        cfg.pop(k)
    return cfg


def item_config(item_spec: Mapping[str, Any], feats, dim: int,
                encode_texts: Callable[[], tuple[np.ndarray, np.ndarray]]
                ) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """The item modalities' configs; the (text vectors, text mask) of the items from
    ``encode_texts()`` when "text" is one of them, else None."""
    item_cfg: dict[str, dict] = {}
    text = None
    for name, opt in item_spec.items():
        if name == "id":
            item_cfg["id"] = {}
        elif name == "text":
            text = encode_texts()
            item_cfg["text"] = {"input_dim": int(text[0].shape[1])}
        elif name == "features":
            item_cfg["features"] = feature_config(feats, dim, opt)
    return item_cfg, text


def user_config(user_spec: Mapping[str, Any], user_features, user_vocab, dim: int
                ) -> tuple[dict, Any]:
    """The user modalities' configs and the user features aligned to ``user_vocab``."""
    user_cfg: dict[str, dict] = {}
    user_feats = None
    for name, opt in user_spec.items():
        if name == "history":
            user_cfg["history"] = {"input_dim": dim}
        elif name == "id":
            user_cfg["id"] = {}
        elif name == "features":
            if not isinstance(user_features, UserFeatures):
                raise DataError(f"user_features must be a UserFeatures, got "
                                f"{type(user_features).__name__}")
            user_feats = user_features.align(user_vocab)
            user_cfg["features"] = feature_config(user_feats, dim, opt)
    return user_cfg, user_feats


def with_feature_data(built: dict[str, nn.Module], features: Mapping[str, tuple], dim: int
                      ) -> dict[str, nn.Module]:
    """Give the towers' feature encoders their data (and numeric statistics).

    ``features``: side ("item", "user") -> (aligned features, FeatureEncoder options).
    Each new encoder takes its placeholder's seed: the same initial weights as a model
    rebuilt from ``config_``.
    """
    for name, side in (("item_tower_", "item"), ("history_tower_", "item"),
                       ("user_tower_", "user")):
        tower = built.get(name)
        if tower is not None and "features" in tower.encoders:
            fts, opts = features[side]
            tower.encoders["features"] = FeatureEncoder.from_features(
                fts, dim, random_state=tower.encoders["features"].random_state,
                **(opts or {}))
    return built


def new_item_features(tower: Tower, feats, n_new: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature vectors and mask of new items through ``tower``'s trained encoder."""
    old = tower.encoders["features"]
    cfg = old.get_config()
    cfg["n"] = n_new
    tmp = FeatureEncoder(**cfg)
    state = {k: v for k, v in old.state_dict().items()
             if not k.startswith(("cat_codes_", "bag_indptr_", "bag_indices_",
                                  "numeric_values"))}
    tmp.load_state_dict(state, strict=False)
    tmp.set_data(feats)
    tmp.eval()
    with torch.no_grad():
        return tmp(), tmp.mask()


def new_item_vectors(towers: list[Tower], feats, n_new: int, inputs: dict, masks: dict,
                     content: list[str]) -> tuple[list[np.ndarray], torch.Tensor]:
    """Vectors of ``n_new`` new items through each of ``towers`` (eval mode).

    ``inputs``/``masks`` hold their id (missing) and text inputs; each tower's trained
    feature encoder adds their features. Also returns which new items have any of the
    ``content`` modalities.
    """
    features = [new_item_features(t, feats, n_new) if "features" in t.encoders else None
                for t in towers]
    if features[0] is not None:
        inputs["features"], masks["features"] = features[0]
    present = torch.zeros(n_new, dtype=torch.bool)
    for name in content:
        if name in masks:
            present |= masks[name]
    out = []
    with torch.no_grad():
        for tower, fts in zip(towers, features):
            tower.eval()
            if fts is not None:
                inputs["features"], masks["features"] = fts
            out.append(tower(inputs, masks).float().numpy())
    return out, present
