"""Save/load glue for :class:`~maasrec.base.Recommender`.

``save`` sorts the fitted attributes (names ending in ``_``) into what
:mod:`maasrec.persistence` writes -- vocabularies, arrays, torch weights, nested models,
JSON values -- (:func:`fitted_state`); ``load`` rebuilds the model from its parameters,
restores and checks those attributes, then the class's own state, files and modules
(:class:`PersistenceMixin`). The hooks a subclass overrides for its own state live here
too.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import numpy as np
import scipy.sparse as sp

from .data.vocab import IdVocab
from .exceptions import DataError, ModelFormatError
from .persistence import csr_from_arrays, csr_to_arrays
from .rankers.ann import FaissRetriever

_ATTR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*_")


def fitted_state(model) -> tuple[dict, dict, dict, dict, dict]:
    """The fitted attributes of ``model``, sorted by how they are written.

    Returns
    -------
    attributes, arrays, vocabs, weights, nested : dict
        ``attributes`` describes every attribute (its type, and the value of JSON
        ones); the others hold the numpy arrays, vocabularies, torch tensors of modules
        (``name.param``) and nested recommenders.
    """
    from .base import Recommender

    attrs, arrays, vocabs, weights, nested = {}, {}, {}, {}, {}
    torch = sys.modules.get("torch")
    for name, value in sorted(vars(model).items()):
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, IdVocab):
            vocabs[name] = value
            attrs[name] = {"type": "vocab"}
        elif sp.issparse(value):
            a, arr = csr_to_arrays(name, value)
            attrs[name], arrays = a, {**arrays, **arr}
        elif isinstance(value, np.ndarray) and value.dtype != object:
            arrays[name] = value
            attrs[name] = {"type": "ndarray"}
        elif torch is not None and isinstance(value, torch.nn.Module):
            for k, t in value.state_dict().items():
                weights[f"{name}.{k}"] = t
            attrs[name] = {"type": "module"}
        elif torch is not None and isinstance(value, torch.Tensor):
            arrays[name] = value.detach().cpu().numpy()
            attrs[name] = {"type": "tensor"}
        elif isinstance(value, Recommender):
            nested[name] = value
            attrs[name] = {"type": "recommender"}
        elif isinstance(value, np.ndarray):
            attrs[name] = {"type": "json_array", "value": value.tolist()}
        else:
            attrs[name] = {"type": "json", "value": value}
    return attrs, arrays, vocabs, weights, nested


def _restored_value(d: dict, path, name: str, a: Any) -> tuple[str | None, Any]:
    """The value of saved attribute ``name`` described by ``a``: ``(kind, value)``."""
    from .base import Recommender

    kind = a.get("type") if isinstance(a, dict) else None
    if kind == "vocab":
        value = d["vocabs"].get(name)
        if value is None:
            raise ModelFormatError(f"vocabulary {name!r} missing from {str(path)!r}")
    elif kind == "csr":
        value = csr_from_arrays(name, a, d["arrays"])
    elif kind in ("ndarray", "tensor"):
        if name not in d["arrays"]:
            raise ModelFormatError(f"array {name!r} missing from {str(path)!r}")
        value = d["arrays"][name]
        if kind == "tensor":
            import torch

            value = torch.from_numpy(np.array(value))
    elif kind == "json":
        value = a.get("value")
    elif kind == "json_array":
        value = np.asarray(a.get("value"), dtype=object)
    elif kind == "recommender":
        value = Recommender.load(d["path"] / name)
    elif kind == "module":
        value = None  # rebuilt from the params and attributes, then given its weights
    else:
        raise ModelFormatError(f"attribute {name!r} has unknown type {kind!r}")
    return kind, value


class PersistenceMixin:
    """Rebuilds a saved recommender and checks what it reads; the subclass hooks for it."""

    @classmethod
    def _rebuild(cls, meta: dict, path, where: str):
        """A new unfitted model of the saved class, from its saved (checked) params."""
        from .base import _params_from_json, resolve_class

        klass = resolve_class(meta.get("class"))
        if not (isinstance(klass, type) and issubclass(klass, cls)):
            raise ModelFormatError(
                f"{str(path)!r} holds a {meta.get('class')}, which is not a {cls.__name__}"
            )
        try:
            model = klass(**_params_from_json(meta.get("params", {})))
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"cannot rebuild {meta.get('class')} from saved params: {exc}") from exc
        try:
            model._validate_saved_params()
        except (DataError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: saved params of {meta.get('class')} are invalid: "
                                   f"{exc}") from exc
        return model

    @classmethod
    def _load_checked(cls, d: dict, path):
        meta = d["meta"]
        where = repr(str(d["path"] / "maasrec.json"))
        model = cls._rebuild(meta, path, where)
        modules = model._restore_attributes(d, path, meta.get("attributes", {}))
        model._load_where = where
        model._check_base_attributes(where)
        extra_state = meta.get("extra_state", {})
        if not isinstance(extra_state, dict):
            raise ModelFormatError(f"{where}: extra_state {extra_state!r} is not a JSON object")
        model._set_extra_state(extra_state)
        model._check_loaded()  # the class's own arrays, before anything is built from them
        model._load_extra_files(d["path"])
        if modules:
            model._load_modules(modules, d["weights_path"])
        model._pop_cache = None
        model._check_loaded_retriever()
        return model

    def _restore_attributes(self, d: dict, path, attributes: Any) -> list[str]:
        """Set the saved fitted attributes; return the names of the modules to rebuild."""
        modules = []
        if not isinstance(attributes, dict):
            raise ModelFormatError(f"attributes in {str(path)!r} is not a JSON object")
        for name, a in attributes.items():
            if not (isinstance(name, str) and _ATTR_NAME.fullmatch(name)):
                raise ModelFormatError(
                    f"attribute name {name!r} in {str(path)!r} is not a fitted-attribute name "
                    f"(an identifier ending in '_')"
                )
            kind, value = _restored_value(d, path, name, a)
            if kind == "module":
                modules.append(name)
                continue
            setattr(self, name, value)
        return modules

    def _check_loaded_retriever(self) -> None:
        """A loaded faiss index must match the model's item vectors (count and width)."""
        ret = getattr(self, "_retriever", None)
        if ret is None:
            return
        vectors = self._item_vectors()
        where = getattr(self, "_load_where", "the model directory")
        if vectors is None:
            raise ModelFormatError(f"{where}: a retriever is saved with a "
                                   f"{type(self).__name__}, which has no item vectors")
        n, d = np.shape(vectors)
        if (ret.index_.ntotal, ret.index_.d) != (n, d) or (ret.n_items_, ret.dim_) != (n, d):
            raise ModelFormatError(
                f"{where}: the saved faiss index holds {ret.index_.ntotal} x {ret.index_.d} "
                f"vectors, but the model has {n} items of width {d}")

    def _check_base_attributes(self, where: str) -> None:
        """Types and shapes of the fitted attributes every recommender has (after load)."""
        from ._loadcheck import check_dense

        for name in ("user_vocab_", "item_vocab_"):
            vocab = getattr(self, name, None)
            if not isinstance(vocab, IdVocab):
                raise ModelFormatError(f"{where}: the fitted vocabulary {name!r} is missing")
            if vocab.ids.dtype == object:  # ids must be what save can write and index reads
                bad = next((x for x in vocab.ids if not isinstance(x, (str, float, bool, int))
                            or (isinstance(x, int) and not -2**63 <= x < 2**63)), None)
                if bad is not None:
                    raise ModelFormatError(f"{where}: {name} holds the id {bad!r}, which is "
                                           f"not a str, bool, float or 64-bit int")
        seen = getattr(self, "seen_", None)
        if not sp.issparse(seen):
            raise ModelFormatError(f"{where}: the fitted matrix 'seen_' is missing or not "
                                   f"sparse")
        want = (len(self.user_vocab_), len(self.item_vocab_))
        if tuple(seen.shape) != want:
            raise ModelFormatError(
                f"{where}: 'seen_' has shape {tuple(seen.shape)}, but the vocabularies hold "
                f"{want[0]} users and {want[1]} items"
            )
        check_dense(where, "seen_.data", seen.data, ndim=1, kind="f")
        if seen.dtype != np.float32:  # fit always writes float32 values
            self.seen_ = seen.astype(np.float32)

    def _loaded_float(self, name: str, shape: tuple, *, finite: bool = True) -> np.ndarray:
        """Check the loaded float array attribute ``name`` (shape, finite), as float32.

        For :meth:`_check_loaded`: ``shape`` entries may be None (any length).
        """
        from ._loadcheck import check_dense

        where = getattr(self, "_load_where", "the model directory")
        a = getattr(self, name, None)
        if not isinstance(a, np.ndarray):
            raise ModelFormatError(f"{where}: fitted array {name!r} is missing or not an "
                                   f"array ({type(a).__name__})")
        check_dense(where, name, a, shape=shape, kind="f", finite=finite)
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            a = np.ascontiguousarray(a, dtype=np.float32)
            setattr(self, name, a)
        return a

    def _load_modules(self, names: list[str], weights_path) -> None:
        """Rebuild torch modules from params and restored attributes, then load weights."""
        from safetensors.torch import load_file

        from ._loadcheck import check_state_finite

        if not os.path.isfile(weights_path):
            raise ModelFormatError(f"weights file {str(weights_path)!r} is missing")
        try:
            state = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"cannot read {str(weights_path)!r}: {exc}") from exc
        check_state_finite(repr(str(weights_path)), state)
        # the modules are rebuilt from JSON attributes before their weights are loaded:
        # crafted sizes must not allocate more than the weights file can fill
        budget = 2 * sum(int(t.numel()) for t in state.values()) + 2**22
        with _allocation_budget(budget, str(weights_path)):
            built = self._build_modules()
        missing = sorted(set(built) - set(names))
        if missing:
            raise ModelFormatError(f"{str(weights_path)!r}: the saved attributes name no "
                                   f"weights for the modules {missing}")
        for name in names:
            if name not in built:
                raise ModelFormatError(f"{type(self).__name__} cannot rebuild module {name!r}")
            module = built[name]
            prefix = f"{name}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(sub, strict=True)
            except RuntimeError as exc:
                raise ModelFormatError(f"weights of {name!r} do not fit the model: {exc}") from exc
            module.eval()
            setattr(self, name, module)

    # -- hooks for subclasses ------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        """Non-underscore-suffixed attributes to save (hook for subclasses)."""
        return {}

    def _params_for_save(self) -> dict[str, Any]:
        """The parameters :meth:`save` writes (hook; default ``get_params(deep=False)``).

        A subclass whose parameter cannot be written as JSON (e.g. an in-memory model)
        returns a copy with a stand-in value; it never changes ``self``, so a save that
        fails, or a thread using the model during a save, sees the real parameters.
        """
        return self.get_params(deep=False)

    def _validate_saved_params(self) -> None:
        """Check parameters read by ``load`` (hook; the default runs the checks ``fit`` runs:
        :meth:`_check_standard_params`, then :meth:`_validate_params`)."""
        self._check_standard_params()
        self._validate_params()

    def _check_loaded(self) -> None:
        """Check the class's own fitted state against the vocabularies after ``load``.

        Hook for subclasses (the base checks vocabularies and ``seen_`` itself): raise
        :class:`~maasrec.exceptions.ModelFormatError` naming the attribute when an array
        has the wrong shape or dtype, a non-finite value, or an index out of bounds.
        Every integer array that will index anything must be bounds-checked here.
        """

    def _set_extra_state(self, state: dict) -> None:
        """Restore what :meth:`_extra_state` saved (hook for subclasses)."""

    def _save_extra_files(self, tmp) -> None:
        """Write files that are neither JSON nor safetensors into the model's temporary
        directory ``tmp`` (hook; the base writes the attached retriever's faiss index to
        ``retriever/``). Subclasses extending it call ``super()``."""
        if getattr(self, "_retriever", None) is not None:
            self._retriever.save(os.path.join(tmp, "retriever"))

    def _load_extra_files(self, path) -> None:
        """Read what :meth:`_save_extra_files` wrote (hook)."""
        folder = os.path.join(path, "retriever")
        self._retriever = FaissRetriever.load(folder) if os.path.isdir(folder) else None

    def _build_modules(self) -> dict:
        """Return freshly built torch modules by attribute name (neural models)."""
        return {}


class _allocation_budget:
    """Refuse parameters and buffers beyond ``budget`` elements registered by this thread.

    Module constructors allocate a tensor (lazily, untouched) and then register it; the
    global registration hooks count the elements and raise before the memory is written.
    """

    def __init__(self, budget: int, where: str):
        self.budget, self.where, self.used = budget, where, 0
        self.handles: list = []

    def _hook(self, module, name, tensor):
        import threading

        if tensor is None or threading.get_ident() != self.thread:
            return None
        self.used += int(tensor.numel())
        if self.used > self.budget:
            raise ModelFormatError(
                f"the modules described next to {self.where!r} need more than {self.budget} "
                f"weights, more than the file holds: the saved sizes are corrupt"
            )
        return None

    def __enter__(self):
        import threading

        from torch.nn.modules import module as _m

        self.thread = threading.get_ident()
        self.handles = [_m.register_module_parameter_registration_hook(self._hook),
                        _m.register_module_buffer_registration_hook(self._hook)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
