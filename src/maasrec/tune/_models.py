"""Which models :func:`maasrec.tune.tune` searches, and with which spaces."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import DataError
from .spaces import Param, parse_space, search_space_of

__all__ = ["AUTO_MODELS", "KNOWN_MODELS", "Candidate", "resolve_models"]

#: ``models="auto"``: four classical families that lead on different kinds of data
#: (item-item closed form, neighbourhood, factorisation by alternating least squares,
#: truncated SVD), the popularity floor, and one neural model (Mult-VAE, the family that
#: leads on sparse implicit data). Chosen for general implicit-feedback data, not for one
#: data set; none needs item text or timestamps. The cheap ones come first: each
#: model's defaults are the first trial of its family, in this order.
AUTO_MODELS = ("Popularity", "ItemKNN", "PureSVD", "ALS", "EASE", "MultVAE")

#: Model names :func:`~maasrec.tune.tune` resolves, and the module of each.
KNOWN_MODELS = {
    "Popularity": "maasrec.models", "ItemKNN": "maasrec.models", "EASE": "maasrec.models",
    "PureSVD": "maasrec.models", "ALS": "maasrec.models", "BPRMF": "maasrec.models",
    "HybridRecommender": "maasrec.neural", "NeuMF": "maasrec.neural",
    "SequentialRecommender": "maasrec.neural", "MultVAE": "maasrec.neural.vae",
    "LightGCN": "maasrec.neural.lightgcn", "RecVAE": "maasrec.neural.recvae",
    "TextEASE": "maasrec.models",
}


@dataclass
class Candidate:
    """One model family of a search.

    Attributes
    ----------
    name : str
        The value of the study's ``model`` parameter (the class name).
    cls : type
    base : dict
        Parameters every trial starts from (those of a model instance passed in).
    params : list of Param
        What is searched (or fixed).
    """

    name: str
    cls: type
    base: dict = field(default_factory=dict)
    params: list[Param] = field(default_factory=list)

    def searched(self) -> dict[str, str]:
        """``{parameter: description}`` of the space."""
        return {p.name: p.describe() for p in self.params}


def _class_of(spec: Any) -> tuple[type, dict]:
    """(class, base parameters) of a name, a class or an instance."""
    from ..base import Recommender

    if isinstance(spec, str):
        lower = {k.lower(): k for k in KNOWN_MODELS}
        name = lower.get(spec.strip().lower())
        if name is None:
            raise DataError(f"unknown model {spec!r}; known models are {sorted(KNOWN_MODELS)} "
                            f"(or pass a Recommender class or instance)")
        return getattr(importlib.import_module(KNOWN_MODELS[name]), name), {}
    if isinstance(spec, type) and issubclass(spec, Recommender):
        return spec, {}
    if isinstance(spec, Recommender):
        return type(spec), spec.get_params(deep=False)
    raise DataError(f"models must name maasrec recommenders (a name, a class or an "
                    f"instance), got {spec!r}")


def resolve_models(models: Any) -> list[Candidate]:
    """The candidates of ``models``: ``"auto"``, a list, or a dict ``{model: space}``.

    Parameters
    ----------
    models : "auto", sequence or mapping
        A list of names, classes or instances (an instance's parameters are the
        starting point of its trials), or a dict from those to a search space (None:
        the declared space).

    Returns
    -------
    list of Candidate

    Raises
    ------
    DataError
        An unknown name, an empty list, a model given twice, or an invalid space.
    """
    if isinstance(models, str):
        if models != "auto":
            models = [models]
        else:
            models = list(AUTO_MODELS)
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, (list, tuple)):
        items = [(m, None) for m in models]
    else:
        items = [(models, None)]
    if not items:
        raise DataError("models must name at least one model (or be 'auto')")
    out: list[Candidate] = []
    for spec, space in items:
        cls, base = _class_of(spec)
        if any(c.cls is cls for c in out):
            raise DataError(f"model {cls.__name__} is given twice in models")
        space = search_space_of(cls) if space is None else space
        params = parse_space(space, cls)
        out.append(Candidate(cls.__name__, cls, base, params))
    return out


def default_params(cand: Candidate) -> dict[str, Any]:
    """The family's own defaults (its class's, updated by ``cand.base``) as study
    parameters (``"EASE.l2"``): those its space can hold; a choice of other than plain
    values by its ``repr``."""
    defaults = cand.cls(**cand.base).get_params(deep=False)
    params: dict[str, Any] = {}
    for p in cand.params:
        v = defaults.get(p.name)
        if p.kind == "choice" and v in p.choices:
            params[f"{cand.name}.{p.name}"] = v if all(
                c is None or isinstance(c, (bool, int, float, str)) for c in p.choices) \
                else repr(v)
        elif p.kind in ("float", "int") and isinstance(v, (int, float)) \
                and not isinstance(v, bool) and p.low <= v <= p.high:
            params[f"{cand.name}.{p.name}"] = v
    return params
