"""HybridRecommender's configuration: its parameters checked and parsed in one place.

The constructor keeps the user's values as given (scikit-learn style); everything the
rest of the model reads from them goes through here and comes out typed:

- :func:`parse_spec` turns ``item_encoders`` / ``user_encoders`` / ``fusion`` /
  ``scorer`` (names, lists, ``{"kind": ...}`` dicts, :class:`TextEncoder` entries) into a
  frozen :class:`HybridSpec`;
- :meth:`HybridSpec.resolve` fixes the modalities of one fit against its features;
- :func:`validate_params` checks every other parameter;
- :class:`TrainSettings` and :class:`UserOptions` carry the numbers the training and
  the user tower read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_choice, check_int, check_number
from ..encoders import TextEncoder
from ..exceptions import DataError, ModelFormatError
from ..fusion import FUSIONS
from ..scorers import SCORERS
from ..training import LOSSES, OPTIMIZERS, SAMPLERS, SCHEDULES
from ._holdout import check_validation_fraction

ITEM_MODALITIES = ("id", "text", "features")
USER_MODALITIES = ("history", "id", "features")
POOLINGS = ("sqrt", "mean")
HISTORY_ACTIVATIONS = ("linear", "tanh")
FUSION_KINDS = (*FUSIONS, "residual")


def spec_list(spec, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Normalise an encoders parameter to an ordered dict name -> option."""
    if isinstance(spec, str):
        spec = [spec]
    out: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        items = []
        for x in spec:
            if isinstance(x, TextEncoder):
                items.append(("text", x))
            elif isinstance(x, str):
                items.append((x, None))
            else:
                raise DataError(f"{what} entries must be names {list(allowed)} or a TextEncoder, "
                                f"got {x!r}")
    else:
        raise DataError(f"{what} must be 'auto', a list of {list(allowed)} or a dict, got "
                        f"{spec!r}")
    for name, opt in items:
        if name not in allowed:
            raise DataError(f"{what}: unknown modality {name!r}; expected some of {list(allowed)}")
        if name in out:
            raise DataError(f"{what}: modality {name!r} given twice")
        if name == "text" and opt is not None and not isinstance(opt, (TextEncoder, str)):
            raise DataError(f"{what}['text'] must be a TextEncoder or a model name, got {opt!r}")
        if name != "text" and opt is not None and not isinstance(opt, Mapping):
            raise DataError(f"{what}[{name!r}] must be None or a dict of options, got {opt!r}")
        out[name] = opt
    if not out:
        raise DataError(f"{what} is empty; give at least one of {list(allowed)}")
    return out


def kind_and_options(spec, table: Mapping[str, Any], what: str) -> tuple[str, dict]:
    """``"name"`` or ``{"kind": "name", **options}`` -> (name, options)."""
    if isinstance(spec, str):
        kind, opts = spec, {}
    elif isinstance(spec, Mapping):
        opts = dict(spec)
        kind = opts.pop("kind", None)
        if kind is None:
            raise DataError(f"{what} given as a dict needs a 'kind' key (one of {sorted(table)})")
    else:
        raise DataError(f"{what} must be a name {sorted(table)} or a dict with 'kind', got "
                        f"{spec!r}")
    if kind not in table:
        raise DataError(f"{what} must be one of {sorted(table)}, got {kind!r}")
    return kind, opts


def _is_auto(spec) -> bool:
    return isinstance(spec, str) and spec == "auto"


@dataclass(frozen=True)
class ComponentSpec:
    """A fusion or scorer choice: its kind and its options."""

    kind: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HybridSpec:
    """The parsed architecture parameters (``None`` modalities: ``"auto"``)."""

    item: dict | None
    user: dict | None
    fusion: ComponentSpec
    scorer: ComponentSpec

    @property
    def text_option(self) -> Any:
        """The ``"text"`` entry of the item modalities (a TextEncoder, a name or None)."""
        return (self.item or {}).get("text")

    def resolve(self, item_features, user_features) -> tuple[dict, dict]:
        """The item and user modalities of one fit (``"auto"`` decided by the features).

        Raises :class:`DataError` when a modality asks for features that are absent.
        """
        if self.item is None:
            item: dict[str, Any] = {"id": None}
            if item_features is not None and item_features.has_text:
                item["text"] = None
        else:
            item = dict(self.item)
        user = {"history": None} if self.user is None else dict(self.user)
        if "text" in item and (item_features is None or not item_features.has_text):
            raise DataError("item_encoders has 'text' but fit() got no item_features with a text "
                            "block; pass item_features=ItemFeatures(..., text=...)")
        if "features" in item and not _has_feature_blocks(item_features):
            raise DataError("item_encoders has 'features' but the item_features have no "
                            "categorical, multi-hot or numeric block")
        if "features" in user and not _has_feature_blocks(user_features):
            raise DataError("user_encoders has 'features' but fit() got no user_features with a "
                            "categorical, multi-hot or numeric block")
        return item, user


def _has_feature_blocks(features) -> bool:
    return features is not None and bool(
        features.categorical or features.multi_hot or features.numeric)


def parse_spec(model) -> HybridSpec:
    """The architecture parameters of ``model`` parsed (raises :class:`DataError`)."""
    item = (None if _is_auto(model.item_encoders)
            else spec_list(model.item_encoders, ITEM_MODALITIES, "item_encoders"))
    user = (None if _is_auto(model.user_encoders)
            else spec_list(model.user_encoders, USER_MODALITIES, "user_encoders"))
    fusion = ComponentSpec(*kind_and_options(model.fusion, FUSION_KINDS, "fusion"))
    scorer = ComponentSpec(*kind_and_options(model.scorer, SCORERS, "scorer"))
    return HybridSpec(item, user, fusion, scorer)


def has_history_modality(model) -> bool:
    """Whether ``user_encoders`` has "history" (True when it cannot be parsed yet)."""
    spec = model.user_encoders
    if _is_auto(spec):
        return True
    try:
        return "history" in spec_list(spec, USER_MODALITIES, "user_encoders")
    except DataError:
        return True


def validate_params(model) -> None:
    """Check every HybridRecommender parameter (:class:`DataError` naming the bad one)."""
    parse_spec(model)
    check_choice("loss", model.loss, tuple(LOSSES))
    check_int("dim", model.dim, low=1)
    check_choice("negative_sampler", model.negative_sampler, SAMPLERS)
    check_int("n_negatives", model.n_negatives, low=1)
    check_int("epochs", model.epochs, low=0)
    if model.batch_size is not None:
        check_int("batch_size", model.batch_size, low=1)
    check_number("learning_rate", model.learning_rate, low=0, low_inclusive=False)
    check_number("weight_decay", model.weight_decay, low=0)
    check_choice("optimizer", model.optimizer, OPTIMIZERS)
    check_choice("lr_schedule", model.lr_schedule, SCHEDULES)
    check_number("warmup", model.warmup, low=0)
    if model.clip_grad_norm is not None:
        check_number("clip_grad_norm", model.clip_grad_norm, low=0, low_inclusive=False)
    check_number("history_dropout", model.history_dropout, low=0, high=1,
                 high_inclusive=False)
    check_number("id_dropout", model.id_dropout, low=0, high=1, high_inclusive=False)
    check_choice("history_pooling", model.history_pooling, POOLINGS)
    if model.patience is not None:
        check_int("patience", model.patience, low=1)
    check_validation_fraction(model.validation_fraction)
    check_int("eval_every", model.eval_every, low=1)
    if model.max_history is not None:
        check_int("max_history", model.max_history, low=1)
    if not isinstance(model.tie_history, (bool, np.bool_)):
        raise DataError(f"tie_history must be True or False, got {model.tie_history!r}")
    check_choice("history_activation", model.history_activation, HISTORY_ACTIVATIONS)
    _dp_spec(model)


@dataclass(frozen=True)
class UserOptions:
    """How the user tower reads a history (read from the parameters at each use)."""

    pooling: str = "sqrt"
    activation: str = "tanh"
    max_history: int = 200

    @classmethod
    def of(cls, model) -> UserOptions:
        return cls(model.history_pooling, model.history_activation,
                   int(model.max_history or 200))


@dataclass(frozen=True)
class TrainSettings:
    """The training parameters of one fit, typed."""

    loss: str
    negative_sampler: str
    n_negatives: int
    batch_size: int | None
    dim: int
    history_dropout: float
    id_dropout: Any
    epochs: int
    optimizer: str
    learning_rate: float
    weight_decay: float
    clip_grad_norm: float | None
    lr_schedule: str
    warmup: float
    eval_every: int
    patience: int | None
    verbose: bool
    dp: Any = None  # a checked maasrec.privacy.dp.DPSpec, or None

    @classmethod
    def of(cls, model) -> TrainSettings:
        return cls(
            loss=model.loss, negative_sampler=model.negative_sampler,
            n_negatives=int(model.n_negatives),
            batch_size=None if model.batch_size is None else int(model.batch_size),
            dim=int(model.dim), history_dropout=float(model.history_dropout),
            id_dropout=model.id_dropout, epochs=int(model.epochs),
            optimizer=model.optimizer, learning_rate=float(model.learning_rate),
            weight_decay=float(model.weight_decay), clip_grad_norm=model.clip_grad_norm,
            lr_schedule=model.lr_schedule, warmup=float(model.warmup),
            eval_every=int(model.eval_every), patience=model.patience,
            verbose=bool(model.verbose), dp=_dp_spec(model))


def _dp_spec(model):
    """The checked ``dp`` of ``model`` (None: no differential privacy)."""
    if getattr(model, "dp", None) is None:
        return None
    from ..privacy.dp import dp_model_check

    return dp_model_check(model)


def fit_config(spec: HybridSpec, scoring, item_cfg: dict, user_cfg: dict, *,
               shape: tuple[int, int], dim: int, seed: int, tie_history: bool,
               item_bias: bool, loss: str) -> dict:
    """``config_``: the JSON description the fitted modules are (re)built from.

    ``scoring`` is the scorer kind's :class:`~._hybrid_scorers.Scoring`; ``item_cfg`` and
    ``user_cfg`` the modalities' configs of the fit; ``shape`` (users, items).
    """
    n_users, n_items = shape
    tower_user_cfg = scoring.user_tower_config(user_cfg)
    # an untied history: the pooled user input comes from a second item tower
    # (same modalities, own weights), not from the scored item vectors
    history_cfg = ({k: dict(v) for k, v in item_cfg.items()}
                   if not tie_history and "history" in tower_user_cfg else {})
    return {
        "n_items": n_items, "n_users": n_users, "dim": dim,
        "item_tower": item_cfg, "user_tower": tower_user_cfg,
        "history_tower": history_cfg,
        "fusion": spec.fusion.kind, "fusion_options": spec.fusion.options,
        "scorer": spec.scorer.kind, "scorer_options": scoring.scorer_options(
            spec.scorer.options, dim=dim, seed=seed, item_bias=item_bias, n_items=n_items,
            loss=loss), "seed": seed,
    }


def check_loaded_config(where: str, cfg: Any, n_items: int, n_users: int) -> tuple[dict, int]:
    """Check a loaded ``config_`` against the vocabularies; (config, dim).

    Raises :class:`~maasrec.exceptions.ModelFormatError` naming the bad entry.
    """
    from .._loadcheck import check_json_int

    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{where}: 'config_' is missing or not a JSON object")
    # the modules are rebuilt from config_: its sizes must agree with the vocabularies
    # (items added after fit have no id row, so the towers may hold fewer items)
    check_json_int(where, "config_.n_items", cfg.get("n_items"), low=1, high=n_items)
    check_json_int(where, "config_.n_users", cfg.get("n_users"), low=n_users, high=n_users)
    d = check_json_int(where, "config_.dim", cfg.get("dim"), low=1)
    if cfg.get("scorer") not in SCORERS:
        raise ModelFormatError(f"{where}: config_.scorer {cfg.get('scorer')!r} is not one "
                               f"of {sorted(SCORERS)}")
    opts = cfg.get("scorer_options")
    if not isinstance(opts, dict):
        raise ModelFormatError(f"{where}: config_.scorer_options is not a JSON object")
    if opts.get("n_items") is not None:
        check_json_int(where, "config_.scorer_options.n_items", opts["n_items"],
                       low=n_items, high=n_items)
    for key in ("item_tower", "user_tower", "history_tower", "fusion_options"):
        if not isinstance(cfg.get(key, {}), dict):
            raise ModelFormatError(f"{where}: config_.{key} is not a JSON object")
    return cfg, d
