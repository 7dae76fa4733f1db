"""Declarative benchmark suites: TOML files parsed into validated dataclasses.

A suite file (``benchmarks/experiments/<name>.toml``) looks like::

    [suite]
    name = "quick"
    seeds = [0]                    # one split + model seed per entry
    k = [10, 20]                   # cut-offs; lists have max(k) items
    metrics = ["ndcg", "recall", "precision", "map", "mrr", "hit", "coverage", "novelty"]
    primary_metric = "ndcg@10"     # ranks models, paired test, plots
    threads = 2                    # BLAS/OpenMP/torch threads of every model run
    timing_repeats = 3             # fits per run (min/median reported) ...
    repeat_budget_s = 20.0         # ... until this many seconds of fitting are spent
    timeout_s = 900                # per model run

    [[experiments]]
    name = "ml100k-random"
    dataset = "100k"               # maasrec.datasets: latest-small, 100k, 1m, beauty, synthetic
    split = { method = "random_split", ratios = [0.8, 0.1, 0.1] }
    models = [
      { library = "maasrec", model = "EASE", params = { l2 = 500.0 }, algorithm = "ease" },
      { library = "implicit", model = "als", params = { factors = 64 }, algorithm = "als" },
    ]

Models: ``library = "maasrec"`` takes a class name from ``maasrec.models`` (or
``maasrec.neural``, ``maasrec``) with constructor ``params``; peers take the adapter's
model name (``benchmarks/peers/run_<library>.py``) with the library's own parameter
names. Optional per model: ``name`` (display name, unique), ``algorithm`` (pairs
implementations of one algorithm for ratio columns), ``seeds`` (subset of the suite
seeds, for slow models), ``threads``, ``timeout_s``, ``timing_repeats``,
``item_text = true`` (text-aware models: Cornac CTR/CDL/ConvMF; maasrec models get
``item_features`` with the item text), ``item_attributes = true`` (maasrec only: the
categorical and multi-hot item fields of the data set, e.g. Amazon Beauty's S3Rec
attributes, join ``item_features``), ``fit_validation = true`` (maasrec only: the
validation part is passed to ``fit(validation=...)`` for early stopping -- it is never
the test part), ``args`` (extra adapter arguments), ``grid`` (a table of lists: the
search space of ``python -m benchmarks tune``).

A scaling suite has ``kind = "scaling"`` and a ``[scaling]`` table instead of
experiments (see ``experiments/scaling.toml``).
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
EXPERIMENTS_DIR = HERE / "experiments"

PEER_MODELS: dict[str, tuple[str, ...]] = {
    "implicit": ("als", "bpr"),
    "lenskit": ("itemknn", "implicitmf", "pop"),
    "cornac": ("bpr", "neumf", "bivaecf", "ctr", "cdl", "convmf"),
    "recbole": ("bpr", "neumf", "lightgcn", "sasrec", "bert4rec"),
}
LIBRARIES = ("maasrec", *PEER_MODELS)
DATASETS = ("latest-small", "100k", "1m", "beauty", "synthetic")
_DATASET_ALIASES = {
    "ml-latest-small": "latest-small", "ml-100k": "100k", "ml-1m": "1m",
    "amazon-beauty": "beauty",
}
SPLIT_METHODS = ("random_split", "temporal_split", "leave_last_out")
CROSSCHECK_TOLERANCE = 1e-6
CONSISTENCY_TOLERANCE = 1e-9


class ConfigError(ValueError):
    """A suite file is malformed: the message names the file, the entry and the fix."""


# ---------------------------------------------------------------------------
# dataclasses
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """One model of an experiment."""

    library: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    algorithm: str | None = None
    seeds: tuple[int, ...] | None = None
    threads: int | None = None
    timeout_s: float | None = None
    timing_repeats: int | None = None
    item_text: bool = False
    item_attributes: bool = False
    fit_validation: bool = False
    args: tuple[str, ...] = ()
    grid: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique label within an experiment (``name`` or ``library:model``)."""
        return self.name or f"{self.library}:{self.model}"

    @property
    def is_peer(self) -> bool:
        return self.library != "maasrec"

    def grid_points(self) -> list[dict[str, Any]]:
        """Every parameter combination of ``grid`` on top of ``params``."""
        if not self.grid:
            return [dict(self.params)]
        names = sorted(self.grid)
        out = []
        for combo in itertools.product(*(self.grid[n] for n in names)):
            p = dict(self.params)
            p.update(dict(zip(names, combo)))
            out.append(p)
        return out


@dataclass(frozen=True)
class DatasetSpec:
    """A maasrec data set (``maasrec.datasets``) and optional preprocessing."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    min_rating: float | None = None

    @property
    def label(self) -> str:
        if self.name == "synthetic":
            return "synthetic(" + ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())) + ")"
        return self.name


@dataclass(frozen=True)
class SplitSpec:
    """A function of ``maasrec.data.split`` and its keyword arguments."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def seeded(self) -> bool:
        from maasrec.data import split as split_mod

        return "random_state" in inspect.signature(getattr(split_mod, self.method)).parameters

    def describe(self) -> str:
        a = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.method}({a})"


@dataclass(frozen=True)
class ExperimentSpec:
    """A data set, a split protocol and the models compared on it."""

    name: str
    dataset: DatasetSpec
    split: SplitSpec
    models: tuple[ModelSpec, ...]
    seeds: tuple[int, ...]
    description: str = ""

    def model_seeds(self, m: ModelSpec) -> tuple[int, ...]:
        if m.seeds is None:
            return self.seeds
        return tuple(s for s in self.seeds if s in m.seeds)


@dataclass(frozen=True)
class ScalingSpec:
    """Fit time / memory versus size on ``maasrec.datasets.make_synthetic`` data."""

    sizes: tuple[int, ...]
    n_items: int
    density: float
    n_factors: int
    models: tuple[ModelSpec, ...]
    recommend_model: ModelSpec | None
    recommend_users: tuple[int, ...]
    recommend_size: int
    k: int = 10


@dataclass(frozen=True)
class Suite:
    """A whole benchmark file."""

    name: str
    kind: str
    seeds: tuple[int, ...]
    k: tuple[int, ...]
    metrics: tuple[str, ...]
    primary_metric: str
    threads: int
    timing_repeats: int
    repeat_budget_s: float
    timeout_s: float
    n_bootstrap: int
    experiments: tuple[ExperimentSpec, ...] = ()
    scaling: ScalingSpec | None = None
    description: str = ""
    notes: tuple[str, ...] = ()
    source: str = ""

    @property
    def list_length(self) -> int:
        return max(self.k)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description (for the results file)."""
        from dataclasses import asdict

        return json.loads(json.dumps(asdict(self), default=str))


# ---------------------------------------------------------------------------
# parsing helpers
# ---------------------------------------------------------------------------
def _fail(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _check_keys(d: dict, allowed: set[str], where: str, required: tuple[str, ...] = ()) -> None:
    if not isinstance(d, dict):
        raise _fail(where, f"expected a table, got {type(d).__name__} {d!r}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [r for r in required if r not in d]
    if missing:
        raise _fail(where, f"missing required key(s) {missing}")


def _int(v: Any, where: str, low: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, f"expected an integer, got {v!r}")
    if low is not None and v < low:
        raise _fail(where, f"must be >= {low}, got {v}")
    return v


def _num(v: Any, where: str, low: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(where, f"expected a number, got {v!r}")
    if low is not None and v < low:
        raise _fail(where, f"must be >= {low}, got {v}")
    return float(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise _fail(where, f"expected a non-empty string, got {v!r}")
    return v


def _int_list(v: Any, where: str, low: int | None = None) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise _fail(where, f"expected a non-empty list of integers, got {v!r}")
    out = tuple(_int(x, f"{where}[{i}]", low) for i, x in enumerate(v))
    if len(set(out)) != len(out):
        raise _fail(where, f"repeated values in {list(out)}")
    return out


def _notes(v: Any, where: str) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _fail(where, "expected a string or a list of strings")
    return tuple(v)


def _check_metrics(metrics: Any, where: str) -> tuple[str, ...]:
    from maasrec.metrics.evaluation import METRICS

    allowed = [m for m in METRICS if m != "auc"]
    if not isinstance(metrics, list) or not metrics:
        raise _fail(where, f"expected a non-empty list of metric names from {allowed}")
    for m in metrics:
        if not isinstance(m, str) or m.split("@")[0] not in allowed:
            raise _fail(where, f"unknown metric {m!r}; valid names: {allowed} (auc needs "
                               f"scores for every item, so it is not available on top-k lists)")
    return tuple(metrics)


def _dataset(v: Any, where: str) -> DatasetSpec:
    if isinstance(v, str):
        v = {"name": v}
    _check_keys(v, {"name", "params", "min_rating"}, where, ("name",))
    name = _DATASET_ALIASES.get(v["name"], v["name"])
    if name not in DATASETS:
        raise _fail(where, f"unknown data set {v['name']!r}; expected one of {list(DATASETS)}")
    params = v.get("params", {})
    if not isinstance(params, dict):
        raise _fail(f"{where}.params", "expected a table")
    if params and name != "synthetic":
        raise _fail(f"{where}.params", "only the synthetic data set takes params")
    if name == "synthetic":
        from maasrec.datasets import make_synthetic

        ok = set(inspect.signature(make_synthetic).parameters) - {"seed"}
        bad = sorted(set(params) - ok)
        if bad:
            raise _fail(f"{where}.params", f"make_synthetic has no parameter(s) {bad}; "
                                           f"it takes {sorted(ok)}")
    mr = v.get("min_rating")
    return DatasetSpec(name, dict(params), None if mr is None else _num(mr, f"{where}.min_rating"))


def _split(v: Any, where: str) -> SplitSpec:
    if not isinstance(v, dict) or "method" not in v:
        raise _fail(where, f"expected a table with 'method' (one of {list(SPLIT_METHODS)}) "
                           f"and the function's arguments")
    method = v["method"]
    if method not in SPLIT_METHODS:
        raise _fail(where, f"unknown split method {method!r}; expected one of "
                           f"{list(SPLIT_METHODS)} (functions of maasrec.data.split; cold-start "
                           f"splits are not supported: peers cannot score unseen users)")
    from maasrec.data import split as split_mod

    params = inspect.signature(getattr(split_mod, method)).parameters
    allowed = set(params) - {"X", "random_state"}
    args = {k: x for k, x in v.items() if k != "method"}
    bad = sorted(set(args) - allowed)
    if bad:
        raise _fail(where, f"{method} has no argument(s) {bad}; it takes {sorted(allowed)} "
                           f"(random_state comes from the suite seeds)")
    return SplitSpec(method, args)


_MODEL_KEYS = {"library", "model", "params", "name", "algorithm", "seeds", "threads",
               "timeout_s", "timing_repeats", "item_text", "item_attributes", "fit_validation",
               "args", "grid"}


def _flag(v: dict, key: str, where: str, lib: str, maasrec_only: str | None = None) -> bool:
    """A true/false model option (default false); ``maasrec_only``: the error when a peer
    sets it."""
    value = v.get(key, False)
    if not isinstance(value, bool):
        raise _fail(f"{where}.{key}", "expected true or false")
    if value and maasrec_only and lib != "maasrec":
        raise _fail(f"{where}.{key}", f"{maasrec_only} (the {lib} adapter does not)")
    return value


def _model(v: Any, where: str) -> ModelSpec:
    _check_keys(v, _MODEL_KEYS, where, ("library", "model"))
    lib = _str(v["library"], f"{where}.library")
    if lib not in LIBRARIES:
        raise _fail(f"{where}.library", f"unknown library {lib!r}; expected one of "
                                        f"{list(LIBRARIES)}")
    model = _str(v["model"], f"{where}.model")
    if lib in PEER_MODELS and model not in PEER_MODELS[lib]:
        raise _fail(f"{where}.model", f"{lib} adapter has no model {model!r}; it runs "
                                      f"{list(PEER_MODELS[lib])}")
    params = v.get("params", {})
    if not isinstance(params, dict):
        raise _fail(f"{where}.params", f"expected a table of parameters, got {params!r}")
    grid = v.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(x, list) and x for x in grid.values()):
        raise _fail(f"{where}.grid", "expected a table of non-empty lists, e.g. "
                                     "grid = { l2 = [100.0, 500.0] }")
    seeds = v.get("seeds")
    args = v.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _fail(f"{where}.args", "expected a list of strings")
    item_text = _flag(v, "item_text", where, lib)
    item_attributes = _flag(v, "item_attributes", where, lib,
                            maasrec_only="only maasrec models take item attributes")
    fit_validation = _flag(v, "fit_validation", where, lib,
                           maasrec_only="only maasrec models take the validation part in fit")
    return ModelSpec(
        library=lib, model=model, params=dict(params),
        name=_str(v["name"], f"{where}.name") if "name" in v else "",
        algorithm=_str(v["algorithm"], f"{where}.algorithm") if "algorithm" in v else None,
        seeds=None if seeds is None else _int_list(seeds, f"{where}.seeds", 0),
        threads=None if "threads" not in v else _int(v["threads"], f"{where}.threads", 1),
        timeout_s=None if "timeout_s" not in v else _num(v["timeout_s"], f"{where}.timeout_s", 1),
        timing_repeats=(None if "timing_repeats" not in v
                        else _int(v["timing_repeats"], f"{where}.timing_repeats", 1)),
        item_text=item_text, item_attributes=item_attributes, fit_validation=fit_validation,
        args=tuple(args),
        grid={k: list(x) for k, x in grid.items()},
    )


def _models(v: Any, where: str) -> tuple[ModelSpec, ...]:
    if not isinstance(v, list) or not v:
        raise _fail(where, "expected a non-empty list of models")
    models = tuple(_model(m, f"{where}[{i}]") for i, m in enumerate(v))
    keys = [m.key for m in models]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise _fail(where, f"model label(s) {dup} appear twice; give each a distinct 'name'")
    return models


_SUITE_KEYS = {"name", "kind", "description", "notes", "seeds", "k", "metrics",
               "primary_metric", "threads", "timing_repeats", "repeat_budget_s", "timeout_s",
               "n_bootstrap"}
_EXP_KEYS = {"name", "dataset", "split", "models", "seeds", "description"}
_SCALING_KEYS = {"sizes", "n_items", "density", "n_factors", "models", "recommend_model",
                 "recommend_users", "recommend_size", "k"}


def parse_suite(doc: dict[str, Any], source: str = "<dict>") -> Suite:
    """Validate a parsed TOML document and build a :class:`Suite`.

    Raises
    ------
    ConfigError
        Naming the file, the entry and what was expected.
    """
    where = source
    _check_keys(doc, {"suite", "experiments", "scaling"}, where, ("suite",))
    s = doc["suite"]
    _check_keys(s, _SUITE_KEYS, f"{where} [suite]", ("name",))
    w = f"{where} [suite]"
    kind = s.get("kind", "compare")
    if kind not in ("compare", "scaling"):
        raise _fail(f"{w}.kind", f"expected 'compare' or 'scaling', got {kind!r}")
    seeds = _int_list(s.get("seeds", [0]), f"{w}.seeds", 0)
    ks = tuple(sorted(_int_list(s.get("k", [10, 20]), f"{w}.k", 1)))
    metrics = _check_metrics(s.get("metrics", ["ndcg", "recall", "precision", "map", "mrr",
                                                "hit", "coverage", "novelty"]), f"{w}.metrics")
    primary = s.get("primary_metric", f"ndcg@{ks[0]}")
    base, _, at = str(primary).partition("@")
    if base not in [m.split("@")[0] for m in metrics] or not at.isdigit() or int(at) not in ks:
        raise _fail(f"{w}.primary_metric", f"{primary!r} must be one of the metrics at one of "
                                           f"the cut-offs {list(ks)}, e.g. 'ndcg@{ks[0]}'")
    common = dict(
        name=_str(s["name"], f"{w}.name"), kind=kind, seeds=seeds, k=ks, metrics=metrics,
        primary_metric=primary,
        threads=_int(s.get("threads", 2), f"{w}.threads", 1),
        timing_repeats=_int(s.get("timing_repeats", 3), f"{w}.timing_repeats", 1),
        repeat_budget_s=_num(s.get("repeat_budget_s", 30.0), f"{w}.repeat_budget_s", 0),
        timeout_s=_num(s.get("timeout_s", 1800.0), f"{w}.timeout_s", 1),
        n_bootstrap=_int(s.get("n_bootstrap", 1000), f"{w}.n_bootstrap", 0),
        description=str(s.get("description", "")), source=source,
        notes=_notes(s.get("notes", []), f"{w}.notes"),
    )
    if kind == "scaling":
        if "experiments" in doc:
            raise _fail(where, "a scaling suite has a [scaling] table, not [[experiments]]")
        if "scaling" not in doc:
            raise _fail(where, "kind = 'scaling' needs a [scaling] table")
        return Suite(**common, scaling=_scaling(doc["scaling"], f"{where} [scaling]"))
    if "scaling" in doc:
        raise _fail(where, "[scaling] needs kind = 'scaling' in [suite]")
    exps = doc.get("experiments")
    if not isinstance(exps, list) or not exps:
        raise _fail(where, "no [[experiments]]: a compare suite needs at least one")
    out = []
    for i, e in enumerate(exps):
        we = f"{where} experiments[{i}]"
        _check_keys(e, _EXP_KEYS, we, ("name", "dataset", "split", "models"))
        name = _str(e["name"], f"{we}.name")
        we = f"{where} experiment {name!r}"
        eseeds = seeds if "seeds" not in e else _int_list(e["seeds"], f"{we}.seeds", 0)
        out.append(ExperimentSpec(
            name=name, dataset=_dataset(e["dataset"], f"{we}.dataset"),
            split=_split(e["split"], f"{we}.split"), models=_models(e["models"], f"{we}.models"),
            seeds=eseeds, description=str(e.get("description", "")),
        ))
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise _fail(where, f"experiment names must be unique, got {names}")
    return Suite(**common, experiments=tuple(out))


def _scaling(v: Any, where: str) -> ScalingSpec:
    _check_keys(v, _SCALING_KEYS, where, ("sizes", "models"))
    sizes = v["sizes"]
    if not isinstance(sizes, list) or not sizes:
        raise _fail(f"{where}.sizes", "expected a non-empty list of interaction counts")
    sizes_i = tuple(int(_num(x, f"{where}.sizes[{i}]", 1)) for i, x in enumerate(sizes))
    models = _models(v["models"], f"{where}.models")
    for m in models:
        if m.is_peer:
            raise _fail(f"{where}.models", f"{m.key}: the scaling suite runs maasrec models only")
    rm = v.get("recommend_model")
    rspec = None if rm is None else _model(rm, f"{where}.recommend_model")
    return ScalingSpec(
        sizes=tuple(sorted(sizes_i)),
        n_items=_int(v.get("n_items", 5000), f"{where}.n_items", 2),
        density=_num(v.get("density", 0.01), f"{where}.density", 0),
        n_factors=_int(v.get("n_factors", 16), f"{where}.n_factors", 1),
        models=models, recommend_model=rspec,
        recommend_users=tuple(_int_list(v.get("recommend_users", [1000, 10000]),
                                        f"{where}.recommend_users", 1)),
        recommend_size=int(_num(v.get("recommend_size", sizes_i[-1]), f"{where}.recommend_size", 1)),
        k=_int(v.get("k", 10), f"{where}.k", 1),
    )


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------
def available_suites() -> list[str]:
    """Names of the suite files shipped in ``benchmarks/experiments``."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A suite name (``quick``) or a path to a TOML file -> the file path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"no such experiment file: {p}")
        return p
    cand = EXPERIMENTS_DIR / f"{name_or_path}.toml"
    if cand.is_file():
        return cand
    raise ConfigError(f"unknown suite {str(name_or_path)!r}; available: {available_suites()} "
                      f"(or give a path to a .toml file)")


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite file."""
    path = resolve_suite_path(name_or_path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_suite(doc, str(path))


def loads_suite(text: str, source: str = "<string>") -> Suite:
    """Parse a suite from TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse_suite(doc, source)
