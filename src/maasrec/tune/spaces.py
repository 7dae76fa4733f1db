"""Search spaces of :func:`maasrec.tune.tune`: how they are written, checked and sampled.

A search space maps a constructor parameter of a model to what the search may try:

- ``("float", low, high)`` / ``("float", low, high, "log")``: a real number in
  ``[low, high]`` (log-uniform with ``"log"``, which needs ``low > 0``);
- ``("int", low, high)`` / ``("int", low, high, "log")``: an integer in ``[low, high]``;
- ``("choice", [v1, v2, ...])``: one of the values (any values: tuples such as
  ``hidden_dims=(600,)`` are fine);
- ``("fixed", value)`` or a plain scalar (number, string, bool, None): not searched, always
  this value;
- an ``optuna.distributions`` object (``FloatDistribution``, ``IntDistribution``,
  ``CategoricalDistribution``).

Every classical model declares its space next to its class, as the class attribute
``search_space`` (plain literals: the models do not import Optuna). The neural models'
spaces are in :data:`DEFAULT_SPACES` of this module until they move next to their classes;
a class attribute ``search_space`` always wins. Pass ``models={Model: space}`` to
:func:`~maasrec.tune.tune` to override one (parameters left out are not searched).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import DataError

__all__ = ["DEFAULT_SPACES", "Param", "parse_space", "search_space_of"]

_KINDS = ("float", "int", "choice", "fixed")

#: Spaces registered by class name for classes that declare none (your own models: add
#: ``DEFAULT_SPACES["MyModel"] = {...}``). A class attribute ``search_space`` wins; every
#: maasrec model declares its own next to its class.
DEFAULT_SPACES: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Param:
    """One parameter of a search space.

    Attributes
    ----------
    name : str
        The constructor parameter.
    kind : {"float", "int", "choice", "fixed"}
    low, high : number, optional
        Bounds (``float``/``int``).
    log : bool
        Log-uniform (``float``/``int``).
    choices : tuple, optional
        The values of a ``choice``.
    value : object
        The value of a ``fixed`` parameter.
    """

    name: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()
    value: Any = None

    def suggest(self, trial: Any, prefix: str) -> Any:
        """The value ``trial`` (an ``optuna.Trial``) picks, stored as ``prefix.name``."""
        key = f"{prefix}.{self.name}"
        if self.kind == "fixed":
            return self.value
        if self.kind == "float":
            return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)
        if all(_plain(c) for c in self.choices):
            return trial.suggest_categorical(key, list(self.choices))
        # Optuna stores only None/bool/int/float/str: pick the value's text, map it back
        labels = [repr(c) for c in self.choices]
        return self.choices[labels.index(trial.suggest_categorical(key, labels))]

    def describe(self) -> str:
        """A short text: ``"float [1, 1e+05] log"``, ``"choice [64, 128]"``, ``"= 10"``."""
        if self.kind == "fixed":
            return f"= {self.value!r}"
        if self.kind == "choice":
            return f"choice {list(self.choices)!r}"
        return f"{self.kind} [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _number(name: str, v: Any, integer: bool) -> Any:
    ok = isinstance(v, numbers.Integral) if integer else isinstance(v, numbers.Real)
    if isinstance(v, bool) or not ok or not math.isfinite(float(v)):
        what = "an integer" if integer else "a finite number"
        raise DataError(f"search space of {name!r}: bounds must be {what}, got {v!r}")
    return int(v) if integer else float(v)


def _from_optuna(name: str, spec: Any) -> Param | None:
    """A Param from an optuna distribution object (None when ``spec`` is not one)."""
    mod = type(spec).__module__ or ""
    if not mod.startswith("optuna"):
        return None
    kind = type(spec).__name__
    if kind == "CategoricalDistribution":
        return _range(name, ("choice", list(spec.choices)))
    if kind in ("FloatDistribution", "IntDistribution"):
        if getattr(spec, "step", None) not in (None, 1):
            raise DataError(f"search space of {name!r}: distributions with a step are not "
                            f"supported, got {spec!r}")
        t = "float" if kind == "FloatDistribution" else "int"
        return _range(name, (t, spec.low, spec.high, *(("log",) if spec.log else ())))
    raise DataError(f"search space of {name!r}: unsupported optuna distribution {spec!r}")


def _range(name: str, spec: tuple) -> Param:
    kind = spec[0]
    if kind == "fixed":
        if len(spec) != 2:
            raise DataError(f"search space of {name!r}: write ('fixed', value), got {spec!r}")
        return Param(name, "fixed", value=spec[1])
    if kind == "choice":
        if len(spec) != 2 or isinstance(spec[1], (str, bytes)) or not hasattr(spec[1], "__iter__"):
            raise DataError(f"search space of {name!r}: write ('choice', [v1, v2, ...]), got "
                            f"{spec!r}")
        choices = tuple(spec[1])
        if not choices:
            raise DataError(f"search space of {name!r}: a choice needs at least one value, "
                            f"got {spec!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise DataError(f"search space of {name!r}: repeated values in {spec!r}")
        return Param(name, "choice", choices=choices)
    if len(spec) not in (3, 4) or (len(spec) == 4 and spec[3] != "log"):
        raise DataError(f"search space of {name!r}: write ({kind!r}, low, high) or "
                        f"({kind!r}, low, high, 'log'), got {spec!r}")
    integer = kind == "int"
    low, high = _number(name, spec[1], integer), _number(name, spec[2], integer)
    log = len(spec) == 4
    if low > high:
        raise DataError(f"search space of {name!r}: low {spec[1]!r} is above high {spec[2]!r} "
                        f"in {spec!r}")
    if log and low <= 0:
        raise DataError(f"search space of {name!r}: a log range needs low > 0, got "
                        f"{spec[1]!r} in {spec!r}")
    return Param(name, kind, low=low, high=high, log=log)


def parse_space(space: Any, model_cls: type | None = None) -> list[Param]:
    """Check a search space and return its parameters.

    Parameters
    ----------
    space : mapping of str to spec
        See the module documentation for the specs.
    model_cls : type, optional
        When given, every name must be a constructor parameter of the class, and the
        fixed values and range ends are checked with the class's own parameter checks
        (an ``l2`` range of EASE reaching 0 is refused before any trial runs).

    Returns
    -------
    list of Param

    Raises
    ------
    DataError
        A spec that is not one of the forms, an empty or inverted range, a log range
        reaching 0, an unknown parameter, or a value the model refuses.
    """
    if not isinstance(space, Mapping):
        raise DataError(f"a search space must be a dict {{parameter: spec}}, got {space!r}")
    params = []
    for name, spec in space.items():
        if not isinstance(name, str):
            raise DataError(f"search space parameter names must be strings, got {name!r}")
        p = _from_optuna(name, spec)
        if p is None:
            if isinstance(spec, (tuple, list)) and spec and isinstance(spec[0], str) \
                    and spec[0] in _KINDS:
                p = _range(name, tuple(spec))
            elif isinstance(spec, (tuple, list, dict, set)):
                raise DataError(
                    f"search space of {name!r}: {spec!r} is not a spec; write "
                    f"('float'|'int', low, high[, 'log']), ('choice', [values]) or "
                    f"('fixed', value)")
            else:
                p = Param(name, "fixed", value=spec)
        params.append(p)
    if model_cls is not None:
        _check_against(model_cls, params)
    return params


def _check_against(model_cls: type, params: list[Param]) -> None:
    """Names known to ``model_cls``; every corner value accepted by its parameter checks."""
    names = set(model_cls._get_param_names())
    for p in params:
        if p.name not in names:
            raise DataError(f"search space of {model_cls.__name__}: no parameter {p.name!r}; "
                            f"its parameters are {sorted(names)}")
    fixed = {p.name: p.value for p in params if p.kind == "fixed"}
    corners = [fixed]
    for p in params:
        values = p.choices if p.kind == "choice" else (p.low, p.high) if p.kind != "fixed" else ()
        for v in values:
            corners.append({**fixed, p.name: v})
    for params_ in corners:
        model = model_cls(**params_)
        try:
            model._check_standard_params()
            model._validate_params()
        except (DataError, ValueError, TypeError) as exc:
            raise DataError(f"search space of {model_cls.__name__}: {params_!r} is refused by "
                            f"the model: {exc}") from None


def search_space_of(model_cls: type) -> dict[str, Any]:
    """The declared search space of a model class.

    The class attribute ``search_space`` when the class has one, else the entry of
    :data:`DEFAULT_SPACES` for its name, else an empty space (the model is fitted once
    with its defaults).

    Parameters
    ----------
    model_cls : type

    Returns
    -------
    dict
    """
    declared = getattr(model_cls, "search_space", None)
    if declared is not None:
        return dict(declared)
    return dict(DEFAULT_SPACES.get(model_cls.__name__, {}))
